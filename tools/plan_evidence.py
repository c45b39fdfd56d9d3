"""Evidence for an element plan: what the bank already knows about a product idea.

`gather_evidence(ctx, req)` collects, for a parsed `Requirement`:

Similar products
    Sellable products of the requirement's category (and segment when given: the same segment or
    `all`; if none, the whole category, with a warning) that are live (运营 or 停牌: a suspended
    product's risk history is evidence too). Each is scored 0–100 as the weighted mean of the
    components both sides know (weights in `_WEIGHTS`): text (0.7 × the share of the character
    bigrams of the product type and purpose, + 0.3 × the share of the question's bigrams, found in
    the product's name, aliases, description and target customers), segment, term (1 when the product's
    term range covers the requirement's term, else the ratio of the term to the nearest bound),
    amount (ratio of the maximum amounts), rate (1 / (1 + |rate gap in points|)), collateral (same
    class: 信用/保证/抵押/质押), repayment, channels (share of the requirement's channels the product
    offers, 线上 matching any online channel) and target customers. Suspended products count 0.9×.
    Ties break on the code, so the ranking is deterministic. The top 5 come with their catalogue
    elements and their performance over the last 12 months with facts (`tools.facts.fact_source`:
    bank-wide for bank-wide roles, the asker's subtree otherwise): balance, customers and NPL/overdue
    balance at the last month; income, expense, fees, opex and provision summed over the window.
    Annualised rates divide by the sum of the monthly average balances (month-end balance when
    avg_balance is empty): rate = 12 × Σflow ÷ Σavg_balance × 100.

Filling the requirement
    What the designer did not say (segment, term, amount, collateral, repayment, channels, target
    customers) is taken from the best-ranked similar product that has it, and `req.filled[key]`
    says so ("从相似产品 名称（代码）取得"). Filled values are defaults, not constraints.

FTP
    The latest `ftp_curve.as_of`; the requirement's pricing term (term_max_months, else
    term_min_months) is interpolated linearly between the two tenors around it, clamped to the
    shortest/longest tenor outside the curve (the result names the tenors used).

Competitors
    `competitor_rates`: each distinct product_type is scored by text similarity to the requirement
    (0.6 × Dice of character bigrams with the product type, 0.4 × share of the type's bigrams
    found in the question, + 0.2 × term closeness); types of the other category (贷 vs 存) are
    excluded. For the best type, each bank's latest as_of and, in it, the term nearest to the
    requirement's. min / median / max over the banks, with the match quality (高 ≥ 0.8, 中 ≥ 0.5,
    低 otherwise; below `MIN_TYPE_SCORE` no match).

Risk (loans)
    npl_rate = Σnpl_balance ÷ Σbalance at the last month over the similar products; provision_rate
    = 12 × Σprovision ÷ Σavg_balance (an annual loss proxy); from loans.csv (scoped) the balance
    share of 次级+可疑+损失 and of 可疑+损失. The probability-of-default proxy PD is the NPL rate
    from the facts, else the loans' NPL share, else `DEFAULT_PD` (an assumption). Expected loss
    EL = PD × LGD, LGD by collateral (`LGD_BY_COLLATERAL`: 信用 60 %, 保证 45 %, 抵押 30 %, 质押 20 %;
    unknown → 60 %, the unsecured value; several named → the highest).

Compliance
    `ctx.kb` (tools.knowledge.search_knowledge, with the asker's document access) searched for the
    category's compliance rules, for the product type with 利率 定价 合规, and for marketing and
    disclosure rules; the relevant passages (chunk_id, title, snippet), at most 2 per document and
    per query, 5 in all. No knowledge base or nothing relevant → [] and a warning.

Every number comes as {"value", "display", "source"}; missing optional data gives a warning and
downstream (tools.plans) uses the documented defaults, labelled as assumptions.
"""

from __future__ import annotations

import logging
import re
import statistics
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from core.access import branch_in_scope
from core.errors import PuyiError
from core.text import fmt_money, normalize
from tools.catalog import CATEGORY_NAMES, ELEMENT_NAMES, SEGMENT_NAMES, STATUS_NAMES
from tools.context import ToolContext
from tools.facts import fact_meta, fact_source
from tools.periods import label_for, shift
from tools.plan_types import Requirement

log = logging.getLogger(__name__)

TOP_SIMILAR = 5
WINDOW_MONTHS = 12
LIVE_STATUSES = ("operating", "suspended")
SUSPENDED_FACTOR = 0.9
MIN_TYPE_SCORE = 0.25  # below this no competitor product type is taken as a match
# Loss given default (%) by collateral class; the unsecured value when the collateral is unknown.
LGD_BY_COLLATERAL: dict[str, float] = {"信用": 60.0, "保证": 45.0, "抵押": 30.0, "质押": 20.0}
DEFAULT_LGD = 60.0
DEFAULT_PD = 2.0  # % a year, when neither the facts nor loans.csv give a non-performing rate
MAX_COMPLIANCE = 5
MAX_PER_DOCUMENT = 2

_WEIGHTS = {"text": 3.0, "segment": 1.0, "term": 1.5, "amount": 1.0, "rate": 0.5, "collateral": 1.5,
            "repayment": 0.5, "channels": 1.0, "target": 1.0}
_COLLATERAL_WORDS = (("质押", "质押"), ("抵押", "抵押"), ("保证", "保证"), ("担保", "保证"), ("信用", "信用"))
# Words for "online" in channel names; 线上 in a requirement matches any of them.
ONLINE_RE = re.compile(r"线上|在线|网上|网银|手机|APP|app|小程序|微信|互联网|移动|电子渠道|自助")
_LOAN_TYPE_RE = re.compile(r"贷|贴现|按揭|融资|信用卡")
_DEPOSIT_TYPE_RE = re.compile(r"存|储蓄")
_NON_CJK_RE = re.compile(r"[^\u4e00-\u9fff]+")


# --- small helpers ------------------------------------------------------------------------------

def num(value: float | None, display: str, source: str, **extra: Any) -> dict[str, Any]:
    """A number as results carry it: value, how it is shown, where it came from."""
    return {"value": value, "display": display, "source": source, **extra}


def pct(value: float | None, digits: int = 2) -> str:
    """A rate as shown, rounded half up (2.125 → 2.13%), the way the pricing rounds its parts."""
    if value is None:
        return "—"
    return f"{Decimal(str(value)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)}%"


def months_text(m: int | None) -> str:
    if m is None:
        return "—"
    return "活期（不定期）" if m == 0 else f"{m}个月"


def _f(value: Any) -> float | None:
    if value is None:
        return None
    return float(value) if isinstance(value, Decimal | int | float) else float(str(value))


def parse_number(text: str | None) -> float | None:
    """A catalogue value as a number ("3.45", "300000"), None when it is not one."""
    if text is None:
        return None
    try:
        return float(str(text).replace(",", "").strip())
    except ValueError:
        return None


def bigrams(text: str | None) -> set[str]:
    """Character bigrams of the Chinese runs of a text (digits, latin and punctuation split runs)."""
    out: set[str] = set()
    for run in _NON_CJK_RE.split(normalize(text or "")):
        if len(run) == 1:
            out.add(run)
        out.update(run[i:i + 2] for i in range(len(run) - 1))
    return out


def dice(a: str | None, b: str | None) -> float:
    x, y = bigrams(a), bigrams(b)
    return 2 * len(x & y) / (len(x) + len(y)) if x and y else 0.0


def containment(part: str | None, whole: str | None) -> float:
    """Share of `part`'s bigrams found in `whole`."""
    x, y = bigrams(part), bigrams(whole)
    return len(x & y) / len(x) if x else 0.0


def collateral_classes(text: str | None) -> set[str]:
    return {cls for word, cls in _COLLATERAL_WORDS if word in (text or "")}


def lgd_for(collateral: str | None) -> tuple[float, str, bool]:
    """LGD % for a collateral text, the class it was read as, and whether it is the unknown default."""
    classes = collateral_classes(collateral)
    if not classes:
        return DEFAULT_LGD, "未明确", True
    worst = max(classes, key=lambda c: (LGD_BY_COLLATERAL[c], c))
    return LGD_BY_COLLATERAL[worst], worst, False


def split_channels(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else re.split(r"[|｜、,，/；;]", value)
    return [s.strip() for s in items if s and s.strip()]


def channels_cover(offered: list[str], wanted: str) -> bool:
    """Whether a product's channels offer what a requirement names (线上 = any online channel)."""
    w = normalize(wanted)
    for ch in offered:
        c = normalize(ch)
        if w in c or c in w:
            return True
        if w in ("线上", "在线", "网上", "线上办理") and ONLINE_RE.search(ch):
            return True
    return False


def pricing_term(req: Requirement) -> int | None:
    """The term a product is priced at: its longest term (funds cost rises with the tenor)."""
    return req.term_max_months if req.term_max_months is not None else req.term_min_months


def element_display(value: str, unit: str) -> str:
    n = parse_number(value)
    if n is not None and unit == "%":
        return f"{n:.2f}%"
    if n is not None and unit == "元":
        return fmt_money(n)
    if n is not None and unit == "月":
        return months_text(int(n))
    return f"{value}{unit}" if unit and unit not in ("%", "元", "月") else value


def _one(row: Any, key: str) -> Any:
    return None if row is None else row[key]


# --- similar products ----------------------------------------------------------------------------

def _candidates(ctx: ToolContext, category: str) -> list[dict[str, Any]]:
    rows = ctx.conn.execute(
        "SELECT p.code, p.name, p.segment, p.status, p.description, p.aliases,"
        " coalesce(jsonb_object_agg(e.element, jsonb_build_object('value', e.value, 'unit', e.unit))"
        "   FILTER (WHERE e.element IS NOT NULL), '{}'::jsonb) AS elements"
        " FROM products p LEFT JOIN product_elements e ON e.product_code = p.code"
        " WHERE p.level = 'sellable' AND p.category = %(category)s AND p.status = ANY(%(statuses)s)"
        " GROUP BY p.code, p.name, p.segment, p.status, p.description, p.aliases ORDER BY p.code",
        {"category": category, "statuses": list(LIVE_STATUSES)},
    ).fetchall()
    return [dict(r) for r in rows]


def _el(product: dict[str, Any], key: str) -> str | None:
    e = product["elements"].get(key)
    return None if e is None else str(e.get("value", ""))


def _el_num(product: dict[str, Any], key: str) -> float | None:
    return parse_number(_el(product, key))


def _ratio(a: float, b: float) -> float:
    if a == b:
        return 1.0
    if a <= 0 or b <= 0:
        return 0.0
    return min(a, b) / max(a, b)


def _score(req: Requirement, p: dict[str, Any]) -> tuple[float, dict[str, float], list[str]]:
    """Closeness of a product to the requirement, 0–100, its parts, and why (in Chinese)."""
    parts: dict[str, float] = {}
    why: list[str] = []
    focus = " ".join(x for x in (req.product_type, req.purpose) if x)
    doc = " ".join([p["name"], *(p.get("aliases") or []), p.get("description") or "",
                    _el(p, "target_customers") or ""])
    parts["text"] = 0.7 * containment(focus, doc) + 0.3 * containment(req.text, doc) if focus else \
        containment(req.text, doc)
    if req.segment:
        parts["segment"] = 1.0 if p["segment"] == req.segment else 0.5 if p["segment"] == "all" else 0.0
    term = pricing_term(req)
    tmax, tmin = _el_num(p, "term_max_months"), _el_num(p, "term_min_months")
    if term is not None and tmax is not None:
        lo = tmin if tmin is not None else tmax
        if lo <= term <= tmax:
            parts["term"] = 1.0
            why.append(f"期限覆盖{months_text(term)}")
        else:
            parts["term"] = _ratio(float(term), lo if term < lo else tmax)
    amax = _el_num(p, "amount_max")
    if req.amount_max is not None and amax is not None:
        parts["amount"] = _ratio(req.amount_max, amax)
    want_rate = req.rate_max if req.rate_max is not None else req.rate_min
    rmin = _el_num(p, "rate_min")
    if want_rate is not None and rmin is not None:
        parts["rate"] = 1.0 / (1.0 + abs(rmin - want_rate))
    if req.collateral and _el(p, "collateral"):
        same = bool(collateral_classes(req.collateral) & collateral_classes(_el(p, "collateral")))
        parts["collateral"] = 1.0 if same else 0.0
        if same:
            why.append(f"担保方式同为{_el(p, 'collateral')}")
    if req.repayment and _el(p, "repayment"):
        parts["repayment"] = dice(req.repayment, _el(p, "repayment"))
    offered = split_channels(_el(p, "channels"))
    if req.channels and offered:
        parts["channels"] = sum(channels_cover(offered, w) for w in req.channels) / len(req.channels)
    if req.target_customers and _el(p, "target_customers"):
        parts["target"] = containment(req.target_customers, _el(p, "target_customers"))
    total_w = sum(_WEIGHTS[k] for k in parts)
    score = 100.0 * sum(_WEIGHTS[k] * v for k, v in parts.items()) / total_w if total_w else 0.0
    if p["status"] == "suspended":
        score *= SUSPENDED_FACTOR
        why.append("该产品已停牌（其风险表现仍可参考）")
    if parts.get("text", 0) >= 0.3:
        why.insert(0, "名称/描述与需求用词相近")
    return round(score, 2), {k: round(v, 4) for k, v in parts.items()}, why


def rank_similar(ctx: ToolContext, req: Requirement, warnings: list[str]) -> list[dict[str, Any]]:
    """All live sellable products of the category, best first (see the module docstring)."""
    assert req.category is not None
    products = _candidates(ctx, req.category)
    if req.segment:
        same = [p for p in products if p["segment"] in (req.segment, "all")]
        if same:
            products = same
        elif products:
            warnings.append(
                f"本行没有{SEGMENT_NAMES.get(req.segment, req.segment)}客群的在售{CATEGORY_NAMES[req.category]}产品，"
                "相似产品取自全部客群"
            )
    ranked = []
    for p in products:
        score, parts, why = _score(req, p)
        ranked.append({**p, "score": score, "parts": parts, "why": why})
    ranked.sort(key=lambda p: (-p["score"], p["code"]))
    return ranked


# --- performance from the facts ---------------------------------------------------------------------

def _window(ctx: ToolContext) -> tuple[date, date, int] | None:
    meta = fact_meta(ctx.conn)
    if meta.latest_month is None:
        return None
    start = shift(meta.latest_month, -(WINDOW_MONTHS - 1))
    if meta.first_month is not None and start < meta.first_month:
        start = meta.first_month
    months = (meta.latest_month.year - start.year) * 12 + meta.latest_month.month - start.month + 1
    return start, meta.latest_month, months


def _fact_rows(ctx: ToolContext, codes: list[str], start: date, end: date) -> dict[str, dict[str, Any]]:
    source, params = fact_source(ctx.conn, ctx.principal)
    rows = ctx.conn.execute(
        "SELECT f.product_code,"
        " sum(CASE WHEN f.month = %(end)s THEN f.balance END) AS balance,"
        " sum(CASE WHEN f.month = %(end)s THEN f.customers END) AS customers,"
        " sum(CASE WHEN f.month = %(end)s THEN f.npl_balance END) AS npl_balance,"
        " sum(CASE WHEN f.month = %(end)s THEN f.overdue_balance END) AS overdue_balance,"
        " sum(f.interest_income) AS interest_income, sum(f.interest_expense) AS interest_expense,"
        " sum(f.fee_income) AS fee_income, sum(f.opex) AS opex, sum(f.provision) AS provision,"
        " sum(coalesce(f.avg_balance, f.balance)) AS balance_months,"
        " count(DISTINCT f.month) AS months"
        f" FROM {source} WHERE f.product_code = ANY(%(codes)s) AND f.month BETWEEN %(start)s AND %(end)s"
        " GROUP BY f.product_code ORDER BY f.product_code",
        {**params, "codes": codes, "start": start, "end": end},
    ).fetchall()
    return {r["product_code"]: {k: _f(v) if k != "product_code" else v for k, v in dict(r).items()} for r in rows}


_SUMMED = ("balance", "customers", "npl_balance", "overdue_balance", "interest_income", "interest_expense",
           "fee_income", "opex", "provision", "balance_months")


def _sum_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in _SUMMED:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = sum(vals) if vals else None
    out["months"] = max((r["months"] for r in rows if r.get("months")), default=0)
    return out


def _rate(flow: float | None, balance_months: float | None, annualise: bool = True) -> float | None:
    if flow is None or not balance_months:
        return None
    return round((12.0 if annualise else 1.0) * flow / balance_months * 100.0, 4)


def _share(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return round(part / whole * 100.0, 4)


def performance(r: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """Balance, customers, net contribution and rates of a product (or a group) from summed facts."""
    r = r or {}
    net = None
    if r.get("interest_income") is not None or r.get("interest_expense") is not None:
        net = ((r.get("interest_income") or 0) - (r.get("interest_expense") or 0) + (r.get("fee_income") or 0)
               - (r.get("opex") or 0) - (r.get("provision") or 0))
    bm = r.get("balance_months")
    opex_rate = _rate(r.get("opex"), bm)
    provision_rate = _rate(r.get("provision"), bm)
    yield_rate = _rate(r.get("interest_income"), bm)
    funds_rate = _rate(r.get("interest_expense"), bm)
    npl_rate = _share(r.get("npl_balance"), r.get("balance"))
    overdue_rate = _share(r.get("overdue_balance"), r.get("balance"))
    avg_balance = bm / r["months"] if bm and r.get("months") else None
    return {
        "balance": num(r.get("balance"), fmt_money(r.get("balance")), source),
        "avg_balance": num(avg_balance, fmt_money(avg_balance), source + "（窗口内月日均余额的平均）"),
        "customers": num(r.get("customers"), "—" if r.get("customers") is None else f"{r['customers']:,.0f} 户",
                         source),
        "net_contribution": num(None if net is None else round(net, 2), fmt_money(net), source),
        "opex_rate": num(opex_rate, pct(opex_rate), source + "：运营成本 × 12 ÷ Σ月日均余额"),
        "provision_rate": num(provision_rate, pct(provision_rate), source + "：减值拨备 × 12 ÷ Σ月日均余额"),
        "yield_rate": num(yield_rate, pct(yield_rate), source + "：利息收入 × 12 ÷ Σ月日均余额"),
        "funds_rate": num(funds_rate, pct(funds_rate), source + "：利息支出 × 12 ÷ Σ月日均余额"),
        "npl_rate": num(npl_rate, pct(npl_rate), source + "：不良余额 ÷ 余额（期末）"),
        "overdue_rate": num(overdue_rate, pct(overdue_rate), source + "：逾期余额 ÷ 余额（期末）"),
        "months": r.get("months") or 0,
    }


def _loan_quality(ctx: ToolContext, codes: list[str]) -> dict[str, Any] | None:
    row = ctx.conn.execute(
        "SELECT count(*) AS n, sum(balance) AS total,"
        " sum(balance) FILTER (WHERE five_class IN ('次级', '可疑', '损失')) AS npl,"
        " sum(balance) FILTER (WHERE five_class IN ('可疑', '损失')) AS loss,"
        " sum(rate * balance) FILTER (WHERE rate IS NOT NULL) AS rate_w,"
        " sum(balance) FILTER (WHERE rate IS NOT NULL) AS rate_b"
        " FROM loans WHERE product_code = ANY(%(codes)s) AND " + branch_in_scope("branch_code"),
        {"codes": codes, "scope": ctx.principal.scope_branch},
    ).fetchone()
    if row is None or not row["n"]:
        return None
    total = _f(row["total"])
    avg_rate = round(_f(row["rate_w"]) / _f(row["rate_b"]), 4) if row["rate_b"] else None  # type: ignore[operator]
    return {"loans": int(row["n"]), "total": total, "npl_share": _share(_f(row["npl"]) or 0.0, total),
            "loss_share": _share(_f(row["loss"]) or 0.0, total), "avg_rate": avg_rate}


# --- FTP ---------------------------------------------------------------------------------------------

def interpolate(curve: list[tuple[int, float]], term: int) -> tuple[float, list[int], str]:
    """Linear interpolation on a sorted (tenor, rate) curve, clamped at the ends: rate, tenors used,
    method (exact | interpolated | clamped_low | clamped_high)."""
    if term <= curve[0][0]:
        return curve[0][1], [curve[0][0]], "exact" if term == curve[0][0] else "clamped_low"
    if term >= curve[-1][0]:
        return curve[-1][1], [curve[-1][0]], "exact" if term == curve[-1][0] else "clamped_high"
    for (t0, r0), (t1, r1) in zip(curve, curve[1:], strict=False):
        if term == t0:
            return r0, [t0], "exact"
        if t0 < term < t1:
            return r0 + (r1 - r0) * (term - t0) / (t1 - t0), [t0, t1], "interpolated"
    return curve[-1][1], [curve[-1][0]], "exact"  # term == last tenor (handled above)


def ftp_rate(ctx: ToolContext, term: int | None) -> dict[str, Any] | None:
    """The FTP rate for a term from the latest curve, or None when the bank has no curve."""
    as_of = _one(ctx.conn.execute("SELECT max(as_of) AS d FROM ftp_curve").fetchone(), "d")
    if as_of is None or term is None:
        return None
    curve = [(int(r["term_months"]), float(r["rate"])) for r in ctx.conn.execute(
        "SELECT term_months, rate FROM ftp_curve WHERE as_of = %(d)s ORDER BY term_months", {"d": as_of})]
    rate, tenors, method = interpolate(curve, term)
    rate = round(rate, 4)
    points = "、".join(f"{t}个月 {r:.2f}%" for t, r in curve if t in tenors)
    how = {
        "exact": "取该期限",
        "interpolated": f"由{points}线性插值",
        "clamped_low": f"期限短于曲线最短期限，取{points}",
        "clamped_high": f"期限长于曲线最长期限，取{points}",
    }[method]
    source = f"FTP 曲线 {as_of.isoformat()}：{how}，{months_text(term)} {rate:.2f}%"
    return {"as_of": as_of.isoformat(), "term_months": term, "rate": rate, "display": pct(rate),
            "tenors": tenors, "method": method, "source": source,
            "curve": [{"term_months": t, "rate": r} for t, r in curve]}


# --- competitors -------------------------------------------------------------------------------------

def _type_category(product_type: str) -> str | None:
    if _LOAN_TYPE_RE.search(product_type):
        return "loan"
    if _DEPOSIT_TYPE_RE.search(product_type):
        return "deposit"
    return None


def competitor_rates(ctx: ToolContext, req: Requirement, term: int | None) -> tuple[dict[str, Any] | None, str]:
    """Peers' rates for the best-matching product type and the nearest term; None and why when none."""
    rows = [dict(r) for r in ctx.conn.execute(
        "SELECT as_of, bank, product_type, term_months, rate, notes FROM competitor_rates"
        " ORDER BY product_type, bank, as_of, term_months").fetchall()]
    if not rows:
        return None, "本行未提供竞品利率（competitor_rates），无法与同业比较"
    category_name = CATEGORY_NAMES.get(req.category or "", "")
    wanted = req.product_type or f"{req.purpose or ''}{category_name}"
    context = " ".join(x for x in (req.text, req.product_type, req.purpose, req.target_customers,
                                   SEGMENT_NAMES.get(req.segment or "", "")) if x)
    scored = []
    for ptype in sorted({r["product_type"] for r in rows}):
        cat = _type_category(ptype)
        if cat is not None and req.category in ("loan", "deposit") and cat != req.category:
            continue
        text_score = 0.6 * dice(ptype, wanted) + 0.4 * containment(ptype, context)
        terms = [r["term_months"] for r in rows if r["product_type"] == ptype]
        closeness = 0.0
        if term is not None:
            nearest = min(terms, key=lambda t: (abs(t - term), t))
            closeness = _ratio(float(nearest), float(term)) if term or nearest else 1.0
        scored.append((round(text_score + 0.2 * closeness, 4), round(text_score, 4), ptype))
    scored.sort(key=lambda s: (-s[0], s[2]))
    if not scored or scored[0][1] < MIN_TYPE_SCORE:
        return None, f"竞品利率中没有与“{wanted}”相近的产品类型，未作同业比较"
    _, text_score, ptype = scored[0]
    per_bank: list[dict[str, Any]] = []
    for bank in sorted({r["bank"] for r in rows if r["product_type"] == ptype}):
        mine = [r for r in rows if r["product_type"] == ptype and r["bank"] == bank]
        latest = max(r["as_of"] for r in mine)
        mine = [r for r in mine if r["as_of"] == latest]
        best = min(mine, key=lambda r: (abs(r["term_months"] - term) if term is not None else 0, r["term_months"]))
        per_bank.append({"bank": bank, "as_of": latest.isoformat(), "product_type": ptype,
                         "term_months": int(best["term_months"]), "rate": float(best["rate"]),
                         "display": pct(float(best["rate"])), "notes": best["notes"] or ""})
    rates = [b["rate"] for b in per_bank]
    quality = "高" if text_score >= 0.8 else "中" if text_score >= 0.5 else "低"
    gaps = sorted({b["term_months"] for b in per_bank})
    exact_term = term is not None and gaps == [term]
    term_note = (f"期限一致（{months_text(term)}）" if exact_term else
                 f"最接近的期限为{'、'.join(months_text(t) for t in gaps)}（需求 {months_text(term)}），仅供参考")
    src = f"竞品利率（{len(per_bank)}家同业各自最新一期，产品类型“{ptype}”）"
    lo, mid, hi = min(rates), round(statistics.median(rates), 4), max(rates)
    return {
        "product_type": ptype, "wanted": wanted,
        "match": {"similarity": text_score, "quality": quality, "term_exact": exact_term, "term_note": term_note,
                  "display": f"产品类型匹配度{quality}（{text_score:.2f}），{term_note}"},
        "banks": per_bank,
        "min": num(lo, pct(lo), src), "median": num(mid, pct(mid), src), "max": num(hi, pct(hi), src),
        "source": src,
    }, ""


# --- compliance --------------------------------------------------------------------------------------

def compliance_notes(ctx: ToolContext, req: Requirement, warnings: list[str]) -> list[dict[str, Any]]:
    """Relevant passages for the idea: the category's compliance rules first, then the product type
    with pricing words, then marketing and disclosure; at most MAX_PER_DOCUMENT per document and per
    query, so that one long table cannot crowd out the other rules."""
    if ctx.kb is None:
        warnings.append("未配置知识库，未检索适用的合规要点（请人工核对合规要求）")
        return []
    from tools import knowledge

    category_name = CATEGORY_NAMES.get(req.category or "", "")
    topic = req.product_type or f"{req.purpose or ''}{category_name}"
    rules = ["compliance", "regulation"]
    queries = [
        (f"{category_name}业务 合规 要点 {req.purpose or ''}".strip(), rules),
        (f"{topic} {req.collateral or ''} 利率 定价 合规".strip(), None),
        (f"{category_name} 营销宣传 年化利率 明示 消费者权益保护", rules),
    ]
    notes: list[dict[str, Any]] = []
    seen: set[Any] = set()
    per_doc: dict[str, int] = {}
    for query, doc_types in queries:
        try:
            result = knowledge.search_knowledge(ctx, query, doc_types=doc_types, k=20)
        except Exception:  # a broken index must not stop the design: say so instead
            log.exception("compliance search failed")
            warnings.append("知识库检索失败，未取得合规要点（请人工核对合规要求）")
            return notes
        taken = 0
        for p in result["passages"]:
            doc = str(p.get("path") or p["title"])
            if taken >= MAX_PER_DOCUMENT:
                break
            if not p.get("relevant") or p["chunk_id"] in seen or per_doc.get(doc, 0) >= MAX_PER_DOCUMENT:
                continue
            seen.add(p["chunk_id"])
            per_doc[doc] = per_doc.get(doc, 0) + 1
            taken += 1
            snippet = p["snippet"] if len(p["snippet"]) <= 240 else p["snippet"][:240] + "……"
            notes.append({"chunk_id": p["chunk_id"], "title": p["title"], "doc_type": p.get("doc_type"),
                          "path": p.get("path"), "heading": p.get("heading", ""), "snippet": snippet,
                          "query": query})
    if not notes:
        warnings.append("知识库中没有检索到与该产品设想直接相关的合规要点（请人工核对合规要求）")
    return notes[:MAX_COMPLIANCE]


# --- filling the requirement ---------------------------------------------------------------------------

def _from(p: dict[str, Any]) -> str:
    return f"从相似产品 {p['name']}（{p['code']}）取得"


def _first_with(similar: list[dict[str, Any]], key: str, numeric: bool = False) -> dict[str, Any] | None:
    for p in similar:
        v = _el(p, key)
        if v is not None and v.strip() and (not numeric or parse_number(v) is not None):
            return p
    return None


def fill_from_similar(req: Requirement, similar: list[dict[str, Any]]) -> None:
    """Fill what the designer left open from the best-ranked similar product that has it (in place;
    a value already there, said or filled, is kept). Records each in `req.filled`."""
    if not similar:
        return
    if req.segment is None:
        req.segment = similar[0]["segment"]
        req.filled["segment"] = _from(similar[0])
    if req.term_max_months is None:
        p = _first_with(similar, "term_max_months", numeric=True)
        if p is not None:
            t = int(_el_num(p, "term_max_months") or 0)
            if req.term_min_months is not None and t < req.term_min_months:
                t = req.term_min_months
            req.term_max_months = t
            req.filled["term_max_months"] = _from(p)
    if req.term_min_months is None:
        p = _first_with(similar, "term_min_months", numeric=True)
        if p is not None:
            t = int(_el_num(p, "term_min_months") or 0)
            req.term_min_months = min(t, req.term_max_months) if req.term_max_months is not None else t
            req.filled["term_min_months"] = _from(p)
    amount_keys: tuple[tuple[str, str], ...] = (("amount_max", "amount_max"), ("amount_min", "amount_min"))
    if req.category == "deposit":
        amount_keys = (("amount_min", "min_amount"),)
    for attr, key in amount_keys:
        if getattr(req, attr) is None:
            p = _first_with(similar, key, numeric=True)
            if p is not None:
                v = float(_el_num(p, key) or 0)
                if attr == "amount_min" and req.amount_max is not None:
                    v = min(v, req.amount_max)
                setattr(req, attr, v)
                req.filled[attr] = _from(p)
    text_keys = ["target_customers"]
    if req.category == "loan":
        text_keys += ["collateral", "repayment"]
    for key in text_keys:
        if getattr(req, key) is None:
            p = _first_with(similar, key)
            if p is not None:
                setattr(req, key, _el(p, key))
                req.filled[key] = _from(p)
    if not req.channels:
        p = _first_with(similar, "channels")
        if p is not None:
            req.channels = split_channels(_el(p, "channels"))
            req.filled["channels"] = _from(p)


# --- the whole evidence -----------------------------------------------------------------------------

def _similar_entry(p: dict[str, Any], perf: dict[str, Any]) -> dict[str, Any]:
    elements = {
        k: {"value": e.get("value", ""), "unit": e.get("unit", ""), "name": ELEMENT_NAMES.get(k, k),
            "display": element_display(str(e.get("value", "")), str(e.get("unit", "")))}
        for k, e in sorted(p["elements"].items())
    }
    return {
        "code": p["code"], "name": p["name"], "segment": p["segment"],
        "segment_name": SEGMENT_NAMES.get(p["segment"], p["segment"]), "status": p["status"],
        "status_name": STATUS_NAMES.get(p["status"], p["status"]),
        "score": p["score"], "score_display": f"{p['score']:.1f}", "score_parts": p["parts"], "why": p["why"],
        "elements": elements, "performance": perf,
    }


def _risk(req: Requirement, total_perf: dict[str, Any] | None, quality: dict[str, Any] | None,
          names: str, assumptions: list[str], warnings: list[str]) -> dict[str, Any]:
    npl = total_perf["npl_rate"]["value"] if total_perf else None
    provision = total_perf["provision_rate"] if total_perf else None
    out: dict[str, Any] = {
        "npl_rate": total_perf["npl_rate"] if total_perf else num(None, "—", "无相似产品"),
        "overdue_rate": total_perf["overdue_rate"] if total_perf else num(None, "—", "无相似产品"),
        "provision_rate": provision or num(None, "—", "无相似产品"),
        "loans": None,
    }
    if quality is not None:
        src = f"贷款明细（loans.csv，{names}，{quality['loans']} 笔）"
        out["loans"] = {
            "count": quality["loans"],
            "npl_share": num(quality["npl_share"], pct(quality["npl_share"]), src + "：次级+可疑+损失余额占比"),
            "loss_share": num(quality["loss_share"], pct(quality["loss_share"]), src + "：可疑+损失余额占比"),
            "avg_rate": num(quality["avg_rate"], pct(quality["avg_rate"]), src + "：按余额加权的合同利率"),
        }
    if npl is not None:
        pd = num(npl, pct(npl), f"相似产品不良率（{total_perf['npl_rate']['source']}）", assumption=False)  # type: ignore[index]
    elif quality is not None and quality["npl_share"] is not None:
        pd = num(quality["npl_share"], pct(quality["npl_share"]), "相似产品贷款明细的不良余额占比", assumption=False)
    else:
        pd = num(DEFAULT_PD, pct(DEFAULT_PD), f"假设：无相似产品不良数据，违约概率取默认值 {DEFAULT_PD:.2f}%",
                 assumption=True)
        assumptions.append(pd["source"])
        if req.category == "loan":
            warnings.append("相似产品没有不良数据，预期损失按默认违约概率估算（假设）")
    lgd, cls, unknown = lgd_for(req.collateral)
    lgd_src = (f"假设：担保方式未明确，违约损失率按信用类 {lgd:.0f}%" if unknown else
               f"违约损失率假设表：{cls}类 {lgd:.0f}%（信用60%、保证45%、抵押30%、质押20%）")
    el = round(pd["value"] * lgd / 100.0, 4)
    out.update({
        "pd": pd,
        "lgd": num(lgd, f"{lgd:.0f}%", lgd_src, assumption=True, collateral_class=cls),
        "expected_loss_rate": num(el, pct(el), f"预期损失率 = 违约概率代理 {pd['display']} × 违约损失率 {lgd:.0f}%",
                                  formula="PD × LGD"),
    })
    return out


def gather_evidence(ctx: ToolContext, req: Requirement) -> dict[str, Any]:
    """为新产品设想收集证据：相似在售产品（要素与近12个月经营表现）、对应期限的FTP资金成本、竞品利率、
    相似产品的不良与损失、适用的合规要点；缺少的可选数据给出提示。会用相似产品补全需求中未说明的要素。"""
    if req.category is None:
        raise PuyiError("需求中没有看出产品大类（贷款、存款、支付结算、中间业务或金融市场），无法收集证据")
    warnings: list[str] = []
    assumptions: list[str] = []
    ranked = rank_similar(ctx, req, warnings)
    top = ranked[:TOP_SIMILAR]
    if not top:
        warnings.append(f"本行没有在售的{CATEGORY_NAMES[req.category]}类可售产品可供参照，要素与成本将使用默认假设")
    fill_from_similar(req, top)

    window = _window(ctx)
    similar: list[dict[str, Any]] = []
    total_perf: dict[str, Any] | None = None
    window_info: dict[str, Any] | None = None
    codes = [p["code"] for p in top]
    names = "、".join(p["name"] for p in top[:3]) + (f"等{len(top)}个产品" if len(top) > 3 else "")
    if window is not None and top:
        start, end, months = window
        label = label_for(start, end)
        window_info = {"start": start.isoformat()[:7], "end": end.isoformat()[:7], "months": months, "label": label}
        facts = _fact_rows(ctx, codes, start, end)
        for p in top:
            src = f"管理会计事实 {label}，{ctx.principal.scope_label}，{p['name']}（{p['code']}）"
            similar.append(_similar_entry(p, performance(facts.get(p["code"]), src)))
        rows = [facts[c] for c in codes if c in facts]
        if rows:
            total_perf = performance(_sum_rows(rows), f"管理会计事实 {label}，{ctx.principal.scope_label}，相似产品 {names} 合计")
        else:
            warnings.append(f"相似产品在{label}没有经营数据（{ctx.principal.scope_label}）")
    else:
        similar = [_similar_entry(p, performance(None, "无经营数据")) for p in top]
        if window is None:
            warnings.append("本行尚无经营数据（metrics_monthly），相似产品没有经营表现")

    term = pricing_term(req)
    ftp = ftp_rate(ctx, term)
    if ftp is None:
        warnings.append("本行未提供FTP曲线（ftp_curve）" if term is not None else "需求与相似产品都没有期限，无法取FTP")
    competitors, why_none = competitor_rates(ctx, req, term)
    if competitors is None:
        warnings.append(why_none)
    elif not competitors["match"]["term_exact"]:
        warnings.append(f"竞品利率：{competitors['match']['term_note']}")

    quality = _loan_quality(ctx, codes) if req.category == "loan" and codes else None
    risk = _risk(req, total_perf, quality, names, assumptions, warnings) if req.category == "loan" else None
    compliance = compliance_notes(ctx, req, warnings)
    return {
        "category": req.category, "segment": req.segment, "scope": ctx.principal.scope_label,
        "window": window_info, "pricing_term_months": term,
        "similar_products": similar, "similar_total": total_perf,
        "ftp": ftp, "competitors": competitors, "risk": risk, "compliance": compliance,
        "warnings": warnings, "assumptions": assumptions,
    }
