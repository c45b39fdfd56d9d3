"""Conversation memory: follow-ups across turns, /reset, threads kept apart, shared across
processes, and expiry (agents/memory.py on LangGraph's Postgres checkpointer)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agents import memory
from agents.router import classify
from agents.service import Answer, Assistant
from core.db import Database
from tests.conftest import one
from tools.alerts import run_alerts
from tools.catalog import catalog_index


@pytest.fixture(scope="module")
def assistant(loaded_db: Database) -> Assistant:
    return Assistant(loaded_db, llm=False)


class Chat:
    """One conversation: a user on a channel with one session id."""

    def __init__(self, assistant: Assistant, user: str = "admin01", channel: str = "web",
                 session: str | None = None) -> None:
        self.assistant, self.user, self.channel = assistant, user, channel
        self.session = session or uuid.uuid4().hex

    def ask(self, question: str) -> Answer:
        return self.assistant.ask(question, user_id=self.user, session_id=self.session, channel=self.channel)


def parsed(a: Answer) -> dict[str, Any]:
    return next(c["result"] for c in a.data["tool_calls"] if c["name"] == "parse_metric_question")


def tool(a: Answer, name: str) -> dict[str, Any]:
    return next(c for c in a.data["tool_calls"] if c["name"] == name)


def test_metric_follow_ups_carry_product_metric_and_period(assistant: Assistant):
    chat = Chat(assistant)
    first = chat.ask("税e快贷2026年9月的不良率是多少")
    assert first.route == "metrics"
    p = parsed(first)
    assert (p["metric"], p["products"], p["start"]) == ("npl_rate", ["SL002"], "2026-09")

    other_metric = chat.ask("那它的逾期率呢？")  # product and period carried, metric changed
    p = parsed(other_metric)
    assert other_metric.route == "metrics"
    assert (p["metric"], p["products"], p["start"], p["end"]) == ("overdue_rate", ["SL002"], "2026-09", "2026-09")
    assert "2.4" in other_metric.answer  # the bank's SL002 overdue rate is 2.4 % in every month

    other_period = chat.ask("上个月呢？")  # metric and product carried, period changed
    p = parsed(other_period)
    assert (p["metric"], p["products"], p["start"]) == ("overdue_rate", ["SL002"], "2026-09")
    assert other_period.route == "metrics"

    only_month = chat.ask("2026年8月呢")
    p = parsed(only_month)
    assert (p["metric"], p["products"], p["start"]) == ("overdue_rate", ["SL002"], "2026-08")

    only_metric = chat.ask("不良率")  # elliptical: only a metric
    p = parsed(only_metric)
    assert (p["metric"], p["products"], p["start"]) == ("npl_rate", ["SL002"], "2026-08")


def test_a_comparison_or_breakdown_alone_applies_to_the_same_figure(assistant: Assistant):
    chat = Chat(assistant)
    chat.ask("税e快贷2026年10月的不良率是多少")
    mom = parsed(chat.ask("环比呢？"))
    assert (mom["metric"], mom["products"], mom["start"], mom.get("compare")) == ("npl_rate", ["SL002"], "2026-10", "mom")
    by_branch = parsed(chat.ask("各分行呢"))
    assert (by_branch["metric"], by_branch["products"], by_branch.get("group_by")) == ("npl_rate", ["SL002"], "branch")


def test_the_period_carries_into_a_pronoun_question(assistant: Assistant):
    chat = Chat(assistant)
    chat.ask("2026年8月薪易快贷的余额是多少")
    a = chat.ask("它的不良率是多少")
    p = parsed(a)
    assert (p["metric"], p["products"], p["start"]) == ("npl_rate", ["SL001"], "2026-08")


def test_a_ranking_keeps_its_shape_when_only_the_period_changes(assistant: Assistant):
    chat = Chat(assistant)
    first = parsed(chat.ask("2026年10月贷款类不良率最高的前2个产品"))
    again = parsed(chat.ask("9月呢？"))
    assert again["start"] == "2026-09" and again["metric"] == "npl_rate"
    assert (again.get("group_by"), again.get("top"), again.get("category")) == (
        first.get("group_by"), first.get("top"), first.get("category"))


def test_catalogue_pronoun_is_the_product_just_discussed(assistant: Assistant):
    chat = Chat(assistant)
    first = chat.ask("介绍一下薪易快贷")
    assert first.route == "catalog"
    a = chat.ask("它的利率是多少")
    assert a.route == "catalog"
    assert tool(a, "get_product")["args"]["code"] == "SL001"
    assert "3.45%" in a.answer
    b = chat.ask("这款产品的期限呢？")
    assert tool(b, "get_product")["args"]["code"] == "SL001"


def test_an_explicitly_named_product_wins_over_the_context(assistant: Assistant):
    chat = Chat(assistant)
    chat.ask("薪易快贷2026年9月的不良率是多少")
    a = chat.ask("税e快贷呢？")
    p = parsed(a)
    assert (p["metric"], p["products"], p["start"]) == ("npl_rate", ["SL002"], "2026-09")
    b = chat.ask("薪易快贷的利率是多少")
    assert b.route == "catalog" and tool(b, "get_product")["args"]["code"] == "SL001"
    # a category question is about many products: "it" is not filled in
    c = chat.ask("贷款类有哪些产品")
    assert c.route == "catalog" and tool(c, "list_products")


def test_why_after_an_alert_list_explains_its_first_alert(assistant: Assistant, loaded_db: Database):
    run_alerts(loaded_db)
    chat = Chat(assistant, user="risk01")
    listing = chat.ask("本月有哪些预警")
    items = tool(listing, "list_alerts")["result"]["items"]
    assert items, "the small bank fires at least one alert"
    why = chat.ask("为什么？")
    assert why.route == "alert"
    explained = tool(why, "explain_alert")
    assert explained["args"] == {"alert_id": items[0]["id"]}
    assert f"#{items[0]['id']}" in why.answer
    again = chat.ask("那为什么呢")  # after an explanation: the same alert
    assert tool(again, "explain_alert")["args"] == {"alert_id": items[0]["id"]}


def test_standalone_questions_are_left_alone(loaded_db: Database):
    with loaded_db.connection() as conn:
        index = catalog_index(conn)
    previous = {"route": "metrics", "products": [{"code": "SL002", "name": "税e快贷"}], "metric": "npl_rate",
                "period": {"start": "2026-09", "end": "2026-09"}, "question": "税e快贷2026年9月的不良率是多少"}
    for q in ("贷款类有多少个产品？", "薪易快贷的利率是多少", "你能做什么", "存款保险最高赔付多少？"):
        d = classify(q, index)
        assert memory.resolve_followup(q, d, previous, index) is d
    assert memory.resolve_followup("它的利率是多少", classify("它的利率是多少", index), None, index).products == []


def test_reset_forgets_the_context_in_every_spelling(assistant: Assistant):
    chats = [Chat(assistant), Chat(assistant, channel="openai"),
             Chat(assistant, user="risk01", channel="wecom", session="wecom:risk01")]  # WeCom: one session per user
    for word, chat in zip(("/reset", "新对话", "重新开始"), chats, strict=True):
        chat.ask("介绍一下薪易快贷")
        reset = chat.ask(word)
        assert reset.answer == memory.RESET_ANSWER and reset.turn_id is not None
        a = chat.ask("它的利率是多少")
        assert not any(c["name"] == "get_product" for c in a.data["tool_calls"])


def test_two_assistants_on_two_databases_continue_one_thread(loaded_db: Database):
    other_db = Database(loaded_db.settings)  # a second process: its own URL lookup and pool
    try:
        one_side, other_side = Assistant(loaded_db, llm=False), Assistant(other_db, llm=False)
        session = uuid.uuid4().hex
        Chat(one_side, session=session).ask("介绍一下税e快贷")
        a = Chat(other_side, session=session).ask("它的利率是多少")
        assert tool(a, "get_product")["args"]["code"] == "SL002"
    finally:
        other_db.close()


def test_users_channels_and_sessions_never_share_context(assistant: Assistant, loaded_db: Database):
    session = uuid.uuid4().hex
    Chat(assistant, user="admin01", channel="web", session=session).ask("介绍一下税e快贷")
    for chat in (Chat(assistant, user="admin01", channel="openai", session=session),
                 Chat(assistant, user="admin01", channel="web"),
                 Chat(assistant, user="designer01", channel="web", session=uuid.uuid4().hex)):
        a = chat.ask("它的利率是多少")
        assert not any(c["name"] == "get_product" for c in a.data["tool_calls"])
    # and a bare ask() (no channel, no session) keeps no thread at all
    with loaded_db.connection() as conn:
        before = one(conn, "SELECT count(DISTINCT thread_id) AS n FROM checkpoints")["n"]
        assistant.ask("介绍一下税e快贷")
        after = one(conn, "SELECT count(DISTINCT thread_id) AS n FROM checkpoints")["n"]
    assert before == after


def test_thread_ids_name_channel_user_and_session():
    assert memory.thread_id("wecom", "risk01", "wecom:risk01") == "wecom:risk01:wecom:risk01"
    assert memory.thread_id(None, "u", "s") == "api:u:s"
    assert memory.is_reset(" /reset ") and memory.is_reset("新对话。") and not memory.is_reset("新对话怎么开")


def test_expiry_deletes_only_threads_untouched_for_the_ttl(assistant: Assistant, loaded_db: Database):
    old, fresh = Chat(assistant), Chat(assistant)
    old.ask("介绍一下税e快贷")
    fresh.ask("介绍一下薪易快贷")
    old_thread = memory.thread_id("web", "admin01", old.session)
    fresh_thread = memory.thread_id("web", "admin01", fresh.session)
    with loaded_db.connection() as conn:
        conn.execute("UPDATE checkpoints SET checkpoint = jsonb_set(checkpoint, '{ts}', to_jsonb(%(ts)s::text))"
                     " WHERE thread_id = %(t)s", {"t": old_thread, "ts": "2020-01-01T00:00:00+00:00"})
    assert memory.expire_threads(loaded_db, older_than_days=30) >= 1
    with loaded_db.connection() as conn:
        left = {r["thread_id"] for r in conn.execute(
            "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id = ANY(%(t)s)",
            {"t": [old_thread, fresh_thread]}).fetchall()}
        blobs = one(conn, "SELECT count(*) AS n FROM checkpoint_blobs WHERE thread_id = %(t)s", {"t": old_thread})
    assert left == {fresh_thread} and blobs["n"] == 0
    a = old.ask("它的利率是多少")  # the expired conversation starts over
    assert not any(c["name"] == "get_product" for c in a.data["tool_calls"])
