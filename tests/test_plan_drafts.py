"""Element-plan drafts and their export: saving in the 创设 status with unique codes, who may
create and read them, listing, comparing, and Markdown / DOCX exports that reopen with the content.

A hand-made design (shaped like `tools.plans.design_plans`' result) keeps these tests independent
of the design steps; tests/test_plan_route.py runs the real pipeline end to end."""

from __future__ import annotations

import io
import re
import threading
from typing import Any

import pytest

from core.access import LOCAL_ADMIN, Principal
from core.db import Database
from tools.plan_drafts import (
    DraftForbidden,
    DraftNotFound,
    compare_drafts,
    draft_name,
    get_draft,
    list_drafts,
    save_draft,
)
from tools.plan_export import build_document, export_draft, to_docx, to_markdown
from tools.plan_types import ELEMENT_KEYS, PLAN_NAMES, Plan, PlanElement, Requirement

DESIGNER = Principal(user_id="designer01", name="钱进", role="designer", branch_code="H000")
RM = Principal(user_id="rm_qd", name="张伟", role="rm", branch_code="B100", branch_name="青岛分行")
RISK = Principal(user_id="risk01", name="孙莉", role="risk", branch_code="H000")
TEXT = "面向小微企业主的3年期经营贷，额度最高300万，利率不高于4.5%，线上办理"

_VALUES = {  # plan → element → (value, unit)
    "保守": {"rate_min": ("4.35", "%"), "rate_max": ("4.35", "%"), "amount_max": ("1000000", "元")},
    "均衡": {"rate_min": ("4.10", "%"), "rate_max": ("4.10", "%"), "amount_max": ("2000000", "元")},
    "进取": {"rate_min": ("3.85", "%"), "rate_max": ("3.85", "%"), "amount_max": ("3000000", "元")},
}
_COMMON = {
    "term_min_months": ("36", "月"), "term_max_months": ("36", "月"), "amount_min": ("50000", "元"),
    "repayment": ("等额本息", ""), "collateral": ("抵押", ""), "target_customers": ("小微企业主", ""),
    "eligibility": ("经营满2年，无不良记录", ""), "channels": ("线上", ""), "fee": ("无", ""),
    "risk_level": ("R2", ""), "early_repayment": ("满6个月后可提前还款", ""), "min_amount": ("50000", "元"),
}


def num(value: float | None, display: str, source: str) -> dict[str, Any]:
    return {"value": value, "display": display, "source": source}


def _part(key: str, label: str, value: float, source: str, assumption: bool = False) -> dict[str, Any]:
    return {"key": key, "label": label, "value": value, "display": f"{value:.2f}%", "source": source,
            "assumption": assumption}


PRICING = {  # the shape of tools.plans.price
    "category": "loan", "term_months": 36, "collateral": "抵押", "segment": "inclusive", "kind": "loan_floor",
    "parts": [_part("funds_cost", "资金成本（FTP）", 2.0, "FTP"), _part("expected_loss", "预期损失", 0.8, "相似产品"),
              _part("operating_cost", "运营成本", 0.6, "相似产品"),
              _part("capital_cost", "资本成本", 0.3, "资本成本按 8% 资本占用 × 10% 回报要求", True),
              _part("margin", "目标利润", 0.2, "定价参数")],
    "formula": "定价底线 = 资金成本（FTP） + 预期损失 + 运营成本 + 资本成本 + 目标利润",
    "floor": {"value": 3.9, "display": "3.90%", "source": "2.00% + 0.80% + 0.60% + 0.30% + 0.20%"},
    "assumptions": ["资本成本按 8% 资本占用 × 10% 回报要求"], "warnings": [],
}


def sample_design(simulate: bool = True, product_type: str | None = "小微经营贷") -> dict[str, Any]:
    """A design as `design_plans` returns it, every number with a display string."""
    req = Requirement(
        text=TEXT, category="loan", segment="inclusive", purpose="经营", product_type=product_type,
        term_min_months=36, term_max_months=36, amount_max=3_000_000.0, rate_max=4.5, channels=["线上"],
        target_customers="小微企业主", filled={"collateral": "相似产品 抵押经营贷（SL004）"},
        conflicts=["额度最高300万与信用方式不兼容：按抵押设计"], notes=["“3年期”读作 36 个月"],
    )
    plans = []
    for n, name in enumerate(PLAN_NAMES):
        values = {**_COMMON, **_VALUES[name]}
        elements = [PlanElement(k, values[k][0], values[k][1], reason=f"{name}方案的{k}取值理由",
                                sources=[f"来源-{k}"]) for k in ELEMENT_KEYS]
        rate = float(values["rate_min"][0])
        plans.append(Plan(
            name=name, elements=elements,
            terms={"name": name, "category": "loan", "segment": "inclusive", "rate": rate, "term_months": 36,
                   "amount_min": 50000.0, "amount_max": float(values["amount_max"][0]), "collateral": "抵押",
                   "target_customers": "小微企业主", "channels": ["线上"], "ftp_rate": 2.0,
                   "expected_loss_rate": 0.8, "opex_rate": 0.6, "capital_cost_rate": 0.5, "competitor_rate": 4.2},
            pricing={**PRICING, "rate": num(rate, f"{rate:.2f}%", "本方案报价"),
                     "headroom": num(round(rate - 3.9, 2), f"{rate - 3.9:+.2f} 个百分点", "高于定价底线")},
            meets_constraints=n < 2, unmet=[] if n < 2 else ["额度最高300万需抵押，线上无法全流程办理"],
        ).as_dict())
    simulation = {  # the shape of tools.sandbox.simulate
        "status": "ok", "seed": 20261123, "months": 12, "scope": "全行",
        "snapshot": {"customers": 120, "customers_display": "120 户", "holdings_month": "2026-10"},
        "plans": [{"name": n, "simulated": True, "assumptions": [f"{n}执行利率与竞品比较"], "warnings": [],
                   "sample": [{"pseudonym": "客户-0A1B2C3D", "segment": "普惠小微", "branch": "S101",
                               "branch_name": "市南支行", "capacity_band": "20万–100万元", "start_month": 2,
                               "amount": 300000.0, "amount_display": "30.00 万元"}]} for n in PLAN_NAMES],
        "comparison": {"type": "comparison", "title": "方案沙盘对比（12个月）", "columns": ["指标", *PLAN_NAMES],
                       "rows": [["合格客户数", "120 户", "120 户", "120 户"],
                                ["净贡献", "12.30 万元", "15.60 万元", "9.80 万元"]]},
        "chart": {"type": "chart", "title": "各方案月末余额（12个月）", "x": ["第1月", "第2月"],
                  "series": [{"name": n, "values": [1.0, 2.0]} for n in PLAN_NAMES], "unit": "万元"},
        "assumptions": ["办理概率按与竞品利差估计", "不考虑提前还款"],
        "warnings": ["本行未导入贷款明细（loans.csv）：无法按五级分类和逾期排除风险客户"],
    } if simulate else None
    return {
        "requirement": req.as_dict(),
        "evidence": {  # the shape of tools.plan_evidence.gather_evidence
            "category": "loan", "segment": "inclusive", "scope": "全行",
            "window": {"start": "2026-08", "end": "2026-10", "months": 3, "label": "2026年8月至10月"},
            "pricing_term_months": 36,
            "similar_products": [{
                "code": "SL004", "name": "抵押经营贷", "segment": "inclusive", "segment_name": "普惠小微",
                "status": "operating", "status_name": "运营", "score": 82.5, "score_display": "82.5",
                "why": ["期限覆盖36个月", "担保方式同为抵押"], "elements": {},
                "performance": {"balance": num(5.2e7, "5,200.00 万元", "管理会计事实 2026年8月至10月，全行，抵押经营贷（SL004）"),
                                "npl_rate": num(1.2, "1.20%", "管理会计事实"),
                                "net_contribution": num(3.1e5, "31.00 万元", "管理会计事实")},
            }],
            "similar_total": {"balance": num(5.2e7, "5,200.00 万元", "相似产品合计"), "npl_rate": num(1.2, "1.20%", "相似产品合计")},
            "ftp": {"as_of": "2026-10-31", "term_months": 36, "rate": 2.0, "display": "2.00%",
                    "source": "FTP 曲线 2026-10-31 36个月"},
            "competitors": {
                "product_type": "小微经营贷", "wanted": "小微经营贷",
                "match": {"similarity": 1.0, "quality": "高", "term_exact": True, "display": "产品类型匹配度高（1.00）"},
                "banks": [{"bank": "某商业银行", "as_of": "2026-10-31", "product_type": "小微经营贷", "term_months": 36,
                           "rate": 4.2, "display": "4.20%", "notes": ""}],
                "min": num(4.2, "4.20%", "竞品利率"), "median": num(4.2, "4.20%", "竞品利率"), "max": num(4.2, "4.20%", "竞品利率"),
            },
            "risk": {"npl_rate": num(1.2, "1.20%", "相似产品"), "pd": num(1.2, "1.20%", "相似产品不良率"),
                     "lgd": num(30.0, "30%", "违约损失率假设表：抵押类 30%"),
                     "expected_loss_rate": num(0.36, "0.36%", "预期损失率 = PD × LGD"), "loans": None},
            "compliance": [{"chunk_id": 1, "title": "小微企业贷款管理办法", "heading": "第三章 > 贷款用途",
                            "snippet": "贷款用途应明确合法", "doc_type": "compliance"}],
            "warnings": ["知识库未检索到普惠金融专项文件"],
            "assumptions": ["违约损失率按抵押类 30%"],
        },
        "pricing": PRICING,
        "plans": plans,
        "simulation": simulation,
        "warnings": ["额度最高300万与信用方式不兼容：按抵押设计", "未提供还款方式，按等额本息设计"],
        "seconds": 0.42,
    }


@pytest.fixture()
def drafts_db(loaded_db: Database) -> Database:
    with loaded_db.connection() as conn:
        conn.execute("TRUNCATE plan_drafts RESTART IDENTITY")
    return loaded_db


def test_save_stores_the_design_in_the_designing_status_with_a_dated_code(drafts_db: Database):
    design = sample_design()
    with drafts_db.connection() as conn:
        saved = save_draft(conn, DESIGNER, TEXT, design, 7)
        again = save_draft(conn, DESIGNER, TEXT, design, 7)
    assert re.fullmatch(r"DRAFT-\d{8}-001", saved["code"]) and again["code"].endswith("-002")
    assert saved["code"][:15] == again["code"][:15]
    assert saved["name"] == "小微经营贷（草案）" and saved["status"] == "designing" and saved["status_name"] == "创设"
    assert saved["plans"] == list(PLAN_NAMES)
    with drafts_db.connection() as conn:
        row = conn.execute("SELECT * FROM plan_drafts WHERE code = %(c)s", {"c": saved["code"]}).fetchone()
        assert row is not None
        assert row["status"] == "designing" and row["created_by"] == "designer01" and row["seed"] == 7
        assert row["category"] == "loan" and row["segment"] == "inclusive" and row["request"] == TEXT
        assert row["requirement"] == design["requirement"] and row["plans"] == design["plans"]
        assert row["simulation"] == design["simulation"]
        assert row["evidence"]["evidence"] == design["evidence"] and row["evidence"]["pricing"] == design["pricing"]
        draft = get_draft(conn, DESIGNER, saved["code"].lower())
    for key in ("requirement", "evidence", "pricing", "plans", "simulation", "warnings"):
        assert draft[key] == design[key], key
    assert draft["created_by_name"] == "钱进" and draft["seed"] == 7


def test_codes_stay_unique_when_designers_save_at_the_same_time(drafts_db: Database):
    design = sample_design(simulate=False)
    codes: list[str] = []
    errors: list[BaseException] = []

    def save() -> None:
        try:
            with drafts_db.connection() as conn:
                codes.append(save_draft(conn, DESIGNER, TEXT, design, None)["code"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(int(c.rsplit("-", 1)[1]) for c in codes) == [1, 2, 3, 4, 5, 6]
    with drafts_db.connection() as conn:
        row = conn.execute("SELECT count(*) AS n, count(simulation) AS s FROM plan_drafts").fetchone()
    assert row == {"n": 6, "s": 0}


def test_only_designers_and_admins_create_and_read_drafts(drafts_db: Database):
    design = sample_design()
    with drafts_db.connection() as conn:
        with pytest.raises(DraftForbidden, match="客户经理.*产品经理和管理员"):
            save_draft(conn, RM, TEXT, design, 1)
        assert conn.execute("SELECT count(*) AS n FROM plan_drafts").fetchone() == {"n": 0}
        saved = save_draft(conn, LOCAL_ADMIN, TEXT, design, 1)
        for who in (RM, RISK):
            with pytest.raises(DraftForbidden):
                list_drafts(conn, who)
            with pytest.raises(DraftForbidden):
                get_draft(conn, who, saved["code"])
            with pytest.raises(DraftForbidden):
                compare_drafts(conn, who, [saved["code"]])
        # Designers see every draft of the bank, an admin's too.
        listing = list_drafts(conn, DESIGNER)
    assert listing["total"] == 1 and listing["drafts"][0]["code"] == saved["code"]
    assert listing["drafts"][0]["created_by"] == "local-admin" and listing["drafts"][0]["plan_names"] == list(PLAN_NAMES)


def test_unknown_draft_is_a_clear_error(drafts_db: Database):
    with drafts_db.connection() as conn, pytest.raises(DraftNotFound, match="DRAFT-20990101-001"):
        get_draft(conn, DESIGNER, "DRAFT-20990101-001")


def test_list_is_newest_first(drafts_db: Database):
    with drafts_db.connection() as conn:
        first = save_draft(conn, DESIGNER, TEXT, sample_design(), 1)
        second = save_draft(conn, DESIGNER, "三年期大额存单", sample_design(product_type="三年期大额存单"), 1)
        listing = list_drafts(conn, DESIGNER)
    assert [d["code"] for d in listing["drafts"]] == [second["code"], first["code"]]
    assert listing["drafts"][0]["name"] == "三年期大额存单（草案）"


def test_draft_name_without_a_product_type():
    assert draft_name({"purpose": "经营", "category": "loan"}) == "经营贷（草案）"
    assert draft_name({"category": "deposit"}) == "存款（草案）"
    assert draft_name({}) == "新产品（草案）"


def test_compare_puts_plans_of_several_drafts_side_by_side(drafts_db: Database):
    with drafts_db.connection() as conn:
        a = save_draft(conn, DESIGNER, TEXT, sample_design(), 1)
        b = save_draft(conn, DESIGNER, TEXT, sample_design(simulate=False), 1)
        one_draft = compare_drafts(conn, DESIGNER, [a["code"]])
        both = compare_drafts(conn, DESIGNER, [a["code"], b["code"]])
        with pytest.raises(DraftNotFound):
            compare_drafts(conn, DESIGNER, [a["code"], "DRAFT-20990101-009"])
    assert one_draft["columns"] == ["要素", *PLAN_NAMES]
    rows = {r[0]: r[1:] for r in one_draft["rows"]}
    assert rows["最高利率"] == ["4.35%", "4.10%", "3.85%"]
    assert rows["满足设计约束"][0] == "是" and rows["满足设计约束"][2].startswith("否：额度最高300万")
    assert rows["净贡献"] == ["12.30 万元", "15.60 万元", "9.80 万元"]
    assert both["columns"][1] == f"{a['code']}·保守" and len(both["columns"]) == 7
    both_rows = {r[0]: r[1:] for r in both["rows"]}
    assert both_rows["净贡献"] == ["12.30 万元", "15.60 万元", "9.80 万元", "—", "—", "—"]
    assert both["block"]["type"] == "comparison" and both["block"]["rows"] == both["rows"]


# --- export -----------------------------------------------------------------------------------------


def _saved_draft(db: Database) -> dict[str, Any]:
    with db.connection() as conn:
        saved = save_draft(conn, DESIGNER, TEXT, sample_design(), 20261123)
        return get_draft(conn, DESIGNER, saved["code"])


def test_markdown_export_has_every_section_and_the_design_values(drafts_db: Database):
    draft = _saved_draft(drafts_db)
    md = to_markdown(draft)
    assert md.startswith(f"# 小微经营贷（草案） {draft['code']}")
    for section in ("一、需求", "二、依据", "三、定价", "四、方案", "五、A/B 沙盘对比", "六、假设", "七、合规提示", "八、提示"):
        assert f"## {section}" in md, section
    assert TEXT in md and "相似产品 抵押经营贷（SL004）" in md and "额度最高300万与信用方式不兼容" in md
    assert "| 利率上限 | 4.5% | 需求原文 |" in md and "| 金额 | 最高 300.00 万元 | 需求原文 |" in md
    # evidence with sources, the floor's parts, each plan's elements with reason and source
    assert "SL004" in md and "1.20%" in md and "FTP 曲线 2026-10-31 36个月" in md and "4.20%" in md
    assert "| 资金成本（FTP） | 2.00% | FTP | 数据 |" in md and "定价底线：3.90%" in md
    assert "定价：报价 4.10%；定价底线 3.90%；高于定价底线 +0.20 个百分点" in md
    assert "| 客户-0A1B2C3D | 普惠小微 | 市南支行 | 20万–100万元 | 第2月 | 30.00 万元 |" in md
    assert "均衡：均衡执行利率与竞品比较" in md and "无法按五级分类和逾期排除风险客户" in md
    assert "### 方案：均衡" in md
    assert "| 最高利率 | 4.10% | 均衡方案的rate_max取值理由 | 来源-rate_max |" in md
    assert "| 最高利率 | 4.35% | 4.10% | 3.85% |" in md
    assert "| 净贡献 | 12.30 万元 | 15.60 万元 | 9.80 万元 |" in md
    assert "办理概率按与竞品利差估计" in md and "资本成本按 8% 资本占用" in md
    assert "《小微企业贷款管理办法 › 贷款用途》：贷款用途应明确合法" in md and "知识库未检索到普惠金融专项文件" in md
    assert "违约损失率按抵押类 30%" in md and "预期损失率（EL）：0.36%（预期损失率 = PD × LGD）" in md
    assert "| SL004 | 抵押经营贷 | 普惠小微 | 运营 | 82.5 | 5,200.00 万元 | 1.20% | 31.00 万元 | 期限覆盖36个月；担保方式同为抵押 |" in md
    # every table row has as many cells as its header
    for block in re.findall(r"(?:^\|.*\|\n)+", md, flags=re.M):
        widths = {line.count("|") for line in block.strip().splitlines()}
        assert len(widths) == 1, block


def test_docx_export_reopens_with_the_same_tables_and_text(drafts_db: Database):
    import docx

    draft = _saved_draft(drafts_db)
    data = to_docx(draft)
    d = docx.Document(io.BytesIO(data))
    text = "\n".join(p.text for p in d.paragraphs)
    assert d.core_properties.title.startswith("小微经营贷（草案）")
    assert "一、需求" in text and "七、合规提示" in text and TEXT in text
    assert "最高利率：均衡方案的rate_max取值理由" in text  # a paragraph per reason
    tables = [[[c.text for c in row.cells] for row in t.rows] for t in d.tables]
    overview = next(t for t in tables if t[0] == ["要素", *PLAN_NAMES])
    assert ["最高利率", "4.35%", "4.10%", "3.85%"] in overview
    ab = next(t for t in tables if t[0] == ["指标", *PLAN_NAMES])
    assert ["净贡献", "12.30 万元", "15.60 万元", "9.80 万元"] in ab
    doc = build_document(draft)
    assert len(d.tables) == sum(1 for kind, _ in doc.blocks if kind in ("table", "elements"))


def test_export_names_and_formats(drafts_db: Database):
    draft = _saved_draft(drafts_db)
    content, name, media = export_draft(draft, "md")
    assert name == f"{draft['code']}.md" and media.startswith("text/markdown") and content.decode().startswith("# ")
    content, name, media = export_draft(draft, "DOCX")
    assert name.endswith(".docx") and content[:2] == b"PK" and "wordprocessingml" in media
    with pytest.raises(Exception, match="md 或 docx"):
        export_draft(draft, "pdf")


def test_export_of_a_design_without_simulation_says_so():
    md = to_markdown(sample_design(simulate=False))
    assert "本草案未做沙盘模拟" in md and "资本成本按 8% 资本占用" in md
