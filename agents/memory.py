"""Conversation memory: LangGraph's Postgres checkpointer on Puyi's own database, the small context
one turn leaves for the next, follow-up resolution, /reset and expiry.

Design:
- One LangGraph thread per channel, user and conversation (`thread_id`). Only a turn with a
  conversation (a channel or a session id) runs on a thread; a bare `Assistant.ask(question)` stays
  stateless and writes nothing.
- The checkpointer is a `PostgresSaver` whose cursors come from `core.db`'s pool, each in its own
  transaction (the pool's connections are not autocommit, which the stock saver expects);
  `setup()` (CREATE INDEX CONCURRENTLY) runs once per Database on a separate autocommit connection,
  under an advisory lock so that several processes starting together do not race.
- After each turn `next_context` stores a small JSON-able `context` in the state (products,
  metric, period, alert id, route, intent, and the resolved metric question). The next turn's
  `resolve_followup` rewrites an elliptical or pronoun question into a complete one BEFORE the
  normal classification: the router, the metric parser and the alert handler then read an
  ordinary question, so no route needs to know about memory, and the rewritten text is visible
  in the tool-call arguments for audit. Anything the new question names itself (a product, a
  metric, a period, a category) wins over the context.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any, cast

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from psycopg.rows import DictRow, dict_row

from agents.router import RouteDecision, classify, score_routes
from core.db import Database
from tools.catalog import Candidate, CatalogIndex
from tools.metric_defs import FACTS, METRICS, find_metric
from tools.periods import FuturePeriod, find_period, label_for

log = logging.getLogger(__name__)

RESET_ANSWER = "好的，已开始新的对话。"
_RESET_RE = re.compile(r"^\s*(?:/reset|/new|新对话|重新开始|开始新对话)\s*[。.!！]?\s*$", re.IGNORECASE)
_SETUP_LOCK_KEY = 7_302_017  # pg_advisory_lock key: one process at a time creates the checkpoint tables
_MAX_PRODUCTS = 3


def is_reset(question: str | None) -> bool:
    """A message that asks to start the conversation over: 「/reset」「新对话」「重新开始」."""
    return bool(question and _RESET_RE.match(question))


def thread_id(channel: str | None, user_id: str, session_id: str) -> str:
    """One thread per channel, user and conversation."""
    return f"{channel or 'api'}:{user_id}:{session_id}"


# --- the checkpointer ------------------------------------------------------------------------------


class PooledSaver(PostgresSaver):
    """A PostgresSaver on `core.db`'s pool: each cursor in a transaction committed on exit."""

    def __init__(self, db: Database) -> None:
        # Our own types in the state are allowed by name; anything else unknown is returned raw.
        serde = JsonPlusSerializer(allowed_msgpack_modules=[RouteDecision, Candidate])
        # Cursors come from db.connection() (see _cursor), so the saver holds no connection of its own
        # and building it does not open the pool.
        super().__init__(cast(Any, None), serde=serde)
        self.db = db
        self._ready = False
        self._setup_lock = threading.Lock()

    def setup(self) -> None:
        """Create or migrate the checkpoint tables (idempotent; cheap once done)."""
        with self._setup_lock:
            if self._ready:
                return
            with psycopg.connect(self.db.url, autocommit=True, row_factory=dict_row) as conn:
                conn.execute("SELECT pg_advisory_lock(%(k)s)", {"k": _SETUP_LOCK_KEY})
                try:
                    PostgresSaver(conn).setup()
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%(k)s)", {"k": _SETUP_LOCK_KEY})
            self._ready = True

    @contextmanager
    def _cursor(self, *, pipeline: bool = False) -> Iterator[psycopg.Cursor[DictRow]]:
        if not self._ready:
            self.setup()
        with self.db.connection() as conn, conn.transaction(), conn.cursor(binary=True, row_factory=dict_row) as cur:
            yield cur


_SAVERS: weakref.WeakKeyDictionary[Database, PooledSaver] = weakref.WeakKeyDictionary()
_SAVERS_LOCK = threading.Lock()


def checkpointer(db: Database) -> PooledSaver:
    """The database's checkpointer (one per Database; the tables are created on first use)."""
    with _SAVERS_LOCK:
        saver = _SAVERS.get(db)
        if saver is None:
            saver = _SAVERS[db] = PooledSaver(db)
    return saver


def forget(db: Database, thread: str) -> None:
    """Delete everything a thread remembers."""
    checkpointer(db).delete_thread(thread)


def expire_threads(db: Database, older_than_days: float | None = None) -> int:
    """Delete the checkpoints of threads untouched for `older_than_days` (default: the setting
    memory_ttl_days; 0 keeps them forever); returns how many threads were forgotten."""
    days = db.settings.memory_ttl_days if older_than_days is None else older_than_days
    if days <= 0:
        return 0  # 0 = keep conversations forever
    saver = checkpointer(db)
    saver.setup()
    with db.connection() as conn:
        # A checkpoint's "ts" is when it was written; the thread's newest one is its last turn.
        rows = conn.execute(
            "SELECT thread_id FROM checkpoints GROUP BY thread_id"
            " HAVING max((checkpoint->>'ts')::timestamptz) < now() - make_interval(secs => %(s)s)",
            {"s": float(days) * 86400},
        ).fetchall()
    threads = [r["thread_id"] for r in rows]
    if threads:
        saver.prune(threads, strategy="delete")
        log.info("forgot %d conversation threads untouched for %s days", len(threads), days)
    return len(threads)


async def expire_daily(db: Database, every_seconds: float = 86400.0) -> None:
    """Expire old threads now and then once a day (the server lifespan runs this as a task)."""
    while True:
        try:
            await asyncio.to_thread(expire_threads, db)
        except Exception:  # a failed sweep is retried tomorrow; it must never stop the server
            log.exception("expiring conversation threads failed")
        await asyncio.sleep(every_seconds)


# --- the context one turn leaves for the next ------------------------------------------------------


def _product_names(conn: psycopg.Connection[Any], codes: list[str]) -> list[dict[str, str]]:
    if not codes:
        return []
    rows = conn.execute("SELECT code, name FROM products WHERE code = ANY(%(c)s)", {"c": codes}).fetchall()
    names = {r["code"]: r["name"] for r in rows}
    return [{"code": c, "name": names[c]} for c in codes if c in names]


def _codes_from_calls(decision: RouteDecision, calls: list[dict[str, Any]]) -> list[str]:
    codes = [c.code for c in decision.products if not decision.loose]
    for call in calls:
        args, result = call.get("args") or {}, call.get("result")
        result = result if isinstance(result, dict) else {}
        name = call.get("name")
        if name == "parse_metric_question":
            codes += list(result.get("products") or [])
        elif name == "find_product" and result.get("status") == "found" and result.get("candidates"):
            codes.append(result["candidates"][0]["code"])
        elif name == "explain_alert":
            codes += [a["product"]["code"] for a in result.get("alerts") or [] if a.get("product")]
            if args.get("product_code"):
                codes.append(args["product_code"])
        elif name in ("get_product", "trace_down", "trace_up") and args.get("code"):
            codes.append(args["code"])
    return list(dict.fromkeys(str(c) for c in codes))[:_MAX_PRODUCTS]


def _alert_from_calls(calls: list[dict[str, Any]]) -> int | None:
    for call in calls:
        result = call.get("result")
        if not isinstance(result, dict):
            continue
        if call.get("name") == "explain_alert" and result.get("alerts"):
            return int(result["alerts"][0]["id"])
        if call.get("name") == "list_alerts" and result.get("items"):
            return int(result["items"][0]["id"])  # 「为什么」 after a list: its first (top) row
        if call.get("name") == "dispose_alert" and (call.get("args") or {}).get("alert_id") is not None:
            return int(call["args"]["alert_id"])
    return None


def next_context(conn: psycopg.Connection[Any], state: dict[str, Any]) -> dict[str, Any]:
    """The context after this turn: what it was about replaces what the previous turns were about."""
    context = dict(state.get("context") or {})
    decision: RouteDecision | None = state.get("decision")
    if decision is None or decision.route in ("help", "refused"):
        return context
    calls = state.get("tool_calls") or []
    context.update(route=decision.route, intent=decision.intent)
    codes = _codes_from_calls(decision, calls)
    if codes:
        context["products"] = _product_names(conn, codes)
    elif decision.route in ("catalog", "metrics") and decision.intent not in ("product", "elements", "find"):
        context["products"] = []  # a question over a category or the whole bank: no product in focus
    parsed = next((c["result"] for c in calls if c["name"] == "parse_metric_question"), None)
    if isinstance(parsed, dict) and parsed.get("metric"):
        context["metric"] = parsed["metric"]
        context["period"] = {"start": parsed["start"], "end": parsed["end"], "label": parsed.get("period_label")}
        context["question"] = decision.question  # for swapping only the period or the metric next time
    elif decision.route == "metrics":
        context.pop("question", None)
    alert = _alert_from_calls(calls)
    if alert is not None:
        context["alert_id"] = alert
    return context


# --- follow-ups ------------------------------------------------------------------------------------

_PRONOUN_RE = re.compile(
    r"它们|它|(?:这|那|该|此)(?:个|款|只)?产品|这款|那款|该款|这个(?![月季年])|那个(?![月季年])"
)
_MARKER_RE = re.compile(r"^\s*(?:那么|那|还有|再看看?|换成|改成|如果是|要是)|(?:呢|咧)[\s?？。.!！]*$")
_WHY_RE = re.compile(
    r"^\s*(?:那|那么|这|这是)?(?:为什么|为啥|为何|怎么回事|什么原因|原因是什么|原因呢|原因)(?:呢|啊|呀|了)?[\s?？。.!！]*$"
)
_FILLER_RE = re.compile(
    r"是多少|多少|怎么样|如何|情况|看看|看下|一下|那么|还有|换成|改成|如果是|要是|再|查|那|的|是|呢|吗|啊|呀|了|咧"
)
_PUNCT_RE = re.compile(r"[\s,，。.!！?？、;；:：()（）]+")
# Words of a question over many products: a list, a ranking, a category. Never filled with "it".
_MANY_RE = re.compile(r"有哪些|哪些|列出|清单|排名|排行|前\s*\d+|前[一二三四五六七八九十]+|各(?:产品|分行|支行|机构)|"
                      r"贷款类|存款类|全行|所有|全部|每个")
# Ways to look at the same figure: a comparison, a trend, a breakdown, a ranking.
_MODIFIER_RE = re.compile(r"环比|同比|趋势|走势|变化|(?:按|分|各)各?(?:分行|支行|机构|产品)|排名|排行|前\s*\d+名?|"
                          r"前[一二三四五六七八九十]+名?|占比")
_FAR = date(2100, 1, 1)


def _period_said(text: str) -> str | None:
    """The period expression a text contains ("" when one is there but unreadable), else None."""
    try:
        period, said = find_period(text, _FAR)
    except FuturePeriod:
        return ""
    return said if period is not None else None


def _metric_surface(text: str, key: str) -> str | None:
    """Which of a metric's names the text uses (longest first), or None."""
    d = METRICS.get(key) or FACTS.get(key)
    if d is None:
        return None
    for alias in sorted({d.name, *d.aliases}, key=len, reverse=True):
        if alias and alias in text:
            return alias
    return None


def _bare(text: str, *cut: str | None) -> str:
    """What is left of a question without the given parts, pronouns, markers and filler words."""
    for part in cut:
        if part:
            text = text.replace(part, " ", 1)
    text = _PRONOUN_RE.sub(" ", text)
    text = _FILLER_RE.sub(" ", text)
    return _PUNCT_RE.sub("", text)


def resolve_followup(
    question: str, decision: RouteDecision, previous: dict[str, Any] | None, index: CatalogIndex | None = None
) -> RouteDecision:
    """The decision for a question read in the light of the conversation so far.

    A question that stands on its own comes back unchanged. A follow-up ("那它的逾期率呢？",
    "上个月呢？", "它的利率是多少", "为什么？") is rewritten into the complete question it stands for
    and classified again: pronouns become the products in focus, a bare period or metric is swapped
    into the previous metric question, and a metric question gets the previous period.
    """
    if not previous or decision.route in ("help", "refused"):
        return decision
    text = question.strip()
    why = bool(_WHY_RE.match(text))
    pronoun = _PRONOUN_RE.search(text)
    marker = bool(_MARKER_RE.search(text))
    metric = find_metric(text)
    period_said = _period_said(text)
    metric_said = _metric_surface(text, metric.key) if metric is not None else None
    leftover = _bare(text, metric_said, period_said)
    elliptical = not leftover  # nothing but a metric and/or a period ("不良率呢", "上个月呢？")
    if not (why or pronoun or marker or elliptical):
        return decision
    named = bool(decision.products) and not decision.loose
    products = [p["name"] for p in previous.get("products") or []]

    if why:
        rewritten = _why(previous, products)
        return classify(rewritten, index) if rewritten else decision

    prev_question = previous.get("question")
    if previous.get("route") == "metrics" and prev_question and not named and _MODIFIER_RE.search(text) \
            and not _bare(_MODIFIER_RE.sub(" ", text), None, period_said):
        # Only a way to look at the same figure ("环比呢", "各分行呢", "走势呢"): add it to the previous question.
        said = [m.group(0) for m in _MODIFIER_RE.finditer(text)]
        base = _swap(prev_question, previous, None, None, period_said) or prev_question
        return classify(f"{base} {''.join(said)}", index)
    if elliptical and previous.get("route") == "metrics" and prev_question and not named:
        swapped = _swap(prev_question, previous, metric, metric_said, period_said)
        if swapped:
            return classify(swapped, index)

    rewritten = text
    if products and not named and not _MANY_RE.search(text):
        names = "、".join(products)
        rewritten = _PRONOUN_RE.sub(names, rewritten, count=1) if pronoun else f"{names} {rewritten}"
    others = {r: s for r, s in score_routes(_bare(text, metric_said, period_said) or "").items() if r != "metrics"}
    if metric is None and previous.get("route") == "metrics" and previous.get("metric") and not any(others.values()):
        prev_metric = METRICS.get(previous["metric"]) or FACTS.get(previous["metric"])
        if prev_metric is not None:
            rewritten = f"{rewritten} {prev_metric.name}"
    if rewritten == text and period_said is not None:
        return decision
    result = classify(rewritten, index)
    period = previous.get("period")
    if result.route == "metrics" and result.intent == "metric" and period_said is None and period:
        try:
            start, end = (date.fromisoformat(period[k] + "-01") for k in ("start", "end"))
        except (KeyError, TypeError, ValueError):
            return result
        result = classify(f"{label_for(start, end)} {rewritten}", index)
    return result


def _why(previous: dict[str, Any], products: list[str]) -> str | None:
    """「为什么？」: the alert in focus (after a list: its first row), else the product's alerts."""
    if previous.get("route") == "alert" and previous.get("alert_id") is not None:
        return f"预警 #{previous['alert_id']} 为什么触发"
    if previous.get("route") in ("alert", "metrics") and products:
        return f"{products[0]}为什么有预警"
    return None


def _swap(prev_question: str, previous: dict[str, Any], metric: Any, metric_said: str | None,
          period_said: str | None) -> str | None:
    """The previous metric question with only its metric and/or period replaced (so its products,
    branch, ranking and grouping carry over)."""
    out = prev_question
    if metric is not None and metric_said:
        old = _metric_surface(out, previous.get("metric") or "")
        if old is None:
            return None
        out = out.replace(old, metric_said, 1)
    if period_said:
        old_period = _period_said(out)
        if old_period is None:
            out = f"{period_said}{out}"
        elif old_period and old_period in out:
            out = out.replace(old_period, period_said, 1)
        else:
            return None  # a period we cannot locate in the text: build the question afresh instead
    return out if out != prev_question else None
