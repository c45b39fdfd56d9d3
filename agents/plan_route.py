"""The element_plan route: draft element plans for a new product idea, priced and simulated."""

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
    return "要素方案设计尚未开放 (not available yet)。", [], []
