"""Where metric questions read their facts: the branch roll-ups or, for a leaf branch, the facts.

`metrics_rollup` holds `metrics_monthly` summed over the subtree of every branch that has
sub-branches, rebuilt on each import. `fact_source` hands out one relation, always with the same
columns, for "the facts of this branch subtree", so the metric SQL never needs to know which table
answers, and it always carries the asker's scope condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from core.access import Principal, branch_in_scope
from core.errors import PuyiError

# Facts as the relation exposes them; satisfaction as its customer-weighted sum and the customers
# it covers (see tools.metric_defs).
SOURCE_COLUMNS: tuple[str, ...] = (
    "balance", "avg_balance", "customers", "new_customers", "lost_customers", "volume", "interest_income",
    "interest_expense", "fee_income", "opex", "provision", "npl_balance", "overdue_balance", "complaints",
    "satisfaction_w", "satisfaction_n",
)
_RAW_EXPR = {
    "satisfaction_w": "satisfaction * customers",
    "satisfaction_n": "CASE WHEN satisfaction IS NOT NULL THEN customers END",
}


class OutOfScope(PuyiError):
    """A branch outside what the asker may see (or one that does not exist)."""


@dataclass(frozen=True)
class FactMeta:
    first_month: date | None
    latest_month: date | None
    fact_rows: int


def refresh_rollups(conn: psycopg.Connection[Any]) -> int:
    """Rebuild the roll-ups from metrics_monthly and branch_closure (inside the caller's transaction,
    so readers see the old or the new bank, never a mix). Returns the roll-up rows written.

    Two passes, so that each fact row is summed once (joining every fact to all its ancestors
    made 10 million rows cost two minutes): first each row into its nearest branch with a subtree
    (itself, else its parent), then those partial sums into every such branch above them."""
    raw = ", ".join(f"sum({_RAW_EXPR.get(c, 'm.' + c)}) AS {c}" for c in SOURCE_COLUMNS)
    sums = ", ".join(f"sum(s.{c})" for c in SOURCE_COLUMNS)
    inner = "SELECT DISTINCT ancestor FROM branch_closure WHERE depth > 0"
    conn.execute("DROP TABLE IF EXISTS pg_temp.rollup_step")
    conn.execute(
        f"CREATE TEMP TABLE rollup_step ON COMMIT DROP AS"
        f" SELECT t.target AS branch_code, m.month, m.product_code, {raw}"
        f" FROM metrics_monthly m JOIN (SELECT b.code, CASE WHEN b.code IN ({inner}) THEN b.code"
        f"   ELSE b.parent_code END AS target FROM branches b) t ON t.code = m.branch_code"
        f" WHERE t.target IS NOT NULL GROUP BY t.target, m.month, m.product_code"
    )
    conn.execute("DELETE FROM metrics_rollup")
    cur = conn.execute(
        f"INSERT INTO metrics_rollup (branch_code, month, product_code, {', '.join(SOURCE_COLUMNS)})"
        f" SELECT c.ancestor, s.month, s.product_code, {sums}"
        f" FROM rollup_step s JOIN branch_closure c ON c.descendant = s.branch_code"
        f" WHERE c.ancestor IN ({inner}) GROUP BY c.ancestor, s.month, s.product_code"
    )
    written = cur.rowcount
    conn.execute("DROP TABLE rollup_step")
    conn.execute(
        "INSERT INTO metrics_meta (id, first_month, latest_month, fact_rows, refreshed_at)"
        " SELECT 1, min(month), max(month), count(*), now() FROM metrics_monthly"
        " ON CONFLICT (id) DO UPDATE SET first_month = excluded.first_month, latest_month = excluded.latest_month,"
        " fact_rows = excluded.fact_rows, refreshed_at = excluded.refreshed_at"
    )
    conn.execute("ANALYZE metrics_rollup")
    return written


def ensure_rollups(conn: psycopg.Connection[Any]) -> None:
    """Build the roll-ups once for a bank imported before they existed."""
    if conn.execute("SELECT 1 FROM metrics_meta").fetchone() is None and \
            conn.execute("SELECT 1 FROM metrics_monthly LIMIT 1").fetchone() is not None:
        with conn.transaction():
            refresh_rollups(conn)


def fact_meta(conn: psycopg.Connection[Any]) -> FactMeta:
    """The first and latest month with facts (cheap: read from metrics_meta)."""
    row = conn.execute("SELECT first_month, latest_month, fact_rows FROM metrics_meta WHERE id = 1").fetchone()
    if row is None:
        return FactMeta(None, None, 0)
    return FactMeta(row["first_month"], row["latest_month"], int(row["fact_rows"]))


def head_office(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute("SELECT code FROM branches WHERE parent_code IS NULL ORDER BY code LIMIT 1").fetchone()
    if row is None:
        return None
    return str(row["code"])


def resolve_branch(conn: psycopg.Connection[Any], principal: Principal, branch: str | None) -> str | None:
    """The branch whose subtree a question covers: `branch` if given and inside the asker's scope
    (else OutOfScope), otherwise the root of the asker's scope (the head office for bank-wide roles)."""
    if branch is None:
        return principal.scope_branch or head_office(conn)
    row = conn.execute(
        "SELECT b.code, b.name FROM branches b WHERE b.code = %(b)s AND " + branch_in_scope("b.code"),
        {"b": branch, "scope": principal.scope_branch},
    ).fetchone()
    if row is None:
        raise OutOfScope(f"您没有查看机构 {branch} 数据的权限，或该机构不存在 (branch outside your scope)")
    return branch


def has_subtree(conn: psycopg.Connection[Any], branch: str) -> bool:
    return conn.execute(
        "SELECT 1 FROM branch_closure WHERE ancestor = %(b)s AND depth > 0 LIMIT 1", {"b": branch}
    ).fetchone() is not None


def fact_source(conn: psycopg.Connection[Any], principal: Principal, branch: str | None = None,
                alias: str = "f") -> tuple[str, dict[str, Any]]:
    """A relation `(month, product_code, <SOURCE_COLUMNS>)` of the facts summed over `branch`'s
    subtree (default: the asker's whole scope), for use in a FROM clause, with its parameters
    (names prefixed `src_`). The asker's scope is part of the SQL, not only of this check."""
    root = resolve_branch(conn, principal, branch)
    params = {"src_branch": root, "src_scope": principal.scope_branch}
    scope = branch_in_scope("branch_code").replace("%(scope)s", "%(src_scope)s")
    if root is not None and has_subtree(conn, root):
        cols = ", ".join(SOURCE_COLUMNS)
        sql = f"(SELECT month, product_code, {cols} FROM metrics_rollup WHERE branch_code = %(src_branch)s AND {scope})"
    else:
        cols = ", ".join(f"{_RAW_EXPR.get(c, c)} AS {c}" for c in SOURCE_COLUMNS)
        sql = f"(SELECT month, product_code, {cols} FROM metrics_monthly WHERE branch_code = %(src_branch)s AND {scope})"
    return f"{sql} AS {alias}", params


def child_source(conn: psycopg.Connection[Any], principal: Principal, branch: str | None = None,
                 alias: str = "f") -> tuple[str, dict[str, Any]]:
    """Like `fact_source`, with a `branch_code` column: the facts of each child branch of `branch`
    (summed over the child's subtree), plus the facts booked at `branch` itself under its own code."""
    root = resolve_branch(conn, principal, branch)
    params = {"src_branch": root, "src_scope": principal.scope_branch}
    scope = branch_in_scope("c.code").replace("%(scope)s", "%(src_scope)s")
    roll = ", ".join(f"r.{c}" for c in SOURCE_COLUMNS)
    raw = ", ".join(f"{_RAW_EXPR.get(c, 'm.' + c)} AS {c}" for c in SOURCE_COLUMNS)
    sql = (
        "(SELECT r.month, r.product_code, c.code AS branch_code, " + roll +
        " FROM branches c JOIN metrics_rollup r ON r.branch_code = c.code"
        " WHERE c.parent_code = %(src_branch)s AND " + scope +
        " UNION ALL SELECT m.month, m.product_code, c.code, " + raw +
        " FROM branches c JOIN metrics_monthly m ON m.branch_code = c.code"
        " WHERE (c.parent_code = %(src_branch)s AND NOT EXISTS (SELECT 1 FROM branch_closure k"
        "        WHERE k.ancestor = c.code AND k.depth > 0) OR c.code = %(src_branch)s) AND " + scope + ")"
    )
    return f"{sql} AS {alias}", params
