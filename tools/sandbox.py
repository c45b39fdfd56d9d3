"""A/B sandbox (方案沙盘): each element plan applied to a snapshot of the bank's own customers.

`simulate(conn, plans, requirement, seed)` takes plans shaped like `Plan.as_dict()` (it reads the
`terms` dict, and the `repayment` element when there is one) and returns, per plan, the eligible
customers, the simulated take-up, balances and contribution over `months` months, and an A/B
comparison table across plans. Same seed, same data → the identical result.

Snapshot (one set-based query). Every customer of customers.csv in the asker's scope (an rm sees
the customers serviced in their branch subtree; bank-wide roles and principal=None see all) with:
- deposits = their holdings balance in deposit products at the latest holdings month;
- assets (金融资产) = their holdings in deposit, intermediary and market products that month;
- borrowing from loans.csv: any loan at all, the largest original amount (proven borrowing
  capacity), and as a risk signal the worst five-class and the longest overdue among loans with a
  balance; loan-product holdings stand in as borrowing for customers loans.csv does not list.

Eligibility (the first rule a customer fails is the reason counted):
- loan plan: (1) segment = the plan's segment ('all' = any); (2) no loan with a balance classified
  关注 or worse, none overdue; (3) a target that asks for first borrowers (首贷/无贷/新客户) excludes
  customers with any loan; (4) capacity = max(assets × AUM_LOAN_MULTIPLE, largest existing loan)
  must reach the plan's minimum amount (and be > 0: without assets or borrowing nothing is known).
- deposit plan: (1) segment; (2) holds deposits; (3) capacity = assets × DEPOSIT_SHARE ≥ the
  minimum amount.
- other categories (payment, intermediary, market) are not simulated: the plan says so.
When the bank has no holdings and no loans, rules (2)–(4) cannot be checked: every customer of the
segment is eligible and amounts are drawn uniformly over the plan's amount range (stated). With
only one of the two files, capacity comes from the one there is (stated).

Take-up. Every eligible customer takes the plan with probability
    p = reach(channels) × logistic(logit(BASE) + ELASTICITY × gap)
where gap is in percentage points: competitor_rate − rate for loans (cheaper → more), rate −
competitor_rate for deposits (higher → more); 0 when the plan has no competitor rate (stated).
reach is REACH_ONLINE for online channels, REACH_OFFLINE for branch channels, 1 − (1 − on)(1 − off)
for both, REACH_OFFLINE when the plan names none.

Draws. All the bank's customers are ordered by pseudonym (the full HMAC digest), which depends on
neither row order nor names, and numpy's Generator(seed) draws three uniforms per customer in that
order (over the whole bank, so a customer's draws do not depend on who asks and an rm's figures are
the bank-wide ones restricted to their customers): u_take < p →
takes the plan; u_amount sets the amount = capacity × (AMOUNT_LOW + (1 − AMOUNT_LOW) × u_amount),
rounded to 100 yuan and clamped to [amount_min, amount_max]; u_start sets the month it is booked,
spread evenly over the first RAMP_MONTHS months. The same draws serve every plan (common random
numbers), so plans differ only by their own terms.

Months 1..months. Loans amortise by the plan's repayment (等额本息 annuity by default, 等额本金
linear, 到期还本 bullet), interest is charged on the month's opening balance and a loan that
matures inside the horizon is not renewed. Deposits keep their balance (renewed at maturity at the
same rate). Per month, on the opening balance b:
    net interest   = b × (rate − ftp_rate) / 12  (deposits: b × (ftp_rate − rate) / 12)
    expected loss  = b × expected_loss_rate / 12 (loans only)
    operating cost = b × opex_rate / 12,  capital cost = b × capital_cost_rate / 12
    net contribution = net interest − expected loss − operating cost − capital cost
(rates are annual %, divided by 100). Fees, internal substitution and customers' prepayment are not
modelled (stated in the assumptions).

Privacy: a customer leaves this function only as a pseudonym 客户-XXXXXXXX, the first 8 hex digits
of HMAC-SHA256(key, customer_id) under a per-installation secret (home/pseudonym.key, created once
with mode 0600), so the same customer has the same pseudonym across runs and plans; sample rows carry
only pseudonym, segment, branch, capacity band, booking month and simulated amount.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from core.access import Principal, branch_in_scope
from core.errors import PuyiError
from core.text import fmt_money, money_scale
from tools.catalog import CATEGORY_NAMES, SEGMENT_NAMES
from tools.plan_types import DEFAULT_SEED

# --- model constants (documented in the module docstring and in every result's assumptions) ------
LOAN_BASE_TAKEUP = 0.15  # take-up at the competitors' rate, before channel reach
LOAN_ELASTICITY = 1.0  # logit change per percentage point cheaper than competitors
DEPOSIT_BASE_TAKEUP = 0.10
DEPOSIT_ELASTICITY = 2.5  # deposit customers react more to a rate gap than borrowers
REACH_ONLINE = 0.7  # share of eligible customers an online channel reaches in the horizon
REACH_OFFLINE = 0.4  # branches and relationship managers only
AUM_LOAN_MULTIPLE = 1.0  # financial assets as a proxy of what a customer can borrow
DEPOSIT_SHARE = 0.5  # the part of their financial assets a customer may move into a new deposit
AMOUNT_LOW = 0.5  # a taker's amount is 50–100 % of their capacity
RAMP_MONTHS = 3  # bookings spread over the first three months
AMOUNT_STEP = 100.0  # amounts rounded to 100 yuan
SAMPLE_ROWS = 10  # sample takers shown per plan
PSEUDONYM_HEX = 8  # 16^8 ≈ 4.3 × 10^9 pseudonyms: collisions negligible for a bank's customers
KEY_FILE = "pseudonym.key"

SUPPORTED = ("loan", "deposit")
ONLINE_WORDS = ("线上", "网上", "在线", "手机", "app", "小程序", "微信", "网银", "互联网", "电子", "移动")
OFFLINE_WORDS = ("网点", "柜面", "柜台", "线下", "客户经理", "营业", "上门", "厅堂")
FIRST_LOAN_WORDS = ("首贷", "无贷", "新客户", "新客")
# Capacity bands shown in sample rows instead of the amount a customer holds.
BANDS = ((50_000, "5万元以下"), (200_000, "5万–20万元"), (1_000_000, "20万–100万元"),
         (5_000_000, "100万–500万元"), (math.inf, "500万元及以上"))

REASONS = {
    "segment": "客群不符", "risk": "现有贷款关注及以下或逾期", "first_loan": "非首贷客户",
    "no_data": "无资产及借贷记录", "capacity": "能力不足最低金额", "no_deposit": "未持有存款",
}
METRICS = (  # key, label (the horizon is filled in), unit
    ("eligible", "合格客户数", "户"), ("takers", "预计办理客户数", "户"), ("takeup_rate", "办理率", "%"),
    ("balance_end", "期末余额", "元"), ("net_interest", "{m}个月净利息收入", "元"),
    ("expected_loss", "预期损失", "元"), ("opex", "运营成本", "元"), ("capital_cost", "资本成本", "元"),
    ("net_contribution", "净贡献", "元"), ("per_customer", "每户净贡献", "元/户"),
)

_SNAPSHOT = """
WITH lm AS (SELECT max(month) AS m FROM holdings),
h AS (
    SELECT h.customer_id,
           sum(h.balance) FILTER (WHERE p.category = 'deposit')::float8 AS deposits,
           sum(h.balance) FILTER (WHERE p.category IN ('deposit', 'intermediary', 'market'))::float8 AS assets,
           sum(h.balance) FILTER (WHERE p.category = 'loan')::float8 AS held_loans
    FROM holdings h LEFT JOIN products p ON p.code = h.product_code
    WHERE h.month = (SELECT m FROM lm) AND h.balance > 0
    GROUP BY h.customer_id
),
l AS (
    SELECT customer_id, max(amount)::float8 AS max_loan,
           max(CASE five_class WHEN '正常' THEN 0 WHEN '关注' THEN 1 WHEN '次级' THEN 2 WHEN '可疑' THEN 3 ELSE 4 END)
               FILTER (WHERE balance > 0) AS worst,
           max(overdue_days) FILTER (WHERE balance > 0) AS overdue
    FROM loans GROUP BY customer_id
)
SELECT c.customer_id, c.segment, c.branch_code, coalesce(b.name, '') AS branch_name,
       coalesce(h.deposits, 0) AS deposits, coalesce(h.assets, 0) AS assets,
       coalesce(h.held_loans, 0) AS held_loans, l.customer_id IS NOT NULL AS has_loan,
       coalesce(l.max_loan, 0) AS max_loan, coalesce(l.worst, 0) AS worst, coalesce(l.overdue, 0) AS overdue,
       {scope} AS in_scope
FROM customers c
LEFT JOIN h ON h.customer_id = c.customer_id
LEFT JOIN l ON l.customer_id = c.customer_id
LEFT JOIN branches b ON b.code = c.branch_code
"""


# --- pseudonyms ---------------------------------------------------------------------------------


def pseudonym_key(home: Path | None = None) -> bytes:
    """The installation's pseudonym secret (home/pseudonym.key), created once with mode 0600.

    Created as a temporary file and hard-linked into place, so two processes starting at once
    agree on one key and nobody reads a half-written file."""
    if home is None:
        from core.settings import get_settings

        home = get_settings().home
    path = home / KEY_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / f".{KEY_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            tmp.unlink(missing_ok=True)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError as exc:
        raise PuyiError(f"客户假名密钥文件 {path} 已损坏，请联系管理员 (bad pseudonym key)") from exc
    if len(key) < 16:
        raise PuyiError(f"客户假名密钥文件 {path} 过短，请联系管理员 (pseudonym key too short)")
    return key


def _digest(customer_id: str, key: bytes) -> str:
    return hmac.new(key, customer_id.encode("utf-8"), hashlib.sha256).hexdigest().upper()


def pseudonym(customer_id: str, key: bytes) -> str:
    """The customer's pseudonym, e.g. 客户-7F3A9C1B: the same for the same id and key, always."""
    return "客户-" + _digest(customer_id, key)[:PSEUDONYM_HEX]


# --- display helpers ----------------------------------------------------------------------------


def _band(capacity: float | None) -> str:
    if capacity is None:
        return "未知"
    return next(label for top, label in BANDS if capacity < top)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}%"


def _display(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "户":
        return f"{value:,.0f} 户"
    if unit == "%":
        return _pct(value)
    if unit == "元/户":
        return f"{fmt_money(value)}/户"
    return fmt_money(value)


def _num(v: Any) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


# --- the plan's terms ---------------------------------------------------------------------------


def _reach(channels: list[str]) -> tuple[float, str]:
    text = "|".join(channels).lower()
    online = any(w in text for w in ONLINE_WORDS)
    offline = any(w in text for w in OFFLINE_WORDS)
    if online and offline:
        return 1 - (1 - REACH_ONLINE) * (1 - REACH_OFFLINE), "线上与线下渠道"
    if online:
        return REACH_ONLINE, "线上渠道"
    if offline:
        return REACH_OFFLINE, "线下渠道"
    return REACH_OFFLINE, "未识别渠道（按线下渠道计）" if channels else "未指定渠道（按线下渠道计）"


def _repayment(plan: dict[str, Any]) -> str:
    text = str(plan.get("terms", {}).get("repayment") or "")
    if not text:
        for el in plan.get("elements") or []:
            if isinstance(el, dict) and el.get("element") == "repayment":
                text = str(el.get("value") or "")
    first = text.split("|")[0]
    if "等额本金" in first:
        return "linear"
    if "到期还本" in first or "一次性" in first or "到期一次" in first:
        return "bullet"
    return "annuity"


REPAYMENT_NAMES = {"annuity": "等额本息", "linear": "等额本金", "bullet": "按月付息、到期还本"}


def _channels(value: Any) -> list[str]:
    if isinstance(value, str):
        return [c for c in value.replace("、", "|").replace(",", "|").split("|") if c.strip()]
    return [str(c) for c in value or []]


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# --- the snapshot -------------------------------------------------------------------------------


class _Snapshot:
    """Every customer of the bank ordered by pseudonym, as numpy columns (no names, ids or phones);
    `in_scope` marks those the asker may see. Draws are made over all of them, so a customer draws
    the same numbers whoever asks and an rm's figures are the bank's restricted to their customers."""

    def __init__(self, rows: list[dict[str, Any]], key: bytes):
        keyed = sorted(((_digest(r["customer_id"], key), r) for r in rows), key=lambda t: t[0])
        self.size = len(keyed)
        self.pseudonyms = ["客户-" + d[:PSEUDONYM_HEX] for d, _ in keyed]
        ordered = [r for _, r in keyed]
        self.in_scope = np.array([bool(r["in_scope"]) for r in ordered], dtype=bool)
        self.n = int(self.in_scope.sum())
        self.segment = np.array([r["segment"] for r in ordered], dtype=object)
        self.branch = [r["branch_code"] for r in ordered]
        self.branch_name = [r["branch_name"] for r in ordered]
        self.deposits = np.array([r["deposits"] for r in ordered], dtype=float)
        self.assets = np.array([r["assets"] for r in ordered], dtype=float)
        held = np.array([r["held_loans"] for r in ordered], dtype=float)
        self.has_loan = np.array([bool(r["has_loan"]) for r in ordered], dtype=bool) | (held > 0)
        self.max_loan = np.maximum(np.array([r["max_loan"] for r in ordered], dtype=float), held)
        self.risky = np.array([int(r["worst"]) >= 1 or int(r["overdue"]) > 0 for r in ordered], dtype=bool)


def _snapshot(conn: Any, principal: Principal | None, key: bytes) -> tuple[_Snapshot, dict[str, Any]]:
    scope = principal.scope_branch if principal is not None else None
    rows = conn.execute(_SNAPSHOT.format(scope=branch_in_scope("c.branch_code")), {"scope": scope}).fetchall()
    meta = conn.execute(
        "SELECT (SELECT max(month) FROM holdings) AS hmonth, EXISTS (SELECT 1 FROM loans) AS has_loans,"
        " EXISTS (SELECT 1 FROM customers) AS has_customers"
    ).fetchone()
    return _Snapshot([dict(r) for r in rows], key), {
        "holdings_month": meta["hmonth"].strftime("%Y-%m") if meta["hmonth"] else None,
        "has_holdings": meta["hmonth"] is not None,
        "has_loans": bool(meta["has_loans"]),
        "has_customers": bool(meta["has_customers"]),
    }


# --- one plan -----------------------------------------------------------------------------------


def _term(plan: dict[str, Any], requirement: dict[str, Any], key: str) -> Any:
    terms = plan.get("terms") or {}
    value = terms.get(key)
    return requirement.get(key) if value is None or value == "" or value == [] else value


def _eligible(snap: _Snapshot, meta: dict[str, Any], category: str, segment: str, target: str,
              amount_min: float) -> tuple[np.ndarray, np.ndarray, Counter[str], list[str]]:
    """(eligible mask, capacity per customer (nan = unknown), excluded counts by reason, notes)."""
    n = snap.size
    fail = ~snap.in_scope  # not counted as a reason: the asker does not see these customers
    reasons: Counter[str] = Counter()
    notes: list[str] = []

    def rule(bad: np.ndarray, reason: str) -> None:
        nonlocal fail
        new = bad & ~fail
        if new.any():
            reasons[REASONS[reason]] += int(new.sum())
        fail |= new

    if segment != "all":
        rule(snap.segment != segment, "segment")
    have_h, have_l = meta["has_holdings"], meta["has_loans"]
    capacity = np.full(n, np.nan)
    if category == "loan":
        if have_l:
            rule(snap.risky, "risk")
        else:
            notes.append("本行未导入贷款明细（loans.csv），无法按现有贷款的五级分类和逾期排除风险客户")
        if any(w in target for w in FIRST_LOAN_WORDS):
            if have_l or have_h:
                rule(snap.has_loan, "first_loan")
                notes.append(f"目标客群“{target}”按首贷客户理解：排除已有本行贷款的客户")
            else:
                notes.append(f"目标客群“{target}”要求首贷，但本行无贷款和持仓数据，无法识别")
        if have_h or have_l:
            capacity = np.maximum(snap.assets * AUM_LOAN_MULTIPLE, snap.max_loan)
            rule(capacity <= 0, "no_data")
            rule(capacity < amount_min, "capacity")
            if not have_h:
                notes.append("本行未导入持仓数据（holdings.csv）：还款能力只按已有贷款的最高金额估计")
            elif not have_l:
                notes.append("本行未导入贷款明细（loans.csv）：还款能力只按金融资产估计")
    else:
        if have_h:
            rule(snap.deposits <= 0, "no_deposit")
            capacity = snap.assets * DEPOSIT_SHARE
            rule(capacity < amount_min, "capacity")
        else:
            notes.append("本行未导入持仓数据（holdings.csv），无法判断客户是否持有存款及其资金规模")
    if not have_h and not have_l:
        notes.append("本行未导入持仓和贷款数据：同一客群的客户都计为合格（无法检查风险信号和还款能力）")
    return ~fail, capacity, reasons, notes


def _balances(kind: str, amount: np.ndarray, start: np.ndarray, term: int, rate: float,
              months: int) -> tuple[np.ndarray, np.ndarray]:
    """(opening, closing) balance per taker (rows) and month (columns 1..months)."""
    k = np.arange(1, months + 1)[None, :] - start[:, None]  # payments made before this month
    active = k >= 0
    a = amount[:, None]

    def after(paid: np.ndarray) -> np.ndarray:
        if kind == "deposit":
            return np.broadcast_to(a, paid.shape).copy()
        left = np.clip(paid, 0, term)
        if kind == "bullet":
            return np.where(left < term, a, 0.0)
        if kind == "linear" or rate == 0:
            return a * (1 - left / term)
        r = rate / 1200
        g = (1 + r) ** term
        return a * (g - (1 + r) ** left) / (g - 1)

    opening = np.where(active, after(k), 0.0)
    closing = np.where(active, after(k + 1), 0.0)
    return opening, closing


def _money(v: float) -> float:
    return round(float(v), 2)


def _simulate_plan(plan: dict[str, Any], requirement: dict[str, Any], snap: _Snapshot, meta: dict[str, Any],
                   draws: np.ndarray, months: int) -> dict[str, Any]:
    name = str(plan.get("name") or "方案")
    category = str(_term(plan, requirement, "category") or "")
    segment = str(_term(plan, requirement, "segment") or "all")
    out: dict[str, Any] = {"name": name, "category": category,
                           "category_name": CATEGORY_NAMES.get(category, category or "未指定"),
                           "segment": segment, "segment_name": SEGMENT_NAMES.get(segment, segment),
                           "simulated": False, "warnings": [], "assumptions": []}
    if category not in SUPPORTED:
        out["warnings"].append(f"方案“{name}”的产品大类为{out['category_name']}，沙盘只模拟贷款和存款产品，未作测算")
        return out
    rate = _num(_term(plan, requirement, "rate"))
    ftp = _num(_term(plan, requirement, "ftp_rate"))
    if rate is None or ftp is None:
        missing = "执行利率" if rate is None else "资金转移价格（FTP）"
        out["warnings"].append(f"方案“{name}”缺少{missing}，无法测算净利息，未作测算")
        return out
    costs: dict[str, float] = {}
    for k, label in (("expected_loss_rate", "预期损失率"), ("opex_rate", "运营成本率"),
                     ("capital_cost_rate", "资本成本率")):
        v = _num(_term(plan, requirement, k))
        if v is None and not (k == "expected_loss_rate" and category == "deposit"):
            out["warnings"].append(f"方案“{name}”未给出{label}，该项按 0 计，净贡献因此偏高")
        costs[k] = v or 0.0
    if category == "deposit":
        costs["expected_loss_rate"] = 0.0
    amin = _num(_term(plan, requirement, "amount_min"))
    amax = _num(_term(plan, requirement, "amount_max"))
    term = _num(_term(plan, requirement, "term_months")) or _num(requirement.get("term_max_months"))
    if term is None or term < 1:
        term = 12
        out["warnings"].append(f"方案“{name}”未给出期限，按 12 个月测算")
    term_n = int(round(term))
    competitor = _num(_term(plan, requirement, "competitor_rate"))
    target = str(_term(plan, requirement, "target_customers") or "")
    channels = _channels(_term(plan, requirement, "channels"))

    eligible, capacity, reasons, notes = _eligible(snap, meta, category, segment, target, amin or 0.0)
    unknown_capacity = not meta["has_holdings"] and not meta["has_loans"]
    if category == "deposit" and not meta["has_holdings"]:
        unknown_capacity = True
    if unknown_capacity and amax is None and amin is None:
        out["warnings"].append(f"方案“{name}”没有额度区间，且本行无持仓和贷款数据，无法估计金额，未作测算")
        return out

    # Take-up probability from the rate gap and the channels' reach.
    loan = category == "loan"
    base, elasticity = (LOAN_BASE_TAKEUP, LOAN_ELASTICITY) if loan else (DEPOSIT_BASE_TAKEUP, DEPOSIT_ELASTICITY)
    gap = 0.0 if competitor is None else (competitor - rate if loan else rate - competitor)
    reach, reach_label = _reach(channels)
    p = reach * _logistic(_logit(base) + elasticity * gap)

    idx = np.flatnonzero(eligible)
    u = draws[idx]
    took = u[:, 0] < p
    t_idx = idx[took]
    tu = u[took]
    if unknown_capacity:
        lo = float(amin if amin is not None else amax or 0.0)
        hi = float(amax if amax is not None else lo)
        raw = lo + (hi - lo) * tu[:, 1]
        cap_t = np.full(len(t_idx), np.nan)
    else:
        cap_t = capacity[t_idx]
        raw = cap_t * (AMOUNT_LOW + (1 - AMOUNT_LOW) * tu[:, 1])
    amount = np.round(raw / AMOUNT_STEP) * AMOUNT_STEP
    amount = np.clip(amount, amin if amin is not None else 0.0, amax if amax is not None else np.inf)
    ramp = max(1, min(RAMP_MONTHS, months))
    start = 1 + np.minimum(np.floor(tu[:, 2] * ramp), ramp - 1).astype(int)

    kind = _repayment(plan) if loan else "deposit"
    opening, closing = _balances(kind, amount, start, term_n, rate, months)
    monthly_open = opening.sum(axis=0)
    spread = (rate - ftp) if loan else (ftp - rate)
    nii = monthly_open * spread / 1200
    el = monthly_open * costs["expected_loss_rate"] / 1200
    opex = monthly_open * costs["opex_rate"] / 1200
    cap = monthly_open * costs["capital_cost_rate"] / 1200
    nc = nii - el - opex - cap
    n_elig, n_take = int(len(idx)), int(len(t_idx))
    totals = {
        "eligible": n_elig, "takers": n_take,
        "takeup_rate": round(100.0 * n_take / n_elig, 2) if n_elig else None,
        "booked": _money(amount.sum()), "balance_end": _money(closing[:, -1].sum()),
        "net_interest": _money(nii.sum()), "expected_loss": _money(el.sum()), "opex": _money(opex.sum()),
        "capital_cost": _money(cap.sum()), "net_contribution": _money(nc.sum()),
        "per_customer": _money(nc.sum() / n_take) if n_take else None,
    }
    out.update({
        "simulated": True, "rate": rate, "ftp_rate": ftp, "competitor_rate": competitor,
        "rate_gap": round(gap, 4), "term_months": term_n, "amount_min": amin, "amount_max": amax,
        "repayment": kind, "repayment_name": REPAYMENT_NAMES.get(kind, "余额不变（到期续存）"),
        "channels": channels, "reach": round(reach, 4), "reach_label": reach_label,
        "takeup_probability": round(p, 6), "expected_takers": round(n_elig * p, 2),
        "excluded": dict(sorted(reasons.items())), "totals": totals,
        "display": {k: _display(totals[k], unit) for k, _, unit in METRICS},
        "series": {
            "month": list(range(1, months + 1)),
            "balance": [_money(v) for v in closing.sum(axis=0)],
            "net_interest": [_money(v) for v in nii], "net_contribution": [_money(v) for v in nc],
            "cumulative_net_contribution": [_money(v) for v in np.cumsum(nc)],
        },
        "sample": [
            {"pseudonym": snap.pseudonyms[i], "segment": SEGMENT_NAMES.get(str(snap.segment[i]), str(snap.segment[i])),
             "branch": snap.branch[i], "branch_name": snap.branch_name[i],
             "capacity_band": _band(None if np.isnan(cap_t[j]) else float(cap_t[j])),
             "start_month": int(start[j]), "amount": _money(amount[j]), "amount_display": fmt_money(amount[j])}
            for j, i in enumerate(t_idx[:SAMPLE_ROWS])
        ],
    })
    if not n_elig:
        out["warnings"].append(f"方案“{name}”在客户快照中没有合格客户，各项金额为 0")
    if unknown_capacity:
        notes.append("客户资金规模未知：金额在方案额度区间内均匀抽取" if amin is not None and amax is not None
                     else "客户资金规模未知且额度区间不完整：金额按方案给出的额度计")
    side = "低于" if (gap > 0) == loan else "高于"
    if competitor is None:
        gap_text = "无竞品利率，按与竞品持平估计"
    elif gap == 0:
        gap_text = f"与竞品利率 {competitor:.2f}% 持平"
    else:
        gap_text = f"{side}竞品利率 {competitor:.2f}% {abs(gap):.2f} 个百分点"
    out["assumptions"] = notes + [
        f"执行利率 {rate:.2f}%，{gap_text}；{reach_label}触达 {reach * 100:.0f}%，"
        f"办理概率 {p * 100:.2f}%（合格客户 {n_elig:,} 户，期望办理 {n_elig * p:,.1f} 户）",
        f"期限 {term_n} 个月，{out['repayment_name']}；FTP {ftp:.2f}%，预期损失率 {costs['expected_loss_rate']:.2f}%，"
        f"运营成本率 {costs['opex_rate']:.2f}%，资本成本率 {costs['capital_cost_rate']:.2f}%（均为年化，占余额）",
    ]
    if competitor is None:
        out["warnings"].append(f"方案“{name}”没有竞品利率，办理概率按与竞品持平估计")
    return out


# --- the comparison -----------------------------------------------------------------------------


def _general_assumptions(months: int, seed: int) -> list[str]:
    return [
        f"模拟期 {months} 个月；客户快照取自本行客户、最新月持仓和贷款明细，客户以假名表示。",
        f"办理概率 = 渠道触达率 × logistic(logit(基准办理率) + 弹性 × 利差)：贷款基准办理率 {LOAN_BASE_TAKEUP:.0%}、"
        f"弹性 {LOAN_ELASTICITY:g}/个百分点（比竞品便宜越多越高）；存款基准 {DEPOSIT_BASE_TAKEUP:.0%}、"
        f"弹性 {DEPOSIT_ELASTICITY:g}/个百分点（比竞品高越多越高）；线上渠道触达 {REACH_ONLINE:.0%}，"
        f"线下 {REACH_OFFLINE:.0%}，两者兼有 {1 - (1 - REACH_ONLINE) * (1 - REACH_OFFLINE):.0%}。",
        f"贷款合格：客群相符、现有贷款无关注及以下分类且无逾期、能力（金融资产×{AUM_LOAN_MULTIPLE:g} 与已有贷款最高金额"
        f"取大）不低于最低额度；存款合格：客群相符、持有存款、金融资产×{DEPOSIT_SHARE:.0%} 不低于起存金额。",
        f"办理金额 = 能力 × {AMOUNT_LOW:.0%}–100%（随机），取整到 {AMOUNT_STEP:g} 元并限定在方案额度区间内；"
        f"新客户在前 {RAMP_MONTHS} 个月内均匀落地。",
        "净利息按月初余额 ×（贷款：执行利率 − FTP；存款：FTP − 执行利率）÷ 12；预期损失、运营成本、资本成本按余额 × 年化费率 ÷ 12；"
        "净贡献 = 净利息 − 预期损失 − 运营成本 − 资本成本。",
        "贷款到期不续贷、不考虑提前还款；存款到期按原利率续存；未计手续费收入，也未扣除从本行其他产品转入的内部替代。",
        f"随机种子 {seed}：各方案共用同一组按假名排序抽取的随机数，差异只来自方案本身；同一种子结果完全一致。",
    ]


def _comparison(results: list[dict[str, Any]], months: int) -> tuple[dict[str, Any], dict[str, Any]]:
    names = [r["name"] for r in results]
    rows: list[dict[str, Any]] = []
    block_rows: list[list[Any]] = []
    for key, label, unit in METRICS:
        label = label.format(m=months)
        cells = []
        for r in results:
            value = r["totals"][key] if r["simulated"] else None
            cells.append({"value": value, "display": _display(value, unit)})
        rows.append({"key": key, "metric": label, "unit": unit, "values": cells})
        block_rows.append([label] + [c["display"] for c in cells])
    table = {"columns": ["指标", *names], "rows": rows}
    block = {"type": "comparison", "title": f"方案沙盘对比（{months}个月）", "columns": ["指标", *names],
             "rows": block_rows}
    return table, block


def _chart(results: list[dict[str, Any]], months: int, series: str, title: str) -> dict[str, Any]:
    done = [r for r in results if r["simulated"]]
    values = [v for r in done for v in r["series"][series]]
    div, unit = money_scale(values)
    return {"type": "chart", "title": title, "x": [f"第{m}月" for m in range(1, months + 1)],
            "series": [{"name": r["name"], "values": [round(v / div, 2) for v in r["series"][series]]} for r in done],
            "unit": unit}


def simulate(conn: Any, plans: list[dict[str, Any]], requirement: dict[str, Any], seed: int = DEFAULT_SEED,
             months: int = 12, principal: Principal | None = None, key: bytes | None = None) -> dict[str, Any]:
    """方案沙盘：把每个方案（Plan.as_dict()）套用到提问人权限内的客户快照上，模拟 `months` 个月的合格客户、办理、
    余额、净利息、预期损失和净贡献，并给出方案间的 A/B 对比表。同一种子结果完全一致；客户只以假名出现。
    `key` 是假名密钥（默认取安装目录下的 pseudonym.key）。"""
    months = max(1, int(months))
    scope_label = principal.scope_label if principal is not None else "全行"
    result: dict[str, Any] = {
        "status": "ok", "seed": seed, "months": months, "scope": scope_label, "snapshot": {}, "plans": [],
        "table": None, "comparison": None, "chart": None, "charts": [],
        "assumptions": _general_assumptions(months, seed), "warnings": [],
    }
    if not plans:
        result.update(status="no_plans", message="没有可模拟的方案。")
        result["warnings"].append("没有可模拟的方案")
        return result
    snap, meta = _snapshot(conn, principal, key if key is not None else pseudonym_key())
    result["snapshot"] = {
        "customers": snap.n, "customers_display": f"{snap.n:,} 户", "holdings_month": meta["holdings_month"],
        "has_holdings": meta["has_holdings"], "has_loans": meta["has_loans"],
        "segments": {SEGMENT_NAMES.get(s, s): int(c)
                     for s, c in sorted(Counter(snap.segment[snap.in_scope].tolist()).items())},
    }
    if not meta["has_customers"] or snap.n == 0:
        message = ("沙盘模拟需要客户数据：本行未导入客户信息（customers.csv），无法构建客户快照，未作测算。"
                   if not meta["has_customers"] else f"{scope_label}没有客户，无法构建客户快照，未作测算。")
        result.update(status="no_customers", message=message)
        result["warnings"].append(message)
        return result
    if not meta["has_holdings"] and not meta["has_loans"]:
        result["warnings"].append("本行未导入持仓（holdings.csv）和贷款明细（loans.csv）：客户能力无从判断，"
                                  "合格客户只按客群筛选，金额在方案额度区间内均匀抽取")
    elif not meta["has_holdings"]:
        result["warnings"].append("本行未导入持仓数据（holdings.csv）：贷款能力只按已有贷款估计，存款方案无法判断存款客户")
    elif not meta["has_loans"]:
        result["warnings"].append("本行未导入贷款明细（loans.csv）：无法按五级分类和逾期排除风险客户")

    draws = np.random.default_rng(seed).random((snap.size, 3))
    plan_results = [_simulate_plan(p, requirement, snap, meta, draws, months) for p in plans]
    for r in plan_results:
        result["warnings"].extend(r["warnings"])
    result["plans"] = plan_results
    result["table"], result["comparison"] = _comparison(plan_results, months)
    if any(r["simulated"] for r in plan_results):
        result["chart"] = _chart(plan_results, months, "balance", f"各方案月末余额（{months}个月）")
        result["charts"] = [result["chart"], _chart(plan_results, months, "cumulative_net_contribution",
                                                    f"各方案累计净贡献（{months}个月）")]
    else:
        result["status"] = "not_simulated"
    return result
