"""Chinese period expressions resolved against the latest month with data (2026-10 here)."""

from __future__ import annotations

from datetime import date

import pytest

from core.errors import BadQuestion, PuyiError
from tools.periods import (
    FuturePeriod,
    Period,
    cn_number,
    find_period,
    label_for,
    parse_period,
    previous,
    year_ago,
)

LATEST = date(2026, 10, 1)


def d(year: int, month: int) -> date:
    return date(year, month, 1)


@pytest.mark.parametrize(
    ("text", "start", "end", "label"),
    [
        ("上月", d(2026, 9), d(2026, 9), "2026年9月"),
        ("上个月", d(2026, 9), d(2026, 9), "2026年9月"),
        ("上一个月", d(2026, 9), d(2026, 9), "2026年9月"),
        ("上上个月", d(2026, 8), d(2026, 8), "2026年8月"),
        ("本月", d(2026, 10), d(2026, 10), "2026年10月"),
        ("当月", d(2026, 10), d(2026, 10), "2026年10月"),
        ("最新", d(2026, 10), d(2026, 10), "2026年10月"),
        ("9月", d(2026, 9), d(2026, 9), "2026年9月"),
        ("九月", d(2026, 9), d(2026, 9), "2026年9月"),
        ("九月份", d(2026, 9), d(2026, 9), "2026年9月"),
        ("10月", d(2026, 10), d(2026, 10), "2026年10月"),
        ("11月", d(2025, 11), d(2025, 11), "2025年11月"),  # not yet this year: last year's
        ("十二月", d(2025, 12), d(2025, 12), "2025年12月"),
        ("2026年9月", d(2026, 9), d(2026, 9), "2026年9月"),
        ("2026年09月", d(2026, 9), d(2026, 9), "2026年9月"),
        ("2026-09", d(2026, 9), d(2026, 9), "2026年9月"),
        ("2026/9", d(2026, 9), d(2026, 9), "2026年9月"),
        ("２０２６－０９", d(2026, 9), d(2026, 9), "2026年9月"),  # full-width
        ("去年9月", d(2025, 9), d(2025, 9), "2025年9月"),
        ("今年3月", d(2026, 3), d(2026, 3), "2026年3月"),
        ("近6个月", d(2026, 5), d(2026, 10), "2026年5月至10月"),
        ("最近六个月", d(2026, 5), d(2026, 10), "2026年5月至10月"),
        ("过去3个月", d(2026, 8), d(2026, 10), "2026年8月至10月"),
        ("近十二个月", d(2025, 11), d(2026, 10), "2025年11月至2026年10月"),
        ("近两个月", d(2026, 9), d(2026, 10), "2026年9月至10月"),
        ("近半年", d(2026, 5), d(2026, 10), "2026年5月至10月"),
        ("近一年", d(2025, 11), d(2026, 10), "2025年11月至2026年10月"),
        ("近两个季度", d(2026, 5), d(2026, 10), "2026年5月至10月"),
        ("今年以来", d(2026, 1), d(2026, 10), "2026年1月至10月"),
        ("年初至今", d(2026, 1), d(2026, 10), "2026年1月至10月"),
        ("今年", d(2026, 1), d(2026, 10), "2026年1月至10月"),
        ("去年", d(2025, 1), d(2025, 12), "2025年"),
        ("前年", d(2024, 1), d(2024, 12), "2024年"),
        ("2025年", d(2025, 1), d(2025, 12), "2025年"),
        ("2025年全年", d(2025, 1), d(2025, 12), "2025年"),
        ("2026年", d(2026, 1), d(2026, 10), "2026年（截至2026年10月）"),
        ("2026年三季度", d(2026, 7), d(2026, 9), "2026年三季度"),
        ("2026年第3季度", d(2026, 7), d(2026, 9), "2026年三季度"),
        ("2026年第三季度", d(2026, 7), d(2026, 9), "2026年三季度"),
        ("三季度", d(2026, 7), d(2026, 9), "2026年三季度"),
        ("一季度", d(2026, 1), d(2026, 3), "2026年一季度"),
        ("Q3", d(2026, 7), d(2026, 9), "2026年三季度"),
        ("q2", d(2026, 4), d(2026, 6), "2026年二季度"),
        ("2025Q4", d(2025, 10), d(2025, 12), "2025年四季度"),
        ("去年四季度", d(2025, 10), d(2025, 12), "2025年四季度"),
        ("上季度", d(2026, 7), d(2026, 9), "2026年三季度"),
        ("上个季度", d(2026, 7), d(2026, 9), "2026年三季度"),
        ("本季度", d(2026, 10), d(2026, 10), "2026年四季度（截至2026年10月）"),
        ("四季度", d(2026, 10), d(2026, 10), "2026年四季度（截至2026年10月）"),
        ("上半年", d(2026, 1), d(2026, 6), "2026年上半年"),
        ("下半年", d(2026, 7), d(2026, 10), "2026年下半年（截至2026年10月）"),
        ("去年下半年", d(2025, 7), d(2025, 12), "2025年下半年"),
        ("2026年5月至10月", d(2026, 5), d(2026, 10), "2026年5月至10月"),
        ("5月到9月", d(2026, 5), d(2026, 9), "2026年5月至9月"),
        ("5-9月", d(2026, 5), d(2026, 9), "2026年5月至9月"),
        ("2026年1-3月", d(2026, 1), d(2026, 3), "2026年一季度"),
        ("2025-11至2026-02", d(2025, 11), d(2026, 2), "2025年11月至2026年2月"),
        ("11月到2月", d(2025, 11), d(2026, 2), "2025年11月至2026年2月"),  # crosses the year end
        ("2025年11月至2026年2月", d(2025, 11), d(2026, 2), "2025年11月至2026年2月"),
        ("5月至12月", d(2026, 5), d(2026, 10), "2026年5月至12月（截至2026年10月）"),
        ("  9月？", d(2026, 9), d(2026, 9), "2026年9月"),
    ],
)
def test_parse_period(text: str, start: date, end: date, label: str):
    p = parse_period(text, LATEST)
    assert p == Period(start, end, label)
    assert p.grain == "month"


@pytest.mark.parametrize("text", ["", "余额", "尊享贷的不良率", "3个月定期", "9月尊享贷", "13月", "近几个月", "去年同期"])
def test_not_a_period(text: str):
    assert parse_period(text, LATEST) is None


@pytest.mark.parametrize(
    "text", ["2026年11月", "今年12月", "2026-12", "2027年", "2027年一季度", "2027Q1"]
)
def test_future_period_is_refused(text: str):
    with pytest.raises(FuturePeriod) as err:
        parse_period(text, LATEST)
    assert isinstance(err.value, PuyiError)
    assert "还没有数据" in str(err.value) and "2026年10月" in str(err.value)


def test_future_half_year_when_latest_is_early():
    with pytest.raises(FuturePeriod):
        parse_period("下半年", date(2026, 3, 1))


def test_year_rollover_in_january():
    jan = date(2026, 1, 1)
    assert parse_period("上月", jan) == Period(d(2025, 12), d(2025, 12), "2025年12月")
    assert parse_period("12月", jan) == Period(d(2025, 12), d(2025, 12), "2025年12月")
    assert parse_period("上季度", jan) == Period(d(2025, 10), d(2025, 12), "2025年四季度")
    assert parse_period("近3个月", jan) == Period(d(2025, 11), d(2026, 1), "2025年11月至2026年1月")
    assert parse_period("今年以来", jan) == Period(d(2026, 1), d(2026, 1), "2026年1月")


def test_range_backwards_with_years_is_a_bad_question():
    with pytest.raises(BadQuestion):
        parse_period("2026年5月至2025年3月", LATEST)


@pytest.mark.parametrize(
    ("question", "matched", "start", "end"),
    [
        ("9月尊享贷的不良率是多少？", "9月", d(2026, 9), d(2026, 9)),
        ("近6个月贷款类余额趋势", "近6个月", d(2026, 5), d(2026, 10)),
        ("尊享贷上个月的余额环比", "上个月", d(2026, 9), d(2026, 9)),
        ("请问2026年三季度各分行净贡献排名", "2026年三季度", d(2026, 7), d(2026, 9)),
        ("薪易快贷 2026-08 的逾期率", "2026-08", d(2026, 8), d(2026, 8)),
        ("去年的客户数", "去年", d(2025, 1), d(2025, 12)),
        ("5月到9月活期宝日均余额", "5月到9月", d(2026, 5), d(2026, 9)),
        ("十一月份的投诉量", "十一月份", d(2025, 11), d(2025, 11)),
        ("最近三个月存款流失最多的产品", "最近三个月", d(2026, 8), d(2026, 10)),
        ("上半年各产品的净利息收入", "上半年", d(2026, 1), d(2026, 6)),
    ],
)
def test_find_period_in_question(question: str, matched: str, start: date, end: date):
    p, text = find_period(question, LATEST)
    assert p is not None
    assert (p.start, p.end, text) == (start, end, matched)


@pytest.mark.parametrize("question", ["尊享贷的不良率是多少？", "3个月定期存款利率", "哪些产品停牌了", ""])
def test_find_period_none(question: str):
    assert find_period(question, LATEST) == (None, "")


def test_find_period_future_is_refused():
    with pytest.raises(FuturePeriod):
        find_period("2026年12月尊享贷的余额会是多少", LATEST)


@pytest.mark.parametrize(
    ("text", "prev", "ago"),
    [
        ("9月", "2026年8月", "2025年9月"),
        ("2026年1月", "2025年12月", "2025年1月"),
        ("2026年三季度", "2026年二季度", "2025年三季度"),
        ("2026年一季度", "2025年四季度", "2025年一季度"),
        ("上半年", "2025年下半年", "2025年上半年"),
        ("2025年", "2024年", "2024年"),
        ("近6个月", "2025年11月至2026年4月", "2025年5月至10月"),
        ("今年以来", "2025年3月至12月", "2025年1月至10月"),
    ],
)
def test_previous_and_year_ago(text: str, prev: str, ago: str):
    p = parse_period(text, LATEST)
    assert p is not None
    assert previous(p).label == prev and previous(p).months == p.months
    assert previous(p).end == date(p.start.year - (p.start.month == 1), (p.start.month - 2) % 12 + 1, 1)
    assert year_ago(p).label == ago and year_ago(p).months == p.months


def test_month_list():
    p = parse_period("11月到2月", LATEST)
    assert p is not None and p.months == 4
    assert p.month_list() == [d(2025, 11), d(2025, 12), d(2026, 1), d(2026, 2)]


@pytest.mark.parametrize(("text", "n"), [("6", 6), ("六", 6), ("两", 2), ("十", 10), ("十二", 12), ("二十四", 24)])
def test_cn_number(text: str, n: int):
    assert cn_number(text) == n


def test_label_for_shapes():
    assert label_for(d(2026, 4), d(2026, 6)) == "2026年二季度"
    assert label_for(d(2026, 7), d(2026, 12)) == "2026年下半年"
    assert label_for(d(2026, 2), d(2026, 4)) == "2026年2月至4月"
