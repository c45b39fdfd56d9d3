"""The tool step of each route: which tools a routed question calls, with which arguments.

Later issues register their routes here; a route with no handler yet answers "not available".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agents.router import RouteDecision
from agents.state import ToolCall
from tools import catalog, knowledge
from tools.context import ToolContext

Handler = Callable[[RouteDecision, ToolContext], list[ToolCall]]

_TRACE_UP_RE = re.compile(r"上层|上级|被哪些|哪些可售|哪些产品用到|向上")
_TRACE_RE = re.compile(r"穿透|下挂|底层|核算科目|科目|组成|构成|链路|追溯|原子|基础产品|聚类|上层|上级")
_LIST_RE = re.compile(r"有哪些|哪些|列出|清单|列表|都有")
MAX_PRODUCTS = 3  # products one question may name before the rest are left out


def call_tool(calls: list[ToolCall], ctx: ToolContext, fn: Callable[..., Any], **args: Any) -> Any:
    result = fn(ctx, **args)
    calls.append({"name": fn.__name__, "args": args, "result": result})
    return result


def handle_catalog(d: RouteDecision, ctx: ToolContext) -> list[ToolCall]:
    calls: list[ToolCall] = []
    if d.intent == "map_code":
        tokens = list(dict.fromkeys([src for _, src, _ in d.source_codes] + d.unknown_codes))
        for token in tokens[:MAX_PRODUCTS]:
            call_tool(calls, ctx, catalog.map_source_code, source_code=token)
        return calls
    if d.intent == "trace_up" and d.subjects:
        for subject in d.subjects[:MAX_PRODUCTS]:
            call_tool(calls, ctx, catalog.trace_up, code=subject)
        return calls
    if d.intent in ("count", "list"):
        filters = {k: d.filters.get(k) for k in ("category", "segment", "status")}
        filters["level"] = d.filters.get("level", "sellable")
        if d.intent == "count":
            group_by = next((k for k in ("category", "status", "segment") if not d.filters.get(k)), "owner_dept")
            call_tool(calls, ctx, catalog.count_products, group_by=group_by, **filters)
        else:
            call_tool(calls, ctx, catalog.list_products, **filters)
        return calls

    codes = _resolve_products(d, ctx, calls)
    if not codes:
        return calls
    text = d.residual
    for code in codes:
        if _TRACE_UP_RE.search(text):
            call_tool(calls, ctx, catalog.trace_up, code=code)
        elif _TRACE_RE.search(text):
            call_tool(calls, ctx, catalog.trace_down, code=code)
        else:
            call_tool(calls, ctx, catalog.get_product, code=code)
    return calls


def _resolve_products(d: RouteDecision, ctx: ToolContext, calls: list[ToolCall]) -> list[str]:
    """Products the question is about; an ambiguous or unknown name ends the turn with a question back."""
    if d.loose or not d.products:
        # A loose name is shown as what it resolved to; several close candidates mean: ask.
        # "大额存单有哪些" asks for the list itself: every sellable product with that name.
        listing = {"limit": 50, "level": "sellable"} if _LIST_RE.search(d.residual) else {}
        found = call_tool(calls, ctx, catalog.find_product, query=d.phrase or d.residual.strip(), **listing)
        if found["status"] != "found":
            return []
        return [found["candidates"][0]["code"]]
    by_surface: dict[str, list[str]] = {}
    for cand in d.products:
        by_surface.setdefault(cand.matched, []).append(cand.code)
    for surface, codes in by_surface.items():
        if len(codes) > 1:  # one name, several products: let the person choose
            call_tool(calls, ctx, catalog.find_product, query=surface)
            return []
    return [c.code for c in d.products][:MAX_PRODUCTS]


def handle_knowledge(d: RouteDecision, ctx: ToolContext) -> list[ToolCall]:
    calls: list[ToolCall] = []
    codes = [c.code for c in d.products if not d.loose][:MAX_PRODUCTS]
    call_tool(calls, ctx, knowledge.search_knowledge, query=d.question, products=codes or None)
    for code in codes[:1]:
        # A product question gets the compliance reminders that apply to it, and a relationship
        # manager (who talks to customers) its talking points.
        if ctx.principal.role in ("rm", "admin"):
            call_tool(calls, ctx, knowledge.talking_points, product_code=code)
        call_tool(calls, ctx, knowledge.compliance_reminders, product_code=code)
    return calls


def handle_metrics(d: RouteDecision, ctx: ToolContext) -> list[ToolCall]:
    from agents import metrics_route

    return metrics_route.handle(d, ctx)


def handle_alert(d: RouteDecision, ctx: ToolContext) -> list[ToolCall]:
    from agents import alert_route

    return alert_route.handle(d, ctx)


def handle_element_plan(d: RouteDecision, ctx: ToolContext) -> list[ToolCall]:
    from agents import plan_route

    return plan_route.handle(d, ctx)


HANDLERS: dict[str, Handler] = {
    "catalog": handle_catalog,
    "knowledge": handle_knowledge,
    "metrics": handle_metrics,
    "alert": handle_alert,
    "element_plan": handle_element_plan,
}


def register(route: str, handler: Handler) -> None:
    """Plug a route's tool step in (used by the later capabilities)."""
    HANDLERS[route] = handler
