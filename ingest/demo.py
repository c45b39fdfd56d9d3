"""Write the demo bank (谱翼示范银行) as a folder in the data-contract format.

The folder goes through the same `puyi import` path as a real bank's. Everything is derived from
`random.Random(seed)` and fixed dates (the latest month is 2026-10; metrics run 2024-11..2026-10), so
the same seed always gives byte-identical files. The catalogue lives in `ingest.demo_catalog`, the
business data and the planted alert situations in `ingest.demo_business`, the documents in
`ingest.demo_docs` (skipped, with an empty manifest, when that module is unavailable).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ingest.demo_business import (
    COMPETITOR_COLUMNS,
    CUSTOMER_COLUMNS,
    FTP_COLUMNS,
    HOLDING_COLUMNS,
    LOAN_COLUMNS,
    METRIC_COLUMNS,
    generate,
)
from ingest.demo_catalog import Catalog, build_catalog

DEFAULT_SEED = 20261123
BRANCH_COLUMNS = ("code", "name", "parent_code", "level")
USER_COLUMNS = ("user_id", "name", "role", "branch_code", "wecom_userid")
PRODUCT_COLUMNS = ("code", "name", "level", "category", "segment", "status", "owner_dept", "launch_date",
                   "retire_date", "aliases", "description")
LINK_COLUMNS = ("from_code", "to_code")
SUBJECT_COLUMNS = ("code", "name")
ELEMENT_COLUMNS = ("product_code", "element", "value", "unit")
SYSTEM_CODE_COLUMNS = ("system", "source_code", "product_code")
MANIFEST_COLUMNS = ("path", "title", "doc_type", "product_codes", "access", "effective_date")


def _write(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]] | Iterable[dict[str, Any]]) -> int:
    """Write one CSV (UTF-8, `\\n` line ends); rows are sequences in column order or dicts by column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            if isinstance(row, dict):
                writer.writerow(["" if row.get(c) is None else str(row.get(c)) for c in columns])
            else:
                writer.writerow(row)
            n += 1
    return n


def _documents(out: Path, cat: Catalog, seed: int) -> list[dict[str, Any]]:
    """The documents and their manifest rows; none when the documents writer is unavailable."""
    try:
        from ingest.demo_docs import write_documents
    except Exception:  # not written yet or broken: the tables stay usable without documents
        return []
    rows = write_documents(out / "docs", products=[dict(r) for r in cat.sellable], elements=cat.elements_by_code,
                           planted={k: list(v) for k, v in cat.planted.items()}, seed=seed)
    return list(rows or [])


def write_demo_bank(out: Path, seed: int = DEFAULT_SEED) -> dict[str, int]:
    """Write the demo bank in the data-contract format into `out` (created if missing); return row counts per file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    cat = build_catalog(rng)
    biz = generate(cat, rng)
    counts: dict[str, int] = {}
    tables: tuple[tuple[str, Sequence[str], Iterable[Any]], ...] = (
        ("branches.csv", BRANCH_COLUMNS, cat.branches),
        ("users.csv", USER_COLUMNS, cat.users),
        ("products.csv", PRODUCT_COLUMNS, cat.products),
        ("product_links.csv", LINK_COLUMNS, cat.links),
        ("subjects.csv", SUBJECT_COLUMNS, cat.subjects),
        ("product_elements.csv", ELEMENT_COLUMNS, cat.elements),
        ("system_codes.csv", SYSTEM_CODE_COLUMNS, cat.system_codes),
        ("metrics_monthly.csv", METRIC_COLUMNS, biz.metrics),
        ("customers.csv", CUSTOMER_COLUMNS, biz.customers),
        ("holdings.csv", HOLDING_COLUMNS, biz.holdings),
        ("loans.csv", LOAN_COLUMNS, biz.loans),
        ("ftp_curve.csv", FTP_COLUMNS, biz.ftp),
        ("competitor_rates.csv", COMPETITOR_COLUMNS, biz.competitors),
    )
    for name, columns, rows in tables:
        counts[name] = _write(out / name, columns, rows)
    manifest = _documents(out, cat, seed)
    counts["docs/manifest.csv"] = _write(out / "docs" / "manifest.csv", MANIFEST_COLUMNS, manifest)
    return counts
