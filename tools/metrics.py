"""Metric questions as a structured query: `MetricQuery` is the only thing that becomes SQL.

A question is read into a `MetricQuery` (`parse_metric_question`): which metric (tools.metric_defs),
which months (tools.periods), which products (a named cluster or base product stands for its sellable
descendants), filters, the branch, grouping, comparison, top-N and share. `run_metric_query` turns
that object, and nothing else, into parameterised SQL over `tools.facts.fact_source` /
`child_source`, which carry the asker's branch scope inside the SQL. Identifiers that vary (fact
columns, group expressions) come only from the fixed tables in this module and in metric_defs.

Period semantics: over several months a stock fact (余额, 客户数, 不良余额…) is read at the period's
last month and a flow fact (收入, 发生额, 投诉…) is summed over the months, so a quarter's 万户投诉率 is
the quarter's complaints per ten thousand customers at the quarter's end. Rates are always computed
from the summed facts, never by averaging rates.

Every result carries raw values and the display strings the answer shows, so that each number in an
answer can be traced to the query.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from core.access import Principal, branch_in_scope
from core.errors import BadQuestion, PuyiError
from core.text import fmt_money, money_scale, normalize
from tools.catalog import CATEGORY_NAMES, SEGMENT_NAMES, Candidate, catalog_index
from tools.context import ToolContext
from tools.facts import (
    OutOfScope,
    child_source,
    fact_meta,
    fact_source,
    has_subtree,
    head_office,
    resolve_branch,
)
from tools.metric_defs import FACTS, METRICS, Fact, Metric, definition, find_metric
from tools.periods import (
    FuturePeriod,
    Period,
    cn_number,
    find_period,
    label_for,
    month_label,
    previous,
    shift,
    year_ago,
)

GROUP_BYS = ("product", "category", "segment", "cluster", "branch", "month")
COMPARES = ("mom", "yoy", "trend")
ORDERS = ("desc", "asc")
COMPARE_NAMES = {"mom": "环比", "yoy": "同比", "trend": "趋势"}
GROUP_NAMES = {"product": "产品", "category": "大类", "segment": "客群", "cluster": "聚类产品", "branch": "机构",
               "month": "月份"}
TREND_MONTHS = 6  # 趋势/走势 without a period: the latest six months
MAX_ROWS = 50  # rows a ranking returns when no top-N is asked
MAX_SERIES = 8  # lines a trend chart draws when grouped


class MetricError(PuyiError):
    """A metric question that cannot be answered with a number; the message says why."""


class UnknownMetric(MetricError):
    pass


class UnknownProduct(MetricError):
    pass


class AmbiguousProduct(MetricError):
    pass


class NoData(MetricError):
    pass


class NotApplicable(MetricError):
    pass


@dataclass(frozen=True)
class MetricQuery:
    """One metric question, fully resolved. Only this object becomes SQL."""

    metric: str  # a key of FACTS or METRICS (balance_mom/balance_yoy imply compare)
    period: Period
    products: tuple[str, ...] = ()  # sellable codes (a named cluster/base product expanded)
    named: tuple[str, ...] = ()  # the product codes as the question named them, for labels
    category: str | None = None
    segment: str | None = None
    branch: str | None = None  # a branch inside the asker's scope; None = the asker's whole scope
    branches: tuple[str, ...] = ()  # with group_by branch: only these child branches of `branch`
    group_by: str | None = None  # one of GROUP_BYS
    compare: str | None = None  # one of COMPARES
    top: int | None = None
    order: str = "desc"
    share: bool = False  # each group's share of the total (additive metrics only)
    rank_by: str = "value"  # "value" or "change" (增长最快): what a ranking sorts on
    notes: tuple[str, ...] = ()  # what the reading of the question assumed, shown with the answer

    def as_args(self) -> dict[str, Any]:
        """The query as JSON-able arguments of `query_metric` (which rebuilds the same query)."""
        args: dict[str, Any] = {
            "metric": self.metric, "start": self.period.start.strftime("%Y-%m"),
            "end": self.period.end.strftime("%Y-%m"), "period_label": self.period.label,
        }
        optional = {
            "products": list(self.named or self.products) or None, "category": self.category,
            "segment": self.segment, "branch": self.branch, "branches": list(self.branches) or None,
            "group_by": self.group_by, "compare": self.compare,
            "top": self.top, "order": self.order if self.order != "desc" else None, "share": self.share or None,
            "rank_by": self.rank_by if self.rank_by != "value" else None,
        }
        args.update({k: v for k, v in optional.items() if v is not None})
        return args


# --- formatting ------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def format_value(value: float | None, unit: str) -> str:
    """A metric value as the answer shows it."""
    if value is None:
        return "—"
    if unit == "元":
        return fmt_money(value)
    if unit in ("户", "笔"):
        return f"{value:,.0f} {unit}"
    if unit in ("%", "‱"):
        return f"{value:.2f}{unit}"
    return f"{value:,.2f} {unit}".rstrip()


def change_kind(unit: str) -> str:
    """Rates and scores change in points (个百分点); amounts and counts in per cent."""
    return "points" if unit in ("%", "‱", "分") else "pct"


def change_unit(unit: str) -> str:
    return {"%": "个百分点", "‱": "个万分点", "分": "分"}.get(unit, "%")


def compute_change(value: float | None, base: float | None, unit: str) -> float | None:
    if value is None or base is None:
        return None
    if change_kind(unit) == "points":
        return value - base
    if base == 0:
        return None
    return (value - base) / abs(base) * 100.0


def format_change(change: float | None, unit: str) -> str:
    if change is None:
        return "—"
    if change_kind(unit) == "pct":
        return f"{change:+.2f}%"
    return f"{change:+.2f} {change_unit(unit)}"


def _chart_scale(unit: str, values: Iterable[float | None]) -> tuple[str, float]:
    """The unit a chart's axis uses, and the divisor from the metric's unit to it."""
    if unit != "元":
        return unit, 1.0
    div, money_unit = money_scale(values)
    return money_unit, div


# --- the metrics themselves --------------------------------------------------------------------------

_SATISFACTION_COLS = {"satisfaction_w": "satisfaction", "satisfaction_n": "satisfaction"}


def value_definition(metric: str) -> Fact | Metric:
    """What the query's value is computed from: the metric, or for 余额环比/同比 the fact compared."""
    d = definition(metric)
    if isinstance(d, Metric) and d.base:
        return FACTS[d.base]
    return d


def is_additive(d: Fact | Metric) -> bool:
    """Whether group values add up to the total (so that a share makes sense)."""
    if isinstance(d, Fact):
        return d.additive
    return d.comparison is None and d.unit not in ("%", "‱")


def _source_columns(d: Fact | Metric) -> list[str]:
    keys = [d.key] if isinstance(d, Fact) else list(d.facts)
    cols: list[str] = []
    for key in keys:
        cols.extend([key] if FACTS[key].additive else [f"{key}_w", f"{key}_n"])
    return cols


def metric_catalogue() -> list[dict[str, Any]]:
    """Every metric and fact a question may name, with its Chinese name, unit and direction."""
    out = []
    every: list[Fact | Metric] = [*FACTS.values(), *METRICS.values()]
    for d in every:
        out.append({
            "key": d.key, "name": d.name, "aliases": list(d.aliases), "unit": d.unit,
            "higher_is_better": d.higher_is_better, "categories": list(d.categories or []),
            "kind": "fact" if isinstance(d, Fact) else "metric",
            "stock": bool(isinstance(d, Fact) and d.stock),
        })
    return out


def _metric_names() -> str:
    return "、".join([f.name for f in FACTS.values()] + [m.name for m in METRICS.values()])


# --- reading a question ------------------------------------------------------------------------------


class RoutedQuestion(Protocol):
    """What the reading needs of a routed question (agents.router.RouteDecision)."""

    question: str
    residual: str  # the question normalised, with the product names it links blanked out
    products: list[Candidate]


_NUM = r"\d{1,3}|[一二两三四五六七八九十]{1,3}"
_NOT_PERIOD = r"(?!\s*个?(?:月|季|年|天|周|期|日))"  # 前两个月 is a period, not a top-2
_TOP_RE = re.compile(rf"(?:排名前|前|top)\s*(?P<n>{_NUM}){_NOT_PERIOD}")
_BOTTOM_RE = re.compile(rf"(?:排名后|倒数|后|末)\s*(?:第)?\s*(?P<n>{_NUM}){_NOT_PERIOD}")
_COUNT_RE = re.compile(rf"(?P<n>{_NUM})\s*(?:个|款|家|名|只|位|项){_NOT_PERIOD}")
_DESC_RE = re.compile(r"最高|最多|最大|最强|最快|领先|靠前|排名|排行|排序|前列|top")
_ASC_RE = re.compile(r"最低|最少|最小|最弱|最慢|垫底|靠后|倒数|末位")
_BEST_RE = re.compile(r"最好|最优|最佳|最理想")
_WORST_RE = re.compile(r"最差|最糟|最坏|最不理想")
_SINGLE_RE = re.compile(r"哪(?:一|1)?(?:个|款|家|只|项|类|种)|谁")
_SHARE_RE = re.compile(r"占比|份额|比重|占全|占总|结构|集中度")
_CHANGE_RANK_RE = re.compile(r"增长|增速|增幅|涨幅|降幅|下降|减少|增加|上升|下滑|变动|变化")
_MOM_RE = re.compile(r"环比|较上月|比上月|与上月相比|相比上月|上月相比|较上期|比上期|较前一月")
_YOY_RE = re.compile(r"同比|去年同期|上年同期|较去年|比去年|与去年相比|相比去年|较上年|比上年")
_TREND_RE = re.compile(r"趋势|走势|曲线|历史|逐月|每月变化|月度变化|变化情况|变动情况|怎么变|如何变|变化|变动")
# Phrases naming a comparison's base: cut before reading the period, so 较上月 is not the period 上月.
_BASE_PHRASE_RE = re.compile(
    r"较上月|比上月|与上月相比|相比上月|上月相比|较上期|比上期|较前一月|去年同期|上年同期|较去年|比去年|与去年相比|相比去年|较上年|比上年"
)
# 新增了多少客户 names the fact 新增客户 with words in between.
_SPLIT_NAMES = ((re.compile(r"新增了?(?:多少|几)?个?(?:客户|户)"), "新增客户"),
                (re.compile(r"流失了?(?:多少|几)?个?(?:客户|户)"), "流失客户"))
# 比8月 / 较2025年9月: an explicit comparison base, read as 环比 or 同比 when it is one of them.
_BASE_MONTH_RE = re.compile(r"(?:比|较|相比于?|对比)\s*(?:(?P<y>\d{4})\s*年)?\s*(?P<m>1[0-2]|0?[1-9])\s*月份?")
_WHOLE_BANK_RE = re.compile(r"全行|全辖|总行|全部机构|所有机构")
_GROUP_RES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (g, re.compile(p)) for g, p in (
        ("branch", r"(?:各|每个|每家|分|按|所有|全部|下辖|下属|旗下)\s*(?:一级)?(?:分行|支行|机构|网点|分支机构)"
                   r"|哪(?:个|家|些|一家|一个)\s*(?:分行|支行|机构|网点)|(?:分行|支行|机构|网点)\s*(?:排名|排行|对比|比较|分布|明细)"
                   r"|的(?:分行|支行|机构|网点)(?:是|有)?[?？。!！]*$|(?:\d+|[一二两三四五六七八九十]+)\s*(?:个|家)\s*(?:分行|支行|机构|网点)"),
        ("cluster", r"(?:各|每个|分|按)\s*(?:聚类|产品线|产品系列)|聚类(?:产品)?\s*(?:排名|排行|分布|对比|明细)"
                    r"|哪(?:个|些)\s*(?:聚类|产品线)|的聚类(?:产品)?(?:是|有)?[?？。!！]*$"),
        ("segment", r"(?:各|每个|分|按)\s*(?:客群|客户群|细分客群)|哪(?:个|些)\s*客群|客群\s*(?:排名|分布|对比|结构)"
                    r"|的客群(?:是|有)?[?？。!！]*$"),
        ("category", r"(?:各|每个|分|按)\s*(?:大类|类别|产品大类|业务大类|品类|类)|哪(?:个|些|一)\s*(?:大类|类别|类)"
                     r"|(?:大类|类别)\s*(?:排名|排行|分布|对比|结构)|的(?:大类|类别)(?:是|有)?[?？。!！]*$"),
        ("month", r"(?:按|每|逐|分|各)\s*个?月(?!末)|月度明细|每月数据"),
        ("product", r"(?:各|每个|每款|每一个|分|按|所有|全部|哪些|哪(?:个|款|一个|一款|只))\s*(?:个)?产品"
                    r"|产品\s*(?:排名|排行|明细|分布|对比|清单|列表)|(?:的|类|款)产品[?？。!！]*$"),
    )
)
_CATEGORY_RES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (k, re.compile(p)) for k, p in (
        ("deposit", r"存款|储蓄|存单"),
        ("loan", r"贷款|信贷|授信|贷类"),
        ("payment", r"支付结算|支付|结算|收单"),
        ("intermediary", r"中间业务|代销|代理|理财|基金|保险|贵金属"),
        ("market", r"金融市场|同业|债券|票据|拆借|回购"),
    )
)
_SEGMENT_RES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (k, re.compile(p)) for k, p in (
        ("retail", r"零售|个人"),
        ("corporate", r"对公|公司|企业(?!主)"),
        ("inclusive", r"普惠|小微"),
    )
)
# Words of a metric question that are not a product name; what is left may name a product loosely.
_STOP_RE = re.compile(
    "|".join([
        r"请问|帮我|帮忙|麻烦|给我|我想|想知道|想看|想问|查询|查一下|查下|查查|看看|看一下|看下|统计|列出|列一下|展示|显示",
        r"告诉我|说说|一下|了解|请|是多少|多少|有多大|多大|几何|怎么样|如何|怎样|情况|表现|业绩|经营情况|水平|数据|指标|数值",
        r"金额|分别是|分别|一共|总共|合计|总计|整体|总体|全部|所有|对比|比较|相比|排名|排行|排序|名次|前列|top",
        r"产品|类别|大类|客群|客户群|聚类|产品线|机构|分行|支行|网点|月份|月度|月末|季度|年度",
        r"本行|我行|我们|咱们|目前|现在|当前|最新|截至|截止|期间|期末|时点|累计|为止",
        r"的|了|吗|呢|吧|啊|呀|和|与|及|以及|是|有|为",
    ])
)
_CHUNK_RE = re.compile(r"[\s,，。.!！?？、;；:：()（）\[\]【】“”\"'‘’/|\d%-]+")
_CATEGORY_WORDS_RE = re.compile(
    "(?:" + "|".join(p.pattern for _, p in (*_CATEGORY_RES, *_SEGMENT_RES)) + r"|类|业务|产品)+"
)
# How product names end (贷, 存, 宝, 卡…): a left-over word like this that matches nothing is an unknown product.
_PRODUCTISH_RE = re.compile(r"(?:贷|存|宝|卡|通|单|险|金|汇|融|盈|利|债|财|款|账户|业务|码|期|计划)$")


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def _blank_all(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def _find_metric(text: str) -> tuple[Fact | Metric | None, str]:
    """The metric a text names and the alias it was named by (the longest one found)."""
    d = find_metric(text)
    if d is None:
        return None, ""
    aliases = sorted({normalize(a) for a in (d.key, d.name, *d.aliases)}, key=len, reverse=True)
    return d, next((a for a in aliases if a in text), "")


def _first_key(table: tuple[tuple[str, re.Pattern[str]], ...], text: str) -> str | None:
    return next((key for key, rx in table if rx.search(text)), None)


def _branches(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT code, name, parent_code FROM branches ORDER BY code").fetchall()


def _find_branches(conn: psycopg.Connection[Any], text: str) -> tuple[list[str], str]:
    """Branches a question names (by name, a name without 分行/支行, or code), in order; the text
    with them blanked. 全行/总行 name the head office."""
    rows = _branches(conn)
    hits: list[tuple[int, int, str]] = []
    for r in rows:
        name = normalize(r["name"])
        for m in re.finditer(re.escape(name), text):
            hits.append((m.start(), m.end(), r["code"]))
    if not hits:
        for r in rows:
            short = re.sub(r"(分行|支行|总行|营业部|分理处)$", "", normalize(r["name"]))
            if len(short) >= 2 and short != normalize(r["name"]):
                for m in re.finditer(re.escape(short), text):
                    hits.append((m.start(), m.end(), r["code"]))
    codes = {str(r["code"]).lower(): str(r["code"]) for r in rows}
    for m in re.finditer(r"[a-z0-9]+", text):
        if m.group(0) in codes:
            hits.append((m.start(), m.end(), codes[m.group(0)]))
    head = next((str(r["code"]) for r in rows if r["parent_code"] is None), None)
    if head is not None:
        hits.extend((m.start(), m.end(), head) for m in _WHOLE_BANK_RE.finditer(text))
    taken: list[tuple[int, int, str]] = []
    for start, end, code in sorted(hits, key=lambda h: (-(h[1] - h[0]), h[0])):
        if not any(s < end and start < e for s, e, _ in taken):
            taken.append((start, end, code))
            text = _blank(text, start, end)
    return list(dict.fromkeys(code for _, _, code in sorted(taken))), text


def _common_ancestor(conn: psycopg.Connection[Any], codes: list[str]) -> str | None:
    row = conn.execute(
        "SELECT ancestor FROM branch_closure WHERE descendant = ANY(%(c)s)"
        " GROUP BY ancestor HAVING count(DISTINCT descendant) = %(n)s ORDER BY max(depth) LIMIT 1",
        {"c": codes, "n": len(set(codes))},
    ).fetchone()
    if row is None:
        return None
    return str(row["ancestor"])


def _product_rows(conn: psycopg.Connection[Any], codes: Iterable[str]) -> dict[str, dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT code, name, level, category, segment FROM products WHERE code = ANY(%(c)s)", {"c": list(codes)}
        ).fetchall()
    return {r["code"]: r for r in rows}


def expand_products(conn: psycopg.Connection[Any], codes: Iterable[str]) -> list[str]:
    """The sellable products under the given codes: a sellable code stands for itself, a cluster, base
    or atomic product for every sellable product linked down to it (product_links)."""
    rows = conn.execute(
        "WITH RECURSIVE up(code) AS (SELECT unnest(%(c)s::text[])"
        " UNION SELECT l.from_code FROM product_links l JOIN up ON l.to_code = up.code)"
        " SELECT p.code FROM up JOIN products p ON p.code = up.code WHERE p.level = 'sellable' ORDER BY p.code",
        {"c": list(codes)},
    ).fetchall()
    return [str(r["code"]) for r in rows]


def _loose_product(conn: psycopg.Connection[Any], text: str) -> tuple[str | None, str]:
    """A product named loosely in what is left of the question (a typo, a partial name): its code and
    a note; (None, "") when nothing left looks like a product. Raises UnknownProduct/AmbiguousProduct."""
    chunks = [c for c in _CHUNK_RE.split(_STOP_RE.sub(" ", text)) if len(c) >= 2]
    chunks = [c for c in chunks if not _CATEGORY_WORDS_RE.fullmatch(c)]
    if not chunks:
        return None, ""
    phrase = max(chunks, key=len)
    cands = catalog_index(conn).resolve(phrase)
    if not cands:
        if _PRODUCTISH_RE.search(phrase):
            raise UnknownProduct(
                f"产品目录中没有找到「{phrase}」，无法给出它的指标。请换用产品全称、简称或产品编码再问，"
                "也可以问「贷款类有哪些产品」浏览目录。"
            )
        return None, ""
    if len(cands) > 1:
        listed = "、".join(f"{c.name}（{c.code}）" for c in cands[:5])
        raise AmbiguousProduct(f"「{phrase}」可能指以下产品：{listed}。请告诉我是哪一个（可用产品编码）。")
    c = cands[0]
    if c.how in ("partial", "fuzzy", "pinyin") and not _PRODUCTISH_RE.search(phrase):
        return None, ""  # a stray word that happens to be part of some name: not a product reference
    note = "" if c.how in ("name", "alias", "code") else f"「{phrase}」按最接近的名称理解为{c.name}（{c.code}）。"
    return c.code, note


def _named_products(conn: psycopg.Connection[Any], d: RoutedQuestion, text: str) -> tuple[list[str], list[str]]:
    """Product codes the question names, and notes on how loose names were read."""
    by_surface: dict[str, list[Candidate]] = {}
    for cand in d.products:
        by_surface.setdefault(cand.matched, []).append(cand)
    for surface, cands in by_surface.items():
        if len({c.code for c in cands}) > 1:
            listed = "、".join(f"{c.name}（{c.code}）" for c in cands[:5])
            raise AmbiguousProduct(f"「{surface}」可能指以下产品：{listed}。请告诉我是哪一个（可用产品编码）。")
    codes = list(dict.fromkeys(c.code for c in d.products))
    if codes:
        return codes, []
    code, note = _loose_product(conn, text)
    return ([code], [note] if note else []) if code else ([], [])


def parse_metric_question(conn: psycopg.Connection[Any], principal: Principal, decision: RoutedQuestion) -> MetricQuery:
    """Read a routed metric question into a `MetricQuery` (raises a PuyiError with a Chinese message
    for an unknown metric or product, a future month, a period without data, a branch out of scope)."""
    text = unicodedata.normalize("NFKC", decision.residual or decision.question).lower()
    branches, text = _find_branches(conn, text)

    for rx, name in _SPLIT_NAMES:
        text = rx.sub(name, text)
    mom, yoy = bool(_MOM_RE.search(text)), bool(_YOY_RE.search(text))
    text = _blank_all(text, _BASE_PHRASE_RE)
    meta = fact_meta(conn)
    if meta.latest_month is None:
        raise NoData("还没有导入经营数据（metrics_monthly 为空），暂时无法回答指标问题。")
    base = _BASE_MONTH_RE.search(text)
    if base:
        text = _blank(text, base.start(), base.end())
    period, said = find_period(text, meta.latest_month)
    if said:
        pos = text.find(unicodedata.normalize("NFKC", said).lower())
        if pos >= 0:
            text = _blank(text, pos, pos + len(said))
    notes: list[str] = []
    if base and not (mom or yoy):
        end = period.end if period else meta.latest_month
        month = int(base.group("m"))
        year = int(base.group("y")) if base.group("y") else end.year - (month >= end.month)
        if date(year, month, 1) == shift(end, -1):
            mom = True
        elif date(year, month, 1) == shift(end, -12):
            yoy = True
        else:
            notes.append(f"只能与上月（环比）或去年同期（同比）比较，未按{year}年{month}月比较。")

    d, alias = _find_metric(text)
    if d is None:
        raise UnknownMetric(
            f"没有识别出您要查询的指标。可以查询的指标有：{_metric_names()}。"
            "例如「上月贷款类不良率是多少」「存款余额前十的产品」。"
        )
    category = "deposit" if alias.startswith("存款") else "loan" if alias.startswith("贷款") else None
    if alias:
        pos = text.find(alias)
        text = _blank(text, pos, pos + len(alias))
    category = category or _first_key(_CATEGORY_RES, text)
    segment = _first_key(_SEGMENT_RES, text)

    compare = "mom" if mom else "yoy" if yoy else "trend" if _TREND_RE.search(text) else None
    group_by = next((g for g, rx in _GROUP_RES if rx.search(text)), None)
    top: int | None = None
    order = "desc"
    ordered = False
    if m := _TOP_RE.search(text):
        top, ordered = cn_number(m.group("n")), True
    elif m := _BOTTOM_RE.search(text):
        top, order, ordered = cn_number(m.group("n")), "asc", True
    if _ASC_RE.search(text) and not _TOP_RE.search(text):
        order, ordered = "asc", True
    elif _DESC_RE.search(text):
        ordered = True
    if _BEST_RE.search(text) or _WORST_RE.search(text):
        best = bool(_BEST_RE.search(text))
        order, ordered = ("desc" if best == d.higher_is_better else "asc"), True
    if ordered and top is None and (m := _COUNT_RE.search(text)):
        top = cn_number(m.group("n"))  # 不良率最高的5个产品
    if ordered and top is None and _SINGLE_RE.search(text) and not re.search(r"哪些", text):
        top = 1
    share = bool(_SHARE_RE.search(text))

    leftover = text
    for rx in (_TOP_RE, _BOTTOM_RE, _COUNT_RE, _DESC_RE, _ASC_RE, _BEST_RE, _WORST_RE, _SINGLE_RE, _SHARE_RE,
               _CHANGE_RANK_RE, _MOM_RE, _YOY_RE, _TREND_RE, *(rx for _, rx in _GROUP_RES)):
        leftover = _blank_all(leftover, rx)
    named, product_notes = _named_products(conn, decision, leftover)
    notes += product_notes
    branch: str | None = None
    compared: list[str] = []
    if len(branches) == 1:
        branch = branches[0]
    elif len(branches) > 1:
        # Several branches named: compare them under their nearest common parent (only them when
        # they are its children, else all its children).
        branch = _common_ancestor(conn, branches)
        group_by = "branch"
        parents = {r["code"]: r["parent_code"] for r in _branches(conn)}
        if all(parents.get(b) == branch for b in branches):
            compared = branches
    if ordered and group_by is None and compare != "trend":
        group_by = "product"
    comparing_metric = isinstance(d, Metric) and d.comparison is not None
    rank_by = "change" if group_by and (comparing_metric or ((mom or yoy) and _CHANGE_RANK_RE.search(text))) else "value"
    return build_query(
        conn, principal, metric=d.key, period=period, products=named, category=category, segment=segment,
        branch=branch, branches=compared, group_by=group_by, compare=compare, top=top, order=order, share=share,
        rank_by=rank_by, notes=notes,
    )


def _month_arg(text: str) -> date:
    m = re.fullmatch(r"\s*(\d{4})-(\d{1,2})(?:-\d{1,2})?\s*", text)
    if m is None or not 1 <= int(m.group(2)) <= 12:
        raise BadQuestion(f"月份应写作 YYYY-MM：{text!r}")
    return date(int(m.group(1)), int(m.group(2)), 1)


def _check_branch(conn: psycopg.Connection[Any], principal: Principal, branch: str) -> str | None:
    """The branch if the asker may see it (None when it is simply the whole bank); else OutOfScope."""
    row = conn.execute("SELECT name FROM branches WHERE code = %(b)s", {"b": branch}).fetchone()
    if row is None:
        raise OutOfScope(f"没有找到机构 {branch}，请确认机构名称或代码。")
    name = row["name"]
    inside = conn.execute(
        "SELECT 1 FROM branches WHERE code = %(b)s AND " + branch_in_scope("code"),
        {"b": branch, "scope": principal.scope_branch},
    ).fetchone()
    head = head_office(conn)
    if inside is None:
        mine = _scope(conn, principal.scope_branch or head)["label"]
        raise OutOfScope(f"您的数据权限范围是{mine}，不能查看{'全行' if branch == head else name}的数据。")
    if principal.scope_branch is None and branch == head:
        return None
    return None if branch == principal.scope_branch else branch


def build_query(
    conn: psycopg.Connection[Any],
    principal: Principal,
    *,
    metric: str,
    period: Period | None = None,
    start: str | None = None,
    end: str | None = None,
    period_label: str | None = None,
    products: Iterable[str] = (),
    category: str | None = None,
    segment: str | None = None,
    branch: str | None = None,
    branches: Iterable[str] = (),
    group_by: str | None = None,
    compare: str | None = None,
    top: int | None = None,
    order: str = "desc",
    share: bool = False,
    rank_by: str = "value",
    notes: Iterable[str] = (),
) -> MetricQuery:
    """Check every part of a query against the fixed vocabularies, the asker's scope and the data,
    fill in the defaults, and return the `MetricQuery` (PuyiError with a Chinese message otherwise)."""
    if metric not in FACTS and metric not in METRICS:
        raise UnknownMetric(f"没有名为 {metric!r} 的指标。可以查询的指标有：{_metric_names()}。")
    for name, value, allowed in (
        ("group_by", group_by, GROUP_BYS), ("compare", compare, COMPARES), ("order", order, ORDERS),
        ("category", category, tuple(CATEGORY_NAMES)), ("segment", segment, tuple(SEGMENT_NAMES)),
        ("rank_by", rank_by, ("value", "change")),
    ):
        if value is not None and value not in allowed:
            raise BadQuestion(f"{name} 只能取 {'、'.join(allowed)}，收到 {value!r}。")
    if top is not None and not 1 <= int(top) <= 500:
        raise BadQuestion(f"top 应在 1 到 500 之间，收到 {top!r}。")
    d = definition(metric)
    notes_out = [n for n in notes if n]
    if isinstance(d, Metric) and d.comparison:
        compare = d.comparison
    if group_by == "month":
        group_by, compare = None, "trend"

    meta = fact_meta(conn)
    if meta.latest_month is None or meta.first_month is None:
        raise NoData("还没有导入经营数据（metrics_monthly 为空），暂时无法回答指标问题。")
    first, latest = meta.first_month, meta.latest_month
    if period is None and (start or end):
        s, e = _month_arg(start or end or ""), _month_arg(end or start or "")
        if s > e:
            raise BadQuestion(f"起始月份{month_label(s)}晚于结束月份{month_label(e)}。")
        if s > latest:
            raise FuturePeriod(period_label or label_for(s, e), latest)
        label = period_label or label_for(s, e)
        if e > latest:
            e, label = latest, f"{label_for(s, e)}（截至{month_label(latest)}）"
        period = Period(s, e, label)
    if period is None:
        period = Period(latest, latest, label_for(latest, latest))
        if compare == "trend":
            start_m = shift(latest, -(TREND_MONTHS - 1))
            period = Period(start_m, latest, label_for(start_m, latest))
    elif compare == "trend" and period.months == 1:
        start_m = shift(period.end, -(TREND_MONTHS - 1))
        period = Period(start_m, period.end, label_for(start_m, period.end))
    if period.end < first:
        raise NoData(f"{period.label}没有经营数据：现有数据为{month_label(first)}至{month_label(latest)}。")
    if period.start < first:
        period = Period(first, period.end, label_for(first, period.end))
        notes_out.append(f"经营数据从{month_label(first)}开始，期间按{period.label}计算。")

    root = branch
    if branch is not None:
        branch = _check_branch(conn, principal, branch)
    compared = tuple(dict.fromkeys(branches))
    if compared:
        for b in compared:
            _check_branch(conn, principal, b)
        parent = root or principal.scope_branch or head_office(conn)
        children = {r["code"] for r in _branches(conn) if r["parent_code"] == parent} | {parent}
        if not set(compared) <= children:
            raise BadQuestion("branches 只能是所查机构的直属下级机构。")
        group_by = "branch"

    named = tuple(dict.fromkeys(products))
    sellable: tuple[str, ...] = ()
    if named:
        known = _product_rows(conn, named)
        missing = [c for c in named if c not in known]
        if missing:
            raise UnknownProduct(f"产品目录中没有编码为 {'、'.join(missing)} 的产品。")
        sellable = tuple(expand_products(conn, named))
        if not sellable:
            raise NoData("、".join(known[c]["name"] for c in named) + " 下没有可售产品，没有可查询的经营数据。")
    applies = d.categories
    if applies:
        cats = "、".join(CATEGORY_NAMES[c] for c in applies)
        if category is not None and category not in applies:
            raise NotApplicable(f"{d.name}只适用于{cats}类产品，{CATEGORY_NAMES[category]}类产品没有{d.name}。")
        if sellable:
            rows = _product_rows(conn, sellable)
            keep = tuple(c for c in sellable if rows[c]["category"] in applies)
            if not keep:
                what = "、".join(f"{known[c]['name']}（{CATEGORY_NAMES.get(known[c]['category'], '')}类）" for c in named)
                raise NotApplicable(f"{d.name}只适用于{cats}类产品；{what}没有{d.name}，因此不给出数字。")
            if len(keep) < len(sellable):
                notes_out.append(f"{d.name}只适用于{cats}类产品，已略去其余 {len(sellable) - len(keep)} 个产品。")
            sellable = keep
        elif category is None and len(applies) == 1:
            category = applies[0]  # 全行不良率 is over loans, not over every balance

    if share and not is_additive(value_definition(metric)):
        share = False
        notes_out.append(f"{d.name}是比率或评分，各部分不能相加，因此不计算占比。")
    if share and compare == "trend":
        share = False
    if group_by is None and len(named) > 1:
        group_by = "product"
    if group_by is None and top is not None and compare != "trend":
        group_by = "product"
    if share and group_by is None and not sellable and category is None and segment is None:
        group_by = "category"
    if compare not in ("mom", "yoy"):
        rank_by = "value"
    return MetricQuery(
        metric=metric, period=period, products=sellable, named=named, category=category, segment=segment,
        branch=branch, branches=compared, group_by=group_by, compare=compare,
        top=int(top) if top is not None else None, order=order,
        share=share, rank_by=rank_by, notes=tuple(dict.fromkeys(notes_out)),
    )


# --- running a query ---------------------------------------------------------------------------------

# Group expressions over the relation `f` (facts), `p` (products) and `pc` (each sellable's cluster).
_GROUP_EXPR = {"product": "f.product_code", "category": "p.category", "segment": "p.segment",
               "cluster": "pc.cluster", "branch": "f.branch_code"}
# A sellable product counts towards one cluster (the first by code if it is linked to several), so
# the clusters add up to the total.
_CLUSTER_JOIN = (
    " LEFT JOIN (SELECT l.from_code, min(l.to_code) AS cluster FROM product_links l"
    " JOIN products c ON c.code = l.to_code AND c.level = 'cluster' GROUP BY l.from_code) pc"
    " ON pc.from_code = f.product_code"
)


@dataclass(frozen=True)
class _Selection:
    """What one aggregate covers and how it groups (a query's own, or a variant for a share's base)."""

    group: str | None
    by_month: bool
    products: tuple[str, ...]
    category: str | None
    segment: str | None


@dataclass
class _Agg:
    month: date | None
    key: str | None
    total: bool
    value: float | None
    n: int
    parts: dict[str, float | None] = field(default_factory=dict)


def _aggregate(
    conn: psycopg.Connection[Any], principal: Principal, q: MetricQuery, period: Period, sel: _Selection,
) -> list[_Agg]:
    """The metric over `period` for a selection: one row per group (and month), plus total rows
    (the whole selection, per month when `by_month`)."""
    group, by_month, products, category, segment = sel.group, sel.by_month, sel.products, sel.category, sel.segment
    vd = value_definition(q.metric)
    by_branch = group == "branch"
    src, params = (child_source if by_branch else fact_source)(conn, principal, q.branch, alias="s")
    # Over several months a stock fact counts at the last month only; flows are summed.
    stock_end = period.months > 1 and not by_month
    cols = []
    for col in _source_columns(vd):
        fact = FACTS[_SATISFACTION_COLS.get(col, col)]
        cols.append(f"CASE WHEN s.month = %(q_end)s THEN s.{col} END AS {col}" if stock_end and fact.stock
                    else f"s.{col}")
    inner = (
        "SELECT s.month, s.product_code" + (", s.branch_code" if by_branch else "") + ", " + ", ".join(cols)
        + f" FROM {src} WHERE s.month BETWEEN %(q_start)s AND %(q_end)s"
    )
    params.update(q_start=period.start, q_end=period.end)
    if products:
        inner += " AND s.product_code = ANY(%(q_products)s)"
        params["q_products"] = list(products)
    if by_branch and q.branches:
        inner += " AND s.branch_code = ANY(%(q_branches)s)"
        params["q_branches"] = list(q.branches)
    joins, where = "", []
    if category or segment or group in ("category", "segment"):
        joins += " JOIN products p ON p.code = f.product_code"
    if category:
        where.append("p.category = %(q_category)s")
        params["q_category"] = category
    if segment:
        where.append("p.segment = %(q_segment)s")
        params["q_segment"] = segment
    if group == "cluster":
        joins += _CLUSTER_JOIN
    gexpr = _GROUP_EXPR[group] if group else None
    parts = list(vd.facts) if isinstance(vd, Metric) else []
    select = [
        "f.month AS k_month" if by_month else "NULL::date AS k_month",
        f"{gexpr}::text AS k_group, GROUPING({gexpr}) = 1 AS k_total" if gexpr else "NULL::text AS k_group, true AS k_total",
        f"{vd.sql} AS value", "count(*) AS n",
        *(f"{FACTS[k].sql} AS part_{k}" for k in parts),
    ]
    if by_month and gexpr:
        grouping = f" GROUP BY GROUPING SETS ((f.month, {gexpr}), (f.month))"
    elif by_month:
        grouping = " GROUP BY f.month"
    elif gexpr:
        grouping = f" GROUP BY GROUPING SETS (({gexpr}), ())"
    else:
        grouping = ""
    sql = (f"SELECT {', '.join(select)} FROM ({inner}) AS f{joins}"
           + (" WHERE " + " AND ".join(where) if where else "") + grouping)
    with conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(sql, params).fetchall()
    return [
        _Agg(r["k_month"], r["k_group"], bool(r["k_total"]), _num(r["value"]), int(r["n"]),
             {k: _num(r[f"part_{k}"]) for k in parts})
        for r in found
    ]


def _scope(conn: psycopg.Connection[Any], root: str | None) -> dict[str, Any]:
    row = conn.execute("SELECT name FROM branches WHERE code = %(b)s", {"b": root}).fetchone()
    name = str(row["name"] if row else root or "")
    if root is None or root == head_office(conn):
        label = "全行"
    else:
        label = f"{name}及下辖机构" if has_subtree(conn, root) else name
    return {"branch": root, "name": name, "label": label}


def _names(conn: psycopg.Connection[Any], table: str, codes: Iterable[str | None]) -> dict[str, str]:
    wanted = [c for c in codes if c is not None]
    if not wanted:
        return {}
    sql = {"products": "SELECT code, name FROM products WHERE code = ANY(%(c)s)",
           "branches": "SELECT code, name FROM branches WHERE code = ANY(%(c)s)"}[table]
    with conn.cursor(row_factory=dict_row) as cur:
        return {r["code"]: r["name"] for r in cur.execute(sql, {"c": wanted})}


def _group_labels(conn: psycopg.Connection[Any], group: str | None, keys: list[str | None],
                  root: str | None) -> dict[str | None, str]:
    out: dict[str | None, str] = {None: "未归类"}
    if group in ("product", "cluster"):
        out.update(_names(conn, "products", keys))
        if group == "cluster":
            out[None] = "未归入聚类产品"
    elif group == "category":
        out.update({k: CATEGORY_NAMES.get(k, k) for k in keys if k})
    elif group == "segment":
        out.update({k: SEGMENT_NAMES.get(k, k) for k in keys if k})
    elif group == "branch":
        out.update(_names(conn, "branches", keys))
        if root in out:
            out[root] = f"{out[root]}（本级）"  # facts booked at the branch itself
    return out


def _selection_label(conn: psycopg.Connection[Any], q: MetricQuery) -> str:
    if q.named:
        names = _names(conn, "products", q.named)
        listed = [names.get(c, c) for c in q.named]
        if len(listed) == 1:
            return f"{listed[0]}（{q.named[0]}）"
        return "、".join(listed[:3]) + (f"等 {len(listed)} 个产品" if len(listed) > 3 else "")
    words = ""
    if q.segment:
        words += SEGMENT_NAMES.get(q.segment, q.segment)
    if q.category:
        words += CATEGORY_NAMES.get(q.category, q.category) + "类"
    elif q.segment:
        words += "客群"
    return words or "全部产品"


def _basis(vd: Fact | Metric, period: Period, trend: bool) -> str:
    """How the months of the period count: stock facts at the period's end, flows summed."""
    keys = [vd.key] if isinstance(vd, Fact) else list(vd.facts)
    notes = []
    if not trend and period.months > 1:
        stock = [FACTS[k].name for k in keys if FACTS[k].stock]
        flow = [FACTS[k].name for k in keys if not FACTS[k].stock]
        if stock:
            notes.append("、".join(stock) + f"取期末（{month_label(period.end)}末）时点数")
        if flow:
            notes.append("、".join(flow) + f"为{period.label}累计")
    elif trend:
        notes.append("每月数值" + ("，时点数取各月末" if any(FACTS[k].stock for k in keys) else "，流量为当月发生"))
    if isinstance(vd, Metric) and vd.unit in ("%", "‱"):
        notes.append(f"{vd.name}按汇总后的" + "、".join(FACTS[k].name for k in keys) + "计算，不是各产品比率的平均")
    if isinstance(vd, Fact) and not vd.additive:
        notes.append(f"{vd.name}按客户数加权")
    return "；".join(notes)


def _sort_rows(rows: list[dict[str, Any]], key: str, order: str) -> None:
    sign = -1.0 if order == "desc" else 1.0
    rows.sort(key=lambda r: (r[key] is None, sign * (r[key] or 0.0), str(r["label"])))
    for i, r in enumerate(rows, 1):
        r["rank"] = i


def run_metric_query(ctx: ToolContext, query: MetricQuery) -> dict[str, Any]:
    """Run a `MetricQuery` inside the asker's scope. The result carries, for every number, the raw
    value and its display string, with the period, scope and comparison labels the answer states."""
    conn, principal = ctx.conn, ctx.principal
    asked, vd = definition(query.metric), value_definition(query.metric)
    meta = fact_meta(conn)
    root = resolve_branch(conn, principal, query.branch)
    scope = _scope(conn, root)
    if query.branches:
        names = _names(conn, "branches", query.branches)
        scope["label"] = "、".join(names.get(b, b) for b in query.branches)
    selection = _selection_label(conn, query)
    trend = query.compare == "trend"
    base = _Selection(query.group_by, trend, query.products, query.category, query.segment)
    rows = _aggregate(conn, principal, query, query.period, base)
    if not any(r.n for r in rows):
        span = f"{month_label(meta.first_month)}至{month_label(meta.latest_month)}" if meta.first_month and meta.latest_month else ""
        raise NoData(f"{query.period.label}，{scope['label']}没有{selection}的{asked.name}数据（现有数据为{span}）。")
    result: dict[str, Any] = {
        "metric": query.metric, "metric_name": asked.name, "value_metric": vd.key, "value_name": vd.name,
        "unit": vd.unit, "higher_is_better": vd.higher_is_better,
        "period": {"start": query.period.start.isoformat(), "end": query.period.end.isoformat(),
                   "label": query.period.label, "months": query.period.months},
        "basis": _basis(vd, query.period, trend),
        "scope": scope, "selection": selection,
        "products": list(query.products), "category": query.category, "segment": query.segment,
        "group_by": query.group_by, "group_name": GROUP_NAMES.get(query.group_by or "", ""),
        "compare": query.compare, "top": query.top, "order": query.order, "share": query.share,
        "rank_by": query.rank_by,
        "latest_month": month_label(meta.latest_month) if meta.latest_month else None,
        "notes": list(query.notes),
    }
    if trend:
        result.update(_trend_result(conn, query, rows, root, vd))
    else:
        result.update(_list_result(conn, principal, query, rows, root, vd, base, result["notes"]))
    return result


def _value_block(value: float | None, unit: str) -> dict[str, Any]:
    return {"value": value, "display": format_value(value, unit)}


def _list_result(
    conn: psycopg.Connection[Any], principal: Principal, q: MetricQuery, rows: list[_Agg], root: str | None,
    vd: Fact | Metric, base: _Selection, notes: list[str],
) -> dict[str, Any]:
    unit = vd.unit
    total = next((r for r in rows if r.total), None)
    groups = [r for r in rows if not r.total]
    total_block = _value_block(total.value if total else None, unit)
    if total and total.parts:
        total_block["parts"] = [
            {"key": k, "name": FACTS[k].name, **_value_block(v, FACTS[k].unit)} for k, v in total.parts.items()
        ]
    out: dict[str, Any] = {"total": total_block, "comparison": None, "share_of": None}

    previous_values: dict[str | None, float | None] = {}
    if q.compare in ("mom", "yoy"):
        base_period = previous(q.period) if q.compare == "mom" else year_ago(q.period)
        kind = change_kind(unit)
        comparison = {
            "kind": q.compare, "name": COMPARE_NAMES[q.compare], "period_label": base_period.label,
            "start": base_period.start.isoformat(), "end": base_period.end.isoformat(),
            "change_kind": kind, "change_unit": change_unit(unit),
            "change_name": "变动（百分点）" if unit == "%" else "变动" if kind == "points" else "增幅",
            "available": False,
        }
        first = fact_meta(conn).first_month
        if first is not None and base_period.end >= first:
            before = _aggregate(conn, principal, q, base_period, base)
            comparison["available"] = any(r.n for r in before)
            previous_values = {r.key: r.value for r in before if not r.total}
            prev_total = next((r.value for r in before if r.total), None)
            change = compute_change(total_block["value"], prev_total, unit)
            total_block.update(previous=prev_total, previous_display=format_value(prev_total, unit),
                               change=change, change_display=format_change(change, unit))
        if not comparison["available"]:
            notes.append(f"没有{base_period.label}的数据，无法计算{COMPARE_NAMES[q.compare]}。")
            total_block.update(previous=None, previous_display="—", change=None, change_display="—")
        out["comparison"] = comparison

    if q.share and q.group_by is None and total is not None:
        # One selection's share of what it is part of: a product of its category (or of all products).
        if q.products:
            den_sel = replace(base, products=())
            den_label = _selection_label(conn, replace(q, named=(), products=())) + "合计"
        else:
            den_sel = replace(base, category=None, segment=None)
            den_label = "全部产品合计"
        den = next((r for r in _aggregate(conn, principal, q, q.period, den_sel) if r.total), None)
        den_value = den.value if den else None
        share = total.value / den_value * 100.0 if total.value is not None and den_value else None
        total_block.update(share=share, share_display=format_value(share, "%"))
        out["share_of"] = {"label": den_label, **_value_block(den_value, unit)}

    labels = _group_labels(conn, q.group_by, [g.key for g in groups], root)
    items: list[dict[str, Any]] = []
    for g in groups:
        item: dict[str, Any] = {"key": g.key, "label": labels.get(g.key, g.key or "未归类"),
                                **_value_block(g.value, unit)}
        if out["comparison"] is not None:
            prev = previous_values.get(g.key)
            change = compute_change(g.value, prev, unit)
            item.update(previous=prev, previous_display=format_value(prev, unit),
                        change=change, change_display=format_change(change, unit))
        if q.share:
            share = g.value / total.value * 100.0 if total and total.value and g.value is not None else None
            item.update(share=share, share_display=format_value(share, "%"))
        items.append(item)
    _sort_rows(items, "change" if q.rank_by == "change" and out["comparison"] else "value", q.order)
    out["row_count"] = len(items)
    out["rows"] = items[: q.top or MAX_ROWS]
    if q.share and q.group_by:
        out["share_of"] = {"label": "合计", **_value_block(total_block["value"], unit)}
    return out


def _trend_result(conn: psycopg.Connection[Any], q: MetricQuery, rows: list[_Agg], root: str | None,
                  vd: Fact | Metric) -> dict[str, Any]:
    unit = vd.unit
    months = q.period.month_list()
    month_labels = [month_label(m) for m in months]
    totals = {r.month: r.value for r in rows if r.total}
    total_values = [totals.get(m) for m in months]
    total_series: dict[str, Any] = {"key": None, "label": "合计" if q.group_by else vd.name, "values": total_values,
                    "displays": [format_value(v, unit) for v in total_values]}
    series: list[dict[str, Any]] = [total_series]
    group_count = 0
    if q.group_by:
        cells: dict[str | None, dict[date | None, float | None]] = {}
        for r in rows:
            if not r.total:
                cells.setdefault(r.key, {})[r.month] = r.value
        group_count = len(cells)
        labels = _group_labels(conn, q.group_by, list(cells), root)
        ranked: list[dict[str, Any]] = [{"key": k, "label": labels.get(k, k or "未归类"), "value": v.get(months[-1])} for k, v in cells.items()]
        _sort_rows(ranked, "value", q.order)
        series = []
        for item in ranked[: q.top or MAX_SERIES]:
            values = [cells[item["key"]].get(m) for m in months]
            series.append({"key": item["key"], "label": item["label"], "values": values,
                           "displays": [format_value(v, unit) for v in values]})
    known = [(i, v) for i, v in enumerate(total_values) if v is not None]
    change = None
    if len(known) >= 2:
        (i0, v0), (i1, v1) = known[0], known[-1]
        delta = compute_change(v1, v0, unit)
        change = {"from_label": month_labels[i0], "to_label": month_labels[i1], "from_display": format_value(v0, unit),
                  "to_display": format_value(v1, unit), "value": delta, "display": format_change(delta, unit),
                  "change_kind": change_kind(unit)}
    chart_unit, scale = _chart_scale(unit, [v for s in series for v in s["values"]])
    last = total_values[-1] if total_values else None
    return {
        "trend": {"months": [m.isoformat() for m in months], "labels": month_labels, "series": series,
                  "totals": total_series, "change": change},
        "chart": {"unit": chart_unit, "x": month_labels,
                  "series": [{"name": s["label"], "values": [None if v is None else round(v / scale, 4) for v in s["values"]]}
                             for s in series]},
        "total": {"label": month_labels[-1] if month_labels else "", **_value_block(last, unit)},
        "rows": [{"key": m.isoformat(), "label": lab, **_value_block(v, unit)}
                 for m, lab, v in zip(months, month_labels, total_values, strict=True)],
        "row_count": group_count,
        "comparison": None, "share_of": None,
    }


# --- tools ---------------------------------------------------------------------------------------------


def query_metric(
    ctx: ToolContext,
    metric: str,
    start: str | None = None,
    end: str | None = None,
    products: list[str] | None = None,
    category: str | None = None,
    segment: str | None = None,
    branch: str | None = None,
    branches: list[str] | None = None,
    group_by: str | None = None,
    compare: str | None = None,
    top: int | None = None,
    order: str = "desc",
    share: bool = False,
    rank_by: str = "value",
    period_label: str | None = None,
) -> dict[str, Any]:
    """经营指标查询（只在提问人的机构权限范围内）。metric：指标键（见 list_metrics，如 balance、npl_rate、
    net_contribution）；start/end：YYYY-MM，缺省为最新月份；products：产品编码（聚类/基础产品代表其下全部可售产品）；
    category：deposit|loan|payment|intermediary|market；segment：retail|corporate|inclusive|interbank；
    branch：权限内的机构代码；branches：只比较 branch 下的这几个直属机构；group_by：product|category|segment|cluster|branch|month；compare：mom（环比）|
    yoy（同比）|trend（逐月趋势）；top：前 N 名；order：desc|asc；share：各组占合计的比例（仅可加总的指标）；
    rank_by：value|change（按变动排序）。多月期间：时点类（余额、客户数、不良余额等）取期末月，流量类（收入、
    发生额、投诉等）按月累计；比率由汇总后的事实计算。返回每个数字的原值和展示文本、期间、机构范围；
    无法回答时返回 {"error": 说明}。"""
    try:
        q = build_query(
            ctx.conn, ctx.principal, metric=metric, start=start, end=end, period_label=period_label,
            products=products or (), category=category, segment=segment, branch=branch, branches=branches or (),
            group_by=group_by,
            compare=compare, top=top, order=order, share=share, rank_by=rank_by,
        )
        return run_metric_query(ctx, q)
    except PuyiError as exc:
        return {"error": str(exc), "error_type": type(exc).__name__}


def list_metrics(ctx: ToolContext) -> dict[str, Any]:
    """可查询的经营指标与事实清单：键、中文名、别名、单位、是否越高越好、适用的产品大类、时点或流量；
    以及已有数据的起止月份和可用的分组、比较方式。"""
    meta = fact_meta(ctx.conn)
    return {
        "metrics": metric_catalogue(),
        "first_month": meta.first_month.strftime("%Y-%m") if meta.first_month else None,
        "latest_month": meta.latest_month.strftime("%Y-%m") if meta.latest_month else None,
        "group_by": list(GROUP_BYS), "compare": list(COMPARES),
    }


METRIC_TOOLS = (query_metric, list_metrics)


def tool_descriptions() -> dict[str, str]:
    """The metric tools' descriptions (their docstrings), for LLM tool calling."""
    return {fn.__name__: " ".join((fn.__doc__ or "").split()) for fn in METRIC_TOOLS}
