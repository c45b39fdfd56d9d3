"""The alert route: why an alert fired (intent `explain`: a product named, or "预警 #12"), which
alerts there are (`list`: "本月有哪些预警") and dispositions of a numbered alert (`dispose`:
"确认 #12", "误报 #12 原因…", "#12 已采取措施").

Every number in an answer is a display string or a count taken from the tool results."""

from __future__ import annotations

import re
from typing import Any

from agents.compose import Composed, _md_table
from agents.handlers import MAX_PRODUCTS, call_tool
from agents.router import RouteDecision, alert_id_in, leftover_phrase
from agents.state import ToolCall
from core.access import Principal
from core.errors import PuyiError
from tools import alerts, catalog
from tools.context import ToolContext
from tools.facts import fact_meta
from tools.periods import find_period

# Web-chat colours of the alert card (api/static/blocks.js) for each level.
LEVEL_COLOURS = {"suspend": "red", "exit_review": "orange", "watch": "yellow"}
_LEVEL_WORDS = (("suspend", r"停牌"), ("exit_review", r"退出评估|退出"), ("watch", r"关注"))
_DISPOSE_WORDS = (
    ("false_alarm", r"误报|不属实|虚警"),
    # a bare 处置 too: the router takes "处置 #12" as a disposition, and tools.alerts reads 处置 as action taken
    ("action_taken", r"已处置|已采取措施|已整改|已处理|处置完毕|已采取|处置"),
    ("confirmed", r"确认|属实"),
)
_ID_RE = re.compile(r"(?:预警|告警|alert)?\s*[#＃]\s*\d+|(?:预警|告警)\s*\d+", re.IGNORECASE)
_NOTE_LEAD = re.compile(r"^[\s,，。.:：;；、\-—]*(?:原因|备注|说明|理由)?[\s,，。.:：;；、\-—是为]*")
_ALERT_WORDS = re.compile(
    r"为什么|为何|怎么回事|什么原因|原因|预警|告警|报警|警报|触发|规则|解读|解释|说明|看看|查看|详情|"
    r"停牌|关注|暂停|退出评估|被|了|吗|呢|的|请问|一下"
)



def parse_disposition(text: str) -> tuple[str | None, str]:
    """(disposition key, note) of a reply like "误报 #12 原因：客户已结清"."""
    key, word_span = None, None
    for k, pattern in _DISPOSE_WORDS:
        m = re.search(pattern, text)
        if m:
            key, word_span = k, m.span()
            break
    rest = text
    if word_span is not None:
        rest = rest[:word_span[0]] + " " + rest[word_span[1]:]
    rest = _ID_RE.sub(" ", rest, count=1)
    note = _NOTE_LEAD.sub("", rest.strip()).strip(" 。.!！")
    return key, note


def _products(d: RouteDecision, ctx: ToolContext, calls: list[ToolCall]) -> list[str]:
    if d.products and not d.loose:
        return list(dict.fromkeys(c.code for c in d.products))[:MAX_PRODUCTS]
    phrase = leftover_phrase(_ALERT_WORDS.sub(" ", d.residual or d.question))
    if len(phrase) < 2:
        return []
    found = call_tool(calls, ctx, catalog.find_product, query=phrase, level="sellable")
    return [found["candidates"][0]["code"]] if found["status"] == "found" else []


def handle(d: RouteDecision, ctx: ToolContext) -> list[ToolCall]:
    calls: list[ToolCall] = []
    text = d.question or d.residual
    alert_id = alert_id_in(text)
    try:
        if d.intent == "dispose" and alert_id is not None:
            key, note = parse_disposition(text)
            call_tool(calls, ctx, alerts.dispose_alert, alert_id=alert_id, disposition=key or "confirmed", note=note)
            return calls
        if alert_id is not None:
            call_tool(calls, ctx, alerts.explain_alert, alert_id=alert_id)
            return calls
        codes = [] if d.intent == "list" else _products(d, ctx, calls)
        if calls and not codes:  # a name we could not pin down: the candidates are the answer
            return calls
        if codes:
            for code in codes:
                call_tool(calls, ctx, alerts.explain_alert, product_code=code)
            return calls
        month: str | None = None
        latest = fact_meta(ctx.conn).latest_month
        if latest is not None:
            period, _ = find_period(text, latest)
            month = period.end.strftime("%Y-%m") if period is not None else None  # args stay JSON-able
        level = next((k for k, p in _LEVEL_WORDS if re.search(p, d.residual or text)), None)
        named = [c.code for c in d.products if not d.loose]
        call_tool(calls, ctx, alerts.list_alerts, month=month, level=level, product=named[0] if len(named) == 1 else None)
    except PuyiError as exc:  # a future month, a bad month: a clear answer, no numbers
        calls.append({"name": "error", "args": {}, "result": {"error": str(exc)}})
    return calls


# --- answers ---------------------------------------------------------------------------------------


def _loan_table(loans: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    columns = ["贷款编号", "客户", "余额", "到期日", "经办机构", "五级分类", "逾期天数"]
    rows = [[x["loan_id"], x["customer_name"], x["balance_display"], x["maturity_date"], x["branch_name"],
             x["five_class"], x["overdue_days"]] for x in loans["top"]]
    return columns, rows


def _branch_table(br: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    columns = ["机构", br["basis_name"], "占比"]
    rows = [[x["branch_name"], x["amount_display"], x["share_display"]] for x in br["rows"]]
    if br.get("others"):
        o = br["others"]
        rows.append([f"其他 {o['branches']} 家机构", o["amount_display"], o["share_display"]])
    return columns, rows


def _explain_one(a: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    rule, product = a["rule"], a["product"]
    lines = [f"### {product['name']}（{product['code']}）· 预警 #{a['id']} · {a['level_name']}",
             f"{a['month_label']}，{a['scope']}" + ("" if a["active"] else "（该预警已失效）")]
    lines.append("")
    lines.append(a["summary"])
    lines.append("")
    lines.append(f"- 规则：{rule['title']}（{rule['name']}），条件：{rule['condition']}，适用：{rule.get('applies_to') or '—'}")
    prev = a.get("previous") or {}
    change = a.get("change") or {}
    value_line = f"- {rule['metric_name']}：**{a['display']}**"
    if prev:
        value_line += f"（上月 {prev['display']}"
        value_line += f"，变化 {change['display']}" if change else ""
        value_line += f"，相对 {change['relative_display']}" if change.get("relative_display") else ""
        value_line += "）"
    lines.append(value_line)
    base = a.get("base")
    if base:
        lines.append(f"- {base['name']}：{base['current']['display']}（{base['compared']['month']} "
                     f"{base['compared']['display']}）")
    if a.get("trend"):
        lines.append("- 近六个月：" + "，".join(f"{p['month']} {p['display']}" for p in a["trend"]))
    if a.get("streak") and len(a["streak"]) > len(a.get("trend") or []):
        lines.append("- 持续月份：" + "，".join(f"{p['month']} {p['display']}" for p in a["streak"]))
    blocks: list[dict[str, Any]] = []
    evidence = [{"label": rule["metric_name"], "value": a["display"]}]
    if prev:
        evidence.append({"label": f"上月（{prev['month']}）", "value": prev["display"]})
    if base:
        evidence.append({"label": base["name"], "value": f"{base['current']['display']}（{base['compared']['month']} "
                                                           f"{base['compared']['display']}）"})
    evidence.append({"label": "规则条件", "value": rule["condition"]})
    loans = a.get("loans")
    if loans is not None:
        lines.append("")
        if loans["top"]:
            lines.append(f"**贡献最大的贷款**（{loans['focus_name']}共 {loans['count']} 笔，余额 {loans['balance_display']}，"
                         f"按余额从高到低，客户名已脱敏）")
            lines.append("")
            cols, rows = _loan_table(loans)
            lines.append(_md_table(cols, rows))
            blocks.append({"type": "table", "title": f"{product['name']} · 贡献最大的贷款（{a['scope']}）",
                           "columns": cols, "rows": rows})
            evidence.append({"label": loans["focus_name"], "value": f"{loans['count']} 笔，{loans['balance_display']}"})
        else:
            lines.append(f"**贡献最大的贷款**：{a['scope']}没有{loans['focus_name']}记录。")
    br = a.get("branches")
    if br and br["rows"]:
        lines.append("")
        lines.append(f"**机构集中度**（{a['month_label']}，{br['basis_name']}合计 {br['total_display']}）")
        lines.append("")
        cols, rows = _branch_table(br)
        lines.append(_md_table(cols, rows))
        blocks.append({"type": "table", "title": f"{product['name']} · 机构集中度（{br['basis_name']}）",
                       "columns": cols, "rows": rows})
        top = br["rows"][0]
        evidence.append({"label": "最集中机构", "value": f"{top['branch_name']} {top['share_display']}"})
    evidence.append({"label": "范围", "value": a["scope"]})
    if a.get("next_steps"):
        lines += ["", "**下一步建议**"] + [f"- {s}" for s in a["next_steps"]]
    if a.get("dispositions"):
        lines += ["", "**处置记录**"] + [
            f"- {x['created_at'][:10]} {x['user_name']}：{x['disposition_name']}" + (f"（{x['note']}）" if x["note"] else "")
            for x in a["dispositions"]
        ]
    if a["actions"]:
        lines += ["", "处置请回复：" + "、".join(f"「{x}」" for x in a["actions"]) + "（误报可在后面写明原因）"]
    alert_block = {
        "type": "alert", "title": f"【{a['level_name']}】{product['name']} · {rule['title']}",
        "level": LEVEL_COLOURS.get(a["level"], "yellow"), "level_name": a["level_name"], "alert_id": a["id"],
        "product": f"{product['name']}（{product['code']}）", "rule": rule["condition"], "summary": a["summary"],
        "evidence": evidence, "actions": a["actions"],
    }
    blocks.insert(0, alert_block)
    if a.get("trend"):
        blocks.insert(1, {
            "type": "chart", "title": f"{product['name']} {rule['metric_name']}（近六个月，{a['scope']}）",
            "x": [p["month"] for p in a["trend"]],
            "series": [{"name": rule["metric_name"], "values": [p["value"] for p in a["trend"]]}],
            "unit": rule.get("unit", ""),
        })
    return lines, blocks


def _render_explain(r: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    status = r["status"]
    if status == "not_found":
        return f"没有编号为 #{r['alert_id']} 的预警，请核对编号，或问「本月有哪些预警」查看清单。", []
    if status == "unknown_product":
        return f"产品目录中没有编码为 {r['product_code']} 的产品。", []
    if status == "no_product":
        return "请告诉我是哪个产品或哪条预警，例如「为什么某某贷被停牌了？」或「预警 #12」。", []
    p = r["product"]
    if status == "no_alert":
        head = f"**{p['name']}**（{p['code']}，当前状态：{p['status_name']}）"
        return f"{head}\n\n{r['note']}", []
    lines: list[str] = []
    blocks: list[dict[str, Any]] = []
    if r.get("note"):
        lines += [r["note"], ""]
    for a in r["alerts"]:
        part, b = _explain_one(a)
        if lines and not r.get("note"):
            lines += ["", "---", ""]
        lines += part
        blocks += b
    if not r["bank_wide"]:
        lines += ["", f"说明：您是{r['role_name']}，以上数字按您的可见范围（{r['scope']}）计算；"
                      "预警本身按全行汇总数据判定。"]
    return "\n".join(lines), blocks


def _render_list(r: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    level = f"{r['filters']['level_name']}" if r["filters"].get("level_name") else ""
    head = f"**{r['month_label']}{level}预警清单**（范围：{r['scope']}）"
    lines = [head, ""]
    run = r.get("last_run")
    if r["total"] == 0:
        if run is None:
            lines.append("尚未运行过预警评估（puyi alerts run），暂无预警记录。")
        else:
            lines.append(f"{r['month_label']}没有{level}预警。")
    else:
        lines.append(f"共 {r['total']} 条（{r['by_level_text']}）。")
    if run is not None and r.get("data_month") and run["month"] and run["month"] < r["data_month"]:
        lines.append(f"注意：最新数据月份为 {r['data_month']}，最近一次预警评估针对 {run['month']}。")
    if not r["items"]:
        return "\n".join(lines), []
    columns = ["编号", "产品", "规则", "级别", "条件"] + (["触发值"] if r["bank_wide"] else []) + ["处置"]
    rows = [
        [f"#{i['id']}", f"{i['product_name']}（{i['product_code']}）", i["title"], i["level_name"], i["condition"]]
        + ([i["display"]] if r["bank_wide"] else []) + [i["disposition_name"]]
        for i in r["items"]
    ]
    lines += ["", _md_table(columns, rows), ""]
    lines.append("想了解原因，可问「预警 #编号」或「为什么某某产品被停牌了？」。")
    if not r["bank_wide"]:
        lines.append("说明：触发值是全行汇总数据，仅向风险管理、产品经理和管理员展示。")
    return "\n".join(lines), [{"type": "table", "title": f"{r['month_label']}预警清单（{r['scope']}）",
                               "columns": columns, "rows": rows}]


def _render_dispose(r: dict[str, Any]) -> str:
    if r["status"] == "forbidden":
        return f"抱歉，{r['message']}。如需处置，请联系风险管理部门的同事。"
    if r["status"] == "not_found":
        return f"没有编号为 #{r['alert_id']} 的预警，未记录任何处置。请核对编号，或问「本月有哪些预警」。"
    a = r["alert"]
    text = (f"已记录：预警 #{r['alert_id']}（{a['product_name']} · {a['title']}，{a['month']}，{a['level_name']}）"
            f"的处置结果为「{r['disposition_name']}」，处置人 {r['user_name']}。")
    if r["note"]:
        text += f"\n\n备注：{r['note']}"
    return text


def _render_find(r: dict[str, Any]) -> str:
    if r["status"] == "not_found":
        return f"产品目录中没有找到「{r['query']}」。请换用产品全称、简称或编码，或问「本月有哪些预警」。"
    names = "、".join(f"{c['name']}（{c['code']}）" for c in r["candidates"])
    return f"「{r['query']}」可能指：{names}。请告诉我是哪一个产品。"


def compose(d: RouteDecision, calls: list[ToolCall], principal: Principal, llm: Any = None) -> Composed:
    if not calls:
        return "请告诉我是哪个产品或哪条预警，例如「为什么某某贷被停牌了？」「本月有哪些预警」或「预警 #12」。", [], []
    parts: list[str] = []
    blocks: list[dict[str, Any]] = []
    for call in calls:
        r = call["result"]
        if call["name"] == "error":
            parts.append(r["error"])
        elif call["name"] == "dispose_alert":
            parts.append(_render_dispose(r))
        elif call["name"] == "explain_alert":
            text, b = _render_explain(r)
            if r["status"] == "found" and re.search(r"停牌", d.question) and not any(
                    a["level"] == "suspend" for a in r["alerts"]):
                p = r["product"]
                text = (f"{p['name']}（{p['code']}）没有停牌预警，当前状态为「{p['status_name']}」；"
                        f"它有以下其他预警：\n\n{text}")
            parts.append(text)
            blocks += b
        elif call["name"] == "list_alerts":
            text, b = _render_list(r)
            parts.append(text)
            blocks += b
        elif call["name"] == "find_product" and len(calls) == 1:
            parts.append(_render_find(r))
    return "\n\n---\n\n".join(p for p in parts if p), [], blocks
