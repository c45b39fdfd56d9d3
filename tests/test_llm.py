"""The LLM path, driven by langchain-core's fake chat models (scripted tool calls, streaming, errors,
timeouts) and by a loopback OpenAI-compatible stub for the real provider and `puyi llm check`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatResult
from pydantic import SecretStr

from agents.llm import FALLBACK_NOTE, TransformersChat, calls_tools, make_llm, supported_lead
from agents.llm_tools import args_schema, registry
from agents.service import Assistant
from core.db import Database
from core.settings import Settings
from eval.live import serve
from tests.conftest import one

ROOT = Path(__file__).resolve().parents[1]


class ScriptedChat(GenericFakeChatModel):
    """Replies from a script, in order; bind_tools keeps the script and notes which tools it got."""

    bound: ClassVar[list[str]] = []
    seen: ClassVar[list[list[BaseMessage]]] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        self.bound.extend(t.name for t in tools)
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


class BrokenChat(ScriptedChat):
    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise ConnectionError("connection refused")


class SlowChat(ScriptedChat):
    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        time.sleep(3)
        return super()._generate(messages, *args, **kwargs)


def tool_call(name: str, cid: str = "c1", **args: Any) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": cid, "type": "tool_call"}])


def scripted(*replies: AIMessage | str) -> ScriptedChat:
    return ScriptedChat(messages=iter(replies))


def customers(conn: Any, code: str, month: str) -> int:
    """Independent SQL: the product's customers at month end, bank-wide."""
    row = one(conn, "SELECT sum(customers)::bigint AS n FROM metrics_monthly"
                    " WHERE product_code = %(c)s AND to_char(month, 'YYYY-MM') = %(m)s", {"c": code, "m": month})
    return int(row["n"])


def turn(assistant: Assistant, question: str, user: str = "admin01") -> tuple[list[str], Any]:
    deltas: list[str] = []
    answer = None
    for kind, payload in assistant.events(question, user_id=user):
        if kind == "delta":
            deltas.append(payload)
        elif kind == "answer":
            answer = payload
    return deltas, answer


# --- the tool registry -------------------------------------------------------------------------------


def test_every_capability_is_a_tool_described_by_its_docstring():
    reg = registry()
    for name in ("find_product", "get_product", "trace_down", "trace_up", "list_products", "count_products",
                 "map_source_code", "search_knowledge", "query_metric", "list_metrics", "evaluate_products",
                 "substitution_analysis", "list_alerts", "explain_alert", "design_plans"):
        assert name in reg
        fields = args_schema(name).model_fields
        assert "ctx" not in fields
        assert reg[name].description.startswith((reg[name].fn.__doc__ or "").strip()[:10])
    assert "seed" not in args_schema("design_plans").model_fields
    assert set(args_schema("get_product").model_fields) == {"code"}


# --- routing by tool calling -------------------------------------------------------------------------


def test_numbers_come_from_the_tool_the_model_called(loaded_db: Database):
    llm = scripted(tool_call("query_metric", metric="customers", products=["SL001"], end="2026-10"),
                   "薪易快贷 的 客户数 如下。")
    deltas, a = turn(Assistant(loaded_db, llm=llm), "薪易快贷有多少客户")
    assert a.route == "metrics" and [c["name"] for c in a.data["tool_calls"]] == ["query_metric"]
    with loaded_db.connection() as conn:
        expected = customers(conn, "SL001", "2026-10")
    result = a.data["tool_calls"][0]["result"]
    assert result["total"]["value"] == expected
    assert f"{expected:,} 户" in a.answer and "2026年10月" in a.answer and "全行" in a.answer
    assert a.answer.startswith("薪易快贷 的 客户数 如下。")
    assert a.data["llm"]["status"] == "tools"
    assert "query_metric" in ScriptedChat.bound  # the registry was offered to the model


def test_a_lookup_leads_to_a_second_round(loaded_db: Database):
    ScriptedChat.seen.clear()
    llm = scripted(tool_call("find_product", query="薪易快贷"), tool_call("get_product", cid="c2", code="SL001"),
                   "以下是 薪易快贷 的要素。")
    _, a = turn(Assistant(loaded_db, llm=llm), "薪易快贷利率多少")
    assert a.route == "catalog" and [c["name"] for c in a.data["tool_calls"]] == ["find_product", "get_product"]
    assert "3.45%" in a.answer
    second = ScriptedChat.seen[1]
    assert isinstance(second[-1], ToolMessage) and "SL001" in str(second[-1].content)


def test_a_tool_the_asker_may_not_use_refuses(loaded_db: Database):
    llm = scripted(tool_call("design_plans", text="面向小微企业主的3年期经营贷，额度最高300万"), "不应被使用")
    _, a = turn(Assistant(loaded_db, llm=llm), "帮我设计一款经营贷", user="rm_qd")
    assert a.route == "element_plan"
    assert a.data["tool_calls"][0]["result"]["error_type"] == "PlanForbidden"
    assert "产品经理和管理员" in a.answer and "不应被使用" not in a.answer


def test_a_design_the_model_asks_for_is_saved_as_a_draft(loaded_db: Database):
    text = "面向小微企业主的3年期经营贷，额度最高300万，利率不高于4.5%"
    llm = scripted(tool_call("design_plans", text=text), "以下是方案草案。")
    _, a = turn(Assistant(loaded_db, llm=llm), "帮我设计一款经营贷", user="designer01")
    assert a.route == "element_plan"
    assert [c["name"] for c in a.data["tool_calls"]] == ["design_plans", "save_draft"]
    code = a.data["tool_calls"][1]["result"]["code"]
    assert code.startswith("DRAFT-") and code in a.answer
    with loaded_db.connection() as conn:
        row = conn.execute("SELECT status, request, created_by FROM plan_drafts WHERE code = %(c)s", {"c": code}).fetchone()
    assert row == {"status": "designing", "request": text, "created_by": "designer01"}


def test_a_disposition_is_recorded_without_the_model(loaded_db: Database):
    from tools.alerts import run_alerts

    alert_id = run_alerts(loaded_db)["events"][0]["id"]
    llm = scripted("不应被使用")
    _, a = turn(Assistant(loaded_db, llm=llm), f"确认 #{alert_id}", user="risk01")
    assert a.route == "alert" and a.data["llm"]["status"] == "skipped" and "不应被使用" not in a.answer
    with loaded_db.connection() as conn:
        rows = conn.execute("SELECT disposition FROM alert_dispositions WHERE alert_id = %(a)s", {"a": alert_id}).fetchall()
    assert [r["disposition"] for r in rows] == ["confirmed"]


def test_scope_stays_in_the_tools(loaded_db: Database):
    """An rm's tool call covers their branch subtree whatever the model asks for."""
    llm = scripted(tool_call("query_metric", metric="customers", products=["SL001"], branch="H000"), "好的。")
    _, a = turn(Assistant(loaded_db, llm=llm), "全行薪易快贷客户数", user="rm_sn")
    result = a.data["tool_calls"][0]["result"]
    assert result.get("error") or result["scope"]["label"] == "市南支行及下辖机构"
    with loaded_db.connection() as conn:
        bank_wide = customers(conn, "SL001", "2026-10")
    assert f"{bank_wide:,} 户" not in a.answer


def test_streamed_deltas_arrive_in_order_and_join_to_the_answer(loaded_db: Database):
    llm = scripted(tool_call("get_product", code="SL001"), "薪易快贷 是 零售 消费贷款， 要素 见下。")
    deltas, a = turn(Assistant(loaded_db, llm=llm), "介绍一下薪易快贷")
    assert len(deltas) > 3 and deltas[0] == "薪易快贷"
    assert "".join(deltas) == a.answer


def test_a_lead_with_a_made_up_number_is_dropped(loaded_db: Database):
    llm = scripted(tool_call("get_product", code="SL001"), "薪易快贷 余额 高达 98765 万元。 详情 见下。")
    _, a = turn(Assistant(loaded_db, llm=llm), "介绍一下薪易快贷")
    assert "98765" not in a.answer and a.answer.startswith("详情 见下。")
    assert "98765" in a.data["llm"]["lead_dropped"]
    assert supported_lead("余额 3.45% 。另有 7 个。", "利率 3.45%") == "余额 3.45% 。"


def test_an_answer_without_tools_is_not_trusted(loaded_db: Database):
    llm = scripted("薪易快贷的客户数是 123456 户，不良率 0.01%。")
    _, a = turn(Assistant(loaded_db, llm=llm), "薪易快贷的利率是多少？")
    assert "123456" not in a.answer and "0.01%" not in a.answer
    assert a.route == "catalog" and "3.45%" in a.answer  # the deterministic path answered
    assert a.data["llm"]["status"] == "no_tools" and FALLBACK_NOTE not in a.answer


def test_errors_and_timeouts_fall_back_with_a_note(loaded_db: Database, monkeypatch: pytest.MonkeyPatch):
    deterministic = Assistant(loaded_db, llm=False).ask("薪易快贷的利率是多少？")
    broken = Assistant(loaded_db, llm=BrokenChat(messages=iter([])))
    _, a = turn(broken, "薪易快贷的利率是多少？")
    assert a.answer == f"{deterministic.answer}\n\n{FALLBACK_NOTE}"
    assert a.data["llm"]["status"] == "failed" and "ConnectionError" in a.data["llm"]["error"]

    monkeypatch.setattr(loaded_db.settings, "llm_timeout_seconds", 0.3)
    started = time.perf_counter()
    _, b = turn(Assistant(loaded_db, llm=SlowChat(messages=iter([tool_call("get_product", code="SL001")]))),
                "薪易快贷的利率是多少？")
    assert time.perf_counter() - started < 2.5
    assert b.answer == a.answer and "TimeoutError" in b.data["llm"]["error"]


def test_a_failing_lead_keeps_the_tool_answer(loaded_db: Database):
    class LeadFails(ScriptedChat):
        def _stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
            raise TimeoutError("slow")

    llm = LeadFails(messages=iter([tool_call("get_product", code="SL001")]))
    _, a = turn(Assistant(loaded_db, llm=llm), "介绍一下薪易快贷")
    assert a.route == "catalog" and "SL001" in a.answer and a.answer.endswith(FALLBACK_NOTE)


def test_refusals_never_reach_the_model(loaded_db: Database):
    llm = scripted(tool_call("list_products"))
    _, a = turn(Assistant(loaded_db, llm=llm), "把所有客户的身份证号导出给我")
    assert a.route == "refused" and a.data["llm"]["status"] == "skipped"


# --- providers ---------------------------------------------------------------------------------------


def test_provider_factory(loaded_db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from langchain_openai import ChatOpenAI

    assert make_llm(Settings(home=tmp_path)) is None
    llm = make_llm(Settings(home=tmp_path, llm_provider="openai", llm_base_url="http://127.0.0.1:9/v1",
                            llm_model="qwen", llm_timeout_seconds=7))
    assert isinstance(llm, ChatOpenAI) and llm.model_name == "qwen" and llm.max_retries == 0
    key = llm.openai_api_key
    assert llm.request_timeout == 7 and isinstance(key, SecretStr) and key.get_secret_value() == "EMPTY"
    local = make_llm(Settings(home=tmp_path, llm_provider="transformers", llm_model=str(tmp_path)))
    assert isinstance(local, TransformersChat) and not calls_tools(local) and local._pipeline is None
    with pytest.raises(ValueError, match="PUYI_LLM_BASE_URL"):
        make_llm(Settings(home=tmp_path, llm_provider="openai"))
    # The assistant builds its LLM from settings when none is passed.
    assert Assistant(loaded_db).llm is None
    monkeypatch.setattr(loaded_db.settings, "llm_provider", "openai")
    monkeypatch.setattr(loaded_db.settings, "llm_base_url", "http://127.0.0.1:9/v1")
    monkeypatch.setattr(loaded_db.settings, "llm_model", "qwen")
    assert isinstance(Assistant(loaded_db).llm, ChatOpenAI)


# --- a loopback OpenAI-compatible endpoint -----------------------------------------------------------


def stub_app(tool: str = "get_product", tool_args: dict[str, Any] | None = None, stream_pieces: int = 5) -> FastAPI:
    """Answers, streams (when asked) and calls `tool` (when tools are offered), like vLLM would."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        base = {"id": "cmpl-1", "created": 0, "model": body["model"]}
        if body.get("tools") and not any(m.get("role") == "tool" for m in body["messages"]):
            call = {"id": "call_1", "type": "function",
                    "function": {"name": tool, "arguments": json.dumps(tool_args or {"code": "SL001"})}}
            return {**base, "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "tool_calls",
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}
        text = ["以下", "是", "您要", "的", "内容。"][:stream_pieces]
        if body.get("stream"):
            def chunks() -> Iterator[str]:
                for piece in text:
                    chunk = {**base, "object": "chat.completion.chunk",
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(chunks(), media_type="text/event-stream")
        return {**base, "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "好"}}]}

    return app


def puyi(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    full.pop("PUYI_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, env=full,
                          timeout=120, cwd=ROOT)


def test_llm_check_passes_against_a_working_endpoint(tmp_path: Path):
    with serve(stub_app()) as url:
        env = {"PUYI_HOME": str(tmp_path), "PUYI_LLM_PROVIDER": "openai", "PUYI_LLM_BASE_URL": url + "/v1",
               "PUYI_LLM_MODEL": "stub"}
        ok = puyi("llm", "check", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS answers" in ok.stdout and "PASS streams" in ok.stdout and "PASS calls tools" in ok.stdout
    assert 'get_product({"code": "SL001"})' in ok.stdout


def test_llm_check_fails_clearly(tmp_path: Path):
    with serve(stub_app(tool="something_else", stream_pieces=1)) as url:
        env = {"PUYI_HOME": str(tmp_path), "PUYI_LLM_PROVIDER": "openai", "PUYI_LLM_BASE_URL": url + "/v1",
               "PUYI_LLM_MODEL": "stub"}
        bad = puyi("llm", "check", env=env)
    assert bad.returncode == 1 and "PASS answers" in bad.stdout
    assert "FAIL streams" in bad.stdout and "FAIL calls tools" in bad.stdout
    down = puyi("llm", "check", env={**env, "PUYI_LLM_BASE_URL": "http://127.0.0.1:9/v1", "PUYI_LLM_TIMEOUT_SECONDS": "3"})
    assert down.returncode == 1 and "FAIL answers" in down.stdout
    none = puyi("llm", "check", env={"PUYI_HOME": str(tmp_path), "PUYI_LLM_PROVIDER": "none"})
    assert none.returncode == 1 and "PUYI_LLM_PROVIDER=none" in none.stderr


def test_llm_serve_without_vllm_prints_how_to_install(tmp_path: Path):
    from api.cli import vllm_command

    r = puyi("llm", "serve", "/models/Qwen2.5-7B-Instruct", env={"PUYI_HOME": str(tmp_path)})
    assert r.returncode == 1 and "pip install vllm" in r.stderr
    cmd = vllm_command("Qwen/Qwen2.5-7B-Instruct", "0.0.0.0", 8001, "qwen")
    assert cmd[:3] == ["vllm", "serve", "Qwen/Qwen2.5-7B-Instruct"]
    assert "--enable-auto-tool-choice" in cmd and cmd[cmd.index("--tool-call-parser") + 1] == "hermes"
    assert cmd[-2:] == ["--served-model-name", "qwen"]


def test_the_openai_provider_end_to_end(loaded_db: Database, monkeypatch: pytest.MonkeyPatch):
    """ChatOpenAI against the stub: the tool call routes, the lead streams, numbers come from the tool."""
    with serve(stub_app(tool="query_metric", tool_args={"metric": "customers", "products": ["SL001"]})) as url:
        monkeypatch.setattr(loaded_db.settings, "llm_provider", "openai")
        monkeypatch.setattr(loaded_db.settings, "llm_base_url", url + "/v1")
        monkeypatch.setattr(loaded_db.settings, "llm_model", "stub")
        deltas, a = turn(Assistant(loaded_db), "薪易快贷客户数")
    with loaded_db.connection() as conn:
        expected = customers(conn, "SL001", "2026-10")
    assert a.route == "metrics" and f"{expected:,} 户" in a.answer
    assert a.answer.startswith("以下是您要的内容。") and "".join(deltas) == a.answer


def test_the_http_stream_forwards_llm_deltas(loaded_db: Database):
    from fastapi.testclient import TestClient

    from api.server import create_app
    from core.tokens import issue_token

    llm = scripted(tool_call("get_product", code="SL001"), "薪易快贷 的 介绍 如下。")
    with TestClient(create_app(db=loaded_db, assistant=Assistant(loaded_db, llm=llm))) as client:
        with loaded_db.connection() as conn:
            token = issue_token(conn, "admin01")
        r = client.post("/api/chat/stream", json={"message": "介绍一下薪易快贷"},
                        headers={"Authorization": f"Bearer {token}"})
    events = [(b.split("\n")[0][7:], json.loads(b.split("\n")[1][6:])) for b in r.text.strip().split("\n\n")]
    deltas = [d["text"] for k, d in events if k == "delta"]
    assert deltas[0] == "薪易快贷" and "".join(deltas) == events[-1][1]["answer"]


def test_the_openai_compatible_stream_forwards_llm_tokens(loaded_db: Database):
    import openai

    from api.server import create_app
    from core.tokens import issue_token

    llm = scripted(tool_call("get_product", code="SL001"), "薪易快贷 的 介绍 如下。")
    with serve(create_app(db=loaded_db, assistant=Assistant(loaded_db, llm=llm))) as url:
        with loaded_db.connection() as conn:
            token = issue_token(conn, "admin01")
        sdk = openai.OpenAI(base_url=url + "/v1", api_key=token, max_retries=0)
        chunks = list(sdk.chat.completions.create(model="puyi", stream=True,
                                                  messages=[{"role": "user", "content": "介绍一下薪易快贷"}]))
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    text = "".join(pieces)
    assert "薪易快贷" in pieces and text.startswith("薪易快贷 的 介绍 如下。\n\n**薪易快贷**（SL001）")
    assert "核对后" not in text and chunks[-1].choices[0].finish_reason == "stop"
