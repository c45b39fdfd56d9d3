"""Hybrid search: pgvector HNSW and jieba full text, fused by reciprocal rank.

The keyword branch runs in PostgreSQL while the query is embedded in another thread (the
embedder's C code releases the GIL), then the vector branch runs; fusing two lists of 40 in
Python is cheaper than waiting for them one after the other. Every filter (access level,
document type, product, effective date) is in the WHERE of both branches, so a chunk a person
may not see is never even ranked.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
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
  AND (%(doc_paths)s::text[] IS NULL OR doc_path = ANY(%(doc_paths)s))
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
SELECT c.id, sum(t.idf) AS rank
FROM kb_chunks c
JOIN unnest(%(terms)s::text[], %(idfs)s::float8[]) AS t(term, idf) ON c.tokens @@ t.term::tsquery
WHERE c.tokens @@ %(tsq)s::tsquery AND {_FILTERS}
GROUP BY c.id
ORDER BY rank DESC, c.id
LIMIT %(pool)s
"""

_COLUMNS = "c.id, c.doc_path, c.title, c.doc_type, c.heading_path, c.page, c.kind, c.text, c.product_codes, c.access"

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


def fuse(vector_hits: list[Hit], keyword_hits: list[Hit]) -> list[Hit]:
    """Reciprocal rank fusion of the two ranked lists (a chunk in both gets both shares)."""
    fused: dict[int, Hit] = {}
    for pos, hit in enumerate(vector_hits, 1):
        hit.score = 1.0 / (RRF_K + pos)
        fused[hit.id] = hit
    for pos, hit in enumerate(keyword_hits, 1):
        share = 1.0 / (RRF_K + pos)
        if hit.id in fused:
            fused[hit.id].score += share
            fused[hit.id].keyword_rank = hit.keyword_rank
        else:
            hit.score = share
            fused[hit.id] = hit
    return sorted(fused.values(), key=lambda h: (-h.score, h.id))


@dataclass
class SearchFilters:
    access: tuple[str, ...]
    doc_types: list[str] | None = None
    products: list[str] | None = None
    as_of: date | None = None
    doc_paths: list[str] | None = None  # only these documents (the question named them)


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
        self._pool_executor: ThreadPoolExecutor | None = None

    @property
    def _executor(self) -> ThreadPoolExecutor:
        if self._pool_executor is None:
            self._pool_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-query")
        return self._pool_executor

    def _hits(self, conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> list[Hit]:
        # prepare=False: psycopg would otherwise switch to a server-side prepared statement after
        # five runs, and PostgreSQL's generic plan for these queries is several times slower.
        rows = conn.execute(sql, params, prepare=False).fetchall()
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

    def _keyword(self, conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> list[Hit]:
        terms = self.keyword_terms(conn, query)
        if not terms:
            return []
        candidates: list[str] = []
        rows_budget = 0
        for t, _, df in terms:  # rarest first, until the budget of scored rows is spent
            if candidates and rows_budget + df > KEYWORD_BUDGET:
                break
            candidates.append(t)
            rows_budget += df
        return self._hits(conn, _KEYWORD_ONLY, {
            **params,
            "terms": [f"'{t}'" for t, _, _ in terms],
            "idfs": [idf for _, idf, _ in terms],
            "tsq": " | ".join(f"'{t}'" for t in candidates),
        })

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
        params: dict[str, Any] = {
            "access": list(filters.access),
            "doc_types": filters.doc_types,
            "products": filters.products,
            "doc_paths": filters.doc_paths,
            "as_of": filters.as_of or date.today(),
            "pool": max(self.pool, k),
            # With a reranker, fetch a deeper list and let the cross-encoder choose the top k.
            "k": max(k, self.rerank_depth) if self.reranker and mode == "hybrid" else k,
        }
        embedding = self._executor.submit(self.embedder.embed_query, query) if mode != "keyword" else None
        keyword_hits: list[Hit] = []
        if mode != "vector":
            keyword_hits = self._keyword(conn, query, {**params, "k": params["pool"] if mode == "hybrid" else params["k"]})
        if embedding is None:
            hits = keyword_hits
        else:
            qvec = vector_literal(embedding.result())
            sql = _VECTOR_ONLY.replace("%(dim)s", str(int(self.embedder.dim)))  # a type modifier is no parameter
            vector_params = {**params, "qvec": qvec, "k": params["pool"] if mode == "hybrid" else params["k"]}
            vector_hits = self._hits(conn, sql, vector_params)
            hits = fuse(vector_hits, keyword_hits) if mode == "hybrid" else vector_hits
        hits = hits[: params["k"]]
        if self.reranker and mode == "hybrid" and len(hits) > 1:
            scores = self.reranker.scores(query, [" ".join([h.title, *h.heading_path, h.text]) for h in hits])
            for h, sc in zip(hits, scores, strict=True):
                h.extra["rerank"] = sc
            hits.sort(key=lambda h: -h.extra["rerank"])
        return hits[:k]
