"""Per-user sign-in tokens (`puyi users token USER_ID`): random, stored hashed, expiring."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from core.errors import UnknownUser


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(conn: psycopg.Connection[Any], user_id: str, days: int = 90) -> str:
    """A new token for an existing user; only its hash is stored."""
    if conn.execute("SELECT 1 FROM users WHERE user_id = %(u)s", {"u": user_id}).fetchone() is None:
        raise UnknownUser(f"未知用户 {user_id!r}：请确认用户编号 (unknown user)")
    token = "puyi_" + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_tokens (token_sha256, user_id, expires_at) VALUES (%(h)s, %(u)s, %(e)s)",
        {"h": _digest(token), "u": user_id, "e": datetime.now(UTC) + timedelta(days=days)},
    )
    return token


def user_for_token(conn: psycopg.Connection[Any], token: str) -> str | None:
    """The user a valid (known, unexpired, unrevoked) token belongs to, else None."""
    row = conn.execute(
        "SELECT user_id FROM api_tokens WHERE token_sha256 = %(h)s AND NOT revoked AND expires_at > now()",
        {"h": _digest(token)},
    ).fetchone()
    return None if row is None else str(row["user_id"])


def revoke_tokens(conn: psycopg.Connection[Any], user_id: str) -> int:
    return conn.execute(
        "UPDATE api_tokens SET revoked = true WHERE user_id = %(u)s AND NOT revoked", {"u": user_id}
    ).rowcount
