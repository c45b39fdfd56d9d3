"""Hybrid search: pgvector HNSW and jieba full text, fused by reciprocal rank in one SQL statement.

Every filter — access level, document type, product, effective date — is part of the WHERE of
both branches, so a chunk a person may not see is never even ranked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import psycopg

from retrieval.embedders import Embedder
from retrieval.rerank import Reranker
from retrieval.store import vector_literal
from retrieval.tokenize import ChineseTokenizer

Mode = Literal["hybrid", "vector", "keyword"]

# Reciprocal rank fusion constant; 60 is the value from Cormack et al. and works well untuned.
RRF_K = 60
COMMON_SHARE = 0.2
MAX_TERMS = 8
KEYWORD_BUDGET = 3000  # at most about this many chunks are scored by the keyword branch

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

# The keyword score is the summed IDF of the informative query terms a chunk holds (BM25's
# weighting without term frequency: chunks are short). Candidates come only from the rarest
# terms (`tsq`, bounded by KEYWORD_BUDGET rows), so the work stays small at any corpus size;
# every informative term still counts in the score.
_KEYWORD = f"""
SELECT c.id,
       (SELECT sum(t.idf) FROM unnest(%(terms)s::text[], %(idfs)s::float8[]) AS t(term, idf)
        WHERE c.tokens @@ t.term::tsquery) AS rank
FROM kb_chunks c
WHERE c.tokens @@ %(tsq)s::tsquery AND {_FILTERS}
ORDER BY rank DESC, c.id
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

    def __init__(
        self, embedder: Embedder, tokenizer: ChineseTokenizer, pool: int = 40, reranker: Reranker | None = None,
        rerank_depth: int = 20,
    ) -> None:
        self.embedder = embedder
        self.tokenizer = tokenizer
        self.pool = pool  # candidates each branch contributes before fusion
        self.reranker = reranker
        self.rerank_depth = rerank_depth

    def keyword_terms(self, conn: psycopg.Connection[Any], query: str) -> list[tuple[str, float, int]]:
        """The query's tokens worth matching: (term, IDF, document frequency), rarest first."""
        tokens = list(dict.fromkeys(self.tokenizer.tokens(query)))
        if not tokens:
            return []
        rows = conn.execute(
            "SELECT term, df FROM kb_terms WHERE term = ANY(%(t)s)", {"t": [*tokens, ""]}
        ).fetchall()
        df = {r["term"]: int(r["df"]) for r in rows}
        total = df.pop("", 0)
        if not total:
            return []
        scored = sorted(
            ((t, math.log(1 + (total - df[t] + 0.5) / (df[t] + 0.5)), df[t]) for t in tokens if t in df),
            key=lambda x: -x[1],
        )
        # Terms in more than a fifth of all chunks say little; keep them only if nothing else is left.
        informative = [x for x in scored if x[2] <= total * COMMON_SHARE]
        return (informative or scored[:3])[:MAX_TERMS]

    def search(
        self,
        conn: psycopg.Connection[Any],
        query: str,
        filters: SearchFilters,
        k: int = 5,
        mode: Mode = "hybrid",
    ) -> list[Hit]:
        terms = self.keyword_terms(conn, query) if mode != "vector" else []
        candidates: list[str] = []
        rows_budget = 0
        for t, _, df in terms:  # rarest first, until the budget of scored rows is spent
            if candidates and rows_budget + df > KEYWORD_BUDGET:
                break
            candidates.append(t)
            rows_budget += df
        keyword = {
            "terms": [f"'{t}'" for t, _, _ in terms],
            "idfs": [idf for _, idf, _ in terms],
            "tsq": " | ".join(f"'{t}'" for t in candidates),
        }
        mode_params: dict[str, Any]
        if mode == "keyword":
            if not terms:
                return []
            sql, mode_params = _KEYWORD_ONLY, keyword
        elif mode == "hybrid" and not terms:
            mode, sql = "vector", _VECTOR_ONLY
            mode_params = {"qvec": vector_literal(self.embedder.embed_query(query))}
        else:
            qvec = vector_literal(self.embedder.embed_query(query))
            mode_params = {"qvec": qvec, **keyword}
            sql = _HYBRID if mode == "hybrid" else _VECTOR_ONLY
        # A type modifier cannot be a parameter; the dimension is the embedder's own integer.
        sql = sql.replace("%(dim)s", str(int(self.embedder.dim)))
        params = {
            "access": list(filters.access),
            "doc_types": filters.doc_types,
            "products": filters.products,
            "as_of": filters.as_of or date.today(),
            "pool": max(self.pool, k),
            # With a reranker, fetch a deeper list and let the cross-encoder choose the top k.
            "k": max(k, self.rerank_depth) if self.reranker and mode == "hybrid" else k,
            **mode_params,
        }
        # Iterative HNSW scans keep returning neighbours until the filters are satisfied.
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        conn.execute("SET hnsw.ef_search = 80")
        # prepare=False: psycopg would otherwise switch to a server-side prepared statement after
        # five runs, and PostgreSQL's generic plan for this query is several times slower.
        rows = conn.execute(sql, params, prepare=False).fetchall()
        hits = [
            Hit(
                id=r["id"], doc_path=r["doc_path"], title=r["title"], doc_type=r["doc_type"],
                heading_path=list(r["heading_path"] or []), page=r["page"], kind=r["kind"], text=r["text"],
                product_codes=list(r["product_codes"] or []), access=r["access"], score=float(r["score"]),
                distance=None if r["distance"] is None else float(r["distance"]),
                keyword_rank=None if r["keyword_rank"] is None else float(r["keyword_rank"]),
            )
            for r in rows
        ]
        if self.reranker and mode == "hybrid" and len(hits) > 1:
            scores = self.reranker.scores(query, [" ".join([h.title, *h.heading_path, h.text]) for h in hits])
            for h, sc in zip(hits, scores, strict=True):
                h.extra["rerank"] = sc
            hits.sort(key=lambda h: -h.extra["rerank"])
        return hits[:k]
