"""The metrics route's `evaluation` (产品评价：评分卡、生命周期、退出候选、同类竞争) and `substitution`
(内部替代：新客户从哪里来) intents: which tools a question calls, and the answer rendered from their
results. Every number in an answer is a display string (or a count) returned by the tools, and every
answer states the period and the branch scope it covers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agents.compose import Composed, _md_table
from agents.handlers import MAX_PRODUCTS
from agents.router import RouteDecision, leftover_phrase
from agents.state import ToolCall
from core.access import Principal
from core.errors import PuyiError
from tools import catalog, evaluation, substitution
from tools.context import ToolContext
from tools.facts import fact_meta
from tools.periods import Period, find_period

# Category words, read from the question with product names cut out (a name like 大额存单 is no cue).
_CATEGORY = (
    ("deposit", re.compile(r"存款|储蓄|存单")),
    ("loan", re.compile(r"贷款|信贷|授信|贷类")),
    ("payment", re.compile(r"支付|结算|收单")),
    ("intermediary", re.compile(r"中间业务|中收|理财|代销|基金|保险")),
    ("market", re.compile(r"金融市场|同业|债券|票据|资金业务")),
)
_FOCUS = (
    ("exit", re.compile(r"退出|低效|淘汰|关停|砍掉|清理|下架")),
    ("lifecycle", re.compile(r"生命周期|哪个阶段|什么阶段|阶段")),
    ("compete", re.compile(r"竞争|格局|同类|份额|占比|此消彼长|相互|之间|对比|比较")),
)
_SINCE_LAUNCH = re.compile(r"上线以来|开办以来|推出以来|发行以来|累计|至今|以来")
_CUE_WORDS = re.compile(
    r"新客户|新客|新增客户|从哪里来|从哪儿来|从哪来|来自哪里|来自|哪里|内部替代|替代|内耗|蚕食|是不是|是否|"
    r"产品评价|评价|评分卡|评分|打分|生命周期|阶段|低效|退出|竞争|格局"
)
_TABLE_LIMIT = 200  # rows in a display table
_TOP = 10


def _run(calls: list[ToolCall], ctx: ToolContext, fn: Callable[..., Any], **args: Any) -> Any:
    """Call a tool and record it; an expected failure (out of scope, a future month) becomes its result."""
    try:
        result = fn(ctx, **args)
    except PuyiError as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    calls.append({"name": fn.__name__, "args": args, "result": result})
    return result


def _category(d: RouteDecision) -> str | None:
    text = d.residual or d.question
    return next((key for key, rx in _CATEGORY if rx.search(text)), None)


def focus(d: RouteDecision) -> str:
    """What an evaluation question is after: exit | lifecycle | compete | scorecard."""
    text = d.residual or d.question
    return next((key for key, rx in _FOCUS if rx.search(text)), "scorecard")


def _products(d: RouteDecision, ctx: ToolContext, calls: list[ToolCall]) -> list[str] | None:
    """Codes of the products named; None when a name was ambiguous or unknown (the turn asks back)."""
    by_surface: dict[str, list[str]] = {}
    for cand in d.products:
        by_surface.setdefault(cand.matched, []).append(cand.code)
    for surface, codes in by_surface.items():
        if len(set(codes)) > 1:
            _run(calls, ctx, catalog.find_product, query=surface)
            return None
    codes = list(dict.fromkeys(c.code for c in d.products))
    if codes:
        return codes[:MAX_PRODUCTS]
    phrase = leftover_phrase(_CUE_WORDS.sub(" ", d.residual or d.question))
    if not phrase or not re.search(r"贷|存|宝|通|卡|理财|基金|保险|金|产品|[A-Za-z]{2,}\d", phrase):
        return []
    found = _run(calls, ctx, catalog.find_product, query=phrase)
    if found.get("status") != "found":
        return None
    return [found["candidates"][0]["code"]]


def handle(d: RouteDecision, ctx: ToolContext) -> list[ToolCall]:
    calls: list[ToolCall] = []
    codes = _products(d, ctx, calls)
    if codes is None:
        return calls
    if d.intent == "substitution":
        _handle_substitution(d, ctx, calls, codes)
    else:
        _handle_evaluation(d, ctx, calls, codes)
    return calls


def _asked_period(d: RouteDecision, calls: list[ToolCall], latest: Any) -> tuple[bool, Period | None]:
    """The period the question names, read against the latest month with data; (False, None) when
    it cannot be read (a future month…): the reason is recorded as a call for the answer."""
    if latest is None:
        return True, None
    try:
        period, _ = find_period(d.question, latest)
    except PuyiError as exc:
        calls.append({"name": "find_period", "args": {"question": d.question},
                      "result": {"error": type(exc).__name__, "message": str(exc)}})
        return False, None
    return True, period


def _handle_evaluation(d: RouteDecision, ctx: ToolContext, calls: list[ToolCall], codes: list[str]) -> None:
    args: dict[str, Any] = {}
    ok, period = _asked_period(d, calls, fact_meta(ctx.conn).latest_month)
    if not ok:
        return
    if period is not None:
        args["end"] = period.end.strftime("%Y-%m")
        if period.months >= 3:
            args["months"] = period.months
    codes = evaluation.sellable_under(ctx.conn, codes)[:MAX_PRODUCTS] if codes else []
    category = _category(d)
    if focus(d) == "compete":
        if category is None and codes:
            category = evaluation.category_of(ctx.conn, codes[0])
        if category is None:
            calls.append({"name": "category_view", "args": {}, "result": {
                "error": "need_category",
                "message": "请告诉我要看哪个大类产品之间的竞争，例如「贷款类产品之间的竞争情况」。"}})
            return
        _run(calls, ctx, evaluation.category_view, category=category, **args)
        return
    if codes:
        _run(calls, ctx, evaluation.evaluate_products, products=codes, **args)
    else:
        _run(calls, ctx, evaluation.evaluate_products, category=category, **args)


def _handle_substitution(d: RouteDecision, ctx: ToolContext, calls: list[ToolCall], codes: list[str]) -> None:
    if not codes:
        calls.append({"name": "substitution_analysis", "args": {}, "result": {
            "error": "need_product",
            "message": "请告诉我要分析哪个产品，例如「某某存款的新客户从哪里来」。"}})
        return
    args: dict[str, Any] = {"product_code": codes[0]}
    ok, period = _asked_period(d, calls, substitution.holdings_span(ctx.conn)[1])
    if not ok:
        return
    if period is not None:
        args["month"] = period.end.strftime("%Y-%m")
        if period.months > 1:
            args["months"] = period.months
    elif _SINCE_LAUNCH.search(d.question):
        args["since_launch"] = True
    _run(calls, ctx, substitution.substitution_analysis, **args)


# --- answers ---------------------------------------------------------------------------------------


def compose(d: RouteDecision, calls: list[ToolCall], principal: Principal, llm: Any = None) -> Composed:
    if not calls:
        return "请告诉我要评价的产品或大类，例如「评价一下贷款类产品」「某某存款的新客户从哪里来」。", [], []
    last = calls[-1]
    r = last["result"]
    if last["name"] == "find_product":
        return _render_find(r), [], []
    if r.get("error") and r["error"] != "no_new_customers":
        return str(r.get("message") or r["error"]), [], []
    if last["name"] == "substitution_analysis":
        text, citations, blocks = _render_substitution(r)
    elif last["name"] == "category_view":
        text, citations, blocks = _render_category(r)
    else:
        text, citations, blocks = _render_evaluation(r, focus(d))
    found = calls[0]["result"] if calls[0]["name"] == "find_product" and len(calls) > 1 else None
    if found and found["candidates"] and found["candidates"][0]["how"] not in ("name", "alias", "code"):
        c = found["candidates"][0]
        text = f"（「{found['query']}」按最接近的名称理解为{c['name']}（{c['code']}）。）\n\n" + text
    return text, citations, blocks


def _render_find(r: dict[str, Any]) -> str:
    if r.get("error"):
        return str(r.get("message") or r["error"])
    if r["status"] == "not_found":
        return f"产品目录中没有找到「{r['query']}」。请换用产品全称、简称或产品编码再问。"
    listed = "、".join(f"{c['name']}（{c['code']}）" for c in r["candidates"][:5])
    return f"「{r['query']}」可能指以下产品：{listed}。请告诉我是哪一个（可回复产品编码）。"


def _head(r: dict[str, Any]) -> str:
    return f"**{r['period']['label']}**，**{r['scope']}**"


def _weights_line(cat: dict[str, Any], names: dict[str, str]) -> str:
    w = cat["weights_display"]
    line = f"{cat['name']}类权重：" + "、".join(f"{names[k]} {w[k]}" for k in evaluation.DIMENSIONS)
    eff = cat["effective_weights_display"]
    if cat["notes"]:
        line += "（实际使用：" + "、".join(f"{names[k]} {eff[k]}" for k in evaluation.DIMENSIONS) + "）"
    return line


def _method_lines(r: dict[str, Any]) -> list[str]:
    names = r["dimension_names"]
    lines = ["", "**评分口径**", "",
             f"- {r['rules']['scoring']}；评价期为{r['period']['label']}，按{r['scope']}的数据汇总。"]
    if r["period"].get("note"):
        lines.append(f"- 注：{r['period']['note']}。")
    for cat in r["categories"]:
        lines.append("- " + _weights_line(cat, names))
        for s in cat["skipped"]:
            lines.append(f"- {cat['name']}类未纳入「{s['name']}」：{s['reason']}。")
        for n in cat["notes"]:
            lines.append(f"- {cat['name']}类：{n}。")
    return lines


def _score_row(p: dict[str, Any]) -> list[Any]:
    dims = p["dimensions"]
    return [f"{p['rank']}/{p['rank_of']}", f"{p['name']}（{p['code']}）", p["total_display"],
            *[dims[k]["display"] for k in evaluation.DIMENSIONS], p["stage"] or "—", p["net_contribution_display"]]


def _score_columns(r: dict[str, Any]) -> list[str]:
    names = r["dimension_names"]
    return ["类内排名", "产品", "综合评分", *[names[k] for k in evaluation.DIMENSIONS], "生命周期", "评价期净贡献"]


def _exit_rows(r: dict[str, Any]) -> list[list[Any]]:
    by_code = {p["code"]: p for p in r["products"]}
    return [[f"{p['name']}（{p['code']}）", p["category_name"], p["status_name"], p["total_display"],
             f"{p['rank']}/{p['rank_of']}", "；".join(p["exit_reasons"][1:]) or "—"]
            for p in (by_code[c] for c in r["exit_candidates"])]


def _render_evaluation(r: dict[str, Any], what: str) -> Composed:
    products = r["products"]
    blocks: list[dict[str, Any]] = []
    cats = "、".join(f"{c['name']}类" for c in r["categories"]) or "全部大类"
    lines: list[str] = []
    if r.get("missing"):
        lines.append("以下产品在评价期末没有经营数据，未参与评价：" + "、".join(
            f"{m['name']}（{m['code']}）" for m in r["missing"]) + "。\n")
    if r["requested"]:
        lines += _render_products(r, blocks)
    elif what == "exit":
        lines += _render_exit(r, cats, blocks)
    elif what == "lifecycle":
        lines += _render_lifecycle(r, cats, blocks)
    else:
        lines.append(f"{_head(r)}，{cats}可售产品评分卡（共 {len(products)} 个产品，按综合评分排序）：")
        lines += _render_scorecard(r, blocks)
    lines += _method_lines(r)
    lines.append("\n数据来源：月度经营指标。")
    return "\n".join(lines), [], blocks


def _render_scorecard(r: dict[str, Any], blocks: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    cols = _score_columns(r)
    for cat in r["categories"]:
        members = [p for p in r["products"] if p["category"] == cat["category"]]
        top = members[:_TOP]
        lines += ["", f"**{cat['name']}类**（{len(members)} 个产品）" + ("，前 10 名：" if len(members) > _TOP else "："), ""]
        lines.append(_md_table(cols, [_score_row(p) for p in top]))
        if len(members) > _TOP:
            tail = members[-3:]
            lines += ["", "排名最后的 3 个：", "", _md_table(cols, [_score_row(p) for p in tail])]
        blocks.append({"type": "table", "title": f"{cat['name']}类产品评分卡（{r['period']['label']}，{r['scope']}）",
                       "columns": cols, "rows": [_score_row(p) for p in members[:_TABLE_LIMIT]]})
    n_exit = len(r["exit_candidates"])
    lines.append("")
    if n_exit:
        lines.append(f"其中 **{n_exit}** 个产品为低效产品（退出候选），可问「哪些产品该退出」查看原因。")
    else:
        lines.append("没有产品同时满足低效产品（退出候选）的条件。")
    return lines


def _render_exit(r: dict[str, Any], cats: str, blocks: list[dict[str, Any]]) -> list[str]:
    rows = _exit_rows(r)
    lines = [f"{_head(r)}，{cats}共评价 {len(r['products'])} 个可售产品，低效产品（退出候选）"
             f"**{len(rows)}** 个。"]
    lines.append(f"\n认定条件：{r['rules']['exit']}。")
    if rows:
        cols = ["产品", "大类", "状态", "综合评分", "类内排名", "主要原因"]
        lines += ["", _md_table(cols, rows)]
        blocks.append({"type": "table", "title": f"低效产品（退出候选）（{r['period']['label']}，{r['scope']}）",
                       "columns": cols, "rows": rows})
        lines.append("\n建议逐个复核：确认是否有战略或客群上的保留理由，再决定整改、合并还是退出。")
    else:
        lines.append("\n目前没有产品同时满足以上条件。")
    return lines


def _render_lifecycle(r: dict[str, Any], cats: str, blocks: list[dict[str, Any]]) -> list[str]:
    counts = r["stage_counts"]
    lines = [f"{_head(r)}，{cats}可售产品的生命周期阶段（截至{r['period']['end_label']}）："]
    lines.append("\n" + "，".join(f"{s} **{counts[s]}** 个" for s in evaluation.STAGES) + "。")
    unknown = len(r["products"]) - sum(counts.values())
    if unknown:
        lines.append(f"另有 {unknown} 个产品数据不足，无法判断阶段。")
    cols = ["阶段", "产品", "判断依据", "综合评分"]
    rows = []
    for stage in evaluation.STAGES:
        members = [p for p in r["products"] if p["stage"] == stage]
        rows += [[stage, f"{p['name']}（{p['code']}）", p["stage_reason"], p["total_display"]] for p in members]
        shown = members[:5]
        if shown:
            lines += ["", f"**{stage}**" + (f"（列出 5 个，共 {len(members)} 个）" if len(members) > 5 else "") + "：", ""]
            lines.append(_md_table(cols[1:], [[f"{p['name']}（{p['code']}）", p["stage_reason"], p["total_display"]]
                                              for p in shown]))
    blocks.append({"type": "table", "title": f"生命周期阶段（{r['period']['end_label']}，{r['scope']}）",
                   "columns": cols, "rows": rows[:_TABLE_LIMIT]})
    lines += ["", f"判断规则：{r['rules']['lifecycle']}。"]
    return lines


def _render_products(r: dict[str, Any], blocks: list[dict[str, Any]]) -> list[str]:
    names = r["dimension_names"]
    weights = {c["category"]: c for c in r["categories"]}
    lines: list[str] = []
    for p in r["products"]:
        cat = weights[p["category"]]
        lines.append(f"{_head(r)}，**{p['name']}**（{p['code']}，{p['category_name']}类，{p['status_name']}）"
                     f"综合评分 **{p['total_display']}** 分，在{p['category_name']}类 {p['rank_of']} 个产品中排第 "
                     f"**{p['rank']}** 名；生命周期：**{p['stage'] or '无法判断'}**（{p['stage_reason']}）。")
        dims = [[names[k], cat["effective_weights_display"][k], p["dimensions"][k]["display"]]
                for k in evaluation.DIMENSIONS]
        lines += ["", _md_table(["维度", "权重", "得分"], dims)]
        inds = [[names[i["dimension"]], i["name"], i["display"], i["score_display"]]
                for i in p.get("indicators", {}).values()]
        if inds:
            lines += ["", _md_table(["维度", "指标", "数值", "类内得分"], inds)]
            if any(i["value"] is None for i in p["indicators"].values()):
                lines.append("\n「—」表示该产品缺少计算所需的数据（例如评价期初尚未上线），该指标不参与其评分。")
            blocks.append({"type": "table", "title": f"{p['name']} 评分明细（{r['period']['label']}，{r['scope']}）",
                           "columns": ["维度", "指标", "数值", "类内得分"], "rows": inds})
        if p["exit_candidate"]:
            lines.append("\n⚠ 该产品属于低效产品（退出候选）：" + "；".join(p["exit_reasons"]) + "。")
        elif p["partial"]:
            lines.append("\n注：该产品部分维度没有数据，综合评分按其余维度的权重计算。")
        lines.append("")
    trend = r.get("trend")
    if trend:
        blocks.append({"type": "chart", "title": f"月末余额走势（{r['scope']}）", "x": trend["x"],
                       "series": trend["series"], "unit": trend["unit"]})
    return lines


def _render_category(r: dict[str, Any]) -> Composed:
    rows = r["products"]
    name = r["category_name"]
    lines = [f"{_head(r)}，{name}类 {r['products_count']} 个可售产品的竞争格局："]
    lines.append(
        f"\n- {name}类余额从{r['period']['base_label']}的 {r['total_base_display']} 到{r['period']['end_label']}的 "
        f"**{r['total_end_display']}**，变化 {r['total_change_display']}（{r['total_growth_display']}）。")
    lines.append(f"- 余额前三的产品合计占 **{r['top3_share_display']}**，集中度指数（HHI）{r['hhi_display']}。")
    by_code = {x["code"]: x for x in rows}
    if r["share_gainers"]:
        lines.append("- 占比上升最多：" + "、".join(
            f"{by_code[c]['name']}（{by_code[c]['share_change_display']}）" for c in r["share_gainers"]) + "。")
    if r["share_losers"]:
        lines.append("- 占比下降最多：" + "、".join(
            f"{by_code[c]['name']}（{by_code[c]['share_change_display']}）" for c in r["share_losers"]) + "。")
    if not r["growth_shared"]:
        lines.append(f"- {name}类整体没有增长，「增量贡献占比」不适用。")
    cols = ["余额排名", "产品", "期末余额", "类内占比", "占比变化", "余额增量", "增量贡献占比", "余额增速", "客户数",
            "综合评分", "评分排名", "生命周期"]

    def row(x: dict[str, Any]) -> list[Any]:
        return [x["balance_rank"], f"{x['name']}（{x['code']}）", x["balance_end_display"], x["share_display"],
                x["share_change_display"], x["balance_change_display"], x["share_of_growth_display"],
                x["growth_display"], x["customers_display"], x["total_display"], x["score_rank"], x["stage"] or "—"]

    shown = rows[:15]
    lines += ["", "按期末余额排序" + (f"，列出前 {len(shown)} 个：" if len(rows) > len(shown) else "："), ""]
    lines.append(_md_table(cols, [row(x) for x in shown]))
    if r["period"].get("note"):
        lines += ["", f"注：{r['period']['note']}。"]
    lines += ["", "口径：占比变化为期末较期初（" + r["period"]["base_label"] + "）的类内余额占比变化；增量贡献占比 = 产品余额增量 ÷ "
              f"{name}类余额增量；综合评分见「评价一下{name}类产品」。数据来源：月度经营指标。"]
    for s in r["skipped"]:
        lines.append(f"（评分未纳入「{s['name']}」：{s['reason']}。）")
    blocks: list[dict[str, Any]] = [{"type": "table", "title": f"{name}类竞争格局（{r['period']['label']}，{r['scope']}）",
                                     "columns": cols, "rows": [row(x) for x in rows[:_TABLE_LIMIT]]}]
    trend = r["trend"]
    blocks.append({"type": "chart", "title": f"{name}类及余额前五产品月末余额（{r['scope']}）", "x": trend["x"],
                   "series": trend["series"], "unit": trend["unit"]})
    return "\n".join(lines), [], blocks


def _render_substitution(r: dict[str, Any]) -> Composed:
    p = r["product"]
    head = f"**{r['period']['label']}**，**{r['scope']}**，**{p['name']}**（{p['code']}）"
    if r.get("error") == "no_new_customers":
        return f"{head}没有新客户（当月持有余额、上月未持有的客户），无从分析新客户来源和内部替代。", [], []
    lines = [f"{head}的新客户来源："]
    lines += ["", f"- 新客户 **{r['new_customers_display']}**，期末持有该产品 {r['new_balance_display']}。"]
    if r["switchers"]:
        lines += [
            f"- 其中 **{r['switchers_display']}（{r['switch_share_display']}）** 上月持有本行其他产品、本月结清或减少了它"
            f"（结清至少一个产品的 {r['closed_switchers_display']}），从这些产品转出 {r['moved_balance_display']}，"
            f"覆盖新客户余额的 **{r['coverage_share_display']}**。",
            f"- 其余 {r['fresh_display']}（{r['fresh_share_display']}）没有从本行其他产品转出资金，属行外新增资金。",
        ]
    else:
        lines.append("- 没有新客户在上月持有本行其他产品后于本月结清或减少，新客户资金全部来自行外。")
    cols = ["来源产品", "大类", "客户数", "占转入客户", "其中结清", "转出余额", "占转出余额"]
    rows = [[f"{s['name']}（{s['code']}）", s["category_name"], s["customers_display"], s["customer_share_display"],
             s["closed_display"], s["moved_display"], s["moved_share_display"]] for s in r["sources"]]
    blocks: list[dict[str, Any]] = []
    if rows:
        lines += ["", "**按来源产品**（同一客户可能从多个产品转出）：", "", _md_table(cols, rows[:15])]
        if len(rows) > 15:
            lines.append(f"\n（列出转出余额最多的 15 个，共 {len(rows)} 个来源产品）")
        blocks.append({"type": "table", "title": f"{p['name']} 新客户来源（{r['period']['label']}，{r['scope']}）",
                       "columns": cols, "rows": rows[:_TABLE_LIMIT]})
    eff = r["category_effect"]
    lines += ["", "**对全局的影响**", ""]
    if eff["available"]:
        lines.append(f"- {eff['base_label']}末至{eff['end_label']}末，{p['name']}余额变化 **{eff['product_change_display']}**"
                     f"（{eff['product_base_display']} → {eff['product_end_display']}）。")
        lines.append(f"- 同期{eff['category_name']}类合计变化 {eff['category_change_display']}"
                     f"（{eff['category_growth_display']}），除该产品外的其余产品合计变化 {eff['others_change_display']}。")
        if eff["pool"]:
            names = {s["code"]: s["name"] for s in r["sources"]}
            pool = "、".join(names.get(c, c) for c in eff["pool"])
            lines.append(f"- 主要来源产品（{pool}）同期合计变化 {eff['sources_change_display']}；"
                         f"连同{p['name']}合计只变化 **{eff['pool_change_display']}**。")
    else:
        lines.append(f"- {eff['message']}")
    lines += ["", f"**结论：{r['verdict_text']}。**"]
    if r["verdict"] == "internal":
        lines.append(f"{p['name']}的增长主要是把客户在本行其他产品中的资金搬了过来，行内整体新增有限；"
                     "建议评估其定价与老产品的价差，并把考核落在行外新增资金上。")
    monthly = r.get("monthly", [])
    if len(monthly) > 1:
        blocks.append({"type": "chart", "title": f"{p['name']} 每月新客户及其中来自行内其他产品的客户（{r['scope']}）",
                       "x": [m["month"] for m in monthly], "unit": "户",
                       "series": [{"name": "新客户", "values": [m["new_customers"] for m in monthly]},
                                  {"name": "来自行内其他产品", "values": [m["switchers"] for m in monthly]}]})
        mcols = ["月份", "新客户", "来自行内其他产品", "占比"]
        mrows = [[m["month"], m["new_customers"], m["switchers"], m["switch_share_display"]] for m in monthly]
        lines += ["", _md_table(mcols, mrows)]
    t = r["thresholds"]
    lines += ["", f"口径：新客户 = 当月持有余额、上月未持有；来自行内其他产品 = 上月持有本行其他产品、当月结清或余额减少至少"
              f" {t['min_reduction_display']}；覆盖比例按每位客户的转出金额与其新产品余额取小者合计。"
              "按客户归属机构统计；数据来源：客户持仓与月度经营指标。"]
    return "\n".join(lines), [], blocks
