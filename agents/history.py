"""Conversations as stored: sessions, their turns and the feedback on each turn.

Every channel records what it showed (already masked), so a turn can be traced, rated and audited.
A session belongs to the person who started it; nobody else can read or continue it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.errors import PuyiError

TITLE_CHARS = 40


class NotYours(PuyiError):
    """A session or turn that belongs to someone else (or does not exist)."""


def _title(question: str) -> str:
    text = " ".join(question.split())
    return text if len(text) <= TITLE_CHARS else text[:TITLE_CHARS] + "…"


def check_session(conn: psycopg.Connection[Any], session_id: str, user_id: str) -> bool:
    """True if the session exists and is the user's, False if it is new; NotYours otherwise."""
    row = conn.execute(
        "SELECT user_id FROM chat_sessions WHERE session_id = %(s)s", {"s": session_id}
    ).fetchone()
    if row is None:
        return False
    if row["user_id"] != user_id:
        raise NotYours("该会话不属于您，请开始新会话 (session belongs to another user)")
    return True


def record_turn(
    conn: psycopg.Connection[Any],
    *,
    session_id: str,
    user_id: str,
    channel: str,
    question: str,
    route: str,
    answer: str,
    citations: list[dict[str, Any]],
    data: Any,
    elapsed_ms: int | None = None,
) -> int:
    """Store one turn (creating its session on first use) and return its turn_id."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO chat_sessions (session_id, user_id, channel, title)"
            " VALUES (%(s)s, %(u)s, %(c)s, %(t)s)"
            " ON CONFLICT (session_id) DO UPDATE SET updated_at = now()"
            " WHERE chat_sessions.user_id = EXCLUDED.user_id",
            {"s": session_id, "u": user_id, "c": channel, "t": _title(question)},
        )
        row = conn.execute(
            "INSERT INTO chat_turns (session_id, user_id, channel, question, route, answer, citations, data, elapsed_ms)"
            " SELECT %(s)s, %(u)s, %(c)s, %(q)s, %(r)s, %(a)s, %(ci)s, %(d)s, %(ms)s"
            " FROM chat_sessions WHERE session_id = %(s)s AND user_id = %(u)s"
            " RETURNING turn_id",
            {
                "s": session_id, "u": user_id, "c": channel, "q": question, "r": route, "a": answer,
                "ci": Jsonb(citations), "d": Jsonb(data), "ms": elapsed_ms,
            },
        ).fetchone()
    if row is None:
        raise NotYours("该会话不属于您，请开始新会话 (session belongs to another user)")
    return int(row["turn_id"])


def list_sessions(conn: psycopg.Connection[Any], user_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The user's conversations, most recent first."""
    return list(conn.execute(
        "SELECT s.session_id, s.title, s.channel, s.created_at, s.updated_at,"
        " (SELECT count(*) FROM chat_turns t WHERE t.session_id = s.session_id) AS turns"
        " FROM chat_sessions s WHERE s.user_id = %(u)s ORDER BY s.updated_at DESC LIMIT %(n)s",
        {"u": user_id, "n": limit},
    ).fetchall())


def session_turns(conn: psycopg.Connection[Any], session_id: str, user_id: str) -> dict[str, Any]:
    """One of the user's conversations with its turns in order, and the user's feedback on each."""
    session = conn.execute(
        "SELECT session_id, title, channel, created_at, updated_at FROM chat_sessions"
        " WHERE session_id = %(s)s AND user_id = %(u)s",
        {"s": session_id, "u": user_id},
    ).fetchone()
    if session is None:
        raise NotYours("没有找到该会话 (no such session)")
    turns = conn.execute(
        "SELECT t.turn_id, t.question, t.route, t.answer, t.citations, t.data, t.created_at,"
        " CASE WHEN f.turn_id IS NULL THEN NULL"
        "      ELSE jsonb_build_object('rating', f.rating, 'comment', f.comment) END AS feedback"
        " FROM chat_turns t LEFT JOIN feedback f ON f.turn_id = t.turn_id AND f.user_id = t.user_id"
        " WHERE t.session_id = %(s)s ORDER BY t.turn_id",
        {"s": session_id},
    ).fetchall()
    return {**session, "turns": list(turns)}


def save_feedback(conn: psycopg.Connection[Any], turn_id: int, user_id: str, rating: int, comment: str = "") -> None:
    """Rate one of the user's own turns (👍 = 1, 👎 = -1); rating again replaces the earlier one."""
    if rating not in (1, -1):
        raise PuyiError("评价只能是 1（有用）或 -1（没用） (rating must be 1 or -1)")
    row = conn.execute(
        "INSERT INTO feedback (turn_id, user_id, rating, comment)"
        " SELECT turn_id, user_id, %(r)s, %(c)s FROM chat_turns WHERE turn_id = %(t)s AND user_id = %(u)s"
        " ON CONFLICT (turn_id, user_id) DO UPDATE SET rating = EXCLUDED.rating,"
        " comment = EXCLUDED.comment, created_at = now()"
        " RETURNING turn_id",
        {"t": turn_id, "u": user_id, "r": rating, "c": comment.strip()[:2000]},
    ).fetchone()
    if row is None:
        raise NotYours("没有找到这条回答 (no such turn of yours)")
