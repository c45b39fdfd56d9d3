"""What every tool call carries: the asker, a connection for this turn, and shared resources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from core.access import Principal

if TYPE_CHECKING:
    from tools.knowledge import KnowledgeBase


@dataclass
class ToolContext:
    conn: psycopg.Connection[Any]
    principal: Principal
    kb: KnowledgeBase | None = None
    channel: str | None = None  # where the question came from (web, wecom, api, cli), for records like dispositions
