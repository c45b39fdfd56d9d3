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


def test_a_process_that_died_without_cleanup_does_not_keep_the_server_running(pg_home: Path):
    import json
    import subprocess
    import sys

    script = (
        "from pathlib import Path; from core.settings import Settings; from core.db import open_database;"
        f"open_database(Settings(home=Path({str(pg_home)!r}), database_url=None)).close()"
    )
    cwd = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", script], check=True, cwd=cwd, timeout=120)
    pg = pg_home / "pg"
    assert not (pg / "postmaster.pid").exists()  # the last user stopped it
    (pg / ".handle_pids.json").write_text(json.dumps([2**22 + 12345]))  # a pid that no longer exists
    subprocess.run([sys.executable, "-c", script], check=True, cwd=cwd, timeout=120)
    assert not (pg / "postmaster.pid").exists()
