from pathlib import Path

import pytest

from core.db import Database, open_database
from core.errors import DatabaseUnavailable
from core.migrations import MIGRATIONS, current_version
from core.settings import Settings


def test_migrations_are_recorded_and_idempotent(db: Database):
    with db.connection() as conn:
        assert current_version(conn) == MIGRATIONS[-1][0]
    assert db.migrate() == []  # a second run applies nothing


def test_pgvector_is_available(db: Database):
    with db.connection() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        row = conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector AS d").fetchone()
    assert row is not None and row["d"] == pytest.approx(1.0)


def test_database_directory_that_is_a_file_gives_a_clear_error(pg_home: Path):
    home = pg_home
    (home / "pg").write_text("not a database")
    with pytest.raises(DatabaseUnavailable, match="不是目录"):
        open_database(Settings(home=home, database_url=None))


def test_database_directory_of_another_postgres_version_gives_a_clear_error(pg_home: Path):
    pg = pg_home / "pg"
    pg.mkdir(parents=True)
    (pg / "PG_VERSION").write_text("11\n")
    with pytest.raises(DatabaseUnavailable, match="内置 PostgreSQL 无法"):
        open_database(Settings(home=pg_home, database_url=None))


def test_unreachable_external_database_gives_a_clear_error(tmp_path: Path):
    settings = Settings(home=tmp_path, database_url="postgresql://puyi@127.0.0.1:1/puyi")
    with pytest.raises(DatabaseUnavailable, match="无法连接数据库"):
        open_database(settings)
