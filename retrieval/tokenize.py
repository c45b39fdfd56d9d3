"""Chinese tokens for PostgreSQL full text: jieba segments, PostgreSQL's `simple` config indexes them.

PostgreSQL has no Chinese parser, so text is segmented here and stored as space-separated
tokens. Catalogue product names and aliases join jieba's dictionary, so 尊享贷 stays one token.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from importlib.resources import files

from core.text import normalize

_KEEP_RE = re.compile(r"[\w\u4e00-\u9fff]")
_TSQUERY_UNSAFE = re.compile(r"[^\w\u4e00-\u9fff.]")


def _stopwords() -> frozenset[str]:
    text = files("retrieval").joinpath("stopwords.txt").read_text(encoding="utf-8")
    return frozenset(w.strip() for w in text.split() if w.strip())


class ChineseTokenizer:
    """A private jieba tokenizer (the global one is shared by every library in the process)."""

    def __init__(self, extra_words: Iterable[str] = ()) -> None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        self._jieba = jieba.Tokenizer()
        self._lock = threading.Lock()  # jieba's lazy initialisation is not thread-safe
        with self._lock:
            self._jieba.initialize()
            for word in extra_words:
                word = normalize(word)
                if len(word) >= 2:
                    self._jieba.add_word(word, freq=2000)
        self.stopwords = _stopwords()

    def tokens(self, text: str) -> list[str]:
        """Search-mode segments (long words and their parts), without stop words or punctuation."""
        out: list[str] = []
        for tok in self._jieba.cut_for_search(normalize(text)):
            tok = tok.strip()
            if tok and _KEEP_RE.search(tok) and tok not in self.stopwords:
                out.append(_TSQUERY_UNSAFE.sub("", tok))
        return [t for t in out if t]

    def document(self, text: str) -> str:
        """Text to feed `to_tsvector('simple', …)`."""
        return " ".join(self.tokens(text))

    def query(self, text: str) -> str:
        """A tsquery matching any query token (ranking rewards chunks with more of them)."""
        seen = dict.fromkeys(self.tokens(text))
        return " | ".join(f"'{t}'" for t in seen)
