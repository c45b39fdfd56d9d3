"""Writing the knowledge base: documents and their chunks, vectors and full-text tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import psycopg

from core.errors import PuyiError


@dataclass
class DocumentMeta:
    path: str  # the key: relative to docs/ for imported documents, absolute for `puyi ingest`
    source: str  # import | ingest
    title: str
    doc_type: str
    access: str
    sha256: str
    source_path: str
    product_codes: list[str] = field(default_factory=list)
    effective_date: date | None = None


@dataclass
class ChunkRow:
    ordinal: int
    kind: str
    heading_path: list[str]
    page: int | None
    text: str
    product_codes: list[str]
    tokens: str  # space-separated segments for to_tsvector('simple', …)
    heading_tokens: str


def vector_literal(vec: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in vec.tolist()) + "]"


def index_name(dim: int) -> str:
    return f"kb_chunks_embedding_{dim}"


def ensure_embedder(conn: psycopg.Connection[Any], name: str, dim: int) -> None:
    """Record the embedder and build its HNSW index; refuse to mix vectors of two embedders."""
    row = conn.execute("SELECT embedder, dim FROM kb_meta WHERE id = 1").fetchone()
    if row is not None and (row["embedder"], row["dim"]) != (name, dim):
        has_chunks = conn.execute("SELECT EXISTS (SELECT 1 FROM kb_chunks) AS e").fetchone()
        if has_chunks and has_chunks["e"]:
            raise PuyiError(
                f"知识库由向量模型 {row['embedder']} 建立，当前配置为 {name}：请先运行 `puyi reindex` 重建索引"
            )
    conn.execute(
        "INSERT INTO kb_meta (id, embedder, dim) VALUES (1, %(n)s, %(d)s)"
        " ON CONFLICT (id) DO UPDATE SET embedder = excluded.embedder, dim = excluded.dim",
        {"n": name, "d": dim},
    )
    # The column is dimensionless so any embedder fits; the index is on a cast to this one's size.
    conn.execute(
        f"CREATE INDEX IF NOT EXISTS {index_name(dim)} ON kb_chunks"
        f" USING hnsw ((embedding::vector({dim})) vector_cosine_ops)"
    )


def drop_vector_indexes(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'kb_chunks' AND indexname LIKE 'kb_chunks_embedding_%%'"
    ).fetchall()
    for r in rows:
        conn.execute(f'DROP INDEX IF EXISTS "{r["indexname"]}"')


def write_document(
    conn: psycopg.Connection[Any], doc: DocumentMeta, chunks: Sequence[ChunkRow], vectors: np.ndarray, embedder: str
) -> None:
    """Replace one document and its chunks (the caller's transaction makes it atomic)."""
    conn.execute("DELETE FROM kb_documents WHERE path = %(p)s", {"p": doc.path})
    conn.execute(
        "INSERT INTO kb_documents (path, source, title, doc_type, product_codes, access, effective_date,"
        " sha256, source_path, chunks, embedder)"
        " VALUES (%(path)s, %(source)s, %(title)s, %(doc_type)s, %(codes)s, %(access)s, %(eff)s,"
        " %(sha)s, %(src)s, %(n)s, %(emb)s)",
        {
            "path": doc.path, "source": doc.source, "title": doc.title, "doc_type": doc.doc_type,
            "codes": doc.product_codes, "access": doc.access, "eff": doc.effective_date,
            "sha": doc.sha256, "src": doc.source_path, "n": len(chunks), "emb": embedder,
        },
    )
    with conn.cursor() as cur, cur.copy(
        "COPY kb_chunks (doc_path, ordinal, kind, title, heading_path, page, text, doc_type, access,"
        " product_codes, effective_date, tokens, embedding) FROM STDIN"
    ) as copy:
        for chunk, vec in zip(chunks, vectors, strict=True):
            copy.write_row((
                doc.path, chunk.ordinal, chunk.kind, doc.title, chunk.heading_path, chunk.page, chunk.text,
                doc.doc_type, doc.access, chunk.product_codes, doc.effective_date,
                _tsvector(chunk.heading_tokens, chunk.tokens), vector_literal(vec),
            ))


def _tsvector(heading_tokens: str, body_tokens: str) -> str:
    """A tsvector literal: title and heading tokens weigh more (A) than body tokens (D)."""
    positions: dict[str, list[str]] = {}
    pos = 1
    for weight, text in (("A", heading_tokens), ("D", body_tokens)):
        for tok in text.split():
            if pos < 16383:  # PostgreSQL's maximum position
                positions.setdefault(tok, []).append(f"{pos}{weight}")
            pos += 1
    return " ".join(f"'{tok}':{','.join(p[:256])}" for tok, p in positions.items())


def delete_documents(conn: psycopg.Connection[Any], paths: Sequence[str]) -> int:
    cur = conn.execute("DELETE FROM kb_documents WHERE path = ANY(%(p)s)", {"p": list(paths)})
    return cur.rowcount


def refresh_term_stats(conn: psycopg.Connection[Any]) -> None:
    """Recount each token's document frequency over all chunks."""
    conn.execute("DELETE FROM kb_terms")
    conn.execute("INSERT INTO kb_terms (term, df) SELECT word, ndoc FROM ts_stat('SELECT tokens FROM kb_chunks')")
    # The empty term holds the number of chunks, for the IDF's numerator.
    conn.execute("INSERT INTO kb_terms (term, df) SELECT '', count(*) FROM kb_chunks")
    # New tokens wait in the GIN index's pending list, which every keyword query would scan
    # until autovacuum merges it: merge it now, once, at the end of an indexing run.
    conn.execute("SELECT gin_clean_pending_list('kb_chunks_tokens'::regclass)")
