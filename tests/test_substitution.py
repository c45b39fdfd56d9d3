"""Internal substitution on a crafted bank: the small bank plus a new deposit product SD009 whose
October new customers are known one by one.

October, SD009 鑫享存·三年期 (launched 2026-09, first holder C0111 in September):
- C0101..C0106 moved part of their SD001 time deposit (200,000 each in September) into SD009:
  moved 50k, 60k, 70k, 80k, 90k, 100k; in SD009 they hold 40k, 60k, 70k, 80k, 90k, 120k.
- C0107 closed SD002 (50,000) and holds 50,000 in SD009.
- C0108..C0110 are fresh: 30,000 each; C0108 also holds SI001, which dipped 1 % (noise, not a move).
→ 10 new customers, 7 switchers (70 %), moved 500,000, new balance 600,000, covered 490,000.
C0101..C0105 are serviced in S101 (青岛分行), C0106..C0110 in S201 (济南分行), C0111 in S102.
The facts make the deposit category grow by 100,000 while SD009 grows by 600,000: 内耗.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from agents import evaluation_route
from agents.router import RouteDecision, metrics_intent
from agents.service import Assistant
from core.access import Principal, load_principal
from core.db import Database
from ingest.importer import import_folder
from tests.bankfactory import bank_rows, write_small_bank
from tests.conftest import BANK_TABLES
from tools.catalog import Candidate
from tools.context import ToolContext
from tools.periods import FuturePeriod
from tools.substitution import substitution_analysis

NEW = "SD009"
MOVES = {  # customer: (SD001 moved out, SD009 balance)
    "C0101": (50_000, 40_000), "C0102": (60_000, 60_000), "C0103": (70_000, 70_000),
    "C0104": (80_000, 80_000), "C0105": (90_000, 90_000), "C0106": (100_000, 120_000),
}
BRANCH = {"C0101": "S101", "C0102": "S101", "C0103": "S101", "C0104": "S101", "C0105": "S101",
          "C0106": "S201", "C0107": "S201", "C0108": "S201", "C0109": "S201", "C0110": "S201", "C0111": "S102"}


def _holdings() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def h(month: str, cid: str, code: str, bal: float) -> None:
        rows.append({"month": month, "customer_id": cid, "product_code": code, "balance": f"{bal:.2f}"})

    for cid, (moved, new) in MOVES.items():
        h("2026-08", cid, "SD001", 200_000)
        h("2026-09", cid, "SD001", 200_000)
        h("2026-10", cid, "SD001", 200_000 - moved)
        h("2026-10", cid, NEW, new)
    h("2026-09", "C0107", "SD002", 50_000)
    h("2026-10", "C0107", NEW, 50_000)
    for cid in ("C0108", "C0109", "C0110"):
        h("2026-10", cid, NEW, 30_000)
    h("2026-09", "C0108", "SI001", 100_000)
    h("2026-10", "C0108", "SI001", 99_000)
    h("2026-09", "C0111", NEW, 20_000)
    h("2026-10", "C0111", NEW, 20_000)
    return rows


def _metrics() -> list[dict[str, Any]]:
    """The default facts, SD001 and SD002 flat in October except SD001 −125,000 per branch, plus SD009."""
    rows = bank_rows("metrics_monthly.csv")
    sep = {(r["product_code"], r["branch_code"]): r for r in rows if r["month"] == "2026-09"}
    for r in rows:
        if r["month"] == "2026-10" and r["product_code"] in ("SD001", "SD002"):
            before = float(sep[(r["product_code"], r["branch_code"])]["balance"])
            r["balance"] = f"{before - (125_000 if r['product_code'] == 'SD001' else 0):.2f}"
    template = next(r for r in rows if r["product_code"] == "SD001")
    for month, bal in (("2026-09", 20_000), ("2026-10", 620_000)):
        rows.append({**template, "month": month, "product_code": NEW, "branch_code": "S101",
                     "balance": f"{bal:.2f}", "avg_balance": f"{bal:.2f}", "customers": "11"})
    return rows


def write_substitution_bank(path: Path) -> Path:
    product = {**bank_rows("products.csv")[0], "code": NEW, "name": "鑫享存·三年期", "launch_date": "2026-09-01",
               "aliases": "", "description": "三年期特色定期存款。"}
    customers = [{"customer_id": c, "name": f"客户{c[-3:]}", "segment": "retail", "branch_code": b,
                  "id_number": "", "phone": ""} for c, b in BRANCH.items()]
    return write_small_bank(
        path,
        rows={"metrics_monthly.csv": _metrics()},
        extra_rows={"products.csv": [product], "product_links.csv": [{"from_code": NEW, "to_code": "CD01"}],
                    "customers.csv": customers, "holdings.csv": _holdings()},
    )


@pytest.fixture(scope="module")
def bank(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Database:
    with db.connection() as conn:
        conn.execute("TRUNCATE " + ", ".join(BANK_TABLES) + " RESTART IDENTITY")
    import_folder(db, write_substitution_bank(tmp_path_factory.mktemp("subst") / "bank"))
    return db


def run(db: Database, user: str | None, **args: Any) -> dict[str, Any]:
    with db.connection() as conn:
        ctx = ToolContext(conn=conn, principal=load_principal(conn, user))
        return substitution_analysis(ctx, **args)


def independent(db: Database, product: str, month: str, scope: str | None) -> dict[str, Any]:
    """The same figures by plain SQL written differently (set differences, no shared code)."""
    with db.connection() as conn:
        sql = """
        WITH visible AS (
            SELECT customer_id FROM customers
            WHERE %(scope)s::text IS NULL
               OR branch_code IN (SELECT descendant FROM branch_closure WHERE ancestor = %(scope)s)
        ),
        cur AS (SELECT customer_id, balance FROM holdings WHERE product_code = %(p)s AND month = %(m)s::date
                AND balance > 0 AND customer_id IN (SELECT customer_id FROM visible)),
        newc AS (SELECT customer_id, balance FROM cur WHERE customer_id NOT IN (
                SELECT customer_id FROM holdings WHERE product_code = %(p)s
                AND month = (%(m)s::date - interval '1 month')::date AND balance > 0)),
        before AS (SELECT customer_id, product_code, balance FROM holdings
                   WHERE month = (%(m)s::date - interval '1 month')::date AND product_code <> %(p)s AND balance > 0),
        after AS (SELECT customer_id, product_code, balance FROM holdings WHERE month = %(m)s::date),
        cut AS (SELECT b.customer_id, b.product_code, b.balance - coalesce(a.balance, 0) AS moved
                FROM before b LEFT JOIN after a USING (customer_id, product_code)
                WHERE b.customer_id IN (SELECT customer_id FROM newc)
                  AND coalesce(a.balance, 0) <= 0.95 * b.balance),
        per AS (SELECT customer_id, sum(moved) AS moved FROM cut GROUP BY customer_id)
        SELECT (SELECT count(*) FROM newc) AS new_customers, (SELECT sum(balance) FROM newc) AS new_balance,
               (SELECT count(*) FROM per) AS switchers, (SELECT sum(moved) FROM cut) AS moved,
               (SELECT sum(least(per.moved, newc.balance)) FROM per JOIN newc USING (customer_id)) AS covered
        """
        row = conn.execute(sql, {"p": product, "m": f"{month}-01", "scope": scope}).fetchone()
        assert row is not None
        return {k: float(v or 0) for k, v in row.items()}


def test_share_and_balances_on_the_crafted_bank(bank: Database):
    r = run(bank, None, product_code=NEW)
    assert r["period"]["label"] == "2026年10月" and r["scope"] == "全行"
    assert (r["new_customers"], r["switchers"], r["fresh"]) == (10, 7, 3)
    assert r["switch_share"] == pytest.approx(70.0) and r["switch_share_display"] == "70.0%"
    assert r["new_balance"] == pytest.approx(600_000) and r["new_balance_display"] == "60.00 万元"
    assert r["moved_balance"] == pytest.approx(500_000) and r["moved_balance_display"] == "50.00 万元"
    assert r["covered_balance"] == pytest.approx(490_000)
    assert r["coverage_share_display"] == "81.7%"
    assert r["closed_switchers"] == 1
    by_code = {s["code"]: s for s in r["sources"]}
    assert set(by_code) == {"SD001", "SD002"}  # SI001's 1 % dip is noise, not a move
    assert (by_code["SD001"]["customers"], by_code["SD001"]["closed"]) == (6, 0)
    assert by_code["SD001"]["moved"] == pytest.approx(450_000) and by_code["SD001"]["moved_display"] == "45.00 万元"
    assert (by_code["SD002"]["customers"], by_code["SD002"]["closed"]) == (1, 1)
    assert by_code["SD002"]["moved"] == pytest.approx(50_000)
    assert r["moved_same_category_share_display"] == "100.0%"
    # against independent SQL
    exp = independent(bank, NEW, "2026-10", None)
    assert r["new_customers"] == exp["new_customers"] and r["switchers"] == exp["switchers"]
    assert r["moved_balance"] == pytest.approx(exp["moved"]) and r["covered_balance"] == pytest.approx(exp["covered"])
    assert r["new_balance"] == pytest.approx(exp["new_balance"])


def test_net_effect_on_the_category_is_internal(bank: Database):
    r = run(bank, None, product_code=NEW)
    eff = r["category_effect"]
    assert eff["available"] and eff["base"] == "2026-09-01" and eff["end"] == "2026-10-01"
    assert eff["product_change"] == pytest.approx(600_000)
    assert eff["category_change"] == pytest.approx(100_000)  # SD001 −500,000, SD002 flat
    assert eff["others_change"] == pytest.approx(-500_000)
    assert eff["pool"] == ["SD001", "SD002"] and eff["pool_change"] == pytest.approx(100_000)
    with bank.connection() as conn:
        row = conn.execute(
            "SELECT sum(balance) FILTER (WHERE month = '2026-10-01') - sum(balance) FILTER (WHERE month = '2026-09-01') AS d"
            " FROM metrics_monthly m JOIN products p ON p.code = m.product_code"
            " WHERE p.category = 'deposit' AND p.level = 'sellable'"
        ).fetchone()
    assert row is not None and eff["category_change"] == pytest.approx(float(row["d"]))
    assert r["verdict"] == "internal" and r["verdict_text"] == "单产品看是增长，全局看是内耗"


def test_rm_sees_only_customers_of_their_branch(bank: Database):
    qd = run(bank, "rm_qd", product_code=NEW)  # B100: C0101..C0105
    assert qd["scope"] == "青岛分行及下辖机构"
    assert (qd["new_customers"], qd["switchers"]) == (5, 5) and qd["switch_share_display"] == "100.0%"
    assert qd["moved_balance"] == pytest.approx(350_000)
    jn = run(bank, "rm_jn", product_code=NEW)  # B200: C0106..C0110
    assert (jn["new_customers"], jn["switchers"]) == (5, 2) and jn["switch_share_display"] == "40.0%"
    for user, scope in (("rm_qd", "B100"), ("rm_jn", "B200")):
        exp = independent(bank, NEW, "2026-10", scope)
        got = run(bank, user, product_code=NEW)
        assert (got["new_customers"], got["switchers"]) == (exp["new_customers"], exp["switchers"])
        assert got["moved_balance"] == pytest.approx(exp["moved"])
    sn = run(bank, "rm_lx", product_code=NEW)  # S201 only: C0106..C0110 live there too
    assert sn["new_customers"] == 5


def test_window_and_since_launch(bank: Database):
    two = run(bank, None, product_code=NEW, months=2)
    assert two["period"]["label"] == "2026年9月至10月"
    assert (two["new_customers"], two["switchers"]) == (11, 7)  # C0111 was new in September, fresh
    assert [(m["month"], m["new_customers"], m["switchers"]) for m in two["monthly"]] == [
        ("2026-09", 1, 0), ("2026-10", 10, 7)]
    launch = run(bank, None, product_code=NEW, since_launch=True)
    assert launch["period"]["start"] == "2026-09-01" and launch["new_customers"] == 11
    sep = run(bank, None, product_code=NEW, month="2026-09")
    assert (sep["new_customers"], sep["switchers"], sep["verdict"]) == (1, 0, "new_money")


def test_bad_inputs(bank: Database):
    assert run(bank, None, product_code="SD999")["error"] == "unknown_product"
    assert run(bank, None, product_code="CD01")["error"] == "not_sellable"
    none = run(bank, None, product_code="SD002")  # C0107 left it; nobody came
    assert none["error"] == "no_new_customers" and none["new_customers"] == 0 and "没有新客户" in none["message"]
    first = run(bank, None, product_code=NEW, month="2026-08")
    assert first["error"] == "no_previous_month"
    with pytest.raises(FuturePeriod):
        run(bank, None, product_code=NEW, month="2027-01")
    assert run(bank, None, product_code=NEW, month="2026/13")["error"] == "bad_month"
    assert run(bank, None, product_code="SM001")["error"] == "not_in_holdings"


def test_bank_without_holdings(bank: Database):
    with bank.connection() as conn, conn.transaction():
        conn.execute("DELETE FROM holdings")
        ctx = ToolContext(conn=conn, principal=load_principal(conn, None))
        r = substitution_analysis(ctx, product_code=NEW)
        assert r["error"] == "no_holdings" and "holdings" in r["message"]
        raise psycopg.Rollback()


@pytest.mark.parametrize(("question", "intent"), [
    ("鑫享存的新客户从哪里来", "substitution"), ("这个产品是不是内部替代", "substitution"),
    ("新产品的客户是从哪里来的", "substitution"), ("是不是左手倒右手", "substitution"),
    ("评价一下贷款类产品", "evaluation"), ("哪些产品该退出", "evaluation"), ("存款类产品的竞争格局", "evaluation"),
    ("上月贷款余额", "metric"), ("贷款类各产品余额占比", "metric"),
])
def test_metrics_intent(question: str, intent: str):
    assert metrics_intent(question) == intent


def _decision(question: str, code: str | None) -> RouteDecision:
    products = [Candidate(code, code, "sellable", "operating", 100.0, code, "code")] if code else []
    return RouteDecision("metrics", "substitution", question, products, residual=question)


def test_route_handle_and_compose(bank: Database):
    with bank.connection() as conn:
        admin: Principal = load_principal(conn, None)
        ctx = ToolContext(conn=conn, principal=admin)
        calls = evaluation_route.handle(_decision("SD009上线以来的新客户从哪里来", NEW), ctx)
        assert calls[-1]["args"] == {"product_code": NEW, "since_launch": True}
        text, citations, blocks = evaluation_route.compose(_decision("", NEW), calls, admin)
        assert "2026年9月至10月" in text and "全行" in text and "63.6%" in text
        assert any(b["type"] == "chart" for b in blocks) and any(b["type"] == "table" for b in blocks)
        asked = evaluation_route.handle(_decision("这个产品的新客户从哪里来", None), ctx)
        text, _, _ = evaluation_route.compose(_decision("", None), asked, admin)
        assert "请告诉我要分析哪个产品" in text


def test_through_the_assistant(bank: Database):
    assistant = Assistant(bank)
    a = assistant.ask("鑫享存·三年期的新客户从哪里来？")
    assert a.route == "metrics" and a.data["intent"] == "substitution"
    assert "2026年10月" in a.answer and "全行" in a.answer
    assert "70.0%" in a.answer and "50.00 万元" in a.answer and "内耗" in a.answer
    assert [b["type"] for b in a.data["display"]] == ["table"]
    result = a.data["tool_calls"][-1]["result"]
    _numbers_come_from(a.answer, result)
    b = assistant.ask("鑫享存·三年期是不是内部替代", user_id="rm_qd")
    assert "青岛分行及下辖机构" in b.answer and "100.0%" in b.answer
    c = assistant.ask("薪金活期宝的新客户从哪里来")
    assert "没有新客户" in c.answer


def _numbers_come_from(answer: str, result: Any) -> None:
    """Every decimal number in the answer is in the tool result (its display strings)."""
    import json
    import re

    dumped = json.dumps(result, ensure_ascii=False, default=str)
    for number in re.findall(r"-?\d[\d,]*\.\d+", answer):
        assert number in dumped, number
