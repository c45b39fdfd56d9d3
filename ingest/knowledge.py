"""Index documents into the knowledge base: load, chunk, tag products, embed, store — per document.

Incremental and idempotent: a document whose bytes, metadata and embedder are unchanged is
skipped; a changed one is replaced in one transaction; with `sync`, documents that disappeared
from their source are deleted. A document that cannot be read is reported by name and skipped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psycopg

from core.db import Database
from core.errors import PuyiError
from ingest.chunking import chunk_blocks
from ingest.documents import DocumentError, load_document
from retrieval.embedders import Embedder
from retrieval.store import (
    ChunkRow,
    DocumentMeta,
    delete_documents,
    ensure_embedder,
    refresh_term_stats,
    write_document,
)
from retrieval.tokenize import ChineseTokenizer
from tools.catalog import CatalogIndex, catalog_index

DOC_SUFFIXES = {".md", ".txt", ".html", ".htm", ".docx", ".pdf", ".xlsx", ".csv"}
DOC_TYPES = ("manual", "faq", "compliance", "notice", "regulation", "other")
FOLDER_TYPES = {"manual": "manual", "faq": "faq", "compliance": "compliance", "notice": "notice",
                "regulation": "regulation", "regulations": "regulation"}

Progress = Callable[[int, int, str], None]


@dataclass
class Source:
    """One document to index and the metadata every chunk of it carries."""

    key: str
    file: Path
    source: str
    title: str
    doc_type: str
    access: str = "internal"
    product_codes: list[str] = field(default_factory=list)
    effective_date: date | None = None


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _meta_hash(src: Source, content_sha: str) -> str:
    """Content, metadata and the indexing recipe: changing any of them re-indexes the document."""
    meta = "|".join([content_sha, f"recipe={EMBED_CHARS}", src.title, src.doc_type, src.access, ",".join(sorted(src.product_codes)),
                     str(src.effective_date or "")])
    return hashlib.sha256(meta.encode()).hexdigest()


def sources_from_import(conn: psycopg.Connection[Any]) -> list[Source]:
    """The documents `puyi import` recorded from the bank folder's docs/."""
    rows = conn.execute(
        "SELECT path, title, doc_type, product_codes, access, effective_date, source_path FROM documents ORDER BY path"
    ).fetchall()
    return [
        Source(key=r["path"], file=Path(r["source_path"]), source="import", title=r["title"], doc_type=r["doc_type"],
               access=r["access"], product_codes=list(r["product_codes"] or []), effective_date=r["effective_date"])
        for r in rows
    ]


def sources_from_paths(
    paths: Iterable[Path], doc_type: str | None = None, products: Iterable[str] = (), access: str = "internal"
) -> list[Source]:
    """Files and folders given to `puyi ingest`; a folder's files are taken recursively."""
    if doc_type is not None and doc_type not in DOC_TYPES:
        raise PuyiError(f"未知文档类型 {doc_type!r}（可选 {', '.join(DOC_TYPES)}）")
    if access not in ("public", "internal", "restricted"):
        raise PuyiError(f"未知访问级别 {access!r}（可选 public、internal、restricted）")
    out: list[Source] = []
    for path in paths:
        path = path.expanduser().resolve()
        if not path.exists():
            raise PuyiError(f"找不到 {path}")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.suffix.lower() not in DOC_SUFFIXES or f.name == "manifest.csv":
                continue
            kind = doc_type or FOLDER_TYPES.get(f.parent.name.lower(), "other")
            out.append(Source(key=str(f), file=f, source="ingest", title=_title_of(f), doc_type=kind,
                              access=access, product_codes=list(products)))
    return out


def _title_of(path: Path) -> str:
    # Regulations are named "商业银行法(2015-08-29).md": the date is not part of the title.
    stem = path.stem
    return stem.split("(")[0].split("（")[0].strip() or stem


class KnowledgeIndexer:
    def __init__(self, db: Database, embedder: Embedder, tokenizer: ChineseTokenizer | None = None) -> None:
        self.db = db
        self.embedder = embedder
        self._tokenizer = tokenizer

    def tokenizer(self, conn: psycopg.Connection[Any], titles: Iterable[str]) -> ChineseTokenizer:
        if self._tokenizer is None:
            self._tokenizer = ChineseTokenizer(catalogue_words(conn, titles))
        return self._tokenizer

    def index(
        self, sources: list[Source], sync_source: str | None = None, sync_under: Iterable[Path] = (),
        progress: Progress | None = None,
    ) -> IndexReport:
        """Index `sources`; with `sync_source`, delete that source's documents not among them."""
        started = time.perf_counter()
        report = IndexReport()
        with self.db.connection() as conn:
            with conn.transaction():
                ensure_embedder(conn, self.embedder.name, self.embedder.dim)
            known = {
                r["path"]: r["sha256"]
                for r in conn.execute("SELECT path, sha256 FROM kb_documents")
            }
            index = catalog_index(conn)
            tokenizer = self.tokenizer(conn, [s.title for s in sources])
            for n, src in enumerate(sources, 1):
                if progress:
                    progress(n, len(sources), src.key)
                try:
                    content_sha = file_sha256(src.file)
                except OSError as exc:
                    report.failed.append((src.key, f"无法读取：{exc}"))
                    continue
                sha = _meta_hash(src, content_sha)
                if known.get(src.key) == sha:
                    report.unchanged += 1
                    continue
                doc_codes = self._doc_codes(src, index)
                try:
                    chunks = self._chunks(src, doc_codes, index, tokenizer)
                except DocumentError as exc:
                    report.failed.append((src.key, str(exc)))
                    continue
                if not chunks:
                    report.failed.append((src.key, "文档没有可检索的文字内容，已跳过 (no text)"))
                    continue
                vectors = self.embedder.embed_passages([_embed_text(src.title, c) for c in chunks])
                meta = DocumentMeta(
                    path=src.key, source=src.source, title=src.title, doc_type=src.doc_type, access=src.access,
                    sha256=sha, source_path=str(src.file), product_codes=doc_codes,
                    effective_date=src.effective_date,
                )
                with conn.transaction():
                    write_document(conn, meta, chunks, vectors, self.embedder.name)
                report.chunks += len(chunks)
                if src.key in known:
                    report.updated += 1
                else:
                    report.added += 1
            if sync_source is not None:
                report.deleted = self._sync(conn, sync_source, {s.key for s in sources}, list(sync_under))
            if report.added or report.updated or report.deleted:
                with conn.transaction():
                    refresh_term_stats(conn)
        report.seconds = time.perf_counter() - started
        return report

    def _sync(self, conn: psycopg.Connection[Any], source: str, keep: set[str], under: list[Path]) -> int:
        rows = conn.execute("SELECT path FROM kb_documents WHERE source = %(s)s", {"s": source}).fetchall()
        roots = [str(p.expanduser().resolve()) for p in under]
        gone = [
            r["path"] for r in rows
            if r["path"] not in keep and (not roots or any(r["path"].startswith(root) for root in roots))
        ]
        with conn.transaction():
            return delete_documents(conn, gone) if gone else 0

    def _doc_codes(self, src: Source, index: CatalogIndex) -> list[str]:
        found = [c.code for c in index.mentions(src.title).products]
        return sorted(set(src.product_codes) | set(found))

    def _chunks(
        self, src: Source, doc_codes: list[str], index: CatalogIndex, tokenizer: ChineseTokenizer
    ) -> list[ChunkRow]:
        blocks = load_document(src.file)
        out: list[ChunkRow] = []
        for c in chunk_blocks(blocks, title=src.title, doc_type=src.doc_type):
            text = c.text.strip()
            if not text:
                continue
            codes = set(doc_codes) | {p.code for p in index.mentions(text).products}
            heading = " ".join([src.title, *c.heading_path])
            out.append(ChunkRow(
                ordinal=len(out), kind=c.kind, heading_path=list(c.heading_path), page=c.page, text=text,
                product_codes=sorted(codes), tokens=tokenizer.document(text),
                heading_tokens=tokenizer.document(heading),
            ))
        return out


# Characters of a chunk the embedder sees. Attention cost grows with the square of the length,
# and the opening of a passage carries its topic; the keyword index still covers the whole text.
EMBED_CHARS = 320


def _embed_text(title: str, chunk: ChunkRow) -> str:
    # The headings tell the model what a short passage is about ("提前还款" under which product).
    context = " > ".join([title, *[h for h in chunk.heading_path if h != title]])
    return f"{context}\n{chunk.text[:EMBED_CHARS]}"


def catalogue_words(conn: psycopg.Connection[Any], titles: Iterable[str] = ()) -> list[str]:
    """Product names, aliases and document titles: words jieba must keep whole."""
    words = [r["w"] for r in conn.execute(
        "SELECT name AS w FROM products UNION SELECT unnest(aliases) FROM products"
    )]
    return words + [t for t in titles if t]
