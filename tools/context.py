"""What every tool call carries: the asker and a connection for this turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from core.access import Principal


@dataclass
class ToolContext:
    conn: psycopg.Connection[Any]
    principal: Principal
