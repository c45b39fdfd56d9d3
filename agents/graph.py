"""The assistant's LangGraph: route → tools → compose. Built by a factory, never at import."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.compose import compose_turn
from agents.context import AgentContext
from agents.handlers import HANDLERS
from agents.memory import next_context, resolve_followup
from agents.router import classify
from agents.state import TurnState
from tools.catalog import catalog_index
from tools.context import ToolContext


def route_question(state: TurnState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    with runtime.context.db.connection() as conn:
        index = catalog_index(conn)
        # A follow-up ("那它的逾期率呢？") is read as the full question it stands for (agents/memory.py).
        decision = resolve_followup(state["question"], classify(state["question"], index), state.get("context"), index)
    if runtime.context.llm is not None:  # the model routes by calling tools (agents/llm.py)
        from agents.llm import llm_route

        return llm_route(dict(state), runtime, decision)
    return {"decision": decision, "route": decision.route}


def call_tools(state: TurnState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    if runtime.context.llm is not None and (state.get("llm") or {}).get("status") == "tools":
        return {}  # the LLM's tool calls already ran in the route step
    handler = HANDLERS.get(state["route"])
    if handler is None:
        return {"tool_calls": []}
    with runtime.context.db.connection() as conn:
        ctx = ToolContext(conn=conn, principal=runtime.context.principal, kb=runtime.context.kb,
                          channel=runtime.context.channel)
        return {"tool_calls": handler(state["decision"], ctx)}


def compose_answer(state: TurnState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    if runtime.context.llm is not None:
        from agents.llm import llm_compose

        return llm_compose(dict(state), runtime)
    answer, citations, display = compose_turn(
        state["decision"], state.get("tool_calls", []), runtime.context.principal, runtime.context.llm
    )
    return {"answer": answer, "citations": citations, "display": display}


def remember(state: TurnState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """What this turn was about, for the next turn of the same conversation."""
    with runtime.context.db.connection() as conn:
        return {"context": next_context(conn, dict(state))}


def build_graph(checkpointer: Any = None) -> Any:
    graph = StateGraph(TurnState, context_schema=AgentContext)
    graph.add_node("route_question", route_question)
    graph.add_node("call_tools", call_tools)
    graph.add_node("compose_answer", compose_answer)
    graph.add_edge(START, "route_question")
    graph.add_edge("route_question", "call_tools")
    graph.add_edge("call_tools", "compose_answer")
    graph.add_node("remember", remember)
    graph.add_edge("compose_answer", "remember")
    graph.add_edge("remember", END)
    return graph.compile(checkpointer=checkpointer, name="puyi")
