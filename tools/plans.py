"""Pricing and element plans for a new product idea, and `design_plans`, the whole design step.

Pricing (`price`; annual %, of the balance). Every part is rounded to the basis point (0.01 %,
half up) before the parts are added, so the parts shown add up to the floor shown.

  Loans — 定价底线 floor = funds cost + expected loss + operating cost + capital cost + margin
    funds cost     资金成本  FTP for the pricing term (tools.plan_evidence: latest curve, linear
                   interpolation). No curve: the funds-transfer cost the similar products were
                   charged (12 × Σinterest_expense ÷ Σ monthly average balance; for loans the
                   contract's interest_expense is the FTP charge). No facts: DEFAULT_FTP_RATE.
    expected loss  预期损失  PD × LGD: PD = NPL rate of the similar products (else the loans' NPL
                   share, else plan_evidence.DEFAULT_PD); LGD by the plan's collateral
                   (plan_evidence.LGD_BY_COLLATERAL: 信用 60 %, 保证 45 %, 抵押 30 %, 质押 20 %).
    operating cost 运营成本  12 × Σopex ÷ Σ monthly average balance of the similar products, else
                   DEFAULT_OPEX_RATE[category].
    capital cost   资本成本  RW × CAPITAL_ADEQUACY × COST_OF_EQUITY; RW = RISK_WEIGHTS[segment],
                   for 抵押/质押 collateral at most SECURED_RISK_WEIGHT (simplified weights of the
                   standardised approach, 商业银行资本管理办法 2023).
    margin         目标利润  TARGET_MARGIN['loan'].
  Deposits — 可承受利率上限 ceiling = FTP − operating cost − margin (TARGET_MARGIN['deposit']),
    not below 0; the FTP is what the bank earns on the funds (no curve: 12 × Σinterest_income ÷
    Σ average balance of the similar deposits, the funds-transfer income).
  Other categories (payment, intermediary, market) are priced by fees, not by a rate: no floor; the
  plans take their elements from the similar products.
  A default used for missing data is marked `"assumption": True` and listed in `assumptions`.

Plans (`build_plans`; 保守 / 均衡 / 进取)
  Loan rate (then rounded up to RATE_STEP; each plan's floor uses the plan's own collateral):
    进取 the floor; 均衡 max(floor, competitor median — else the median catalogue rate_min of the
    similar products, else floor + BALANCED_SPREAD); 保守 max(floor + CONSERVATIVE_SPREAD, competitor
    max), and 保守 ≥ 均衡 ≥ 进取. The designer's floor lifts the rate; a designer ceiling caps it
    unless the floor is above it: then the plan prices at the floor, `meets_constraints` is False
    and `unmet` says so. rate_max = rate + the similar products' median rate band (else
    DEFAULT_RATE_BAND), capped by the designer's ceiling.
  Deposit rate (mirror, rounded down): 进取 the ceiling; 均衡 min(ceiling, competitor median — else
    the similar products' median rate_max, else ceiling − BALANCED_SPREAD); 保守 min(ceiling −
    CONSERVATIVE_SPREAD, competitor min …); a designer floor above the ceiling is unmet.
  Amounts: 保守 half the maximum; 均衡 the maximum; 进取 the maximum (1.5 × when the maximum was only
    filled from a similar product, not set by the designer) and half the minimum when that was not
    set either. Collateral: the designer's; otherwise the filled one, 保守 one step stronger (信用
    < 保证 < 抵押; 进取 keeps it, as a weaker one would lift its floor above 均衡's rate). Channels: the designer's (线上 spelled out as the
    similar products' online channels), 进取 adding all similar products' channels. Eligibility,
    repayment and early repayment: the similar product's, stricter for 保守 and looser for 进取.
  Every ELEMENT_KEYS key is in every plan; one that does not apply says 不适用 and why.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from core.errors import PuyiError
from core.text import fmt_money
from tools.catalog import CATEGORY_NAMES, ELEMENT_NAMES, SEGMENT_NAMES
from tools.context import ToolContext
from tools.plan_evidence import (
    DEFAULT_PD,
    ONLINE_RE,
    channels_cover,
    collateral_classes,
    fill_from_similar,
    gather_evidence,
    lgd_for,
    months_text,
    parse_number,
    pct,
    split_channels,
)
from tools.plan_requirements import parse_requirement
from tools.plan_types import DEFAULT_SEED, ELEMENT_KEYS, PLAN_NAMES, Plan, PlanElement, Requirement

# --- pricing constants (annual %) ---------------------------------------------------------------------
CAPITAL_ADEQUACY = 10.5  # % of risk-weighted assets held as capital
COST_OF_EQUITY = 10.0  # % a year the shareholders' capital must earn
RISK_WEIGHTS: dict[str, float] = {"retail": 75.0, "inclusive": 75.0, "corporate": 100.0, "interbank": 25.0,
                                  "all": 100.0}
DEFAULT_RISK_WEIGHT = 100.0
SECURED_RISK_WEIGHT = 50.0  # 抵押/质押 collateral: at most this weight
TARGET_MARGIN: dict[str, float] = {"loan": 0.30, "deposit": 0.10}
DEFAULT_OPEX_RATE: dict[str, float] = {"loan": 0.80, "deposit": 0.30}
DEFAULT_FTP_RATE = 2.00
# --- plan constants -------------------------------------------------------------------------------------
RATE_STEP = 0.05  # published rates move in 5 bp steps
BALANCED_SPREAD = 0.25
CONSERVATIVE_SPREAD = 0.50
DEFAULT_RATE_BAND = 1.50  # rate_max − rate_min when no similar product shows one
CONSERVATIVE_AMOUNT_SHARE = 0.5
AGGRESSIVE_AMOUNT_FACTOR = 1.5
INCLUSIVE_CREDIT_LIMIT = 10_000_000  # 普惠小微 loans: single-borrower credit up to 1000万元
_STRENGTH = ("信用", "保证", "抵押")  # collateral from weakest to strongest security
_STRENGTH_OF = {"信用": 0, "保证": 1, "抵押": 2, "质押": 2}


def bp(x: float) -> float:
    """Round to the basis point (0.01 %), half up."""
    return float(Decimal(str(x)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def ceil_step(x: float, step: float = RATE_STEP) -> float:
    return round(math.ceil(round(x / step, 6)) * step, 2)


def floor_step(x: float, step: float = RATE_STEP) -> float:
    return round(math.floor(round(x / step, 6)) * step, 2)


def pts(x: float) -> str:
    """A signed gap in percentage points, rounded half up."""
    d = Decimal(str(x)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{'+' if d >= 0 else ''}{d} 个百分点"


def _part(key: str, label: str, value: float, source: str, assumption: bool = False) -> dict[str, Any]:
    return {"key": key, "label": label, "value": value, "display": pct(value), "source": source,
            "assumption": assumption}


def risk_weight(segment: str | None, collateral: str | None) -> tuple[float, str]:
    base = RISK_WEIGHTS.get(segment or "", DEFAULT_RISK_WEIGHT)
    why = f"{SEGMENT_NAMES.get(segment or '', '未明确客群')} {base:.0f}%"
    if collateral_classes(collateral) & {"抵押", "质押"} and base > SECURED_RISK_WEIGHT:
        return SECURED_RISK_WEIGHT, f"{why}，抵质押类不高于 {SECURED_RISK_WEIGHT:.0f}%"
    return base, why


def _total(evidence: dict[str, Any], key: str) -> float | None:
    total = evidence.get("similar_total") or {}
    return (total.get(key) or {}).get("value")


def _funds_part(category: str, evidence: dict[str, Any]) -> dict[str, Any]:
    ftp = evidence.get("ftp")
    if ftp:
        return _part("funds_cost", "资金成本（FTP）", bp(ftp["rate"]), ftp["source"])
    observed_key = "funds_rate" if category == "loan" else "yield_rate"
    observed = _total(evidence, observed_key)
    if observed is not None:
        what = "资金转移成本（利息支出）" if category == "loan" else "资金转移收入（利息收入）"
        src = evidence["similar_total"][observed_key]["source"]
        return _part("funds_cost", "资金成本（FTP）", bp(observed),
                     f"无FTP曲线，取相似产品实际{what}年化率（{src}）")
    return _part("funds_cost", "资金成本（FTP）", DEFAULT_FTP_RATE,
                 f"假设：无FTP曲线且无相似产品数据，资金成本取默认值 {DEFAULT_FTP_RATE:.2f}%", assumption=True)


def _opex_part(category: str, evidence: dict[str, Any]) -> dict[str, Any]:
    observed = _total(evidence, "opex_rate")
    if observed is not None:
        return _part("operating_cost", "运营成本", bp(observed), evidence["similar_total"]["opex_rate"]["source"])
    default = DEFAULT_OPEX_RATE.get(category, DEFAULT_OPEX_RATE["loan"])
    return _part("operating_cost", "运营成本", default,
                 f"假设：相似产品无运营成本数据，取默认值 {default:.2f}%", assumption=True)


def price(req: Requirement, evidence: dict[str, Any], collateral: str | None = None) -> dict[str, Any]:
    """The documented price limit for a requirement (see the module docstring): a floor for loans,
    a ceiling for deposits, nothing for fee-priced categories. `collateral` overrides the
    requirement's (a plan may ask for another)."""
    category = req.category or ""
    collateral = req.collateral if collateral is None else collateral
    term = evidence.get("pricing_term_months")
    base: dict[str, Any] = {"category": category, "term_months": term, "collateral": collateral,
                            "segment": req.segment, "assumptions": [], "warnings": []}
    if category not in ("loan", "deposit"):
        return {**base, "kind": "none", "parts": [], "formula": "",
                "note": f"{CATEGORY_NAMES.get(category, category)}类产品以费率/收费定价，不计算利率底线"}
    funds = _funds_part(category, evidence)
    opex = _opex_part(category, evidence)
    if category == "deposit":
        margin = _part("margin", "目标利润", TARGET_MARGIN["deposit"], "定价参数：存款目标利差（tools/plans.py TARGET_MARGIN）")
        raw = bp(funds["value"] - opex["value"] - margin["value"])
        ceiling = max(raw, 0.0)
        parts = [funds, opex, margin]
        if raw < 0:
            base["warnings"].append(f"资金价值 {funds['display']} 不足以覆盖运营成本和目标利润，可承受利率上限按 0 计")
        out = {**base, "kind": "deposit_ceiling", "parts": parts,
               "formula": "可承受利率上限 = 资金成本（FTP） − 运营成本 − 目标利润",
               "ceiling": {"value": ceiling, "display": pct(ceiling),
                           "source": f"{funds['display']} − {opex['display']} − {margin['display']}"}}
    else:
        risk = evidence.get("risk") or {}
        pd = risk.get("pd") or {"value": DEFAULT_PD, "display": pct(DEFAULT_PD), "assumption": True,
                                "source": f"假设：违约概率取默认值 {DEFAULT_PD:.2f}%"}
        lgd, cls, unknown = lgd_for(collateral)
        el = _part("expected_loss", "预期损失", bp(pd["value"] * lgd / 100.0),
                   f"违约概率代理 {pd['display']}（{pd['source']}）× 违约损失率 {lgd:.0f}%"
                   f"（{'担保方式未明确，按信用类' if unknown else cls + '类'}）",
                   assumption=bool(pd.get("assumption")) or unknown)
        rw, rw_why = risk_weight(req.segment, collateral)
        capital = _part("capital_cost", "资本成本", bp(rw / 100.0 * CAPITAL_ADEQUACY * COST_OF_EQUITY / 100.0),
                        f"风险权重 {rw:.0f}%（{rw_why}）× 资本充足率 {CAPITAL_ADEQUACY}% × 资本回报要求 {COST_OF_EQUITY}%")
        margin = _part("margin", "目标利润", TARGET_MARGIN["loan"], "定价参数：贷款目标利润（tools/plans.py TARGET_MARGIN）")
        parts = [funds, el, opex, capital, margin]
        floor = bp(sum(p["value"] for p in parts))
        out = {**base, "kind": "loan_floor", "parts": parts,
               "formula": "定价底线 = 资金成本（FTP） + 预期损失 + 运营成本 + 资本成本 + 目标利润",
               "floor": {"value": floor, "display": pct(floor),
                         "source": " + ".join(p["display"] for p in parts)}}
    out["assumptions"] = [p["source"] for p in parts if p["assumption"]]
    return out


def _limit(pricing: dict[str, Any]) -> float | None:
    key = "floor" if pricing["kind"] == "loan_floor" else "ceiling" if pricing["kind"] == "deposit_ceiling" else None
    return None if key is None else float(pricing[key]["value"])


def _part_value(pricing: dict[str, Any], key: str) -> float:
    return next((float(p["value"]) for p in pricing.get("parts", []) if p["key"] == key), 0.0)


# --- plans ---------------------------------------------------------------------------------------------

def _said(req: Requirement, key: str) -> bool:
    """Whether the designer set this (a constraint), rather than it being filled or missing."""
    value = getattr(req, key)
    present = bool(value) if isinstance(value, list) else value is not None
    return present and key not in req.filled


def _similar(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    return list(evidence.get("similar_products") or [])


def _sim_value(p: dict[str, Any], key: str) -> str | None:
    e = p.get("elements", {}).get(key)
    return None if e is None or not str(e.get("value", "")).strip() else str(e["value"])


def _first(evidence: dict[str, Any], key: str) -> tuple[str, dict[str, Any]] | None:
    for p in _similar(evidence):
        v = _sim_value(p, key)
        if v is not None:
            return v, p
    return None


def _median_el(evidence: dict[str, Any], key: str) -> tuple[float, list[str]] | None:
    vals = [(parse_number(_sim_value(p, key)), p["name"]) for p in _similar(evidence)]
    got = [(v, n) for v, n in vals if v is not None]
    if not got:
        return None
    return round(statistics.median(v for v, _ in got), 4), [n for _, n in got]


def _band(evidence: dict[str, Any]) -> tuple[float, str]:
    bands = []
    for p in _similar(evidence):
        lo, hi = parse_number(_sim_value(p, "rate_min")), parse_number(_sim_value(p, "rate_max"))
        if lo is not None and hi is not None and hi >= lo:
            bands.append(hi - lo)
    if bands:
        b = round(statistics.median(bands), 4)
        return b, f"相似产品利率区间宽度中位数 {b:.2f} 个百分点"
    return DEFAULT_RATE_BAND, f"假设：相似产品未给出利率区间，区间宽度取 {DEFAULT_RATE_BAND:.2f} 个百分点"


def nice_amount(x: float) -> float:
    """Amounts as a bank publishes them: whole 万元 from 1万 up, else whole hundreds."""
    unit = 10_000 if x >= 10_000 else 100
    return float(Decimal(str(x / unit)).quantize(Decimal("1"), rounding=ROUND_HALF_UP) * unit)


def _el(key: str, value: Any, unit: str, reason: str, sources: list[str]) -> PlanElement:
    text = value if isinstance(value, str) else (f"{value:.2f}" if unit == "%" else f"{value:.0f}")
    return PlanElement(element=key, value=text, unit=unit, reason=reason, sources=[s for s in sources if s])


def _na(key: str, reason: str) -> PlanElement:
    return PlanElement(element=key, value="不适用", unit="", reason=reason, sources=[])


def _from_similar(key: str, evidence: dict[str, Any], unit: str = "", fallback: str | None = None,
                  fallback_reason: str = "") -> PlanElement:
    got = _first(evidence, key)
    if got is not None:
        v, p = got
        return PlanElement(key, v, unit, f"沿用相似产品 {p['name']} 的{ELEMENT_NAMES.get(key, key)}",
                           [f"产品要素 {p['name']}（{p['code']}）{key}={v}"])
    if fallback is not None:
        return PlanElement(key, fallback, unit, fallback_reason, [])
    return _na(key, f"相似产品均未设定{ELEMENT_NAMES.get(key, key)}，需求也未提及，暂不设定")


def _collateral_for(name: str, req: Requirement) -> tuple[str | None, str]:
    if _said(req, "collateral"):
        return req.collateral, "按设计要求"
    base = req.collateral
    classes = collateral_classes(base)
    level = max((_STRENGTH_OF[c] for c in classes), default=None)
    if base is None or level is None:
        default = {"保守": "抵押", "均衡": "保证", "进取": "保证"}[name]
        return default, "需求与相似产品均未给出担保方式，按方案定位设定（假设）"
    src = req.filled.get("collateral", "")
    if name == "均衡":
        return base, f"沿用{base}（{src}）"
    if name == "保守":
        stronger = _STRENGTH[min(level + 1, len(_STRENGTH) - 1)]
        return (stronger, f"较{base}从严，要求{stronger}以降低违约损失") if stronger != base else \
            (base, f"沿用{base}（{src}），已是较强的担保")
    # 进取 keeps the collateral: a weaker one would raise its own floor above 均衡's rate.
    return base, f"沿用{base}（{src}），以价格、额度和渠道争取客户"


def _online_channels(evidence: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for p in _similar(evidence):
        for ch in split_channels(_sim_value(p, "channels")):
            if ONLINE_RE.search(ch) and ch not in out:
                out.append(ch)
    return out


def _channels_for(name: str, req: Requirement, evidence: dict[str, Any]) -> tuple[list[str], str]:
    all_similar: list[str] = []
    for p in _similar(evidence):
        for ch in split_channels(_sim_value(p, "channels")):
            if ch not in all_similar:
                all_similar.append(ch)
    if _said(req, "channels"):
        online = _online_channels(evidence)
        chosen: list[str] = []
        for ch in req.channels:
            generic = ch in ("线上", "在线", "网上", "线上办理")
            for c in (online if generic and online else [ch]):
                if c not in chosen:
                    chosen.append(c)
        why = "按设计要求" + ("（“线上”取本行相似产品的线上渠道）" if chosen != req.channels else "")
        if name == "进取":
            wider = chosen + [c for c in all_similar if c not in chosen]
            if wider != chosen:
                return wider, why + "，并增加相似产品的其他办理渠道以扩大触达"
        return chosen, why
    base = list(req.channels)
    src = req.filled.get("channels", "")
    if name == "进取":
        wider = base + [c for c in all_similar if c not in base]
        return wider, f"相似产品渠道的并集，扩大触达（{src}）" if src else "相似产品渠道的并集，扩大触达"
    if not base:
        return [], ""
    return base, f"沿用相似产品的办理渠道（{src}）" if src else "沿用相似产品的办理渠道"


_ELIGIBILITY = {
    "business": ("依法设立并持续经营满1年，企业及实际控制人征信良好",
                 "在此基础上从严：持续经营满2年，近24个月无30天以上逾期，须提供近12个月纳税或结算流水",
                 "在此基础上放宽：经营满6个月的主体可凭结算流水或纳税数据准入"),
    "personal": ("年满18周岁、具有完全民事行为能力，征信良好，有稳定收入来源",
                 "在此基础上从严：本行代发工资或公积金缴存满12个月，负债收入比不超过50%",
                 "在此基础上放宽：可凭社保、公积金或纳税数据线上准入，不限本行存量客户"),
}


def _eligibility(name: str, req: Requirement, evidence: dict[str, Any]) -> PlanElement:
    got = _first(evidence, "eligibility")
    if req.category == "loan":
        kind = "personal" if req.segment == "retail" else "business"
        default, stricter, looser = _ELIGIBILITY[kind]
        base, sources, why = default, [], "相似产品未设定准入条件，按客群采用通行准入要求（假设）"
        if got is not None:
            base, p = got
            sources = [f"产品要素 {p['name']}（{p['code']}）eligibility"]
            why = f"以相似产品 {p['name']} 的准入条件为基础"
        if name == "保守":
            return PlanElement("eligibility", f"{base}；{stricter}", "", why + "，从严控制风险", sources)
        if name == "进取":
            return PlanElement("eligibility", f"{base}；{looser}", "", why + "，放宽以扩大客群", sources)
        return PlanElement("eligibility", base, "", why, sources)
    if got is not None:
        return _from_similar("eligibility", evidence)
    holder = "个人凭本人有效身份证件" if req.segment == "retail" else "单位凭有效证照及预留印鉴"
    return PlanElement("eligibility", f"{holder}办理" if req.category == "deposit" else "按本行现行准入规定", "",
                       "相似产品未设定准入条件，采用通行要求（假设）", [])


def _repayment(name: str, req: Requirement) -> PlanElement:
    if _said(req, "repayment"):
        return PlanElement("repayment", req.repayment or "", "", "按设计要求", [])
    base = req.repayment or "按月付息、到期还本"
    src = [req.filled["repayment"]] if "repayment" in req.filled else []
    why = f"沿用相似产品的还款方式（{req.filled['repayment']}）" if src else "相似产品未给出还款方式，采用常见方式（假设）"
    if name == "保守":
        return PlanElement("repayment", "等额本息|等额本金", "", "分期还本，逐月降低风险敞口", src)
    if name == "进取":
        options = [o.strip() for o in re.split(r"[|｜；;]", base) if o.strip()]
        for extra in ("随借随还", "按月付息、到期还本"):
            if extra not in options:
                options.append(extra)
        return PlanElement("repayment", "|".join(options), "", why + "，并提供更灵活的还款方式", src)
    return PlanElement("repayment", base, "", why, src)


def _early_repayment(name: str, req: Requirement, evidence: dict[str, Any]) -> PlanElement:
    got = _first(evidence, "early_repayment")
    if req.category == "deposit":
        if got is not None:
            return _from_similar("early_repayment", evidence)
        return PlanElement("early_repayment", "可提前支取，提前支取部分按活期利率计息", "",
                           "相似产品未设定，采用定期存款通行规则（假设）", [])
    if name == "进取":
        return PlanElement("early_repayment", "可随时提前还款，不收取违约金", "", "降低客户顾虑，提升获客", [])
    if name == "保守":
        return PlanElement("early_repayment", "放款满12个月后可提前还款，须提前5个工作日申请", "",
                           "锁定一年期收益，减少提前还款带来的资金错配", [])
    if got is not None:
        return _from_similar("early_repayment", evidence)
    return PlanElement("early_repayment", "放款满6个月后可提前还款，不收取违约金", "",
                       "相似产品未设定，采用常见约定（假设）", [])


def _market(evidence: dict[str, Any], category: str) -> dict[str, Any]:
    """Reference rates for positioning: competitors first, else the similar products' catalogue."""
    comp = evidence.get("competitors")
    if comp:
        return {"low": comp["min"]["value"], "mid": comp["median"]["value"], "high": comp["max"]["value"],
                "source": f"{comp['source']}，{comp['match']['display']}", "competitor": comp["median"]["value"]}
    key = "rate_min" if category == "loan" else "rate_max"
    med = _median_el(evidence, key)
    if med is None:
        return {"low": None, "mid": None, "high": None, "source": "", "competitor": None}
    names = "、".join(med[1][:3])
    return {"low": med[0], "mid": med[0], "high": None, "competitor": None,
            "source": f"无竞品利率，参照本行相似产品（{names}）{ELEMENT_NAMES[key]}中位数 {pct(med[0])}"}


def _loan_rate(name: str, floor: float, market: dict[str, Any]) -> tuple[float, str]:
    if name == "进取":
        return ceil_step(floor), f"定价底线 {pct(floor)} 之上的最低报价（按 {RATE_STEP:.2f}% 取整）"
    if name == "均衡":
        if market["mid"] is not None and market["mid"] > floor:
            return ceil_step(market["mid"]), f"对标市场中位 {pct(market['mid'])}"
        if market["mid"] is not None:
            return ceil_step(floor), f"市场中位 {pct(market['mid'])} 低于底线，按底线报价"
        return ceil_step(floor + BALANCED_SPREAD), f"无市场参照，底线上浮 {BALANCED_SPREAD:.2f} 个百分点"
    target = floor + CONSERVATIVE_SPREAD
    high = market["high"] if market["high"] is not None else market["mid"]
    if high is not None and high > target:
        return ceil_step(high), f"对标市场高位 {pct(high)}，优先保证收益"
    return ceil_step(target), f"底线上浮 {CONSERVATIVE_SPREAD:.2f} 个百分点，优先保证收益"


def _deposit_rate(name: str, ceiling: float, market: dict[str, Any]) -> tuple[float, str]:
    if name == "进取":
        return max(floor_step(ceiling), 0.0), f"可承受上限 {pct(ceiling)} 之内的最高报价"
    if name == "均衡":
        if market["mid"] is not None:
            return max(floor_step(min(ceiling, market["mid"])), 0.0), f"对标市场中位 {pct(market['mid'])}（不超过可承受上限）"
        return max(floor_step(ceiling - BALANCED_SPREAD), 0.0), f"无市场参照，上限下浮 {BALANCED_SPREAD:.2f} 个百分点"
    target = ceiling - CONSERVATIVE_SPREAD
    if market["low"] is not None and market["low"] < target:
        return max(floor_step(market["low"]), 0.0), f"对标市场低位 {pct(market['low'])}，优先控制付息成本"
    return max(floor_step(target), 0.0), f"上限下浮 {CONSERVATIVE_SPREAD:.2f} 个百分点，优先控制付息成本"


def _rate_with_constraints(req: Requirement, category: str, rate: float, limit: float,
                           unmet: list[str]) -> tuple[float, str]:
    """Apply the designer's rate floor/ceiling to a plan rate; record what cannot hold."""
    note = ""
    lo = req.rate_min if _said(req, "rate_min") else None
    hi = req.rate_max if _said(req, "rate_max") else None
    if category == "loan":
        if lo is not None and rate < lo:
            rate, note = lo, f"按设计下限 {pct(lo)}"
        if hi is not None and rate > hi:
            need = max(limit, lo if lo is not None else limit)
            if need <= hi:
                rate, note = hi, f"按设计上限 {pct(hi)} 封顶"
            else:
                rate = need
                why = (f"利率上限 {pct(hi)} 低于定价底线 {pct(limit)}" if need == limit else
                       f"利率下限 {pct(lo)} 高于上限 {pct(hi)}，需求自相矛盾")
                unmet.append(f"{why}：本方案按 {pct(rate)} 定价，无法满足“利率不高于 {pct(hi)}”")
                note = "无法满足利率上限，按底线定价" if need == limit else "按利率下限定价"
    else:
        if hi is not None and rate > hi:
            rate, note = hi, f"按设计上限 {pct(hi)}"
        if lo is not None and rate < lo:
            if lo <= limit:
                rate, note = lo, f"按设计下限 {pct(lo)}"
            else:
                rate = limit
                unmet.append(f"利率下限 {pct(lo)} 高于可承受利率上限 {pct(limit)}：本方案按 {pct(rate)} 定价，"
                             f"无法满足“利率不低于 {pct(lo)}”")
                note = "无法满足利率下限，按可承受上限定价"
    return round(rate, 4), note


def _check(plan_terms: dict[str, Any], req: Requirement, rate: float | None, unmet: list[str]) -> None:
    """The designer's other constraints, checked on the finished plan (built to hold them)."""
    if _said(req, "amount_max") and plan_terms["amount_max"] is not None and plan_terms["amount_max"] > req.amount_max:
        unmet.append(f"额度上限 {fmt_money(plan_terms['amount_max'])} 超过设计要求 {fmt_money(req.amount_max)}")
    if _said(req, "amount_min") and plan_terms["amount_min"] is not None and plan_terms["amount_min"] < req.amount_min:
        unmet.append(f"起点金额 {fmt_money(plan_terms['amount_min'])} 低于设计要求 {fmt_money(req.amount_min)}")
    term = plan_terms["term_months"]
    if term is not None and _said(req, "term_max_months") and term > (req.term_max_months or 0):
        unmet.append(f"期限 {months_text(term)} 超过设计要求 {months_text(req.term_max_months)}")
    if _said(req, "collateral") and plan_terms["collateral"] != req.collateral:
        unmet.append(f"担保方式 {plan_terms['collateral']} 与设计要求 {req.collateral} 不同")
    if _said(req, "channels"):
        missing = [c for c in req.channels if not channels_cover(plan_terms["channels"], c)]
        if missing:
            unmet.append(f"办理渠道未覆盖设计要求的{'、'.join(missing)}")
    if rate is not None and _said(req, "rate_max") and rate > (req.rate_max or 0) and not any("利率上限" in u for u in unmet):
        unmet.append(f"利率 {pct(rate)} 高于设计上限 {pct(req.rate_max)}")


def _plan_pricing(pricing: dict[str, Any], limit: float | None, rate: float | None,
                  market: dict[str, Any]) -> dict[str, Any]:
    """The plan's own pricing with its rate, the headroom over its limit and the gap to competitors."""
    if rate is not None:
        pricing["rate"] = {"value": rate, "display": pct(rate), "source": "本方案报价"}
        if limit is not None:
            gap = round(rate - limit, 4) if pricing["kind"] == "loan_floor" else round(limit - rate, 4)
            label = "高于定价底线" if pricing["kind"] == "loan_floor" else "低于可承受上限"
            pricing["headroom"] = {"value": gap, "display": pts(gap), "source": label}
        if market["competitor"] is not None:
            gap = round(rate - market["competitor"], 4)
            pricing["vs_competitor"] = {"value": gap, "display": pts(gap),
                                        "source": f"与竞品中位 {pct(market['competitor'])} 比较"}
    return pricing


def _amounts(name: str, req: Requirement) -> tuple[float | None, float | None, str, str]:
    amax, amin = req.amount_max, req.amount_min
    max_said, min_said = _said(req, "amount_max"), _said(req, "amount_min")
    max_src = "按设计要求" if max_said else (f"{req.filled['amount_max']}" if "amount_max" in req.filled else "")
    min_src = "按设计要求" if min_said else (f"{req.filled['amount_min']}" if "amount_min" in req.filled else "")
    why_max = max_src
    if amax is not None:
        if name == "保守":
            amax = nice_amount(amax * CONSERVATIVE_AMOUNT_SHARE)
            why_max = f"上限取{'设计要求' if max_said else '相似产品上限'}的一半，控制单户风险敞口"
        elif name == "进取" and not max_said:
            amax = nice_amount(amax * AGGRESSIVE_AMOUNT_FACTOR)
            why_max = f"相似产品上限的 {AGGRESSIVE_AMOUNT_FACTOR} 倍，扩大额度覆盖"
    why_min = min_src
    if amin is not None and name == "进取" and not min_said and amin > 0:
        amin = nice_amount(amin * 0.5)
        why_min = "相似产品起点金额减半，覆盖小额需求"
    if amin is not None and amax is not None and amin > amax:
        amin = amax
        why_min += "；不高于额度上限"
    return amin, amax, why_min, why_max


def _build_plan(name: str, req: Requirement, evidence: dict[str, Any], market: dict[str, Any]) -> Plan:
    category = req.category or ""
    unmet: list[str] = []
    elements: dict[str, PlanElement] = {}
    collateral, collateral_why = (_collateral_for(name, req) if category == "loan" else (None, ""))
    pricing = price(req, evidence, collateral=collateral)
    limit = _limit(pricing)
    rate: float | None = None
    limit_src = f"{'定价底线' if category == 'loan' else '可承受利率上限'} {pct(limit)}（{pricing.get('formula', '')}）"
    if limit is not None:
        if category == "loan":
            rate, why = _loan_rate(name, limit, market)
        else:
            rate, why = _deposit_rate(name, limit, market)
        rate, note = _rate_with_constraints(req, category, rate, limit, unmet)
        why = f"{why}；{note}" if note else why
        sources = [limit_src, market["source"]]
        if category == "loan":
            band, band_why = _band(evidence)
            hi = ceil_step(rate + band)
            hi_why = f"执行利率上限 = 报价 + {band_why}"
            if _said(req, "rate_max") and req.rate_max is not None and hi > req.rate_max:
                hi = max(req.rate_max, rate)
                hi_why += f"，受设计上限 {pct(req.rate_max)} 约束"
            elements["rate_min"] = _el("rate_min", rate, "%", why, sources)
            elements["rate_max"] = _el("rate_max", hi, "%", hi_why, sources)
        else:
            elements["rate_min"] = _el("rate_min", rate, "%", why, sources)
            elements["rate_max"] = _el("rate_max", rate, "%", "单一挂牌利率（与最低利率相同）", sources)
    else:
        for key in ("rate_min", "rate_max"):
            elements[key] = _from_similar(key, evidence, "%")
    # term
    tmin, tmax = req.term_min_months, req.term_max_months
    for key, value in (("term_min_months", tmin), ("term_max_months", tmax)):
        if value is None:
            elements[key] = _na(key, "需求与相似产品均未给出期限")
        else:
            src = "按设计要求" if _said(req, key) else req.filled.get(key, "")
            elements[key] = _el(key, float(value), "月", src or "按需求", [src] if key in req.filled else [])
    # amounts
    if category == "deposit":
        elements["amount_min"] = _na("amount_min", "存款以起存金额（min_amount）约定，不设贷款式额度下限")
        if _said(req, "amount_max") and req.amount_max is not None:
            elements["amount_max"] = _el("amount_max", req.amount_max, "元", "按设计要求", [])
        else:
            elements["amount_max"] = _na("amount_max", "存款不设单户金额上限（需求未提出）")
        if req.amount_min is not None:
            src = "按设计要求" if _said(req, "amount_min") else req.filled.get("amount_min", "")
            elements["min_amount"] = _el("min_amount", req.amount_min, "元", src, [src])
        else:
            elements["min_amount"] = _from_similar("min_amount", evidence, "元")
        amin, amax = req.amount_min, req.amount_max if _said(req, "amount_max") else None
    else:
        amin, amax, why_min, why_max = _amounts(name, req)
        for key, amount, why in (("amount_min", amin, why_min), ("amount_max", amax, why_max)):
            if amount is None:
                elements[key] = _na(key, "需求与相似产品均未给出金额")
            else:
                extra = ""
                if key == "amount_max" and req.segment == "inclusive" and amount > INCLUSIVE_CREDIT_LIMIT:
                    extra = f"；注意：超过普惠小微单户授信 {fmt_money(INCLUSIVE_CREDIT_LIMIT)} 口径"
                elements[key] = _el(key, amount, "元", (why or "按需求") + extra,
                                    [req.filled[key]] if key in req.filled else [])
        elements["min_amount"] = _na("min_amount", "起存/起购金额适用于存款和理财类产品，贷款以额度下限约定")
    # collateral, repayment
    if category == "loan":
        elements["collateral"] = PlanElement("collateral", collateral or "", "", collateral_why,
                                             [req.filled["collateral"]] if "collateral" in req.filled else [])
        elements["repayment"] = _repayment(name, req)
    else:
        elements["collateral"] = _na("collateral", f"{CATEGORY_NAMES.get(category, category)}产品不涉及担保")
        elements["repayment"] = _na("repayment", f"{CATEGORY_NAMES.get(category, category)}产品不涉及还款")
    # customers, eligibility, channels
    if req.target_customers:
        src = "按设计要求" if _said(req, "target_customers") else req.filled.get("target_customers", "")
        elements["target_customers"] = PlanElement("target_customers", req.target_customers, "", src,
                                                   [src] if "target_customers" in req.filled else [])
    else:
        seg = SEGMENT_NAMES.get(req.segment or "", "")
        elements["target_customers"] = PlanElement("target_customers", f"{seg}客户" if seg else "待定", "",
                                                   "需求与相似产品均未给出，按客群设定", [])
    elements["eligibility"] = _eligibility(name, req, evidence)
    channels, channels_why = _channels_for(name, req, evidence)
    if channels:
        elements["channels"] = PlanElement("channels", "|".join(channels), "", channels_why, [])
    else:
        elements["channels"] = PlanElement("channels", "网点|手机银行", "", "需求与相似产品均未给出渠道，采用通行渠道（假设）", [])
        channels = ["网点", "手机银行"]
    # fee, risk level, early repayment
    elements["fee"] = _from_similar("fee", evidence, fallback="无",
                                    fallback_reason="相似产品未设定费用；利息以外不另收费（假设）")
    if category in ("loan", "deposit"):
        elements["risk_level"] = _na("risk_level", "风险等级（R1–R5）适用于理财等投资类产品")
    else:
        elements["risk_level"] = _from_similar("risk_level", evidence)
    if category in ("loan", "deposit"):
        elements["early_repayment"] = _early_repayment(name, req, evidence)
    else:
        elements["early_repayment"] = _na("early_repayment", f"{CATEGORY_NAMES.get(category, category)}产品不涉及提前还款")

    competitor = market["competitor"]
    terms = {
        "name": name, "category": category, "segment": req.segment, "rate": rate,
        "term_months": tmax if tmax is not None else tmin,
        "amount_min": amin, "amount_max": amax, "collateral": collateral,
        "target_customers": elements["target_customers"].value, "channels": channels,
        "ftp_rate": _part_value(pricing, "funds_cost") if limit is not None else None,
        "expected_loss_rate": _part_value(pricing, "expected_loss") if limit is not None else None,
        "opex_rate": _part_value(pricing, "operating_cost") if limit is not None else None,
        "capital_cost_rate": _part_value(pricing, "capital_cost") if limit is not None else None,
        "competitor_rate": competitor,
    }
    _check(terms, req, rate, unmet)
    plan_pricing = _plan_pricing(pricing, limit, rate, market) if limit is not None else pricing
    ordered = [elements[k] for k in ELEMENT_KEYS]
    return Plan(name=name, elements=ordered, terms=terms, pricing=plan_pricing, meets_constraints=not unmet,
                unmet=unmet)


def build_plans(req: Requirement, evidence: dict[str, Any]) -> list[Plan]:
    """Three draft plans (保守/均衡/进取) with every element, its reason and sources (see the module
    docstring). Each plan prices itself, for its own collateral, so a plan's floor is always its own."""
    _fill_from_evidence(req, evidence)
    market = _market(evidence, req.category or "")
    return [_build_plan(name, req, evidence, market) for name in PLAN_NAMES]


def _fill_from_evidence(req: Requirement, evidence: dict[str, Any]) -> None:
    """Fill what is still missing from the evidence's similar products (gather_evidence has usually
    done it already; this makes build_plans work on any requirement)."""
    fill_from_similar(req, _similar(evidence))


# --- the orchestrator ---------------------------------------------------------------------------------

class NotAProductIdea(PuyiError):
    """Text that does not describe a product (no category could be read)."""


class PlanForbidden(PuyiError):
    """The asker's role may not design plans."""


_WHAT_TO_SAY = ("请描述新产品的设想，至少说明产品大类（如贷款、存款），最好再包括：面向的客群、用途、期限、额度、"
                "利率上限或下限、担保方式和办理渠道。例如：“面向小微企业主的3年期经营贷，额度最高300万，"
                "利率不高于4.5%，线上办理”")


def design_plans(ctx: ToolContext, text: str, seed: int = DEFAULT_SEED, simulate: bool = True) -> dict[str, Any]:
    """根据产品经理用中文描述的新产品设想，生成2–3套要素方案（保守/均衡/进取）：解析需求、收集证据、
    计算定价底线（或存款可承受利率上限）、给出每个要素的取值理由和出处，并可在客户样本上做沙盘模拟。"""
    started = time.perf_counter()
    if not ctx.principal.may("draft_plan"):
        raise PlanForbidden("抱歉，要素方案设计仅限产品经理和管理员使用。如需新产品方案，请联系总行产品管理部门的产品经理"
                            " (forbidden: draft_plan)")
    req = parse_requirement(text)
    if req.category is None:
        raise NotAProductIdea(f"没有看出这是哪一类产品的设想。{_WHAT_TO_SAY}")
    evidence = gather_evidence(ctx, req)
    pricing = price(req, evidence)
    plans = build_plans(req, evidence)
    warnings = list(req.conflicts) + list(evidence.get("warnings", [])) + list(pricing.get("warnings", []))
    plan_dicts = [p.as_dict() for p in plans]
    simulation = None
    if simulate:
        from tools.sandbox import simulate as run_simulation  # numpy: loaded only when simulating

        simulation = run_simulation(ctx.conn, plan_dicts, req.as_dict(), seed=seed, principal=ctx.principal)
    return {
        "requirement": req.as_dict(), "evidence": evidence, "pricing": pricing, "plans": plan_dicts,
        "simulation": simulation, "warnings": list(dict.fromkeys(warnings)),
        "seconds": round(time.perf_counter() - started, 3),
    }
