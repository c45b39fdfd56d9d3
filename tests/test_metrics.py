"""Metric questions: every number checked against independent plain SQL over metrics_monthly.

The expected values below never use tools.metrics or tools.metric_defs: facts are summed with
their own SQL (a stock fact at the period's last month, a flow fact over the months) and the
derived metrics are recomputed here from those sums.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from agents.router import classify
from agents.service import Answer, Assistant
from core.access import load_principal
from core.db import Database
from tests import bankfactory as bf
from tools import metrics
from tools.catalog import catalog_index
from tools.context import ToolContext

STOCK = ("balance", "avg_balance", "customers", "npl_balance", "overdue_balance")
FLOW = ("new_customers", "lost_customers", "volume", "interest_income", "interest_expense", "fee_income", "opex",
        "provision", "complaints")
LOAN_ONLY = {"npl_rate", "overdue_rate", "npl_balance", "overdue_balance"}
ALL_KEYS = [*STOCK, *FLOW, "satisfaction", "npl_rate", "overdue_rate", "net_interest", "net_contribution",
            "complaint_rate"]
OCT, SEP, AUG = date(2026, 10, 1), date(2026, 9, 1), date(2026, 8, 1)
CLUSTER_OF = {link["from_code"]: link["to_code"] for link in bf.PRODUCT_LINKS
              if link["from_code"].startswith("S") and link["to_code"].startswith("C")}


def descendants(code: str) -> list[str]:
    """The branch and everything below it, from the bank's own branch list."""
    out = [code]
    for b in bf.BRANCHES:
        if b["parent_code"] == code:
            out += descendants(b["code"])
    return out


def raw_facts(conn: Any, start: date, end: date, *, branches: list[str] | None = None,
              products: list[str] | None = None, category: str | None = None, segment: str | None = None,
              group: str | None = None) -> dict[str, dict[str, Any]]:
    """Facts summed with plain SQL: stock facts at `end`, flows over start..end; per group key."""
    cols = [f"sum(m.{c}) FILTER (WHERE m.month = %(end)s) AS {c}" for c in STOCK]
    cols += [f"sum(m.{c}) AS {c}" for c in FLOW]
    cols.append("sum(m.satisfaction * m.customers) FILTER (WHERE m.month = %(end)s)"
                " / nullif(sum(m.customers) FILTER (WHERE m.month = %(end)s AND m.satisfaction IS NOT NULL), 0)"
                " AS satisfaction")
    key = {"product": "m.product_code", "category": "p.category", "segment": "p.segment", None: "'all'"}[group]
    rows = conn.execute(
        f"SELECT {key} AS k, {', '.join(cols)} FROM metrics_monthly m JOIN products p ON p.code = m.product_code"
        " WHERE m.month BETWEEN %(start)s AND %(end)s"
        " AND (%(b)s::text[] IS NULL OR m.branch_code = ANY(%(b)s))"
        " AND (%(p)s::text[] IS NULL OR m.product_code = ANY(%(p)s))"
        " AND (%(c)s::text IS NULL OR p.category = %(c)s) AND (%(s)s::text IS NULL OR p.segment = %(s)s)"
        " GROUP BY 1",
        {"start": start, "end": end, "b": branches, "p": products, "c": category, "s": segment},
    ).fetchall()
    return {r["k"]: {k: None if v is None else float(v) for k, v in r.items() if k != "k"} for r in rows}


def derive(key: str, f: dict[str, Any]) -> Any:
    """The contract's definitions over summed facts."""
    def ratio(a: float | None, b: float | None, scale: float) -> float | None:
        return None if a is None or not b else scale * a / b

    ii, ie, fee = f["interest_income"] or 0.0, f["interest_expense"] or 0.0, f["fee_income"] or 0.0
    if key == "npl_rate":
        return ratio(f["npl_balance"], f["balance"], 100)
    if key == "overdue_rate":
        return ratio(f["overdue_balance"], f["balance"], 100)
    if key == "net_interest":
        return ii - ie
    if key == "net_contribution":
        return ii - ie + fee - (f["opex"] or 0.0) - (f["provision"] or 0.0)
    if key == "complaint_rate":
        return ratio(f["complaints"], f["customers"], 10000)
    return f[key]


def expected(conn: Any, key: str, start: date, end: date, **kw: Any) -> Any:
    if key in LOAN_ONLY and not kw.get("products"):
        kw.setdefault("category", "loan")
    facts = raw_facts(conn, start, end, **kw)
    return derive(key, facts["all"]) if facts else None


def approx(value: float | None) -> Any:
    return None if value is None else pytest.approx(value, rel=1e-9, abs=1e-6)


@pytest.fixture(scope="module")
def assistant(loaded_db: Database) -> Assistant:
    return Assistant(loaded_db)


@pytest.fixture()
def conn(loaded_db: Database) -> Iterator[Any]:
    with loaded_db.connection() as c:
        yield c


def tool_ctx(conn: Any, user: str | None = None) -> ToolContext:
    return ToolContext(conn=conn, principal=load_principal(conn, user))


def ask_query(conn: Any, question: str, user: str | None = None) -> metrics.MetricQuery:
    ctx = tool_ctx(conn, user)
    return metrics.parse_metric_question(conn, ctx.principal, classify(question, catalog_index(conn)))


def result_of(answer: Answer) -> dict[str, Any]:
    return next(c["result"] for c in answer.data["tool_calls"] if c["name"] == "query_metric")


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


_DECIMAL_RE = re.compile(r"[-+]?\d[\d,]*\.\d+")


def assert_traceable(answer: Answer) -> dict[str, Any]:
    """Every number with decimals in the answer is part of a display string of the tool result, and the
    answer states the period and the scope."""
    result = result_of(answer)
    shown = strings(result)
    for number in _DECIMAL_RE.findall(answer.answer):
        assert any(number in s for s in shown), (number, answer.answer)
    assert result["period"]["label"] in answer.answer
    assert result["scope"]["label"] in answer.answer
    return result


# --- every fact and metric against plain SQL --------------------------------------------------------


@pytest.mark.parametrize("key", ALL_KEYS)
def test_every_metric_one_month(conn: Any, key: str):
    r = metrics.query_metric(tool_ctx(conn), metric=key, start="2026-09", end="2026-09")
    assert "error" not in r, r
    assert r["total"]["value"] == approx(expected(conn, key, SEP, SEP))
    assert r["total"]["display"] == metrics.format_value(r["total"]["value"], r["unit"])
    assert r["period"]["label"] == "2026年9月" and r["scope"]["label"] == "全行"


@pytest.mark.parametrize("key", ALL_KEYS)
def test_every_metric_over_three_months_reads_stocks_at_the_end_and_sums_flows(conn: Any, key: str):
    r = metrics.query_metric(tool_ctx(conn), metric=key, start="2026-08", end="2026-10")
    assert r["total"]["value"] == approx(expected(conn, key, AUG, OCT))


@pytest.mark.parametrize("key", ALL_KEYS)
def test_every_metric_per_product(conn: Any, key: str):
    r = metrics.query_metric(tool_ctx(conn), metric=key, start="2026-10", end="2026-10", group_by="product")
    want = raw_facts(conn, OCT, OCT, group="product",
                     category="loan" if key in LOAN_ONLY else None)
    got = {row["key"]: row["value"] for row in r["rows"]}
    assert set(got) == set(want)
    for code, facts in want.items():
        assert got[code] == approx(derive(key, facts)), code


def test_stock_and_flow_semantics_in_plain_numbers(conn: Any):
    ctx = tool_ctx(conn)
    bal = metrics.query_metric(ctx, metric="balance", start="2026-08", end="2026-10")["total"]["value"]
    new = metrics.query_metric(ctx, metric="new_customers", start="2026-08", end="2026-10")["total"]["value"]
    oct_only = raw_facts(conn, OCT, OCT)["all"]
    months = [raw_facts(conn, m, m)["all"]["new_customers"] or 0.0 for m in (AUG, SEP, OCT)]
    assert bal == approx(oct_only["balance"])  # a stock: the last month
    assert new == approx(sum(months))  # a flow: all three months
    assert "期末" in metrics.query_metric(ctx, metric="npl_rate", start="2026-08", end="2026-10")["basis"]


def test_rates_come_from_summed_facts_not_averaged_rates(conn: Any):
    r = metrics.query_metric(tool_ctx(conn), metric="npl_rate", start="2026-10", end="2026-10", group_by="product")
    rates = [row["value"] for row in r["rows"]]
    assert r["total"]["value"] != approx(sum(rates) / len(rates))
    loans = raw_facts(conn, OCT, OCT, category="loan")["all"]
    assert r["total"]["value"] == approx(100 * (loans["npl_balance"] or 0) / (loans["balance"] or 1))
    parts = {p["key"]: p["value"] for p in r["total"]["parts"]}
    assert parts == {"npl_balance": approx(loans["npl_balance"]), "balance": approx(loans["balance"])}


# --- comparisons, trends, rankings, shares, groupings ---------------------------------------------


def test_month_on_month_in_per_cent_for_amounts_and_points_for_rates(conn: Any):
    ctx = tool_ctx(conn)
    now, before = raw_facts(conn, OCT, OCT)["all"], raw_facts(conn, SEP, SEP)["all"]
    r = metrics.query_metric(ctx, metric="balance", start="2026-10", end="2026-10", compare="mom")
    assert r["comparison"]["period_label"] == "2026年9月" and r["comparison"]["change_kind"] == "pct"
    assert r["total"]["previous"] == approx(before["balance"])
    assert r["total"]["change"] == approx((now["balance"] / before["balance"] - 1) * 100)
    assert r["total"]["change_display"].endswith("%")
    same = metrics.query_metric(ctx, metric="balance_mom", start="2026-10", end="2026-10")
    assert same["total"]["change"] == approx(r["total"]["change"])

    loans_now = raw_facts(conn, OCT, OCT, category="loan")["all"]
    loans_before = raw_facts(conn, SEP, SEP, category="loan")["all"]
    npl = metrics.query_metric(ctx, metric="npl_rate", start="2026-10", end="2026-10", compare="mom")
    assert npl["comparison"]["change_kind"] == "points" and "百分点" in npl["total"]["change_display"]
    assert npl["total"]["change"] == approx(derive("npl_rate", loans_now) - derive("npl_rate", loans_before))


def test_comparison_per_group_and_ranked_by_change(conn: Any):
    r = metrics.query_metric(tool_ctx(conn), metric="balance", start="2026-10", end="2026-10", compare="mom",
                             group_by="product", rank_by="change")
    now = raw_facts(conn, OCT, OCT, group="product")
    before = raw_facts(conn, SEP, SEP, group="product")
    for row in r["rows"]:
        b = before[row["key"]]["balance"]
        assert row["change"] == approx((now[row["key"]]["balance"] / b - 1) * 100)
    changes = [row["change"] for row in r["rows"]]
    assert changes == sorted(changes, reverse=True)


def test_year_on_year_without_last_years_data_says_so(conn: Any):
    r = metrics.query_metric(tool_ctx(conn), metric="balance_yoy", start="2026-10", end="2026-10")
    assert r["comparison"]["available"] is False and r["total"]["change"] is None
    assert any("2025年10月" in n for n in r["notes"])


def test_trend_one_value_per_month(conn: Any):
    q = ask_query(conn, "贷款余额走势")
    assert q.compare == "trend" and q.period.start == AUG  # 近6个月, cut back to the first month with data
    r = metrics.run_metric_query(tool_ctx(conn), q)
    assert r["trend"]["months"] == ["2026-08-01", "2026-09-01", "2026-10-01"]
    for month, row in zip((AUG, SEP, OCT), r["rows"], strict=True):
        assert row["value"] == approx(raw_facts(conn, month, month, category="loan")["all"]["balance"])
    assert r["chart"]["unit"] in ("亿元", "万元")


def test_trend_by_group_draws_one_series_per_group(conn: Any):
    r = metrics.query_metric(tool_ctx(conn), metric="customers", start="2026-08", end="2026-10",
                             compare="trend", group_by="category")
    per_month = {m: raw_facts(conn, m, m, group="category") for m in (AUG, SEP, OCT)}
    for series in r["trend"]["series"]:
        assert series["values"] == [approx(per_month[m][series["key"]]["customers"]) for m in (AUG, SEP, OCT)]
    assert r["trend"]["totals"]["values"] == [approx(raw_facts(conn, m, m)["all"]["customers"]) for m in (AUG, SEP, OCT)]


def test_top_n_descending_and_ascending(conn: Any):
    q = ask_query(conn, "2026年10月贷款类余额前2的产品")
    assert (q.top, q.order, q.group_by, q.category) == (2, "desc", "product", "loan")
    r = metrics.run_metric_query(tool_ctx(conn), q)
    loans = raw_facts(conn, OCT, OCT, category="loan", group="product")
    ranked = sorted(loans, key=lambda c: -(loans[c]["balance"] or 0))
    assert [row["key"] for row in r["rows"]] == ranked[:2] and r["row_count"] == len(loans)
    low = metrics.run_metric_query(tool_ctx(conn), ask_query(conn, "余额最低的3个产品"))
    everything = raw_facts(conn, OCT, OCT, group="product")
    assert [row["key"] for row in low["rows"]] == sorted(everything, key=lambda c: everything[c]["balance"] or 0)[:3]


def test_best_and_worst_follow_the_metrics_direction(conn: Any):
    assert ask_query(conn, "不良率最好的产品").order == "asc"  # lower is better
    assert ask_query(conn, "不良率最差的产品").order == "desc"
    assert ask_query(conn, "净贡献最好的产品").order == "desc"
    assert ask_query(conn, "哪个产品净贡献最低").top == 1


def test_reading_other_ways_of_saying_it(conn: Any):
    q = ask_query(conn, "薪易快贷上个月新增了多少客户")
    assert (q.metric, q.products, q.period.start) == ("new_customers", ("SL001",), SEP)
    assert ask_query(conn, "2026年10月的存款余额比9月增长了多少").compare == "mom"
    other = ask_query(conn, "10月贷款余额比8月")
    assert other.compare is None and "只能与上月" in other.notes[0]
    assert classify("薪易快贷的逾期情况", catalog_index(conn)).route == "metrics"
    assert classify("贷款逾期了会怎样").route != "metrics"


def test_share_of_each_group(conn: Any):
    r = metrics.run_metric_query(tool_ctx(conn), ask_query(conn, "2026年10月各大类余额占比"))
    groups = raw_facts(conn, OCT, OCT, group="category")
    total = sum(g["balance"] or 0 for g in groups.values())
    for row in r["rows"]:
        assert row["share"] == approx(100 * groups[row["key"]]["balance"] / total)
    assert sum(row["share"] for row in r["rows"]) == pytest.approx(100)
    one = metrics.run_metric_query(tool_ctx(conn), ask_query(conn, "薪易快贷余额占比"))
    loans = raw_facts(conn, OCT, OCT)["all"]["balance"]
    assert one["total"]["share"] == approx(100 * raw_facts(conn, OCT, OCT, products=["SL001"])["all"]["balance"] / loans)
    rate = ask_query(conn, "各大类不良率占比")
    assert rate.share is False and rate.notes  # a rate has no share


@pytest.mark.parametrize("group", ["category", "segment"])
def test_group_by_category_and_segment(conn: Any, group: str):
    r = metrics.query_metric(tool_ctx(conn), metric="net_contribution", start="2026-09", end="2026-09", group_by=group)
    want = raw_facts(conn, SEP, SEP, group=group)
    assert {row["key"]: row["value"] for row in r["rows"]} == {k: approx(derive("net_contribution", f)) for k, f in want.items()}


def test_group_by_cluster(conn: Any):
    r = metrics.query_metric(tool_ctx(conn), metric="balance", start="2026-10", end="2026-10", group_by="cluster")
    per_product = raw_facts(conn, OCT, OCT, group="product")
    want: dict[str, float] = {}
    for code, facts in per_product.items():
        want[CLUSTER_OF[code]] = want.get(CLUSTER_OF[code], 0.0) + (facts["balance"] or 0)
    assert {row["key"]: row["value"] for row in r["rows"]} == {k: approx(v) for k, v in want.items()}
    assert {row["label"] for row in r["rows"]} >= {"储蓄存款类", "个人及小微信用贷款类"}


def test_group_by_branch_for_the_bank_and_for_a_branch(conn: Any):
    bank = metrics.query_metric(tool_ctx(conn), metric="npl_rate", start="2026-10", end="2026-10", group_by="branch")
    want = {b: expected(conn, "npl_rate", OCT, OCT, branches=descendants(b)) for b in ("B100", "B200")}
    assert {row["key"]: row["value"] for row in bank["rows"]} == {k: approx(v) for k, v in want.items()}
    qd = metrics.run_metric_query(tool_ctx(conn), ask_query(conn, "青岛分行各支行的贷款余额"))
    assert qd["scope"]["label"] == "青岛分行及下辖机构"
    assert {row["key"]: row["value"] for row in qd["rows"]} == {
        s: approx(expected(conn, "balance", OCT, OCT, branches=[s], category="loan")) for s in ("S101", "S102")
    }
    pair = ask_query(conn, "崂山支行和市南支行的余额对比")
    assert (pair.branch, set(pair.branches), pair.group_by) == ("B100", {"S101", "S102"}, "branch")


def test_group_by_month_is_a_trend(conn: Any):
    q = ask_query(conn, "近3个月按月的手续费收入")
    assert q.compare == "trend" and q.period.months == 3
    r = metrics.run_metric_query(tool_ctx(conn), q)
    assert [row["value"] for row in r["rows"]] == [approx(raw_facts(conn, m, m)["all"]["fee_income"]) for m in (AUG, SEP, OCT)]


def test_a_named_cluster_stands_for_its_sellable_products(conn: Any):
    q = ask_query(conn, "2026年10月个人及小微信用贷款类的余额")
    assert set(q.products) == {"SL001", "SL002", "SL009"} and q.named == ("CL01",)
    r = metrics.run_metric_query(tool_ctx(conn), q)
    assert r["total"]["value"] == approx(raw_facts(conn, OCT, OCT, products=["SL001", "SL002", "SL009"])["all"]["balance"])


def test_query_arguments_rebuild_the_same_result(conn: Any):
    ctx = tool_ctx(conn, "rm_qd")
    q = ask_query(conn, "上个月贷款类各产品逾期率环比", "rm_qd")
    assert metrics.query_metric(ctx, **q.as_args()) == metrics.run_metric_query(ctx, q)
    json.dumps(metrics.run_metric_query(ctx, q))  # JSON-able as it is


def test_tool_descriptions_are_the_docstrings():
    described = metrics.tool_descriptions()
    assert set(described) == {"query_metric", "list_metrics"} and all(len(d) > 30 for d in described.values())


# --- who sees what ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("user", "branches"), [
    ("rm_qd", ["B100", "S101", "S102"]),
    ("rm_sn", ["S101"]),  # a leaf: read straight from metrics_monthly
    ("rm_jn", ["B200", "S201", "S202"]),
    (None, None), ("admin01", None), ("designer01", None), ("risk01", None),
])
@pytest.mark.parametrize("key", ["balance", "npl_rate", "net_contribution", "satisfaction"])
def test_each_role_sees_its_own_subtree(conn: Any, user: str | None, branches: list[str] | None, key: str):
    r = metrics.query_metric(tool_ctx(conn, user), metric=key, start="2026-08", end="2026-10")
    assert r["total"]["value"] == approx(expected(conn, key, AUG, OCT, branches=branches))
    assert r["scope"]["label"] == {"rm_qd": "青岛分行及下辖机构", "rm_sn": "市南支行", "rm_jn": "济南分行及下辖机构"}.get(
        user or "", "全行")


def test_roll_up_path_and_leaf_path_agree_with_raw_sums(conn: Any):
    ctx = tool_ctx(conn)
    for b in bf.BRANCHES:
        for key in ("balance", "complaint_rate", "new_customers"):
            r = metrics.query_metric(ctx, metric=key, start="2026-09", end="2026-10", branch=b["code"])
            assert r["total"]["value"] == approx(expected(conn, key, SEP, OCT, branches=descendants(b["code"]))), (b, key)


def test_out_of_scope_branches_are_refused(conn: Any):
    r = metrics.query_metric(tool_ctx(conn, "rm_qd"), metric="balance", branch="B200")
    assert set(r) == {"error", "error_type"} and "济南分行" in r["error"] and "青岛分行及下辖机构" in r["error"]
    grouped = metrics.query_metric(tool_ctx(conn, "rm_sn"), metric="balance", group_by="branch")
    assert [row["key"] for row in grouped["rows"]] == ["S101"]


# --- whole turns through the assistant ------------------------------------------------------------


def test_a_figure_through_the_assistant(assistant: Assistant, conn: Any):
    a = assistant.ask("2026年9月薪易快贷的不良率是多少？", user_id="designer01")
    assert (a.route, a.data["intent"]) == ("metrics", "metric")
    r = assert_traceable(a)
    want = expected(conn, "npl_rate", SEP, SEP, products=["SL001"])
    assert r["total"]["value"] == approx(want)
    assert f"**{r['total']['display']}**" in a.answer and "2026年9月" in a.answer and "全行" in a.answer


def test_a_ranking_gets_a_table(assistant: Assistant, conn: Any):
    a = assistant.ask("贷款类净贡献前三的产品")
    r = assert_traceable(a)
    loans = raw_facts(conn, OCT, OCT, category="loan", group="product")
    ranked = sorted(loans, key=lambda c: -(derive("net_contribution", loans[c]) or 0))[:3]
    assert [row["key"] for row in r["rows"]] == ranked
    table = next(b for b in a.data["display"] if b["type"] == "table")
    assert [row[2] for row in table["rows"]] == [row["display"] for row in r["rows"]]
    assert "| 排名 |" in a.answer and all(row["label"] in a.answer for row in r["rows"])


def test_a_trend_gets_a_chart(assistant: Assistant):
    a = assistant.ask("近三个月全行存款余额走势")
    r = assert_traceable(a)
    chart = next(b for b in a.data["display"] if b["type"] == "chart")
    assert chart["x"] == ["2026年8月", "2026年9月", "2026年10月"] and chart["unit"] == r["chart"]["unit"]
    assert all(d in a.answer for d in r["trend"]["series"][0]["displays"])


@pytest.mark.parametrize(("question", "user"), [
    ("上个月存款余额环比变化", None),
    ("9月份税e快贷和薪易快贷的逾期率对比", "risk01"),
    ("本月客户数是多少", "rm_sn"),
    ("青岛分行各支行的贷款余额", "admin01"),
    ("今年以来各大类的净利息收入", "designer01"),
    ("近3个月万户投诉率最高的产品", None),
    ("2026年三季度零售产品的手续费收入", None),
    ("各客群余额占比", "rm_qd"),
    ("抵押经营贷不良余额同比", None),
    ("满意度最低的2个产品", None),
])
def test_phrasings_route_to_metrics_and_answer_from_the_result(assistant: Assistant, question: str, user: str | None):
    a = assistant.ask(question, user_id=user)
    assert a.route == "metrics", question
    r = assert_traceable(a)
    assert "error" not in r and r["total"]["display"] != "—", question


@pytest.mark.parametrize(("question", "user", "says"), [
    ("9月薪易快贷的业绩排名", None, "没有识别出您要查询的指标"),  # no metric named
    ("9月尊享贷的不良率是多少？", None, "没有找到「尊享贷」"),  # not a product of this bank
    ("2027年3月的贷款余额", None, "还没有数据"),  # the future
    ("2025年3月的贷款余额", None, "没有经营数据"),  # before the first month with data
    ("济南分行的贷款余额", "rm_qd", "不能查看济南分行"),  # outside the asker's scope
    ("全行贷款余额", "rm_sn", "不能查看全行"),
    ("安心存定期的不良率", None, "只适用于贷款类"),  # a deposit has no NPL ratio
    ("存款类的逾期率", None, "只适用于贷款类"),
    ("快贷的余额", None, "请告诉我是哪一个"),  # two products share the alias
])
def test_bad_input_gets_a_clear_answer_and_no_number(assistant: Assistant, question: str, user: str | None, says: str):
    a = assistant.ask(question, user_id=user)
    assert a.route == "metrics", question
    assert says in a.answer, a.answer
    assert not _DECIMAL_RE.search(a.answer) and not re.search(r"亿元|万元|\d%", a.answer), a.answer
    assert not any(c["name"] == "query_metric" for c in a.data["tool_calls"])
    assert a.data["display"] == []


# --- crafted banks (last: they replace the module's bank) -----------------------------------------

YEAR_AGO = {"2026-08": "2025-08", "2026-09": "2025-09", "2026-10": "2025-10"}


@pytest.fixture(scope="module")
def crafted(loaded_db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """The small bank plus last year's months (90 % of this year's figures) and facts booked at
    the branch B100 itself; the small bank is put back afterwards."""
    from ingest.importer import import_folder

    older = []
    for row in bf.bank_rows("metrics_monthly.csv"):
        row = dict(row, month=YEAR_AGO[row["month"]])
        for col in ("balance", "npl_balance", "interest_income"):
            if row[col] != "":
                row[col] = f"{float(row[col]) * 0.9:.2f}"
        older.append(row)
    own = dict(bf.bank_rows("metrics_monthly.csv")[0], branch_code="B100", balance="7000000.00")
    folder = bf.write_small_bank(tmp_path_factory.mktemp("crafted") / "bank",
                                 extra_rows={"metrics_monthly.csv": [*older, own]})
    import_folder(loaded_db, folder)
    yield loaded_db
    import_folder(loaded_db, bf.write_small_bank(tmp_path_factory.mktemp("again") / "bank"))


def test_year_on_year_on_a_bank_with_last_year(crafted: Database):
    with crafted.connection() as c:
        ctx = tool_ctx(c)
        r = metrics.query_metric(ctx, metric="balance_yoy", start="2026-10", end="2026-10")
        now, then = raw_facts(c, OCT, OCT)["all"], raw_facts(c, date(2025, 10, 1), date(2025, 10, 1))["all"]
        assert r["comparison"]["available"] and r["comparison"]["period_label"] == "2025年10月"
        assert r["total"]["change"] == approx((now["balance"] / then["balance"] - 1) * 100)
        npl = metrics.run_metric_query(ctx, ask_query(c, "2026年10月贷款不良率同比"))
        loans_then = raw_facts(c, date(2025, 10, 1), date(2025, 10, 1), category="loan")["all"]
        loans_now = raw_facts(c, OCT, OCT, category="loan")["all"]
        assert npl["total"]["change"] == approx(derive("npl_rate", loans_now) - derive("npl_rate", loans_then))
        trend = metrics.run_metric_query(ctx, ask_query(c, "近12个月余额走势"))
        values = trend["trend"]["series"][0]["values"]
        assert len(values) == 12 and values[0] is None and values[-1] == approx(now["balance"])  # months without data


def test_facts_booked_at_a_branch_itself(crafted: Database):
    with crafted.connection() as c:
        r = metrics.run_metric_query(tool_ctx(c), ask_query(c, "2026年8月青岛分行各机构的余额"))
        rows = {row["key"]: row for row in r["rows"]}
        assert rows["B100"]["label"] == "青岛分行（本级）" and rows["B100"]["value"] == approx(7_000_000)
        assert r["total"]["value"] == approx(expected(c, "balance", AUG, AUG, branches=descendants("B100")))
        bank = metrics.query_metric(tool_ctx(c), metric="balance", start="2026-08", end="2026-08", group_by="branch")
        b100 = next(row for row in bank["rows"] if row["key"] == "B100")
        assert b100["value"] == approx(expected(c, "balance", AUG, AUG, branches=descendants("B100")))
