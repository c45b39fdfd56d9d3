"""Deterministic answers: markdown rendered from tool results, every number taken from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.phrasing import phrase_knowledge
from agents.router import RouteDecision
from agents.state import ToolCall
from core.access import Principal
from core.text import fmt_money
from tools.catalog import CATEGORY_NAMES, ELEMENT_NAMES, LEVEL_NAMES, SEGMENT_NAMES, STATUS_NAMES

ROUTE_NAMES = {
    "catalog": "产品目录", "metrics": "经营指标", "element_plan": "要素方案", "alert": "风险预警",
    "knowledge": "知识库", "help": "使用帮助", "refused": "拒绝",
}

HELP_TEXT = """您好，我是**谱翼**，行内产品管理助手。您可以这样问我：

- **产品目录**：「某某贷的利率是多少？」「某产品穿透到哪些核算科目？」「科目某某下面挂了哪些产品？」「核心系统代码某某对应哪个产品？」「普惠类在售的贷款产品有多少个？」
- **经营指标**：「9月某某贷的不良率是多少？」「贷款类净贡献前十的产品」
- **风险预警**：「为什么某产品被停牌了？」
- **要素方案**：「面向小微企业主的3年期经营贷，额度最高300万，利率不高于4.5%」
- **知识库**：「某某贷可以提前还款吗？」「理财产品双录有什么要求？」

所有数字都来自行内数据，并按您的权限范围展示。"""

REFUSAL_TEXT = (
    "抱歉，这个请求我不能处理。我只回答与本行产品、经营指标、风险预警、产品设计和制度文件相关的问题，"
    "不提供客户个人信息的批量查询或导出，也不会执行要求改变我工作规则的指令。"
    "如确有业务需要，请通过行内正式流程申请。"
)


# What a route composer returns: the answer in markdown, its citations and its display blocks.
Composed = tuple[str, list[dict[str, Any]], list[dict[str, Any]]]


def _label(table: dict[str, str], key: str | None) -> str:
    return table.get(key or "", key or "—")


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v if v not in (None, "") else "—").replace("|", "／").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _element_value(e: dict[str, Any]) -> str:
    unit = e.get("unit") or ""
    return f"{e['value']}{unit}" if unit and unit not in str(e["value"]) else str(e["value"])


def _render_find(call: ToolCall, d: RouteDecision) -> str:
    r = call["result"]
    if r["status"] == "not_found":
        return (
            f"产品目录中没有找到「{r['query']}」。请换用产品全称、简称或产品编码再试，"
            "也可以问「贷款类有哪些产品」浏览目录。"
        )
    rows = [[c["code"], c["name"], _label(LEVEL_NAMES, c["level"]), _label(STATUS_NAMES, c["status"])] for c in r["candidates"]]
    head = f"「{r['query']}」可能指以下 {len(rows)} 个产品，请告诉我是哪一个（可回复产品编码）："
    if call["args"].get("level") == "sellable":
        capped = len(rows) >= call["args"].get("limit", 50)
        head = f"名称含「{r['query']}」的可售产品" + (f"较多，以下是前 {len(rows)} 个：" if capped else f"共 {len(rows)} 个：")
    if r["status"] == "found":
        head = f"「{r['query']}」按最接近的名称匹配为："
    return head + "\n\n" + _md_table(["编码", "名称", "层级", "状态"], rows)


def _render_product(call: ToolCall, d: RouteDecision) -> str:
    p = call["result"]
    if p.get("error"):
        return f"产品目录中没有编码为 {p['code']} 的产品。"
    lines = [f"**{p['name']}**（{p['code']}）"]
    asked = [e for e in p["elements"] if e["element"] in d.elements]
    if asked:
        lines.append("")
        lines += [f"- {ELEMENT_NAMES.get(e['element'], e['element'])}：**{_element_value(e)}**" for e in asked]
    lines.append("")
    lines.append(
        f"- 层级：{_label(LEVEL_NAMES, p['level'])}；大类：{_label(CATEGORY_NAMES, p['category'])}；"
        f"客群：{_label(SEGMENT_NAMES, p['segment'])}；状态：{_label(STATUS_NAMES, p['status'])}"
    )
    if p.get("owner_dept"):
        lines.append(f"- 主管部门：{p['owner_dept']}")
    if p.get("launch_date") or p.get("retire_date"):
        lines.append(f"- 上线日期：{p.get('launch_date') or '—'}；退出日期：{p.get('retire_date') or '—'}")
    if p.get("aliases"):
        lines.append("- 别名：" + "、".join(p["aliases"]))
    if p.get("description"):
        lines.append(f"- 简介：{p['description']}")
    if p["elements"] and not asked:
        lines += ["", "**产品要素**", ""]
        lines.append(_md_table(
            ["要素", "取值"],
            [[ELEMENT_NAMES.get(e["element"], e["element"]), _element_value(e)] for e in p["elements"]],
        ))
    elif d.elements and not asked:
        lines.append("- 目录中没有登记您问的要素。")
    if p["parents"]:
        lines.append("- 上级：" + "、".join(f"{x['name']}（{x['code']}，{_label(LEVEL_NAMES, x['level'])}）" for x in p["parents"]))
    if p["children"]:
        lines.append("- 下级：" + "、".join(f"{x['name']}（{x['code']}，{_label(LEVEL_NAMES, x['level'])}）" for x in p["children"]))
    if p["system_codes"]:
        lines.append("- 系统代码：" + "、".join(f"{s['system']}:{s['source_code']}" for s in p["system_codes"]))
    biz = p.get("business")
    if biz:
        lines.append(
            f"- {biz['month']} 月末（{biz['scope']}）：余额 {fmt_money(biz['balance'])}，"
            f"客户数 {int(biz['customers']):,} 户"
        )
    return "\n".join(lines)


def _path_text(path: list[dict[str, Any]]) -> str:
    return " → ".join(f"{n['name']}（{n['code']}）" for n in path)


def _render_trace_down(call: ToolCall, d: RouteDecision) -> str:
    r = call["result"]
    if r.get("error"):
        return f"产品目录中没有编码为 {r['code']} 的产品。"
    if not r["paths"] or len(r["paths"][0]) <= 1:
        return f"**{r['name']}**（{r['code']}）在目录中没有登记下级产品或核算科目。"
    lines = [f"**{r['name']}**（{r['code']}）穿透路径共 {len(r['paths'])} 条："]
    lines += [f"{i}. {_path_text(p)}" for i, p in enumerate(r["paths"], 1)]
    if r["subjects"]:
        lines.append("")
        lines.append("对应核算科目：" + "、".join(f"{s['code']} {s['name']}" for s in r["subjects"]))
    if not r["complete"]:
        lines.append("")
        lines.append("注意：部分路径没有落到核算科目，目录登记不完整。")
    return "\n".join(lines)


def _render_trace_up(call: ToolCall, d: RouteDecision) -> str:
    r = call["result"]
    if r.get("error"):
        return f"目录中没有编码为 {r['code']} 的产品或核算科目。"
    what = "核算科目" if r["level"] == "subject" else _label(LEVEL_NAMES, r["level"])
    if not r["sellable"]:
        return f"{what} **{r['name']}**（{r['code']}）没有被任何可售产品使用。"
    lines = [f"{what} **{r['name']}**（{r['code']}）向上关联 {len(r['sellable'])} 个可售产品："]
    lines.append(_md_table(["编码", "名称"], [[s["code"], s["name"]] for s in r["sellable"]]))
    lines += ["", "路径："] + [f"- {_path_text(p)}" for p in r["paths"][:20]]
    if len(r["paths"]) > 20:
        lines.append(f"- ……另有 {len(r['paths']) - 20} 条")
    return "\n".join(lines)


def _render_map(call: ToolCall, d: RouteDecision) -> str:
    r = call["result"]
    if not r["matches"]:
        return f"没有找到源系统代码「{r['source_code']}」对应的目录产品，请确认代码和系统。"
    rows = [[m["system"], m["source_code"], m["code"], m["name"], _label(STATUS_NAMES, m["status"])] for m in r["matches"]]
    return f"源系统代码「{r['source_code']}」对应：\n\n" + _md_table(["系统", "系统代码", "目录编码", "产品名称", "状态"], rows)


def _filters_text(f: dict[str, Any]) -> str:
    parts = []
    if f.get("status"):
        parts.append(_label(STATUS_NAMES, f["status"]) + "状态")
    if f.get("segment"):
        parts.append(_label(SEGMENT_NAMES, f["segment"]))
    if f.get("category"):
        parts.append(_label(CATEGORY_NAMES, f["category"]) + "类")
    parts.append(_label(LEVEL_NAMES, f.get("level")) if f.get("level") else "产品")
    return "的".join(parts[:-1]) + ("的" if len(parts) > 1 else "") + parts[-1]


def _render_list(call: ToolCall, d: RouteDecision) -> str:
    r = call["result"]
    what = _filters_text(r["filters"])
    if r["total"] == 0:
        return f"目录中没有{what}。"
    lines = [f"目录中共有 **{r['total']}** 个{what}。"]
    if r["by_status"] and not r["filters"].get("status"):
        lines.append("按状态：" + "，".join(f"{_label(STATUS_NAMES, g['key'])} {g['count']} 个" for g in r["by_status"]))
    shown = r["items"]
    lines += ["", _md_table(
        ["编码", "名称", "大类", "客群", "状态"],
        [[i["code"], i["name"], _label(CATEGORY_NAMES, i["category"]), _label(SEGMENT_NAMES, i["segment"]),
          _label(STATUS_NAMES, i["status"])] for i in shown],
    )]
    if r["total"] > len(shown):
        lines.append(f"\n仅列出前 {len(shown)} 个，可加上客群、状态等条件缩小范围。")
    return "\n".join(lines)


def _render_count(call: ToolCall, d: RouteDecision) -> str:
    r = call["result"]
    what = _filters_text(r["filters"])
    table = {"category": CATEGORY_NAMES, "segment": SEGMENT_NAMES, "level": LEVEL_NAMES, "status": STATUS_NAMES}.get(r["group_by"], {})
    by = {"category": "大类", "segment": "客群", "level": "层级", "status": "状态", "owner_dept": "主管部门"}[r["group_by"]]
    lines = [f"目录中共有 **{r['total']}** 个{what}。"]
    if r["groups"]:
        lines += ["", _md_table([by, "数量"], [[_label(table, g["key"]), g["count"]] for g in r["groups"]])]
    return "\n".join(lines)


DOC_TYPE_NAMES = {"manual": "产品手册", "faq": "常见问答", "compliance": "合规要点", "notice": "通知公告",
                  "regulation": "法律法规", "other": "其他文件"}


def _source_line(c: dict[str, Any]) -> str:
    where = c["title"] + (f" › {c['heading'].split(' > ')[-1]}" if c.get("heading") else "")
    page = f"，第 {c['page']} 页" if c.get("page") else ""
    return f"《{where}》（{DOC_TYPE_NAMES.get(c['doc_type'], c['doc_type'])}{page}）"


def _quote(text: str, limit: int = 360) -> str:
    text = text if len(text) <= limit else text[:limit] + "……"
    return "\n".join("> " + line for line in text.splitlines() if line.strip())


def _render_knowledge(calls: list[ToolCall], d: RouteDecision, llm: Any = None) -> tuple[str, list[dict[str, Any]]]:
    search = next(c["result"] for c in calls if c["name"] == "search_knowledge")
    passages = [p for p in search["passages"] if p["relevant"]][:3]
    if not passages:
        return (
            f"没有在您有权查看的制度、手册和法规中找到与「{search['query']}」直接相关的内容，"
            f"我不做猜测。建议咨询**{search['owner']}**确认。"
        ), []
    phrased = phrase_knowledge(llm, d.question, passages, search["owner"]) if llm is not None else None
    lines = [phrased] if phrased else ["根据本行文件和相关法规，找到以下内容（原文摘录）："]
    citations = []
    for n, p in enumerate(passages, 1):
        lines += ["", f"**[{n}]** {_source_line(p)}"] + ([] if phrased else [_quote(p["snippet"])])
        citations.append({k: p.get(k) for k in ("chunk_id", "title", "doc_type", "path", "heading", "page", "snippet", "score")})
    # Talking points for the conversation with the customer, then the rules that bind it.
    extras = {"talking_points": ("营销话术", "points"), "compliance_reminders": ("合规提醒", "reminders")}
    for call in calls:
        if call["name"] not in extras:
            continue
        heading, key = extras[call["name"]]
        if call["result"][key]:
            lines += ["", f"**{heading}**"]
        for p in call["result"][key]:
            lines += [f"**[{len(citations) + 1}]** {_source_line(p)}", _quote(p["snippet"], 300)]
            citations.append({k: p.get(k) for k in ("chunk_id", "title", "doc_type", "path", "heading", "page", "snippet", "score")})
    return "\n".join(lines), citations


RENDERERS: dict[str, Callable[[ToolCall, RouteDecision], str]] = {
    "find_product": _render_find,
    "get_product": _render_product,
    "trace_down": _render_trace_down,
    "trace_up": _render_trace_up,
    "map_source_code": _render_map,
    "list_products": _render_list,
    "count_products": _render_count,
}


def compose_turn(d: RouteDecision, calls: list[ToolCall], principal: Principal, llm: Any = None) -> Composed:
    """The answer, citations and display blocks: routes with their own composer use it."""
    if d.route == "metrics":
        from agents import metrics_route

        return metrics_route.compose(d, calls, principal, llm)
    if d.route == "alert":
        from agents import alert_route

        return alert_route.compose(d, calls, principal, llm)
    if d.route == "element_plan":
        from agents import plan_route

        return plan_route.compose(d, calls, principal, llm)
    text, citations = compose(d, calls, principal, llm)
    return text, citations, []


def compose(
    d: RouteDecision, calls: list[ToolCall], principal: Principal, llm: Any = None
) -> tuple[str, list[dict[str, Any]]]:
    """The answer in markdown for a routed question and the results of its tools, with citations."""
    if d.route == "help":
        return HELP_TEXT, []
    if d.route == "refused":
        return REFUSAL_TEXT, []
    if d.route == "knowledge":
        return _render_knowledge(calls, d, llm)
    if not calls:
        return "请告诉我您想了解哪个产品，例如产品名称、简称或产品编码。", []
    parts = [RENDERERS[c["name"]](c, d) for c in calls if c["name"] in RENDERERS]
    body = "\n\n---\n\n".join(p for p in parts if p)
    if d.route == "catalog":
        body += "\n\n来源：产品目录"
    return body, []
