"""Hybrid search: pgvector HNSW and jieba full text, fused by reciprocal rank in one SQL statement.

Every filter — access level, document type, product, effective date — is part of the WHERE of
both branches, so a chunk a person may not see is never even ranked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import psycopg

from retrieval.embedders import Embedder
from retrieval.store import vector_literal
from retrieval.tokenize import ChineseTokenizer

Mode = Literal["hybrid", "vector", "keyword"]

# Reciprocal rank fusion constant; 60 is the value from Cormack et al. and works well untuned.
RRF_K = 60

_FILTERS = """
      access = ANY(%(access)s)
  AND (%(doc_types)s::text[] IS NULL OR doc_type = ANY(%(doc_types)s))
  AND (%(products)s::text[] IS NULL OR product_codes && %(products)s)
  AND (effective_date IS NULL OR effective_date <= %(as_of)s)
"""

_VECTOR = f"""
SELECT id, embedding::vector(%(dim)s) <=> %(qvec)s::vector(%(dim)s) AS distance
FROM kb_chunks
WHERE {_FILTERS}
ORDER BY embedding::vector(%(dim)s) <=> %(qvec)s::vector(%(dim)s)
LIMIT %(pool)s
"""

_KEYWORD = f"""
SELECT id, ts_rank_cd(tokens, q, 1) AS rank
FROM kb_chunks, to_tsquery('simple', %(tsq)s) AS q
WHERE tokens @@ q AND {_FILTERS}
ORDER BY rank DESC, id
LIMIT %(pool)s
"""

_COLUMNS = "c.id, c.doc_path, c.title, c.doc_type, c.heading_path, c.page, c.kind, c.text, c.product_codes, c.access"

_HYBRID = f"""
WITH vec AS (
    SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS r FROM ({_VECTOR}) v
), kw AS (
    SELECT id, rank, row_number() OVER (ORDER BY rank DESC, id) AS r FROM ({_KEYWORD}) k
)
SELECT {_COLUMNS}, vec.distance, kw.rank AS keyword_rank, vec.r AS vector_pos, kw.r AS keyword_pos,
       coalesce(1.0 / ({RRF_K} + vec.r), 0) + coalesce(1.0 / ({RRF_K} + kw.r), 0) AS score
FROM vec FULL JOIN kw USING (id) JOIN kb_chunks c ON c.id = coalesce(vec.id, kw.id)
ORDER BY score DESC, c.id
LIMIT %(k)s
"""

_VECTOR_ONLY = f"""
SELECT {_COLUMNS}, v.distance, NULL::real AS keyword_rank, 1 - v.distance AS score
FROM ({_VECTOR}) v JOIN kb_chunks c USING (id)
ORDER BY v.distance, c.id
LIMIT %(k)s
"""

_KEYWORD_ONLY = f"""
SELECT {_COLUMNS}, NULL::double precision AS distance, k.rank AS keyword_rank, k.rank AS score
FROM ({_KEYWORD}) k JOIN kb_chunks c USING (id)
ORDER BY k.rank DESC, c.id
LIMIT %(k)s
"""


@dataclass
class Hit:
    id: int
    doc_path: str
    title: str
    doc_type: str
    heading_path: list[str]
    page: int | None
    kind: str
    text: str
    product_codes: list[str]
    access: str
    score: float
    distance: float | None = None  # cosine distance of the vector branch, when it ranked this chunk
    keyword_rank: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def similarity(self) -> float | None:
        return None if self.distance is None else 1.0 - self.distance


@dataclass
class SearchFilters:
    access: tuple[str, ...]
    doc_types: list[str] | None = None
    products: list[str] | None = None
    as_of: date | None = None


class Retriever:
    """Search over `kb_chunks` with one embedder and one tokenizer, built once per process."""

    def __init__(self, embedder: Embedder, tokenizer: ChineseTokenizer, pool: int = 40) -> None:
        self.embedder = embedder
        self.tokenizer = tokenizer
        self.pool = pool  # candidates each branch contributes before fusion

    def search(
        self,
        conn: psycopg.Connection[Any],
        query: str,
        filters: SearchFilters,
        k: int = 5,
        mode: Mode = "hybrid",
    ) -> list[Hit]:
        tsq = self.tokenizer.query(query)
        mode_params: dict[str, Any]
        if mode == "keyword" or (mode == "hybrid" and not tsq):
            if not tsq:
                return []
            sql, mode_params = _KEYWORD_ONLY, {"tsq": tsq}
        else:
            qvec = vector_literal(self.embedder.embed_query(query))
            mode_params = {"qvec": qvec, "tsq": tsq}
            # A type modifier cannot be a parameter; the dimension is the embedder's own integer.
            sql = (_HYBRID if mode == "hybrid" else _VECTOR_ONLY).replace("%(dim)s", str(int(self.embedder.dim)))
        params = {
            "access": list(filters.access),
            "doc_types": filters.doc_types,
            "products": filters.products,
            "as_of": filters.as_of or date.today(),
            "pool": max(self.pool, k),
            "k": k,
            **mode_params,
        }
        # Iterative HNSW scans keep returning neighbours until the filters are satisfied.
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        conn.execute("SET hnsw.ef_search = 80")
        rows = conn.execute(sql, params).fetchall()
        return [
            Hit(
                id=r["id"], doc_path=r["doc_path"], title=r["title"], doc_type=r["doc_type"],
                heading_path=list(r["heading_path"] or []), page=r["page"], kind=r["kind"], text=r["text"],
                product_codes=list(r["product_codes"] or []), access=r["access"], score=float(r["score"]),
                distance=None if r["distance"] is None else float(r["distance"]),
                keyword_rank=None if r["keyword_rank"] is None else float(r["keyword_rank"]),
            )
            for r in rows
        ]
