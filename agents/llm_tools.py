"""The tools an LLM may call: one LangChain tool per capability, each a thin wrapper that calls
the same plain tool function (`fn(ctx, **args)`) with the turn's ToolContext.

Role and branch scope stay inside the tools: the LLM only chooses which tool and which arguments;
a tool the asker may not use refuses exactly as it does on the deterministic path. The plain
function's docstring is the tool's description.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, create_model

from core.errors import PuyiError
from tools.context import ToolContext


@dataclass(frozen=True)
class LlmTool:
    fn: Callable[..., dict[str, Any]]
    route: str  # the answer's route when this tool answers the question
    intent: str
    lookup: bool = False  # a step towards the answer (a product code, the metric keys): the model may go on
    hidden: frozenset[str] = field(default_factory=frozenset)  # arguments the model does not set

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def description(self) -> str:
        # Lines of a Chinese docstring join without a space; other whitespace collapses to one.
        text = re.sub(r"\s*\n\s*(?=[^\x00-\x7f])|(?<=[^\x00-\x7f])\s*\n\s*", "", (self.fn.__doc__ or self.name).strip())
        return " ".join(text.split())


@cache
def registry() -> dict[str, LlmTool]:
    """Every tool the LLM may call, by name (imports the tool modules on first use, not at import)."""
    from tools import alerts, catalog, evaluation, knowledge, metrics, plans, substitution

    tools = [
        LlmTool(catalog.find_product, "catalog", "lookup", lookup=True),
        LlmTool(catalog.get_product, "catalog", "lookup"),
        LlmTool(catalog.trace_down, "catalog", "trace"),
        LlmTool(catalog.trace_up, "catalog", "trace_up"),
        LlmTool(catalog.map_source_code, "catalog", "map_code"),
        LlmTool(catalog.list_products, "catalog", "list"),
        LlmTool(catalog.count_products, "catalog", "count"),
        LlmTool(knowledge.search_knowledge, "knowledge", "search"),
        LlmTool(metrics.query_metric, "metrics", "metric", hidden=frozenset({"period_label"})),
        LlmTool(metrics.list_metrics, "metrics", "metric", lookup=True),
        LlmTool(evaluation.evaluate_products, "metrics", "evaluation", hidden=frozenset({"exit_score"})),
        LlmTool(evaluation.category_view, "metrics", "evaluation"),
        LlmTool(substitution.substitution_analysis, "metrics", "substitution"),
        LlmTool(alerts.list_alerts, "alert", "list"),
        LlmTool(alerts.explain_alert, "alert", "explain"),
        # Offered to every role: the tool itself refuses those who may not draft plans.
        LlmTool(plans.design_plans, "element_plan", "design", hidden=frozenset({"seed", "simulate"})),
    ]
    return {t.name: t for t in tools}


@cache
def args_schema(name: str) -> type[BaseModel]:
    """The tool's arguments (its signature without ctx and hidden ones) as a pydantic model."""
    tool = registry()[name]
    hints = typing.get_type_hints(tool.fn)
    fields: dict[str, Any] = {}
    for arg, param in inspect.signature(tool.fn).parameters.items():
        if arg == "ctx" or arg in tool.hidden:
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[arg] = (hints.get(arg, Any), default)
    model: type[BaseModel] = create_model(f"{name}_args", **fields)
    return model


def run(tool: LlmTool, ctx: ToolContext, **args: Any) -> dict[str, Any]:
    """Call the plain tool; a refusal or bad input becomes a result the model and the answer can read."""
    try:
        return tool.fn(ctx, **args)
    except PuyiError as exc:
        return {"error": str(exc), "error_type": type(exc).__name__}
    except (ValueError, TypeError, LookupError) as exc:  # arguments the tool cannot use
        return {"error": f"参数无效：{exc}", "error_type": type(exc).__name__}


def langchain_tools(ctx: ToolContext) -> list[StructuredTool]:
    """The turn's tools: bound to the model for their schemas, invoked to run with this ctx."""
    out = []
    for name, tool in registry().items():

        def call(_tool: LlmTool = tool, **args: Any) -> dict[str, Any]:
            return run(_tool, ctx, **args)

        out.append(StructuredTool.from_function(
            func=call, name=name, description=tool.description, args_schema=args_schema(name),
        ))
    return out
