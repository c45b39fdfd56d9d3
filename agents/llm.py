"""The LLM turn: a provider factory, routing by tool calling, and a streamed lead sentence.

With an LLM the model routes: it picks tools and their arguments (agents.llm_tools), possibly
looking a product code or metric key up first. The tools run with the turn's ToolContext, so role
and scope are enforced exactly as on the deterministic path. The answer body is still composed
deterministically from the tool results (numbers only from tools); the LLM only adds a short
lead in front of it, streamed token by token, and a lead sentence with a number that the body does
not contain is dropped. A model that answers without calling a tool is not trusted for facts: the
turn then takes the deterministic path. Any error or timeout of the LLM does the same, with a note.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from agents.llm_tools import langchain_tools, registry
from agents.state import ToolCall
from core.access import ROLE_NAMES
from core.errors import PuyiError
from core.safety import neutralize
from prompts import load_prompt
from tools.context import ToolContext

if TYPE_CHECKING:
    from agents.router import RouteDecision
    from core.settings import Settings

log = logging.getLogger(__name__)

FALLBACK_NOTE = "（大模型暂不可用，已使用规则引擎回答）"
MAX_ROUNDS = 3  # model → tools rounds; lookups (find_product, list_metrics) may lead to a second one
MAX_CALLS_PER_ROUND = 4
MAX_RESULT_CHARS = 6000  # what the model is shown of one tool result
_NO_LLM_ROUTES = ("refused", "help")  # guardrail and template answers: the LLM is not consulted
_NUM_RE = re.compile(r"\d[\d,]*(?:\.\d+)?")
_SENTENCE_RE = re.compile(r"[^。！？!?\n]*[。！？!?\n]?")


# --- providers ---------------------------------------------------------------------------------------


def make_llm(settings: Settings) -> BaseChatModel | None:
    """The configured chat model, or None for the deterministic router and templates.
    Nothing is loaded or contacted here: a local model loads on its first answer."""
    if settings.llm_provider == "none":
        return None
    if settings.llm_provider == "openai":
        from langchain_openai import ChatOpenAI

        if not settings.llm_base_url or not settings.llm_model:
            raise ValueError("PUYI_LLM_PROVIDER=openai needs PUYI_LLM_BASE_URL and PUYI_LLM_MODEL")
        return ChatOpenAI(
            base_url=settings.llm_base_url, model=settings.llm_model, api_key=settings.llm_api_key or "EMPTY",  # type: ignore[arg-type]
            timeout=settings.llm_timeout_seconds, max_retries=0, temperature=settings.llm_temperature,
        )
    if settings.llm_provider == "transformers":
        if not settings.llm_model:
            raise ValueError("PUYI_LLM_PROVIDER=transformers needs PUYI_LLM_MODEL (a local model directory)")
        return TransformersChat(model_path=settings.llm_model, temperature=settings.llm_temperature)
    raise ValueError(f"unknown LLM provider {settings.llm_provider!r}")


class TransformersChat(BaseChatModel):
    """A local model directory through a transformers text-generation pipeline with the model's chat
    template. It has no tool calling: with it the LLM only phrases, and routing stays deterministic."""

    model_path: str
    temperature: float = 0.0
    max_new_tokens: int = 256
    _pipeline: Any = None

    @property
    def _llm_type(self) -> str:
        return "puyi-transformers"

    def _pipe(self) -> Any:
        if self._pipeline is None:
            try:
                from transformers import pipeline
            except ImportError as exc:
                raise RuntimeError("PUYI_LLM_PROVIDER=transformers needs the transformers package "
                                   "(pip install transformers torch)") from exc
            self._pipeline = pipeline("text-generation", model=self.model_path)
        return self._pipeline

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        roles = {"system": "system", "human": "user", "ai": "assistant"}
        chat = [{"role": roles.get(m.type, "user"), "content": m.text} for m in messages]
        sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
        out = self._pipe()(chat, max_new_tokens=self.max_new_tokens, return_full_text=False, **sampling)
        text = out[0]["generated_text"]
        if isinstance(text, list):  # some versions return the whole conversation
            text = text[-1].get("content", "")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=str(text)))])


def calls_tools(llm: Any) -> bool:
    """Whether the model can be bound to tools (BaseChatModel's default bind_tools raises)."""
    if isinstance(llm, TransformersChat):
        return False
    return type(llm).bind_tools is not BaseChatModel.bind_tools


# --- deadlines ---------------------------------------------------------------------------------------


def _pump(produce: Callable[[], Iterator[Any]], seconds: float) -> Iterator[Any]:
    """Items of `produce()` as they come, from a worker thread; TimeoutError once `seconds` are up.
    (A model client's own timeout may be longer, or missing for a local model.)"""
    box: queue.Queue[tuple[str, Any]] = queue.Queue()

    def work() -> None:
        try:
            for item in produce():
                box.put(("item", item))
            box.put(("end", None))
        except BaseException as exc:  # handed to the caller's thread
            box.put(("error", exc))

    threading.Thread(target=work, daemon=True, name="puyi-llm").start()
    deadline = time.monotonic() + seconds
    while True:
        try:
            kind, value = box.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"the LLM did not answer within {seconds:g} s") from None
        if kind == "end":
            return
        if kind == "error":
            raise value
        yield value


def invoke_with_deadline(model: Any, messages: list[BaseMessage], seconds: float) -> AIMessage:
    reply = next(_pump(lambda: iter([model.invoke(messages)]), seconds))
    return reply  # type: ignore[no-any-return]


# --- routing by tool calling -------------------------------------------------------------------------


def _dump(result: Any) -> str:
    # Retrieved text is data, not instructions: sentences addressing the assistant are dropped.
    text = neutralize(json.dumps(result, ensure_ascii=False, default=str))
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + "…（已截断）"


def _latest_month(ctx: ToolContext) -> str:
    from tools.facts import fact_meta

    latest = fact_meta(ctx.conn).latest_month
    return latest.strftime("%Y-%m") if latest else "（暂无经营数据）"


def router_messages(question: str, ctx: ToolContext) -> list[BaseMessage]:
    who = ctx.principal
    system = load_prompt("router_system").render(
        role=ROLE_NAMES.get(who.role, who.role), scope=who.scope_label, latest_month=_latest_month(ctx))
    return [SystemMessage(system), HumanMessage(question)]


def tool_loop(llm: Any, question: str, ctx: ToolContext, seconds: float) -> list[ToolCall]:
    """Let the model call tools until it has called one that answers (not only lookups), stops
    calling tools, or MAX_ROUNDS are used. Returns the calls made, as the deterministic path records them."""
    tools = langchain_tools(ctx)
    by_name = {t.name: t for t in tools}
    model = llm.bind_tools(tools)
    messages = router_messages(question, ctx)
    calls: list[ToolCall] = []
    deadline = time.monotonic() + seconds
    for _ in range(MAX_ROUNDS):
        reply = invoke_with_deadline(model, messages, deadline - time.monotonic())
        if not reply.tool_calls:
            break
        messages.append(reply)
        answered = False
        for n, tc in enumerate(reply.tool_calls):
            spec = registry().get(tc["name"])
            if spec is None or n >= MAX_CALLS_PER_ROUND:
                result: Any = {"error": f"没有名为 {tc['name']} 的工具" if spec is None else "本轮调用过多"}
            else:
                try:
                    result = by_name[tc["name"]].invoke(tc["args"])
                except Exception as exc:  # arguments that do not fit the schema: tell the model
                    result = {"error": f"参数无效：{exc}", "error_type": type(exc).__name__}
                else:
                    calls.append({"name": spec.name, "args": dict(tc["args"]), "result": result})
                    answered = answered or not spec.lookup
                    if spec.name == "design_plans":
                        _save_design(calls, ctx, result)
            messages.append(ToolMessage(content=_dump(result), tool_call_id=tc.get("id") or tc["name"]))
        if answered:
            break
    return calls


def _save_design(calls: list[ToolCall], ctx: ToolContext, design: Any) -> None:
    """A design the model asked for is saved as a draft, as on the deterministic path."""
    from tools import plan_drafts
    from tools.plan_types import DEFAULT_SEED

    if not (isinstance(design, dict) and design.get("plans") and ctx.principal.may("draft_plan")):
        return
    text = str(calls[-1]["args"].get("text") or "")
    try:
        draft = plan_drafts.save_draft(ctx.conn, ctx.principal, text, design, DEFAULT_SEED)
    except PuyiError as exc:
        draft = {"error": str(exc)}
    calls.append({"name": "save_draft", "args": {"seed": DEFAULT_SEED}, "result": draft})


def choose_route(calls: list[ToolCall]) -> tuple[str, str]:
    """The answer's route: the last tool that answers (lookups only lead to it)."""
    specs = [registry()[c["name"]] for c in calls if c["name"] in registry()]
    main = next((s for s in reversed(specs) if not s.lookup), specs[-1])
    return main.route, main.intent


def llm_route(state: dict[str, Any], runtime: Any, decision: RouteDecision) -> dict[str, Any]:
    """The route node with an LLM: tool calling decides; the deterministic decision is the fallback."""
    agent = runtime.context
    base: dict[str, Any] = {"decision": decision, "route": decision.route}
    if decision.route in _NO_LLM_ROUTES or (decision.route, decision.intent) == ("alert", "dispose"):
        # A disposition (「确认 #12」) is an action with its own exact wording: no model in between.
        return {**base, "llm": {"status": "skipped"}}
    if not calls_tools(agent.llm):
        return {**base, "llm": {"status": "phrase_only"}}
    try:
        with agent.db.connection() as conn:
            ctx = ToolContext(conn=conn, principal=agent.principal, kb=agent.kb, channel=agent.channel)
            # A follow-up goes to the model as the standalone question memory rewrote it into.
            question = decision.question or state["question"]
            calls = tool_loop(agent.llm, question, ctx, agent.db.settings.llm_timeout_seconds)
    except Exception as exc:  # timeouts, connection errors, malformed replies: never a failed turn
        log.warning("LLM routing failed, answering deterministically: %s: %s", type(exc).__name__, exc)
        return {**base, "llm": {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:300]}}
    if not calls:
        # An answer without tools has no source for its facts: the deterministic path answers.
        return {**base, "llm": {"status": "no_tools"}}
    route, intent = choose_route(calls)
    chosen = dataclasses.replace(decision, route=route, intent=intent)
    return {"decision": chosen, "route": route, "tool_calls": calls,
            "llm": {"status": "tools", "deterministic_route": decision.route}}


# --- composing ---------------------------------------------------------------------------------------


def numbers_in(text: str) -> set[str]:
    return {m.group(0).replace(",", "") for m in _NUM_RE.finditer(text)}


def supported_lead(lead: str, body: str) -> str:
    """The lead without sentences whose numbers the body does not contain."""
    known = numbers_in(body)
    kept = [s for s in _SENTENCE_RE.findall(lead) if s and numbers_in(s) <= known]
    return "".join(kept).strip()


def answer_messages(question: str, body: str, principal: Any) -> list[BaseMessage]:
    system = load_prompt("answer_system").render(role=ROLE_NAMES.get(principal.role, principal.role),
                                                 scope=principal.scope_label)
    return [SystemMessage(system), HumanMessage(f"问题：{question}\n\n正文：\n{body}")]


def stream_lead(llm: Any, messages: list[BaseMessage], seconds: float, write: Callable[[str], None]) -> str:
    """Stream the model's lead to `write` token by token (leading and trailing blanks held back,
    so that the pieces join to exactly the lead); returns the whole lead."""
    parts: list[str] = []
    pending = ""
    for chunk in _pump(lambda: llm.stream(messages), seconds):
        text = chunk.content if isinstance(chunk.content, str) else ""
        if not text:
            continue
        if not parts and not pending:
            text = text.lstrip()
            if not text:
                continue
        buf = pending + text
        body = buf.rstrip()
        pending = buf[len(body):]
        if body:
            parts.append(body)
            write(body)
    return "".join(parts)


def llm_compose(state: dict[str, Any], runtime: Any) -> dict[str, Any]:
    """The compose node with an LLM: the deterministic answer, with a streamed lead in front of it."""
    from agents.compose import compose_turn

    agent = runtime.context
    info = dict(state.get("llm") or {})
    status = info.get("status")
    decision = state["decision"]
    calls = state.get("tool_calls", [])
    llm = None if status == "failed" else agent.llm
    if status == "tools":
        # Follow-up records (save_draft) belong to the route of the tool they follow.
        route_of = {name: tool.route for name, tool in registry().items()} | {"save_draft": "element_plan"}
        calls = [c for c in calls if route_of.get(c["name"]) == decision.route]
        errors = [c["result"] for c in calls if isinstance(c["result"], dict) and c["result"].get("error_type")]
    else:
        errors = []
    if errors and len(errors) == len(calls):  # a refusal or bad input from the tools: their words
        answer = "\n\n".join(dict.fromkeys(str(e["error"]) for e in errors))
        citations: list[dict[str, Any]] = []
        display: list[dict[str, Any]] = []
    else:
        answer, citations, display = compose_turn(decision, calls, agent.principal, llm)
    if status in ("tools", "phrase_only") and decision.route != "knowledge" and not errors:
        write = getattr(runtime, "stream_writer", None) or (lambda _: None)
        try:
            lead = stream_lead(agent.llm, answer_messages(decision.question or state["question"], answer, agent.principal),
                               agent.db.settings.llm_timeout_seconds, lambda t: write({"delta": t}))
        except Exception as exc:
            log.warning("LLM lead failed, answering without it: %s: %s", type(exc).__name__, exc)
            info.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:300])
        else:
            body, checked = answer, supported_lead(lead, answer)
            if checked != lead.strip():
                info["lead_dropped"] = lead
            if checked:
                answer = f"{checked}\n\n{body}"
            if lead:  # the body follows the streamed lead; the final answer is the checked text
                write({"delta": "\n\n" + body})
    if info.get("status") == "failed":
        answer = f"{answer}\n\n{FALLBACK_NOTE}"
    return {"answer": answer, "citations": citations, "display": display, "llm": info}


# --- `puyi llm check` --------------------------------------------------------------------------------


def _ping_tool(code: str) -> str:
    """查询产品详情（测试用）。code：产品编码。"""
    return code


def check_endpoint(llm: Any, seconds: float) -> list[tuple[str, bool, str]]:
    """Does the model answer, stream, and call a tool? One (check, passed, detail) per check."""
    from langchain_core.tools import StructuredTool

    results: list[tuple[str, bool, str]] = []
    started = time.perf_counter()
    try:
        reply = invoke_with_deadline(llm, [HumanMessage("请只回复一个字：好")], seconds)
        text = reply.text.strip()
        results.append(("answers", bool(text), f"{text[:40]!r}，{time.perf_counter() - started:.2f} s"))
    except Exception as exc:
        results.append(("answers", False, f"{type(exc).__name__}: {exc}"[:300]))
    try:
        pieces = [c.content for c in _pump(lambda: llm.stream([HumanMessage("请用一句话介绍你自己。")]), seconds)
                  if isinstance(c.content, str) and c.content]
        detail = f"{len(pieces)} 个片段：{''.join(pieces)[:40]!r}"
        results.append(("streams", len(pieces) > 1, detail if len(pieces) > 1 else detail + "（没有逐字流式返回）"))
    except Exception as exc:
        results.append(("streams", False, f"{type(exc).__name__}: {exc}"[:300]))
    if not calls_tools(llm):
        results.append(("calls tools", False, "该模型不支持工具调用（路由将使用规则引擎）"))
        return results
    try:
        tool = StructuredTool.from_function(_ping_tool, name="get_product")
        reply = invoke_with_deadline(llm.bind_tools([tool]),
                                     [HumanMessage("请调用 get_product 工具查询产品编码 SL001 的详情。")], seconds)
        got = [f"{c['name']}({json.dumps(c['args'], ensure_ascii=False)})" for c in reply.tool_calls]
        ok = any(c["name"] == "get_product" for c in reply.tool_calls)
        results.append(("calls tools", ok, "、".join(got) if got else "没有返回工具调用（vLLM 需要 "
                        "--enable-auto-tool-choice --tool-call-parser hermes）"))
    except Exception as exc:
        results.append(("calls tools", False, f"{type(exc).__name__}: {exc}"[:300]))
    return results
