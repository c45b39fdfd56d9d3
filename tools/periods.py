"""Chinese period expressions (上月, 近6个月, 2026年三季度, 5月到9月…) → a span of whole months.

Relative expressions resolve against `latest`, the latest month that has data, never against the
wall clock: a bank's data lags the calendar and the assistant must not invent the missing months.
A period that lies entirely after `latest` raises `FuturePeriod`; one that only runs past it is
cut back to `latest` and says so in its label.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from core.errors import BadQuestion, PuyiError

CN_QUARTERS = {1: "一", 2: "二", 3: "三", 4: "四"}
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


class FuturePeriod(PuyiError):
    """The question asks about months after the latest month with data."""

    def __init__(self, label: str, latest: date):
        self.label = label
        self.latest = latest
        super().__init__(
            f"{label}还没有数据：目前数据最新到{latest.year}年{latest.month}月，无法给出之后的数字。"
        )


@dataclass(frozen=True)
class Period:
    """Whole months from `start` to `end` inclusive, both the first day of their month."""

    start: date
    end: date
    label: str
    grain: str = "month"

    @property
    def months(self) -> int:
        return _index(self.end) - _index(self.start) + 1

    def month_list(self) -> list[date]:
        return [_month(_index(self.start) + i) for i in range(self.months)]


def _index(d: date) -> int:
    return d.year * 12 + d.month - 1


def _month(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def shift(d: date, months: int) -> date:
    """The first day of the month `months` after (or before, if negative) `d`'s month."""
    return _month(_index(d) + months)


def month_label(d: date) -> str:
    """2026年9月."""
    return f"{d.year}年{d.month}月"


def label_for(start: date, end: date) -> str:
    """How people name the span: 2026年9月, 2026年三季度, 2026年上半年, 2025年, else a range."""
    if start == end:
        return f"{start.year}年{start.month}月"
    if start.year == end.year:
        y, a, b = start.year, start.month, end.month
        if (a, b) == (1, 12):
            return f"{y}年"
        if b - a == 2 and a % 3 == 1:
            return f"{y}年{CN_QUARTERS[(a + 2) // 3]}季度"
        if (a, b) in ((1, 6), (7, 12)):
            return f"{y}年{'上' if a == 1 else '下'}半年"
        return f"{y}年{a}月至{b}月"
    return f"{start.year}年{start.month}月至{end.year}年{end.month}月"


def previous(period: Period) -> Period:
    """The same-length period just before (环比 base): 9月 → 8月, 三季度 → 二季度."""
    n = period.months
    start, end = shift(period.start, -n), shift(period.start, -1)
    return Period(start, end, label_for(start, end))


def year_ago(period: Period) -> Period:
    """The same months one year earlier (同比 base)."""
    start, end = shift(period.start, -12), shift(period.end, -12)
    return Period(start, end, label_for(start, end))


def _make(start: date, end: date, latest: date, name: str | None = None) -> Period:
    """A period over start..end, refused when wholly in the future and cut back to `latest` otherwise."""
    name = name or label_for(start, end)
    if start > latest:
        raise FuturePeriod(name, latest)
    if end > latest:
        return Period(start, latest, f"{name}（截至{latest.year}年{latest.month}月）")
    return Period(start, end, name)


def cn_number(text: str) -> int:
    """1–99 written as digits or Chinese numerals (六, 十二, 二十四, 两)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    if "十" in text:
        tens, _, units = text.partition("十")
        if len(text) > 3 or "十" in units:
            raise ValueError(text)
        return (_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[units] if units else 0)
    if len(text) == 1 and text in _CN_DIGITS:
        return _CN_DIGITS[text]
    raise ValueError(text)


# --- patterns ------------------------------------------------------------------------------------
# Each pattern has a resolver; find_period takes the earliest match, the longest at a position, so
# 2026年9月 beats 2026年 and 9月, and 不良率 in the same question is never mistaken for a period.

_YEAR = r"(?:(?<!\d)\d{4}\s*年|今年|去年|前年|本年|上年)"
_MON = r"(?:(?<!\d)(?:1[0-2]|0?[1-9])(?!\d)|十[一二]?|[一二三四五六七八九])"
_NUM = r"(?:(?<!\d)\d{1,3}|[一二两三四五六七八九十]{1,3})"
_SEP = r"\s*(?:至|到|~|-|—|–)\s*"


def _month_token(s: str) -> str:
    return (
        rf"(?:(?:(?P<y{s}>{_YEAR})\s*)?(?P<m{s}>{_MON})\s*月份?"
        rf"|(?<!\d)(?P<iy{s}>\d{{4}})\s*[-/.]\s*(?P<im{s}>1[0-2]|0?[1-9])(?!\d))"
    )


def _year(text: str, latest: date) -> int:
    text = text.replace("年", "").strip()
    if text.isdigit():
        return int(text)
    return latest.year - {"今": 0, "本": 0, "去": 1, "上": 1, "前": 2}[text[0]]


def _token(m: re.Match[str], s: str, latest: date) -> tuple[int | None, int]:
    """(year or None when not said, month) of one month token."""
    if m.group(f"iy{s}"):
        return int(m.group(f"iy{s}")), int(m.group(f"im{s}"))
    y = m.group(f"y{s}")
    return (_year(y, latest) if y else None), cn_number(m.group(f"m{s}"))


def _bare_month(month: int, latest: date) -> date:
    """A month named without a year: this year's, or last year's if this year's has not come yet."""
    d = date(latest.year, month, 1)
    return d if d <= latest else date(latest.year - 1, month, 1)


def _single(m: re.Match[str], latest: date) -> Period:
    y, mon = _token(m, "", latest)
    d = date(y, mon, 1) if y is not None else _bare_month(mon, latest)
    return _make(d, d, latest)


def _range(m: re.Match[str], latest: date) -> Period:
    (ya, a), (yb, b) = _token(m, "a", latest), _token(m, "b", latest)
    return _resolve_range(ya, a, yb, b, latest)


def _short_range(m: re.Match[str], latest: date) -> Period:
    y = _year(m.group("y"), latest) if m.group("y") else None
    return _resolve_range(y, cn_number(m.group("a")), None, cn_number(m.group("b")), latest)


def _resolve_range(ya: int | None, a: int, yb: int | None, b: int, latest: date) -> Period:
    # A year said on one side carries to the other; 11月至2月 crosses a year end. With no year the
    # start is read like a bare month, so 5月至12月 means this May on, cut back to `latest`.
    if yb is None:
        start = date(ya, a, 1) if ya is not None else _bare_month(a, latest)
        end = date(start.year + (b < a), b, 1)
    elif ya is None:
        end = date(yb, b, 1)
        start = date(yb - (a > b), a, 1)
    else:
        start, end = date(ya, a, 1), date(yb, b, 1)
    if start > end:
        raise BadQuestion(f"起始月份{start.year}年{start.month}月晚于结束月份{end.year}年{end.month}月。")
    return _make(start, end, latest)


def _last_month(m: re.Match[str], latest: date) -> Period:
    d = shift(latest, -2 if m.group(0).startswith("上上") else -1)
    return Period(d, d, label_for(d, d))


def _this_month(m: re.Match[str], latest: date) -> Period:
    return Period(latest, latest, label_for(latest, latest))


def _recent(m: re.Match[str], latest: date) -> Period | None:
    unit = m.group("u")
    if unit == "半年":
        n = 6
    elif not m.group("n"):
        return None
    else:
        n = cn_number(m.group("n")) * (12 if unit == "年" else 3 if "季" in unit else 1)
    if n < 1:
        return None
    start = shift(latest, -(n - 1))
    return Period(start, latest, label_for(start, latest))


def _ytd(m: re.Match[str], latest: date) -> Period:
    start = date(latest.year, 1, 1)
    return Period(start, latest, label_for(start, latest))


def _whole_year(m: re.Match[str], latest: date) -> Period:
    y = _year(m.group("y"), latest)
    return _make(date(y, 1, 1), date(y, 12, 1), latest)


def _quarter(m: re.Match[str], latest: date) -> Period:
    q = int(m.group("q")) if m.group("q").isdigit() else cn_number(m.group("q"))
    y_text = m.group("y") or (m.groupdict().get("y2") or "")
    start = date(_year(y_text, latest) if y_text else latest.year, 3 * q - 2, 1)
    if not y_text and start > latest:
        start = date(start.year - 1, start.month, 1)
    return _make(start, shift(start, 2), latest)


def _relative_quarter(m: re.Match[str], latest: date) -> Period:
    start = date(latest.year, (latest.month - 1) // 3 * 3 + 1, 1)
    if m.group(0).startswith("上"):
        start = shift(start, -3)
    return _make(start, shift(start, 2), latest)


def _half(m: re.Match[str], latest: date) -> Period:
    y = _year(m.group("y"), latest) if m.group("y") else latest.year
    start = date(y, 1 if m.group("h") == "上" else 7, 1)
    return _make(start, shift(start, 5), latest)


_Resolver = Callable[[re.Match[str], date], "Period | None"]
_PATTERNS: list[tuple[re.Pattern[str], _Resolver]] = [
    (re.compile(_month_token("a") + _SEP + _month_token("b")), _range),
    (re.compile(rf"(?:(?P<y>{_YEAR})\s*)?(?P<a>{_MON})\s*月?{_SEP}(?P<b>{_MON})\s*月"), _short_range),
    (re.compile(_month_token("")), _single),
    (re.compile(r"上上个?月|上一?个月|上月"), _last_month),
    (re.compile(r"本月|当月|这个月|最新(?:一期|月份|一个月)?"), _this_month),
    (re.compile(rf"(?:最近|近|过去)\s*(?P<n>{_NUM})?\s*(?P<u>个月|月|个季度|季度|年|半年)"), _recent),
    (re.compile(r"今年以来|今年|本年以来|本年度?|年初至今|年初以来|年内"), _ytd),
    # 去年同期 is a 同比 comparison, not the whole of last year.
    (re.compile(r"(?P<y>(?<!\d)\d{4}\s*年|去年|上一年|上年|前年)(?:全年|度)?(?!同期)"), _whole_year),
    (re.compile(rf"(?:(?P<y>{_YEAR})\s*)?第?\s*(?P<q>[1-4一二三四])\s*季度"), _quarter),
    (re.compile(rf"(?:(?P<y>{_YEAR})\s*|(?<!\d)(?P<y2>\d{{4}})\s*-?\s*)?Q(?P<q>[1-4])(?!\d)", re.I), _quarter),
    (re.compile(r"上一?个?季度|本季度?|当季度?|这个?季度"), _relative_quarter),
    (re.compile(rf"(?:(?P<y>{_YEAR})\s*)?(?P<h>[上下])半年度?"), _half),
]


def _fold(text: str) -> str:
    """Full-width digits and punctuation to half-width, keeping every offset (one char for one)."""
    out = []
    for ch in text:
        n = unicodedata.normalize("NFKC", ch)
        out.append(n if len(n) == 1 else ch)
    return "".join(out)


def find_period(text: str, latest: date) -> tuple[Period | None, str]:
    """The first period expression in a question and the text it was read from; (None, "") if none.

    Raises `FuturePeriod` when that expression is wholly after `latest`.
    """
    folded = _fold(text)
    candidates: list[tuple[int, int, int, re.Match[str]]] = []
    for i, (pattern, _) in enumerate(_PATTERNS):
        for m in pattern.finditer(folded):
            if m.end() > m.start():
                candidates.append((m.start(), -(m.end() - m.start()), i, m))
    for start, neg_len, i, m in sorted(candidates, key=lambda c: c[:3]):
        try:
            period = _PATTERNS[i][1](m, latest)
        except (ValueError, KeyError):
            continue
        if period is not None:
            return period, text[start:start - neg_len]
    return None, ""


def parse_period(text: str, latest: date) -> Period | None:
    """A text that is just a period expression (surrounding spaces and punctuation allowed), or None."""
    folded = _fold(text).strip(" \t\r\n。，、,.？?！!的")
    for pattern, resolve in _PATTERNS:
        m = pattern.fullmatch(folded)
        if m is None:
            continue
        try:
            period = resolve(m, latest)
        except (ValueError, KeyError):
            continue
        if period is not None:
            return period
    return None
