"""The plan sandbox on a crafted bank: the small bank plus four customers whose eligibility is known.

Latest holdings month 2026-10 (holdings grow 1 % a month from August, so October = base × 1.02).

Retail loan plan, minimum 10,000: eligible C0001 (assets 204,000, a 正常 loan of 100,000),
C0002 (assets 35,700 + 102,000), C0006 (306,000, loan 60,000), C0008 (12,240); C0003 has a 关注 loan
(risk); C0104 (crafted, S101) holds 5,000 only (capacity). Inclusive loan plan: C0101 (crafted,
S101, a 正常 loan of 400,000, no holdings) is eligible; C0005, C0007 (non-performing loans) and C0103
(crafted, S102, a 正常 loan 10 days overdue) are risky; C0102 (crafted, S202) has no data at all.
Retail deposit plan: C0001, C0002, C0006, C0008, C0104 hold deposits; C0003 holds none.
"""

from __future__ import annotations

import json
import math
import re
import stat
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.access import Principal
from core.db import Database
from ingest.importer import import_folder
from tests.bankfactory import CUSTOMERS, write_small_bank
from tests.conftest import BANK_TABLES
from tools.plan_types import Plan, PlanElement
from tools.sandbox import (
    AMOUNT_LOW,
    LOAN_BASE_TAKEUP,
    LOAN_ELASTICITY,
    REACH_OFFLINE,
    REACH_ONLINE,
    SAMPLE_ROWS,
    pseudonym,
    pseudonym_key,
    simulate,
)

KEY = b"sandbox-test-key-0123456789abcdef"
EXTRA_CUSTOMERS = [
    {"customer_id": "C0101", "name": "临沂蒙山小吃店", "segment": "inclusive", "branch_code": "S101",
     "id_number": "92371300MA3X00009Z", "phone": "13900001111"},
    {"customer_id": "C0102", "name": "潍坊风筝工坊", "segment": "inclusive", "branch_code": "S202",
     "id_number": "92370700MA3Y00008Y", "phone": "13900002222"},
    {"customer_id": "C0103", "name": "日照海鲜排档", "segment": "inclusive", "branch_code": "S102",
     "id_number": "92371100MA3Z00007X", "phone": "13900003333"},
    {"customer_id": "C0104", "name": "赵小燕", "segment": "retail", "branch_code": "S101",
     "id_number": "370202199912120000", "phone": "13900004444"},
]
EXTRA_LOANS = [
    {"loan_id": "L0101", "customer_id": "C0101", "product_code": "SL002", "branch_code": "S101",
     "amount": "400000.00", "balance": "300000.00", "rate": "4.20", "start_date": "2026-02-01",
     "maturity_date": "2029-02-01", "five_class": "正常", "overdue_days": "0"},
    {"loan_id": "L0103", "customer_id": "C0103", "product_code": "SL002", "branch_code": "S102",
     "amount": "200000.00", "balance": "200000.00", "rate": "4.50", "start_date": "2026-05-01",
     "maturity_date": "2027-05-01", "five_class": "正常", "overdue_days": "10"},
]
EXTRA_HOLDINGS = [{"month": m, "customer_id": "C0104", "product_code": "SD001", "balance": "5000.00"}
                  for m in ("2026-08", "2026-09", "2026-10")]
ALL_CUSTOMERS = CUSTOMERS + EXTRA_CUSTOMERS
RETAIL_LOAN = {"C0001", "C0002", "C0006", "C0008"}


@pytest.fixture(scope="module")
def bank(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Database:
    with db.connection() as conn:
        conn.execute("TRUNCATE " + ", ".join(BANK_TABLES) + " RESTART IDENTITY")
    folder = write_small_bank(
        tmp_path_factory.mktemp("sandbox") / "bank",
        extra_rows={"customers.csv": EXTRA_CUSTOMERS, "loans.csv": EXTRA_LOANS, "holdings.csv": EXTRA_HOLDINGS},
    )
    import_folder(db, folder)
    return db


def plan(name: str = "均衡", repayment: str = "等额本息", **terms: Any) -> dict[str, Any]:
    """A hand-made plan shaped like Plan.as_dict()."""
    base: dict[str, Any] = {
        "name": name, "category": "loan", "segment": "retail", "rate": 4.0, "term_months": 36,
        "amount_min": 10_000.0, "amount_max": 300_000.0, "collateral": "信用", "target_customers": "",
        "channels": ["手机银行"], "ftp_rate": 2.3, "expected_loss_rate": 1.0, "opex_rate": 0.5,
        "capital_cost_rate": 0.8, "competitor_rate": 3.5,
    }
    base.update(terms)
    return {"name": name, "elements": [{"element": "repayment", "value": repayment, "unit": "", "reason": "",
                                        "sources": []}],
            "terms": base, "pricing": {}, "meets_constraints": True, "unmet": []}


THREE = [plan("保守", rate=4.6, competitor_rate=4.0, channels=["网点"]),
         plan("均衡", rate=4.0, competitor_rate=4.0, channels=["线上", "网点"]),
         plan("进取", rate=3.4, competitor_rate=4.0, channels=["线上"])]
REQ = {"text": "面向个人的线上消费贷", "category": "loan", "segment": "retail"}


def run(db: Database, plans: list[dict[str, Any]], principal: Principal | None = None, **kw: Any) -> dict[str, Any]:
    with db.connection() as conn:
        return simulate(conn, plans, REQ, principal=principal, key=KEY, **kw)


def who(result_plan: dict[str, Any]) -> set[str]:
    """The customer ids behind a plan's sample pseudonyms (the test knows the key)."""
    back = {pseudonym(c["customer_id"], KEY): c["customer_id"] for c in ALL_CUSTOMERS}
    return {back[row["pseudonym"]] for row in result_plan["sample"]}


def eligible_ids(db: Database, p: dict[str, Any], principal: Principal | None = None) -> tuple[int, dict[str, int]]:
    """The plan's eligible count and the exclusions by reason."""
    r = run(db, [p], principal)["plans"][0]
    return r["totals"]["eligible"], r["excluded"]


# --- pseudonyms ---------------------------------------------------------------------------------


def test_pseudonym_is_stable_and_distinct():
    a = pseudonym("C0001", KEY)
    assert re.fullmatch(r"客户-[0-9A-F]{8}", a)
    assert a == pseudonym("C0001", KEY)
    assert len({pseudonym(c["customer_id"], KEY) for c in ALL_CUSTOMERS}) == len(ALL_CUSTOMERS)
    assert pseudonym("C0001", b"another-key-0123456789") != a


def test_key_file_created_once_private(tmp_path: Path):
    key = pseudonym_key(tmp_path)
    path = tmp_path / "pseudonym.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 32 and pseudonym_key(tmp_path) == key
    assert not [p for p in tmp_path.iterdir() if p.name != "pseudonym.key"]  # no temporary file left


def test_same_customer_same_pseudonym_across_runs_and_plans(bank: Database):
    # Every sampled row, in any plan and run, carries the pseudonym the test computes for that customer.
    branch = {c["customer_id"]: c["branch_code"] for c in ALL_CUSTOMERS}
    back = {pseudonym(c, KEY): c for c in branch}
    seen: dict[str, set[str]] = {}
    for seed in range(1, 13):
        for r in run(bank, THREE if seed % 2 else list(reversed(THREE)), seed=seed)["plans"]:
            assert who(r) <= RETAIL_LOAN
            for row in r["sample"]:
                assert row["branch"] == branch[back[row["pseudonym"]]] and row["segment"] == "零售"
                seen.setdefault(back[row["pseudonym"]], set()).add(r["name"])
    assert "C0001" in seen and len(seen["C0001"]) >= 2  # the same customer met in several plans and runs


def test_no_personal_data_in_the_result(bank: Database):
    r = run(bank, THREE + [plan("存款", category="deposit", rate=2.2, ftp_rate=2.3, amount_min=50,
                               amount_max=None, competitor_rate=2.05)])
    text = json.dumps(r, ensure_ascii=False)
    for c in ALL_CUSTOMERS:
        for field in ("customer_id", "name", "id_number", "phone"):
            if c[field]:
                assert c[field] not in text, (field, c[field])
    for r_plan in r["plans"]:
        for row in r_plan["sample"]:
            assert set(row) == {"pseudonym", "segment", "branch", "branch_name", "capacity_band", "start_month",
                                "amount", "amount_display"}


# --- eligibility and scope ----------------------------------------------------------------------


def test_loan_eligibility_rules(bank: Database):
    n, excluded = eligible_ids(bank, plan())
    assert n == 4
    assert excluded == {"客群不符": 6, "现有贷款关注及以下或逾期": 1, "能力不足最低金额": 1}
    n, excluded = eligible_ids(bank, plan(amount_min=20_000))  # C0008 (12,240) falls short
    assert n == 3 and excluded["能力不足最低金额"] == 2
    n, excluded = eligible_ids(bank, plan(segment="inclusive"))
    assert n == 1
    assert excluded == {"客群不符": 7, "现有贷款关注及以下或逾期": 3, "无资产及借贷记录": 1}
    n, excluded = eligible_ids(bank, plan(target_customers="首贷客户"))  # C0001 and C0006 already borrow
    assert n == 2 and excluded["非首贷客户"] == 2
    # Everyone with assets or borrowing and no risk: 4 retail + C0101; C0004 holds only a payment product.
    n, excluded = eligible_ids(bank, plan(segment="all"))
    assert n == 5 and excluded["无资产及借贷记录"] == 2


def test_deposit_eligibility(bank: Database):
    n, excluded = eligible_ids(bank, plan(category="deposit", rate=2.2, ftp_rate=2.3, amount_min=50,
                                          amount_max=None, competitor_rate=2.05))
    assert n == 5 and excluded == {"客群不符": 6, "未持有存款": 1}
    # 起存 5,000: C0104 may move 50 % of 5,000 only.
    n, excluded = eligible_ids(bank, plan(category="deposit", rate=2.2, ftp_rate=2.3, amount_min=5000,
                                          amount_max=None, competitor_rate=2.05))
    assert n == 4 and excluded["能力不足最低金额"] == 1


def test_rm_sees_only_their_subtree_and_the_same_draws(bank: Database):
    qd = Principal(user_id="rm_qd", name="张伟", role="rm", branch_code="B100", branch_name="青岛分行")
    sn = Principal(user_id="rm_sn", name="李娜", role="rm", branch_code="S101", branch_name="市南支行")
    assert eligible_ids(bank, plan(), qd)[0] == 2  # C0001, C0002
    assert eligible_ids(bank, plan(segment="inclusive"), qd)[0] == 1  # C0101
    assert eligible_ids(bank, plan(segment="inclusive"), sn)[0] == 1
    r = run(bank, THREE, qd)
    assert r["scope"] == "青岛分行及下辖机构" and r["snapshot"]["customers"] == 8
    assert r["snapshot"]["segments"] == {"零售": 4, "对公": 1, "普惠小微": 3}
    whole = run(bank, THREE)
    for mine, all_ in zip(r["plans"], whole["plans"], strict=True):
        assert who(mine) <= {"C0001", "C0002"}
        # The draws belong to the customer, not to the asker: the rm's takers are the bank's, restricted.
        assert mine["sample"] == [row for row in all_["sample"] if row["branch"] in ("S101", "S102")]
    designer = Principal(user_id="designer01", name="钱进", role="designer", branch_code="H000")
    assert run(bank, THREE, designer) == whole | {"scope": "全行"}


# --- determinism --------------------------------------------------------------------------------


def test_deterministic_for_a_seed(bank: Database):
    a, b = run(bank, THREE), run(bank, THREE)
    assert a == b and json.dumps(a, ensure_ascii=False) == json.dumps(b, ensure_ascii=False)
    c = run(bank, THREE, seed=12345)
    assert [p["totals"]["eligible"] for p in c["plans"]] == [p["totals"]["eligible"] for p in a["plans"]]
    assert [(p["sample"], p["series"]) for p in c["plans"]] != [(p["sample"], p["series"]) for p in a["plans"]]


def test_independent_of_row_order(bank: Database):
    before = run(bank, THREE)
    with bank.connection() as conn, conn.transaction():
        for table, order in (("customers", "customer_id DESC"), ("holdings", "customer_id DESC, month"),
                             ("loans", "loan_id DESC")):
            conn.execute(f"CREATE TEMP TABLE t_{table} AS SELECT * FROM {table}")
            conn.execute(f"DELETE FROM {table}")
            conn.execute(f"INSERT INTO {table} SELECT * FROM t_{table} ORDER BY {order}")
        assert simulate(conn, THREE, REQ, key=KEY) == before
        raise psycopg.Rollback()


# --- arithmetic ---------------------------------------------------------------------------------


def _seed_with_takers(db: Database, p: dict[str, Any], least: int) -> dict[str, Any]:
    for seed in range(1, 200):
        r = run(db, [p], seed=seed)["plans"][0]
        if least <= r["totals"]["takers"] <= SAMPLE_ROWS:
            return r
    raise AssertionError("no seed gives enough takers")


def _check_totals(r: dict[str, Any], months: int, schedule: Any, spread: float, el: float, opex: float,
                  cap: float) -> None:
    """Recompute the plan's totals by hand from its sample rows (every taker is in the sample)."""
    nii = loss = op = capital = end = 0.0
    balance_by_month = [0.0] * months
    for row in r["sample"]:
        opening = schedule(row["amount"], row["start_month"])
        for m, (b_open, b_close) in enumerate(opening):
            nii += b_open * spread / 1200
            loss += b_open * el / 1200
            op += b_open * opex / 1200
            capital += b_open * cap / 1200
            balance_by_month[m] += b_close
        end += opening[-1][1]
    t = r["totals"]
    assert t["takers"] == len(r["sample"])
    assert t["net_interest"] == pytest.approx(nii, abs=0.01)
    assert t["expected_loss"] == pytest.approx(loss, abs=0.01)
    assert t["opex"] == pytest.approx(op, abs=0.01)
    assert t["capital_cost"] == pytest.approx(capital, abs=0.01)
    assert t["net_contribution"] == pytest.approx(nii - loss - op - capital, abs=0.02)
    assert t["balance_end"] == pytest.approx(end, abs=0.01)
    assert t["per_customer"] == pytest.approx(t["net_contribution"] / t["takers"], abs=0.01)
    assert r["series"]["balance"] == pytest.approx(balance_by_month, abs=0.01)
    assert sum(r["series"]["net_contribution"]) == pytest.approx(t["net_contribution"], abs=0.05)


def test_bullet_loan_arithmetic(bank: Database):
    p = plan("到期还本", repayment="按月付息到期还本", rate=6.0, ftp_rate=2.0, expected_loss_rate=1.0,
             opex_rate=0.5, capital_cost_rate=0.8, competitor_rate=8.0, channels=["手机银行", "网点"])
    r = _seed_with_takers(bank, p, 2)
    reach = 1 - (1 - REACH_ONLINE) * (1 - REACH_OFFLINE)
    logit = math.log(LOAN_BASE_TAKEUP / (1 - LOAN_BASE_TAKEUP)) + LOAN_ELASTICITY * 2.0
    assert r["takeup_probability"] == pytest.approx(reach / (1 + math.exp(-logit)), abs=1e-6)
    assert r["rate_gap"] == 2.0 and r["repayment"] == "bullet"

    def schedule(a: float, s: int) -> list[tuple[float, float]]:
        return [(a, a) if m >= s else (0.0, 0.0) for m in range(1, 13)]  # 36 months: no repayment in 12

    _check_totals(r, 12, schedule, 6.0 - 2.0, 1.0, 0.5, 0.8)
    # Hand figure: each taker earns A × 4 % / 12 for each month from their start month.
    assert r["totals"]["net_interest"] == pytest.approx(
        sum(row["amount"] * 0.04 / 12 * (13 - row["start_month"]) for row in r["sample"]), abs=0.01)


def test_annuity_loan_arithmetic_and_amounts(bank: Database):
    p = plan("等额本息", rate=5.0, ftp_rate=2.3, term_months=6, expected_loss_rate=1.2, competitor_rate=7.0,
             channels=["手机银行"])
    r = _seed_with_takers(bank, p, 2)

    def schedule(a: float, s: int) -> list[tuple[float, float]]:
        rm = 5.0 / 1200
        pay = a * rm / (1 - (1 + rm) ** -6)
        out, b, paid = [], a, 0
        for m in range(1, 13):
            if m < s or paid >= 6:
                out.append((0.0, 0.0))
                continue
            close = b - (pay - b * rm)
            paid += 1
            out.append((b, max(close, 0.0) if paid < 6 else 0.0))
            b = close
        return out

    _check_totals(r, 12, schedule, 5.0 - 2.3, 1.2, 0.5, 0.8)
    assert r["totals"]["balance_end"] == pytest.approx(0.0, abs=0.01)  # 6-month loans are repaid by month 12
    # Amounts: within the plan's range and 50–100 % of the capacity (largest of assets and existing loans).
    capacity = {"C0001": 204_000.0, "C0002": 137_700.0, "C0006": 306_000.0, "C0008": 12_240.0}
    back = {pseudonym(c, KEY): c for c in capacity}
    for row in r["sample"]:
        cap = capacity[back[row["pseudonym"]]]
        assert 10_000 <= row["amount"] <= 300_000 and row["amount"] % 100 == 0
        assert min(cap * AMOUNT_LOW, 300_000) - 50 <= row["amount"] <= min(max(cap + 50, 10_000), 300_000)
        assert 1 <= row["start_month"] <= 3


def test_deposit_arithmetic(bank: Database):
    p = plan("存款", category="deposit", rate=2.2, ftp_rate=2.6, amount_min=50, amount_max=None,
             competitor_rate=1.9, opex_rate=0.3, capital_cost_rate=0.0, expected_loss_rate=None)
    r = _seed_with_takers(bank, p, 2)
    assert r["warnings"] == []  # no expected loss for deposits: not a missing number

    def schedule(a: float, s: int) -> list[tuple[float, float]]:
        return [(a, a) if m >= s else (0.0, 0.0) for m in range(1, 13)]

    _check_totals(r, 12, schedule, 2.6 - 2.2, 0.0, 0.3, 0.0)


def test_accepts_plan_as_dict(bank: Database):
    p = Plan(name="保守", elements=[PlanElement(element="repayment", value="等额本金")],
             terms=plan()["terms"], pricing={})
    r = run(bank, [p.as_dict()])
    assert r["plans"][0]["simulated"] and r["plans"][0]["repayment"] == "linear"


# --- the comparison -----------------------------------------------------------------------------


def test_comparison_table_and_blocks(bank: Database):
    r = run(bank, THREE + [plan("收单", category="payment")])
    assert r["status"] == "ok"
    names = ["保守", "均衡", "进取", "收单"]
    assert r["table"]["columns"] == ["指标", *names]
    assert [row["metric"] for row in r["table"]["rows"]] == [
        "合格客户数", "预计办理客户数", "办理率", "期末余额", "12个月净利息收入", "预期损失", "运营成本", "资本成本",
        "净贡献", "每户净贡献"]
    for row in r["table"]["rows"]:
        assert len(row["values"]) == 4
        assert all(isinstance(c["display"], str) and c["display"] for c in row["values"])
        assert row["values"][3] == {"value": None, "display": "—"}  # the payment plan is not simulated
    block = r["comparison"]
    assert block["type"] == "comparison" and block["columns"] == ["指标", *names]
    assert len(block["rows"]) == 10 and all(len(row) == 5 for row in block["rows"])
    eligible = r["table"]["rows"][0]["values"]
    assert [c["display"] for c in eligible[:3]] == ["4 户"] * 3
    # Cheaper than competitors and online: the 进取 plan is taken at least as often (common draws).
    takers = [c["value"] for c in r["table"]["rows"][1]["values"][:3]]
    assert takers[0] <= takers[1] <= takers[2]
    assert [p["takeup_probability"] for p in r["plans"][:3]] == sorted(p["takeup_probability"] for p in r["plans"][:3])
    chart = r["chart"]
    assert chart["type"] == "chart" and len(chart["x"]) == 12 and [s["name"] for s in chart["series"]] == names[:3]
    assert all(len(s["values"]) == 12 for s in chart["series"])
    assert any("收单" in w and "只模拟贷款和存款" in w for w in r["warnings"])
    assert r["assumptions"] and all(isinstance(a, str) for a in r["assumptions"])
    assert all(p["assumptions"] for p in r["plans"][:3])


# --- degradation --------------------------------------------------------------------------------


def test_without_customers(bank: Database):
    with bank.connection() as conn, conn.transaction():
        conn.execute("DELETE FROM customers")
        r = simulate(conn, THREE, REQ, key=KEY)
        raise psycopg.Rollback()
    assert r["status"] == "no_customers" and "customers.csv" in r["message"]
    assert r["plans"] == [] and r["table"] is None and r["comparison"] is None and r["chart"] is None
    assert r["warnings"]


def test_without_holdings_and_loans(bank: Database):
    with bank.connection() as conn, conn.transaction():
        conn.execute("DELETE FROM holdings")
        only_loans = simulate(conn, [plan(), plan("存款", category="deposit", rate=2.2, ftp_rate=2.3,
                                                  amount_min=1000, amount_max=50_000)], REQ, key=KEY)
        conn.execute("DELETE FROM loans")
        neither = simulate(conn, [plan()], REQ, key=KEY)
        raise psycopg.Rollback()
    loan, deposit = only_loans["plans"]
    assert loan["totals"]["eligible"] == 2  # C0001 and C0006: capacity from their loans; C0003 is risky
    assert loan["excluded"]["无资产及借贷记录"] == 3
    assert any("holdings" in w for w in only_loans["warnings"])
    assert deposit["totals"]["eligible"] == 6  # every retail customer: deposits cannot be told
    assert any("holdings.csv" in a for a in deposit["assumptions"])
    p = neither["plans"][0]
    assert neither["status"] == "ok" and p["totals"]["eligible"] == 6
    assert any("holdings.csv" in w and "loans.csv" in w for w in neither["warnings"])
    assert all(10_000 <= row["amount"] <= 300_000 and row["capacity_band"] == "未知" for row in p["sample"])


def test_missing_numbers_are_not_invented(bank: Database):
    r = run(bank, [plan(ftp_rate=None), plan("无竞品", competitor_rate=None), plan("无期限", term_months=None)])
    no_ftp, no_comp, no_term = r["plans"]
    assert not no_ftp["simulated"] and "totals" not in no_ftp and any("FTP" in w for w in no_ftp["warnings"])
    assert no_comp["simulated"] and no_comp["rate_gap"] == 0 and any("竞品" in w for w in no_comp["warnings"])
    assert no_term["term_months"] == 12 and any("期限" in w for w in no_term["warnings"])
    assert r["table"]["rows"][0]["values"][0]["display"] == "—"
    empty = run(bank, [])
    assert empty["status"] == "no_plans" and empty["table"] is None
