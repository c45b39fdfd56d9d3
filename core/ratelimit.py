"""Per-user rate limits: at most N questions per user and minute, over every channel and process.

The count lives in PostgreSQL (`rate_limits`, one row per user and clock minute), so every worker,
replica and channel shares it; a turn costs one upsert on the primary key. Windows are fixed clock
minutes of the database's clock: simple, shared by every process, and the refusal says exactly when
the next minute starts. Refused attempts count too, which does not matter within a fixed window.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import psycopg

from core.errors import PuyiError


class RateLimited(PuyiError):
    """Too many questions from one user this minute (HTTP 429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def check_rate(conn: psycopg.Connection[Any], user_id: str, limit: int, now: datetime | None = None) -> int:
    """Count one question for the user in the current minute; RateLimited over `limit` (0 = off).
    Returns the questions counted this minute. `now` replaces the database clock (tests)."""
    if limit <= 0:
        return 0
    row = conn.execute(
        "WITH w AS (SELECT date_trunc('minute', coalesce(%(now)s::timestamptz, now())) AS minute),"
        " old AS (DELETE FROM rate_limits WHERE user_id = %(u)s AND minute < (SELECT minute FROM w))"
        " INSERT INTO rate_limits (user_id, minute, hits) SELECT %(u)s, minute, 1 FROM w"
        " ON CONFLICT (user_id, minute) DO UPDATE SET hits = rate_limits.hits + 1"
        " RETURNING hits, extract(epoch FROM minute + interval '1 minute'"
        "   - coalesce(%(now)s::timestamptz, now())) AS wait",
        {"u": user_id, "now": now},
    ).fetchone()
    assert row is not None
    hits = int(row["hits"])
    if hits > limit:
        wait = max(1, math.ceil(float(row["wait"])))
        raise RateLimited(
            f"提问过于频繁：每人每分钟最多 {limit} 个问题，请 {wait} 秒后再试 (rate limit reached, retry in {wait} s)",
            retry_after=wait,
        )
    return hits
