"""A small but complete bank folder in the data-contract format, for tests.

The bank (head office H000) is written from the plain constants below, so every count and value
is known in advance: 7 branches, 7 users, 28 products over the four levels and five categories,
3 months (2026-08..2026-10) of metrics for the 8 live sellable products in the 4 sub-branches,
8 customers, holdings, 7 loans, an FTP curve, competitor rates, alert_rules.yaml and 4 documents
with a manifest.

Catalogue (sellable → cluster → base → atomic → subject):

    SD001 安心存定期, SD002 薪金活期宝   → CD01 → BD01 → AD01 → 201101, AD02 → 201102  (bundle)
    SL001 薪易快贷, SL002 税e快贷,
    SL009 老易贷 (retired)               → CL01 → BL01 → AL01 → 130101, AL02 → 501101  (bundle)
    SL004 抵押经营贷 (suspended)         → CL02 → BL02 → AL01, AL02
    SP001 聚合收款码                     → CP01 → BP01 → AP01 → 601101
    SI001 代销理财通                     → CI01 → BI01 → AI01 → 601201
    SM001 同业存单通                     → CM01 → BM01 → AM01 → 150101

SL001 and SL002 share the alias 快贷 (for ambiguity tests).
"""

from __future__ import annotations

import copy
import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

Row = dict[str, Any]

HEAD_OFFICE = "H000"

BRANCHES: list[Row] = [
    {"code": "H000", "name": "谱翼银行总行", "parent_code": "", "level": "head"},
    {"code": "B100", "name": "青岛分行", "parent_code": "H000", "level": "branch"},
    {"code": "S101", "name": "市南支行", "parent_code": "B100", "level": "sub_branch"},
    {"code": "S102", "name": "崂山支行", "parent_code": "B100", "level": "sub_branch"},
    {"code": "B200", "name": "济南分行", "parent_code": "H000", "level": "branch"},
    {"code": "S201", "name": "历下支行", "parent_code": "B200", "level": "sub_branch"},
    {"code": "S202", "name": "槐荫支行", "parent_code": "B200", "level": "sub_branch"},
]
SUB_BRANCHES = ["S101", "S102", "S201", "S202"]

USERS: list[Row] = [
    {"user_id": "admin01", "name": "赵敏", "role": "admin", "branch_code": "H000", "wecom_userid": ""},
    {"user_id": "designer01", "name": "钱进", "role": "designer", "branch_code": "H000", "wecom_userid": ""},
    {"user_id": "risk01", "name": "孙立", "role": "risk", "branch_code": "H000", "wecom_userid": "sunli"},
    {"user_id": "rm_qd", "name": "张伟", "role": "rm", "branch_code": "B100", "wecom_userid": "zhangwei"},
    {"user_id": "rm_sn", "name": "李娜", "role": "rm", "branch_code": "S101", "wecom_userid": ""},
    {"user_id": "rm_jn", "name": "王芳", "role": "rm", "branch_code": "B200", "wecom_userid": ""},
    {"user_id": "rm_lx", "name": "刘洋", "role": "rm", "branch_code": "S201", "wecom_userid": ""},
]


def _p(code: str, name: str, level: str, category: str, segment: str, status: str = "operating",
       owner: str = "", launch: str = "", retire: str = "", aliases: str = "", description: str = "") -> Row:
    return {
        "code": code, "name": name, "level": level, "category": category, "segment": segment,
        "status": status, "owner_dept": owner, "launch_date": launch, "retire_date": retire,
        "aliases": aliases, "description": description,
    }


PRODUCTS: list[Row] = [
    # sellable
    _p("SD001", "安心存定期", "sellable", "deposit", "retail", owner="零售金融部", launch="2019-03-01",
       aliases="安心存|定期安心存", description="面向个人客户的整存整取定期存款，期限三个月至五年。"),
    _p("SD002", "薪金活期宝", "sellable", "deposit", "retail", owner="零售金融部", launch="2020-06-18",
       aliases="活期宝", description="代发工资客户的活期储蓄账户，资金随用随取。"),
    _p("SL001", "薪易快贷", "sellable", "loan", "retail", owner="零售金融部", launch="2021-01-15",
       aliases="快贷|薪易贷", description="面向代发工资客户的线上个人信用消费贷款。"),
    _p("SL002", "税e快贷", "sellable", "loan", "inclusive", owner="普惠金融部", launch="2022-04-01",
       aliases="快贷|税易贷", description="依据企业纳税记录发放的小微企业主线上信用经营贷款。"),
    _p("SL004", "抵押经营贷", "sellable", "loan", "inclusive", status="suspended", owner="普惠金融部",
       launch="2018-09-01", aliases="房抵经营贷", description="以住房抵押的小微经营贷款，因不良率偏高停牌整改。"),
    _p("SL009", "老易贷", "sellable", "loan", "retail", status="retired", owner="零售金融部",
       launch="2015-05-01", retire="2024-12-31", description="已退出的早期个人信用贷款。"),
    _p("SP001", "聚合收款码", "sellable", "payment", "corporate", owner="交易银行部", launch="2021-08-08",
       aliases="收款码", description="商户一码受理微信、支付宝和银联云闪付的收单服务。"),
    _p("SI001", "代销理财通", "sellable", "intermediary", "retail", owner="财富管理部", launch="2020-01-06",
       aliases="理财通", description="代销理财子公司理财产品。"),
    _p("SM001", "同业存单通", "sellable", "market", "interbank", owner="金融市场部", launch="2019-11-11",
       description="面向同业机构的同业存单投资服务。"),
    # cluster
    _p("CD01", "储蓄存款类", "cluster", "deposit", "retail", owner="零售金融部"),
    _p("CL01", "个人及小微信用贷款类", "cluster", "loan", "all", owner="零售金融部"),
    _p("CL02", "抵押经营贷款类", "cluster", "loan", "inclusive", owner="普惠金融部"),
    _p("CP01", "收单结算类", "cluster", "payment", "corporate", owner="交易银行部"),
    _p("CI01", "代销业务类", "cluster", "intermediary", "retail", owner="财富管理部"),
    _p("CM01", "同业投资类", "cluster", "market", "interbank", owner="金融市场部"),
    # base
    _p("BD01", "个人储蓄存款", "base", "deposit", "retail", owner="零售金融部"),
    _p("BL01", "信用贷款", "base", "loan", "all", owner="零售金融部"),
    _p("BL02", "抵押贷款", "base", "loan", "inclusive", owner="普惠金融部"),
    _p("BP01", "特约商户收单", "base", "payment", "corporate", owner="交易银行部"),
    _p("BI01", "代销理财", "base", "intermediary", "retail", owner="财富管理部"),
    _p("BM01", "同业存单投资", "base", "market", "interbank", owner="金融市场部"),
    # atomic
    _p("AD01", "定期存款账户", "atomic", "deposit", "retail", owner="运营管理部"),
    _p("AD02", "活期存款账户", "atomic", "deposit", "retail", owner="运营管理部"),
    _p("AL01", "贷款本金", "atomic", "loan", "all", owner="运营管理部"),
    _p("AL02", "贷款利息", "atomic", "loan", "all", owner="运营管理部"),
    _p("AP01", "收单清算", "atomic", "payment", "corporate", owner="运营管理部"),
    _p("AI01", "代销手续费", "atomic", "intermediary", "retail", owner="运营管理部"),
    _p("AM01", "存单投资", "atomic", "market", "interbank", owner="运营管理部"),
]
# The eight sellable products that carry business data (all but the retired SL009).
LIVE_SELLABLE = ["SD001", "SD002", "SL001", "SL002", "SL004", "SP001", "SI001", "SM001"]

SUBJECTS: list[Row] = [
    {"code": "201101", "name": "个人定期存款"},
    {"code": "201102", "name": "个人活期存款"},
    {"code": "130101", "name": "个人短期贷款"},
    {"code": "501101", "name": "贷款利息收入"},
    {"code": "601101", "name": "结算手续费收入"},
    {"code": "601201", "name": "代理业务手续费收入"},
    {"code": "150101", "name": "同业存单投资"},
]

PRODUCT_LINKS: list[Row] = [
    {"from_code": f, "to_code": t}
    for f, t in [
        ("SD001", "CD01"), ("SD002", "CD01"), ("CD01", "BD01"),
        ("BD01", "AD01"), ("BD01", "AD02"), ("AD01", "201101"), ("AD02", "201102"),
        ("SL001", "CL01"), ("SL002", "CL01"), ("SL009", "CL01"), ("CL01", "BL01"),
        ("BL01", "AL01"), ("BL01", "AL02"), ("AL01", "130101"), ("AL02", "501101"),
        ("SL004", "CL02"), ("CL02", "BL02"), ("BL02", "AL01"), ("BL02", "AL02"),
        ("SP001", "CP01"), ("CP01", "BP01"), ("BP01", "AP01"), ("AP01", "601101"),
        ("SI001", "CI01"), ("CI01", "BI01"), ("BI01", "AI01"), ("AI01", "601201"),
        ("SM001", "CM01"), ("CM01", "BM01"), ("BM01", "AM01"), ("AM01", "150101"),
    ]
]

PRODUCT_ELEMENTS: list[Row] = [
    {"product_code": p, "element": e, "value": v, "unit": u}
    for p, e, v, u in [
        ("SD001", "rate_min", "1.35", "%"), ("SD001", "rate_max", "1.95", "%"),
        ("SD001", "term_min_months", "3", "月"), ("SD001", "term_max_months", "60", "月"),
        ("SD001", "min_amount", "50", "元"), ("SD001", "channels", "柜面|手机银行", ""),
        ("SD002", "rate_min", "0.10", "%"), ("SD002", "min_amount", "0", "元"),
        ("SL001", "rate_min", "3.45", "%"), ("SL001", "rate_max", "8.00", "%"),
        ("SL001", "term_min_months", "6", "月"), ("SL001", "term_max_months", "36", "月"),
        ("SL001", "amount_min", "10000", "元"), ("SL001", "amount_max", "300000", "元"),
        ("SL001", "repayment", "等额本息|按月付息到期还本", ""), ("SL001", "collateral", "信用", ""),
        ("SL001", "target_customers", "本行代发工资客户", ""), ("SL001", "early_repayment", "满3个月后可免费提前还款", ""),
        ("SL002", "rate_min", "3.80", "%"), ("SL002", "rate_max", "7.20", "%"),
        ("SL002", "term_max_months", "12", "月"), ("SL002", "amount_max", "1000000", "元"),
        ("SL002", "eligibility", "企业纳税等级B级及以上且连续纳税满2年", ""),
        ("SL004", "rate_min", "4.20", "%"), ("SL004", "term_max_months", "120", "月"),
        ("SL004", "collateral", "住房抵押", ""),
        ("SP001", "fee", "0.38", "%"), ("SP001", "channels", "线下扫码|线上收银台", ""),
        ("SI001", "risk_level", "R2", ""), ("SI001", "min_amount", "10000", "元"),
        ("SM001", "min_amount", "10000000", "元"),
    ]
]

SYSTEM_CODES: list[Row] = [
    {"system": s, "source_code": c, "product_code": p}
    for s, c, p in [
        ("core", "DP1001", "SD001"), ("core", "DP1002", "SD001"), ("core", "DP2001", "SD002"),
        ("credit", "XD0301", "SL001"), ("credit", "XD0302", "SL001"), ("credit", "XD0501", "SL002"),
        ("credit", "XD0701", "SL004"), ("core", "JS0101", "SP001"), ("wealth", "LC0001", "SI001"),
        ("core", "TY0001", "SM001"),
    ]
]

MONTHS = ["2026-08", "2026-09", "2026-10"]
# (balance, customers, rate of interest income, rate of interest expense, fee per customer, npl %, overdue %)
_METRIC_BASE: dict[str, tuple[int, int, float, float, float, float | None, float | None]] = {
    "SD001": (120_000_000, 3000, 0.0021, 0.0015, 0.0, None, None),
    "SD002": (60_000_000, 5000, 0.0018, 0.0002, 0.0, None, None),
    "SL001": (40_000_000, 800, 0.0045, 0.0020, 0.0, 0.8, 1.1),
    "SL002": (30_000_000, 300, 0.0040, 0.0019, 0.0, 1.6, 2.4),
    "SL004": (20_000_000, 100, 0.0042, 0.0021, 0.0, 4.2, 5.5),
    "SP001": (5_000_000, 400, 0.0, 0.0, 35.0, None, None),
    "SI001": (80_000_000, 1200, 0.0, 0.0, 60.0, None, None),
    "SM001": (200_000_000, 10, 0.0022, 0.0018, 0.0, None, None),
}
_BRANCH_FACTOR = {"S101": 1.0, "S102": 0.6, "S201": 0.8, "S202": 0.5}


def _money(x: float) -> str:
    return f"{x:.2f}"


def _metrics() -> list[Row]:
    rows: list[Row] = []
    for mi, month in enumerate(MONTHS):
        for code in LIVE_SELLABLE:
            bal0, cust0, ii, ie, fee, npl, od = _METRIC_BASE[code]
            for branch in SUB_BRANCHES:
                f = _BRANCH_FACTOR[branch] * (1 + 0.02 * mi)
                bal = bal0 * f
                cust = int(cust0 * f)
                rows.append({
                    "month": month, "product_code": code, "branch_code": branch,
                    "balance": _money(bal), "avg_balance": _money(bal * 0.97), "customers": str(cust),
                    "new_customers": str(cust // 20), "lost_customers": str(cust // 40),
                    "volume": _money(bal * 0.3),
                    "interest_income": _money(bal * ii), "interest_expense": _money(bal * ie),
                    "fee_income": _money(cust * fee), "opex": _money(bal * 0.0003),
                    "provision": _money(bal * 0.0002 if npl is not None else 0),
                    "npl_balance": "" if npl is None else _money(bal * npl / 100),
                    "overdue_balance": "" if od is None else _money(bal * od / 100),
                    "complaints": str(mi + (2 if code == "SL004" else 0)),
                    "satisfaction": f"{92 - mi * 0.5:.1f}",
                })
    return rows


METRICS_MONTHLY: list[Row] = _metrics()

CUSTOMERS: list[Row] = [
    {"customer_id": c, "name": n, "segment": s, "branch_code": b, "id_number": i, "phone": ph}
    for c, n, s, b, i, ph in [
        ("C0001", "王建国", "retail", "S101", "370202198503121234", "13853201234"),
        ("C0002", "李秀英", "retail", "S101", "370212199007085678", "13969805678"),
        ("C0003", "张海涛", "retail", "S102", "370212198811234321", "15866231111"),
        ("C0004", "青岛海之韵贸易有限公司", "corporate", "S101", "91370202MA3C5K1X2P", "053285901234"),
        ("C0005", "崂山云雾茶叶店", "inclusive", "S102", "92370212MA3D00001A", "13706481122"),
        ("C0006", "陈晓明", "retail", "S201", "370102199203151357", "13808912345"),
        ("C0007", "济南泉城五金商行", "inclusive", "S201", "92370102MA3F00002B", ""),
        ("C0008", "刘桂芳", "retail", "S202", "", "13573106789"),
    ]
]

# (customer, product, balance in the first month); the balance grows 1 % a month.
_HOLDINGS_BASE = [
    ("C0001", "SD001", 200000), ("C0001", "SL001", 80000), ("C0002", "SD002", 35000),
    ("C0002", "SI001", 100000), ("C0003", "SL001", 150000), ("C0004", "SP001", 52000),
    ("C0005", "SL002", 500000), ("C0005", "SL004", 1200000), ("C0006", "SD001", 300000),
    ("C0006", "SL001", 60000), ("C0007", "SL002", 300000), ("C0008", "SD002", 12000),
]
HOLDINGS: list[Row] = [
    {"month": m, "customer_id": c, "product_code": p, "balance": _money(b * (1 + 0.01 * mi))}
    for mi, m in enumerate(MONTHS)
    for c, p, b in _HOLDINGS_BASE
]

LOANS: list[Row] = [
    {
        "loan_id": i, "customer_id": c, "product_code": p, "branch_code": b, "amount": a, "balance": bal,
        "rate": r, "start_date": s, "maturity_date": e, "five_class": fc, "overdue_days": od,
    }
    for i, c, p, b, a, bal, r, s, e, fc, od in [
        ("L0001", "C0001", "SL001", "S101", "100000.00", "80000.00", "4.35", "2025-11-20", "2028-11-20", "正常", "0"),
        ("L0002", "C0003", "SL001", "S102", "200000.00", "150000.00", "3.95", "2025-06-01", "2028-06-01", "关注", "45"),
        ("L0003", "C0006", "SL001", "S201", "60000.00", "60000.00", "", "2026-10-10", "2027-10-10", "正常", "0"),
        ("L0004", "C0005", "SL002", "S102", "500000.00", "500000.00", "4.10", "2026-03-15", "2027-03-15", "正常", "0"),
        ("L0005", "C0007", "SL002", "S201", "300000.00", "300000.00", "4.60", "2026-01-05", "2027-01-05", "次级", "120"),
        ("L0006", "C0005", "SL004", "S102", "1500000.00", "1200000.00", "4.80", "2023-09-01", "2033-09-01", "可疑", "210"),
        ("L0007", "C0007", "SL004", "S201", "800000.00", "750000.00", "5.10", "2022-05-20", "2032-05-20", "损失", "400"),
    ]
]

FTP_CURVE: list[Row] = [
    {"as_of": "2026-10-31", "term_months": t, "rate": r}
    for t, r in [("1", "1.55"), ("3", "1.70"), ("6", "1.82"), ("12", "1.95"), ("36", "2.30"), ("60", "2.55")]
]

COMPETITOR_RATES: list[Row] = [
    {"as_of": d, "bank": b, "product_type": t, "term_months": m, "rate": r, "notes": n}
    for d, b, t, m, r, n in [
        ("2026-10-15", "甲银行", "个人消费贷", "12", "3.20", "限时优惠"),
        ("2026-10-15", "乙银行", "个人消费贷", "12", "3.50", ""),
        ("2026-10-15", "甲银行", "小微经营贷", "12", "3.60", ""),
        ("2026-10-20", "丙农商行", "三年期定期存款", "36", "2.05", "起存5万元"),
    ]
]

MANIFEST: list[Row] = [
    {"path": "manual/薪易快贷产品说明书.md", "title": "薪易快贷产品说明书", "doc_type": "manual",
     "product_codes": "SL001", "access": "public", "effective_date": "2026-01-01"},
    {"path": "faq/快贷常见问答.md", "title": "快贷常见问答", "doc_type": "faq",
     "product_codes": "SL001|SL002", "access": "internal", "effective_date": ""},
    {"path": "compliance/信贷营销合规要点.md", "title": "信贷营销合规要点", "doc_type": "compliance",
     "product_codes": "", "access": "restricted", "effective_date": "2026-07-01"},
    {"path": "notice/存款利率调整通知.md", "title": "", "doc_type": "notice",
     "product_codes": "SD001|SD002", "access": "", "effective_date": "2026-09-01"},
]

DOCUMENTS: dict[str, str] = {
    "manual/薪易快贷产品说明书.md": (
        "# 薪易快贷产品说明书\n\n"
        "## 产品简介\n\n薪易快贷是面向本行代发工资客户的线上个人信用消费贷款，全程手机银行办理。\n\n"
        "## 产品要素\n\n- 额度：1万元至30万元\n- 期限：6至36个月\n- 年利率：3.45%起\n"
        "- 还款方式：等额本息或按月付息到期还本\n"
    ),
    "faq/快贷常见问答.md": (
        "# 快贷常见问答\n\n"
        "问：薪易快贷可以提前还款吗？\n答：贷款满3个月后可以免费提前还款。\n\n"
        "问：税e快贷的额度怎么确定？\n答：根据企业近两年纳税记录综合评定，最高100万元。\n\n"
        "问：快贷的资金可以用于购房吗？\n答：不可以，贷款资金不得用于购房、股市及其他禁止性领域。\n"
    ),
    "compliance/信贷营销合规要点.md": (
        "# 信贷营销合规要点\n\n"
        "1. 不得以“零利率”“秒批”等误导性表述营销贷款产品。\n"
        "2. 须向客户明示年化利率（APR）及全部费用。\n"
        "3. 不得向在校学生发放个人消费贷款。\n"
    ),
    "notice/存款利率调整通知.md": (
        "# 关于调整个人存款挂牌利率的通知\n\n"
        "自2026年9月1日起，三年期整存整取挂牌利率下调至1.95%，活期存款利率维持0.10%不变。\n"
    ),
}

ALERT_RULES_YAML = """\
# 预警规则：覆盖默认阈值
rules:
  npl_watch:
    threshold: 1.5
  deposit_drain:
    enabled: false
  high_complaints:
    metric: complaint_rate
    op: ">="
    threshold: 5
    level: watch
    applies_to: loan
"""

TABLES: dict[str, list[Row]] = {
    "branches.csv": BRANCHES,
    "users.csv": USERS,
    "products.csv": PRODUCTS,
    "product_links.csv": PRODUCT_LINKS,
    "subjects.csv": SUBJECTS,
    "product_elements.csv": PRODUCT_ELEMENTS,
    "system_codes.csv": SYSTEM_CODES,
    "metrics_monthly.csv": METRICS_MONTHLY,
    "customers.csv": CUSTOMERS,
    "holdings.csv": HOLDINGS,
    "loans.csv": LOANS,
    "ftp_curve.csv": FTP_CURVE,
    "competitor_rates.csv": COMPETITOR_RATES,
    "docs/manifest.csv": MANIFEST,
}

# Rows per table of the bank as written (and as loaded): what a good import must report.
COUNTS: dict[str, int] = {
    "branches": len(BRANCHES), "users": len(USERS), "products": len(PRODUCTS),
    "product_links": len(PRODUCT_LINKS), "subjects": len(SUBJECTS),
    "product_elements": len(PRODUCT_ELEMENTS), "system_codes": len(SYSTEM_CODES),
    "metrics_monthly": len(METRICS_MONTHLY), "customers": len(CUSTOMERS), "holdings": len(HOLDINGS),
    "loans": len(LOANS), "ftp_curve": len(FTP_CURVE), "competitor_rates": len(COMPETITOR_RATES),
    "documents": len(DOCUMENTS),
}


def bank_rows(name: str) -> list[Row]:
    """A private copy of the default rows of one file (e.g. "products.csv"), to modify and pass back."""
    return copy.deepcopy(TABLES[name])


def csv_text(rows: list[Row], columns: list[str] | None = None) -> str:
    """Rows as CSV text; the header is `columns`, else every key in order of first appearance."""
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else str(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def _rename_head_office(tables: dict[str, list[Row]], new: str) -> None:
    for name, key in (("branches.csv", "code"), ("branches.csv", "parent_code"), ("users.csv", "branch_code")):
        for row in tables[name]:
            if row.get(key) == HEAD_OFFICE:
                row[key] = new


def write_small_bank(
    path: Path,
    *,
    rows: Mapping[str, list[Row]] | None = None,
    extra_rows: Mapping[str, list[Row]] | None = None,
    files: Mapping[str, str | bytes] | None = None,
    drop: Iterable[str] = (),
    head_office: str = HEAD_OFFICE,
) -> Path:
    """Write the small bank into `path` (created if needed) and return `path`.

    Every name below is a path relative to the bank folder, e.g. "products.csv",
    "docs/manifest.csv", "alert_rules.yaml", "docs/faq/快贷常见问答.md".

    - `rows={"products.csv": [...]}` replaces all rows of a CSV file (start from `bank_rows(name)`).
    - `extra_rows={"product_links.csv": [{"from_code": "X", "to_code": "Y"}]}` appends rows after the
      default ones; a key missing from a row writes an empty cell, a key unknown to the file adds a
      column (empty in the other rows). Appended rows start at physical line len(default rows) + 2.
    - `files={"metrics_monthly.csv": "raw text"}` writes a file verbatim (str as UTF-8, bytes as is),
      replacing whatever would have been written there; use it for malformed CSV or YAML, odd
      encodings, or extra documents.
    - `drop=["loans.csv"]` leaves files out (CSV tables, "alert_rules.yaml", "docs/manifest.csv",
      documents, or the whole "docs").
    - `head_office="H900"` renames the head office code everywhere: a different bank.
    """
    tables = {name: copy.deepcopy(default) for name, default in TABLES.items()}
    if head_office != HEAD_OFFICE:
        _rename_head_office(tables, head_office)
    for name, new_rows in (rows or {}).items():
        tables[name] = copy.deepcopy(list(new_rows))
    for name, more in (extra_rows or {}).items():
        tables.setdefault(name, []).extend(copy.deepcopy(list(more)))

    out: dict[str, str | bytes] = {}
    for name, table in tables.items():
        default_columns = list(TABLES[name][0]) if name in TABLES else None
        columns = default_columns
        if columns is not None and name in (rows or {}) and table:
            columns = None  # a replaced file's header follows its rows (a column may be left out)
        elif columns is not None:
            columns = columns + [k for row in table for k in row if k not in columns]
            columns = list(dict.fromkeys(columns))
        out[name] = csv_text(table, columns)
    out["alert_rules.yaml"] = ALERT_RULES_YAML
    for doc, text in DOCUMENTS.items():
        out[f"docs/{doc}"] = text
    out.update(files or {})

    dropped = set(drop)
    path.mkdir(parents=True, exist_ok=True)
    for name, content in out.items():
        if name in dropped or any(name.startswith(d.rstrip("/") + "/") for d in dropped):
            continue
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return path
