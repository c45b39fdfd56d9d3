"""Product evaluation on the small bank (tests/bankfactory.py): indicator values against independent
SQL over metrics_monthly, scores and ranks that respond to crafted facts (changed inside a
transaction that is rolled back), lifecycle stages, exit candidates, the category view, scoping,
bad inputs, and the answers through the route and the assistant."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from agents import evaluation_route
from agents.router import RouteDecision
from agents.service import Assistant
from core.access import load_principal
from core.db import Database
from tools.context import ToolContext
from tools.evaluation import WEIGHTS, category_view, evaluate_products, percentile_scores
from tools.facts import OutOfScope, refresh_rollups
from tools.periods import FuturePeriod

LOANS = ("SL001", "SL002", "SL004")


@contextmanager
def context(db: Database, user: str | None = None, *changes: str) -> Iterator[ToolContext]:
    """A tool context on the loaded bank, after `changes` (SQL) that are rolled back afterwards."""
    with db.connection() as conn, conn.transaction():
        for sql in changes:
            conn.execute(sql)
        if changes:
            refresh_rollups(conn)
        yield ToolContext(conn=conn, principal=load_principal(conn, user))
        raise psycopg.Rollback()


def sql_value(ctx: ToolContext, sql: str, **params: Any) -> float:
    row = ctx.conn.execute(sql, params).fetchone()
    assert row is not None
    return float(next(iter(row.values())))


def by_code(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["code"]: p for p in result["products"]}


_BRANCHES = "(SELECT descendant FROM branch_closure WHERE ancestor = %(root)s)"


def test_indicators_equal_independent_sql(loaded_db: Database):
    with context(loaded_db) as ctx:
        r = evaluate_products(ctx, category="loan", months=2)
        assert r["period"]["label"] == "2026年9月至10月（2个月）" and r["scope"] == "全行"
        got = by_code(r)
        assert set(got) == set(LOANS)  # the retired SL009 is not evaluated
        for code in LOANS:
            ind = got[code]["indicators"]
            nc = sql_value(ctx, "SELECT sum(interest_income - interest_expense + fee_income - opex - provision)"
                                " FROM metrics_monthly WHERE product_code = %(p)s AND month IN ('2026-09-01', '2026-10-01')",
                           p=code)
            assert ind["net_contribution"]["value"] == pytest.approx(nc)
            avg = sql_value(ctx, "SELECT avg(s) FROM (SELECT sum(avg_balance) AS s FROM metrics_monthly"
                                 " WHERE product_code = %(p)s AND month IN ('2026-09-01', '2026-10-01') GROUP BY month) x",
                            p=code)
            assert ind["contribution_margin"]["value"] == pytest.approx(100 * nc * 12 / 2 / avg)
            end = "FROM metrics_monthly WHERE product_code = %(p)s AND month = '2026-10-01'"
            assert ind["npl_rate"]["value"] == pytest.approx(
                sql_value(ctx, f"SELECT 100.0 * sum(npl_balance) / sum(balance) {end}", p=code))
            assert ind["overdue_rate"]["value"] == pytest.approx(
                sql_value(ctx, f"SELECT 100.0 * sum(overdue_balance) / sum(balance) {end}", p=code))
            complaints = sql_value(ctx, "SELECT sum(complaints) FROM metrics_monthly WHERE product_code = %(p)s"
                                        " AND month IN ('2026-09-01', '2026-10-01')", p=code)
            assert ind["complaint_rate"]["value"] == pytest.approx(
                10000 * complaints / sql_value(ctx, f"SELECT sum(customers) {end}", p=code))
            share = sql_value(ctx, f"SELECT 100.0 * sum(balance) {end}", p=code) / sql_value(
                ctx, "SELECT sum(balance) FROM metrics_monthly WHERE month = '2026-10-01'"
                     " AND product_code IN ('SL001', 'SL002', 'SL004')")
            assert ind["balance_share"]["value"] == pytest.approx(share)
            cust = [sql_value(ctx, "SELECT sum(customers) FROM metrics_monthly WHERE product_code = %(p)s"
                                   " AND month = %(m)s", p=code, m=m) for m in ("2026-08-01", "2026-10-01")]
            assert ind["customer_growth"]["value"] == pytest.approx(100 * (cust[1] / cust[0] - 1))
            assert ind["net_contribution"]["display"].endswith("万元")
        # every loan grows by the same 4 %: nothing to tell them apart
        skipped = {s["indicator"]: s["reason"] for s in r["categories"][0]["skipped"]}
        assert skipped["balance_growth"] == skipped["satisfaction"] == "类内各产品取值相同，无法区分"


def test_scores_ranks_and_weights(loaded_db: Database):
    with context(loaded_db) as ctx:
        r = evaluate_products(ctx, category="loan", months=2)
    got = by_code(r)
    # npl 0.8 % < 1.6 % < 4.2 %: lower is better, percentile within the category
    assert [got[c]["indicators"]["npl_rate"]["score"] for c in LOANS] == [100.0, 50.0, 0.0]
    assert [got[c]["indicators"]["overdue_rate"]["score"] for c in LOANS] == [100.0, 50.0, 0.0]
    assert got["SL004"]["dimensions"]["risk"]["score"] < got["SL001"]["dimensions"]["risk"]["score"]
    cat = r["categories"][0]
    assert cat["weights"] == WEIGHTS["loan"] and cat["weights_display"]["risk"] == "30%"
    for p in got.values():
        dims = p["dimensions"]
        total = sum(dims[d]["score"] * w for d, w in WEIGHTS["loan"].items()) / 100
        assert p["total"] == pytest.approx(total)
    assert sorted(p["rank"] for p in got.values()) == [1, 2, 3]
    assert got["SL001"]["rank"] == 1
    assert all(sum(w.values()) == 100 for w in WEIGHTS.values())
    assert len({tuple(w.values()) for w in WEIGHTS.values()}) == len(WEIGHTS)  # weights differ by category
    assert percentile_scores({"a": 1.0, "b": 1.0, "c": 3.0}, True) == {"a": 25.0, "b": 25.0, "c": 100.0}
    assert percentile_scores({"a": 5.0, "b": None}, False) == {"a": 50.0, "b": None}


def test_ranks_respond_to_crafted_facts(loaded_db: Database):
    boost = ("UPDATE metrics_monthly SET fee_income = fee_income + 5000000, npl_balance = 0, overdue_balance = 0,"
             " satisfaction = CASE branch_code WHEN 'S101' THEN 99 ELSE 95 END WHERE product_code = 'SL002'")
    with context(loaded_db, None, boost) as ctx:
        r = by_code(evaluate_products(ctx, category="loan", months=2))
        sat = sql_value(ctx, "SELECT sum(satisfaction * customers) / sum(customers) FROM metrics_monthly"
                             " WHERE product_code = 'SL002' AND month = '2026-10-01'")
    assert r["SL002"]["indicators"]["satisfaction"]["value"] == pytest.approx(sat)  # weighted, not averaged
    assert r["SL002"]["indicators"]["satisfaction"]["score"] == 100.0
    assert r["SL002"]["rank"] == 1
    assert r["SL002"]["dimensions"]["finance"]["score"] == 100.0
    assert r["SL002"]["indicators"]["npl_rate"]["score"] == 100.0


def test_loss_making_declining_product_is_an_exit_candidate(loaded_db: Database):
    shrink = ("UPDATE metrics_monthly SET interest_income = 0, balance = balance * CASE month"
              " WHEN '2026-08-01' THEN 1.0 WHEN '2026-09-01' THEN 0.8 ELSE 0.6 END WHERE product_code = 'SL004'")
    with context(loaded_db, None, shrink) as ctx:
        r = evaluate_products(ctx, category="loan", months=2)
        nc = sql_value(ctx, "SELECT sum(interest_income - interest_expense + fee_income - opex - provision)"
                            " FROM metrics_monthly WHERE product_code = 'SL004' AND month >= '2026-09-01'")
    got = by_code(r)
    sl004 = got["SL004"]
    assert sl004["stage"] == "衰退期" and nc < 0
    assert sl004["net_contribution"] == pytest.approx(nc)
    assert sl004["exit_candidate"] and r["exit_candidates"] == ["SL004"]
    reasons = "；".join(sl004["exit_reasons"])
    assert "净贡献" in reasons and "衰退期" in reasons and "停牌" in reasons and sl004["total_display"] in reasons
    assert not got["SL001"]["exit_candidate"] and got["SL001"]["exit_reasons"] == []
    assert got["SL001"]["stage"] == "成长期"  # 2 % a month: about 27 % a year


def test_lifecycle_introduction_and_no_exit_while_new(loaded_db: Database):
    changes = ("UPDATE products SET launch_date = '2026-06-01' WHERE code = 'SL002'",
               "UPDATE metrics_monthly SET interest_income = 0 WHERE product_code = 'SL002'")
    with context(loaded_db, None, *changes) as ctx:
        r = by_code(evaluate_products(ctx, category="loan", months=2))
    assert r["SL002"]["stage"] == "导入期" and "4个月" in r["SL002"]["stage_reason"]
    assert r["SL002"]["net_contribution"] < 0 and not r["SL002"]["exit_candidate"]


def test_missing_columns_are_skipped_and_weights_renormalised(loaded_db: Database):
    empty = "UPDATE metrics_monthly SET complaints = NULL, satisfaction = NULL, lost_customers = NULL"
    with context(loaded_db, None, empty) as ctx:
        r = evaluate_products(ctx, category="loan", months=2)
    cat = r["categories"][0]
    skipped = {s["indicator"]: s["reason"] for s in cat["skipped"]}
    assert skipped["complaint_rate"] == skipped["satisfaction"] == skipped["churn_rate"] == "缺少计算所需的数据"
    assert cat["effective_weights"]["customer"] == 0.0
    assert cat["effective_weights"]["finance"] == pytest.approx(round(100 * 35 / 85, 1))
    assert any("客户体验" in n for n in cat["notes"])
    assert all(p["dimensions"]["customer"]["score"] is None for p in r["products"])


def test_rm_scope_and_window_cut_to_the_data(loaded_db: Database):
    with context(loaded_db, "rm_qd") as ctx:
        r = evaluate_products(ctx, products=["SL001"])
        nc = sql_value(ctx, "SELECT sum(interest_income - interest_expense + fee_income - opex - provision)"
                            f" FROM metrics_monthly WHERE product_code = 'SL001' AND month > '2026-08-01'"
                            f" AND branch_code IN {_BRANCHES}", root="B100")
        with pytest.raises(OutOfScope):
            evaluate_products(ctx, category="loan", branch="B200")
    assert r["scope"] == "青岛分行及下辖机构"
    assert r["period"]["months"] == 2 and "2026年8月" in r["period"]["note"]
    p = r["products"][0]
    assert p["indicators"]["net_contribution"]["value"] == pytest.approx(nc)
    assert r["trend"]["x"] == ["2026-08", "2026-09", "2026-10"]


def test_category_view(loaded_db: Database):
    with context(loaded_db) as ctx:
        r = category_view(ctx, "loan", months=2)
        total = {m: sql_value(ctx, "SELECT sum(balance) FROM metrics_monthly WHERE month = %(m)s"
                                   " AND product_code IN ('SL001', 'SL002', 'SL004')", m=m)
                 for m in ("2026-08-01", "2026-10-01")}
        sl001 = sql_value(ctx, "SELECT sum(balance) FROM metrics_monthly WHERE month = '2026-10-01'"
                               " AND product_code = 'SL001'")
    assert r["products_count"] == 3 and r["category_name"] == "贷款"
    assert r["total_end"] == pytest.approx(total["2026-10-01"])
    assert r["total_change"] == pytest.approx(total["2026-10-01"] - total["2026-08-01"])
    rows = {x["code"]: x for x in r["products"]}
    assert rows["SL001"]["share"] == pytest.approx(100 * sl001 / total["2026-10-01"])
    assert rows["SL001"]["balance_rank"] == 1
    assert sum(x["share"] for x in r["products"]) == pytest.approx(100)
    assert sum(x["share_of_growth"] for x in r["products"]) == pytest.approx(100)
    assert r["trend"]["series"][0]["name"] == "贷款类合计" and len(r["trend"]["x"]) == 3


def test_bad_inputs(loaded_db: Database):
    with context(loaded_db) as ctx:
        assert evaluate_products(ctx, category="bonds")["error"] == "unknown_category"
        assert evaluate_products(ctx, products=["XX999"])["error"] == "unknown_product"
        assert evaluate_products(ctx, products=["CL01"])["error"] == "not_sellable"
        assert evaluate_products(ctx, end="2025-01")["error"] == "no_data"
        assert evaluate_products(ctx, end="10/2026")["error"] == "bad_month"
        assert category_view(ctx, "bonds")["error"] == "unknown_category"
        with pytest.raises(FuturePeriod):
            evaluate_products(ctx, end="2027-03")
    with context(loaded_db, None, "DELETE FROM metrics_monthly") as ctx:
        assert evaluate_products(ctx)["error"] == "no_facts"


def numbers_come_from(answer: str, calls: Sequence[Mapping[str, Any]]) -> None:
    """Every decimal number in the answer is in a tool result (as a display string)."""
    dumped = json.dumps([c["result"] for c in calls], ensure_ascii=False, default=str)
    for number in re.findall(r"-?\d[\d,]*\.\d+", answer):
        assert number in dumped, number


def test_answers_through_the_assistant(loaded_db: Database):
    assistant = Assistant(loaded_db)
    a = assistant.ask("贷款产品评分卡")
    assert a.route == "metrics" and a.data["intent"] == "evaluation"
    assert "2026年9月至10月（2个月）" in a.answer and "全行" in a.answer and "30%" in a.answer
    assert a.data["display"][0]["type"] == "table" and len(a.data["display"][0]["rows"]) == 3
    numbers_come_from(a.answer, a.data["tool_calls"])
    b = assistant.ask("薪易快贷的产品评价", user_id="rm_qd")
    assert "青岛分行及下辖机构" in b.answer and "薪易快贷" in b.answer and "不良率" in b.answer
    assert [x["type"] for x in b.data["display"]] == ["table", "chart"]
    numbers_come_from(b.answer, b.data["tool_calls"])
    c = assistant.ask("存款产品的生命周期阶段")
    assert "成长期" in c.answer and "判断规则" in c.answer
    numbers_come_from(c.answer, c.data["tool_calls"])
    d = assistant.ask("哪些贷款产品是低效产品")
    assert "目前没有产品同时满足以上条件" in d.answer


def test_route_compete_and_exit(loaded_db: Database):
    shrink = ("UPDATE metrics_monthly SET interest_income = 0, balance = balance * CASE month"
              " WHEN '2026-08-01' THEN 1.0 WHEN '2026-09-01' THEN 0.8 ELSE 0.6 END WHERE product_code = 'SL004'")
    with context(loaded_db, None, shrink) as ctx:
        d = RouteDecision("metrics", "evaluation", "贷款类产品之间的竞争情况", residual="贷款类产品之间的竞争情况")
        calls = evaluation_route.handle(d, ctx)
        assert [c["name"] for c in calls] == ["category_view"] and calls[0]["args"]["category"] == "loan"
        text, _, blocks = evaluation_route.compose(d, calls, ctx.principal)
        assert "竞争格局" in text and "全行" in text and [b["type"] for b in blocks] == ["table", "chart"]
        numbers_come_from(text, calls)
        e = RouteDecision("metrics", "evaluation", "哪些产品该退出", residual="哪些产品该退出")
        calls = evaluation_route.handle(e, ctx)
        text, _, blocks = evaluation_route.compose(e, calls, ctx.principal)
        assert "抵押经营贷（SL004）" in text and "退出候选" in text and blocks[0]["rows"][0][0] == "抵押经营贷（SL004）"
        numbers_come_from(text, calls)
        f = RouteDecision("metrics", "evaluation", "2027年3月的产品评价", residual="2027年3月的产品评价")
        calls = evaluation_route.handle(f, ctx)
        text, _, _ = evaluation_route.compose(f, calls, ctx.principal)
        assert "还没有数据" in text
