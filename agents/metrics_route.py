"""The metrics route: figures, rankings and trends (intent `metric`), product evaluation
(`evaluation`) and internal substitution (`substitution`)."""

from __future__ import annotations

from typing import Any

from agents.compose import Composed
from agents.router import RouteDecision
from agents.state import ToolCall
from core.access import Principal
from tools.context import ToolContext


def handle(d: RouteDecision, ctx: ToolContext) -> list[ToolCall]:
    return []


def compose(d: RouteDecision, calls: list[ToolCall], principal: Principal, llm: Any = None) -> Composed:
    return "经营指标查询尚未开放 (not available yet)。", [], []
