"""Load a bank document (.md .txt .html .docx .pdf .xlsx .csv) as a list of structural blocks.

`unstructured` partitions md/txt/html/docx/xlsx/csv; PDFs are read with pdfplumber (pdfminer.six
underneath) into the same kind of blocks, tables included. Everything runs offline:

* `unstructured` sends a telemetry ping on import and on every partition call unless
  `DO_NOT_TRACK`/`SCARF_NO_ANALYTICS` are set, so this module sets them before it is imported.
* Its text classifier (`unstructured.nlp.tokenize`) downloads spaCy's `en_core_web_sm` from
  GitHub on first use. We replace the one loader it calls (`_get_nlp`) with a blank multilingual
  spaCy pipeline plus a rule-based sentencizer, built in memory: no model, no download.
* Language detection is switched off (`languages=[""]`); we do not use it.

The element types `unstructured` guesses for plain text (Title vs NarrativeText) come from
English heuristics, so they are only trusted where they come from markup (markdown `#`, html
h1–h6, docx heading styles). Chinese structure — 第X编/章/节, 第X条, 一、/（一）/1.1 numbering,
问：/答： pairs — is recognised here, the same way for every format.
"""

from __future__ import annotations

import io
import os
import re
import statistics
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from core.errors import PuyiError

# Before `unstructured` is ever imported (by us or anyone): no telemetry, no usage banner.
for _var in ("DO_NOT_TRACK", "SCARF_NO_ANALYTICS"):
    if not os.environ.get(_var, "").strip():
        os.environ[_var] = "1"
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")

BlockKind = Literal["heading", "text", "table", "list", "qa"]
SUPPORTED_SUFFIXES = (".md", ".txt", ".html", ".docx", ".pdf", ".xlsx", ".csv")


@dataclass
class Block:
    """One structural element of a document."""

    kind: BlockKind
    text: str  # for tables: header row + rows, cells separated by " | "
    level: int = 0  # heading level (1 = top) for headings
    page: int | None = None
    rows: list[list[str]] | None = None  # tables: header first


class DocumentError(PuyiError):
    """A document that cannot be read: missing, unsupported, empty or corrupt. Names the file."""


def load_document(path: Path) -> list[Block]:
    """Read `path` into blocks in reading order. Raises `DocumentError` naming the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentError(f"{path}: 不支持的文档格式 {suffix or '(无扩展名)'}（支持 {' '.join(SUPPORTED_SUFFIXES)}）")
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise DocumentError(f"{path}: 文件不存在") from exc
    except OSError as exc:
        raise DocumentError(f"{path}: 无法读取文档：{exc.strerror or exc}") from exc
    if not path.is_file():
        raise DocumentError(f"{path}: 不是文件")
    if size == 0:
        raise DocumentError(f"{path}: 文档为空")
    try:
        if suffix == ".pdf":
            blocks, explicit = _load_pdf(path), True
        else:
            blocks, explicit = _load_with_unstructured(path, suffix)
    except DocumentError:
        raise
    except Exception as exc:  # a corrupt file surfaces as anything from zipfile to pdfminer
        raise DocumentError(f"{path}: 无法解析文档（{type(exc).__name__}: {_short(exc)}）") from exc
    blocks = _structure(blocks, explicit_headings=explicit, first_line_title=suffix == ".txt")
    if not any(b.text.strip() for b in blocks):
        raise DocumentError(f"{path}: 文档没有可提取的文字" + ("（可能是扫描件）" if suffix == ".pdf" else ""))
    return blocks


# ------------------------------------------------------------------------------------------------
# Text normalisation
# ------------------------------------------------------------------------------------------------

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_PUNCT = "\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\u2018-\u201f\u2026\u2014"
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2060\ufeff\u00ad]")
_SPACES_RE = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
# Full-width digits and Latin letters become ASCII (searchable as typed); full-width Chinese
# punctuation (，。：；（）！？) is kept as it is.
_FULLWIDTH_ALNUM = {
    **{0xFF10 + i: 0x30 + i for i in range(10)},
    **{0xFF21 + i: 0x41 + i for i in range(26)},
    **{0xFF41 + i: 0x61 + i for i in range(26)},
}
# A space next to full-width punctuation is never meaningful: "（以审批为准） ！" → "（以审批为准）！".
_FW_PUNCT = "\u3001-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"
_SPACE_AT_PUNCT_RE = re.compile(rf" +(?=[{_FW_PUNCT}])|(?<=[{_FW_PUNCT}]) +")
# A letter-spaced word in a heading: "附  则" → "附则" (a lone CJK character on each side).
_LETTER_SPACED_RE = re.compile(rf"(?<![{_CJK}])([{_CJK}])[ ]+([{_CJK}])(?![{_CJK}])")


def _clean_chars(text: str) -> str:
    """Line ends unified, control and zero-width characters gone, full-width digits/letters ASCII."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    return _CONTROL_RE.sub("", text).translate(_FULLWIDTH_ALNUM)


def clean_text(text: str) -> str:
    """Strip control characters, unify spaces and line ends, keep Chinese punctuation."""
    text = _clean_chars(text)
    lines = [_SPACE_AT_PUNCT_RE.sub("", _SPACES_RE.sub(" ", line)).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _clean_heading(text: str) -> str:
    return _LETTER_SPACED_RE.sub(r"\1\2", " ".join(clean_text(text).split()))


def _is_cjk_edge(ch: str) -> bool:
    return bool(re.match(rf"[{_CJK}{_CJK_PUNCT}]", ch))


def join_broken(left: str, right: str) -> str:
    """Join two pieces of one sentence broken by a line end: no space around Chinese."""
    left, right = left.rstrip(), right.lstrip()
    if not left or not right:
        return left + right
    if _is_cjk_edge(left[-1]) or _is_cjk_edge(right[0]):
        return left + right
    if left.endswith("-") and left[-2:-1].isalpha() and right[0].islower():
        return left[:-1] + right
    return left + " " + right


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text[:200]


# ------------------------------------------------------------------------------------------------
# Chinese structure: headings, articles, questions and answers
# ------------------------------------------------------------------------------------------------

_CN_NUM = "零〇一二两三四五六七八九十百千万"
# 第X条 at the start of a paragraph (an article of a law or regulation).
ARTICLE_RE = re.compile(rf"^第[{_CN_NUM}\d]+条(?:之[{_CN_NUM}]+)?(?=$|[\s:：【〔（(])")
_ARTICLE_LABEL_ONLY_RE = re.compile(rf"^第[{_CN_NUM}\d]+条(?:之[{_CN_NUM}]+)?(?:\s*[【〔（(][^】〕）)]*[】〕）)])?$")
_LAW_HEADING_RE = re.compile(rf"^第[{_CN_NUM}\d]+(编|分编|章|节)(?:$|\s|[{_CJK}])")
_CN_ENUM_HEADING_RE = re.compile(rf"^[{_CN_NUM}]+[、．.]\s*\S")
_PAREN_ENUM_HEADING_RE = re.compile(rf"^[（(][{_CN_NUM}]+[）)]\s*\S")
_DOTTED_HEADING_RE = re.compile(r"^(\d{1,2}(?:\.\d{1,2})+)\.?\s*(?![\d%])\S")
_LAW_RANK = {"编": 0, "分编": 1, "章": 2, "节": 3}
_HEADING_MAX_CHARS = 40
_NOT_HEADING_END = tuple("。；;，,：:、")

# Question/answer markers at the start of a paragraph: 问：, Q:, Q1：, 1. 问：, 问题1:, 【问】.
QUESTION_RE = re.compile(r"^(?:\d+\s*[.、．)）]\s*)?[【\[]?(?:问题?|Q|q)\s*\d*[】\]]?\s*[:：．.、]\s*")
ANSWER_RE = re.compile(r"^[【\[]?(?:答案?|回答|解答|A|a)\s*\d*[】\]]?\s*[:：．.、]\s*")
# An answer marker inside a paragraph (after a line end, a space or the question's own ending).
_INLINE_ANSWER_RE = re.compile(r"(?:(?<=\n)|(?<=[\s?？。!！]))[【\[]?(?:答案?|回答|解答|A)\s*\d*[】\]]?\s*[:：]")
_LIST_MARKER_RE = re.compile(rf"^(?:[•·●○◆◇▪▫■□►▶\-*+]\s|\d+\s*[.、．)）]\s*\S|[（(]\d+[）)]|[（(][{_CN_NUM}]+[）)]|[{_CN_NUM}]+、|[①-⑳])")


def heading_class(text: str) -> tuple[float, str] | None:
    """The numbering family of a heading-like line and its rank (smaller = higher), or None."""
    m = _LAW_HEADING_RE.match(text)
    if m:
        return float(_LAW_RANK[m.group(1)]), m.group(1)
    if _CN_ENUM_HEADING_RE.match(text):
        return 4.0, "一、"
    if _PAREN_ENUM_HEADING_RE.match(text):
        return 5.0, "（一）"
    m = _DOTTED_HEADING_RE.match(text)
    if m:
        depth = m.group(1).count(".")
        return 5.0 + depth, "1" + ".1" * depth
    return None


def _pattern_heading(text: str, law: bool) -> tuple[float, str] | None:
    """A numbered heading written as a plain paragraph (txt, pdf, an unstyled docx line)."""
    if len(text) > _HEADING_MAX_CHARS or "\n" in text or text.endswith(_NOT_HEADING_END):
        return None
    if "。" in text or QUESTION_RE.match(text) or ARTICLE_RE.match(text):
        return None
    cls = heading_class(text)
    if cls is None:
        return None
    if law and cls[1] not in _LAW_RANK:  # inside a law, （一）/一、 are items of an article
        return None
    return cls


def starts_structure(line: str) -> bool:
    """True if `line` begins a new unit: an article, heading number, list item, question or answer."""
    return bool(
        ARTICLE_RE.match(line) or _LAW_HEADING_RE.match(line) or QUESTION_RE.match(line)
        or ANSWER_RE.match(line) or _LIST_MARKER_RE.match(line) or heading_class(line)
    )


_KEY_VALUE_RE = re.compile(r"^[^，。：:\s]{1,12}[:：]")
_BREAKABLE_END = tuple("，、,（(“‘《")
_TERMINAL_END = tuple("。！？；!?;：:…")


def continues(prev: str, line: str) -> bool:
    """Is `line` the rest of `prev`, hard-wrapped mid-sentence (for plain text without layout)?"""
    if not prev or not line or starts_structure(line) or _KEY_VALUE_RE.match(line):
        return False
    if prev.endswith(_TERMINAL_END) or prev.endswith(("）", ")", "」", "』", "”", "】")):
        return False
    if prev.endswith(_BREAKABLE_END):
        return True
    # a full line of text that stops in the middle of a word: wrapped. A short line is a label.
    return len(prev) >= 20


def _reflow_lines(lines: Iterable[str]) -> list[str]:
    out: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            if out and out[-1]:
                out.append("")
            continue
        if out and out[-1] and continues(out[-1], line):
            out[-1] = join_broken(out[-1], line)
        else:
            out.append(line)
    return out


# ------------------------------------------------------------------------------------------------
# unstructured: md, txt, html, docx, xlsx, csv
# ------------------------------------------------------------------------------------------------

_PREPARED = False
_PREPARE_LOCK = threading.Lock()


# Tokens for the offline pipeline: a Latin word or number whole, every other character alone (so
# Chinese text, which has no spaces, splits into characters and its 。！？ become sentence ends).
_TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:[.'’\-][A-Za-z0-9]+)*|\s+|.", re.S)


class _MixedTokenizer:
    """A spaCy tokenizer for Chinese mixed with Latin text, with no data files."""

    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab

    def __call__(self, text: str) -> Any:
        from spacy.tokens import Doc

        words: list[str] = []
        spaces: list[bool] = []
        for m in _TOKEN_RE.finditer(text):
            token = m.group(0)
            if token == " " and words and not spaces[-1] and not words[-1].isspace():
                spaces[-1] = True
            else:
                words.append(token)
                spaces.append(False)
        return Doc(self.vocab, words=words, spaces=spaces)


def prepare_unstructured() -> None:
    """Make `unstructured` usable offline: telemetry off, an in-memory spaCy pipeline.

    `unstructured.nlp.tokenize._get_nlp` would load `en_core_web_sm` and, when it is missing,
    download and install it from GitHub. Every caller (`sent_tokenize`, `word_tokenize`,
    `pos_tag`, used by the Title/NarrativeText heuristics) goes through `_get_nlp`, so we replace
    it with a blank multilingual pipeline: our tokenizer and spaCy's rule-based sentencizer (whose
    sentence ends include 。！？). POS tags are then empty, which only changes English-specific
    guesses we do not use.
    """
    global _PREPARED
    if _PREPARED:
        return
    with _PREPARE_LOCK:
        if _PREPARED:
            return
        import spacy
        import unstructured.nlp.tokenize as tokenize

        if not callable(getattr(tokenize, "_get_nlp", None)):  # the one hook we rely on
            raise RuntimeError("unstructured.nlp.tokenize._get_nlp is gone: cannot keep partitioning offline")

        nlp = spacy.blank("xx")
        nlp.tokenizer = _MixedTokenizer(nlp.vocab)
        nlp.add_pipe("sentencizer")

        def _offline_nlp() -> Any:
            return nlp

        tokenize._get_nlp = _offline_nlp  # type: ignore[assignment]
        for cached in (tokenize._process_cached, tokenize._tokenize_for_cache, tokenize.word_tokenize,
                       tokenize.pos_tag):
            cached.cache_clear()
        _PREPARED = True


def _decode(path: Path, data: bytes) -> str:
    """Text files from Chinese offices: UTF-8 (with or without BOM), UTF-16, or GB18030/GBK."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{path}: 无法识别的文本编码") from exc
    if b"\x00" in data:
        raise DocumentError(f"{path}: 不是文本文件（含二进制内容）")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise DocumentError(f"{path}: 无法识别的文本编码")
    return str(best)


def _md_reflow(text: str) -> str:
    """Give each line of a plain markdown paragraph its own paragraph, re-joining wrapped lines.

    Markdown would join `问：…\\n答：…` or `名称：…\\n期限：…` into one line with a space; Chinese
    writers mean a line break there. Lines of lists, tables, quotes, headings and code are left
    to markdown.
    """
    out: list[str] = []
    in_fence = False
    prev_plain = False
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
            out.append(line)
            prev_plain = False
            continue
        plain = (
            not in_fence and bool(stripped) and not line.startswith(("    ", "\t"))
            and "|" not in stripped  # a table row, with or without its outer pipes
            and not re.match(r"^(?:[#><]|[-*+]\s|\d+[.)]\s|[-=*_]{3,}\s*$|\[\^?[^\]]*\]:)", stripped)
        )
        if plain and prev_plain:
            if continues(out[-1].strip(), stripped):
                out[-1] = join_broken(out[-1], stripped)
                continue
            out.append("")
        out.append(line)
        prev_plain = plain
    return "\n".join(out)


def _load_with_unstructured(path: Path, suffix: str) -> tuple[list[Block], bool]:
    prepare_unstructured()
    common: dict[str, Any] = {"languages": [""]}  # no language detection
    elements: list[Any]
    explicit = True
    source_tables: dict[tuple[str, ...], list[list[str]]] = {}
    if suffix == ".md":
        from unstructured.partition.md import partition_md

        # indentation is markdown syntax (nested lists, code): only characters are cleaned here
        elements = partition_md(text=_md_reflow(_clean_chars(_decode(path, path.read_bytes()))), **common)
    elif suffix == ".txt":
        from unstructured.partition.text import partition_text

        text = "\n".join(line for line in _reflow_lines(clean_text(_decode(path, path.read_bytes())).split("\n")))
        elements = partition_text(text=text, paragraph_grouper=False, **common) if text.strip() else []
        explicit = False  # every Title from plain text is an English guess
    elif suffix == ".html":
        from unstructured.partition.html import partition_html

        html = _decode(path, path.read_bytes())
        elements = partition_html(text=html, **common)
        source_tables = _source_tables(html)
    elif suffix == ".docx":
        from unstructured.partition.docx import partition_docx

        elements = partition_docx(filename=str(path), infer_table_structure=True, **common)
    elif suffix == ".xlsx":
        from unstructured.partition.xlsx import partition_xlsx

        elements = partition_xlsx(filename=str(path), infer_table_structure=True, **common)
    elif suffix == ".csv":
        from unstructured.partition.csv import partition_csv

        text = _decode(path, path.read_bytes())
        if not text.strip():
            return [], explicit
        elements = partition_csv(file=io.BytesIO(text.encode("utf-8")), encoding="utf-8",
                                 infer_table_structure=True, **common)
    else:  # pragma: no cover - guarded by load_document
        raise DocumentError(f"{path}: 不支持的文档格式 {suffix}")
    return _elements_to_blocks(elements, suffix, trust_titles=explicit, source_tables=source_tables), explicit


_SKIPPED_CATEGORIES = {"Header", "Footer", "PageBreak", "PageNumber", "Image", "Picture"}
_DEFAULT_SHEET_RE = re.compile(r"^(?:sheet|工作表)\s*\d*$", re.IGNORECASE)


def _elements_to_blocks(
    elements: Sequence[Any], suffix: str, trust_titles: bool,
    source_tables: dict[tuple[str, ...], list[list[str]]] | None = None,
) -> list[Block]:
    blocks: list[Block] = []
    sheet: str | None = None
    for el in elements:
        category = getattr(el, "category", "")
        meta = el.metadata
        page = meta.page_number
        if suffix == ".xlsx" and meta.page_name and meta.page_name != sheet:
            sheet = meta.page_name
            if not _DEFAULT_SHEET_RE.match(sheet.strip()):
                blocks.append(Block("heading", _clean_heading(sheet), level=1, page=page))
        if category in _SKIPPED_CATEGORIES:
            continue
        if category == "Table":
            rows = _html_table_rows(meta.text_as_html) if meta.text_as_html else None
            if rows and source_tables:  # html: unstructured drops row/col spans; use the source grid
                rows = source_tables.get(_table_key(meta.text_as_html), rows)
            blocks.extend(table_blocks(rows or [[clean_text(el.text)]], page))
            continue
        text = clean_text(el.text or "")
        if not text:
            continue
        if category == "Title" and trust_titles and suffix != ".xlsx":
            depth = meta.category_depth or 0
            blocks.append(Block("heading", _clean_heading(text), level=depth + 1, page=page))
        elif category == "ListItem":
            blocks.append(Block("list", text, page=page))
        else:
            blocks.append(Block("text", text, page=page))
    return blocks


def _table_cells(table: Any) -> list[list[Any]]:
    return [[c for c in tr if isinstance(c.tag, str) and c.tag.lower() in ("td", "th")] for tr in table.iter("tr")]


def _table_key(html: str) -> tuple[str, ...]:
    """A table identified by its cell texts in order, whatever its spans."""
    from lxml import html as lxml_html

    return tuple(_cell_text(c.text_content()) for row in _table_cells(lxml_html.fromstring(html)) for c in row)


def _source_tables(html: str) -> dict[tuple[str, ...], list[list[str]]]:
    from lxml import html as lxml_html

    try:
        root = lxml_html.fromstring(html)
    except Exception:  # nothing to improve on: keep what unstructured gives
        return {}
    out: dict[tuple[str, ...], list[list[str]]] = {}
    for table in root.iter("table"):
        key = tuple(_cell_text(c.text_content()) for row in _table_cells(table) for c in row)
        out.setdefault(key, _html_table_rows(table))
    return out


def _html_table_rows(html: str | Any) -> list[list[str]]:
    """Rows of an html table, header first; row- and column-spans laid out on a grid."""
    from lxml import html as lxml_html

    root = lxml_html.fromstring(html) if isinstance(html, str) else html
    grid: list[list[str]] = []
    pending: dict[tuple[int, int], str] = {}  # (row, col) filled by a rowspan from above
    for r, cells in enumerate(_table_cells(root)):
        row: list[str] = []
        for cell in cells:
            while (r, len(row)) in pending:
                row.append(pending.pop((r, len(row))))
            text = _cell_text(cell.text_content())
            rowspan = _span(cell.get("rowspan"))
            for c in range(_span(cell.get("colspan"))):
                value = text if c == 0 else ""
                for below in range(1, rowspan):
                    pending[(r + below, len(row))] = value
                row.append(value)
        while (r, len(row)) in pending:
            row.append(pending.pop((r, len(row))))
        grid.append(row)
    return grid


def _span(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 1000))
    except ValueError:
        return 1


def _cell_text(text: str) -> str:
    lines = [line for line in clean_text(text).split("\n") if line]
    out = ""
    for line in lines:
        out = join_broken(out, line) if out else line
    return out


def table_blocks(rows: Sequence[Sequence[str | None]], page: int | None) -> list[Block]:
    """A table block from raw rows: cells cleaned, empty rows and columns dropped.

    A table left with one row or one column is not tabular data (a layout box, a caption); it
    becomes text.
    """
    cleaned = [[_cell_text(c or "") for c in row] for row in rows]
    cleaned = [row for row in cleaned if any(row)]
    if not cleaned:
        return []
    width = max(len(row) for row in cleaned)
    cleaned = [row + [""] * (width - len(row)) for row in cleaned]
    keep = [c for c in range(width) if any(row[c] for row in cleaned)]
    cleaned = [[row[c] for c in keep] for row in cleaned]
    if len(keep) == 1:
        return [Block("text", row[0], page=page) for row in cleaned]
    if len(cleaned) == 1:
        return [Block("text", " | ".join(c for c in cleaned[0] if c), page=page)]
    return [Block("table", render_table(cleaned), page=page, rows=cleaned)]


def render_table(rows: Sequence[Sequence[str]]) -> str:
    return "\n".join(" | ".join(row) for row in rows)


# ------------------------------------------------------------------------------------------------
# PDF (pdfplumber)
# ------------------------------------------------------------------------------------------------

_PAGE_NUMBER_RE = re.compile(
    r"^(?:[-—–\s]*\d+[-—–\s]*|第\s*\d+\s*页(?:\s*[,，/]?\s*共\s*\d+\s*页)?|\d+\s*/\s*\d+|page\s*\d+(?:\s*of\s*\d+)?)$",
    re.IGNORECASE,
)
_BOLD_RE = re.compile(r"bold|heavy|black|semibold|demi|黑体|simhei|hei", re.IGNORECASE)


@dataclass
class _Line:
    text: str
    page: int
    x0: float
    x1: float
    top: float
    bottom: float
    size: float
    bold: bool


@dataclass
class _PdfTable:
    rows: list[list[str | None]]
    page: int
    top: float
    bottom: float


def _load_pdf(path: Path) -> list[Block]:
    import pdfplumber

    try:
        pdf = pdfplumber.open(path)
    except Exception as exc:
        raise DocumentError(f"{path}: 无法打开 PDF（{type(exc).__name__}: {_short(exc)}）") from exc
    items: list[_Line | _PdfTable] = []
    heights: dict[int, float] = {}
    with pdf:
        for page in pdf.pages:
            number = page.page_number
            heights[number] = float(page.height)
            tables = page.find_tables()
            boxes = [t.bbox for t in tables]

            def outside(obj: dict[str, Any], boxes: list[tuple[float, float, float, float]] = boxes) -> bool:
                if obj.get("object_type") != "char":
                    return True
                cx, cy = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
                return not any(x0 <= cx <= x1 and top <= cy <= bottom for x0, top, x1, bottom in boxes)

            text_page = page.filter(outside) if boxes else page
            page_items: list[_Line | _PdfTable] = []
            for raw in text_page.extract_text_lines(return_chars=True, strip=True):
                text = clean_text(raw["text"])
                chars = [c for c in raw["chars"] if c["text"].strip()]
                if not text or not chars:
                    continue
                size = statistics.median(float(c["size"]) for c in chars)
                bold = all(_BOLD_RE.search(str(c.get("fontname", ""))) for c in chars)
                page_items.append(_Line(text, number, float(raw["x0"]), float(raw["x1"]), float(raw["top"]),
                                        float(raw["bottom"]), round(size * 2) / 2, bold))
            for t in tables:
                page_items.append(_PdfTable(t.extract(), number, float(t.bbox[1]), float(t.bbox[3])))
            page_items.sort(key=lambda it: it.top)
            items.extend(page_items)
    items = _drop_running_heads(items, heights)
    return _pdf_blocks(items)


def _drop_running_heads(items: list[_Line | _PdfTable], heights: dict[int, float]) -> list[_Line | _PdfTable]:
    """Drop page numbers and lines repeated in the top or bottom margin of most pages."""
    pages = len(heights)

    def in_margin(line: _Line) -> bool:
        h = heights[line.page]
        return line.top < h * 0.1 or line.bottom > h * 0.9

    def key(line: _Line) -> str:  # same words (up to the page number) at the same height
        return f"{int(line.top // 4)}:{re.sub(r'[0-9]+', '#', line.text)}"

    repeated: set[str] = set()
    if pages >= 2:
        pairs = {(key(it), it.page) for it in items if isinstance(it, _Line) and in_margin(it)}
        counts = Counter(k for k, _page in pairs)
        repeated = {k for k, n in counts.items() if n >= 2 and n >= 0.6 * pages}
    return [
        it for it in items
        if not (isinstance(it, _Line) and in_margin(it) and (_PAGE_NUMBER_RE.match(it.text) or key(it) in repeated))
    ]


def _pdf_blocks(items: list[_Line | _PdfTable]) -> list[Block]:
    lines = [it for it in items if isinstance(it, _Line)]
    if not lines:
        return [b for it in items if isinstance(it, _PdfTable) for b in table_blocks(it.rows, it.page)]
    weights: Counter[float] = Counter()
    for line in lines:
        weights[line.size] += len(line.text)
    body = max(sorted(weights), key=lambda s: weights[s])  # the size most text is set in
    left = min(line.x0 for line in lines if line.size == body)
    right = max(line.x1 for line in lines if line.size == body)
    heading_sizes = sorted({ln.size for ln in lines if ln.size >= body * 1.15 and len(ln.text) <= 60}, reverse=True)
    size_level = {s: i + 1 for i, s in enumerate(heading_sizes)}
    bold_level = len(heading_sizes) + 1

    blocks: list[Block] = []
    para: _Line | None = None  # the paragraph being assembled (text grows, geometry of its last line)
    para_page = 0
    last_table: Block | None = None
    heading_bottom = -1.0  # where the last heading line ended, to join a heading wrapped over lines

    def flush() -> None:
        nonlocal para
        if para is not None:
            blocks.append(Block("text", para.text, page=para_page))
            para = None

    for it in items:
        if isinstance(it, _PdfTable):
            flush()
            new = table_blocks(it.rows, it.page)
            # a table continued on the next page: same columns, nothing in between
            if (len(new) == 1 and new[0].kind == "table" and last_table is not None and blocks
                    and blocks[-1] is last_table and last_table.rows and new[0].rows
                    and len(new[0].rows[0]) == len(last_table.rows[0]) and (last_table.page or 0) < it.page):
                extra = new[0].rows[1:] if new[0].rows[0] == last_table.rows[0] else new[0].rows
                last_table.rows.extend(extra)
                last_table.text = render_table(last_table.rows)
                continue
            blocks.extend(new)
            last_table = blocks[-1] if blocks and blocks[-1].kind == "table" else None
            continue
        line = it
        level = size_level.get(line.size)
        if level is None and line.bold and line.size >= body and len(line.text) <= 30 and not line.text.endswith(_TERMINAL_END):
            level = bold_level
        if level is not None:
            flush()
            prev = blocks[-1] if blocks else None
            # a heading wrapped over two lines of the same size
            if prev is not None and prev.kind == "heading" and prev.level == level and prev.page == line.page \
                    and heading_bottom >= line.top - line.size:
                prev.text = _clean_heading(join_broken(prev.text, line.text))
            else:
                blocks.append(Block("heading", _clean_heading(line.text), level=level, page=line.page))
            heading_bottom = line.bottom
            continue
        if para is not None and _pdf_continues(para, line, left, right):
            para = replace(para, text=join_broken(para.text, line.text), x0=line.x0, x1=line.x1,
                           top=line.top, bottom=line.bottom, page=line.page)
        else:
            flush()
            para, para_page = line, line.page
    flush()
    return blocks


def _pdf_continues(prev: _Line, line: _Line, left: float, right: float) -> bool:
    """Is `line` the next line of the paragraph whose last line is `prev`?"""
    if starts_structure(line.text) or line.size != prev.size:
        return False
    if line.page == prev.page:
        if line.top - prev.bottom > prev.size * 1.0:  # a paragraph gap
            return False
    elif prev.text.endswith(_TERMINAL_END):
        return False  # a new page after a finished sentence
    if line.x0 > left + prev.size * 0.8:  # first-line indent: a new paragraph
        return False
    # the previous line stopped short of the right margin after a full stop: paragraph end
    return not (prev.text.endswith(_TERMINAL_END) and prev.x1 < right - prev.size * 1.5)


# ------------------------------------------------------------------------------------------------
# The common pass: articles, numbered headings, question/answer pairs
# ------------------------------------------------------------------------------------------------


def _structure(blocks: list[Block], explicit_headings: bool, first_line_title: bool) -> list[Block]:
    blocks = [b for b in blocks if b.text.strip()]
    blocks = _merge_article_labels(blocks)
    law = sum(1 for b in blocks if b.kind == "text" and ARTICLE_RE.match(b.text)) >= 2
    blocks = _number_headings(blocks, law, first_line_title and not explicit_headings)
    return _pair_questions(blocks)


def _merge_article_labels(blocks: list[Block]) -> list[Block]:
    """`第十条` alone on a line (or as a heading) followed by its text → one paragraph."""
    out: list[Block] = []
    i = 0
    while i < len(blocks):
        b = blocks[i]
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        if (b.kind in ("text", "heading") and _ARTICLE_LABEL_ONLY_RE.match(b.text) and nxt is not None
                and nxt.kind in ("text", "list")):
            out.append(Block("text", f"{b.text} {nxt.text}", page=b.page))
            i += 2
            continue
        out.append(b)
        i += 1
    return out


def _number_headings(blocks: list[Block], law: bool, first_line_title: bool) -> list[Block]:
    """Numbered plain paragraphs (第一章, 一、, （一）, 1.1) become headings at a consistent level."""
    # Levels the document itself gives a numbering family (an explicit "## 第一章 …").
    learned: dict[str, int] = {}
    for b in blocks:
        if b.kind == "heading":
            cls = heading_class(b.text)
            if cls is not None:
                learned.setdefault(cls[1], b.level)
    candidates = {i: cls for i, b in enumerate(blocks) if b.kind == "text" and (cls := _pattern_heading(b.text, law))}
    ranks = sorted({cls for cls in candidates.values() if cls[1] not in learned})
    title_index: int | None = None
    if first_line_title and blocks and blocks[0].kind == "text" and 0 not in candidates and len(blocks) > 1:
        first = blocks[0].text
        if len(first) <= _HEADING_MAX_CHARS and not first.endswith(_NOT_HEADING_END) and "\n" not in first \
                and not starts_structure(first):
            title_index = 0
    base: int | None = None
    out: list[Block] = []
    current_explicit = 0
    for i, b in enumerate(blocks):
        if i == title_index:
            out.append(Block("heading", _clean_heading(b.text), level=1, page=b.page))
            current_explicit = 1
            continue
        if b.kind == "heading":
            current_explicit = b.level
            out.append(replace(b, text=_clean_heading(b.text)))
            continue
        cls = candidates.get(i)
        if cls is None:
            out.append(b)
            continue
        if cls[1] in learned:
            level = learned[cls[1]]
        else:
            if base is None:
                base = current_explicit + 1
            level = base + ranks.index(cls)
        out.append(Block("heading", _clean_heading(b.text), level=level, page=b.page))
    return out


def _split_inline_answer(text: str) -> tuple[str, str] | None:
    q = QUESTION_RE.match(text)
    m = _INLINE_ANSWER_RE.search(text, q.end() if q else 0)
    if m is None:
        return None
    return text[: m.start()].strip(), text[m.start():].strip()


def _pair_questions(blocks: list[Block]) -> list[Block]:
    """`问：… 答：…` (also Q:/A:, numbered `1. 问：`) → one "qa" block with both, answer continued."""
    out: list[Block] = []
    i = 0
    n = len(blocks)
    while i < n:
        b = blocks[i]
        if b.kind not in ("text", "list") or not QUESTION_RE.match(b.text):
            out.append(b)
            i += 1
            continue
        parts: list[str]
        inline = _split_inline_answer(b.text)
        if inline is not None:
            parts = [inline[0], inline[1]]
            j = i + 1
        elif i + 1 < n and blocks[i + 1].kind in ("text", "list") and ANSWER_RE.match(blocks[i + 1].text):
            parts = [b.text, blocks[i + 1].text]
            j = i + 2
        else:
            out.append(b)
            i += 1
            continue
        # the answer goes on over following paragraphs until the next question or heading
        while j < n and blocks[j].kind in ("text", "list") and not QUESTION_RE.match(blocks[j].text):
            parts.append(blocks[j].text)
            j += 1
        out.append(Block("qa", "\n".join(parts), page=b.page))
        i = j
    return out


__all__ = [
    "ARTICLE_RE",
    "ANSWER_RE",
    "QUESTION_RE",
    "SUPPORTED_SUFFIXES",
    "Block",
    "DocumentError",
    "clean_text",
    "join_broken",
    "load_document",
    "prepare_unstructured",
    "render_table",
]
