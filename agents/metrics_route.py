"""The metrics route: figures, rankings and trends (intent `metric`), product evaluation
(`evaluation`) and internal substitution (`substitution`, both in agents.evaluation_route).

A metric question is read into a `tools.metrics.MetricQuery`, run by the `query_metric` tool, and
the answer is rendered only from that tool's result: every number shown is one of the result's
display strings, and the answer always states the period and the branch scope it covers.
"""

from __future__ import annotations

from typing import Any

from agents.compose import Composed, _md_table
from agents.router import RouteDecision
from agents.state import ToolCall
from core.access import Principal
from core.errors import PuyiError
from tools import metrics
from tools.context import ToolContext

_DELEGATED = ("evaluation", "substitution")


def handle(d: RouteDecision, ctx: ToolContext) -> list[ToolCall]:
    if d.intent in _DELEGATED:
        from agents import evaluation_route

        return evaluation_route.handle(d, ctx)
    calls: list[ToolCall] = []
    try:
        query = metrics.parse_metric_question(ctx.conn, ctx.principal, d)
    except PuyiError as exc:
        # Nothing to compute: the reason becomes the answer, never a number.
        calls.append({"name": "parse_metric_question", "args": {"question": d.question},
                      "result": {"error": str(exc), "error_type": type(exc).__name__}})
        return calls
    calls.append({"name": "parse_metric_question", "args": {"question": d.question},
                  "result": {**query.as_args(), "notes": list(query.notes)}})
    # The parsed query is run as it is: `query_metric(**args)` would rebuild and re-check it (same result,
    # tested), and the args are recorded so the call can be replayed.
    try:
        result = metrics.run_metric_query(ctx, query)
    except PuyiError as exc:
        result = {"error": str(exc), "error_type": type(exc).__name__}
    calls.append({"name": "query_metric", "args": query.as_args(), "result": result})
    return calls


def compose(d: RouteDecision, calls: list[ToolCall], principal: Principal, llm: Any = None) -> Composed:
    if d.intent in _DELEGATED:
        from agents import evaluation_route

        return evaluation_route.compose(d, calls, principal, llm)
    parsed: dict[str, Any] = next((c["result"] for c in calls if c["name"] == "parse_metric_question"), {})
    result = next((c["result"] for c in calls if c["name"] == "query_metric"), None)
    if parsed.get("error"):
        return str(parsed["error"]), [], []
    if result is None:
        return "请告诉我要查询的指标，例如「上月贷款类不良率是多少」。", [], []
    if result.get("error"):
        return str(result["error"]), [], []
    notes = list(dict.fromkeys([*parsed.get("notes", []), *result.get("notes", [])]))
    if result.get("trend"):
        text, blocks = _render_trend(result)
    elif result.get("group_by"):
        text, blocks = _render_list(result)
    else:
        text, blocks = _render_value(result), []
    remarks = ([f"口径：{result['basis']}。"] if result.get("basis") else []) + [f"注：{n}" for n in notes]
    if remarks:
        text += "\n\n" + "\n".join(f"- {line}" for line in remarks)
    text += f"\n\n数据来源：月度经营指标（数据截至{result['latest_month']}）。"
    return text, [], blocks


def _head(r: dict[str, Any]) -> str:
    """Where and when the figures hold: 「2026年10月，全行，贷款类」."""
    return f"**{r['period']['label']}**，**{r['scope']['label']}**，{r['selection']}"


def _change_phrase(block: dict[str, Any], comparison: dict[str, Any]) -> str:
    if not comparison.get("available"):
        return ""
    what = "变动" if comparison["change_kind"] == "points" else "变化"
    return (f"，{comparison['name']}（较{comparison['period_label']}的 {block['previous_display']}）"
            f"{what} **{block['change_display']}**")


def _render_value(r: dict[str, Any]) -> str:
    total = r["total"]
    name = r["value_name"] if r.get("comparison") else r["metric_name"]
    text = f"{_head(r)}的{name}为 **{total['display']}**"
    if r.get("comparison"):
        text += _change_phrase(total, r["comparison"])
    if r.get("share_of") and total.get("share_display"):
        text += f"，占{r['share_of']['label']}（{r['share_of']['display']}）的 **{total['share_display']}**"
    text += "。"
    parts = total.get("parts") or []
    if parts and r["unit"] in ("%", "‱"):
        text += "\n\n其中：" + "，".join(f"{p['name']} {p['display']}" for p in parts) + "。"
    elif parts:
        text += "\n\n构成：" + "，".join(f"{p['name']} {p['display']}" for p in parts) + "。"
    return text


def _order_text(r: dict[str, Any]) -> str:
    if r.get("rank_by") == "change" and r.get("comparison"):
        key = f"{r['comparison']['name']}{'变动' if r['comparison']['change_kind'] == 'points' else '增幅'}"
    else:
        key = r["metric_name"] if not r.get("comparison") else r["value_name"]
    return f"按{key}{'从高到低' if r['order'] == 'desc' else '从低到高'}"


def _render_list(r: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    group = r["group_name"]
    name = r["value_name"] if r.get("comparison") else r["metric_name"]
    rows = r["rows"]
    count = f"共 {r['row_count']} 个{group}"
    if r.get("top"):
        count = f"前 {r['top']} 名，{count}"
    lines = [f"{_head(r)}各{group}的{name}（{_order_text(r)}，{count}）："]
    if len(rows) > 1 or r.get("top"):
        best = rows[0]  # the first row of the ranking the query returned
        value = best["change_display"] if r.get("rank_by") == "change" and r.get("comparison") else best["display"]
        lines.append(f"\n{'最高' if r['order'] == 'desc' else '最低'}的是 **{best['label']}**（{value}）。")
    columns = ["排名", group, name]
    comparison = r.get("comparison")
    if comparison:
        columns += [f"{comparison['period_label']}", comparison["change_name"]]
    if r.get("share"):
        columns.append("占比")
    table_rows = []
    for row in rows:
        cells = [row["rank"], row["label"], row["display"]]
        if comparison:
            cells += [row["previous_display"], row["change_display"]]
        if r.get("share"):
            cells.append(row["share_display"])
        table_rows.append(cells)
    lines += ["", _md_table(columns, table_rows)]
    total = r["total"]
    summary = f"\n合计（{r['selection']}）：**{total['display']}**"
    if comparison and comparison.get("available"):
        summary += f"，较{comparison['period_label']}的 {total['previous_display']} {comparison['name']} {total['change_display']}"
    lines.append(summary + "。")
    if r["row_count"] > len(rows) and not r.get("top"):
        lines.append(f"\n仅列出前 {len(rows)} 个，可加上「前N名」或大类、客群等条件缩小范围。")
    block = {"type": "table", "title": f"{r['period']['label']} {r['scope']['label']} {r['selection']} {name}",
             "columns": columns, "rows": table_rows}
    return "\n".join(lines), [block]


def _render_trend(r: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    trend = r["trend"]
    name = r["metric_name"]
    lines = [f"{_head(r)}的{name}逐月走势："]
    if r.get("group_by"):
        columns = [r["group_name"], *trend["labels"]]
        rows = [[s["label"], *s["displays"]] for s in trend["series"]]
        totals = trend["totals"]
        rows.append([f"合计（{r['selection']}）", *totals["displays"]])
        if r["row_count"] > len(trend["series"]):
            lines.append(f"\n（按最后一个月排序，列出前 {len(trend['series'])} 个，共 {r['row_count']} 个{r['group_name']}）")
    else:
        columns = ["月份", name]
        rows = [[row["label"], row["display"]] for row in r["rows"]]
    lines += ["", _md_table(columns, rows)]
    change = trend.get("change")
    if change:
        lines.append(f"\n从{change['from_label']}的 {change['from_display']} 到{change['to_label']}的 {change['to_display']}，"
                     f"{'变动' if change['change_kind'] == 'points' else '变化'} **{change['display']}**。")
    chart = r["chart"]
    blocks = [{"type": "chart", "title": f"{r['scope']['label']} {r['selection']} {name}（{r['period']['label']}）",
               "x": chart["x"], "series": chart["series"], "unit": chart["unit"]}]
    return "\n".join(lines), blocks
