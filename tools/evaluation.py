"""Product evaluation (产品评价): a scorecard per category, lifecycle stages, exit candidates, and
how the products of one category compete.

Everything is read from `tools.facts.fact_source`, i.e. the facts summed over the asker's branch
scope. A product is compared only with the other sellable products of its own category (retired
ones excluded), so the scores mean the same thing on any bank, whatever its size or currency unit.

Window
    `months` months ending at `end` (default: the latest month with facts). The base month is the
    month just before the window. Flows (income, complaints, lost customers…) are summed over the
    window; stocks (balance, customers, npl…) are read at the end (and at the base for growth).
    Rates are always computed from summed facts, never by averaging rates. A window reaching back
    before the first month with facts is cut to start there (and the result says so).

Indicators (each one only where the category lists it; "↓" = lower is better)
    财务贡献  net_contribution 净贡献 (window sum, 元); contribution_margin 年化净贡献率 = net
              contribution × 12 / months with facts ÷ average daily balance (month-end balance when
              avg_balance is empty); contribution_per_customer 户均净贡献 = net contribution ÷
              customers at the end.
    市场表现  balance_growth 余额增长率 (end vs base); customer_growth 客户增长率; balance_share
              类内余额占比 (end); customer_share 类内客户占比; volume_share 类内发生额占比 (window).
    客户体验  complaint_rate ↓ 万户投诉率 (window complaints ÷ customers at the end × 10000);
              satisfaction 满意度 (customer-weighted, end); churn_rate ↓ 客户流失率 (window lost
              customers ÷ average month-end customers).
    风险管控  npl_rate ↓ 不良率, overdue_rate ↓ 逾期率 (end); credit_cost ↓ 年化信用成本率
              (provision, annualised, ÷ average balance); balance_volatility ↓ 余额波动率 (standard
              deviation of the monthly balance change in %; not for products in their introduction
              stage, whose ramp-up is no risk).

    An indicator is skipped for a category when the bank has no data for it (an optional column
    left empty) or every product has the same value (nothing to tell them apart); a dimension left
    with no indicator loses its weight and the others are renormalised. The result lists what was
    skipped and why, so the answer can say so.

Scores
    Each indicator is scored 0–100 by percentile rank within the category: the share of the other
    products it does better than (ties count half), so the best is 100 and the worst 0 (a category
    with one product scores 50). A dimension's score is the mean of its indicators' scores; the
    total is the weighted sum of the dimensions, with these weights (%), which differ by category:

    | 大类       | 财务贡献 | 市场表现 | 客户体验 | 风险管控 |
    | ---------- | -------- | -------- | -------- | -------- |
    | 存款       | 35       | 35       | 20       | 10       |
    | 贷款       | 35       | 20       | 15       | 30       |
    | 支付结算   | 30       | 35       | 25       | 10       |
    | 中间业务   | 35       | 25       | 25       | 15       |
    | 金融市场   | 45       | 30       | 5        | 20       |

    Loans weigh risk most (credit losses decide whether a loan product pays); deposits weigh scale
    and growth (cheap, stable funding); payment products weigh reach and experience (they are a
    gateway to customers); wealth products weigh fees and suitability complaints; market products
    are few, institutional and judged mostly on return.

Lifecycle (导入/成长/成熟/衰退), from the balance trend at the end month, independent of the window
    age = months from the launch month (launch_date; else the first month with facts) to the end.
    g_long = annualised balance growth over the last 12 months (or since the first month with
    facts if later); g_recent = annualised growth over the last 6 months (half of the available
    span when it is shorter than 12 months). Annualised: (end / start)^(12 / months) − 1.
    1. 导入期: age < 12 months.
    2. 衰退期: no balance at the end, or g_long ≤ −5 %, or g_recent ≤ −10 %.
    3. 成长期: g_long ≥ 15 % and g_recent ≥ 5 % (still growing lately).
    4. 成熟期: otherwise (slow growth, or fast growth that has levelled off).
    With a single month of facts and no launch date the stage is unknown.

Exit candidates (低效产品)
    An operating or suspended product, past its introduction stage, with a total score below
    `exit_score` (default 40) AND (net contribution over the window ≤ 0 OR in decline). The
    reasons are given in words.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from core.access import Principal
from core.text import fmt_money, money_scale
from tools.catalog import CATEGORY_NAMES, STATUS_NAMES
from tools.context import ToolContext
from tools.facts import SOURCE_COLUMNS, fact_meta, fact_source, resolve_branch
from tools.periods import FuturePeriod, label_for, month_label, shift

DIMENSIONS = ("finance", "market", "customer", "risk")
DIMENSION_NAMES = {"finance": "财务贡献", "market": "市场表现", "customer": "客户体验", "risk": "风险管控"}
WEIGHTS: dict[str, dict[str, int]] = {
    "deposit": {"finance": 35, "market": 35, "customer": 20, "risk": 10},
    "loan": {"finance": 35, "market": 20, "customer": 15, "risk": 30},
    "payment": {"finance": 30, "market": 35, "customer": 25, "risk": 10},
    "intermediary": {"finance": 35, "market": 25, "customer": 25, "risk": 15},
    "market": {"finance": 45, "market": 30, "customer": 5, "risk": 20},
}
STAGES = ("导入期", "成长期", "成熟期", "衰退期")
EXIT_STATUSES = ("operating", "suspended")

# Lifecycle thresholds (annualised growth, %) and the age of a new product (months): see the docstring.
INTRO_MONTHS = 12
DECLINE_LONG, DECLINE_RECENT = -5.0, -10.0
GROWTH_LONG, GROWTH_RECENT = 15.0, 5.0
EXIT_SCORE = 40.0
DETAIL_LIMIT = 20  # products listed with every indicator; longer lists carry dimension scores only

# The rules in words, for answers (every number in them comes from the constants above).
SCORING_RULE = ("每个指标在同一大类的可售产品之间按百分位打分（0–100，最好为 100，并列取中间），维度得分取所含指标的平均，"
                "综合评分按大类权重加权")
LIFECYCLE_RULE = (f"上线不足 {INTRO_MONTHS} 个月为导入期；期末无余额、近 12 个月余额年化增速 ≤ {DECLINE_LONG:g}% 或近 6 个月"
                  f"年化 ≤ {DECLINE_RECENT:g}% 为衰退期；近 12 个月年化 ≥ {GROWTH_LONG:g}% 且近 6 个月年化 ≥ {GROWTH_RECENT:g}% "
                  "为成长期；其余为成熟期（数据不足 12 个月时按已有月份折算年化）")


def exit_rule(threshold: float) -> str:
    return (f"运营或停牌中、已过导入期，综合评分低于 {threshold:g} 分，且评价期内净贡献不为正或处于衰退期")


@dataclass(frozen=True)
class Indicator:
    key: str
    name: str
    dimension: str
    unit: str  # 元 | % | ‱ | 分 | 元/户
    higher_is_better: bool
    categories: tuple[str, ...]


_ALL = tuple(CATEGORY_NAMES)
INDICATORS: tuple[Indicator, ...] = (
    Indicator("net_contribution", "净贡献", "finance", "元", True, _ALL),
    Indicator("contribution_margin", "年化净贡献率", "finance", "%", True, ("deposit", "loan", "intermediary", "market")),
    Indicator("contribution_per_customer", "户均净贡献", "finance", "元/户", True, ("payment", "intermediary")),
    Indicator("balance_growth", "余额增长率", "market", "%", True, _ALL),
    Indicator("customer_growth", "客户增长率", "market", "%", True, _ALL),
    Indicator("balance_share", "类内余额占比", "market", "%", True, ("deposit", "loan", "intermediary", "market")),
    Indicator("customer_share", "类内客户占比", "market", "%", True, ("payment",)),
    Indicator("volume_share", "类内发生额占比", "market", "%", True, ("payment",)),
    Indicator("complaint_rate", "万户投诉率", "customer", "‱", False, _ALL),
    Indicator("satisfaction", "满意度", "customer", "分", True, _ALL),
    Indicator("churn_rate", "客户流失率", "customer", "%", False, _ALL),
    Indicator("npl_rate", "不良率", "risk", "%", False, ("loan",)),
    Indicator("overdue_rate", "逾期率", "risk", "%", False, ("loan",)),
    Indicator("credit_cost", "年化信用成本率", "risk", "%", False, _ALL),
    Indicator("balance_volatility", "余额波动率", "risk", "%", False, ("deposit", "payment", "intermediary", "market")),
)


# --- display ------------------------------------------------------------------------------------


money = fmt_money


def pct(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+,.{digits}f}%" if signed else f"{value:,.{digits}f}%"


def show(value: float | None, unit: str, signed: bool = False) -> str:
    """An indicator value with its unit (a growth rate with its sign)."""
    if value is None:
        return "—"
    if signed:
        return pct(value, 2, True)
    if unit == "元":
        return money(value)
    if unit == "元/户":
        return f"{value:,.2f} 元/户"
    if unit == "户":
        return f"{value:,.0f} 户"
    if unit == "分":
        return f"{value:.1f} 分"
    if unit == "‱":
        return f"{value:,.2f}‱"
    return pct(value)


def score_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


# --- window and facts ---------------------------------------------------------------------------


class _Err(Exception):
    """An expected answer-with-no-numbers (unknown category, no facts…), returned as a result."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def parse_month(text: str | date | None) -> date | None:
    """A month given as YYYY-MM (or a date); ValueError with a message for people otherwise."""
    if text is None or isinstance(text, date):
        return text
    t = str(text).strip()
    try:
        if len(t) < 7 or t[4] not in "-/.":
            raise ValueError(t)
        return date(int(t[:4]), int(t[5:7]), 1)
    except ValueError as exc:
        raise ValueError(f"无法识别月份「{text}」，请用 YYYY-MM 格式。") from exc


def _window(ctx: ToolContext, end: str | date | None, months: int) -> tuple[date, date, int, str]:
    """(base month, end month, months, note) for a window of `months` months ending at `end`; a
    window reaching back before the first month with facts starts from that month instead."""
    meta = fact_meta(ctx.conn)
    if meta.latest_month is None or meta.first_month is None:
        raise _Err("no_facts", "尚未导入经营指标数据（metrics_monthly），无法进行产品评价。")
    try:
        e = parse_month(end) or meta.latest_month
    except ValueError as exc:
        raise _Err("bad_month", str(exc)) from exc
    if e > meta.latest_month:
        raise FuturePeriod(month_label(e), meta.latest_month)
    if e < meta.first_month:
        raise _Err("no_data", f"{month_label(e)}没有经营数据：数据从{month_label(meta.first_month)}开始。")
    months = max(1, min(int(months), 60))
    base, note = shift(e, -months), ""
    if base < meta.first_month:
        base = meta.first_month if meta.first_month < e else shift(e, -1)
        note = f"经营数据从{month_label(meta.first_month)}开始，评价期相应缩短为{_months_between(base, e)}个月"
        months = _months_between(base, e)
    return base, e, months, note


def _scope_label(ctx: ToolContext, branch: str | None) -> str:
    if branch is None:
        return ctx.principal.scope_label
    row = ctx.conn.execute("SELECT name FROM branches WHERE code = %(b)s", {"b": branch}).fetchone()
    return f"{row['name'] if row else branch}及下辖机构"


def _series(ctx: ToolContext, principal: Principal, branch: str | None, categories: list[str],
            lo: date, hi: date) -> dict[str, dict[date, dict[str, Decimal | None]]]:
    """Per product and month, the facts summed over the scope: product → month → column → sum."""
    src, params = fact_source(ctx.conn, principal, branch)
    sums = ", ".join(f"sum(f.{c}) AS {c}" for c in SOURCE_COLUMNS if c != "avg_balance")
    rows = ctx.conn.execute(
        f"SELECT f.month, f.product_code, {sums}, sum(coalesce(f.avg_balance, f.balance)) AS avg_balance"
        f" FROM {src} JOIN products p ON p.code = f.product_code"
        " WHERE p.level = 'sellable' AND p.category = ANY(%(cats)s) AND f.month BETWEEN %(lo)s AND %(hi)s"
        " GROUP BY f.month, f.product_code",
        {**params, "cats": categories, "lo": lo, "hi": hi},
    ).fetchall()
    out: dict[str, dict[date, dict[str, Decimal | None]]] = {}
    for r in rows:
        out.setdefault(r["product_code"], {})[r["month"]] = {c: r[c] for c in SOURCE_COLUMNS}
    return out


def _products(ctx: ToolContext, categories: list[str]) -> dict[str, dict[str, Any]]:
    rows = ctx.conn.execute(
        "SELECT code, name, category, segment, status, launch_date FROM products"
        " WHERE level = 'sellable' AND category = ANY(%(cats)s) AND status <> 'retired' ORDER BY code",
        {"cats": categories},
    ).fetchall()
    return {r["code"]: dict(r) for r in rows}


def _add(*values: Decimal | None) -> Decimal | None:
    present = [v for v in values if v is not None]
    return sum(present, Decimal(0)) if present else None


def _total(rows: list[dict[str, Decimal | None]], col: str) -> Decimal | None:
    return _add(*(r[col] for r in rows))


def _ratio(num: Decimal | float | None, den: Decimal | float | None, scale: float = 1.0) -> float | None:
    if num is None or den is None or float(den) == 0:
        return None
    return scale * float(num) / float(den)


def _growth(end: Decimal | float | None, base: Decimal | float | None) -> float | None:
    if end is None or base is None or float(base) <= 0:
        return None
    return 100.0 * (float(end) / float(base) - 1.0)


def _annualised(end: Decimal | None, start: Decimal | None, months: int) -> float | None:
    if end is None or start is None or float(start) <= 0 or months <= 0:
        return None
    return 100.0 * ((max(float(end), 0.0) / float(start)) ** (12.0 / months) - 1.0)


def net_contribution(rows: list[dict[str, Decimal | None]]) -> Decimal | None:
    """tools.metric_defs net_contribution over summed facts (opex and provision optional)."""
    ii, ie, fee = _total(rows, "interest_income"), _total(rows, "interest_expense"), _total(rows, "fee_income")
    if ii is None and ie is None and fee is None:
        return None
    return ((ii or Decimal(0)) - (ie or Decimal(0)) + (fee or Decimal(0))
            - (_total(rows, "opex") or Decimal(0)) - (_total(rows, "provision") or Decimal(0)))


def _months_between(a: date, b: date) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


# --- indicators, scores, lifecycle ----------------------------------------------------------------


def _raw_indicators(series: dict[date, dict[str, Decimal | None]], base: date, end: date,
                    totals: dict[str, Decimal | None]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Indicator values of one product over (base, end], and the figures they come from."""
    window = [series[m] for m in sorted(series) if base < m <= end]
    at_end, at_base = series.get(end), series.get(base)
    k = len(window)
    nc = net_contribution(window)
    prov = _total(window, "provision")
    avg_bal = _ratio(_total(window, "avg_balance"), k) if k else None
    bal_end = at_end["balance"] if at_end else None
    cust_end = at_end["customers"] if at_end else None
    mean_cust = _ratio(_total(window, "customers"), k) if k else None
    changes = []
    months = sorted(m for m in series if base <= m <= end)
    for a, b in zip(months, months[1:], strict=False):
        g = _growth(series[b]["balance"], series[a]["balance"]) if _months_between(a, b) == 1 else None
        if g is not None:
            changes.append(g)
    values: dict[str, float | None] = {
        "net_contribution": None if nc is None else float(nc),
        "contribution_margin": _ratio(nc * 12 / k if nc is not None and k else None, avg_bal, 100.0),
        "contribution_per_customer": _ratio(nc, cust_end),
        "balance_growth": _growth(bal_end, at_base["balance"] if at_base else None),
        "customer_growth": _growth(cust_end, at_base["customers"] if at_base else None),
        "balance_share": _ratio(bal_end, totals["balance"], 100.0),
        "customer_share": _ratio(cust_end, totals["customers"], 100.0),
        "volume_share": _ratio(_total(window, "volume"), totals["volume"], 100.0),
        "complaint_rate": _ratio(_total(window, "complaints"), cust_end, 10000.0),
        "satisfaction": _ratio(at_end["satisfaction_w"], at_end["satisfaction_n"]) if at_end else None,
        "churn_rate": _ratio(_total(window, "lost_customers"), mean_cust, 100.0),
        "npl_rate": _ratio(at_end["npl_balance"], bal_end, 100.0) if at_end else None,
        "overdue_rate": _ratio(at_end["overdue_balance"], bal_end, 100.0) if at_end else None,
        "credit_cost": _ratio(prov * 12 / k if prov is not None and k else None, avg_bal, 100.0),
        "balance_volatility": statistics.pstdev(changes) if len(changes) >= 2 else None,
    }
    figures: dict[str, Any] = {
        "balance_end": bal_end, "balance_base": at_base["balance"] if at_base else None,
        "customers_end": cust_end, "customers_base": at_base["customers"] if at_base else None,
        "net_contribution": nc, "avg_balance": avg_bal, "months_with_facts": k,
    }
    return values, figures


def percentile_scores(values: dict[str, float | None], higher_is_better: bool) -> dict[str, float | None]:
    """0–100 per product: the share of the other products it beats, ties counting half."""
    known = sorted(((v if higher_is_better else -v), k) for k, v in values.items() if v is not None)
    n = len(known)
    out: dict[str, float | None] = {k: None for k in values}
    i = 0
    while i < n:  # one pass over runs of equal values (sorted, so the products beaten come first)
        j = i
        while j < n and known[j][0] == known[i][0]:
            j += 1
        score = 50.0 if n == 1 else 100.0 * (i + 0.5 * (j - i - 1)) / (n - 1)
        for _, code in known[i:j]:
            out[code] = score
        i = j
    return out


def lifecycle(series: dict[date, dict[str, Decimal | None]], end: date, launch: date | None) -> dict[str, Any]:
    """The stage at `end` by the rules of the module docstring, with the figures behind it."""
    months = sorted(m for m in series if m <= end and series[m]["balance"] is not None)
    first = months[0] if months else end
    start_month = date(launch.year, launch.month, 1) if launch else first
    age = _months_between(start_month, end)
    bal_end = series[end]["balance"] if end in series else None
    long_from = max(shift(end, -12), first)
    n_long = _months_between(long_from, end)
    n_recent = 6 if n_long >= 12 else max(1, n_long // 2)
    recent_from = shift(end, -n_recent)
    g_long = _annualised(bal_end, series[long_from]["balance"], n_long) if long_from in series and n_long else None
    g_recent = _annualised(bal_end, series[recent_from]["balance"], n_recent) \
        if recent_from in series and n_long else None
    facts = {"age_months": age, "g_long": g_long, "g_long_months": n_long, "g_recent": g_recent,
             "g_recent_months": n_recent if n_long else 0}
    long_txt = f"近{n_long}个月余额年化增速{pct(g_long, 1, True)}"
    recent_txt = f"近{n_recent}个月年化{pct(g_recent, 1, True)}"
    if age < INTRO_MONTHS:
        return {"stage": "导入期", "reason": f"上线{age}个月（不足{INTRO_MONTHS}个月）", **facts}
    if bal_end is None or float(bal_end) <= 0:
        return {"stage": "衰退期", "reason": "期末已无余额", **facts}
    if g_long is None:
        return {"stage": None, "reason": "数据不足，无法判断趋势", **facts}
    if g_long <= DECLINE_LONG or (g_recent is not None and g_recent <= DECLINE_RECENT):
        return {"stage": "衰退期", "reason": f"{long_txt}，{recent_txt}", **facts}
    if g_long >= GROWTH_LONG and g_recent is not None and g_recent >= GROWTH_RECENT:
        return {"stage": "成长期", "reason": f"{long_txt}，{recent_txt}，仍在较快增长", **facts}
    note = "，增长已放缓" if g_long >= GROWTH_LONG else "，增速平稳"
    return {"stage": "成熟期", "reason": f"{long_txt}，{recent_txt}{note}", **facts}


def _evaluate(ctx: ToolContext, categories: list[str], base: date, end: date, branch: str | None,
              exit_score: float = EXIT_SCORE) -> dict[str, Any]:
    """Scores, stages and exit flags of every evaluated product of `categories` (internal shape)."""
    meta = _products(ctx, categories)
    series = _series(ctx, ctx.principal, branch, categories, min(base, shift(end, -12)), end)
    codes = [c for c in meta if end in series.get(c, {})]
    by_cat: dict[str, list[str]] = {}
    for c in codes:
        by_cat.setdefault(meta[c]["category"], []).append(c)

    products: dict[str, dict[str, Any]] = {}
    cats_out: dict[str, dict[str, Any]] = {}
    for cat, members in by_cat.items():
        window_rows = [series[c][m] for c in members for m in series[c] if base < m <= end]
        totals = {
            "balance": _add(*(series[c][end]["balance"] for c in members)),
            "customers": _add(*(series[c][end]["customers"] for c in members)),
            "volume": _total(window_rows, "volume"),
        }
        raw: dict[str, dict[str, float | None]] = {}
        figures: dict[str, dict[str, Any]] = {}
        life: dict[str, dict[str, Any]] = {}
        for c in members:
            raw[c], figures[c] = _raw_indicators(series[c], base, end, totals)
            life[c] = lifecycle(series[c], end, meta[c]["launch_date"])
            if life[c]["stage"] == "导入期":
                raw[c]["balance_volatility"] = None  # a ramp-up is not a risk

        used: list[Indicator] = []
        skipped: list[dict[str, str]] = []
        scores: dict[str, dict[str, float | None]] = {}
        for ind in INDICATORS:
            if cat not in ind.categories:
                continue
            values = {c: raw[c][ind.key] for c in members}
            known = {round(v, 9) for v in values.values() if v is not None}
            if not known:
                skipped.append({"indicator": ind.key, "name": ind.name, "reason": "缺少计算所需的数据"})
                continue
            if len(known) == 1 and len(members) > 1:
                skipped.append({"indicator": ind.key, "name": ind.name, "reason": "类内各产品取值相同，无法区分"})
                continue
            used.append(ind)
            scores[ind.key] = percentile_scores(values, ind.higher_is_better)

        weights = WEIGHTS[cat]
        active = {d: w for d, w in weights.items() if any(i.dimension == d for i in used)}
        norm = sum(active.values())
        effective = {d: (100.0 * w / norm if d in active else 0.0) for d, w in weights.items()}
        notes = [f"{DIMENSION_NAMES[d]}没有可用指标，其权重按比例分配给其他维度"
                 for d in DIMENSIONS if d not in active]

        for c in members:
            dims: dict[str, dict[str, Any]] = {}
            for d in DIMENSIONS:
                got = [s for i in used if i.dimension == d and (s := scores[i.key][c]) is not None]
                value = sum(got) / len(got) if got else None
                dims[d] = {"name": DIMENSION_NAMES[d], "score": value, "display": score_text(value)}
            have = {d: w for d, w in active.items() if dims[d]["score"] is not None}
            total = (sum(dims[d]["score"] * w for d, w in have.items()) / sum(have.values())) if have else None
            indicators = {
                i.key: {"name": i.name, "dimension": i.dimension, "unit": i.unit, "value": raw[c][i.key],
                        "display": show(raw[c][i.key], i.unit, i.key.endswith("_growth")),
                        "score": scores[i.key][c],
                        "score_display": score_text(scores[i.key][c])}
                for i in used
            }
            p, fig, stage = meta[c], figures[c], life[c]
            products[c] = {
                "code": c, "name": p["name"], "category": cat, "category_name": CATEGORY_NAMES[cat],
                "status": p["status"], "status_name": STATUS_NAMES.get(p["status"], p["status"]),
                "launch_date": p["launch_date"].isoformat() if p["launch_date"] else None,
                "total": total, "total_display": score_text(total),
                "dimensions": dims, "indicators": indicators,
                "partial": len(have) < len(active),
                "balance_end": _float(fig["balance_end"]), "balance_end_display": money(fig["balance_end"]),
                "net_contribution": _float(fig["net_contribution"]),
                "net_contribution_display": money(fig["net_contribution"]),
                "balance_growth": raw[c]["balance_growth"],
                "balance_growth_display": pct(raw[c]["balance_growth"], 2, True),
                "stage": stage["stage"], "stage_reason": stage["reason"],
                "lifecycle": {k: v for k, v in stage.items() if k not in ("stage", "reason")},
            }
        ranked = sorted(members, key=lambda c: (products[c]["total"] is None, -(products[c]["total"] or 0.0), c))
        for r, c in enumerate(ranked, 1):
            products[c]["rank"] = r
            products[c]["rank_of"] = len(members)
        cats_out[cat] = {
            "category": cat, "name": CATEGORY_NAMES[cat], "products": len(members),
            "weights": weights, "weights_display": {d: f"{w}%" for d, w in weights.items()},
            "effective_weights": {d: round(w, 1) for d, w in effective.items()},
            "effective_weights_display": {d: f"{w:.1f}%" for d, w in effective.items()},
            "indicators": [{"key": i.key, "name": i.name, "dimension": i.dimension,
                            "dimension_name": DIMENSION_NAMES[i.dimension], "unit": i.unit,
                            "higher_is_better": i.higher_is_better} for i in used],
            "skipped": skipped, "notes": notes,
            "balance_end": _float(totals["balance"]), "balance_end_display": money(totals["balance"]),
            "order": ranked,
        }
    for p in products.values():
        _exit_flag(p, exit_score)
    return {"categories": cats_out, "products": products, "series": series, "meta": meta}


_COMPACT = ("code", "name", "category", "category_name", "status", "status_name", "total", "total_display", "rank",
            "rank_of", "partial", "net_contribution", "net_contribution_display", "balance_growth_display", "stage",
            "stage_reason", "exit_candidate", "exit_reasons")


def _compact(p: dict[str, Any]) -> dict[str, Any]:
    """A product row of a long list: scores and what the answers show, without the indicator detail."""
    row = {k: p[k] for k in _COMPACT}
    row["total"] = None if p["total"] is None else round(p["total"], 2)
    row["dimensions"] = {d: {"score": None if v["score"] is None else round(v["score"], 2), "display": v["display"]}
                         for d, v in p["dimensions"].items()}
    return row


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _exit_flag(p: dict[str, Any], threshold: float) -> None:
    """Mark a low-efficiency product (see the module docstring) and say why in words."""
    reasons: list[str] = []
    low = p["total"] is not None and p["total"] < threshold
    losing = p["net_contribution"] is not None and p["net_contribution"] <= 0
    declining = p["stage"] == "衰退期"
    eligible = p["status"] in EXIT_STATUSES and p["stage"] != "导入期"
    p["exit_candidate"] = bool(eligible and low and (losing or declining))
    if not p["exit_candidate"]:
        p["exit_reasons"] = []
        return
    reasons.append(f"综合评分 {p['total_display']} 分（低于 {threshold:.0f} 分），{p['category_name']}类第 "
                   f"{p['rank']}/{p['rank_of']} 名")
    if losing:
        reasons.append(f"评价期内净贡献 {p['net_contribution_display']}，没有盈利")
    if declining:
        reasons.append(f"处于衰退期：{p['stage_reason']}")
    weakest = min((d for d in p["dimensions"].values() if d["score"] is not None),
                  key=lambda d: d["score"], default=None)
    if weakest is not None:
        reasons.append(f"最弱维度：{weakest['name']}（{weakest['display']} 分）")
    if p["status"] == "suspended":
        reasons.append("目前已停牌")
    p["exit_reasons"] = reasons


def sellable_under(conn: Any, codes: list[str]) -> list[str]:
    """The sellable products among `codes`, a non-sellable product replaced by the sellable products
    built on it (walking product_links upwards), in the order given."""
    rows = conn.execute(
        "WITH RECURSIVE up(root, code) AS (SELECT c, c FROM unnest(%(c)s::text[]) AS c"
        " UNION SELECT up.root, l.from_code FROM product_links l JOIN up ON l.to_code = up.code)"
        " SELECT up.root, p.code FROM up JOIN products p ON p.code = up.code WHERE p.level = 'sellable'"
        " ORDER BY up.root, p.code",
        {"c": list(codes)},
    ).fetchall()
    found: dict[str, list[str]] = {}
    for r in rows:
        found.setdefault(r["root"], []).append(r["code"])
    return list(dict.fromkeys(c for root in codes for c in found.get(root, [root])))


def category_of(conn: Any, code: str) -> str | None:
    row = conn.execute("SELECT category FROM products WHERE code = %(c)s", {"c": code}).fetchone()
    return None if row is None else str(row["category"])


def _categories_for(ctx: ToolContext, category: str | None, products: list[str] | None) -> tuple[list[str], list[str]]:
    """The categories to evaluate and the product codes asked for (validated)."""
    if category is not None and category not in CATEGORY_NAMES:
        raise _Err("unknown_category", f"没有「{category}」这个产品大类；大类有：" + "、".join(CATEGORY_NAMES.values()) + "。")
    codes = list(dict.fromkeys(products or []))
    if not codes:
        return ([category] if category else list(CATEGORY_NAMES)), []
    rows = ctx.conn.execute(
        "SELECT code, name, level, category FROM products WHERE code = ANY(%(c)s)", {"c": codes}
    ).fetchall()
    found = {r["code"]: r for r in rows}
    unknown = [c for c in codes if c not in found]
    if unknown:
        raise _Err("unknown_product", "产品目录中没有编码为 " + "、".join(unknown) + " 的产品。")
    not_sellable = [f"{found[c]['name']}（{c}）" for c in codes if found[c]["level"] != "sellable"]
    if not_sellable:
        raise _Err("not_sellable", "产品评价针对可售产品；" + "、".join(not_sellable) + " 不是可售产品。")
    cats = list(dict.fromkeys(found[c]["category"] for c in codes))
    return cats, codes


def _period(base: date, end: date, months: int, note: str = "") -> dict[str, Any]:
    start = shift(base, 1)
    return {"start": start.isoformat(), "end": end.isoformat(), "base": base.isoformat(), "months": months,
            "label": f"{label_for(start, end)}（{months}个月）" if months > 1 else label_for(start, end),
            "end_label": month_label(end), "base_label": month_label(base), "note": note}


def _trend(series: dict[str, dict[date, dict[str, Decimal | None]]], codes: list[str], names: dict[str, str],
           start: date, end: date, total: tuple[str, list[str]] | None = None) -> dict[str, Any]:
    """Month-end balances of `codes` (and, with `total`, the sum over its codes) for a line chart."""
    months = [shift(start, i) for i in range(_months_between(start, end) + 1)]

    def line(c: str) -> list[float | None]:
        return [_float(series.get(c, {}).get(m, {}).get("balance")) for m in months]

    lines = [(names[c], line(c)) for c in codes]
    if total:
        every = [line(c) for c in total[1]]
        sums: list[float | None] = [sum(v[i] or 0.0 for v in every) for i in range(len(months))]
        lines = [(total[0], sums), *lines]
    scale, unit = money_scale([v for _, vals in lines for v in vals if v is not None])
    return {
        "x": [m.strftime("%Y-%m") for m in months], "unit": unit,
        "series": [{"name": n, "values": [None if v is None else round(v / scale, 2) for v in vals]}
                   for n, vals in lines],
    }


def evaluate_products(ctx: ToolContext, category: str | None = None, products: list[str] | None = None,
                      months: int = 12, end: str | None = None, branch: str | None = None,
                      exit_score: float = EXIT_SCORE) -> dict[str, Any]:
    """产品评价：按大类给可售产品打分（财务贡献、市场表现、客户体验、风险管控四个维度，权重因大类而异），
    判断生命周期阶段（导入/成长/成熟/衰退），列出低效产品（退出候选）及原因。
    category: deposit|loan|payment|intermediary|market（不填则全部大类）；products: 只看这些产品编码
    （仍在各自大类内比较）；months: 评价期月数（默认近12个月）；end: 截止月 YYYY-MM（默认最新月）；
    branch: 提问人权限内的机构。数据按提问人的机构权限汇总。"""
    try:
        cats, codes = _categories_for(ctx, category, products)
        base, e, months, note = _window(ctx, end, months)
    except _Err as err:
        return {"error": err.code, "message": err.message}
    resolve_branch(ctx.conn, ctx.principal, branch)  # OutOfScope before any figure is read
    ev = _evaluate(ctx, cats, base, e, branch, float(exit_score))
    allp = ev["products"]
    missing = [c for c in codes if c not in allp]
    shown = [c for c in codes if c in allp] if codes else \
        [c for cat in cats if cat in ev["categories"] for c in ev["categories"][cat]["order"]]
    if not (codes or len(shown) <= DETAIL_LIMIT):
        # A long list keeps its dimension scores; indicator detail only for a few products, to keep
        # the result (stored with the turn) small.
        shown_rows = [_compact(allp[c]) for c in shown]
    else:
        shown_rows = [allp[c] for c in shown]
    result: dict[str, Any] = {
        "period": _period(base, e, months, note),
        "scope": _scope_label(ctx, branch),
        "category": category, "requested": codes,
        "weights": WEIGHTS, "dimension_names": DIMENSION_NAMES,
        "exit_score": float(exit_score), "exit_score_display": f"{float(exit_score):g}",
        "rules": {"scoring": SCORING_RULE, "lifecycle": LIFECYCLE_RULE, "exit": exit_rule(float(exit_score))},
        "categories": [{k: v for k, v in ev["categories"][c].items() if k != "order"}
                       for c in cats if c in ev["categories"]],
        "products": shown_rows,
        "detail": len(shown_rows) > 0 and "indicators" in shown_rows[0],
        "exit_candidates": [c for c in shown if allp[c]["exit_candidate"]],
        "stage_counts": {s: sum(1 for c in shown if allp[c]["stage"] == s) for s in STAGES},
        "missing": [{"code": c, "name": ev["meta"].get(c, {}).get("name", c)} for c in missing],
    }
    if not shown and not missing:
        result["error"] = "no_products"
        result["message"] = f"{month_label(e)}在{result['scope']}范围内没有可评价的产品（没有经营数据）。"
    if codes and len(shown) <= 3 and shown:
        result["trend"] = _trend(ev["series"], shown, {c: allp[c]["name"] for c in shown}, base, e)
    return result


def category_view(ctx: ToolContext, category: str, months: int = 12, end: str | None = None,
                  branch: str | None = None) -> dict[str, Any]:
    """同类产品竞争格局：一个大类内各可售产品的余额占比及其变化、对大类增量的贡献占比、增速、
    客户数、综合评分与排名，以及大类集中度和余额走势。category: deposit|loan|payment|intermediary|market；
    months: 比较期月数（默认近12个月）；end: 截止月 YYYY-MM；数据按提问人的机构权限汇总。"""
    try:
        cats, _ = _categories_for(ctx, category, None)
        base, e, months, note = _window(ctx, end, months)
    except _Err as err:
        return {"error": err.code, "message": err.message}
    resolve_branch(ctx.conn, ctx.principal, branch)
    ev = _evaluate(ctx, cats, base, e, branch)
    cat = ev["categories"].get(category)
    scope = _scope_label(ctx, branch)
    if cat is None:
        return {"error": "no_products", "period": _period(base, e, months, note), "scope": scope,
                "message": f"{month_label(e)}在{scope}范围内{CATEGORY_NAMES[category]}类没有有经营数据的产品。"}
    series, allp = ev["series"], ev["products"]
    members = cat["order"]

    def bal(c: str, m: date) -> float | None:
        return _float(series[c].get(m, {}).get("balance"))

    total_end = sum(bal(c, e) or 0.0 for c in members)
    total_base = sum(bal(c, base) or 0.0 for c in members)
    change = total_end - total_base
    rows = []
    for c in members:
        b_end, b_base = bal(c, e) or 0.0, bal(c, base) or 0.0
        share_end = 100.0 * b_end / total_end if total_end else None
        share_base = 100.0 * b_base / total_base if total_base else None
        delta = b_end - b_base
        share_of_growth = 100.0 * delta / change if change > 0 else None
        shift_pp = share_end - share_base if share_end is not None and share_base is not None else None
        cust = _float(series[c][e]["customers"])
        p = allp[c]
        rows.append({
            "code": c, "name": p["name"], "status": p["status"], "status_name": p["status_name"],
            "balance_end": b_end, "balance_end_display": money(b_end),
            "balance_change": delta, "balance_change_display": money(delta),
            "share": share_end, "share_display": pct(share_end),
            "share_base": share_base, "share_base_display": pct(share_base),
            "share_change_pp": shift_pp, "share_change_display": "—" if shift_pp is None else f"{shift_pp:+.2f}个百分点",
            "share_of_growth": share_of_growth, "share_of_growth_display": pct(share_of_growth),
            "growth": p["balance_growth"], "growth_display": p["balance_growth_display"],
            "customers": cust, "customers_display": show(cust, "户"),
            "total": p["total"], "total_display": p["total_display"], "score_rank": p["rank"],
            "stage": p["stage"],
        })
    rows.sort(key=lambda r: (-r["balance_end"], r["code"]))
    for i, r in enumerate(rows, 1):
        r["balance_rank"] = i
    shares = [r["share"] or 0.0 for r in rows]
    top3 = sum(sorted(shares, reverse=True)[:3])
    hhi = sum(s * s for s in shares)
    gainers = sorted((r for r in rows if r["share_change_pp"] is not None), key=lambda r: -r["share_change_pp"])
    top = [r["code"] for r in rows[:5]]
    return {
        "period": _period(base, e, months, note), "scope": scope,
        "category": category, "category_name": CATEGORY_NAMES[category],
        "products_count": len(rows),
        "total_end": total_end, "total_end_display": money(total_end),
        "total_base": total_base, "total_base_display": money(total_base),
        "total_change": change, "total_change_display": money(change),
        "total_growth": _growth(total_end, total_base),
        "total_growth_display": pct(_growth(total_end, total_base), 2, True),
        "top3_share": top3, "top3_share_display": pct(top3),
        "hhi": hhi, "hhi_display": f"{hhi:,.0f}",
        "growth_shared": change > 0,
        "share_gainers": [r["code"] for r in gainers[:3] if (r["share_change_pp"] or 0) > 0],
        "share_losers": [r["code"] for r in gainers[::-1][:3] if (r["share_change_pp"] or 0) < 0],
        "weights": cat["weights"], "effective_weights_display": cat["effective_weights_display"],
        "skipped": cat["skipped"], "notes": cat["notes"],
        "products": rows,
        "trend": _trend(series, top, {c: allp[c]["name"] for c in top}, base, e,
                        total=(f"{CATEGORY_NAMES[category]}类合计", members)),
    }
