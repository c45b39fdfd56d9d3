"""Alerts: evaluate the rules on a month (`run_alerts`), store one event per rule, product and
month with an evidence snapshot, list and explain them, record dispositions and review each rule.

Evaluation reads the facts summed over all branches (`tools.facts.fact_source` as a bank-wide
principal), computes every rule's metric for every sellable product in one query, and collects the
evidence of all fired products in set-based SQL (window functions over `loans`, one pass over the
branches' facts), so a run stays within seconds at a million loans.

What each role sees: the alert itself (product, rule, threshold, level) is catalogue-level
information, like the product's 停牌 status, and every role may see it. The figures behind it are
bank-wide; risk, designer and admin users see them as snapshotted. A relationship manager (rm) sees
instead the same metric computed over their own branch subtree, only the loans booked there and
only their branches' share — never a bank-wide value, loan or branch outside their scope.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import psycopg

from core.access import LOCAL_ADMIN, ROLE_NAMES, Principal, branch_in_scope
from core.db import Database
from core.errors import PuyiError
from core.masking import mask_name
from tools.alert_rules import (
    DEFAULT_RULES,
    LEVEL_ALIASES,
    LEVEL_CHOICES,
    LEVEL_NAMES,
    LEVEL_ORDER,
    Rule,
    RuleSet,
    advice_for,
    compare,
    fmt_number,
    fmt_plain,
    rulebook,
)
from tools.catalog import CATEGORY_NAMES, STATUS_NAMES
from tools.context import ToolContext
from tools.facts import fact_meta, fact_source
from tools.metric_defs import FACTS, METRICS, Fact, Metric, definition
from tools.periods import FuturePeriod, month_label, shift

TOP_LOANS = 10
TOP_BRANCHES = 10
TREND_MONTHS = 6
MIN_DISPOSED = 5  # dispositions a rule needs before a threshold is suggested
_LOCK_KEY = 5_000_001  # advisory lock: one alert run at a time per database
NPL_CLASSES = ("次级", "可疑", "损失")

DISPOSITIONS = {"confirmed": "确认", "false_alarm": "误报", "action_taken": "已采取措施"}
_DISPOSITION_ALIASES = {
    "confirmed": "confirmed", "confirm": "confirmed", "确认": "confirmed", "属实": "confirmed",
    "false_alarm": "false_alarm", "false-alarm": "false_alarm", "false": "false_alarm", "误报": "false_alarm",
    "action_taken": "action_taken", "action-taken": "action_taken", "action": "action_taken",
    "已处置": "action_taken", "处置": "action_taken", "已采取措施": "action_taken", "已整改": "action_taken",
}


class AlertNotFound(PuyiError):
    """No alert with that number."""


class NotAllowed(PuyiError):
    """The asker's role may not do this (dispositions are for risk and admin users)."""


def month_iso(d: date) -> str:
    return d.strftime("%Y-%m")


def parse_month(value: date | str | None) -> date | None:
    """A month from a date or "YYYY-MM" (PuyiError otherwise); the first day of the month."""
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value.replace(day=1)
    try:
        d = datetime.strptime(str(value).strip()[:7], "%Y-%m").date()
    except ValueError as exc:
        raise PuyiError(f"月份格式不正确：「{value}」，请写成 YYYY-MM，例如 2026-10 (bad month)") from exc
    return d


def disposition_key(value: str) -> str:
    key = _DISPOSITION_ALIASES.get(str(value).strip().lower()) or _DISPOSITION_ALIASES.get(str(value).strip())
    if key is None:
        raise PuyiError(f"处置结果「{value}」无法识别：请用 confirmed（确认）、false_alarm（误报）或 "
                        f"action_taken（已采取措施）(unknown disposition)")
    return key


def _f(x: Any) -> float | None:
    return None if x is None else float(x)


# --- the metric of every sellable product, month by month ---------------------------------------


def _expression(d: Metric | Fact) -> str:
    """The aggregate SQL a series column is computed with (comparisons: their base fact)."""
    if isinstance(d, Metric) and d.comparison is not None:
        return FACTS[d.base or "balance"].sql
    assert d.sql is not None
    return d.sql


def metric_series(conn: psycopg.Connection[Any], principal: Principal, metrics: set[str], start: date, end: date,
                  products: list[str] | None = None) -> dict[str, dict[str, dict[date, Decimal | None]]]:
    """{metric: {product: {month: value}}} over start..end, from the facts in the principal's scope
    (summed over all its branches). Exact: numeric sums, Decimal arithmetic for comparisons."""
    defs = {k: definition(k) for k in sorted(metrics)}
    lag = {k: (1 if d.comparison == "mom" else 12) for k, d in defs.items()
           if isinstance(d, Metric) and d.comparison is not None}
    read_from = shift(start, -max(lag.values(), default=0))
    src, params = fact_source(conn, principal)
    cols = ", ".join(f"{_expression(d)} AS c{i}" for i, d in enumerate(defs.values()))
    sql = (f"SELECT f.product_code, f.month, {cols} FROM {src}"
           " WHERE f.month BETWEEN %(a)s AND %(b)s"
           + (" AND f.product_code = ANY(%(codes)s)" if products is not None else "")
           + " GROUP BY f.product_code, f.month")
    rows = conn.execute(sql, {**params, "a": read_from, "b": end, "codes": products}).fetchall()
    raw: dict[str, dict[str, dict[date, Decimal | None]]] = {k: defaultdict(dict) for k in defs}
    for r in rows:
        values = list(r.values())[2:]
        for (key, _), v in zip(defs.items(), values, strict=True):
            raw[key][r["product_code"]][r["month"]] = v
    out: dict[str, dict[str, dict[date, Decimal | None]]] = {}
    for key in defs:
        if key not in lag:
            out[key] = {p: {m: v for m, v in s.items() if m >= start} for p, s in raw[key].items()}
            continue
        series: dict[str, dict[date, Decimal | None]] = {}
        for p, s in raw[key].items():
            derived: dict[date, Decimal | None] = {}
            for m, v in s.items():
                if m < start:
                    continue
                base = s.get(shift(m, -lag[key]))
                derived[m] = None if v is None or base is None or base == 0 else (v / base - 1) * 100
            series[p] = derived
        out[key] = series
    return out


# --- evaluation ------------------------------------------------------------------------------------


@dataclass
class Fired:
    rule: Rule
    product: dict[str, Any]
    month: date
    value: Decimal
    series: dict[date, Decimal | None] = field(default_factory=dict)
    base: dict[date, Decimal | None] | None = None  # a comparison's fact (balance for balance_mom)

    @property
    def key(self) -> tuple[str, str]:
        return self.rule.name, self.product["code"]


def sellable_products(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT code, name, category, segment, status, owner_dept FROM products WHERE level = 'sellable' ORDER BY code"
    ).fetchall()
    return [dict(r) for r in rows]


def _fires(rule: Rule, series: dict[date, Decimal | None], month: date) -> bool:
    value = series.get(month)
    if not rule.holds(value):
        return False
    if any(not rule.holds(series.get(shift(month, -i))) for i in range(1, rule.months)):
        return False
    if rule.rise_pct is not None:
        prev = series.get(shift(month, -1))
        # A relative rise needs a positive base; compared by multiplication, exact in Decimal.
        if prev is None or prev <= 0 or value is None or value < prev * (1 + Decimal(str(rule.rise_pct)) / 100):
            return False
    return True


def resolve_month(conn: psycopg.Connection[Any], month: date | str | None) -> date:
    """The month to evaluate: `month` if it has facts, else the latest month with facts."""
    meta = fact_meta(conn)
    if meta.latest_month is None:
        raise PuyiError("库中还没有经营指标数据（metrics_monthly），无法评估预警：请先导入银行数据 (no facts)")
    wanted = parse_month(month)
    if wanted is None:
        return meta.latest_month
    if wanted > meta.latest_month:
        raise FuturePeriod(month_label(wanted), meta.latest_month)
    if meta.first_month is not None and wanted < meta.first_month:
        raise PuyiError(f"{month_label(wanted)}没有经营指标数据：数据范围是 {month_label(meta.first_month)} 至 "
                        f"{month_label(meta.latest_month)} (no data for that month)")
    return wanted


def evaluate(conn: psycopg.Connection[Any], rules: tuple[Rule, ...], month: date) -> list[Fired]:
    """Every (rule, product) that fires on `month`, most severe first."""
    rules = tuple(r for r in rules if r.enabled)
    if not rules:
        return []
    span = max([TREND_MONTHS, *(r.months for r in rules)])
    start = shift(month, -span)
    bases = {r.metric: d.base for r in rules if isinstance(d := r.definition, Metric) and d.base}
    series = metric_series(conn, LOCAL_ADMIN, {r.metric for r in rules} | set(bases.values()), start, month)
    fired: list[Fired] = []
    for product in sellable_products(conn):
        for rule in rules:
            s = series[rule.metric].get(product["code"], {})
            if rule.applies(product) and _fires(rule, s, month):
                value = s[month]
                assert value is not None
                base = series[bases[rule.metric]].get(product["code"], {}) if rule.metric in bases else None
                fired.append(Fired(rule, product, month, value, s, base))
    fired.sort(key=lambda f: (LEVEL_ORDER.get(f.rule.level, 9), f.rule.name, f.product["code"]))
    return fired


# --- evidence ------------------------------------------------------------------------------------

FOCUS_NAMES = {"npl": "不良贷款（次级、可疑、损失）", "overdue": "逾期贷款", "risk": "风险贷款（非正常类或逾期）"}
_FOCUS_SQL = {
    "npl": "l.five_class IN ('次级', '可疑', '损失')",
    "overdue": "l.overdue_days > 0",
    "risk": "(l.five_class <> '正常' OR l.overdue_days > 0)",
}

# Per metric: (basis column, its name, how shares are read). "level": the branch's amount this
# month; "decline": how much the branch's balance fell against the comparison month.
_BASIS: dict[str, tuple[str, str, str]] = {
    "npl_rate": ("npl_balance", "不良余额", "level"),
    "overdue_rate": ("overdue_balance", "逾期余额", "level"),
    "balance_mom": ("balance", "余额减少额（较上月）", "decline"),
    "balance_yoy": ("balance", "余额减少额（较上年同月）", "decline"),
    "net_contribution": ("net_contribution", "净贡献", "level"),
    "net_interest": ("net_interest", "净利息收入", "level"),
    "complaint_rate": ("complaints", "投诉量", "level"),
}
_BASIS_SQL = {
    "net_contribution": "m.interest_income - m.interest_expense + m.fee_income - coalesce(m.opex, 0)"
                        " - coalesce(m.provision, 0)",
    "net_interest": "m.interest_income - m.interest_expense",
}
_BASIS_UNIT = {"net_contribution": "元", "net_interest": "元"}


def loan_focus(rule: Rule, product: dict[str, Any]) -> str | None:
    """Which loans explain a loan product's alert: the non-performing ones for an NPL rule, the
    overdue ones for an overdue rule, any non-normal or overdue loan otherwise."""
    if product.get("category") != "loan":
        return None
    if rule.metric in ("npl_rate", "npl_balance"):
        return "npl"
    if rule.metric in ("overdue_rate", "overdue_balance"):
        return "overdue"
    return "risk"


def branch_basis(metric: str) -> tuple[str, str, str] | None:
    if metric in _BASIS:
        return _BASIS[metric]
    fact = FACTS.get(metric)
    if fact is not None and fact.additive:
        return metric, fact.name, "level"
    return None


def loan_evidence(conn: psycopg.Connection[Any], wanted: list[tuple[str, str]], scope: str | None,
                  top: int = TOP_LOANS) -> dict[tuple[str, str], dict[str, Any]]:
    """For each (product, focus): the contributing loans' count and balance and the `top` largest,
    in one set-based statement (a window over the loans of all wanted products at once)."""
    if not wanted:
        return {}
    codes = [w[0] for w in wanted]
    focus = [w[1] for w in wanted]
    case = " ".join(f"WHEN '{k}' THEN {v}" for k, v in _FOCUS_SQL.items())
    rows = conn.execute(
        "WITH wanted AS (SELECT * FROM unnest(%(codes)s::text[], %(focus)s::text[]) AS w(product_code, focus)),"
        " hit AS ("
        "  SELECT l.loan_id, l.product_code, w.focus, l.customer_id, l.branch_code, l.balance, l.maturity_date,"
        "         l.five_class, l.overdue_days,"
        "         row_number() OVER (PARTITION BY l.product_code, w.focus ORDER BY l.balance DESC, l.loan_id) AS rn,"
        "         count(*) OVER (PARTITION BY l.product_code, w.focus) AS n,"
        "         sum(l.balance) OVER (PARTITION BY l.product_code, w.focus) AS total"
        "  FROM loans l JOIN wanted w ON w.product_code = l.product_code"
        f"  WHERE CASE w.focus {case} ELSE false END AND " + branch_in_scope("l.branch_code") +
        " )"
        " SELECT h.*, c.name AS customer_name, b.name AS branch_name"
        " FROM hit h LEFT JOIN customers c ON c.customer_id = h.customer_id"
        " LEFT JOIN branches b ON b.code = h.branch_code"
        " WHERE h.rn <= %(top)s ORDER BY h.product_code, h.focus, h.rn",
        {"codes": codes, "focus": focus, "scope": scope, "top": top},
    ).fetchall()
    out: dict[tuple[str, str], dict[str, Any]] = {
        w: {"focus": w[1], "focus_name": FOCUS_NAMES[w[1]], "count": 0, "balance": 0.0,
            "balance_display": fmt_number(0, "元"), "top": []}
        for w in wanted
    }
    for r in rows:
        entry = out[(r["product_code"], r["focus"])]
        entry["count"] = int(r["n"])
        entry["balance"] = float(r["total"])
        entry["balance_display"] = fmt_number(r["total"], "元")
        entry["top"].append({
            "loan_id": r["loan_id"],
            "customer_name": mask_name(r["customer_name"]) or "—",
            "balance": float(r["balance"]), "balance_display": fmt_number(r["balance"], "元"),
            "maturity_date": r["maturity_date"].isoformat(),
            "branch_code": r["branch_code"], "branch_name": r["branch_name"] or r["branch_code"],
            "five_class": r["five_class"], "overdue_days": int(r["overdue_days"]),
        })
    return out


def branch_evidence(conn: psycopg.Connection[Any], wanted: list[tuple[str, str, date]], scope: str | None,
                    top: int = TOP_BRANCHES) -> dict[tuple[str, str], dict[str, Any]]:
    """For each (product, metric, month): how the metric's basis (NPL balance, overdue balance,
    balance outflow, contribution, complaints…) splits over the booking branches, with shares of
    the total inside `scope`. One query over the facts of all wanted products."""
    todo = [(p, k, m, branch_basis(k)) for p, k, m in wanted]
    todo = [t for t in todo if t[3] is not None]
    if not todo:
        return {}
    columns = sorted({b[0] for *_, b in todo if b is not None})
    months = sorted({m for _, _, m, _ in todo} | {shift(m, -1) for _, _, m, _ in todo}
                    | {shift(m, -12) for _, k, m, _ in todo if k == "balance_yoy"})
    exprs = ", ".join(f"{_BASIS_SQL.get(c, 'm.' + c)} AS {c}" for c in columns)
    rows = conn.execute(
        f"SELECT m.product_code, m.month, m.branch_code, b.name AS branch_name, {exprs}"
        " FROM metrics_monthly m JOIN branches b ON b.code = m.branch_code"
        " WHERE m.product_code = ANY(%(codes)s) AND m.month = ANY(%(months)s) AND " + branch_in_scope("m.branch_code"),
        {"codes": sorted({p for p, *_ in todo}), "months": months, "scope": scope},
    ).fetchall()
    data: dict[tuple[str, date], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        data[(r["product_code"], r["month"])].append(r)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for product, metric, month, basis in todo:
        assert basis is not None
        column, name, how = basis
        unit = _BASIS_UNIT.get(column) or FACTS[column].unit
        names: dict[str, str] = {}
        cur: dict[str, Decimal] = defaultdict(Decimal)
        base: dict[str, Decimal] = defaultdict(Decimal)
        for r in data.get((product, month), []):
            names[r["branch_code"]] = r["branch_name"]
            cur[r["branch_code"]] += r[column] or 0
        if how == "decline":
            against = shift(month, -12 if metric == "balance_yoy" else -1)
            for r in data.get((product, against), []):
                names[r["branch_code"]] = r["branch_name"]
                base[r["branch_code"]] += r[column] or 0
            amounts = {b: base[b] - cur[b] for b in names}
        else:
            amounts = {b: cur[b] for b in names}
        total = sum(amounts.values(), Decimal(0))
        sign = -1 if total < 0 else 1
        # Branches where the basis is nil (no bad loans there) say nothing about concentration.
        ranked = sorted(((b, a) for b, a in amounts.items() if a != 0), key=lambda kv: (-sign * kv[1], kv[0]))

        def share(x: Decimal, total: Decimal = total) -> tuple[float | None, str]:
            if total == 0:
                return None, "—"
            s = x / total * 100
            return float(s), f"{float(s):.1f}%"

        rows_out = []
        for code, amount in ranked[:top]:
            s, s_display = share(amount)
            rows_out.append({"branch_code": code, "branch_name": names[code], "amount": float(amount),
                             "amount_display": fmt_number(amount, unit), "share": s, "share_display": s_display})
        rest = ranked[top:]
        others = None
        if rest:
            amount = sum((a for _, a in rest), Decimal(0))
            s, s_display = share(amount)
            others = {"branches": len(rest), "amount": float(amount), "amount_display": fmt_number(amount, unit),
                      "share": s, "share_display": s_display}
        top_share = rows_out[0]["share_display"] if rows_out else "—"
        out[(product, metric)] = {
            "basis": column, "basis_name": name, "unit": unit, "how": how, "month": month_iso(month),
            "total": float(total), "total_display": fmt_number(total, unit), "branches": len(ranked),
            "rows": rows_out, "others": others, "top_share_display": top_share,
        }
    return out


def _point(m: date, v: Decimal | None, unit: str) -> dict[str, Any]:
    return {"month": month_iso(m), "value": _f(v), "display": fmt_number(v, unit)}


def _change(value: Decimal | None, prev: Decimal | None, unit: str) -> dict[str, Any] | None:
    if value is None or prev is None:
        return None
    diff = value - prev
    sign = "+" if diff >= 0 else ""
    if unit in ("%", "‱"):
        text = f"{sign}{float(diff):,.2f} 个{'百分点' if unit == '%' else '万分点'}"
    else:
        text = sign + fmt_number(diff, unit)
    out: dict[str, Any] = {"value": float(diff), "display": text, "relative": None, "relative_display": None}
    if prev > 0:
        rel = (value / prev - 1) * 100
        out["relative"] = float(rel)
        out["relative_display"] = f"{'+' if rel >= 0 else ''}{float(rel):.2f}%"
    return out


def metric_figures(rule: Rule, series: dict[date, Decimal | None], month: date,
                   base: dict[date, Decimal | None] | None = None) -> dict[str, Any]:
    """The value, previous month, change, six-month trend (and the N-month streak) of a rule's
    metric; for a comparison (余额环比) also the fact it compares, this month and the one compared."""
    unit = rule.unit
    value, prev = series.get(month), series.get(shift(month, -1))
    trend = [_point(shift(month, -i), series.get(shift(month, -i)), unit) for i in range(TREND_MONTHS - 1, -1, -1)]
    figures: dict[str, Any] = {
        "value": _f(value), "display": fmt_number(value, unit),
        "previous": _point(shift(month, -1), prev, unit), "change": _change(value, prev, unit), "trend": trend,
    }
    if rule.months > 1:
        figures["streak"] = [_point(shift(month, -i), series.get(shift(month, -i)), unit)
                             for i in range(rule.months - 1, -1, -1)]
    d = rule.definition
    if base is not None and isinstance(d, Metric) and d.base:
        fact = FACTS[d.base]
        against = shift(month, -12 if d.comparison == "yoy" else -1)
        figures["base"] = {"name": fact.name, "current": _point(month, base.get(month), fact.unit),
                           "compared": _point(against, base.get(against), fact.unit)}
    return figures


def rule_facts(rule: Rule) -> dict[str, Any]:
    d = rule.definition
    return {
        "name": rule.name, "title": rule.title, "metric": rule.metric, "metric_name": d.name, "unit": d.unit,
        "op": rule.op, "threshold": rule.threshold, "threshold_display": fmt_number(rule.threshold, d.unit),
        "upper": rule.upper, "upper_display": fmt_number(rule.upper, d.unit) if rule.upper is not None else None,
        "rise_pct": rule.rise_pct, "rise_display": f"{fmt_plain(rule.rise_pct)}%" if rule.rise_pct is not None else None,
        "months": rule.months, "level": rule.level, "level_name": LEVEL_NAMES.get(rule.level, rule.level),
        "condition": rule.condition(), "applies_to": rule.scope_text(),
    }


def _product_facts(p: dict[str, Any]) -> dict[str, Any]:
    return {"code": p["code"], "name": p["name"], "category": p["category"],
            "category_name": CATEGORY_NAMES.get(p["category"], p["category"]), "status": p["status"],
            "status_name": STATUS_NAMES.get(p["status"], p["status"]), "owner_dept": p.get("owner_dept") or ""}


def build_evidence(conn: psycopg.Connection[Any], fired: list[Fired], scope: str | None = None) -> list[dict[str, Any]]:
    """The evidence snapshot of each fired alert (same order), with every figure and its display text."""
    wanted_loans = sorted({(f.product["code"], focus) for f in fired if (focus := loan_focus(f.rule, f.product))})
    loans = loan_evidence(conn, wanted_loans, scope)
    branches = branch_evidence(conn, sorted({(f.product["code"], f.rule.metric, f.month) for f in fired}), scope)
    out = []
    for f in fired:
        figures = metric_figures(f.rule, f.series, f.month, f.base)
        rule = rule_facts(f.rule)
        focus = loan_focus(f.rule, f.product)
        prev = figures["previous"]["display"]
        summary = (f"{month_label(f.month)}全行{rule['metric_name']}为 {figures['display']}（上月 {prev}），"
                   f"满足「{rule['condition']}」，触发「{rule['title']}」（{rule['level_name']}）。")
        out.append({
            "rule": rule, "product": _product_facts(f.product), "month": month_iso(f.month),
            "month_label": month_label(f.month), "scope": "全行", **figures,
            "loans": loans.get((f.product["code"], focus)) if focus else None,
            "branches": branches.get((f.product["code"], f.rule.metric)),
            "next_steps": advice_for(f.rule), "summary": summary,
        })
    return out


# --- a run -----------------------------------------------------------------------------------------

_UPSERT = """
WITH incoming AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
        AS x(rule text, product_code text, month date, level text, metric text, value double precision,
             condition text, evidence jsonb)
)
INSERT INTO alert_events AS e (rule, product_code, month, level, metric, value, condition, evidence)
SELECT rule, product_code, month, level, metric, value, condition, evidence FROM incoming
ON CONFLICT (rule, product_code, month) DO UPDATE SET
    active = true,
    level = excluded.level, metric = excluded.metric, value = excluded.value, condition = excluded.condition,
    -- the first snapshot stays unless the figures behind the alert changed
    evidence = CASE WHEN (e.level, e.metric, e.value, e.condition)
                         IS DISTINCT FROM (excluded.level, excluded.metric, excluded.value, excluded.condition)
                    THEN excluded.evidence ELSE e.evidence END,
    updated_at = now()
WHERE NOT e.active
   OR (e.level, e.metric, e.value, e.condition)
      IS DISTINCT FROM (excluded.level, excluded.metric, excluded.value, excluded.condition)
RETURNING e.id, e.rule, e.product_code, (xmax = 0) AS inserted
"""


def rules_digest(rules: tuple[Rule, ...]) -> tuple[list[dict[str, Any]], str]:
    listed = [r.as_dict() for r in rules if r.enabled]
    text = json.dumps(listed, ensure_ascii=False, sort_keys=True, default=str)
    return listed, hashlib.sha256(text.encode("utf-8")).hexdigest()


def store_run(conn: psycopg.Connection[Any], ruleset: RuleSet, month: date | str | None = None,
              started: float | None = None) -> dict[str, Any]:
    """Evaluate `ruleset` on a month and store the events, inside the caller's transaction."""
    started = time.perf_counter() if started is None else started
    conn.execute("SELECT pg_advisory_xact_lock(%(k)s)", {"k": _LOCK_KEY})
    m = resolve_month(conn, month)
    fired = evaluate(conn, ruleset.rules, m)
    evidence = build_evidence(conn, fired)
    rows = [
        {"rule": f.rule.name, "product_code": f.product["code"], "month": m.isoformat(), "level": f.rule.level,
         "metric": f.rule.metric, "value": float(f.value), "condition": f.rule.condition(), "evidence": ev}
        for f, ev in zip(fired, evidence, strict=True)
    ]
    changed = conn.execute(_UPSERT, {"rows": json.dumps(rows, ensure_ascii=False)}).fetchall() if rows else []
    inserted = {(r["rule"], r["product_code"]) for r in changed if r["inserted"]}
    deactivated = conn.execute(
        "UPDATE alert_events SET active = false, updated_at = now()"
        " WHERE month = %(m)s AND active AND (rule, product_code) NOT IN"
        "   (SELECT * FROM unnest(%(rules)s::text[], %(codes)s::text[]))"
        " RETURNING id",
        {"m": m, "rules": [f.rule.name for f in fired], "codes": [f.product["code"] for f in fired]},
    ).fetchall()
    ids = {(r["rule"], r["product_code"]): r["id"] for r in conn.execute(
        "SELECT id, rule, product_code FROM alert_events WHERE month = %(m)s AND active", {"m": m}).fetchall()}
    listed, sha = rules_digest(ruleset.rules)
    seconds = time.perf_counter() - started
    conn.execute(
        "INSERT INTO alert_runs (month, rules, rules_sha, fired, new, seconds)"
        " VALUES (%(m)s, %(rules)s, %(sha)s, %(fired)s, %(new)s, %(s)s)",
        {"m": m, "rules": json.dumps({"rules": listed, **ruleset.status()}, ensure_ascii=False), "sha": sha,
         "fired": len(fired), "new": len(inserted), "s": seconds},
    )
    return {
        "month": month_iso(m), "month_label": month_label(m), "fired": len(fired), "new": len(inserted),
        "updated": len(changed) - len(inserted), "unchanged": len(fired) - len(changed),
        "deactivated": len(deactivated), "seconds": round(seconds, 3), "rules": ruleset.status(),
        "events": [
            {"id": ids.get(f.key), "rule": f.rule.name, "title": f.rule.title, "level": f.rule.level,
             "level_name": LEVEL_NAMES.get(f.rule.level, f.rule.level), "product_code": f.product["code"],
             "product_name": f.product["name"], "value": float(f.value), "display": ev["display"],
             "condition": ev["rule"]["condition"], "new": f.key in inserted}
            for f, ev in zip(fired, evidence, strict=True)
        ],
    }


def run_alerts(db: Database, month: date | None = None) -> dict[str, Any]:
    """Evaluate the alert rules in force on the latest month (or `month`) and store the events;
    idempotent. Returns month, fired, new, updated, unchanged, deactivated, seconds, rules, events."""
    started = time.perf_counter()
    book = rulebook(db.settings)
    with db.connection() as conn:
        ruleset = book.current(conn)
        with conn.transaction():
            return store_run(conn, ruleset, month, started)


# --- reading alerts: list and explain --------------------------------------------------------------

_EVENT_COLUMNS = (
    "e.id, e.rule, e.product_code, e.month, e.level, e.metric, e.value, e.condition, e.evidence, e.active,"
    " e.created_at, e.updated_at, e.pushed_at, p.name AS product_name, p.category, p.segment, p.status,"
    " p.owner_dept"
)
_LATEST_DISPOSITION = (
    " LEFT JOIN LATERAL (SELECT d.disposition, d.user_id, d.created_at FROM alert_dispositions d"
    " WHERE d.alert_id = e.id ORDER BY d.created_at DESC, d.id DESC LIMIT 1) ld ON true"
)


def _level_key(level: str | None) -> str | None:
    if not level:
        return None
    if level not in LEVEL_ALIASES:
        raise PuyiError(f"预警级别「{level}」无法识别：{LEVEL_CHOICES}")
    return LEVEL_ALIASES[level]


def last_run(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    row = conn.execute("SELECT month, fired, new, seconds, started_at FROM alert_runs ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    return {"month": month_iso(row["month"]) if row["month"] else None, "fired": row["fired"], "new": row["new"],
            "seconds": round(float(row["seconds"]), 3), "started_at": row["started_at"].isoformat()}


def _rule_of(row: dict[str, Any]) -> dict[str, Any]:
    """The rule as snapshotted in the evidence, or what the event row itself says."""
    ev = row["evidence"] or {}
    if ev.get("rule"):
        return dict(ev["rule"])
    d = definition(row["metric"]) if row["metric"] in (*METRICS, *FACTS) else None
    return {"name": row["rule"], "title": row["rule"], "metric": row["metric"], "metric_name": d.name if d else row["metric"],
            "unit": d.unit if d else "", "op": ">=", "threshold": None, "threshold_display": "—", "upper": None,
            "rise_pct": None, "months": 1, "level": row["level"], "level_name": LEVEL_NAMES.get(row["level"], row["level"]),
            "condition": row["condition"], "applies_to": ""}


def list_alerts(ctx: ToolContext, month: date | str | None = None, level: str | None = None,
                product: str | None = None, active: bool | None = True) -> dict[str, Any]:
    """预警清单：某月（默认最近一次有预警的月份）的预警事件，可按级别（停牌/关注/退出评估）和产品筛选。
    全行角色看到触发时的全行数值；客户经理只看到规则、级别和条件，不看全行数值。"""
    conn, who = ctx.conn, ctx.principal
    wanted = parse_month(month)
    level_key = _level_key(level)
    filters = (" AND (%(level)s::text IS NULL OR e.level = %(level)s)"
               " AND (%(product)s::text IS NULL OR e.product_code = %(product)s)"
               " AND (%(active)s::boolean IS NULL OR e.active = %(active)s)")
    params: dict[str, Any] = {"level": level_key, "product": product, "active": active}
    if wanted is None:
        row = conn.execute("SELECT max(e.month) AS m FROM alert_events e WHERE true" + filters, params).fetchone()
        wanted = row["m"] if row and row["m"] else fact_meta(conn).latest_month
    rows = conn.execute(
        f"SELECT {_EVENT_COLUMNS}, ld.disposition FROM alert_events e JOIN products p ON p.code = e.product_code"
        + _LATEST_DISPOSITION + " WHERE e.month = %(m)s" + filters,
        {**params, "m": wanted},
    ).fetchall()
    items = []
    for r in rows:
        rule = _rule_of(r)
        ev = r["evidence"] or {}
        items.append({
            "id": r["id"], "rule": r["rule"], "title": rule.get("title") or r["rule"], "level": r["level"],
            "level_name": LEVEL_NAMES.get(r["level"], r["level"]), "product_code": r["product_code"],
            "product_name": r["product_name"], "product_status": r["status"],
            "product_status_name": STATUS_NAMES.get(r["status"], r["status"]),
            "month": month_iso(r["month"]), "metric": r["metric"], "metric_name": rule.get("metric_name", r["metric"]),
            "condition": r["condition"], "active": r["active"],
            # bank-wide figures only for bank-wide roles
            "value": r["value"] if who.bank_wide else None,
            "display": ev.get("display", fmt_number(r["value"], rule.get("unit", ""))) if who.bank_wide else "—",
            "disposition": r["disposition"], "disposition_name": DISPOSITIONS.get(r["disposition"] or "", "未处置"),
            "pushed": r["pushed_at"] is not None,
        })
    items.sort(key=lambda i: (LEVEL_ORDER.get(i["level"], 9), i["rule"], i["product_code"]))
    by_level = {k: sum(1 for i in items if i["level"] == k) for k in LEVEL_NAMES}
    meta = fact_meta(conn)
    return {
        "month": month_iso(wanted) if wanted else None, "month_label": month_label(wanted) if wanted else "—",
        "scope": who.scope_label, "bank_wide": who.bank_wide,
        "filters": {"level": level_key, "level_name": LEVEL_NAMES.get(level_key or "", None), "product": product,
                    "active": active},
        "total": len(items), "by_level": by_level,
        "by_level_text": "，".join(f"{LEVEL_NAMES[k]} {n} 条" for k, n in by_level.items() if n) or "无",
        "items": items, "last_run": last_run(conn),
        "data_month": month_iso(meta.latest_month) if meta.latest_month else None,
        "can_dispose": who.may("dispose_alert"),
    }


def _rule_from(d: dict[str, Any]) -> Rule:
    return Rule(name=d["name"], metric=d["metric"], op=d.get("op") or ">=", threshold=d.get("threshold") or 0.0,
                level=d.get("level") or "watch", title=d.get("title") or "", upper=d.get("upper"),
                rise_pct=d.get("rise_pct"), months=int(d.get("months") or 1))


def _dispositions(conn: psycopg.Connection[Any], alert_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT d.id, d.user_id, coalesce(u.name, d.user_id) AS user_name, d.disposition, d.note, d.channel,"
        " d.created_at FROM alert_dispositions d LEFT JOIN users u ON u.user_id = d.user_id"
        " WHERE d.alert_id = %(a)s ORDER BY d.created_at, d.id",
        {"a": alert_id},
    ).fetchall()
    return [{"id": r["id"], "user_id": r["user_id"], "user_name": r["user_name"], "disposition": r["disposition"],
             "disposition_name": DISPOSITIONS[r["disposition"]], "note": r["note"], "channel": r["channel"],
             "created_at": r["created_at"].isoformat(timespec="seconds")} for r in rows]


def dispose_actions(alert_id: int) -> list[str]:
    """What a user may send to dispose of an alert (the alert route understands each)."""
    return [f"确认 #{alert_id}", f"误报 #{alert_id}", f"已处置 #{alert_id}"]


def _alert_view(conn: psycopg.Connection[Any], who: Principal, row: dict[str, Any]) -> dict[str, Any]:
    """One alert as the asker may see it: the snapshot for bank-wide roles, the same figures over
    their own branches (computed now) for a relationship manager."""
    ev = dict(row["evidence"] or {})
    rule = _rule_of(row)
    month = row["month"]
    product = ev.get("product") or _product_facts(
        {"code": row["product_code"], "name": row["product_name"], "category": row["category"],
         "status": row["status"], "owner_dept": row["owner_dept"]})
    view: dict[str, Any] = {
        "id": row["id"], "rule": rule, "product": product, "month": month_iso(month), "month_label": month_label(month),
        "level": row["level"], "level_name": LEVEL_NAMES.get(row["level"], row["level"]), "active": row["active"],
        "created_at": row["created_at"].isoformat(timespec="seconds"), "pushed": row["pushed_at"] is not None,
        "next_steps": ev.get("next_steps") or (advice_for(_rule_from(rule)) if rule.get("metric") else []),
        "dispositions": _dispositions(conn, row["id"]),
        "actions": dispose_actions(row["id"]) if who.may("dispose_alert") else [],
    }
    if who.bank_wide:
        view.update({k: ev.get(k) for k in ("value", "display", "previous", "change", "trend", "streak", "base", "loans",
                                             "branches", "summary")})
        view["scope"] = "全行"
        if view["value"] is None:
            view["value"], view["display"] = row["value"], fmt_number(row["value"], rule.get("unit", ""))
        if not view.get("summary"):
            view["summary"] = (f"{month_label(month)}全行{rule.get('metric_name')}为 {view['display']}，"
                               f"满足「{row['condition']}」，触发「{rule.get('title')}」（{view['level_name']}）。")
        return view
    # A relationship manager: the same metric over their branch subtree, computed now.
    r = _rule_from(rule)
    span = max(TREND_MONTHS, r.months)
    d = r.definition
    base_key = d.base if isinstance(d, Metric) else None
    series = metric_series(conn, who, {r.metric} | ({base_key} if base_key else set()), shift(month, -span), month,
                           [row["product_code"]])
    figures = metric_figures(r, series[r.metric].get(row["product_code"], {}), month,
                             series[base_key].get(row["product_code"], {}) if base_key else None)
    focus = (ev.get("loans") or {}).get("focus") or loan_focus(r, product)
    loans = loan_evidence(conn, [(row["product_code"], focus)], who.scope_branch).get((row["product_code"], focus)) \
        if focus else None
    branches = branch_evidence(conn, [(row["product_code"], r.metric, month)], who.scope_branch)
    view.update(figures)
    view.update({
        "scope": who.scope_label, "loans": loans, "branches": branches.get((row["product_code"], r.metric)),
        "summary": (f"该产品按全行汇总数据于{month_label(month)}触发「{rule.get('title')}」（{view['level_name']}，"
                    f"条件：{row['condition']}）。全行数值仅向风险管理、产品经理和管理员展示；"
                    f"{who.scope_label}的{rule.get('metric_name')}为 {figures['display']}"
                    f"（上月 {figures['previous']['display']}）。"),
    })
    return view


def _product(conn: psycopg.Connection[Any], code: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT code, name, category, segment, status, owner_dept, level FROM products WHERE code = %(c)s", {"c": code}
    ).fetchone()
    return dict(row) if row else None


def explain_alert(ctx: ToolContext, product_code: str | None = None, alert_id: int | None = None) -> dict[str, Any]:
    """预警解读：为什么某产品触发预警/被停牌——规则与阈值、指标值与近六个月走势、贡献最大的贷款（客户名脱敏）、
    机构集中度和下一步建议。按预警编号（alert_id）或产品编码（该产品最近一个月的有效预警）查询。"""
    conn, who = ctx.conn, ctx.principal
    base: dict[str, Any] = {"scope": who.scope_label, "bank_wide": who.bank_wide, "role": who.role,
                            "role_name": ROLE_NAMES.get(who.role, who.role), "can_dispose": who.may("dispose_alert"),
                            "last_run": last_run(conn), "alert_id": alert_id, "product_code": product_code}
    if alert_id is not None:
        try:
            wanted = int(alert_id)
        except (TypeError, ValueError):
            return {**base, "status": "not_found"}
        rows = conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM alert_events e JOIN products p ON p.code = e.product_code WHERE e.id = %(id)s",
            {"id": wanted},
        ).fetchall()
        if not rows:
            return {**base, "status": "not_found"}
        product = _product(conn, rows[0]["product_code"])
    else:
        if not product_code:
            return {**base, "status": "no_product"}
        product = _product(conn, product_code)
        if product is None:
            return {**base, "status": "unknown_product"}
        rows = conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM alert_events e JOIN products p ON p.code = e.product_code"
            " WHERE e.product_code = %(p)s AND e.active AND e.month ="
            " (SELECT max(month) FROM alert_events WHERE product_code = %(p)s AND active)",
            {"p": product_code},
        ).fetchall()
    assert product is not None
    facts = _product_facts(product)
    if not rows:
        run = base["last_run"]
        if run is None:
            note = "尚未运行过预警评估（puyi alerts run），预警记录为空。"
        else:
            note = f"最近一次预警评估（{run['month']}）中，该产品没有触发任何预警规则。"
        if product["status"] in ("suspended", "retired"):
            note += (f"该产品目前为「{facts['status_name']}」状态，但这不是由预警规则触发的（预警记录中没有它的预警事件），"
                     f"可能是人工决定或在规则评估之前已{facts['status_name']}，具体原因请咨询{facts['owner_dept'] or '产品主管部门'}。")
        return {**base, "status": "no_alert", "product": facts, "note": note}
    alerts = [_alert_view(conn, who, dict(r)) for r in rows]
    alerts.sort(key=lambda a: (LEVEL_ORDER.get(a["level"], 9), a["rule"]["name"]))
    return {**base, "status": "found", "product": facts, "alerts": alerts,
            "note": "" if alerts[0]["active"] else "该预警在最近一次评估中已不再触发（已失效），以下为触发时的证据。"}


# --- dispositions and review -----------------------------------------------------------------------


def record_disposition(conn: psycopg.Connection[Any], alert_id: int | str, principal: Principal, disposition: str,
                       note: str = "", channel: str = "cli") -> dict[str, Any]:
    """Record a disposition (confirmed, false_alarm, action_taken) of an alert; risk and admin only.
    Raises NotAllowed for other roles and AlertNotFound for an unknown number."""
    if not principal.may("dispose_alert"):
        raise NotAllowed(f"您的角色（{ROLE_NAMES.get(principal.role, principal.role)}）无权处置预警：预警处置仅限风险管理和"
                         f"管理员角色 (forbidden: dispose_alert)")
    key = disposition_key(disposition)
    try:
        wanted = int(str(alert_id).lstrip("#＃"))
    except ValueError as exc:
        raise AlertNotFound(f"没有编号为 {alert_id} 的预警 (no such alert)") from exc
    row = conn.execute(
        "SELECT e.id, e.rule, coalesce(e.evidence->'rule'->>'title', e.rule) AS title, e.product_code,"
        " p.name AS product_name, e.month, e.level, e.active"
        " FROM alert_events e LEFT JOIN products p ON p.code = e.product_code WHERE e.id = %(id)s",
        {"id": wanted},
    ).fetchone()
    if row is None:
        raise AlertNotFound(f"没有编号为 #{wanted} 的预警 (no such alert)")
    saved = conn.execute(
        "INSERT INTO alert_dispositions (alert_id, user_id, disposition, note, channel)"
        " VALUES (%(a)s, %(u)s, %(d)s, %(n)s, %(c)s) RETURNING id, created_at",
        {"a": wanted, "u": principal.user_id, "d": key, "n": (note or "").strip()[:2000], "c": channel},
    ).fetchone()
    assert saved is not None
    return {
        "status": "recorded", "id": saved["id"], "alert_id": wanted, "disposition": key,
        "disposition_name": DISPOSITIONS[key], "note": (note or "").strip()[:2000], "channel": channel,
        "user_id": principal.user_id, "user_name": principal.name, "created_at": saved["created_at"].isoformat(timespec="seconds"),
        "alert": {"rule": row["rule"], "title": row["title"], "product_code": row["product_code"], "product_name": row["product_name"],
                  "month": month_iso(row["month"]), "level": row["level"],
                  "level_name": LEVEL_NAMES.get(row["level"], row["level"]), "active": row["active"]},
    }


def dispose_alert(ctx: ToolContext, alert_id: int, disposition: str, note: str = "") -> dict[str, Any]:
    """预警处置：把编号为 alert_id 的预警记为 确认（confirmed）、误报（false_alarm）或 已采取措施（action_taken），
    可附备注；仅风险管理和管理员可处置。"""
    channel = ctx.channel or "chat"  # wecom, web, openai…; "chat" for an unrecorded turn
    try:
        return record_disposition(ctx.conn, alert_id, ctx.principal, disposition, note, channel=channel)
    except NotAllowed as exc:
        return {"status": "forbidden", "alert_id": alert_id, "message": str(exc),
                "role_name": ROLE_NAMES.get(ctx.principal.role, ctx.principal.role)}
    except AlertNotFound as exc:
        return {"status": "not_found", "alert_id": alert_id, "message": str(exc)}


def suggest_threshold(op: str, threshold: float, unit: str, metric_name: str, positives: list[Decimal],
                      negatives: list[Decimal]) -> dict[str, Any]:
    """The threshold that keeps every confirmed (or acted-on) alert and drops the most false alarms."""
    q = Decimal("0.01")
    current = Decimal(str(threshold))
    cur_text = fmt_number(current, unit)
    upward = op in (">=", ">")
    if not negatives:
        return {"threshold": threshold, "threshold_display": cur_text, "dropped": 0,
                "reason": f"已处置的 {len(positives)} 条都是有效预警（没有误报），建议维持当前阈值 {cur_text}。"}
    if positives:
        edge = min(positives) if upward else max(positives)
        t = edge.quantize(q, ROUND_FLOOR if upward else ROUND_CEILING)
        if not compare(op, edge, t):  # a strict comparison at exactly the edge
            t = t - q if upward else t + q
        dropped = sum(1 for n in negatives if not compare(op, n, t))
        t_text = fmt_number(t, unit)
        if dropped == 0:
            return {"threshold": threshold, "threshold_display": cur_text, "dropped": 0,
                    "reason": (f"误报的{metric_name}都落在有效预警的范围内，调整阈值无法在不漏掉有效预警的情况下减少误报，"
                               f"建议维持当前阈值 {cur_text}，从其他条件（如持续月数、上升幅度）入手。")}
        word = "最低" if upward else "最高"
        return {"threshold": float(t), "threshold_display": t_text, "dropped": dropped,
                "reason": (f"有效预警中{metric_name}{word}为 {fmt_number(edge, unit)}：把阈值从 {cur_text} 调整为 {t_text}，"
                           f"可保留全部 {len(positives)} 条有效预警，并减少 {dropped} 条误报（共 {len(negatives)} 条）。")}
    edge = max(negatives) if upward else min(negatives)
    t = edge.quantize(q, ROUND_FLOOR) + q if upward else edge.quantize(q, ROUND_CEILING) - q
    t_text = fmt_number(t, unit)
    return {"threshold": float(t), "threshold_display": t_text, "dropped": len(negatives),
            "reason": (f"已处置的 {len(negatives)} 条全部为误报：阈值调整为 {t_text} 可避免这些误报，"
                       f"也可考虑停用或重新设计该规则。")}


def _rules_in_force(conn: psycopg.Connection[Any], ruleset: RuleSet | None) -> tuple[dict[str, dict[str, Any]], str]:
    if ruleset is not None:
        return {r.name: rule_facts(r) for r in ruleset.rules if r.enabled}, ruleset.in_force_from
    row = conn.execute("SELECT rules FROM alert_runs ORDER BY id DESC LIMIT 1").fetchone()
    if row is None or not isinstance(row["rules"], dict):
        return {r.name: rule_facts(r) for r in DEFAULT_RULES}, "defaults"
    listed = row["rules"].get("rules") or []
    out = {}
    for d in listed:
        try:
            out[d["name"]] = rule_facts(_rule_from(d))
        except (KeyError, TypeError):
            continue
    return out, str(row["rules"].get("in_force_from") or "alert_runs")


def review_rules(conn: psycopg.Connection[Any], ruleset: RuleSet | None = None) -> dict[str, Any]:
    """Each rule's alerts, dispositions and precision = (confirmed + action_taken) / disposed, with a
    threshold suggested from the dispositions ("数据不足" below MIN_DISPOSED). The rules are the
    ones of `ruleset`, else those in force at the last run."""
    rules, source = _rules_in_force(conn, ruleset)
    rows = conn.execute(
        "SELECT e.rule, e.value, e.active, ld.disposition FROM alert_events e" + _LATEST_DISPOSITION
    ).fetchall()
    stats: dict[str, dict[str, Any]] = {}
    for name in rules:
        stats[name] = {"fired": 0, "active": 0, "confirmed": 0, "false_alarm": 0, "action_taken": 0, "pos": [], "neg": []}
    for r in rows:
        s = stats.setdefault(r["rule"], {"fired": 0, "active": 0, "confirmed": 0, "false_alarm": 0, "action_taken": 0,
                                         "pos": [], "neg": []})
        s["fired"] += 1
        s["active"] += bool(r["active"])
        if r["disposition"]:
            s[r["disposition"]] += 1
            if r["value"] is not None:
                (s["neg"] if r["disposition"] == "false_alarm" else s["pos"]).append(Decimal(repr(r["value"])))
    out = []
    for name, s in stats.items():
        rule = rules.get(name)
        disposed = s["confirmed"] + s["false_alarm"] + s["action_taken"]
        useful = s["confirmed"] + s["action_taken"]
        precision = useful / disposed if disposed else None
        entry: dict[str, Any] = {
            "rule": name, "title": rule["title"] if rule else name, "in_force": rule is not None,
            "condition": rule["condition"] if rule else "（已不在当前规则中）",
            "level_name": rule["level_name"] if rule else "—",
            "fired": s["fired"], "active": s["active"], "disposed": disposed, "confirmed": s["confirmed"],
            "false_alarm": s["false_alarm"], "action_taken": s["action_taken"], "precision": precision,
            "precision_display": f"{precision * 100:.1f}%" if precision is not None else "—",
        }
        if rule is None:
            entry["suggestion"] = None
            entry["advice"] = "该规则已不在当前规则中，不再给出阈值建议。"
        elif disposed < MIN_DISPOSED:
            entry["suggestion"] = None
            entry["advice"] = f"数据不足：已处置 {disposed} 条，至少需要 {MIN_DISPOSED} 条才能给出阈值建议。"
        else:
            sug = suggest_threshold(rule["op"], rule["threshold"], rule["unit"], rule["metric_name"], s["pos"], s["neg"])
            entry["suggestion"] = sug
            entry["advice"] = sug["reason"]
        out.append(entry)
    out.sort(key=lambda e: (not e["in_force"], e["rule"]))
    return {"rules": out, "source": source, "min_disposed": MIN_DISPOSED,
            "total_fired": sum(e["fired"] for e in out), "total_disposed": sum(e["disposed"] for e in out)}
