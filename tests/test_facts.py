"""The roll-ups behind metric questions equal the facts summed over each branch subtree."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.access import Principal
from core.db import Database
from ingest.importer import import_folder
from tests.bankfactory import bank_rows, write_small_bank
from tools.facts import SOURCE_COLUMNS, OutOfScope, fact_meta, fact_source

NAIVE = ", ".join(
    ("sum(m.satisfaction * m.customers)" if c == "satisfaction_w"
     else "sum(CASE WHEN m.satisfaction IS NOT NULL THEN m.customers END)" if c == "satisfaction_n"
     else f"sum(m.{c})") + f" AS {c}" for c in SOURCE_COLUMNS
)


@pytest.fixture()
def bank(empty_db: Database, tmp_path: Path) -> Database:
    """The small bank plus facts booked at a branch and at the head office themselves."""
    extra: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for row in bank_rows("metrics_monthly.csv"):
        if (row["month"], row["product_code"]) in seen or len(seen) == 6:
            continue
        seen.add((row["month"], row["product_code"]))
        for branch in ("B100", "H000"):
            extra.append(row | {"branch_code": branch, "satisfaction": "" if branch == "H000" else row["satisfaction"]})
    import_folder(empty_db, write_small_bank(tmp_path / "bank", extra_rows={"metrics_monthly.csv": extra}))
    return empty_db


def test_roll_ups_equal_sums_over_each_subtree(bank: Database):
    with bank.connection() as conn:
        expected = conn.execute(
            f"SELECT c.ancestor AS branch_code, m.month, m.product_code, {NAIVE}"
            " FROM metrics_monthly m JOIN branch_closure c ON c.descendant = m.branch_code"
            " WHERE c.ancestor IN (SELECT ancestor FROM branch_closure WHERE depth > 0)"
            " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3").fetchall()
        got = conn.execute(
            f"SELECT branch_code, month, product_code, {', '.join(SOURCE_COLUMNS)} FROM metrics_rollup"
            " ORDER BY 1, 2, 3").fetchall()
        meta = fact_meta(conn)
    assert [tuple(r.values()) for r in got] == [tuple(r.values()) for r in expected]
    assert {r["branch_code"] for r in got} == {"H000", "B100", "B200"}
    assert (str(meta.first_month), str(meta.latest_month)) == ("2026-08-01", "2026-10-01")


@pytest.mark.parametrize("user, branch, read", [
    (Principal("a", "a", "admin", "H000"), None, "H000"),
    (Principal("r", "r", "rm", "B100"), None, "B100"),
    (Principal("r", "r", "rm", "B100"), "S102", "S102"),
    (Principal("s", "s", "rm", "S101"), None, "S101"),
])
def test_the_source_reads_the_askers_subtree(bank: Database, user: Principal, branch: str | None, read: str):
    with bank.connection() as conn:
        source, params = fact_source(conn, user, branch)
        got = conn.execute(f"SELECT month, product_code, sum(balance) AS b FROM {source} GROUP BY 1, 2 ORDER BY 1, 2",
                           params).fetchall()
        expected = conn.execute(
            "SELECT month, product_code, sum(balance) AS b FROM metrics_monthly WHERE branch_code IN"
            " (SELECT descendant FROM branch_closure WHERE ancestor = %(b)s) GROUP BY 1, 2 ORDER BY 1, 2",
            {"b": read}).fetchall()
    assert got == expected and got


def test_a_branch_outside_the_scope_is_refused(bank: Database):
    with bank.connection() as conn, pytest.raises(OutOfScope):
        fact_source(conn, Principal("r", "r", "rm", "B100"), "S201")
