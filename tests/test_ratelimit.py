"""Per-user rate limits over every channel and process, and the question length limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from agents.service import Assistant
from api.server import create_app
from api.wecom import WeComChannel
from core.db import Database
from core.errors import BadQuestion
from core.ratelimit import RateLimited, check_rate
from core.tokens import issue_token
from tests.conftest import one


@pytest.fixture()
def limited(loaded_db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The small bank with 2 questions per user and minute, counted from zero, and not about to
    roll over into the next minute while the test runs."""
    with loaded_db.connection() as conn:
        conn.execute("TRUNCATE rate_limits")
        seconds = float(one(conn, "SELECT extract(second FROM now()) AS s")["s"])
    if seconds > 45:
        time.sleep(61 - seconds)
    monkeypatch.setattr(loaded_db.settings, "rate_limit_per_minute", 2)
    yield loaded_db
    with loaded_db.connection() as conn:
        conn.execute("TRUNCATE rate_limits")


def test_the_limit_holds_within_a_minute_and_resets_the_next(loaded_db: Database):
    t0 = datetime(2026, 11, 2, 9, 30, 10, tzinfo=UTC)
    with loaded_db.connection() as conn:
        assert [check_rate(conn, "u-rate", 3, now=t0 + timedelta(seconds=s)) for s in (0, 5, 10)] == [1, 2, 3]
        with pytest.raises(RateLimited, match="每人每分钟最多 3 个问题，请 40 秒后再试") as refused:
            check_rate(conn, "u-rate", 3, now=t0 + timedelta(seconds=10))
        assert refused.value.retry_after == 40
        assert check_rate(conn, "u-other", 3, now=t0) == 1  # per user
        assert check_rate(conn, "u-rate", 3, now=t0 + timedelta(seconds=55)) == 1  # the next minute
        # Only the current minute's row is kept for a user.
        assert one(conn, "SELECT count(*) AS n FROM rate_limits WHERE user_id = 'u-rate'")["n"] == 1
        # 0 turns the limit off: nothing is counted.
        assert check_rate(conn, "u-off", 0) == 0
        assert one(conn, "SELECT count(*) AS n FROM rate_limits WHERE user_id = 'u-off'")["n"] == 0
        conn.execute("DELETE FROM rate_limits WHERE user_id LIKE 'u-%%'")


def test_the_limit_is_shared_by_assistants_and_channels(limited: Database):
    first, second = Assistant(limited), Assistant(limited)  # as if two processes
    first.ask("薪易快贷的利率", user_id="rm_qd", channel="web")
    second.ask("薪易快贷的利率", user_id="rm_qd", channel="wecom")
    with pytest.raises(RateLimited, match="提问过于频繁"):
        first.ask("薪易快贷的利率", user_id="rm_qd", channel="openai")
    second.ask("薪易快贷的利率", user_id="rm_sn", channel="web")  # someone else is not limited
    first.ask("薪易快贷的利率", user_id="rm_qd")  # batch runs and evaluations (no channel) are not limited
    with limited.connection() as conn:
        row = one(conn, "SELECT status, error, channel FROM audit_log ORDER BY id DESC OFFSET 2 LIMIT 1")
    assert row["status"] == "refused" and row["error"].startswith("RateLimited") and row["channel"] == "openai"


def test_zero_turns_the_limit_off(limited: Database, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(limited.settings, "rate_limit_per_minute", 0)
    assistant = Assistant(limited)
    for _ in range(4):
        assistant.ask("薪易快贷的利率", user_id="rm_qd", channel="web")


def test_http_answers_429_and_wecom_replies_with_the_message(limited: Database):
    with limited.connection() as conn:
        token = issue_token(conn, "rm_jn")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(db=limited), raise_server_exceptions=False) as client:
        assert client.post("/api/chat", json={"message": "薪易快贷的利率"}, headers=headers).status_code == 200
        assert client.post("/api/chat/stream", json={"message": "薪易快贷的利率"}, headers=headers).status_code == 200
        for path, body in [("/api/chat", {"message": "薪易快贷的利率"}),
                           ("/api/chat/stream", {"message": "薪易快贷的利率"}),
                           ("/v1/chat/completions", {"model": "puyi", "messages": [{"role": "user", "content": "利率"}]})]:
            r = client.post(path, json=body, headers=headers)
            assert r.status_code == 429, (path, r.text)
            assert r.json()["error"]["code"] == "rate_limited" and "秒后再试" in r.json()["error"]["message"]
            assert 1 <= int(r.headers["Retry-After"]) <= 60
    channel = WeComChannel(limited.settings, limited, Assistant(limited))
    row = {"msg_id": "m-rate", "from_user": "zhangwei", "msg_type": "text", "content": "薪易快贷的利率", "attempts": 1}
    replies = [channel._compose(row)[0] for _ in range(3)]
    assert "提问过于频繁" not in replies[0] and "提问过于频繁" not in replies[1]
    assert replies[2].startswith("提问过于频繁：每人每分钟最多 2 个问题")


def test_question_length_is_limited(loaded_db: Database, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(loaded_db.settings, "max_question_chars", 12)
    assistant = Assistant(loaded_db)
    assert assistant.ask("薪易快贷的利率是多少？" + " " * 50, user_id="rm_qd").route == "catalog"  # 11 chars, stripped
    with pytest.raises(BadQuestion, match="问题过长（13 字），请精简到 12 字以内"):
        assistant.ask("请问薪易快贷的利率是多少？", user_id="rm_qd")
    with loaded_db.connection() as conn:
        token = issue_token(conn, "rm_qd")
    with TestClient(create_app(db=loaded_db), raise_server_exceptions=False) as client:
        r = client.post("/api/chat", json={"message": "请问薪易快贷的利率是多少？"},
                        headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_question"
