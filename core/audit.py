"""The audit trail: one append-only row per turn, on every channel, refused and failed turns too.

A row says who asked (user, role, branch scope), where (channel, session), what (the question,
masked), how it was answered (route, intent, tool calls with their arguments and result sizes,
citations by chunk id and title, the answer, masked, the grounding check), how long it took, and
the error when the turn failed. The database refuses UPDATE, DELETE and TRUNCATE on `audit_log`
(triggers in migration V9) and nothing in the product issues them; `puyi audit list|export`
reads it with filters.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.access import Principal
from core.errors import DatabaseUnavailable, PuyiError
from core.masking import mask_data, scrub_text

log = logging.getLogger("puyi.audit")

COLUMNS = ("id", "created_at", "user_id", "role", "scope", "scope_label", "channel", "session_id", "question",
           "route", "intent", "tool_calls", "citations", "answer", "grounding", "grounding_ok", "latency_ms",
           "status", "error")


def summarize_calls(tool_calls: Iterable[Any]) -> list[dict[str, Any]]:
    """Each tool call's name and arguments with the size of its result (not the result itself)."""
    out = []
    for call in tool_calls or []:
        result = call.get("result")
        size = len(json.dumps(result, ensure_ascii=False, default=str))
        rows = next((len(v) for v in result.values() if isinstance(v, list)), None) if isinstance(result, dict) else None
        out.append({"name": call.get("name"), "args": call.get("args") or {}, "result_chars": size,
                    **({"result_rows": rows} if rows is not None else {})})
    return out


def summarize_citations(citations: Iterable[Any]) -> list[dict[str, Any]]:
    return [{"chunk_id": c.get("chunk_id"), "title": c.get("title")} for c in citations or [] if isinstance(c, dict)]


class TurnAudit:
    """Collects one turn's facts as it runs and writes them once, whatever the outcome."""

    def __init__(self, question: str | None, user_id: str | None, channel: str | None,
                 session_id: str | None) -> None:
        self.started = time.perf_counter()
        self.question = question or ""
        self.user_id = user_id
        self.channel = channel
        self.session_id = session_id
        self.principal: Principal | None = None
        self.written = False

    def row(self, **fields: Any) -> dict[str, Any]:
        who = self.principal
        return {
            "user_id": (who.user_id if who else None) or self.user_id or "local-admin",
            "role": who.role if who else None,
            "scope": who.scope_branch if who else None,
            "scope_label": who.scope_label if who else None,
            "channel": self.channel,
            "session_id": self.session_id,
            "question": scrub_text(self.question)[:20000],
            "latency_ms": int((time.perf_counter() - self.started) * 1000),
            **fields,
        }

    def answered(self, conn: psycopg.Connection[Any], *, route: str, intent: str | None, tool_calls: Any,
                 citations: Any, answer: str, grounding: dict[str, Any] | None, session_id: str) -> None:
        self.session_id = session_id
        record(conn, self.row(
            route=route, intent=intent, tool_calls=summarize_calls(tool_calls),
            citations=summarize_citations(citations), answer=answer, grounding=grounding,
            status="refused" if route == "refused" else "answered",
        ))
        self.written = True

    def failed(self, db: Any, exc: BaseException) -> None:
        """Record a turn that raised; never raises itself (the original error matters more)."""
        if self.written:
            return
        expected = isinstance(exc, PuyiError) and not isinstance(exc, DatabaseUnavailable)
        try:
            with db.connection() as conn:
                record(conn, self.row(status="refused" if expected else "failed",
                                      error=f"{type(exc).__name__}: {scrub_text(str(exc))}"[:2000]))
            self.written = True
        except Exception as audit_exc:  # the database itself is down: say so in the log
            log.error("audit: could not record a failed turn of %s: %s", self.user_id, audit_exc)


def record(conn: psycopg.Connection[Any], row: dict[str, Any]) -> int:
    """Append one audit row (masked again here, whatever the caller did); returns its id."""
    row = mask_data(row)
    grounding = row.get("grounding")
    found = conn.execute(
        "INSERT INTO audit_log (user_id, role, scope, scope_label, channel, session_id, question, route, intent,"
        " tool_calls, citations, answer, grounding, grounding_ok, latency_ms, status, error)"
        " VALUES (%(user_id)s, %(role)s, %(scope)s, %(scope_label)s, %(channel)s, %(session_id)s, %(question)s,"
        " %(route)s, %(intent)s, %(tool_calls)s, %(citations)s, %(answer)s, %(grounding)s, %(grounding_ok)s,"
        " %(latency_ms)s, %(status)s, %(error)s) RETURNING id",
        {
            **{k: row.get(k) for k in ("user_id", "role", "scope", "scope_label", "channel", "session_id",
                                       "question", "route", "intent", "answer", "latency_ms", "status", "error")},
            "tool_calls": Jsonb(row.get("tool_calls") or []),
            "citations": Jsonb(row.get("citations") or []),
            "grounding": Jsonb(grounding) if grounding is not None else None,
            "grounding_ok": grounding.get("ok") if isinstance(grounding, dict) else None,
        },
    ).fetchone()
    assert found is not None
    return int(found["id"])


def list_audit(
    conn: psycopg.Connection[Any],
    user: str | None = None,
    route: str | None = None,
    channel: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    grounding_failed: bool = False,
    status: str | None = None,
    limit: int | None = 100,
) -> list[dict[str, Any]]:
    """Audit rows, newest first, filtered; every filter is a bound parameter."""
    rows = conn.execute(
        "SELECT " + ", ".join(COLUMNS) + " FROM audit_log"
        " WHERE (%(user)s::text IS NULL OR user_id = %(user)s)"
        " AND (%(route)s::text IS NULL OR route = %(route)s)"
        " AND (%(channel)s::text IS NULL OR channel = %(channel)s)"
        " AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)"
        " AND (NOT %(gfail)s OR grounding_ok = false)"
        " AND (%(status)s::text IS NULL OR status = %(status)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"user": user, "route": route, "channel": channel, "since": since, "until": until,
         "gfail": grounding_failed, "status": status, "limit": limit},
    ).fetchall()
    return [mask_data(dict(r)) for r in rows]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def to_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps({k: _plain(v) for k, v in r.items()}, ensure_ascii=False, default=str) + "\n"
                   for r in rows)


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    """One line per turn; JSON columns (tool calls, citations, grounding) as JSON text."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([
            json.dumps(r.get(c), ensure_ascii=False, default=str) if isinstance(r.get(c), dict | list)
            else "" if r.get(c) is None else _plain(r.get(c))
            for c in COLUMNS
        ])
    return buf.getvalue()


def parse_when(text: str | None) -> datetime | None:
    """--since/--until: an ISO date or time (2026-10-01, 2026-10-01T09:30, local time) or a span
    back from now (30m, 12h, 7d)."""
    if not text:
        return None
    text = text.strip()
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1:].lower() in units:
        return datetime.now().astimezone() - timedelta(seconds=int(text[:-1]) * units[text[-1:].lower()])
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PuyiError(f"时间格式不正确：{text}（应为 2026-10-01、2026-10-01T09:30 或 30m/12h/7d）(bad time)") from exc
    return when if when.tzinfo else when.astimezone()


class ScrubPersonalData(logging.Filter):
    """Masks ID and mobile numbers in every log line (message, arguments and traceback text), so
    that a question or an error quoting one never reaches a log file in the clear."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub_text(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub_text(logging.Formatter().formatException(record.exc_info))
        return True


def scrub_logs(logger: logging.Logger | None = None) -> None:
    """Put the filter on the handlers of a logger (the root logger by default), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, ScrubPersonalData) for f in handler.filters):
            handler.addFilter(ScrubPersonalData())
