"""Pricing, element plans and the design orchestrator.

Floors and ceilings are recomputed here by hand from the small bank's FTP curve and plain SQL over
metrics_monthly (never with tools.plans), rounded to the basis point the documented way.
"""

from __future__ import annotations

import inspect
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from core.access import load_principal
from core.db import Database
from core.errors import PuyiError
from tests.bankfactory import bank_rows, write_small_bank
from tests.conftest import Banks, one
from tools import plan_evidence, plans
from tools.context import ToolContext
from tools.plan_evidence import gather_evidence
from tools.plan_types import ELEMENT_KEYS, PLAN_NAMES, Requirement
from tools.plans import build_plans, design_plans, price

TERMS_KEYS = {"name", "category", "segment", "rate", "term_months", "amount_min", "amount_max", "collateral",
              "target_customers", "channels", "ftp_rate", "expected_loss_rate", "opex_rate", "capital_cost_rate",
              "competitor_rate"}


def bp(x: float) -> float:
    return float(Decimal(str(x)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _renamed(path: Path) -> Path:
    """The small bank with other names everywhere: products, competitors' product types, head office."""
    products = bank_rows("products.csv")
    for p in products:
        if p["code"] == "SL001":
            p.update(name="工薪信用消费贷", aliases="", description="为按月领薪的个人客户提供的线上信用消费贷款。")
        if p["code"] == "SL002":
            p.update(name="商户流水贷", aliases="", description="按经营流水核定额度的个体工商户和小微企业经营贷款。")
    competitors = [
        {"as_of": "2026-10-01", "bank": "北方银行", "product_type": "普惠经营性贷款", "term_months": "36", "rate": "3.85"},
        {"as_of": "2026-10-01", "bank": "南方银行", "product_type": "普惠经营性贷款", "term_months": "36", "rate": "4.05"},
        {"as_of": "2026-10-01", "bank": "南方银行", "product_type": "工薪族消费信贷", "term_months": "24", "rate": "3.30"},
    ]
    return write_small_bank(path, rows={"products.csv": products, "competitor_rates.csv": competitors},
                            head_office="H900")


@pytest.fixture(scope="module")
def banks(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Banks:
    return Banks(db, tmp_path_factory.mktemp("plans"), {
        "small": write_small_bank,
        "bare": lambda path: write_small_bank(path, drop=["ftp_curve.csv", "competitor_rates.csv"]),
        "renamed": _renamed,
    })


@pytest.fixture()
def small(banks: Banks) -> Database:
    return banks.use("small")


def ctx_for(conn: Any, user: str = "designer01") -> ToolContext:
    return ToolContext(conn=conn, principal=load_principal(conn, user))


def design(db: Database, req: Requirement, user: str = "designer01") -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    with db.connection() as conn:
        ev = gather_evidence(ctx_for(conn, user), req)
    pricing = price(req, ev)
    return ev, pricing, build_plans(req, ev)


def consumer_loan(**kw: Any) -> Requirement:
    base: dict[str, Any] = dict(text="面向代发工资客户的2年期个人消费贷，手机银行办理", category="loan", segment="retail",
                                purpose="消费", product_type="个人消费贷", term_max_months=24, collateral="信用",
                                channels=["手机银行"], target_customers="代发工资客户")
    return Requirement(**{**base, **kw})


def term_deposit(**kw: Any) -> Requirement:
    base: dict[str, Any] = dict(text="面向个人客户的三年期定期存款", category="deposit", segment="retail",
                                product_type="三年期定期存款", term_min_months=36, term_max_months=36,
                                target_customers="个人客户")
    return Requirement(**{**base, **kw})


def expected_loan_floor(conn: Any) -> dict[str, float]:
    """The floor of a 24-month retail 信用 loan on the small bank, by hand: the only similar product
    is SL001 (the one live retail loan)."""
    facts = one(conn, """
        SELECT 100.0 * sum(npl_balance) FILTER (WHERE month = '2026-10-01')
                     / sum(balance) FILTER (WHERE month = '2026-10-01') AS npl,
               1200.0 * sum(opex) / sum(avg_balance) AS opex
        FROM metrics_monthly WHERE product_code = 'SL001'""")
    parts = {
        "funds_cost": bp(1.95 + (2.30 - 1.95) * (24 - 12) / (36 - 12)),  # FTP 12m 1.95 %, 36m 2.30 %
        "expected_loss": bp(float(facts["npl"]) * 0.60),  # PD = NPL rate, LGD 信用 60 %
        "operating_cost": bp(float(facts["opex"])),
        "capital_cost": bp(0.75 * 10.5 * 10.0 / 100.0),  # retail RW 75 % × CAR 10.5 % × COE 10 %
        "margin": 0.30,
    }
    parts["floor"] = bp(sum(parts.values()))
    return parts


# --- pricing -------------------------------------------------------------------------------------------

def test_loan_floor_arithmetic(small: Database):
    req = consumer_loan()
    ev, pricing, _ = design(small, req)
    with small.connection() as conn:
        want = expected_loan_floor(conn)
    assert pricing["kind"] == "loan_floor"
    got = {p["key"]: p["value"] for p in pricing["parts"]}
    for key in ("funds_cost", "expected_loss", "operating_cost", "capital_cost", "margin"):
        assert got[key] == want[key], key
    assert got == {k: v for k, v in want.items() if k != "floor"}
    assert pricing["floor"]["value"] == want["floor"] and pricing["floor"]["display"] == f"{want['floor']:.2f}%"
    assert (want["funds_cost"], want["capital_cost"]) == (2.13, 0.79)
    for p in pricing["parts"]:
        assert p["display"] == f"{p['value']:.2f}%" and p["source"] and p["assumption"] is False
    assert pricing["floor"]["source"] == " + ".join(f"{v:.2f}%" for k, v in want.items() if k != "floor")


def test_secured_plans_price_their_own_collateral(small: Database):
    """A plan with stronger collateral carries a lower expected loss and capital cost."""
    req = consumer_loan(collateral=None)
    req.collateral, req.filled["collateral"] = "信用", "从相似产品 测试 取得"  # filled, not the designer's
    ev, pricing, built = design(small, req)
    by_name = {p.name: p for p in built}
    assert by_name["保守"].terms["collateral"] == "保证" and by_name["均衡"].terms["collateral"] == "信用"
    assert by_name["进取"].terms["collateral"] == "信用"
    pd = ev["risk"]["pd"]["value"]
    assert by_name["保守"].terms["expected_loss_rate"] == bp(pd * 0.45)
    assert by_name["均衡"].terms["expected_loss_rate"] == bp(pd * 0.60)
    secured = price(req, ev, collateral="房产抵押")
    parts = {p["key"]: p["value"] for p in secured["parts"]}
    assert parts["capital_cost"] == bp(0.50 * 10.5 * 10.0 / 100.0) and parts["expected_loss"] == bp(pd * 0.30)


def test_deposit_ceiling(small: Database):
    req = term_deposit()
    ev, pricing, built = design(small, req)
    with small.connection() as conn:
        opex = one(conn, "SELECT 1200.0 * sum(opex) / sum(avg_balance) AS r FROM metrics_monthly"
                         " WHERE product_code IN ('SD001', 'SD002')")
    ceiling = bp(2.30 - bp(float(opex["r"])) - 0.10)
    assert [p["code"] for p in ev["similar_products"]] == ["SD001", "SD002"]
    assert pricing["kind"] == "deposit_ceiling" and pricing["ceiling"]["value"] == ceiling
    assert [p["key"] for p in pricing["parts"]] == ["funds_cost", "operating_cost", "margin"]
    rates = {p.name: p.terms["rate"] for p in built}
    # 进取 pays the most the bank can afford; 保守 the least; competitors (丙农商行 2.05 %) are above.
    assert rates["进取"] == plans.floor_step(ceiling) and rates["均衡"] == plans.floor_step(ceiling)
    assert rates["保守"] == plans.floor_step(ceiling - plans.CONSERVATIVE_SPREAD)
    assert all(p.meets_constraints for p in built)
    elements = {e.element: e for e in built[0].elements}
    assert elements["collateral"].value == "不适用" and elements["repayment"].value == "不适用"
    assert elements["amount_min"].value == "不适用" and elements["min_amount"].value == "50"  # SD001 起存 50 元
    assert built[0].terms["expected_loss_rate"] == 0.0 and built[0].terms["competitor_rate"] == 2.05


def test_deposit_floor_above_the_ceiling_is_unmet(small: Database):
    req = term_deposit(rate_min=2.5)
    _, pricing, built = design(small, req)
    ceiling = pricing["ceiling"]["value"]
    for plan in built:
        assert not plan.meets_constraints and plan.terms["rate"] == ceiling
        assert "2.50%" in plan.unmet[0] and pricing["ceiling"]["display"] in plan.unmet[0]
    capped = design(small, term_deposit(rate_max=1.20))[2]
    assert all(p.terms["rate"] <= 1.20 and p.meets_constraints for p in capped)


# --- plans ---------------------------------------------------------------------------------------------

def test_every_plan_has_every_element_with_a_reason(small: Database):
    reqs = [consumer_loan(), term_deposit(),
            Requirement(text="面向商户的聚合收款服务", category="payment", segment="corporate", product_type="收单")]
    for req in reqs:
        _, _, built = design(small, req)
        assert [p.name for p in built] == list(PLAN_NAMES)
        for plan in built:
            assert [e.element for e in plan.elements] == list(ELEMENT_KEYS), (req.category, plan.name)
            for e in plan.elements:
                assert e.value and e.reason, (req.category, plan.name, e.element)
                if e.value == "不适用":
                    assert len(e.reason) > 4
            assert set(plan.terms) == TERMS_KEYS
            assert plan.as_dict()["elements"][0]["element"] == "rate_min"
    loan = design(small, consumer_loan())[2][0]
    el = {e.element: e for e in loan.elements}
    assert el["min_amount"].value == "不适用" and el["risk_level"].value == "不适用"
    assert el["rate_min"].unit == "%" and el["rate_min"].sources and "定价底线" in el["rate_min"].sources[0]


def test_loan_plans_positioned_around_the_floor(small: Database):
    req = consumer_loan()
    ev, pricing, built = design(small, req)
    floor = pricing["floor"]["value"]
    rates = {p.name: p.terms["rate"] for p in built}
    assert rates["进取"] == plans.ceil_step(floor)
    assert rates["均衡"] == plans.ceil_step(max(floor, ev["competitors"]["median"]["value"]))
    assert rates["保守"] == plans.ceil_step(max(floor + plans.CONSERVATIVE_SPREAD, ev["competitors"]["max"]["value"]))
    assert rates["保守"] >= rates["均衡"] >= rates["进取"] >= floor
    for plan in built:
        assert plan.meets_constraints and plan.unmet == []
        assert plan.pricing["floor"]["value"] == floor and plan.pricing["rate"]["value"] == plan.terms["rate"]
        assert plan.pricing["headroom"]["value"] == pytest.approx(plan.terms["rate"] - floor)
        assert plan.terms["ftp_rate"] == 2.13 and plan.terms["capital_cost_rate"] == 0.79
        assert plan.terms["competitor_rate"] == ev["competitors"]["median"]["value"]
        el = {e.element: e for e in plan.elements}
        assert float(el["rate_max"].value) > float(el["rate_min"].value)


def test_ceiling_below_the_floor_prices_at_the_floor_and_says_so(small: Database):
    req = consumer_loan(rate_max=3.0)
    _, pricing, built = design(small, req)
    floor = pricing["floor"]
    assert floor["value"] > 3.0
    for plan in built:
        assert not plan.meets_constraints and plan.terms["rate"] == floor["value"]
        assert len(plan.unmet) == 1 and "3.00%" in plan.unmet[0] and floor["display"] in plan.unmet[0]
        el = {e.element: e for e in plan.elements}
        assert float(el["rate_max"].value) == floor["value"]  # no band above a ceiling that cannot hold


def test_ceiling_above_the_floor_caps_the_plans(small: Database):
    _, pricing, built = design(small, consumer_loan(rate_max=4.5))
    assert pricing["floor"]["value"] < 4.5
    for plan in built:
        el = {e.element: e for e in plan.elements}
        assert plan.meets_constraints and plan.terms["rate"] <= 4.5 and float(el["rate_max"].value) <= 4.5
    raised = design(small, consumer_loan(rate_min=5.0))[2]
    assert all(p.terms["rate"] >= 5.0 and p.meets_constraints for p in raised)
    contradictory = design(small, consumer_loan(rate_min=5.0, rate_max=4.5))[2]
    assert all(not p.meets_constraints and "矛盾" in p.unmet[0] for p in contradictory)


def test_amount_and_term_limits_hold(small: Database):
    req = consumer_loan(amount_min=20_000.0, amount_max=200_000.0)
    _, _, built = design(small, req)
    amounts = {p.name: (p.terms["amount_min"], p.terms["amount_max"]) for p in built}
    assert amounts == {"保守": (20_000.0, 100_000.0), "均衡": (20_000.0, 200_000.0), "进取": (20_000.0, 200_000.0)}
    for plan in built:
        el = {e.element: e for e in plan.elements}
        assert el["term_max_months"].value == "24" and plan.terms["term_months"] == 24
        assert int(el["term_min_months"].value) <= 24 and plan.meets_constraints
        assert el["amount_max"].unit == "元" and float(el["amount_max"].value) <= 200_000
        assert "手机银行" in plan.terms["channels"] and el["collateral"].value == "信用"
    tiny = design(small, consumer_loan(amount_max=5_000.0))[2]
    for plan in tiny:  # SL001 lends from 10000: the filled minimum may not pass the designer's maximum
        assert plan.terms["amount_min"] <= plan.terms["amount_max"] <= 5_000.0


def test_filled_items_are_defaults_not_constraints(small: Database):
    req = consumer_loan(term_max_months=None, collateral=None, channels=[])
    _, _, built = design(small, req)
    assert req.filled["amount_max"] == "从相似产品 薪易快贷（SL001）取得"
    amounts = {p.name: p.terms["amount_max"] for p in built}
    assert amounts == {"保守": 150_000.0, "均衡": 300_000.0, "进取": 450_000.0}
    assert {p.name: p.terms["amount_min"] for p in built}["进取"] == 5_000.0
    assert all(p.meets_constraints for p in built)
    el = {e.element: e for e in built[1].elements}
    assert "薪易快贷" in el["amount_max"].reason + " ".join(el["amount_max"].sources)


def test_missing_optional_files(banks: Banks):
    db = banks.use("bare")
    req = consumer_loan()
    ev, pricing, built = design(db, req)
    with db.connection() as conn:
        funds = one(conn, "SELECT 1200.0 * sum(interest_expense) / sum(avg_balance) AS r FROM metrics_monthly"
                          " WHERE product_code = 'SL001'")
    part = pricing["parts"][0]
    assert part["key"] == "funds_cost" and part["value"] == bp(float(funds["r"])) and "无FTP曲线" in part["source"]
    assert all(p.terms["competitor_rate"] is None for p in built)
    assert any("ftp_curve" in w for w in ev["warnings"]) and any("competitor_rates" in w for w in ev["warnings"])
    assert "无竞品利率" in built[1].elements[0].sources[1]


def test_defaults_when_nothing_is_known_are_labelled():
    req = Requirement(text="新的经营贷", category="loan", segment="inclusive", term_max_months=12)
    ev: dict[str, Any] = {"similar_products": [], "similar_total": None, "ftp": None, "competitors": None, "risk": None,
          "pricing_term_months": 12}
    pricing = price(req, ev)
    parts = {p["key"]: p for p in pricing["parts"]}
    assert parts["funds_cost"]["value"] == plans.DEFAULT_FTP_RATE and parts["funds_cost"]["assumption"]
    assert parts["operating_cost"]["value"] == plans.DEFAULT_OPEX_RATE["loan"] and parts["operating_cost"]["assumption"]
    assert parts["expected_loss"]["value"] == bp(plan_evidence.DEFAULT_PD * 0.60)
    assert parts["expected_loss"]["assumption"] and len(pricing["assumptions"]) == 3
    built = build_plans(req, ev)
    for plan in built:
        assert [e.element for e in plan.elements] == list(ELEMENT_KEYS) and all(e.reason for e in plan.elements)
        assert plan.terms["amount_max"] is None and plan.terms["competitor_rate"] is None


# --- the orchestrator ------------------------------------------------------------------------------------

TEXT = "面向代发工资客户的2年期个人消费贷，额度最高20万，利率不高于3%，手机银行办理"


def test_design_plans(small: Database):
    with small.connection() as conn:
        ctx = ctx_for(conn)
        result = design_plans(ctx, TEXT, simulate=False)
        again = design_plans(ctx, TEXT, simulate=False)
        simulated = design_plans(ctx, TEXT)
    assert set(result) == {"requirement", "evidence", "pricing", "plans", "simulation", "warnings", "seconds"}
    assert result["simulation"] is None and isinstance(result["seconds"], float)
    assert result["requirement"]["category"] == "loan" and len(result["plans"]) == 3
    assert all(not p["meets_constraints"] for p in result["plans"])  # 3 % is below the floor
    result.pop("seconds"), again.pop("seconds")
    assert result == again  # deterministic
    assert isinstance(simulated["simulation"], dict)


def test_design_plans_refuses_what_is_not_a_product_idea(small: Database):
    with small.connection() as conn:
        with pytest.raises(PuyiError, match="产品大类"):
            design_plans(ctx_for(conn), "今天天气怎么样", simulate=False)
        with pytest.raises(plans.PlanForbidden, match="产品经理"):
            design_plans(ctx_for(conn, "rm_qd"), TEXT, simulate=False)


# --- nothing depends on the demo bank ---------------------------------------------------------------------

def test_no_demo_names_in_the_code():
    import random

    from ingest import demo_business, demo_catalog

    source = inspect.getsource(plans) + inspect.getsource(plan_evidence)
    names = {s.name for s in demo_catalog.build_catalog(random.Random(0)).specs if len(s.name) >= 3}
    names |= set(demo_business._PEERS) | {t for t, *_ in demo_business._PEER_RATES}
    # Banking vocabulary that the demo also happens to use as a product name.
    generic = {"代发工资"}
    assert not sorted(n for n in names - generic if n in source)


def test_another_bank_with_other_names(banks: Banks):
    db = banks.use("renamed")
    req = Requirement(text="面向小微企业主的3年期经营贷，额度最高300万，线上办理", category="loan", segment="inclusive",
                      purpose="经营", product_type="小微经营贷", term_max_months=36, amount_max=3_000_000.0,
                      channels=["线上"], target_customers="小微企业主")
    ev, pricing, built = design(db, req)
    assert {p["name"] for p in ev["similar_products"]} == {"商户流水贷", "抵押经营贷"}
    assert ev["competitors"]["product_type"] == "普惠经营性贷款"
    assert ev["competitors"]["median"]["value"] == 3.95 and ev["competitors"]["match"]["term_exact"]
    assert pricing["kind"] == "loan_floor" and all(len(p.elements) == len(ELEMENT_KEYS) for p in built)
