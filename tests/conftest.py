"""Test fixtures: one embedded PostgreSQL for the whole run, a real database and never a mock."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.db import Database, open_database, stop_embedded
from core.settings import Settings

BANK_TABLES = (
    "branches", "branch_closure", "users", "products", "subjects", "product_links",
    "product_elements", "system_codes", "metrics_monthly", "customers", "holdings", "loans",
    "ftp_curve", "competitor_rates", "documents", "bank_files", "imports", "kb_chunks", "kb_documents", "kb_terms",
    "api_tokens", "chat_sessions", "chat_turns", "feedback", "wecom_inbox", "wecom_outbox",
    "metrics_rollup", "metrics_meta", "alert_events", "alert_dispositions", "alert_runs", "plan_drafts",
    "rate_limits",  # not audit_log: it is append-only (a trigger refuses TRUNCATE); tests filter their rows
)


class Banks:
    """One bank at a time in the shared database, written by `writers[name](folder)`; re-imported only
    when a test needs another."""

    def __init__(self, db: Database, root: Path, writers: dict[str, Callable[[Path], Any]]) -> None:
        self.db, self.root, self.writers, self.current = db, root, writers, ""

    def use(self, name: str) -> Database:
        from ingest.importer import import_folder

        if self.current != name:
            with self.db.connection() as conn:
                conn.execute("TRUNCATE " + ", ".join(BANK_TABLES) + " RESTART IDENTITY")
            path = self.root / name / "bank"
            self.writers[name](path)
            import_folder(self.db, path)
            self.current = name
        return self.db


def one(conn: Any, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The single row a query must return."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None, sql
    return dict(row)


@pytest.fixture(scope="session")
def pg_root() -> Iterator[Path]:
    """Where test databases live: not under pytest's tmp dir, which pytest keeps at mode 0700,
    while the embedded server runs as its own system user (when tests run as root)."""
    root = Path(tempfile.mkdtemp(prefix="puyi-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(pg_root: Path) -> Settings:
    # No rate limit for the suite's many quick questions; tests/test_ratelimit.py sets its own.
    return Settings(home=pg_root / "home", database_url=None, rate_limit_per_minute=0)


@pytest.fixture()
def pg_home(pg_root: Path) -> Path:
    """A fresh home for a test that starts its own embedded server."""
    home = Path(tempfile.mkdtemp(dir=pg_root))
    home.chmod(0o755)
    return home


@pytest.fixture(scope="session")
def db(settings: Settings) -> Iterator[Database]:
    database = open_database(settings)
    yield database
    database.close()
    stop_embedded(settings.pg_dir)  # before pg_root's directory is removed


@pytest.fixture()
def empty_db(db: Database) -> Database:
    """The shared database with every bank table emptied."""
    with db.connection() as conn:
        conn.execute("TRUNCATE " + ", ".join(BANK_TABLES) + " RESTART IDENTITY")
    return db


@pytest.fixture()
def bank_dir(tmp_path: Path) -> Path:
    """A small but complete bank folder in the data-contract format."""
    from tests.bankfactory import write_small_bank

    return write_small_bank(tmp_path / "bank")


@pytest.fixture(scope="module")
def loaded_db(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Database:
    """The small bank imported once for a module of read-only tests."""
    from ingest.importer import import_folder
    from tests.bankfactory import write_small_bank

    with db.connection() as conn:
        conn.execute("TRUNCATE " + ", ".join(BANK_TABLES) + " RESTART IDENTITY")
    import_folder(db, write_small_bank(tmp_path_factory.mktemp("bank") / "bank"))
    return db
