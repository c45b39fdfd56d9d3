"""Per-turn runtime context handed to every node (LangGraph `context_schema`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.access import Principal
from core.db import Database
from tools.knowledge import KnowledgeBase


@dataclass(frozen=True)
class AgentContext:
    db: Database
    principal: Principal
    kb: KnowledgeBase | None = None
    llm: Any = None  # a langchain chat model, when one is configured; None = deterministic answers
    channel: str | None = None  # the asker's channel (web, wecom, openai, cli…)
