"""Catalogue tools: find products, read their elements, trace the penetration, list and count.

Each tool is a plain function taking a `ToolContext` first; its docstring is its description.
The in-memory `CatalogIndex` serves name linking (a few thousand names at most), reloaded when
`catalog_version` moves; everything else is read with SQL at call time.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from rapidfuzz import fuzz, process

from core.access import branch_in_scope
from core.text import normalize, pinyin_key
from tools.context import ToolContext

LEVELS = ("sellable", "cluster", "base", "atomic")
LEVEL_NAMES = {"sellable": "可售产品", "cluster": "聚类产品", "base": "基础产品", "atomic": "原子产品", "subject": "核算科目"}
CATEGORY_NAMES = {"deposit": "存款", "loan": "贷款", "payment": "支付结算", "intermediary": "中间业务", "market": "金融市场"}
SEGMENT_NAMES = {"retail": "零售", "corporate": "对公", "inclusive": "普惠小微", "interbank": "同业", "all": "全客群"}
STATUS_NAMES = {
    "designing": "创设", "admission": "准入", "building": "建设",
    "operating": "运营", "suspended": "停牌", "retired": "退出",
}
ELEMENT_NAMES = {
    "rate_min": "最低利率", "rate_max": "最高利率", "term_min_months": "最短期限", "term_max_months": "最长期限",
    "amount_min": "最低金额", "amount_max": "最高金额", "repayment": "还款方式", "collateral": "担保方式",
    "target_customers": "目标客群", "eligibility": "准入条件", "channels": "办理渠道", "fee": "费用",
    "risk_level": "风险等级", "early_repayment": "提前还款", "min_amount": "起存/起购金额",
}

# A candidate this close to the best one makes the answer ambiguous: ask, do not guess.
_AMBIGUITY_MARGIN = 6.0
_MIN_FUZZY = 72.0
_CODE_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*[A-Za-z0-9]|[A-Za-z0-9]")


@dataclass(frozen=True)
class Candidate:
    code: str
    name: str
    level: str
    status: str
    score: float
    matched: str  # the surface (name, alias or code) that matched
    how: str  # code | source_code | name | alias | partial | fuzzy | pinyin

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code, "name": self.name, "level": self.level, "status": self.status,
            "score": round(self.score, 1), "matched": self.matched, "how": self.how,
        }


@dataclass
class Mentions:
    """What a question names: products, subjects, source-system codes, and left-over text."""

    products: list[Candidate] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    source_codes: list[tuple[str, str, str]] = field(default_factory=list)  # (system, source, product)
    unknown_codes: list[str] = field(default_factory=list)  # code-like tokens that match nothing
    residual: str = ""


@dataclass
class CatalogIndex:
    version: int
    products: dict[str, dict[str, Any]]
    subjects: dict[str, str]
    source_codes: dict[str, list[tuple[str, str, str]]]  # normalised source code → entries
    surfaces: list[tuple[str, str, str]]  # (normalised surface, product code, kind)
    _choices: list[str] = field(default_factory=list)
    _pinyin: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, conn: psycopg.Connection[Any], version: int) -> CatalogIndex:
        rows = conn.execute(
            "SELECT code, name, level, category, segment, status, aliases FROM products"
        ).fetchall()
        products = {r["code"]: dict(r) for r in rows}
        subjects = {r["code"]: r["name"] for r in conn.execute("SELECT code, name FROM subjects")}
        source_codes: dict[str, list[tuple[str, str, str]]] = {}
        for r in conn.execute("SELECT system, source_code, product_code FROM system_codes"):
            source_codes.setdefault(normalize(r["source_code"]), []).append(
                (r["system"], r["source_code"], r["product_code"])
            )
        surfaces: list[tuple[str, str, str]] = []
        for p in rows:
            surfaces.append((normalize(p["name"]), p["code"], "name"))
            surfaces.extend((normalize(a), p["code"], "alias") for a in p["aliases"] or () if a.strip())
        index = cls(version, products, subjects, source_codes, surfaces)
        index._choices = [s for s, _, _ in surfaces]
        return index

    @property
    def pinyin_choices(self) -> list[str]:
        # Built on the first loose lookup: loading pypinyin costs a few hundred ms.
        if not self._pinyin:
            self._pinyin = [pinyin_key(s) for s in self._choices]
        return self._pinyin

    # --- resolution -------------------------------------------------------------------------

    def candidate(self, code: str, score: float, matched: str, how: str) -> Candidate:
        p = self.products[code]
        return Candidate(code, p["name"], p["level"], p["status"], score, matched, how)

    def by_code(self, token: str) -> str | None:
        up = token.strip().upper()
        if up in self.products:
            return up
        return token if token in self.products else None

    def resolve(self, query: str, limit: int = 5, level: str | None = None) -> list[Candidate]:
        """Best candidates for a product reference, best first; several only when it is ambiguous."""
        q = normalize(query)
        if not q:
            return []
        code = self.by_code(query)
        if code:
            return [self.candidate(code, 100, code, "code")]
        if q in self.source_codes:
            return self._dedupe(
                [self.candidate(pc, 100, src, "source_code") for _, src, pc in self.source_codes[q] if pc in self.products]
            )
        exact = [self.candidate(c, 100, s, kind) for s, c, kind in self.surfaces if s == q]
        if exact:
            return self._dedupe(exact)[:limit]
        # A partial name ("快贷"): every product whose name or alias contains it is a candidate.
        if len(q) >= 2:
            partial = [
                self.candidate(c, 90 + 10 * len(q) / len(s), s, "partial")
                for s, c, _ in self.surfaces if q in s and (level is None or self.products[c]["level"] == level)
            ]
            if partial:
                return self._narrow(self._dedupe(partial), limit)
        return self._narrow(self._fuzzy(q, limit * 2), limit)

    def _fuzzy(self, q: str, limit: int) -> list[Candidate]:
        found: list[Candidate] = []
        for choice, score, i in process.extract(q, self._choices, scorer=fuzz.ratio, limit=limit):
            if score >= _MIN_FUZZY - 10:
                _, code, _ = self.surfaces[i]
                found.append(self.candidate(code, score, choice, "fuzzy"))
        # Homophones typed through a pinyin input method: 尊想贷 → 尊享贷.
        qp = pinyin_key(q)
        for _, score, i in process.extract(qp, self.pinyin_choices, scorer=fuzz.ratio, limit=limit):
            if score >= 92:
                surface, code, _ = self.surfaces[i]
                found.append(self.candidate(code, min(99.0, score - 1), surface, "pinyin"))
        return [c for c in self._dedupe(found) if c.score >= _MIN_FUZZY]

    @staticmethod
    def _dedupe(cands: list[Candidate]) -> list[Candidate]:
        best: dict[str, Candidate] = {}
        for c in cands:
            if c.code not in best or c.score > best[c.code].score:
                best[c.code] = c
        return sorted(best.values(), key=lambda c: (-c.score, c.level != "sellable", c.code))

    @staticmethod
    def _narrow(cands: list[Candidate], limit: int) -> list[Candidate]:
        """Keep the clear winner alone, or every candidate close to the best one."""
        if not cands:
            return []
        top = cands[0].score
        close = [c for c in cands if top - c.score < _AMBIGUITY_MARGIN]
        return close[:limit] if len(close) > 1 else cands[:1]

    # --- linking inside a question ---------------------------------------------------------

    def mentions(self, question: str) -> Mentions:
        """Products, subjects and source-system codes named in a question (longest names win)."""
        q = normalize(question)
        found = Mentions()
        spans: list[tuple[int, int]] = []
        for token in _CODE_TOKEN_RE.findall(question):
            code = self.by_code(token)
            if code:
                found.products.append(self.candidate(code, 100, token, "code"))
            elif token in self.subjects:
                found.subjects.append(token)
            elif normalize(token) in self.source_codes:
                found.source_codes.extend(self.source_codes[normalize(token)])
            else:
                if len(token) >= 4 and any(ch.isdigit() for ch in token):
                    found.unknown_codes.append(token)
                continue
            start = q.find(normalize(token))
            if start >= 0:
                spans.append((start, start + len(token)))
        hits: list[tuple[int, int, str, str, str]] = []
        spaced = unicodedata.normalize("NFKC", question).lower()
        for surface, code, kind in self.surfaces:
            if len(surface) < 2:
                continue
            # A Latin name (POS, ETC) is a whole word, not letters inside another (dePOSit): checked
            # on the text with its spaces, which normalize() drops.
            if surface.isascii() and surface.isalnum() and not re.search(
                    rf"(?<![a-z0-9]){re.escape(surface)}(?![a-z0-9])", spaced):
                continue
            start = q.find(surface)
            while start >= 0:
                hits.append((start, start + len(surface), surface, code, kind))
                start = q.find(surface, start + 1)
        # Longest first, so 尊享贷(公务员版) wins over the 尊享贷 inside it; equal spans stay (ambiguity).
        hits.sort(key=lambda h: (-(h[1] - h[0]), h[0]))
        taken: list[tuple[int, int, str]] = []
        for start, end, surface, code, kind in hits:
            if any(s < end and start < e and (s, e, surface) != (start, end, surface) for s, e, _ in taken):
                continue
            taken.append((start, end, surface))
            found.products.append(self.candidate(code, 100, surface, kind))
        spans.extend((s, e) for s, e, _ in taken)
        found.products = self._dedupe(found.products)
        found.residual = _cut(q, spans)
        return found


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    keep = [True] * len(text)
    for s, e in spans:
        for i in range(max(0, s), min(len(text), e)):
            keep[i] = False
    return "".join(ch if k else " " for ch, k in zip(text, keep, strict=True))


_cache_lock = threading.Lock()
_cache: dict[str, CatalogIndex] = {}


def catalog_index(conn: psycopg.Connection[Any]) -> CatalogIndex:
    """The name index for this database, reloaded only when the catalogue changed."""
    row = conn.execute("SELECT version FROM catalog_version WHERE id = 1").fetchone()
    version = int(row["version"]) if row else 0
    key = conn.info.dsn
    index = _cache.get(key)
    if index is None or index.version != version:
        with _cache_lock:
            index = CatalogIndex.load(conn, version)
            _cache[key] = index
    return index


# --- tools -----------------------------------------------------------------------------------


def find_product(ctx: ToolContext, query: str, limit: int = 5, level: str | None = None) -> dict[str, Any]:
    """按产品编码、系统代码、名称、别名或模糊说法（错别字、简称）查找产品；有歧义时返回候选清单供选择。"""
    index = catalog_index(ctx.conn)
    cands = index.resolve(query, limit=max(1, min(limit, 50)), level=level)
    status = "not_found" if not cands else "found" if len(cands) == 1 else "ambiguous"
    return {"query": query, "status": status, "candidates": [c.as_dict() for c in cands]}


def get_product(ctx: ToolContext, code: str) -> dict[str, Any]:
    """产品详情：基本信息、全部产品要素、上下级关联、系统代码，以及提问人可见范围内最新月的余额与客户数。"""
    conn = ctx.conn
    product = conn.execute(
        "SELECT code, name, level, category, segment, status, owner_dept, launch_date, retire_date,"
        " aliases, description FROM products WHERE code = %(c)s",
        {"c": code},
    ).fetchone()
    if product is None:
        return {"code": code, "error": "not_found"}
    elements = conn.execute(
        "SELECT element, value, unit FROM product_elements WHERE product_code = %(c)s ORDER BY element",
        {"c": code},
    ).fetchall()
    parents = conn.execute(
        "SELECT p.code, p.name, p.level FROM product_links l JOIN products p ON p.code = l.from_code"
        " WHERE l.to_code = %(c)s ORDER BY p.code",
        {"c": code},
    ).fetchall()
    children = conn.execute(
        "SELECT l.to_code AS code, coalesce(p.name, s.name) AS name,"
        " CASE WHEN l.to_subject THEN 'subject' ELSE p.level END AS level"
        " FROM product_links l LEFT JOIN products p ON p.code = l.to_code"
        " LEFT JOIN subjects s ON l.to_subject AND s.code = l.to_code"
        " WHERE l.from_code = %(c)s ORDER BY l.to_code",
        {"c": code},
    ).fetchall()
    systems = conn.execute(
        "SELECT system, source_code FROM system_codes WHERE product_code = %(c)s ORDER BY system, source_code",
        {"c": code},
    ).fetchall()
    result: dict[str, Any] = {
        **_jsonable(product),
        "elements": [dict(e) for e in elements],
        "parents": [dict(p) for p in parents],
        "children": [dict(c) for c in children],
        "system_codes": [dict(s) for s in systems],
    }
    if product["level"] == "sellable":
        result["business"] = _scoped_business(ctx, code)
    return result


def _scoped_business(ctx: ToolContext, code: str) -> dict[str, Any] | None:
    """Latest-month balance and customers inside the asker's branch scope (in the SQL)."""
    row = ctx.conn.execute(
        "SELECT to_char(m.month, 'YYYY-MM') AS month, sum(m.balance) AS balance,"
        " sum(m.customers) AS customers, count(DISTINCT m.branch_code) AS branches"
        " FROM metrics_monthly m"
        " WHERE m.product_code = %(c)s"
        "   AND m.month = (SELECT max(month) FROM metrics_monthly WHERE product_code = %(c)s)"
        "   AND " + branch_in_scope("m.branch_code") +
        " GROUP BY m.month",
        {"c": code, "scope": ctx.principal.scope_branch},
    ).fetchone()
    if row is None:
        return None
    return {**_jsonable(row), "scope": ctx.principal.scope_label}


_TRACE_DOWN = """
WITH RECURSIVE walk(code, depth, path) AS (
    SELECT %(c)s::text, 0, ARRAY[%(c)s::text]
    UNION ALL
    SELECT l.to_code, w.depth + 1, w.path || l.to_code
    FROM walk w JOIN product_links l ON l.from_code = w.code
    WHERE w.depth < 5 AND NOT l.to_code = ANY(w.path)
)
SELECT path FROM walk w
WHERE NOT EXISTS (SELECT 1 FROM product_links l WHERE l.from_code = w.code)
ORDER BY path
"""

_TRACE_UP = """
WITH RECURSIVE walk(code, depth, path) AS (
    SELECT %(c)s::text, 0, ARRAY[%(c)s::text]
    UNION ALL
    SELECT l.from_code, w.depth + 1, l.from_code || w.path
    FROM walk w JOIN product_links l ON l.to_code = w.code
    WHERE w.depth < 5 AND NOT l.from_code = ANY(w.path)
)
SELECT path FROM walk w
WHERE NOT EXISTS (SELECT 1 FROM product_links l WHERE l.to_code = w.code)
ORDER BY path
"""


def _describe(conn: psycopg.Connection[Any], codes: set[str]) -> dict[str, dict[str, str]]:
    if not codes:
        return {}
    names: dict[str, dict[str, str]] = {}
    for r in conn.execute(
        "SELECT code, name, level FROM products WHERE code = ANY(%(c)s)", {"c": list(codes)}
    ):
        names[r["code"]] = {"name": r["name"], "level": r["level"]}
    for r in conn.execute("SELECT code, name FROM subjects WHERE code = ANY(%(c)s)", {"c": list(codes)}):
        names.setdefault(r["code"], {"name": r["name"], "level": "subject"})
    return names


def trace_down(ctx: ToolContext, code: str) -> dict[str, Any]:
    """穿透：从一个产品向下逐层追溯到聚类、基础、原子产品和核算科目，返回全部路径（捆绑产品有多条）。"""
    paths = [r["path"] for r in ctx.conn.execute(_TRACE_DOWN, {"c": code})]
    names = _describe(ctx.conn, {c for p in paths for c in p})
    if code not in names:
        return {"code": code, "error": "not_found"}
    subjects = sorted({p[-1] for p in paths if names.get(p[-1], {}).get("level") == "subject"})
    complete = bool(paths) and all(names.get(p[-1], {}).get("level") == "subject" for p in paths)
    return {
        "code": code, "name": names[code]["name"], "level": names[code]["level"],
        "paths": [[{"code": c, **names.get(c, {"name": "?", "level": "?"})} for c in p] for p in paths],
        "subjects": [{"code": s, "name": names[s]["name"]} for s in subjects],
        "complete": complete,
    }


def trace_up(ctx: ToolContext, code: str) -> dict[str, Any]:
    """反向穿透：从核算科目或任一层级的产品向上追溯到使用它的可售产品，返回全部路径。"""
    paths = [r["path"] for r in ctx.conn.execute(_TRACE_UP, {"c": code})]
    names = _describe(ctx.conn, {c for p in paths for c in p})
    if code not in names:
        return {"code": code, "error": "not_found"}
    sellable = sorted({p[0] for p in paths if names.get(p[0], {}).get("level") == "sellable"})
    return {
        "code": code, "name": names[code]["name"], "level": names[code]["level"],
        "paths": [[{"code": c, **names.get(c, {"name": "?", "level": "?"})} for c in p] for p in paths if len(p) > 1],
        "sellable": [{"code": s, "name": names[s]["name"]} for s in sellable],
    }


def map_source_code(ctx: ToolContext, source_code: str, system: str | None = None) -> dict[str, Any]:
    """把源系统（核心、信贷、理财等）的产品代码映射到产品目录中的产品。"""
    rows = ctx.conn.execute(
        "SELECT s.system, s.source_code, p.code, p.name, p.level, p.status"
        " FROM system_codes s JOIN products p ON p.code = s.product_code"
        " WHERE upper(s.source_code) = upper(%(s)s) AND (%(sys)s::text IS NULL OR s.system = %(sys)s)"
        " ORDER BY s.system",
        {"s": source_code.strip(), "sys": system},
    ).fetchall()
    return {"source_code": source_code, "system": system, "matches": [dict(r) for r in rows]}


def list_products(
    ctx: ToolContext,
    category: str | None = None,
    segment: str | None = None,
    level: str | None = "sellable",
    status: str | None = None,
    limit: int = 30,
) -> dict[str, Any]:
    """按大类、客群、层级和生命周期状态筛选产品，返回总数、分布和前若干个产品。"""
    params = {"cat": category, "seg": segment, "lvl": level, "st": status, "limit": max(1, min(limit, 500))}
    where = (
        " WHERE (%(cat)s::text IS NULL OR category = %(cat)s) AND (%(seg)s::text IS NULL OR segment = %(seg)s)"
        " AND (%(lvl)s::text IS NULL OR level = %(lvl)s) AND (%(st)s::text IS NULL OR status = %(st)s)"
    )
    total_row = ctx.conn.execute("SELECT count(*) AS n FROM products" + where, params).fetchone()
    items = ctx.conn.execute(
        "SELECT code, name, level, category, segment, status FROM products" + where
        + " ORDER BY code LIMIT %(limit)s",
        params,
    ).fetchall()
    return {
        "filters": {"category": category, "segment": segment, "level": level, "status": status},
        "total": int(total_row["n"]) if total_row else 0,
        "items": [dict(i) for i in items],
        "by_status": count_products(ctx, "status", category, segment, level, status)["groups"],
    }


_GROUPABLE = ("category", "segment", "level", "status", "owner_dept")


def count_products(
    ctx: ToolContext,
    group_by: str = "category",
    category: str | None = None,
    segment: str | None = None,
    level: str | None = "sellable",
    status: str | None = None,
) -> dict[str, Any]:
    """按大类、客群、层级、状态或主管部门统计产品数量（可叠加筛选条件）。"""
    if group_by not in _GROUPABLE:
        raise ValueError(f"group_by must be one of {_GROUPABLE}")
    rows = ctx.conn.execute(
        f"SELECT {group_by} AS key, count(*) AS n FROM products"  # group_by is from the fixed list above
        " WHERE (%(cat)s::text IS NULL OR category = %(cat)s) AND (%(seg)s::text IS NULL OR segment = %(seg)s)"
        " AND (%(lvl)s::text IS NULL OR level = %(lvl)s) AND (%(st)s::text IS NULL OR status = %(st)s)"
        " GROUP BY 1 ORDER BY 2 DESC, 1",
        {"cat": category, "seg": segment, "lvl": level, "st": status},
    ).fetchall()
    groups = [{"key": r["key"], "count": int(r["n"])} for r in rows]
    return {
        "group_by": group_by,
        "filters": {"category": category, "segment": segment, "level": level, "status": status},
        "groups": groups,
        "total": sum(g["count"] for g in groups),
    }


def _jsonable(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in dict(row).items():
        if hasattr(v, "isoformat"):
            out[k] = v.isoformat()
        elif isinstance(v, Decimal):
            out[k] = float(v)
        else:
            out[k] = v
    return out


CATALOG_TOOLS = (find_product, get_product, trace_down, trace_up, map_source_code, list_products, count_products)
