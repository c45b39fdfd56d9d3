"""The element_plan route: draft element plans for a new product idea, priced and simulated.

A designer (or admin) describes the product; `tools.plans.design_plans` reads the requirement,
gathers the evidence, prices and builds 保守/均衡/进取 plans and simulates them; the design is
saved as a draft in the 创设 status (tools.plan_drafts). Someone whose role may not draft plans
(an rm, risk) gets a polite refusal and no design is run. A question naming draft codes
(DRAFT-YYYYMMDD-NNN) compares those drafts instead.

Every number in the answer is a value or display string of the design result; the answer only
arranges them."""

from __future__ import annotations

import re
from typing import Any

from agents.compose import Composed, _md_table
from agents.handlers import call_tool
from agents.router import RouteDecision
from agents.state import ToolCall
from core.access import ROLE_NAMES, Principal
from core.errors import PuyiError
from tools import plan_drafts
from tools.context import ToolContext
from tools.plan_export import field_name, local_time, pricing_headline, requirement_rows, warnings_of
from tools.plan_types import DEFAULT_SEED
from tools.plans import design_plans

_DRAFT_RE = re.compile(r"DRAFT-\d{8}-\d{3,}", re.IGNORECASE)
_KEY_ELEMENTS = (("利率", ("rate_min", "rate_max")), ("期限", ("term_min_months", "term_max_months")),
                 ("额度", ("amount_min", "amount_max")), ("担保", ("collateral",)), ("渠道", ("channels",)))



def refusal_text(principal: Principal) -> str:
    role = ROLE_NAMES.get(principal.role, principal.role)
    return (
        f"抱歉，要素方案设计和方案草案仅向产品经理和管理员开放，您当前的角色（{role}）不能发起方案设计。"
        "如有新产品的想法，欢迎反馈给总行产品管理部门的产品经理；"
        "我也可以帮您查询现有产品的要素，例如「某某贷的利率是多少？」。"
    )


def handle(d: RouteDecision, ctx: ToolContext) -> list[ToolCall]:
    calls: list[ToolCall] = []
    text = d.question or d.residual
    if not ctx.principal.may("draft_plan"):
        calls.append({"name": "refused", "args": {}, "result": {"role": ctx.principal.role,
                                                                 "message": refusal_text(ctx.principal)}})
        return calls
    try:
        codes = list(dict.fromkeys(c.upper() for c in _DRAFT_RE.findall(text)))
        if codes:
            result = plan_drafts.compare_drafts(ctx.conn, ctx.principal, codes)
            calls.append({"name": "compare_drafts", "args": {"codes": codes}, "result": result})
            return calls
        design = call_tool(calls, ctx, design_plans, text=text, seed=DEFAULT_SEED)
        if design.get("plans"):
            draft = plan_drafts.save_draft(ctx.conn, ctx.principal, text, design, DEFAULT_SEED)
            calls.append({"name": "save_draft", "args": {"seed": DEFAULT_SEED}, "result": draft})
    except PuyiError as exc:  # a requirement that cannot be read, an unknown draft: a clear answer
        calls.append({"name": "error", "args": {}, "result": {"error": str(exc)}})
    return calls


# --- answers ---------------------------------------------------------------------------------------


def _element(plan: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((e for e in plan.get("elements") or [] if e.get("element") == key), None)


def _value(e: dict[str, Any] | None) -> str:
    return "" if e is None or e.get("value") in (None, "") else plan_drafts.element_display(e)


def _range(plan: dict[str, Any], keys: tuple[str, ...]) -> str:
    values = [_value(_element(plan, k)) for k in keys]
    values = [v for v in values if v]
    if not values:
        return "—"
    if len(values) == 2 and values[0] != values[1]:
        return f"{values[0]} – {values[1]}"
    return values[0]


def plan_rate(plan: dict[str, Any]) -> str:
    """The plan's priced rate (its display string) when pricing gives one, else the rate elements."""
    rate = (plan.get("pricing") or {}).get("rate")
    if isinstance(rate, dict) and rate.get("display"):
        return str(rate["display"])
    return _range(plan, ("rate_min", "rate_max"))


def plan_summary_rows(plans: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for p in plans:
        cells = [plan_rate(p)] + [_range(p, keys) for _, keys in _KEY_ELEMENTS[1:]]
        rows.append([p.get("name", ""), *cells, plan_drafts.meets_text(p)])
    return rows


def pricing_lines(pricing: dict[str, Any]) -> list[str]:
    """The floor (or, for deposits, the ceiling) and its parts, as the pricing step displayed them."""
    if not pricing:
        return []
    label, head, parts = pricing_headline(pricing)
    # A loan's floor adds its parts; a deposit's ceiling is the funds value less the others.
    joiner = " − " if pricing.get("kind") == "deposit_ceiling" else " + "
    lines = []
    if head:
        lines.append(f"**{label}**：{head}" + (f"（{joiner.join(parts)}）" if parts else ""))
    elif parts:
        lines.append(f"**{label}**：" + joiner.join(parts))
    if pricing.get("note"):
        lines.append(str(pricing["note"]))
    return lines


def _requirement_line(req: dict[str, Any]) -> list[str]:
    rows = requirement_rows(req)
    if not rows:
        return ["**需求理解**：没有读出明确的要素。"]
    lines = ["**需求理解**：" + "；".join(f"{label} {value}" + ("（补全）" if origin.startswith("补全") else "")
                                         for label, value, origin in rows)]
    if req.get("filled"):
        lines.append("- 补全：" + "；".join(f"{field_name(k)} ← {v}" for k, v in req["filled"].items()))
    lines += [f"- ⚠ 约束冲突：{c}" for c in req.get("conflicts") or []]
    return lines


def element_block(plans: list[dict[str, Any]], title: str = "要素方案对比") -> dict[str, Any]:
    columns = ["要素", *[p.get("name", "") for p in plans]]
    rows = [*plan_drafts.plan_element_rows(plans), ["满足设计约束", *[plan_drafts.meets_text(p) for p in plans]]]
    return {"type": "comparison", "title": title, "columns": columns, "rows": rows}


def compose_design(design: dict[str, Any], draft: dict[str, Any] | None, just_saved: bool = True) -> Composed:
    """The answer to a design (or, with just_saved=False, the summary of a stored draft)."""
    req = design.get("requirement") or {}
    plans = list(design.get("plans") or [])
    name = draft["name"] if draft else plan_drafts.draft_name(req)
    lines = [f"### 要素方案：{name}", ""]
    lines += _requirement_line(req)
    pricing = pricing_lines(design.get("pricing") or {})
    if pricing:
        lines += [""] + pricing
    if not plans:
        lines += ["", "没有生成方案：" + ("；".join(design.get("warnings") or []) or "需求中缺少可用于设计的要素。"),
                  "请补充产品大类、客群、期限、额度或利率要求后再试。"]
        return "\n".join(lines), [], []
    lines += ["", f"**方案**（{len(plans)} 个）", "",
              _md_table(["方案", "利率", "期限", "额度", "担保", "渠道", "满足约束"], plan_summary_rows(plans))]
    for p in plans:
        for u in p.get("unmet") or []:
            lines.append(f"- {p.get('name')}：{u}")
    sim = design.get("simulation") or None
    display: list[dict[str, Any]] = []
    if sim and (sim.get("comparison") or {}).get("rows"):
        block = sim["comparison"]
        lines += ["", f"**{block.get('title') or 'A/B 沙盘对比'}**", "",
                  _md_table([str(c) for c in block.get("columns") or []], [list(r) for r in block["rows"]])]
        display.append(block)
    elif sim is None:
        lines += ["", "本次未做沙盘模拟。"]
    display.append(element_block(plans))
    if sim:
        display += [c for c in sim.get("charts") or [sim.get("chart")] if c]
        if sim.get("message"):
            lines += ["", str(sim["message"])]
    conflicts = set(req.get("conflicts") or [])
    warnings = [w for w in warnings_of(design) if w not in conflicts]
    if warnings:
        lines += ["", "**提示**"] + [f"- {w}" for w in warnings]
    if draft:
        code = draft["code"]
        how = f"导出：`puyi plan export {code} --format docx`（或 md）"
        if just_saved:
            lines += ["", f"已保存为草案 **{code}**（状态：{draft['status_name']}）。{how}，查看：`puyi plan show {code}`。"]
        else:
            lines += ["", f"草案 **{code}**（状态：{draft['status_name']}，创建人：{draft.get('created_by_name') or '—'}，"
                          f"创建时间：{local_time(str(draft.get('created_at') or '—'))}）。{how}。"]
    return "\n".join(lines), [], display


def compose_compare(result: dict[str, Any]) -> Composed:
    names = "、".join(f"{d['name']}（{d['code']}）" for d in result["drafts"])
    text = f"### 草案对比\n\n{names}\n\n" + _md_table(result["columns"], result["rows"])
    return text, [], [result["block"]]


def compose(d: RouteDecision, calls: list[ToolCall], principal: Principal, llm: Any = None) -> Composed:
    by_name = {c["name"]: c["result"] for c in calls}
    if "refused" in by_name:
        return str(by_name["refused"]["message"]), [], []
    if "error" in by_name:
        return str(by_name["error"]["error"]), [], []
    if "compare_drafts" in by_name:
        return compose_compare(by_name["compare_drafts"])
    if "design_plans" in by_name:
        return compose_design(by_name["design_plans"], by_name.get("save_draft"))
    return "请描述您想设计的产品，例如「面向小微企业主的3年期经营贷，额度最高300万，利率不高于4.5%，线上办理」。", [], []
