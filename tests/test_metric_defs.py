"""The metric semantic layer: aliases, longest match, and SQL that reads only known fact columns."""

from __future__ import annotations

import re

import pytest

from core.text import normalize
from tools.metric_defs import FACTS, METRICS, Fact, Metric, definition, find_metric

FACT_COLUMNS = {
    "balance", "avg_balance", "customers", "new_customers", "lost_customers", "volume", "interest_income",
    "interest_expense", "fee_income", "opex", "provision", "npl_balance", "overdue_balance", "complaints",
    "satisfaction",
}
SOURCE_COLUMNS = FACT_COLUMNS - {"satisfaction"} | {"satisfaction_w", "satisfaction_n"}  # tools.facts
SQL_WORDS = {"sum", "nullif", "coalesce", "filter", "where", "is", "not", "null"}


def test_every_numeric_column_is_a_fact():
    assert set(FACTS) == FACT_COLUMNS


def test_canonical_metrics_present():
    assert set(METRICS) == {
        "npl_rate", "overdue_rate", "net_interest", "net_contribution", "complaint_rate", "balance_mom",
        "balance_yoy",
    }


@pytest.mark.parametrize(
    ("question", "key"),
    [
        ("9月尊享贷的不良率是多少？", "npl_rate"),
        ("尊享贷的不良怎么样", "npl_rate"),
        ("不良贷款率", "npl_rate"),
        ("不良余额有多少", "npl_balance"),  # 不良余额 beats 不良 and 余额
        ("不良贷款", "npl_balance"),
        ("逾期率", "overdue_rate"),
        ("逾期余额", "overdue_balance"),
        ("近6个月贷款类余额趋势", "balance"),
        ("规模多大", "balance"),
        ("日均余额", "avg_balance"),
        ("客户数", "customers"),
        ("有多少户数", "customers"),
        ("新增客户数", "new_customers"),
        ("流失客户", "lost_customers"),
        ("发生额", "volume"),
        ("利息收入", "interest_income"),
        ("净利息收入", "net_interest"),  # beats 利息收入
        ("利息支出", "interest_expense"),
        ("手续费收入", "fee_income"),
        ("中收", "fee_income"),
        ("运营成本", "opex"),
        ("拨备", "provision"),
        ("净贡献排名", "net_contribution"),
        ("哪个产品净收入最高", "net_contribution"),
        ("贡献", "net_contribution"),
        ("投诉量", "complaints"),
        ("万户投诉率", "complaint_rate"),
        ("投诉率", "complaint_rate"),
        ("客户满意度", "satisfaction"),
        ("余额环比", "balance_mom"),
        ("余额同比增长", "balance_yoy"),
        ("NPL ratio of consumer loans", "npl_rate"),
        ("Net Interest Income", "net_interest"),
        ("npl_rate", "npl_rate"),
    ],
)
def test_find_metric(question: str, key: str):
    found = find_metric(question)
    assert found is not None and found.key == key


@pytest.mark.parametrize("question", ["", "哪些产品停牌了", "尊享贷的利率是多少"])
def test_find_metric_none(question: str):
    assert find_metric(question) is None


def test_aliases_are_unique():
    seen: dict[str, str] = {}
    defs: list[Fact | Metric] = [*FACTS.values(), *METRICS.values()]
    for d in defs:
        for alias in {d.key, d.name, *d.aliases}:
            a = normalize(alias)
            assert seen.setdefault(a, d.key) == d.key, f"{alias} names both {seen[a]} and {d.key}"


def _identifiers(sql: str) -> set[str]:
    return set(re.findall(r"[a-z_][a-z_0-9]*", sql.lower()))


@pytest.mark.parametrize("metric", list(METRICS.values()), ids=list(METRICS))
def test_metric_definition(metric: Metric):
    assert metric.name and metric.aliases and metric.unit
    assert set(metric.facts) <= FACT_COLUMNS and metric.facts
    if metric.comparison:
        assert metric.comparison in ("mom", "yoy") and metric.sql is None
        assert metric.base in FACTS
    else:
        assert metric.sql is not None and metric.base is None
        used = _identifiers(metric.sql) - SQL_WORDS
        assert used <= FACT_COLUMNS
        assert used == set(metric.facts)
        assert ";" not in metric.sql and "--" not in metric.sql


@pytest.mark.parametrize("fact", list(FACTS.values()), ids=list(FACTS))
def test_fact_definition(fact: Fact):
    assert fact.name and fact.aliases
    assert fact.unit in ("元", "户", "笔", "分")
    assert _identifiers(fact.sql) - SQL_WORDS <= SOURCE_COLUMNS


def test_semantics():
    assert not FACTS["satisfaction"].additive and "satisfaction_n" in FACTS["satisfaction"].sql
    assert all(f.additive for k, f in FACTS.items() if k != "satisfaction")
    assert METRICS["npl_rate"].categories == ("loan",) and METRICS["overdue_rate"].categories == ("loan",)
    assert METRICS["net_interest"].categories is None
    assert not METRICS["npl_rate"].higher_is_better and METRICS["net_contribution"].higher_is_better
    assert METRICS["complaint_rate"].unit == "‱" and METRICS["npl_rate"].unit == "%"
    assert (METRICS["balance_mom"].comparison, METRICS["balance_yoy"].comparison) == ("mom", "yoy")
    nc = METRICS["net_contribution"].sql or ""
    assert "coalesce(sum(opex), 0)" in nc and "coalesce(sum(provision), 0)" in nc
    assert definition("npl_rate") is METRICS["npl_rate"] and definition("balance") is FACTS["balance"]
    with pytest.raises(KeyError):
        definition("drop table")
