"""The state one turn carries through the graph."""

from __future__ import annotations

from typing import Any, TypedDict

from agents.router import RouteDecision


class ToolCall(TypedDict):
    name: str
    args: dict[str, Any]
    result: Any


class Citation(TypedDict, total=False):
    chunk_id: int
    title: str
    doc_type: str
    path: str
    heading: str
    page: int | None
    snippet: str
    score: float


class TurnState(TypedDict, total=False):
    question: str
    session_id: str
    decision: RouteDecision
    route: str
    tool_calls: list[ToolCall]
    answer: str
    citations: list[Citation]
    display: list[dict[str, Any]]  # structured blocks under the answer (table, chart, alert, comparison)
    context: dict[str, Any]  # what the conversation is about, carried to the next turn (agents/memory.py)
    llm: dict[str, Any]  # the LLM's part in the turn (agents/llm.py): status tools|no_tools|failed|…, errors
