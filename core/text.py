"""Text normalisation shared by linking, routing and search."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

_SPACE_RE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFKC (full-width → half-width), lower case, no white space: how names are compared."""
    return _SPACE_RE.sub("", unicodedata.normalize("NFKC", text)).lower()


def money_scale(values: Iterable[float | None]) -> tuple[float, str]:
    """The divisor and unit (亿元, 万元 or 元) that the largest of `values` reads best in."""
    top = max((abs(v) for v in values if v is not None), default=0.0)
    return (1e8, "亿元") if top >= 1e8 else (1e4, "万元") if top >= 1e4 else (1.0, "元")


def fmt_money(value: Any) -> str:
    """Yuan the way bankers read them: 亿元 / 万元 with two decimals; — for no value."""
    if value is None:
        return "—"
    v = float(value)
    div, unit = money_scale([v])
    return f"{v / div:,.2f} {unit}"


@lru_cache(maxsize=20000)
def pinyin_key(text: str) -> str:
    """Toneless pinyin of a string, so that input-method homophone typos (尊想贷) still match."""
    from pypinyin import Style, lazy_pinyin

    return "".join(lazy_pinyin(text, style=Style.NORMAL, errors="default"))
