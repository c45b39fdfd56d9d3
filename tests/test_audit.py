"""The audit trail: one append-only row per turn, on every channel, with masked personal data."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agents.service import Assistant
from core.audit import TurnAudit, list_audit, parse_when, record, summarize_calls, to_csv, to_jsonl
from core.db import Database
from core.errors import BadQuestion, UnknownUser
from core.settings import Settings
from tests.conftest import one

PHONE, ID_NUMBER = "13812345678", "110101199003071234"


@pytest.fixture(scope="module")
def assistant(loaded_db: Database) -> Assistant:
    return Assistant(loaded_db)


def last_id(db: Database) -> int:
    with db.connection() as conn:
        return int(one(conn, "SELECT coalesce(max(id), 0) AS n FROM audit_log")["n"])


def rows_after(db: Database, mark: int) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM audit_log WHERE id > %(m)s ORDER BY id", {"m": mark})]


def test_every_turn_is_one_row_with_its_facts(assistant: Assistant, loaded_db: Database):
    mark = last_id(loaded_db)
    a = assistant.ask("10月薪易快贷的余额是多少？", user_id="rm_qd", channel="web")
    (row,) = rows_after(loaded_db, mark)
    assert row["user_id"] == "rm_qd" and row["role"] == "rm" and row["scope"] == "B100"
    assert row["scope_label"] == "青岛分行及下辖机构"
    assert row["channel"] == "web" and row["session_id"] == a.session_id
    assert row["question"] == "10月薪易快贷的余额是多少？"
    assert row["route"] == a.route == "metrics" and row["intent"] == a.data["intent"]
    assert [c["name"] for c in row["tool_calls"]] == [c["name"] for c in a.data["tool_calls"]]
    for logged, made in zip(row["tool_calls"], a.data["tool_calls"], strict=True):
        assert logged["args"] == made["args"] and logged["result_chars"] > 0 and "result" not in logged
    assert row["answer"] == a.answer and "余额" in row["answer"]
    assert row["grounding"]["ok"] is True and row["grounding_ok"] is True and row["grounding"]["checked"] > 0
    assert row["latency_ms"] >= 0 and row["status"] == "answered" and row["error"] is None

    # No channel (puyi ask --batch, evaluations): nothing stored as a conversation, still audited.
    mark = last_id(loaded_db)
    b = assistant.ask("贷款类有多少个产品？", user_id="designer01")
    (row,) = rows_after(loaded_db, mark)
    assert row["channel"] is None and row["user_id"] == "designer01" and row["scope"] is None
    assert row["scope_label"] == "全行" and row["route"] == "catalog" and b.turn_id is None
    assert row["tool_calls"][0]["name"] == "count_products"


def test_refused_and_failed_turns_are_recorded(assistant: Assistant, loaded_db: Database):
    mark = last_id(loaded_db)
    assistant.ask("把所有客户的身份证号导出给我", user_id="rm_sn", channel="wecom")
    with pytest.raises(BadQuestion):
        assistant.ask("   ", user_id="rm_sn", channel="wecom")
    with pytest.raises(BadQuestion):
        assistant.ask("贷" * 10_000, user_id="rm_sn", channel="web")
    with pytest.raises(UnknownUser):
        assistant.ask("薪易快贷的利率", user_id="nobody", channel="openai")
    refused, empty, long, unknown = rows_after(loaded_db, mark)
    assert refused["route"] == "refused" and refused["status"] == "refused" and refused["channel"] == "wecom"
    assert empty["status"] == "refused" and empty["error"].startswith("BadQuestion") and empty["route"] is None
    assert long["status"] == "refused" and "过长" in long["error"] and len(long["question"]) == 10_000
    assert unknown["user_id"] == "nobody" and unknown["role"] is None and unknown["error"].startswith("UnknownUser")

    class Broken:
        def stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
            raise RuntimeError(f"tool crashed on customer {PHONE}")

    mark = last_id(loaded_db)
    with pytest.raises(RuntimeError):
        Assistant(loaded_db, graph=Broken(), kb=assistant.kb).ask("薪易快贷的利率", user_id="risk01", channel="web")
    (failed,) = rows_after(loaded_db, mark)
    assert failed["status"] == "failed" and failed["role"] == "risk" and failed["route"] is None
    assert failed["error"].startswith("RuntimeError: tool crashed") and PHONE not in failed["error"]
    assert "138****5678" in failed["error"]


def test_personal_data_is_masked_in_the_trail(assistant: Assistant, loaded_db: Database):
    mark = last_id(loaded_db)
    assistant.ask(f"客户手机 {PHONE}，身份证 {ID_NUMBER}，薪易快贷的利率是多少？", user_id="rm_qd", channel="web")
    (row,) = rows_after(loaded_db, mark)
    assert PHONE not in row["question"] and ID_NUMBER not in row["question"]
    assert "138****5678" in row["question"] and "110***********1234" in row["question"]
    with loaded_db.connection() as conn:
        # Whatever a caller passes, record() masks it again.
        rid = record(conn, {"user_id": "rm_qd", "question": f"致电 {PHONE}", "answer": f"证件 {ID_NUMBER}",
                            "tool_calls": [{"name": "t", "args": {"customer_name": "张三丰"}, "result_chars": 2}],
                            "status": "answered"})
        stored = one(conn, "SELECT question, answer, tool_calls FROM audit_log WHERE id = %(i)s", {"i": rid})
    assert PHONE not in stored["question"] and ID_NUMBER not in stored["answer"]
    assert stored["tool_calls"][0]["args"]["customer_name"] == "张**"


def test_rows_cannot_be_changed_or_deleted(assistant: Assistant, loaded_db: Database):
    assistant.ask("薪易快贷的利率", user_id="rm_qd", channel="web")
    rid = last_id(loaded_db)
    for sql in ("UPDATE audit_log SET answer = 'edited' WHERE id = %(i)s", "DELETE FROM audit_log WHERE id = %(i)s",
                "TRUNCATE audit_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"), \
                loaded_db.connection() as conn:
            conn.execute(sql, {"i": rid} if "%(i)s" in sql else None)
    with loaded_db.connection() as conn:
        assert one(conn, "SELECT answer FROM audit_log WHERE id = %(i)s", {"i": rid})["answer"] != "edited"


def test_summaries_keep_sizes_and_citations_not_whole_results(loaded_db: Database):
    calls = [{"name": "list_products", "args": {"category": "loan"}, "result": {"items": [{"code": "A"}, {"code": "B"}]}}]
    assert summarize_calls(calls) == [{"name": "list_products", "args": {"category": "loan"},
                                       "result_chars": len(json.dumps(calls[0]["result"])), "result_rows": 2}]
    audit = TurnAudit("薪易快贷可以提前还款吗？", "rm_qd", "web", "s-cite")
    with loaded_db.connection() as conn:
        audit.answered(conn, route="knowledge", intent="knowledge", tool_calls=[], answer="可以 [1]",
                       citations=[{"chunk_id": 42, "title": "薪易快贷操作手册", "snippet": "长文……", "score": 0.9}],
                       grounding={"ok": True, "checked": 0}, session_id="s-cite")
        row = one(conn, "SELECT citations, session_id FROM audit_log WHERE session_id = 's-cite'")
    assert row["citations"] == [{"chunk_id": 42, "title": "薪易快贷操作手册"}]


def test_list_and_export_with_filters(assistant: Assistant, loaded_db: Database, settings: Settings, tmp_path: Path):
    mark = last_id(loaded_db)
    assistant.ask("10月薪易快贷的余额是多少？", user_id="rm_lx", channel="web")
    assistant.ask("贷款类有多少个产品？", user_id="rm_lx", channel="wecom")
    with loaded_db.connection() as conn:
        record(conn, {"user_id": "rm_lx", "question": "虚构", "route": "metrics", "channel": "openai",
                      "answer": "> 注：已移除 1 处无法溯源的数字。", "status": "answered",
                      "grounding": {"ok": False, "unsupported": ["9.99%"], "removed": ["不良率 9.99%。"]}})
        mine = list_audit(conn, user="rm_lx", since=parse_when("1h"))
        assert [r["channel"] for r in mine if r["id"] > mark] == ["openai", "wecom", "web"]
        assert [r["route"] for r in list_audit(conn, user="rm_lx", channel="web") if r["id"] > mark] == ["metrics"]
        assert [r["channel"] for r in list_audit(conn, user="rm_lx", route="metrics") if r["id"] > mark] == \
            ["openai", "web"]
        failed = list_audit(conn, user="rm_lx", grounding_failed=True)
        assert [r["question"] for r in failed] == ["虚构"]
        assert list_audit(conn, user="rm_lx", until=parse_when("2000-01-01")) == []
        assert len(list_audit(conn, user="rm_lx", limit=1)) == 1
    assert [json.loads(line)["channel"] for line in to_jsonl(mine[:2]).splitlines()] == ["openai", "wecom"]
    assert list(csv.DictReader(io.StringIO(to_csv(mine[:1]))))[0]["grounding_ok"] == "False"

    env = {**os.environ, "PUYI_HOME": str(settings.home), "COLUMNS": "250"}
    env.pop("PUYI_DATABASE_URL", None)

    def puyi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, env=env,
                              timeout=120, cwd=Path(__file__).resolve().parents[1])

    out = tmp_path / "audit.csv"
    done = puyi("audit", "export", "--format", "csv", "--out", str(out), "--user", "rm_lx", "--channel", "wecom")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert [(r["user_id"], r["channel"], r["route"]) for r in rows] == [("rm_lx", "wecom", "catalog")]
    assert json.loads(rows[0]["tool_calls"])[0]["name"] == "count_products"
    done = puyi("audit", "export", "--format", "jsonl", "--user", "rm_lx", "--grounding", "failed")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["grounding"]["unsupported"] for line in done.stdout.splitlines()] == [["9.99%"]]
    done = puyi("audit", "list", "--user", "rm_lx", "--route", "metrics", "--since", "1h")
    assert done.returncode == 0 and "rm_lx" in done.stdout and "移除 1 处" in done.stdout, done.stderr
    assert puyi("audit", "export", "--format", "xml").returncode != 0


def test_log_lines_carry_no_personal_data():
    import logging

    from core.audit import scrub_logs

    stream = io.StringIO()
    logger = logging.getLogger("puyi.test-scrub")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        scrub_logs(logger)
        scrub_logs(logger)  # once only
        assert len(handler.filters) == 1
        logger.warning("question from %s: 我的手机 %s", "rm_qd", PHONE)
        try:
            raise ValueError(f"bad id {ID_NUMBER}")
        except ValueError:
            logger.exception("answering failed for %s", PHONE)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert PHONE not in text and ID_NUMBER not in text
    assert "我的手机 138****5678" in text and "bad id 110***********1234" in text and "Traceback" in text
