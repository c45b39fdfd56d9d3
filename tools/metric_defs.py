"""The metric semantic layer as data: the facts of `metrics_monthly` and the canonical derived metrics.

Derived metrics are SQL expressions over facts summed across products and branches, so a rate for a
category or branch is always computed from the sums, never by averaging rates (data contract). The
expressions are fixed strings in this module; nothing here is ever built from user text.

Over several months, a stock fact (balance, customers, npl_balance…) is read at the period's last
month and a flow fact (income, volume, complaints…) is summed over the months: see `Fact.stock`.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.text import normalize


@dataclass(frozen=True)
class Fact:
    """One numeric column of `metrics_monthly`."""

    key: str  # the column
    name: str
    aliases: tuple[str, ...]
    unit: str
    higher_is_better: bool
    additive: bool = True  # False: not summable across products/branches (see `sql`)
    stock: bool = False  # a month-end position rather than a flow over the month
    categories: tuple[str, ...] | None = None  # product categories it applies to; None for all

    @property
    def sql(self) -> str:
        """The aggregate over rows of `tools.facts.fact_source`: a sum, or for satisfaction the
        customer-weighted average (the source carries its weighted sum and the customers it covers)."""
        if self.additive:
            return f"sum({self.key})"
        return f"sum({self.key}_w) / nullif(sum({self.key}_n), 0)"


@dataclass(frozen=True)
class Metric:
    """A canonical derived metric: an expression over summed facts, or a comparison of one fact."""

    key: str
    name: str
    aliases: tuple[str, ...]
    unit: str
    higher_is_better: bool
    sql: str | None = None
    categories: tuple[str, ...] | None = None
    comparison: str | None = None  # "mom" (环比, on the previous month) or "yoy" (同比, a year before)
    base: str | None = None  # the fact a comparison is over
    facts: tuple[str, ...] = ()  # the facts the expression reads

    @property
    def english(self) -> str:
        return self.key.replace("_", " ")


_FACT_LIST = (
    Fact("balance", "余额", ("余额", "规模", "时点余额", "月末余额", "存款余额", "贷款余额", "balance"),
         "元", True, stock=True),
    Fact("avg_balance", "日均余额", ("日均余额", "日均", "日均规模", "average balance"), "元", True, stock=True),
    Fact("customers", "客户数", ("客户数", "户数", "客户数量", "客户", "持有客户", "customers"),
         "户", True, stock=True),
    Fact("new_customers", "新增客户", ("新增客户", "新增客户数", "新客户", "新客", "获客", "新增户数", "new customers"),
         "户", True),
    Fact("lost_customers", "流失客户", ("流失客户", "流失客户数", "流失", "流失户数", "lost customers"), "户", False),
    Fact("volume", "发生额", ("发生额", "交易额", "交易量", "业务量", "放款量", "投放量", "volume"), "元", True),
    Fact("interest_income", "利息收入", ("利息收入", "FTP收入", "资金转移收入", "interest income"),
         "元", True),
    Fact("interest_expense", "利息支出", ("利息支出", "付息", "付息成本", "资金成本", "FTP成本", "interest expense"),
         "元", False),
    Fact("fee_income", "手续费收入", ("手续费收入", "手续费", "中收", "中间业务收入", "佣金收入", "fee income"),
         "元", True),
    Fact("opex", "运营成本", ("运营成本", "营运成本", "经营成本", "运营费用", "opex", "operating cost"), "元", False),
    Fact("provision", "减值拨备", ("减值拨备", "拨备", "减值", "信用减值", "provision"), "元", False),
    Fact("npl_balance", "不良余额", ("不良余额", "不良贷款", "不良贷款余额", "npl balance"), "元", False,
         stock=True, categories=("loan",)),
    Fact("overdue_balance", "逾期余额", ("逾期余额", "逾期贷款", "逾期贷款余额", "overdue balance"), "元", False,
         stock=True, categories=("loan",)),
    Fact("complaints", "投诉量", ("投诉量", "投诉数", "投诉笔数", "投诉", "客诉", "complaints"), "笔", False),
    # A score per product and branch: summing it is meaningless, so weight it by customers.
    Fact("satisfaction", "满意度", ("满意度", "客户满意度", "满意度评分", "satisfaction"), "分", True,
         additive=False, stock=True),
)

_METRIC_LIST = (
    Metric("npl_rate", "不良率", ("不良率", "不良贷款率", "不良", "npl rate", "npl ratio"), "%", False,
           sql="100.0 * sum(npl_balance) / nullif(sum(balance), 0)",
           categories=("loan",), facts=("npl_balance", "balance")),
    Metric("overdue_rate", "逾期率", ("逾期率", "逾期贷款率", "逾期", "overdue rate", "overdue ratio"), "%", False,
           sql="100.0 * sum(overdue_balance) / nullif(sum(balance), 0)",
           categories=("loan",), facts=("overdue_balance", "balance")),
    Metric("net_interest", "净利息收入", ("净利息收入", "利息净收入", "净利息", "利差收入", "net interest",
                                     "net interest income"), "元", True,
           sql="sum(interest_income) - sum(interest_expense)", facts=("interest_income", "interest_expense")),
    # opex and provision are optional columns: a bank without them still gets a contribution.
    Metric("net_contribution", "净贡献", ("净贡献", "净收入", "贡献", "贡献度", "利润", "盈利", "净利润",
                                       "net contribution", "contribution"), "元", True,
           sql="sum(interest_income) - sum(interest_expense) + sum(fee_income)"
               " - coalesce(sum(opex), 0) - coalesce(sum(provision), 0)",
           facts=("interest_income", "interest_expense", "fee_income", "opex", "provision")),
    Metric("complaint_rate", "万户投诉率", ("万户投诉率", "投诉率", "客诉率", "complaint rate"), "‱", False,
           sql="10000.0 * sum(complaints) / nullif(sum(customers), 0)", facts=("complaints", "customers")),
    Metric("balance_mom", "余额环比", ("余额环比", "规模环比", "环比", "环比增长", "环比增速", "余额环比增长",
                                    "balance mom", "month on month"), "%", True,
           comparison="mom", base="balance", facts=("balance",)),
    Metric("balance_yoy", "余额同比", ("余额同比", "规模同比", "同比", "同比增长", "同比增速", "余额同比增长",
                                    "balance yoy", "year on year"), "%", True,
           comparison="yoy", base="balance", facts=("balance",)),
)

FACTS: dict[str, Fact] = {f.key: f for f in _FACT_LIST}
METRICS: dict[str, Metric] = {m.key: m for m in _METRIC_LIST}

# (normalised alias, definition), longest first, so 不良余额 is tried before 不良 and 余额.
_ALIASES: list[tuple[str, Metric | Fact]] = sorted(
    {
        normalize(alias): d
        for d in (*_FACT_LIST, *_METRIC_LIST)
        for alias in (d.key, d.name, *d.aliases)
    }.items(),
    key=lambda item: -len(item[0]),
)


def find_metric(text: str) -> Metric | Fact | None:
    """The metric or fact a question names: the longest alias found in it, the earliest on a tie."""
    norm = normalize(text)
    best: tuple[int, int, Metric | Fact] | None = None  # (-length, position, definition)
    for alias, definition in _ALIASES:
        if best is not None and len(alias) < -best[0]:
            break
        pos = norm.find(alias)
        if pos >= 0 and (best is None or (-len(alias), pos) < best[:2]):
            best = (-len(alias), pos, definition)
    return best[2] if best else None


def definition(key: str) -> Metric | Fact:
    """A metric or fact by its key; KeyError if unknown."""
    if key in METRICS:
        return METRICS[key]
    return FACTS[key]
