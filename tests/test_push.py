"""The WeCom outbox: markdown splitting, once-per-key queueing and the sender, against a real
database and the WeCom stand-in on loopback."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
from fastapi import FastAPI

from api.push import OutboxSender, part_prefix, push_card, push_markdown, split_markdown
from api.wecom_client import WeComClient
from core.db import Database
from core.errors import PuyiError
from eval.wecom_standin import expire_tokens, reset, run_standin, send_requests, sent_messages
from tests.conftest import one

CORP, SECRET, AGENT = "ww-push-test", "push-secret", "1000002"
NUMBERING = re.compile(r"^（(\d+)/(\d+)）\n")


def unnumbered(parts: list[str]) -> list[str]:
    if len(parts) == 1:
        return parts
    return [NUMBERING.sub("", p, count=1) for p in parts]


def check_parts(text: str, parts: list[str], limit: int) -> None:
    """Every split must keep these properties."""
    assert all(len(p.encode("utf-8")) <= limit for p in parts)
    assert "".join(unnumbered(parts)) == text
    # Byte-exact too: no character was cut in two.
    assert b"".join(p.encode() for p in unnumbered(parts)) == text.encode()
    if len(parts) > 1:
        for i, p in enumerate(parts, 1):
            assert p.startswith(part_prefix(i, len(parts)))


# -- split_markdown -----------------------------------------------------------------------------


def test_short_text_is_one_part_without_numbering():
    assert split_markdown("尊享贷的利率是 3.85%。") == ["尊享贷的利率是 3.85%。"]
    text = "贷" * (2048 // 3)  # 2046 bytes: fits
    assert split_markdown(text) == [text]


def test_random_texts_keep_byte_limit_utf8_numbering_and_every_character():
    rng = random.Random(7)
    alphabet = ["a", " ", "利率", "。", "\n", "\n\n", "| 产品 | 利率 |\n", "😀", "e\u0301", "👍🏻", "# 标题\n", "**粗**"]
    for _ in range(150):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3000)))
        for limit in (64, 300, 2048):
            check_parts(text, split_markdown(text, limit), limit)


def test_paragraphs_are_kept_whole():
    paragraphs = [f"第{i}段：" + "产品说明" * 60 for i in range(8)]  # 734 bytes each: two fit in a part
    text = "\n\n".join(paragraphs)
    parts = split_markdown(text)
    check_parts(text, parts, 2048)
    assert len(parts) == 4
    for n, body in enumerate(unnumbered(parts)):
        assert body.split("\n\n")[:2] == paragraphs[2 * n:2 * n + 2]


def test_one_long_line_is_cut_between_characters():
    text = "谱翼" * 5000 + "😀" * 700  # 30 000 + 2800 bytes, no line break at all
    parts = split_markdown(text)
    check_parts(text, parts, 2048)
    assert len(parts) == 17
    assert all(len(p.encode()) > 1900 for p in parts[:-1])  # cut where the room ends, not early
    assert parts[9].startswith("（10/17）\n")  # two-digit numbering fits in the limit too


def test_sentences_before_characters():
    text = ("这是一个较长的句子，用来说明产品的定价规则。" * 200)
    for body in unnumbered(split_markdown(text))[:-1]:
        assert body.endswith(("。", "，"))


def test_table_rows_are_never_cut():
    header = "| 产品 | 利率 | 期限 | 说明 |\n| --- | --- | --- | --- |\n"
    rows = "".join(f"| 产品{i:03d} | {3 + i / 100:.2f}% | {i % 5 + 1}年 | {'适合稳健型客户' * (i % 4 + 1)} |\n"
                   for i in range(120))
    text = "## 产品利率表\n\n" + header + rows + "\n数据截至 2024 年末。"
    parts = split_markdown(text)
    check_parts(text, parts, 2048)
    assert len(parts) > 3
    for body in unnumbered(parts):
        for line in body.splitlines():
            assert not line.startswith("|") or line.endswith("|"), line


def test_a_combining_mark_stays_with_its_letter():
    text = "e\u0301" * 1500  # é as two code points, 3 bytes
    for body in unnumbered(split_markdown(text, 100)):
        assert body.startswith("e") and body.endswith("\u0301")


def test_limit_must_leave_room():
    with pytest.raises(ValueError):
        split_markdown("x" * 100, 10)


# -- queueing -----------------------------------------------------------------------------------


@pytest.fixture()
def outbox_db(db: Database) -> Database:
    with db.connection() as conn:
        conn.execute("DELETE FROM wecom_outbox")
    return db


def rows(db: Database, where: str = "true", params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return list(conn.execute(f"SELECT * FROM wecom_outbox WHERE {where} ORDER BY group_key, seq", params).fetchall())


def test_a_key_is_pushed_once_ever(outbox_db: Database):
    with outbox_db.connection() as conn:
        assert push_markdown(conn, "alert:1", ["zhangwei", "sunli", "zhangwei"], "**预警**：尊享贷不良率上升") is True
        assert push_markdown(conn, "alert:1", ["zhangwei"], "**预警**：尊享贷不良率上升") is False
        # Not even with another text that would split differently.
        assert push_markdown(conn, "alert:1", ["zhangwei"], "长" * 3000) is False
        assert push_card(conn, "alert:1", ["zhangwei"], "t", "d", "https://puyi.example/a/1") is False
    (row,) = rows(outbox_db)
    assert (row["key"], row["group_key"], row["seq"], row["status"]) == ("alert:1", "alert:1", 0, "pending")
    assert row["to_users"] == ["zhangwei", "sunli"] and row["msg_type"] == "markdown"
    assert row["payload"] == {"content": "**预警**：尊享贷不良率上升"}


def test_a_long_markdown_becomes_numbered_rows(outbox_db: Database):
    text = "\n\n".join("段落" * 400 for _ in range(4))
    with outbox_db.connection() as conn:
        assert push_markdown(conn, "report:7", ["zhangwei"], text)
        assert not push_markdown(conn, "report:7", ["zhangwei"], text)
    queued = rows(outbox_db)
    assert [r["key"] for r in queued] == [f"report:7#{i}" for i in range(1, len(queued) + 1)]
    assert {r["group_key"] for r in queued} == {"report:7"} and [r["seq"] for r in queued] == list(range(1, len(queued) + 1))
    check_parts(text, [r["payload"]["content"] for r in queued], 2048)


def test_push_is_part_of_the_callers_transaction(outbox_db: Database):
    with pytest.raises(RuntimeError), outbox_db.connection() as conn:
        push_markdown(conn, "rolled-back", ["zhangwei"], "不会发送")
        raise RuntimeError("the caller fails after pushing")
    assert rows(outbox_db) == []


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"to_users": []}, "接收人"),
        ({"to_users": ["zhangwei", " "]}, "接收人"),
        ({"to_users": "zhangwei"}, "列表"),
        ({"to_users": ["@all"]}, "@all"),
        ({"to_users": ["a|b"]}, "无效"),
        ({"text": "  \n"}, "内容为空"),
        ({"key": ""}, "幂等键"),
        ({"key": "a#1"}, "#"),
    ],
)
def test_push_markdown_refuses_bad_input(outbox_db: Database, kwargs: dict[str, Any], words: str):
    args: dict[str, Any] = {"key": "k", "to_users": ["zhangwei"], "text": "你好"} | kwargs
    with outbox_db.connection() as conn, pytest.raises(PuyiError, match=re.escape(words)) as info:
        push_markdown(conn, **args)
    assert re.search(r"\([a-z].*\)", str(info.value))  # English too, for the operator
    assert rows(outbox_db) == []


def test_push_card(outbox_db: Database):
    with outbox_db.connection() as conn:
        assert push_card(conn, "card:1", ["sunli"], "预警：尊享贷", "<div class=\"gray\">2024-12</div>不良率 2.1%",
                         "https://puyi.example/alerts/1")
        for bad in ({"title": "长" * 50}, {"description": ""}, {"url": "javascript:alert(1)"}, {"btntxt": "查看详细信息"}):
            args = {"title": "t", "description": "d", "url": "https://x.example", "btntxt": "详情"} | bad
            with pytest.raises(PuyiError):
                push_card(conn, "card:bad", ["sunli"], **args)
    (row,) = rows(outbox_db)
    assert row["msg_type"] == "textcard" and row["payload"]["btntxt"] == "详情"


# -- sending ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[str, FastAPI]]:
    with run_standin(CORP, SECRET) as served:
        yield served


@pytest.fixture()
def api(standin: tuple[str, FastAPI]) -> Iterator[FastAPI]:
    reset(standin[1])
    yield standin[1]
    reset(standin[1])


def make_sender(db: Database, standin: tuple[str, FastAPI], **kwargs: Any) -> OutboxSender:
    return OutboxSender(db, WeComClient(standin[0], CORP, SECRET, AGENT), **kwargs)


def drain(sender: OutboxSender, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while rows(sender.db, "status = 'pending'"):
        assert time.monotonic() < deadline, "the outbox did not drain"
        sender.send_due()
        time.sleep(0.02)


def test_sends_due_rows_once(outbox_db: Database, standin, api: FastAPI):
    with outbox_db.connection() as conn:
        push_markdown(conn, "m1", ["zhangwei"], "**你好**")
        push_card(conn, "c1", ["sunli", "zhangwei"], "标题", "描述", "https://puyi.example/x")
    sender = make_sender(outbox_db, standin)
    assert sender.send_due() == 2
    assert sender.send_due() == 0
    first, second = sent_messages(api)
    assert first == {"touser": "zhangwei", "msgtype": "markdown", "agentid": 1000002, "markdown": {"content": "**你好**"},
                     "enable_duplicate_check": 1, "duplicate_check_interval": 300}
    assert second["touser"] == "sunli|zhangwei" and second["textcard"]["url"] == "https://puyi.example/x"
    assert all(r["status"] == "sent" and r["sent_at"] and r["attempts"] == 1 for r in rows(outbox_db))
    # An expired token is refreshed once and the send goes through.
    expire_tokens(api)
    with outbox_db.connection() as conn:
        push_markdown(conn, "m2", ["zhangwei"], "第二条")
    assert sender.send_due() == 1 and len(sent_messages(api)) == 3


def test_backoff_grows_to_five_minutes_with_a_little_jitter(outbox_db: Database, standin):
    sender = make_sender(outbox_db, standin)
    for attempts, expected in [(1, 1), (2, 2), (3, 4), (6, 32), (9, 256), (10, 300), (60, 300)]:
        delays = [sender.backoff(attempts) for _ in range(50)]
        assert all(expected * 0.9 - 1e-9 <= d <= min(expected * 1.1, 300) for d in delays)
        assert len(set(delays)) > 1


@pytest.mark.parametrize("mode", ["http500", "busy", "ratelimit", "down"])
def test_transient_failures_are_retried_with_backoff(outbox_db: Database, standin, api: FastAPI, mode: str):
    with outbox_db.connection() as conn:
        push_markdown(conn, "retry", ["zhangwei"], "稍后送达")
    sender = make_sender(outbox_db, standin, base_delay=0.5)
    if mode == "down":
        api.state.down = True
    else:
        api.state.fail_next, api.state.fail_mode = 2, mode
    assert sender.send_due() == 0
    row = one_row(outbox_db, "retry")
    assert row["status"] == "pending" and row["attempts"] == 1 and row["last_error"]
    with outbox_db.connection() as conn:
        wait = one(conn, "SELECT extract(epoch FROM next_attempt_at - now()) AS s FROM wecom_outbox")["s"]
    assert 0 < wait <= 0.55  # 0.5 s ± 10 %
    assert sender.send_due() == 0  # not due yet: nothing is sent, nothing is claimed
    assert one_row(outbox_db, "retry")["attempts"] == 1
    if mode == "down":
        time.sleep(0.6)
        assert sender.send_due() == 0
        api.state.down = False
    drain(sender)
    row = one_row(outbox_db, "retry")
    assert row["status"] == "sent" and row["attempts"] == 3 and row["last_error"] is None
    assert len(sent_messages(api)) == 1


def one_row(db: Database, key: str) -> dict[str, Any]:
    with db.connection() as conn:
        return one(conn, "SELECT * FROM wecom_outbox WHERE key = %(k)s", {"k": key})


def test_permanent_failure_is_marked_failed_with_the_rest_of_its_message(outbox_db: Database, standin, api: FastAPI,
                                                                           caplog: pytest.LogCaptureFixture):
    api.state.invalid_users = {"left-the-bank"}
    with outbox_db.connection() as conn:
        push_markdown(conn, "gone", ["left-the-bank"], "\n\n".join("很长的内容" * 100 for _ in range(3)))
        push_markdown(conn, "partly", ["left-the-bank", "zhangwei"], "部分送达")
    sender = make_sender(outbox_db, standin)
    with caplog.at_level("WARNING", logger="puyi.wecom"):
        assert sender.send_due() == 1
    failed = rows(outbox_db, "group_key = 'gone'")
    assert len(failed) == 3 and all(r["status"] == "failed" for r in failed)
    assert "81013" in failed[0]["last_error"] and "earlier part" in failed[1]["last_error"]
    assert one_row(outbox_db, "partly")["status"] == "sent"
    assert any("failed for good" in r.getMessage() and "81013" in r.getMessage() for r in caplog.records)
    assert any("could not deliver" in r.getMessage() and "left-the-bank" in r.getMessage() for r in caplog.records)
    assert [m["touser"] for m in sent_messages(api)] == ["left-the-bank|zhangwei"]


def test_parts_go_out_in_order_even_when_one_must_be_retried(outbox_db: Database, standin, api: FastAPI):
    text = "\n\n".join(f"第{i}部分 " + "说明" * 300 for i in range(1, 5))
    with outbox_db.connection() as conn:
        push_markdown(conn, "ordered", ["zhangwei"], text)
        push_markdown(conn, "other", ["sunli"], "另一条")
    api.state.fail_next = 1  # the first part fails once; the others must wait for it
    sender = make_sender(outbox_db, standin, base_delay=0.05)
    drain(sender)
    contents = [m["markdown"]["content"] for m in sent_messages(api) if m["touser"] == "zhangwei"]
    assert [NUMBERING.match(c).group(1) for c in contents] == ["1", "2", "3", "4"]  # type: ignore[union-attr]
    check_parts(text, contents, 2048)


def test_a_leased_row_waits_for_its_lease(outbox_db: Database, standin, api: FastAPI):
    with outbox_db.connection() as conn:
        push_markdown(conn, "leased", ["zhangwei"], "租约")
    crashed = make_sender(outbox_db, standin, lease_seconds=0.5)
    assert crashed._claim() is not None  # claimed, then the process "dies" before sending
    other = make_sender(outbox_db, standin)
    assert other.send_due() == 0
    time.sleep(0.6)
    assert other.send_due() == 1
    assert one_row(outbox_db, "leased")["attempts"] == 2 and len(sent_messages(api)) == 1


def test_two_senders_on_one_database_send_each_row_once(outbox_db: Database, standin, api: FastAPI):
    with outbox_db.connection() as conn:
        for i in range(40):
            push_markdown(conn, f"bulk:{i}", [f"user{i % 7}"], f"第 {i} 条消息")
        push_markdown(conn, "bulk:long", ["zhangwei"], "\n\n".join(f"第{i}部分 " + "说明" * 300 for i in range(1, 5)))
    api.state.delay = 0.01  # let the two overlap
    senders = [make_sender(outbox_db, standin) for _ in range(2)]
    counts = [0, 0]
    failures: list[BaseException] = []

    def run(n: int) -> None:
        deadline = time.monotonic() + 60  # generous: CI machines are shared and noisy
        try:
            while time.monotonic() < deadline and rows(outbox_db, "status = 'pending'"):
                counts[n] += senders[n].send_due(limit=5)
        except BaseException as exc:  # surfaced below instead of dying silently in the thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    messages = sent_messages(api)
    with outbox_db.connection() as conn:
        state = conn.execute(
            "SELECT status, attempts, lease_until > now() AS leased, next_attempt_at > now() AS later,"
            " last_error, count(*) AS n FROM wecom_outbox GROUP BY 1, 2, 3, 4, 5").fetchall()
    assert len(send_requests(api)) == len(messages) == 44 == sum(counts), (counts, state)
    assert min(counts) > 0  # both took part
    assert sorted(m["markdown"]["content"] for m in messages if m["touser"] != "zhangwei") == sorted(
        f"第 {i} 条消息" for i in range(40))
    long_parts = [m["markdown"]["content"] for m in messages if m["touser"] == "zhangwei"]
    assert [c[:6] for c in long_parts] == [part_prefix(i, 4)[:6] for i in range(1, 5)]
    assert all(r["status"] == "sent" and r["attempts"] == 1 for r in rows(outbox_db))


def test_one_token_for_a_burst_of_sends_and_no_secret_in_the_logs(standin, api: FastAPI,
                                                                  caplog: pytest.LogCaptureFixture):
    client = WeComClient(standin[0], CORP, SECRET, AGENT)
    with caplog.at_level("INFO", logger="httpx"):
        threads = [threading.Thread(target=client.send, args=([f"u{i}"], "text", {"content": "hi"})) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(sent_messages(api)) == 8
    assert sum(r["path"] == "/cgi-bin/gettoken" for r in api.state.requests) == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "corpsecret=***" in logged and "access_token=***" in logged
    assert SECRET not in logged and "standin-" not in logged


class NestedLoopPlans:
    """The test database with the planner pushed to a nested-loop semi join, the plan that rescans
    a `WHERE key IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` sub-select once per outer row."""

    def __init__(self, db: Database) -> None:
        self.db, self.settings = db, db.settings

    @contextmanager
    def connection(self) -> Iterator[Any]:
        with self.db.connection() as conn:
            for name in ("enable_hashagg", "enable_hashjoin", "enable_material", "enable_sort"):
                conn.execute(f"SET {name} = off")
            try:
                yield conn
            finally:
                conn.execute("RESET ALL")


def test_a_claim_leases_one_row_whatever_the_plan(outbox_db: Database, standin):
    with outbox_db.connection() as conn:
        for i in range(6):
            push_markdown(conn, f"m{i}", [f"user{i}"], f"第{i}条")
        conn.execute("ANALYZE wecom_outbox")
    sender = make_sender(cast(Database, NestedLoopPlans(outbox_db)), standin)
    claimed = sender._claim()
    assert claimed is not None
    assert [r["key"] for r in rows(outbox_db, "lease_until IS NOT NULL")] == [claimed["key"]]


def test_the_answerer_leases_at_most_its_limit_whatever_the_plan(outbox_db: Database):
    from api.wecom import WeComChannel

    with outbox_db.connection() as conn:
        conn.execute("DELETE FROM wecom_inbox")
        for i in range(6):
            conn.execute("INSERT INTO wecom_inbox (msg_id, from_user, msg_type, content) VALUES (%(m)s, %(u)s, 'text', '你好')",
                         {"m": f"plan{i}", "u": f"user{i}"})
        conn.execute("ANALYZE wecom_inbox")
    channel = WeComChannel(outbox_db.settings, cast(Database, NestedLoopPlans(outbox_db)), assistant=None)
    claimed = channel.claim_messages(2)
    with outbox_db.connection() as conn:
        leased = [r["msg_id"] for r in conn.execute(
            "SELECT msg_id FROM wecom_inbox WHERE lease_until IS NOT NULL ORDER BY msg_id").fetchall()]
        conn.execute("DELETE FROM wecom_inbox")
    assert sorted(r["msg_id"] for r in claimed) == leased and len(leased) == 2
