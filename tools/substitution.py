"""Internal substitution (内部替代): where a product's new customers came from.

Read from holdings (month, customer_id, product_code, balance), an optional file of the bank.

- A product's new customers in month M hold it at M with a balance > 0 and did not at M−1.
- A new customer is a switcher (来自行内其他产品) when at M−1 they held another product of the bank
  with a balance > 0 and by M had closed it or reduced it by at least 5 % (smaller dips are
  interest or valuation noise). Per source product the analysis counts the switchers, those who
  closed it, and the balance moved = the reduction (balance at M−1 minus balance at M, which is 0
  when closed).
- Coverage (覆盖新增余额的比例): of the product's balance held by its new customers at M, the part
  matched by money leaving the bank's other products: per switcher min(total reduction, their
  balance in the product), summed, over the new customers' balance.
- Net effect: from the facts (tools.facts, the same scope) the product's balance change over the
  window against (a) the change of its whole category (all its sellable products) and (b) the
  change of the pool = the product plus its main source products (those that gave ≥ 5 % of the
  money moved), because a large category can hide the substitution of a few products.
  Verdict (thresholds below): switchers ≥ 50 % of new customers, the product grew, and the category
  or the pool grew by less than half of the product's growth (or shrank) →
  "单产品看是增长，全局看是内耗"; switchers ≥ 50 % otherwise → mostly internal; 20–50 % → partial
  substitution; below 20 % → mostly new money.

A window of several months counts each month's new customers against their own previous month;
months whose previous month has no holdings cannot tell new from old and are left out.

Scope: holdings carry no branch, so an rm sees the customers whose servicing branch (customers.csv)
is in their subtree (in the SQL); bank-wide roles see every holding.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from core.access import branch_in_scope
from tools.catalog import CATEGORY_NAMES
from tools.context import ToolContext
from tools.evaluation import money, parse_month, pct
from tools.facts import fact_source
from tools.periods import FuturePeriod, label_for, month_label, shift

INTERNAL_SHARE = 50.0  # % of new customers who moved money from another product of the bank
PARTIAL_SHARE = 20.0
CATEGORY_RATIO = 0.5  # category (or pool) growth below this share of the product's growth: 内耗
MIN_REDUCTION = 5.0  # % of a source's balance: smaller dips are interest or valuation noise, not a move
MAIN_SOURCE_SHARE = 5.0  # % of the balance moved: a main source product, counted in the pool

_NEW = """
new_c AS (
    SELECT h.month, h.customer_id, h.balance
    FROM holdings h
    WHERE h.product_code = %(p)s AND h.month BETWEEN %(start)s AND %(end)s AND h.balance > 0
      AND ({scope})
      AND NOT EXISTS (SELECT 1 FROM holdings o WHERE o.product_code = %(p)s AND o.customer_id = h.customer_id
                      AND o.month = (h.month - interval '1 month')::date AND o.balance > 0)
),
moves AS (
    SELECT n.month, n.customer_id, b.product_code AS source, b.balance AS before,
           coalesce(a.balance, 0) AS after
    FROM new_c n
    JOIN holdings b ON b.customer_id = n.customer_id AND b.month = (n.month - interval '1 month')::date
         AND b.product_code <> %(p)s AND b.balance > 0
    LEFT JOIN holdings a ON a.customer_id = n.customer_id AND a.month = n.month AND a.product_code = b.product_code
    WHERE coalesce(a.balance, 0) <= b.balance * (1 - %(min_cut)s)
),
switchers AS (
    SELECT m.month, m.customer_id, sum(m.before - m.after) AS moved, bool_or(m.after = 0) AS closed_any,
           min(n.balance) AS new_balance
    FROM moves m JOIN new_c n ON n.month = m.month AND n.customer_id = m.customer_id
    GROUP BY m.month, m.customer_id
)
"""


def holdings_span(conn: Any) -> tuple[date | None, date | None]:
    """The first and latest month of holdings (None, None) when the bank has none."""
    row = conn.execute("SELECT min(month) AS first, max(month) AS last FROM holdings").fetchone()
    return (row["first"], row["last"]) if row else (None, None)


def _scope_sql() -> str:
    # The customer's servicing branch decides; bank-wide roles (scope NULL) see every holding.
    return ("%(scope)s::text IS NULL OR EXISTS (SELECT 1 FROM customers c WHERE c.customer_id = h.customer_id AND "
            + branch_in_scope("c.branch_code") + ")")


def _f(v: Any) -> float:
    return float(v) if v is not None else 0.0


def _share(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def substitution_analysis(ctx: ToolContext, product_code: str, month: str | None = None, months: int = 1,
                          since_launch: bool = False) -> dict[str, Any]:
    """内部替代分析：某产品在某月（默认持仓数据最新月；months>1 为截至该月的近几个月；since_launch=True
    为上线以来）的新客户中，上月持有本行其他产品并在当月减少或结清的客户占比、按来源产品拆分的客户数
    与转出余额、这些资金覆盖新增余额的比例，以及该产品余额变化与所属大类余额变化的对比（是否“内耗”）。
    按提问人的机构权限（客户归属机构）统计。"""
    conn = ctx.conn
    product = conn.execute(
        "SELECT code, name, level, category, status, launch_date FROM products WHERE code = %(c)s",
        {"c": product_code},
    ).fetchone()
    if product is None:
        return {"error": "unknown_product", "product_code": product_code,
                "message": f"产品目录中没有编码为 {product_code} 的产品。"}
    info = {"code": product["code"], "name": product["name"], "category": product["category"],
            "category_name": CATEGORY_NAMES.get(product["category"], product["category"]),
            "status": product["status"],
            "launch_date": product["launch_date"].isoformat() if product["launch_date"] else None}
    if product["level"] != "sellable":
        return {"error": "not_sellable", "product": info,
                "message": f"{product['name']}（{product['code']}）不是可售产品，客户持仓按可售产品登记。"}
    first, last = holdings_span(conn)
    if first is None or last is None:
        return {"error": "no_holdings", "product": info,
                "message": "本行没有导入客户持仓数据（holdings.csv），无法分析新客户来源和内部替代。"}
    if conn.execute("SELECT 1 FROM holdings WHERE product_code = %(p)s LIMIT 1", {"p": product_code}).fetchone() is None:
        return {"error": "not_in_holdings", "product": info,
                "message": f"客户持仓数据（holdings.csv）中没有{product['name']}（{product['code']}）的记录，"
                           "无法分析它的新客户来源。"}
    try:
        end = parse_month(month) or last
    except ValueError as exc:
        return {"error": "bad_month", "product": info, "message": str(exc)}
    if end > last:
        raise FuturePeriod(month_label(end), last)
    earliest = shift(first, 1)  # the first month whose previous month is in the data
    if end < earliest:
        return {"error": "no_previous_month", "product": info,
                "message": f"持仓数据从{month_label(first)}开始，{month_label(end)}没有上月数据可比，无法识别新客户。"}
    if since_launch:
        row = conn.execute("SELECT min(month) AS m FROM holdings WHERE product_code = %(p)s AND balance > 0",
                           {"p": product_code}).fetchone()
        start = row["m"] if row and row["m"] else end
    else:
        start = shift(end, -(max(1, int(months)) - 1))
    start = min(max(start, earliest), end)
    params = {"p": product_code, "start": start, "end": end, "scope": ctx.principal.scope_branch,
              "min_cut": MIN_REDUCTION / 100.0}
    head = "WITH " + _NEW.format(scope=_scope_sql())

    sources = conn.execute(
        head + "SELECT m.source, p.name, p.category, count(DISTINCT (m.month, m.customer_id)) AS customers,"
        " count(*) FILTER (WHERE m.after = 0) AS closed, sum(m.before - m.after) AS moved"
        " FROM moves m LEFT JOIN products p ON p.code = m.source"
        " GROUP BY m.source, p.name, p.category ORDER BY moved DESC, m.source",
        params,
    ).fetchall()
    # Per month; the period's totals are their sums (each new customer and switcher is in one month).
    monthly = conn.execute(
        head + "SELECT n.month, count(*) AS new_customers, count(s.customer_id) AS switchers,"
        " sum(n.balance) AS new_balance, sum(s.moved) AS moved, sum(least(s.moved, s.new_balance)) AS covered,"
        " count(*) FILTER (WHERE s.closed_any) AS closed_any"
        " FROM new_c n LEFT JOIN switchers s ON s.month = n.month AND s.customer_id = n.customer_id"
        " GROUP BY n.month ORDER BY n.month",
        params,
    ).fetchall()

    def total(key: str) -> Any:
        return sum((m[key] for m in monthly if m[key] is not None), start=0)

    new_n, sw, closed = int(total("new_customers")), int(total("switchers")), int(total("closed_any"))
    new_bal, moved, covered = _f(total("new_balance")), _f(total("moved")), _f(total("covered"))
    share, coverage = _share(sw, new_n), _share(covered, new_bal)
    label = label_for(start, end)
    result: dict[str, Any] = {
        "product": info,
        "period": {"start": start.isoformat(), "end": end.isoformat(), "months": (end.year - start.year) * 12
                   + end.month - start.month + 1, "label": label, "since_launch": bool(since_launch),
                   "holdings_first": first.isoformat(), "holdings_latest": last.isoformat()},
        "scope": ctx.principal.scope_label,
        "new_customers": new_n, "new_customers_display": f"{new_n:,} 户",
        "new_balance": new_bal, "new_balance_display": money(new_bal),
        "switchers": sw, "switchers_display": f"{sw:,} 户",
        "switch_share": share, "switch_share_display": pct(share, 1),
        "fresh": new_n - sw, "fresh_display": f"{new_n - sw:,} 户",
        "fresh_share": _share(new_n - sw, new_n), "fresh_share_display": pct(_share(new_n - sw, new_n), 1),
        "closed_switchers": closed, "closed_switchers_display": f"{closed:,} 户",
        "moved_balance": moved, "moved_balance_display": money(moved),
        "covered_balance": covered, "covered_balance_display": money(covered),
        "coverage_share": coverage, "coverage_share_display": pct(coverage, 1),
        "sources": [],
        "monthly": [],
    }
    for s in sources:
        cust, mv = int(s["customers"]), _f(s["moved"])
        result["sources"].append({
            "code": s["source"], "name": s["name"] or s["source"], "category": s["category"],
            "category_name": CATEGORY_NAMES.get(s["category"] or "", s["category"] or "—"),
            "same_category": s["category"] == product["category"],
            "customers": cust, "customers_display": f"{cust:,} 户",
            "customer_share": _share(cust, sw), "customer_share_display": pct(_share(cust, sw), 1),
            "closed": int(s["closed"]), "closed_display": f"{int(s['closed']):,} 户",
            "moved": mv, "moved_display": money(mv),
            "moved_share": _share(mv, moved), "moved_share_display": pct(_share(mv, moved), 1),
        })
    same = sum(s["moved"] for s in result["sources"] if s["same_category"])
    result["moved_same_category"] = same
    result["moved_same_category_display"] = money(same)
    result["moved_same_category_share_display"] = pct(_share(same, moved), 1)
    for m in monthly:
        n, k = int(m["new_customers"]), int(m["switchers"])
        result["monthly"].append({"month": m["month"].strftime("%Y-%m"), "new_customers": n, "switchers": k,
                                  "switch_share": _share(k, n), "switch_share_display": pct(_share(k, n), 1)})
    if new_n == 0:
        result["error"] = "no_new_customers"
        result["message"] = (f"{label}{product['name']}在{result['scope']}范围内没有新客户"
                             "（持仓由无到有的客户），无从分析新客户来源。")
        return result
    main = [x["code"] for x in result["sources"] if (x["moved_share"] or 0) >= MAIN_SOURCE_SHARE]
    result["main_sources"] = main
    result["category_effect"] = _category_effect(ctx, product_code, product["category"], main, shift(start, -1), end)
    result.update(_verdict(result))
    return result


def _category_effect(ctx: ToolContext, code: str, category: str, sources: list[str], base: date,
                     end: date) -> dict[str, Any]:
    """The product's balance change over (base, end] against its category's and against the product
    together with its main source products, from the scoped facts."""
    src, params = fact_source(ctx.conn, ctx.principal)
    rows = ctx.conn.execute(
        f"SELECT f.month, sum(f.balance) FILTER (WHERE f.product_code = %(p)s) AS product,"
        " sum(f.balance) FILTER (WHERE f.product_code = %(p)s OR f.product_code = ANY(%(pool)s)) AS pool,"
        " sum(f.balance) FILTER (WHERE p.level = 'sellable' AND p.category = %(cat)s) AS category"
        f" FROM {src} JOIN products p ON p.code = f.product_code"
        " WHERE f.month IN (%(base)s, %(end)s) AND (p.category = %(cat)s OR f.product_code = ANY(%(pool)s))"
        " GROUP BY f.month",
        {**params, "p": code, "pool": sources, "cat": category, "base": base, "end": end},
    ).fetchall()
    got = {r["month"]: r for r in rows}
    if base not in got or end not in got:
        return {"available": False, "base": base.isoformat(), "end": end.isoformat(),
                "message": f"经营指标中缺少{month_label(base)}或{month_label(end)}的数据，无法对比大类余额变化。"}

    def val(m: date, k: str) -> float:
        v: Decimal | None = got[m][k]
        return float(v) if v is not None else 0.0

    p0, p1, c0, c1 = val(base, "product"), val(end, "product"), val(base, "category"), val(end, "category")
    q0, q1 = val(base, "pool"), val(end, "pool")
    dp, dc, dq = p1 - p0, c1 - c0, q1 - q0
    others = dc - dp
    return {
        "available": True, "base": base.isoformat(), "end": end.isoformat(),
        "base_label": month_label(base), "end_label": month_label(end),
        "category_name": CATEGORY_NAMES.get(category, category),
        "product_base": p0, "product_base_display": money(p0), "product_end": p1, "product_end_display": money(p1),
        "product_change": dp, "product_change_display": money(dp),
        "category_base": c0, "category_base_display": money(c0),
        "category_end": c1, "category_end_display": money(c1),
        "category_change": dc, "category_change_display": money(dc),
        "category_growth": _share(dc, c0), "category_growth_display": pct(_share(dc, c0), 2),
        "others_change": others, "others_change_display": money(others),
        "category_to_product": dc / dp if dp > 0 else None,
        "category_to_product_display": pct(_share(dc, dp), 1) if dp > 0 else "—",
        "pool": sources, "pool_base": q0, "pool_end": q1,
        "pool_change": dq, "pool_change_display": money(dq),
        "sources_change": dq - dp, "sources_change_display": money(dq - dp),
        "pool_to_product": dq / dp if dp > 0 and sources else None,
        "pool_to_product_display": pct(_share(dq, dp), 1) if dp > 0 and sources else "—",
    }


def _verdict(r: dict[str, Any]) -> dict[str, Any]:
    """The conclusion in words, by the thresholds of the module docstring."""
    share = r["switch_share"] or 0.0
    eff = r["category_effect"]
    if share >= INTERNAL_SHARE and not eff["available"]:
        code, text = "mostly_internal", "新客户大多来自本行其他产品（缺少大类余额数据，无法判断对全局的影响）"
    elif share >= INTERNAL_SHARE and eff["product_change"] > 0 and (
            eff["category_change"] < CATEGORY_RATIO * eff["product_change"]
            or (eff["pool"] and eff["pool_change"] < CATEGORY_RATIO * eff["product_change"])):
        code, text = "internal", "单产品看是增长，全局看是内耗"
    elif share >= INTERNAL_SHARE and eff["product_change"] <= 0:
        code, text = "mostly_internal", "新客户大多来自本行其他产品，且该产品余额本身没有增长"
    elif share >= INTERNAL_SHARE:
        code, text = "mostly_internal", "新客户大多来自本行其他产品，但所属大类整体仍在增长"
    elif share >= PARTIAL_SHARE:
        code, text = "partial", "部分新客户来自本行其他产品，存在一定程度的内部替代"
    else:
        code, text = "new_money", "新客户以行外新增资金为主，内部替代不明显"
    return {"verdict": code, "verdict_text": text,
            "thresholds": {"internal_share": INTERNAL_SHARE, "partial_share": PARTIAL_SHARE,
                           "category_ratio": CATEGORY_RATIO, "min_reduction": MIN_REDUCTION,
                           "min_reduction_display": pct(MIN_REDUCTION, 0)}}
