"""Grounded numbers: every number an answer states must come from a tool result or a cited passage.

`check_numbers(answer, tool_calls, citations, question)` finds each number the answer claims and looks
for it among the numbers of the tool results (values and their display strings) and the cited
passages, after unit conversion: 元 ↔ 万元 ↔ 亿元 (and bare 万/亿), a rate shown as a percentage
(0.0345 ↔ 3.45%), 个百分点/基点, integers vs floats, and the rounding the answer shows (the two
decimals of core.text.fmt_money, or however many the answer prints). A number is supported when
some source value, converted, rounds to exactly what the answer prints.

Not claims, so never checked: list numbering (「1. 」), citation marks ([1]), dates and months
(2026年10月, 2026-10, 10月, 近6个月), codes and identifiers (LN0001, DRAFT-…, alert #12, any token
that mixes letters and digits), ranks (第3, 前10名), clock times, and any number that the question
itself contains. A count of items is supported when it equals the length of a list in a tool result
(「共 5 个」 over the five rows the tool returned): the count is derived from the result, not invented.

Policy: the sentence, table row or list item holding an unsupported number is removed and a note
「已移除 N 处无法溯源的数字」 is appended; the removed text and numbers are returned in the result
(stored in the audit row). The fixed texts of the help and refusal routes are constants in code (their
examples are not claims about data) and are not checked.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

# Routes whose answers are constant texts from code, not statements about data.
FIXED_ROUTES = frozenset({"help", "refused"})

NOTE = "> 注：已移除 {n} 处无法溯源的数字。"

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_UNIT = (r"个百分点|百分点|个基点|基点|bp|BP|pp|%|％|‰|亿元|万元|千元|元|亿|万|"
         r"‱|分|户|笔|个|家|人|次|项|条|名|位|张|天|日|年|倍")
# A number with its unit (spaces allowed between them, as fmt_money writes "1,234.56 万元").
_CLAIM_RE = re.compile(rf"(?<![\d.,])(?P<num>{_NUM})(?:\s*(?P<unit>{_UNIT}))?")
# Sources: the same numbers, in any text a tool returned or a passage said.
_SOURCE_RE = re.compile(rf"(?<![\d.])(?P<num>{_NUM})(?:\s*(?P<unit>{_UNIT}))?")

# Spans that are not claims; replaced by spaces (keeping offsets) before numbers are read.
_IGNORE = [
    re.compile(r"(?m)^\s*(?:[-*+>]\s+)?(?:#+\s*)?\d{1,3}[.、)）](?!\d)"),  # list numbering 1. 2、 3)
    re.compile(r"\[\^?\d+\]|【\d+】|\(\d+\)(?=\s*$)"),  # citation marks
    # Codes and identifiers: a token that mixes letters and digits (LN0001, DRAFT-20261001-3, e5).
    re.compile(r"(?<![A-Za-z0-9_\-])(?=[A-Za-z0-9_\-]*[A-Za-z])(?=[A-Za-z0-9_\-]*\d)"
               r"(?!\d+(?:\.\d+)?(?:bp|BP|pp)(?![A-Za-z]))[A-Za-z0-9_\-]+"),
    re.compile(r"[#＃№]\s*\d+"),  # alert ids #12
    re.compile(r"\d[\d,.]*(?=\s*(?:…|\.{3}))"),  # cut off where a quote was shortened: 「平衡系列18……」
    re.compile(r"(?<![\d.,])\d{4}\s*[-/.年]\s*\d{1,2}\s*(?:[-/.月]\s*\d{1,2}\s*[日号]?)?月?"),  # 2026-10-31
    re.compile(r"(?<![\d.,])(?:\d{4}\s*年(?:度|末|初|以来)?"  # 2026年, 10月, 9月30日 (a month is 1..12)
               r"|(?:1[0-2]|0?[1-9])\s*月(?!\s*(?:息|利率))(?:\s*\d{1,2}\s*[日号])?(?:份|末|初|中|底)?)"),
    re.compile(r"\d{4}\s*[Qq]\s*[1-4]|[Qq][1-4]|\d{1,2}:\d{2}(?::\d{2})?"),
    re.compile(r"(?:近|最近|过去|前|后|未来)\s*\d+\s*(?:个)?\s*(?:月|年|季度?|期|天|日)"),  # period lengths
    re.compile(r"(?:第|排名第?|前|后|top|Top|TOP)\s*\d+\s*(?:名|位|个|大|项)?"),  # ranks
]

_UNIT_SCALES: dict[str, tuple[float, ...]] = {
    # The factors that turn a source value into the shown number, by the shown unit; money is
    # handled in _Index.has (the same unit, or yuan divided by the shown unit's size).
    "percent": (1.0, 100.0, 1000.0, 10000.0),  # 3.45% from 3.45 or from a raw rate 0.0345 (‰, ‱ alike)
    "points": (1.0, 100.0, 10000.0),  # 个百分点 / 基点 from a difference in % or as a raw rate
    "count": (1.0,),
    "plain": (1.0, 1e-4, 1e-8, 100.0),  # a bare table cell whose unit is in the header
}
_MONEY = {"元": 1.0, "千元": 1e3, "万元": 1e4, "亿元": 1e8, "万": 1e4, "亿": 1e8}
_PERCENT = {"%", "％", "‰", "‱"}
_POINTS = {"个百分点", "百分点", "个基点", "基点", "bp", "BP", "pp"}


@dataclass
class Claim:
    text: str  # as printed, with its unit
    value: float
    decimals: int
    kind: str  # money | percent | points | count | plain
    multiplier: float  # yuan per shown unit, for money (1 for 元, 1e4 for 万元…)
    start: int
    end: int


@dataclass
class GroundingResult:
    checked: int = 0  # numbers the answer claims (ignored spans and question numbers excluded)
    supported: int = 0
    unsupported: list[str] = field(default_factory=list)  # the numbers as printed
    removed: list[str] = field(default_factory=list)  # the sentences / rows removed
    answer: str = ""  # the answer with those removed (and the note), or unchanged
    skipped: bool = False  # a fixed-text route: nothing to check

    @property
    def ok(self) -> bool:
        return not self.unsupported

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("answer")
        out["ok"] = self.ok
        return out


def _blank(text: str) -> str:
    """The text with every ignored span blanked out, offsets unchanged."""
    for pattern in _IGNORE:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


def _decimals(num: str) -> int:
    return len(num.split(".", 1)[1]) if "." in num else 0


def _kind(unit: str | None) -> str:
    if not unit:
        return "plain"
    if unit in _MONEY:
        return "money"
    if unit in _PERCENT:
        return "percent"
    if unit in _POINTS:
        return "points"
    return "count"


def claims(answer: str) -> list[Claim]:
    """The numbers an answer states, skipping what is not a claim (see the module docstring)."""
    found = []
    for m in _CLAIM_RE.finditer(_blank(answer)):
        num = m.group("num")
        found.append(Claim(text=m.group(0).strip(), value=float(num.replace(",", "")), decimals=_decimals(num),
                           kind=_kind(m.group("unit")), multiplier=_MONEY.get(m.group("unit") or "", 1.0),
                           start=m.start(), end=m.end()))
    return found


def _walk(value: Any) -> Iterator[Any]:
    """Every scalar in a JSON-like structure, and the length of every list in it."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            yield len(v)
            stack.extend(v)
        else:
            yield v


def _source_values(sources: Iterable[Any]) -> set[float]:
    """Every number in the sources: numeric values, and numbers printed in strings (in yuan too when
    printed with a money unit, so 「1.23 亿元」 supports 「12,300.00 万元」)."""
    values: set[float] = set()
    for source in sources:
        for v in _walk(source):
            if isinstance(v, bool) or v is None:
                continue
            if isinstance(v, int | float):
                if math.isfinite(v):
                    values.add(abs(float(v)))
            elif isinstance(v, str) and any(c.isdigit() for c in v):
                for m in _SOURCE_RE.finditer(v):
                    x = float(m.group("num").replace(",", ""))
                    values.add(x)
                    scale = _MONEY.get(m.group("unit") or "")
                    if scale:
                        values.add(x * scale)
    return values


def _rounded(x: float, decimals: int) -> set[str]:
    """x printed with that many decimals, by Python's formatting (what fmt_money does) and half-up."""
    out = {f"{x:.{decimals}f}"}
    with contextlib.suppress(InvalidOperation):  # beyond Decimal's precision: the format above will do
        out.add(str(Decimal(repr(x)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)))
    return out


class _Index:
    """Source values printed the ways the answer needs (built lazily per scale and decimals)."""

    def __init__(self, values: set[float]) -> None:
        self.values = values
        self.keys: dict[tuple[float, int], set[str]] = {}

    def has(self, claim: Claim) -> bool:
        target = f"{claim.value:.{claim.decimals}f}"
        # Money: the same number in the same unit, or a source in yuan converted to the shown unit.
        scales = (1.0, 1 / claim.multiplier) if claim.kind == "money" else _UNIT_SCALES[claim.kind]
        for scale in scales:
            key = (scale, claim.decimals)
            if key not in self.keys:
                self.keys[key] = {r for v in self.values for r in _rounded(v * scale, claim.decimals)}
            if target in self.keys[key]:
                return True
        return False


def _question_values(question: str) -> set[float]:
    return {float(m.group("num").replace(",", "")) for m in _SOURCE_RE.finditer(question or "")}


# A sentence ends at 。！？; or a line break; table rows and list items are lines.
_SENTENCE_RE = re.compile(r"[^。！？!?；;\n]*(?:[。！？!?；;]+|\n|$)")


def _units(answer: str) -> list[tuple[int, int, bool]]:
    """Spans of the answer that are removed whole: a table row or list item (the whole line, True),
    else a sentence (False: its line break stays)."""
    spans = []
    pos = 0
    for line in answer.splitlines(keepends=True):
        body = line.strip()
        if body.startswith("|") or re.match(r"^([-*+]|\d{1,3}[.、)）])\s", body):
            spans.append((pos, pos + len(line), True))
        else:
            for m in _SENTENCE_RE.finditer(line):
                if m.group(0):
                    spans.append((pos + m.start(), pos + m.end(), False))
        pos += len(line)
    return spans


def check_numbers(
    answer: str, tool_calls: list[Any], citations: list[Any], question: str = ""
) -> GroundingResult:
    """Check every number the answer states against the tool results and cited passages; remove
    the sentences whose numbers are not found there (see the module docstring)."""
    found = claims(answer)
    asked = _question_values(question)
    found = [c for c in found if c.value not in asked]
    result = GroundingResult(checked=len(found), answer=answer)
    if not found:
        return result
    index = _Index(_source_values([[c.get("result") if isinstance(c, dict) else c for c in tool_calls],
                                   [c.get("args") for c in tool_calls if isinstance(c, dict)], citations]))
    bad = [c for c in found if not index.has(c)]
    result.supported = len(found) - len(bad)
    if not bad:
        return result
    result.unsupported = [c.text for c in bad]
    pieces, last = [], 0
    for start, end, whole_line in _units(answer):
        if not any(start <= c.start < end for c in bad):
            continue
        pieces.append(answer[last:start])
        removed = answer[start:end]
        result.removed.append(removed.strip())
        last = end
        if removed.endswith("\n") and not whole_line:
            pieces.append("\n")
    pieces.append(answer[last:])
    text = re.sub(r"\n{3,}", "\n\n", "".join(pieces)).rstrip()
    result.answer = (text + "\n\n" if text else "") + NOTE.format(n=len(bad))
    return result


def ground(route: str, answer: str, tool_calls: list[Any], citations: list[Any], question: str = "") -> GroundingResult:
    """check_numbers for a turn; the fixed texts of help and refusal answers are not checked."""
    if route in FIXED_ROUTES:
        return GroundingResult(answer=answer, skipped=True)
    return check_numbers(answer, tool_calls, citations, question)
