"""Text normalisation shared by linking, routing and search."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_SPACE_RE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFKC (full-width → half-width), lower case, no white space: how names are compared."""
    return _SPACE_RE.sub("", unicodedata.normalize("NFKC", text)).lower()


@lru_cache(maxsize=20000)
def pinyin_key(text: str) -> str:
    """Toneless pinyin of a string, so that input-method homophone typos (尊想贷) still match."""
    from pypinyin import Style, lazy_pinyin

    return "".join(lazy_pinyin(text, style=Style.NORMAL, errors="default"))
