"""Text normalisation shared by linking, routing and search."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

_SPACE_RE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFKC (full-width → half-width), lower case, no white space: how names are compared."""
    return _SPACE_RE.sub("", unicodedata.normalize("NFKC", text)).lower()


def fmt_money(value: Any) -> str:
    """Yuan the way bankers read them: 亿元 / 万元 with two decimals; — for no value."""
    if value is None:
        return "—"
    v = float(value)
    if abs(v) >= 1e8:
        return f"{v / 1e8:,.2f} 亿元"
    if abs(v) >= 1e4:
        return f"{v / 1e4:,.2f} 万元"
    return f"{v:,.2f} 元"


@lru_cache(maxsize=20000)
def pinyin_key(text: str) -> str:
    """Toneless pinyin of a string, so that input-method homophone typos (尊想贷) still match."""
    from pypinyin import Style, lazy_pinyin

    return "".join(lazy_pinyin(text, style=Style.NORMAL, errors="default"))
