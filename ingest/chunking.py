"""Cut a document's blocks into retrievable chunks, sized for Chinese text.

* Text is chunked by heading and paragraph, at most `max_chars` characters; a paragraph longer
  than that is split at sentence ends (。！？；…), with up to `overlap` characters of the previous
  piece repeated, cut at a sentence or clause boundary.
* A table is never split mid-row: it is one chunk with its header, or, when too large, several
  chunks of whole rows, each repeating the header.
* FAQs: every question/answer pair is one chunk holding both the question and the answer —
  `问：…答：…` / `Q:…A:…` pairs, headings that are questions followed by their answer, and tables
  with question and answer columns (one chunk per row).
* Laws and regulations: one chunk per article (第X条 with its paragraphs and items), the chapter
  in `heading_path`; a long article is split, each later part starting `第X条（续）`.

Headings are kept out of the chunk text (they are `heading_path`, the document title first).
The result depends only on the input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ingest.documents import ANSWER_RE, ARTICLE_RE, QUESTION_RE, Block, render_table

ChunkKind = Literal["text", "table", "faq", "article"]


@dataclass
class Chunk:
    text: str  # what is embedded and shown
    heading_path: list[str]  # e.g. ["尊享贷产品说明书", "提前还款"]
    kind: ChunkKind
    page: int | None
    ordinal: int  # position in the document


# A sentence ends after 。！？；!?; (and closing quotes/brackets that follow), or at a line end.
_SENTENCE_RE = re.compile(r".*?(?:[。！？；!?;…]+[”’」』）)】\"']*|\.(?=\s)|\n|$)", re.S)
_CLAUSE_END = "，、,：:"
_INTERROGATIVE_RE = re.compile(r"吗|如何|怎么|怎样|什么|是否|能否|可否|能不能|可不可以|为什么|为何|多少|哪些|哪里|哪个|何时|多久|几[个天年月种次]")
_Q_HEADERS = ("问题", "问", "q", "question", "questions", "常见问题", "提问", "客户问题", "咨询问题")
_A_HEADERS = ("答案", "答", "a", "answer", "answers", "解答", "回答", "回复", "答复", "参考答案", "标准答案")


def chunk_blocks(
    blocks: list[Block], title: str, doc_type: str, max_chars: int = 600, overlap: int = 80
) -> list[Chunk]:
    """Chunks of a document, in order. `doc_type` "faq" turns on the looser question detection."""
    if max_chars < 50:
        raise ValueError("max_chars must be at least 50")
    if not 0 <= overlap <= max_chars // 3:
        raise ValueError("overlap must be between 0 and max_chars/3")
    return _Chunker(blocks, title.strip(), doc_type, max_chars, overlap).run()


@dataclass
class _Chunker:
    blocks: list[Block]
    title: str
    doc_type: str
    max_chars: int
    overlap: int
    chunks: list[Chunk] = field(default_factory=list)
    stack: list[tuple[int, str]] = field(default_factory=list)  # open headings (level, text)
    faq: bool = False  # an FAQ: bare questions pair with the paragraph after them
    law: bool = False  # a law or regulation: one chunk per article

    # ---- the walk ---------------------------------------------------------------------------

    def run(self) -> list[Chunk]:
        blocks = self.blocks
        self.faq = self.doc_type.lower() == "faq" or self._looks_like_faq()
        self.law = sum(1 for b in blocks if b.kind == "text" and ARTICLE_RE.match(b.text)) >= 2
        i = 0
        n = len(blocks)
        while i < n:
            b = blocks[i]
            if b.kind == "heading":
                self._open_heading(b)
                j = self._take_paragraphs(i + 1)
                if j > i + 1 and self._is_question_heading(b.text):
                    self._emit_faq(b.text, [x.text for x in blocks[i + 1:j]], self._page(blocks[i:j]))
                    i = j
                else:
                    i += 1
            elif b.kind == "table":
                self._emit_table(b)
                i += 1
            elif b.kind == "qa":
                question, answer = _split_qa(b.text)
                self._emit_faq(question, [answer] if answer else [], b.page)
                i += 1
            elif self.law and ARTICLE_RE.match(b.text):
                j = self._take_paragraphs(i + 1, stop_at_article=True)
                self._emit_article(blocks[i:j])
                i = j
            elif self.faq and self._is_bare_question(i):
                j = self._take_paragraphs(i + 1, stop_at_question=True)
                self._emit_faq(b.text, [x.text for x in blocks[i + 1:j]], b.page)
                i = j
            else:
                j = self._take_paragraphs(i + 1, stop_at_article=self.law, stop_at_question=self.faq)
                self._emit_text(blocks[i:j])
                i = j
        if not self.chunks and blocks:  # only headings: still findable
            heads = [b.text for b in blocks if b.text.strip()]
            self._add("\n".join(heads)[: self.max_chars], "text", blocks[0].page)
        for k, chunk in enumerate(self.chunks):
            chunk.ordinal = k
        return self.chunks

    def _take_paragraphs(self, j: int, stop_at_article: bool = False, stop_at_question: bool = False) -> int:
        """The end of the run of text/list blocks starting at `j`."""
        n = len(self.blocks)
        while j < n and self.blocks[j].kind in ("text", "list"):
            text = self.blocks[j].text
            if stop_at_article and self.law and ARTICLE_RE.match(text):
                break
            if stop_at_question and self._is_bare_question(j):
                break
            j += 1
        return j

    # ---- headings and questions -------------------------------------------------------------

    def _open_heading(self, b: Block) -> None:
        level = max(b.level, 1)
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, b.text.strip()))

    def _path(self) -> list[str]:
        path = [self.title] if self.title else []
        for _level, text in self.stack:
            if text and text != self.title and (not path or path[-1] != text):
                path.append(text)
        return path

    def _is_question_heading(self, text: str) -> bool:
        text = text.strip()
        if text.endswith(("？", "?")) or QUESTION_RE.match(text):
            return True
        return self.faq and len(text) <= 80 and bool(_INTERROGATIVE_RE.search(text))

    def _is_bare_question(self, i: int) -> bool:
        """In an FAQ: a short paragraph ending in ？ followed by a paragraph that is not one."""
        b = self.blocks[i]
        if b.kind not in ("text", "list") or len(b.text) > 150 or not b.text.rstrip().endswith(("？", "?")):
            return False
        nxt = self.blocks[i + 1] if i + 1 < len(self.blocks) else None
        return nxt is not None and nxt.kind in ("text", "list") and not nxt.text.rstrip().endswith(("？", "?"))

    def _looks_like_faq(self) -> bool:
        qa = sum(1 for b in self.blocks if b.kind == "qa")
        questions = sum(1 for b in self.blocks if b.kind == "heading" and b.text.rstrip().endswith(("？", "?")))
        tables = any(b.kind == "table" and b.rows and _qa_columns(b.rows[0]) for b in self.blocks)
        return qa >= 1 or questions >= 2 or tables

    # ---- emitters ---------------------------------------------------------------------------

    def _add(self, text: str, kind: ChunkKind, page: int | None) -> None:
        text = text.strip()
        if text:
            self.chunks.append(Chunk(text, self._path(), kind, page, len(self.chunks)))

    @staticmethod
    def _page(blocks: Sequence[Block]) -> int | None:
        return next((b.page for b in blocks if b.page is not None), None)

    def _emit_text(self, blocks: Sequence[Block]) -> None:
        """Paragraphs packed into chunks of at most max_chars; a long paragraph split by sentence."""
        buf: list[str] = []
        buf_len = 0
        buf_page: int | None = None

        def flush() -> None:
            nonlocal buf, buf_len, buf_page
            if buf:
                self._add("\n".join(buf), "text", buf_page)
            buf, buf_len, buf_page = [], 0, None

        for b in blocks:
            text = b.text.strip()
            if not text:
                continue
            if len(text) > self.max_chars:
                flush()
                pieces = split_text(text, self.max_chars, self.overlap)
                for piece in pieces[:-1]:
                    self._add(piece, "text", b.page)
                text = pieces[-1]  # the last piece stays open for the paragraphs after it
            added = len(text) + (1 if buf else 0)
            if buf and buf_len + added > self.max_chars:
                flush()
                added = len(text)
            if not buf:
                buf_page = b.page
            buf.append(text)
            buf_len += added
        flush()

    def _emit_article(self, blocks: Sequence[Block]) -> None:
        text = "\n".join(b.text.strip() for b in blocks if b.text.strip())
        page = self._page(blocks)
        if len(text) <= self.max_chars:
            self._add(text, "article", page)
            return
        m = ARTICLE_RE.match(text)
        label = m.group(0) if m else ""
        prefix = f"{label}（续）"
        first, *rest = split_text(text, self.max_chars, self.overlap, later_budget=self.max_chars - len(prefix) - 1)
        self._add(first, "article", page)
        for piece in rest:
            self._add(f"{prefix}\n{piece}", "article", page)

    def _emit_faq(self, question: str, answer: Sequence[str], page: int | None) -> None:
        question = question.strip()
        body = "\n".join(a.strip() for a in answer if a.strip())
        if not body:  # a question with no answer is still a unit of its own
            self._add(question, "faq", page)
            return
        text = f"{question}\n{body}"
        if len(text) <= self.max_chars:
            self._add(text, "faq", page)
            return
        budget = max(self.max_chars - len(question) - 1, self.max_chars // 2)
        for piece in split_text(body, budget, self.overlap):
            self._add(f"{question}\n{piece}", "faq", page)

    def _emit_table(self, b: Block) -> None:
        rows = b.rows or []
        if not rows:
            self._add(b.text, "table", b.page)
            return
        header, body = rows[0], rows[1:]
        cols = _qa_columns(header)
        if cols is not None:
            q, a = cols
            for row in body:
                question, answer = row[q].strip(), row[a].strip()
                if not question and not answer:
                    continue
                extra = [f"{header[c]}：{row[c]}" for c in range(len(header))
                         if c not in (q, a) and c < len(row) and row[c].strip() and header[c].strip()]
                qtext = question if QUESTION_RE.match(question) else f"问：{question}"
                atext = answer if ANSWER_RE.match(answer) else f"答：{answer}"
                self._emit_faq(qtext, [atext, *extra], b.page)
            return
        for part in split_table(rows, self.max_chars):
            self._add(render_table(part), "table", b.page)


def _split_qa(text: str) -> tuple[str, str]:
    """A "qa" block's text is the question line(s), then the answer from its 答：/A: marker on."""
    lines = text.split("\n")
    for k in range(1, len(lines)):
        if ANSWER_RE.match(lines[k]):
            return "\n".join(lines[:k]), "\n".join(lines[k:])
    return lines[0], "\n".join(lines[1:])


def _norm_header(cell: str) -> str:
    return re.sub(r"[\s:：()（）\[\]【】]", "", cell).lower()


def _qa_columns(header: Sequence[str]) -> tuple[int, int] | None:
    """Indices of the question and answer columns, if the header names both."""
    names = [_norm_header(c) for c in header]
    q = next((k for k, c in enumerate(names) if c in _Q_HEADERS), None)
    if q is None:
        q = next((k for k, c in enumerate(names) if c.endswith("问题")), None)
    a = next((k for k, c in enumerate(names) if c in _A_HEADERS and k != q), None)
    if a is None:
        a = next((k for k, c in enumerate(names) if k != q and c.endswith(("答案", "解答", "回答", "答复"))), None)
    return (q, a) if q is not None and a is not None else None


def split_table(rows: Sequence[Sequence[str]], max_chars: int) -> list[list[list[str]]]:
    """Whole rows in parts of at most max_chars (a single wider row stays whole), header in each."""
    header = list(rows[0])
    head_len = len(" | ".join(header))
    parts: list[list[list[str]]] = []
    current: list[list[str]] = []
    size = head_len
    for row in rows[1:]:
        row_len = len(" | ".join(row)) + 1
        if current and size + row_len > max_chars:
            parts.append([header, *current])
            current, size = [], head_len
        current.append(list(row))
        size += row_len
    if current or not parts:
        parts.append([header, *current])
    return parts


def sentences(text: str) -> list[str]:
    """Sentences with their ending punctuation; line ends are boundaries too."""
    return [m.group(0) for m in _SENTENCE_RE.finditer(text) if m.group(0)]


def _hard_split(sentence: str, limit: int) -> list[str]:
    """A sentence longer than `limit`: split after clause punctuation, else every `limit` chars."""
    parts: list[str] = []
    current = ""
    for piece in re.findall(rf"[^{_CLAUSE_END}]*[{_CLAUSE_END}]*", sentence):
        if not piece:
            continue
        while len(piece) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(piece[:limit])
            piece = piece[limit:]
        if current and len(current) + len(piece) > limit:
            parts.append(current)
            current = ""
        current += piece
    if current:
        parts.append(current)
    return parts


def _tail(text: str, overlap: int) -> str:
    """The end of `text`, at most `overlap` chars, starting after a sentence or clause boundary."""
    if overlap <= 0 or len(text) <= overlap:
        return ""
    start = len(text) - overlap
    for k in range(start, len(text)):
        if text[k - 1] in "。！？；!?;\n" + _CLAUSE_END:
            return text[k:].lstrip("\n")
    return ""


def split_text(text: str, max_chars: int, overlap: int = 0, later_budget: int | None = None) -> list[str]:
    """Pieces of at most max_chars, cut at sentence ends; each later piece starts with up to
    `overlap` chars of the end of the previous one. `later_budget` caps pieces after the first
    (room for a prefix the caller adds)."""
    budget = max_chars
    limit = later_budget if later_budget is not None else max_chars
    units: list[str] = []
    for s in sentences(text):
        units.extend(_hard_split(s, min(budget, limit)) if len(s) > min(budget, limit) else [s])
    pieces: list[str] = []
    current = ""
    for unit in units:
        if current and len(current) + len(unit) > budget:
            pieces.append(current)
            budget = limit
            carry = _tail(current, overlap)
            current = carry if len(carry) + len(unit) <= budget else ""
        current += unit
    if current.strip():
        pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]
