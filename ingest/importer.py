"""Import a bank folder (the data contract) into the database: validate everything, then load it all.

Validation reads each CSV once, in chunks, and checks it column by column (one regex map or one set
difference per column and chunk), so a 400k-row metrics file validates in seconds. Any error means
nothing is loaded. Loading happens in one transaction: the bank tables are emptied and every file
is COPYed again from the validated text, so a failure anywhere leaves the previous bank intact.
"""

from __future__ import annotations

import codecs
import csv
import gc
import hashlib
import io
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

import psycopg
import yaml
from psycopg.rows import dict_row

from core.db import Database
from core.errors import PuyiError
from ingest.contract import (
    ALERT_RULES_FILE,
    BANK_TABLES,
    BRANCH_LEVEL_NAMES,
    BRANCH_LEVELS,
    DOC_EXTENSIONS,
    DOC_FOLDER_TYPES,
    DOCS_DIR,
    FILES,
    LEVEL_NAMES,
    MANIFEST_FILE,
    PRODUCT_LEVELS,
    Column,
    FileSpec,
)
from tools.facts import refresh_rollups

# Rows per validation/load chunk: big enough for C-speed column checks, small enough for memory.
CHUNK_ROWS = 50_000
# Beyond this many problems of one kind in one column of one file, only a count is reported.
MAX_SAME_PROBLEMS = 100
# Part of the content hash: bump when the same folder would load differently.
_HASH_VERSION = "puyi-import-1"
_IMPORT_LOCK = 0x50555950  # pg advisory lock: one import at a time

# A whole column joined with newlines, in one C-level match (possessive: no backtracking).
_NUMBER_COLUMN_RE = {
    "decimal": re.compile(r"(?:(?:[+-]?+(?:\d++(?:\.\d*+)?+|\.\d++))?+\n)*+"),
    "int": re.compile(r"(?:(?:[+-]?+\d{1,9}+)?+\n)*+"),
    "bigint": re.compile(r"(?:(?:[+-]?+\d{1,18}+)?+\n)*+"),
}
_NUMBER_RE = {
    "decimal": re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"),
    "int": re.compile(r"[+-]?\d{1,9}"),  # fast path; 10-digit values get an exact range check
    "bigint": re.compile(r"[+-]?\d{1,18}"),
}
_INT_RANGE = {"int": 2**31 - 1, "bigint": 2**63 - 1}
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH_RE = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])")
_LEVEL_RANK = {level: i for i, level in enumerate(PRODUCT_LEVELS)}
_BRANCH_RANK = {level: i for i, level in enumerate(BRANCH_LEVELS)}
_TEXT_DOCS = (".md", ".txt", ".html", ".csv")
_DOC_MAGIC = {".docx": b"PK\x03\x04", ".xlsx": b"PK\x03\x04", ".pdf": b"%PDF"}


# --- results and problems ---------------------------------------------------------------------


@dataclass
class Problem:
    file: str
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.column}: {self.message}" if self.column else f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "message": self.message}


@dataclass
class ImportResult:
    status: Literal["loaded", "unchanged"]
    counts: dict[str, int]
    warnings: list[Problem]
    seconds: float
    head_office: str


class ImportFailed(PuyiError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        head = "\n".join(str(p) for p in problems[:20])
        more = f"\n……共 {len(problems)} 个问题" if len(problems) > 20 else ""
        super().__init__(f"导入失败，未加载任何数据 (import failed, nothing loaded):\n{head}{more}")


@dataclass
class DocumentRecord:
    path: str  # relative to docs/, with forward slashes
    title: str
    doc_type: str
    product_codes: list[str]
    access: str
    effective_date: str | None
    sha256: str
    bytes: int
    source_path: str


@dataclass
class ParsedTable:
    spec: FileSpec
    text: str
    header: list[str]
    index: dict[str, int]  # contract column → position in the header
    extras: list[tuple[str, int]]  # unknown columns kept in `extra`
    rows: int = 0


@dataclass
class ParsedBank:
    """What validation learnt about a folder: enough to load it without re-validating."""

    folder: Path
    tables: dict[str, ParsedTable] = field(default_factory=dict)
    head_office: str | None = None
    closure: list[tuple[str, str, int]] = field(default_factory=list)
    product_levels: dict[str, str] = field(default_factory=dict)
    subjects: set[str] = field(default_factory=set)
    alert_rules: str | None = None
    documents: list[DocumentRecord] = field(default_factory=list)
    alert_rules_sha256: str = ""
    content_hash: str = ""

    def counts(self) -> dict[str, int]:
        counts = {f.table: (self.tables[f.name].rows if f.name in self.tables else 0) for f in FILES if f.table}
        counts["documents"] = len(self.documents)
        return counts


class _Report:
    """Collects problems, keeping at most MAX_SAME_PROBLEMS of one kind per file and column."""

    def __init__(self) -> None:
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self._seen: dict[tuple[str, str | None, str], tuple[int, list[Problem]]] = {}

    def error(self, file: str, line: int | None, column: str | None, message: str, kind: str = "") -> None:
        self._add(self.errors, file, line, column, message, kind)

    def warn(self, file: str, line: int | None, column: str | None, message: str, kind: str = "") -> None:
        self._add(self.warnings, file, line, column, message, kind)

    def _add(self, out: list[Problem], file: str, line: int | None, column: str | None, message: str,
             kind: str) -> None:
        if kind:
            key = (file, column, kind)
            n = self._seen.get(key, (0, out))[0] + 1
            self._seen[key] = (n, out)
            if n > MAX_SAME_PROBLEMS:
                return
        out.append(Problem(file, line, column, message))

    def finish(self) -> None:
        # Checks run column by column; people read a file top to bottom.
        for out in (self.errors, self.warnings):
            rank: dict[str, int] = {}
            for p in out:
                rank.setdefault(p.file, len(rank))
            out.sort(key=lambda p: (rank[p.file], p.line or 0))
        for (file, column, kind), (n, out) in self._seen.items():
            if n > MAX_SAME_PROBLEMS:
                more = n - MAX_SAME_PROBLEMS
                out.append(Problem(file, None, column, f"……另有 {more} 行同类问题未逐一列出 "
                                                       f"({more} more rows with the same problem: {kind})"))


@contextmanager
def _gc_paused() -> Iterator[None]:
    # Millions of short-lived rows would trigger the cyclic collector over and over (2-3x slower);
    # rows hold only strings, so there is nothing for it to find.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _q(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _split_list(cell: str) -> list[str]:
    return [part.strip() for part in cell.split("|") if part.strip()]


# --- reading files ------------------------------------------------------------------------------


def _decode(name: str, data: bytes, report: _Report) -> str | None:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        report.error(name, line, None, "不是 UTF-8 编码（可能是 GBK），请另存为 UTF-8 (file is not valid UTF-8)")
        return None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        report.error(name, line, None, "含有空字符 NUL，文件可能已损坏 (NUL character in file)")
        return None
    return text


@dataclass
class _Chunk:
    rows: list[list[str]]
    lines: Sequence[int]  # physical line where each row starts


def _chunks(pt: ParsedTable, report: _Report | None) -> Iterator[_Chunk]:
    """The data rows of a table in chunks; malformed records are reported (when validating) and skipped."""
    body = pt.text.replace("\r\n", "\n") if "\r\n" in pt.text else pt.text
    if '"' in body or "\r" in body:
        yield from _csv_chunks(pt, report)
        return
    # Without quotes a record is exactly one line and a field exactly what lies between commas:
    # splitting is several times faster than the csv module and gives the same rows.
    name = pt.spec.name
    width = len(pt.header)
    lines = body.split("\n")
    for first in range(1, len(lines), CHUNK_ROWS):
        block = lines[first:first + CHUNK_ROWS]
        rows = [line.split(",") for line in block]
        numbers: Sequence[int] = range(first + 1, first + 1 + len(block))
        if set(map(len, rows)) != {width} or "" in block:
            good = [(n, row) for n, row in zip(numbers, rows, strict=True)
                    if len(row) == width and (width > 1 or row[0].strip())]
            if report is not None:
                for n, row in zip(numbers, rows, strict=True):
                    if len(row) != width and (len(row) > 1 or row[0].strip()):
                        report.error(name, n, None, f"有 {len(row)} 个字段，表头有 {width} 个 "
                                                    f"(wrong number of fields: {len(row)}, header has {width})",
                                     "fields")
            rows = [row for _, row in good]
            numbers = [n for n, _ in good]
        if rows:
            yield _Chunk(rows, numbers)


def _csv_chunks(pt: ParsedTable, report: _Report | None) -> Iterator[_Chunk]:
    """The careful reader for files with quotes: records may span lines, quoting may be broken."""
    name = pt.spec.name
    width = len(pt.header)
    reader = csv.reader(io.StringIO(pt.text, newline=""), strict=True)
    next(reader)  # the header, read by _open_table
    prev = reader.line_num
    rows: list[list[str]] = []
    lines: list[int] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if report is not None:
                report.error(name, prev + 1, None, f"CSV 格式错误，引号不配对或引号后有多余字符：{exc} "
                                                   f"(malformed CSV: unbalanced quotes)", "malformed")
            prev = reader.line_num
            continue
        start, prev = prev + 1, reader.line_num
        if len(row) != width:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if report is not None:
                report.error(name, start, None, f"有 {len(row)} 个字段，表头有 {width} 个 "
                                                f"(wrong number of fields: {len(row)}, header has {width})", "fields")
            continue
        rows.append(row)
        lines.append(start)
        if len(rows) >= CHUNK_ROWS:
            yield _Chunk(rows, lines)
            rows, lines = [], []
    if rows:
        yield _Chunk(rows, lines)


def _open_table(spec: FileSpec, text: str, report: _Report) -> ParsedTable | None:
    """Read and check the header; None when the file cannot be read as a table at all."""
    name = spec.name
    try:
        header = next(csv.reader(io.StringIO(text, newline=""), strict=True), None)
    except csv.Error as exc:
        report.error(name, 1, None, f"表头 CSV 格式错误：{exc} (malformed header)")
        return None
    if not header or all(not h.strip() for h in header):
        report.error(name, 1, None, "文件为空，缺少表头 (empty file: no header row)")
        return None
    header = [h.strip() for h in header]
    index: dict[str, int] = {}
    extras: list[tuple[str, int]] = []
    for pos, col in enumerate(header):
        if col in index or any(col == e for e, _ in extras):
            report.error(name, 1, col, "表头中列名重复 (duplicate column in header)")
        elif col in spec.column_index:
            index[col] = pos
        elif not col:
            report.warn(name, 1, None, f"表头第 {pos + 1} 列没有列名，该列已忽略 (unnamed column ignored)")
        elif spec.keeps_extra:
            extras.append((col, pos))
            report.warn(name, 1, col, "契约外的列，已保存到 extra 字段 (unknown column kept in extra)")
        else:
            report.warn(name, 1, col, "契约外的列，已忽略 (unknown column ignored)")
    missing = [c for c in spec.required_columns if c not in index]
    for col in missing:
        report.error(name, 1, col, "缺少必需的列 (missing required column)")
    return ParsedTable(spec, text, header, index, extras)


# --- validation ---------------------------------------------------------------------------------


@dataclass
class _Known:
    """Codes the files read so far define, for references from later files (None: do not check)."""

    branches: set[str] | None = None
    products: dict[str, str] | None = None  # code → level (an invalid level is kept as is)
    customers: set[str] | None = None


def _ref_problem(col: Column, value: str, known: _Known) -> tuple[str, str] | None:
    """(message, kind) when `value` does not resolve; None when it does or cannot be checked."""
    if col.ref == "branch":
        if known.branches is None or value in known.branches:
            return None
        return f"未知机构代码 {_q(value)} (unknown branch code)", "ref"
    if col.ref in ("product", "sellable"):
        if known.products is None:
            return None
        level = known.products.get(value)
        if level is None:
            return f"未知产品代码 {_q(value)} (unknown product code)", "ref"
        if col.ref == "sellable" and level != "sellable" and level in _LEVEL_RANK:
            return (f"产品 {value} 是{LEVEL_NAMES[level]} ({level})，业务数据只能对应可售产品 "
                    f"(row for a non-sellable product)", "not_sellable")
        return None
    if col.ref == "customer":
        if known.customers is None or value in known.customers:
            return None
        return f"未知客户号 {_q(value)} (unknown customer id)", "ref"
    return None


def _known_refs(col: Column, known: _Known) -> set[str] | None:
    """The values that pass `col.ref` (fast path); None when the column is not checked."""
    if col.ref == "branch":
        return known.branches
    if col.ref == "customer":
        return known.customers
    if col.ref in ("product", "sellable") and known.products is not None:
        if col.ref == "product":
            return set(known.products)
        return {c for c, lvl in known.products.items() if lvl == "sellable" or lvl not in _LEVEL_RANK}
    return None


def _valid_date(value: str) -> bool:
    if not _DATE_RE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _check_column(values: Sequence[str], col: Column) -> list[tuple[int, str, str]]:
    """Problems in one column of one chunk as (row index, message, kind); fast when all is well."""
    bad: list[tuple[int, str, str]] = []
    may_be_empty = col.may_be_empty
    if not may_be_empty and "" in values:
        bad += [(i, "必填项为空 (required value is empty)", "empty") for i, v in enumerate(values) if not v]
    kind = col.type
    if kind in _NUMBER_RE:
        rx = _NUMBER_RE[kind]
        joined = "\n".join(values) + "\n"
        # The count guards against a quoted cell holding a newline (two "numbers" in one cell).
        if not _NUMBER_COLUMN_RE[kind].fullmatch(joined) or joined.count("\n") != len(values):
            limit = _INT_RANGE.get(kind)
            for i, v in enumerate(values):
                if not v or rx.fullmatch(v):
                    continue
                if limit is None:
                    bad.append((i, f"取值 {_q(v)} 不是数字 (not a number)", "number"))
                elif not re.fullmatch(r"[+-]?\d+", v):
                    bad.append((i, f"取值 {_q(v)} 不是整数 (not an integer)", "number"))
                elif abs(int(v)) > limit:
                    bad.append((i, f"取值 {_q(v)} 超出整数范围 (integer out of range)", "number"))
    elif kind in ("date", "month"):
        check = _valid_date if kind == "date" else _MONTH_RE.fullmatch
        wrong = {v for v in set(values) if v and not check(v)}
        if wrong:
            fmt = " YYYY-MM-DD 格式的日期 (invalid date)" if kind == "date" else " YYYY-MM 格式的月份 (invalid month)"
            bad += [(i, f"取值 {_q(v)} 不是{fmt}", kind) for i, v in enumerate(values) if v in wrong]
    elif kind == "enum":
        wrong = set(values) - set(col.values) - {""}
        if wrong:
            allowed = "|".join(col.values)
            bad += [(i, f"取值 {_q(v)} 不在 {allowed} 之中 (invalid enumeration)", "enum")
                    for i, v in enumerate(values) if v in wrong]
    return bad


def _check_refs(values: Sequence[str], col: Column, known: _Known) -> list[tuple[int, str, str]]:
    ok = _known_refs(col, known)
    if ok is None:
        return []
    if col.type == "list":
        bad: list[tuple[int, str, str]] = []
        for i, cell in enumerate(values):
            for code in _split_list(cell):
                found = _ref_problem(col, code, known)
                if found:
                    bad.append((i, *found))
        return bad
    wrong = set(values) - ok - {""}
    if not wrong:
        return []
    out: list[tuple[int, str, str]] = []
    for i, v in enumerate(values):
        if v in wrong:
            found = _ref_problem(col, v, known)
            if found:
                out.append((i, *found))
    return out


def _scan_table(
    pt: ParsedTable, known: _Known, report: _Report, keep: bool
) -> tuple[list[tuple[int, dict[str, str]]], set[str]]:
    """Check every row of a table; return its rows as (line, {column: value}) when `keep`, and its keys."""
    spec = pt.spec
    name = spec.name
    checked = [(c, pt.index[c.name]) for c in spec.columns if c.name in pt.index]
    key_pos = [pt.index[k] for k in spec.key] if all(k in pt.index for k in spec.key) else []
    seen_keys: set[str] = set()
    duplicates: list[tuple[int, str]] = []
    unique_seen: dict[str, set[str]] = {u: set() for u in spec.unique if u in pt.index}
    kept: list[tuple[int, dict[str, str]]] = []
    for chunk in _chunks(pt, report):
        pt.rows += len(chunk.rows)
        cols = list(zip(*chunk.rows, strict=True))
        lines = chunk.lines
        for col, pos in checked:
            values = cols[pos]
            for i, message, kind in _check_column(values, col) + _check_refs(values, col, known):
                report.error(name, lines[i], col.name, message, kind)
        if key_pos:
            keys: Sequence[str] = cols[key_pos[0]] if len(key_pos) == 1 else list(
                map("\x1f".join, zip(*(cols[p] for p in key_pos), strict=True)))
            if len(set(keys)) != len(keys) or not seen_keys.isdisjoint(keys):
                for i, k in enumerate(keys):
                    if k in seen_keys:
                        duplicates.append((lines[i], k))
                    else:
                        seen_keys.add(k)
            else:
                seen_keys.update(keys)
        for col_name, seen in unique_seen.items():
            for i, v in enumerate(cols[pt.index[col_name]]):
                if v and v in seen:
                    report.error(name, lines[i], col_name, f"取值 {_q(v)} 重复，该列不允许重复 (duplicate value)")
                seen.add(v)
        if keep:
            named = [(c, pt.index[c]) for c in pt.index]
            kept += [(line, {c: row[p] for c, p in named}) for line, row in zip(lines, chunk.rows, strict=True)]
    if duplicates:
        _report_duplicates(pt, key_pos, duplicates, report)
    return kept, seen_keys


def _report_duplicates(pt: ParsedTable, key_pos: list[int], dups: list[tuple[int, str]], report: _Report) -> None:
    # Rare path: one more pass to name the line each duplicate first appeared on.
    wanted = {k for _, k in dups}
    first: dict[str, int] = {}
    for chunk in _chunks(pt, None):
        for line, row in zip(chunk.lines, chunk.rows, strict=True):
            k = "\x1f".join(row[p] for p in key_pos)
            if k in wanted and k not in first:
                first[k] = line
    column = ",".join(pt.spec.key)
    for line, k in dups:
        shown = ", ".join(f"{c}={v}" for c, v in zip(pt.spec.key, k.split("\x1f"), strict=True))
        report.error(pt.spec.name, line, column,
                     f"重复的键 {shown}，与第 {first.get(k, '?')} 行重复 (duplicate key)", "duplicate")


def _check_branches(rows: list[tuple[int, dict[str, str]]], report: _Report, bank: ParsedBank) -> None:
    name = "branches.csv"
    by_code = {r["code"]: (line, r) for line, r in rows if r.get("code")}
    heads = [(line, r["code"]) for line, r in rows if r.get("level") == "head"]
    if not heads:
        report.error(name, None, "level", "没有总行：必须恰有一行 level=head (no head office)")
    for line, code in heads[1:]:
        report.error(name, line, "level", f"多个总行：{code} 与第 {heads[0][0]} 行的 {heads[0][1]} 都是 head，"
                                          f"只能有一个总行 (more than one head office)")
    ok = len(heads) == 1
    for line, r in rows:
        code, parent, level = r.get("code", ""), r.get("parent_code", ""), r.get("level", "")
        if level == "head":
            if parent:
                report.error(name, line, "parent_code", f"总行 {code} 不能有上级机构 (the head office has no parent)")
                ok = False
            continue
        if not parent:
            report.error(name, line, "parent_code", f"机构 {code} 不是总行，必须填写上级机构 "
                                                    f"(parent_code required below the head office)")
            ok = False
            continue
        if parent not in by_code:
            report.error(name, line, "parent_code", f"未知的上级机构代码 {_q(parent)} (unknown parent branch)", "ref")
            ok = False
            continue
        plevel = by_code[parent][1].get("level", "")
        if level in _BRANCH_RANK and plevel in _BRANCH_RANK and _BRANCH_RANK[level] <= _BRANCH_RANK[plevel]:
            report.error(name, line, "level", f"{BRANCH_LEVEL_NAMES[level]} {code} 的上级 {parent} 是"
                                              f"{BRANCH_LEVEL_NAMES[plevel]}：下级机构的层级必须低于上级 "
                                              f"(a child's level must be below its parent's)")
            ok = False
    # Cycles (possible only alongside level errors, but named explicitly).
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in by_code:
        path: list[str] = []
        code = start
        while code in by_code and state.get(code) is None:
            state[code] = 1
            path.append(code)
            code = by_code[code][1].get("parent_code", "")
        if state.get(code) == 1:
            cycle = path[path.index(code):] + [code]
            report.error(name, by_code[code][0], "parent_code",
                         f"上级关系成环：{' → '.join(cycle)} (cycle in the branch tree)")
            ok = False
        for c in path:
            state[c] = 2
    if ok:
        bank.head_office = heads[0][1]
        parents = {c: r.get("parent_code", "") for c, (_, r) in by_code.items()}
        for code in by_code:
            depth, node = 0, code
            while node:
                bank.closure.append((node, code, depth))
                node, depth = parents.get(node, ""), depth + 1


def _check_links(rows: list[tuple[int, dict[str, str]]], report: _Report, bank: ParsedBank,
                 products: dict[str, tuple[int, str]]) -> None:
    name = "product_links.csv"
    levels = bank.product_levels
    subjects = bank.subjects
    down: dict[str, list[str]] = {}
    for line, r in rows:
        src, dst = r.get("from_code", ""), r.get("to_code", "")
        if not src or not dst:
            continue  # reported as empty
        src_level = levels.get(src)
        if src_level is None:
            hint = "，它是核算科目：链接只能从产品出发" if src in subjects else ""
            report.error(name, line, "from_code", f"未知产品代码 {_q(src)}{hint} (unknown product code)", "ref")
            continue
        if src_level not in _LEVEL_RANK:
            down.setdefault(src, []).append(dst)  # its level is reported; do not cascade into warnings
            continue
        src_name = f"{src} 是{LEVEL_NAMES[src_level]} ({src_level})"
        if src_level == "atomic":
            if dst in subjects:
                down.setdefault(src, []).append(dst)
            elif dst in levels:
                report.error(name, line, "to_code", f"{src_name}，只能链接到核算科目；{dst} 是产品 "
                                                    f"(an atomic product links to a subject)")
            else:
                report.error(name, line, "to_code", f"未知的核算科目代码 {_q(dst)} (unknown subject code)", "ref")
            continue
        expected = PRODUCT_LEVELS[_LEVEL_RANK[src_level] + 1]
        dst_level = levels.get(dst)
        if dst_level is None:
            if dst in subjects:
                report.error(name, line, "to_code", f"{src_name}，只有原子产品才能链接到核算科目 {dst}，"
                                                    f"应指向{LEVEL_NAMES[expected]} ({expected}) "
                                                    f"(only atomic products link to subjects)")
            else:
                report.error(name, line, "to_code", f"未知产品代码 {_q(dst)} (unknown product code)", "ref")
            continue
        if dst_level not in _LEVEL_RANK or dst_level == expected:
            down.setdefault(src, []).append(dst)
            continue
        dst_name = f"{dst} 是{LEVEL_NAMES[dst_level]} ({dst_level})"
        if _LEVEL_RANK[dst_level] > _LEVEL_RANK[expected]:
            report.error(name, line, "to_code", f"链接跨越层级：{src_name}，{dst_name}，应指向"
                                                f"{LEVEL_NAMES[expected]} ({expected}) (link skips a level)")
        else:
            report.error(name, line, "to_code", f"链接方向错误：{src_name}，{dst_name}；链接只能指向下一层"
                                                f"{LEVEL_NAMES[expected]} ({expected}) (link must go one level down)")
    # A sellable product should trace down to at least one subject.
    reaches: dict[str, bool] = {}

    def reach(code: str) -> bool:
        if code in subjects and code not in levels:
            return True
        if code not in reaches:
            reaches[code] = False  # levels strictly descend, so no cycles; this only guards bad data
            reaches[code] = any(reach(d) for d in down.get(code, ()))
        return reaches[code]

    for code, (line, level) in products.items():
        if level == "sellable" and not reach(code):
            report.warn("products.csv", line, "code", f"可售产品 {code} 没有向下穿透到核算科目的路径 "
                                                      f"(no path down to a subject)")


def _check_yaml(folder: Path, report: _Report, bank: ParsedBank) -> None:
    path = folder / ALERT_RULES_FILE
    if not path.exists():
        report.warn(ALERT_RULES_FILE, None, None, "可选文件不存在，使用默认预警规则 (optional file absent: default rules)")
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        report.error(ALERT_RULES_FILE, None, None, f"无法读取：{exc} (unreadable)")
        return
    bank.alert_rules_sha256 = hashlib.sha256(data).hexdigest()
    text = _decode(ALERT_RULES_FILE, data, report)
    if text is None:
        return
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc)
        report.error(ALERT_RULES_FILE, line, None, f"YAML 格式错误：{what} (malformed YAML)")
        return
    if not isinstance(parsed, dict | list):
        report.error(ALERT_RULES_FILE, None, None, f"内容必须是映射或列表，而不是 {type(parsed).__name__} "
                                                   f"(must be a mapping or a list)")
        return
    bank.alert_rules = text


def _check_documents(folder: Path, manifest: list[tuple[int, dict[str, str]]] | None, report: _Report,
                     bank: ParsedBank) -> None:
    docs = folder / DOCS_DIR
    if not docs.is_dir():
        report.warn(DOCS_DIR, None, None, "没有 docs/ 文件夹，不登记任何文档 (no docs folder)")
        return
    root = docs.resolve()
    listed: dict[str, tuple[int, dict[str, str]]] = {}
    for line, row in manifest or ():
        rel = row.get("path", "").strip().replace("\\", "/")
        if not rel:
            continue
        target = (docs / rel).resolve()
        if not target.is_relative_to(root) or target == root:
            report.error(MANIFEST_FILE, line, "path", f"路径 {_q(rel)} 不在 docs/ 之内 (path outside docs/)")
        elif not target.is_file():
            report.error(MANIFEST_FILE, line, "path", f"文件 docs/{rel} 不存在 (manifest path does not exist)")
        else:
            listed[target.relative_to(root).as_posix()] = (line, row)
    for path in _doc_files(docs):
        rel = path.relative_to(docs).as_posix()
        shown = f"{DOCS_DIR}/{rel}"
        ext = path.suffix.lower()
        if ext not in DOC_EXTENSIONS:
            report.warn(shown, None, None, f"不支持的文档格式 {ext or '(无扩展名)'}，已跳过 (unsupported document type)")
            continue
        entry = listed.get(rel)
        if manifest is not None and entry is None:
            report.warn(shown, None, None, "文档不在 docs/manifest.csv 中，按所在文件夹确定类型 (document not in the manifest)")
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.warn(shown, None, None, f"无法读取，已跳过：{exc} (unreadable document skipped)")
            continue
        if not data.strip():
            report.warn(shown, None, None, "文档为空，已跳过 (empty document skipped)")
            continue
        if ext in _TEXT_DOCS:
            try:
                data.decode("utf-8-sig")
            except UnicodeDecodeError:
                report.warn(shown, None, None, "不是 UTF-8 文本，无法读取，已跳过 (unreadable document: not UTF-8)")
                continue
        elif not data.startswith(_DOC_MAGIC[ext]):
            report.warn(shown, None, None, f"不是有效的 {ext} 文件，无法读取，已跳过 (unreadable document)")
            continue
        row = entry[1] if entry else {}
        folder_type = rel.split("/", 1)[0] if "/" in rel else ""
        sha = hashlib.sha256(data).hexdigest()
        bank.documents.append(DocumentRecord(
            path=rel,
            title=row.get("title", "").strip() or path.stem,
            doc_type=row.get("doc_type") or (folder_type if folder_type in DOC_FOLDER_TYPES else "other"),
            product_codes=_split_list(row.get("product_codes", "")),
            access=row.get("access") or "internal",
            effective_date=row.get("effective_date") or None,
            sha256=sha,
            bytes=len(data),
            source_path=str(path.resolve()),
        ))


def _doc_files(docs: Path) -> list[Path]:
    """Every file under docs/ but hidden ones (.DS_Store, .git) and the manifest."""
    return sorted(
        p for p in docs.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(docs).parts)
        and p.relative_to(docs).as_posix() != "manifest.csv"
    )


def content_hash(folder: Path) -> str:
    """One hash over every file an import reads (tables, YAML, manifest, documents), cheap to compute
    before validating, so that re-importing an unchanged folder can stop right there."""
    h = hashlib.sha256(_HASH_VERSION.encode())
    paths = [(name, folder / name) for name in (*(f.name for f in FILES), ALERT_RULES_FILE)]
    if (folder / DOCS_DIR).is_dir():
        paths += [(f"{DOCS_DIR}/{p.relative_to(folder / DOCS_DIR).as_posix()}", p)
                  for p in _doc_files(folder / DOCS_DIR)]
    for name, path in paths:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"
        except OSError:
            digest = "unreadable"
        h.update(f"\n{name}\t{digest}".encode())
    return h.hexdigest()


def validate_folder(
    folder: Path, progress: Callable[[str], None] | None = None
) -> tuple[ParsedBank, list[Problem], list[Problem]]:
    """Check a bank folder against the contract; return what was parsed, the errors and the warnings.

    Every problem is collected (file, physical line, column, message); nothing touches the database.
    """
    with _gc_paused():
        return _validate(Path(folder).expanduser(), progress or (lambda _msg: None))


def _validate(
    folder: Path, say: Callable[[str], None], digest: str | None = None
) -> tuple[ParsedBank, list[Problem], list[Problem]]:
    bank = ParsedBank(folder=folder.resolve() if folder.exists() else folder)
    report = _Report()
    if not folder.exists():
        report.error(str(folder), None, None, "目录不存在 (folder does not exist)")
        return bank, report.errors, report.warnings
    if not folder.is_dir():
        report.error(str(folder), None, None, "不是目录 (not a folder)")
        return bank, report.errors, report.warnings
    folder = bank.folder

    known = _Known()
    kept: dict[str, list[tuple[int, dict[str, str]]]] = {}
    keep_rows = {"branches.csv", "products.csv", "product_links.csv", "docs/manifest.csv"}
    for spec in FILES:
        path = folder / spec.name
        if not path.is_file():
            if spec.required:
                report.error(spec.name, None, None, "缺少必需的文件 (required file missing)")
            elif spec.name != MANIFEST_FILE or (folder / DOCS_DIR).is_dir():
                report.warn(spec.name, None, None, "可选文件不存在 (optional file absent)")
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.error(spec.name, None, None, f"无法读取：{exc} (unreadable file)")
            continue
        text = _decode(spec.name, data, report)
        pt = _open_table(spec, text, report) if text is not None else None
        if pt is None:
            continue
        bank.tables[spec.name] = pt
        rows, keys = _scan_table(pt, known, report, keep=spec.name in keep_rows)
        kept[spec.name] = rows
        say(f"校验 {spec.name}：{pt.rows:,} 行")
        # What this file defines for the files after it (keys are single columns here).
        if spec.name == "branches.csv" and "code" in pt.index:
            known.branches = keys
        elif spec.name == "products.csv" and "code" in pt.index:
            known.products = {r["code"]: r.get("level", "") for _, r in rows}
            bank.product_levels = known.products
        elif spec.name == "subjects.csv" and "code" in pt.index:
            bank.subjects = keys
        elif spec.name == "customers.csv" and "customer_id" in pt.index:
            known.customers = keys

    if "branches.csv" in kept:
        _check_branches(kept["branches.csv"], report, bank)
    if "product_links.csv" in kept and "products.csv" in kept and "subjects.csv" in bank.tables:
        products = {r["code"]: (line, r.get("level", "")) for line, r in kept["products.csv"] if r.get("code")}
        _check_links(kept["product_links.csv"], report, bank, products)
    _check_yaml(folder, report, bank)
    _check_documents(folder, kept.get(MANIFEST_FILE) if MANIFEST_FILE in bank.tables else None, report, bank)
    say(f"校验文档：{len(bank.documents)} 个")
    bank.content_hash = digest or content_hash(folder)
    report.finish()
    return bank, report.errors, report.warnings


# --- loading ------------------------------------------------------------------------------------


def _column_values(col: Column, values: Sequence[str] | None, n: int) -> Any:
    """One chunk's cells of a column as COPY wants them (None = NULL), column-wise for speed."""
    if values is None:  # an optional column the file leaves out
        if col.type == "list":
            return repeat([], n)
        return repeat("" if col.type == "text" and not col.nullable else None, n)
    if col.type == "month":
        return [f"{v}-01" for v in values]
    if col.type == "list":
        return [_split_list(v) for v in values]
    if not col.may_be_empty or (col.type == "text" and not col.nullable):
        return values
    return [v or None for v in values]


def _copy_table(cur: psycopg.Cursor[Any], pt: ParsedTable, bank: ParsedBank) -> int:
    spec = pt.spec
    assert spec.table is not None
    names = [c.name for c in spec.columns]
    if spec.table == "product_links":
        names.append("to_subject")
    if pt.extras:
        names.append("extra")
    n_rows = 0
    with cur.copy(f"COPY {spec.table} ({', '.join(names)}) FROM STDIN") as copy:
        for chunk in _chunks(pt, None):
            n = len(chunk.rows)
            cols = list(zip(*chunk.rows, strict=True))
            out = [_column_values(c, cols[pt.index[c.name]] if c.name in pt.index else None, n)
                   for c in spec.columns]
            if spec.table == "product_links":
                # An atomic product's target is a subject; validation made sure of the rest.
                levels = bank.product_levels
                out.append([levels.get(f) == "atomic" for f in cols[pt.index["from_code"]]])
            if pt.extras:
                out.append([
                    json.dumps({k: row[p] for k, p in pt.extras if row[p]}, ensure_ascii=False)
                    for row in chunk.rows
                ])
            for row in zip(*out, strict=True):
                copy.write_row(row)
            n_rows += n
    return n_rows


def _load(conn: psycopg.Connection[Any], bank: ParsedBank, say: Callable[[str], None]) -> dict[str, int]:
    counts = bank.counts()
    with conn.cursor() as cur:
        # DELETE, not TRUNCATE: readers keep seeing the old bank until this transaction commits.
        for table in BANK_TABLES:
            cur.execute(f"DELETE FROM {table}")
        for spec in FILES:
            pt = bank.tables.get(spec.name)
            if spec.table is None or pt is None:
                continue
            try:
                counts[spec.table] = _copy_table(cur, pt, bank)
            except psycopg.Error as exc:
                exc.puyi_file = spec.name  # type: ignore[attr-defined]  # names the file in the report
                raise
            say(f"加载 {spec.table}：{counts[spec.table]:,} 行")
        with cur.copy("COPY branch_closure (ancestor, descendant, depth) FROM STDIN") as copy:
            for row in bank.closure:
                copy.write_row(row)
        with cur.copy(
            "COPY documents (path, title, doc_type, product_codes, access, effective_date, sha256, bytes, "
            "source_path) FROM STDIN"
        ) as copy:
            for d in bank.documents:
                copy.write_row((d.path, d.title, d.doc_type, d.product_codes, d.access, d.effective_date,
                                d.sha256, d.bytes, d.source_path))
        say(f"登记文档：{len(bank.documents)} 个")
        # Fresh planner statistics, so the first questions after an import get good plans
        # (autovacuum would catch up only a minute or so later).
        cur.execute("ANALYZE " + ", ".join(BANK_TABLES))
        rolled = refresh_rollups(conn)
        say(f"汇总指标：{rolled:,} 行 (roll-ups over branch subtrees)")
        if bank.alert_rules is not None:
            cur.execute(
                "INSERT INTO bank_files (name, content, sha256) VALUES (%(name)s, %(content)s, %(sha)s)",
                {"name": ALERT_RULES_FILE, "content": bank.alert_rules, "sha": bank.alert_rules_sha256},
            )
    return counts


def _latest_import(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT head_office, content_hash, counts, warnings FROM imports ORDER BY id DESC LIMIT 1"
    ).fetchone()


def _current_head_office(conn: psycopg.Connection[Any]) -> str | None:
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute("SELECT code FROM branches WHERE level = 'head' ORDER BY code LIMIT 1").fetchone()
    return None if row is None else str(row["code"])


def import_folder(
    db: Database, folder: Path, replace: bool = False, progress: Callable[[str], None] | None = None
) -> ImportResult:
    """Validate `folder` completely, then load it in one transaction (or raise ImportFailed)."""
    with _gc_paused():
        return _import(db, Path(folder).expanduser(), replace, progress or (lambda _msg: None))


def _import(db: Database, folder: Path, replace: bool, say: Callable[[str], None]) -> ImportResult:
    started = time.perf_counter()
    digest = None
    if folder.is_dir():
        # The same content as the bank loaded now (the latest import): touch nothing, skip validation.
        digest = content_hash(folder)
        with db.connection() as conn:
            latest = _latest_import(conn)
        if latest is not None and latest["content_hash"] == digest:
            say("数据与上次导入相同，未做任何改动 (unchanged)")
            return ImportResult(
                "unchanged", dict(latest["counts"]), [Problem(**w) for w in latest["warnings"]],
                time.perf_counter() - started, latest["head_office"],
            )
    bank, errors, warnings = _validate(folder, say, digest)
    if errors:
        raise ImportFailed(errors)
    assert bank.head_office is not None
    try:
        with db.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%(k)s)", {"k": _IMPORT_LOCK})
            latest = _latest_import(conn)
            if latest is not None and latest["content_hash"] == bank.content_hash:  # loaded meanwhile
                say("数据与上次导入相同，未做任何改动 (unchanged)")
                return ImportResult("unchanged", bank.counts(), warnings, time.perf_counter() - started,
                                    bank.head_office)
            current = _current_head_office(conn)
            replaced = current is not None and current != bank.head_office
            if replaced and not replace:
                raise ImportFailed([Problem(
                    "branches.csv", None, "code",
                    f"库中已有另一家银行的数据（总行 {current}），本目录的总行是 {bank.head_office}；"
                    f"如确要用本目录替换，请使用 --replace (a different bank is loaded; use --replace to swap it)",
                )])
            if replaced:
                # Another bank's alerts: its products and months could collide with this bank's and
                # pass for events already raised (and pushed).
                conn.execute("DELETE FROM alert_dispositions")
                conn.execute("DELETE FROM alert_events")
                conn.execute("DELETE FROM alert_runs")
            counts = _load(conn, bank, say)
            seconds = time.perf_counter() - started
            conn.execute(
                "INSERT INTO imports (folder, head_office, content_hash, replaced, counts, warnings, seconds)"
                " VALUES (%(folder)s, %(head)s, %(hash)s, %(replaced)s, %(counts)s, %(warnings)s, %(seconds)s)",
                {
                    "folder": str(bank.folder), "head": bank.head_office, "hash": bank.content_hash,
                    "replaced": replaced, "counts": json.dumps(counts),
                    "warnings": json.dumps([w.as_dict() for w in warnings], ensure_ascii=False),
                    "seconds": seconds,
                },
            )
    except psycopg.Error as exc:
        raise ImportFailed([Problem(
            getattr(exc, "puyi_file", str(bank.folder)), None, None,
            f"数据库拒绝了数据，已整体回滚，未加载任何数据：{exc} (database error during load; rolled back)",
        )]) from exc
    return ImportResult("loaded", counts, warnings, time.perf_counter() - started, bank.head_office)
