"""Retrieval evaluation: recall@5, MRR@10 and nDCG@10 for hybrid, vector-only and keyword-only.

A question line is `{"id", "question", "as": USER_ID|null, "expect": [{"doc"?, "title"?, "contains"?}]}`:
a retrieved chunk is relevant to an expectation when its document path ends with `doc`, its
title equals `title` and its text contains `contains` (each only when given).
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from core.access import LOCAL_ADMIN, load_principal
from core.db import Database
from retrieval.search import Hit
from tools.knowledge import KnowledgeBase

MODES = ("hybrid", "vector", "keyword")
_ARTICLE_RE = re.compile(r"^第[一二三四五六七八九十百零〇\d]+条$")


def default_question_files() -> list[Path]:
    folder = files("eval").joinpath("data")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.startswith("retrieval_") and p.name.endswith(".jsonl"))


def load_questions(paths: Iterable[Path]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                assert isinstance(item, dict) and item.get("question") and item.get("expect")
            except (ValueError, AssertionError) as exc:
                raise ValueError(f"{path}:{n}: 不是合法的评测问题 ({exc})") from exc
            out.append(item)
    return out


def matches(hit: Hit, expect: dict[str, Any]) -> bool:
    doc = expect.get("doc")
    if doc and not (hit.doc_path == doc or hit.doc_path.endswith("/" + doc)):
        return False
    if expect.get("title") and hit.title != expect["title"]:
        return False
    label = expect.get("contains")
    if not label:
        return True
    if _ARTICLE_RE.match(label):
        # Other articles cite "第三十一条" too; the chunk must BE that article.
        return hit.text.lstrip().startswith(label)
    return label in hit.text


@dataclass
class Scores:
    recall5: float
    mrr10: float
    ndcg10: float


def score(hits: list[Hit], expects: list[dict[str, Any]]) -> Scores:
    """Each expectation is one relevant item; a chunk satisfies at most one of them."""
    found_at: dict[int, int] = {}  # expectation index → rank (1-based) of its first matching chunk
    gains = []
    for rank, hit in enumerate(hits[:10], 1):
        gain = 0
        for i, e in enumerate(expects):
            if i not in found_at and matches(hit, e):
                found_at[i] = rank
                gain = 1
                break
        gains.append(gain)
    recall5 = sum(1 for r in found_at.values() if r <= 5) / len(expects)
    mrr = 1.0 / min(found_at.values()) if found_at else 0.0
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(expects), 10)))
    return Scores(recall5, mrr, dcg / ideal if ideal else 0.0)


def evaluate(db: Database, kb: KnowledgeBase, questions: list[dict[str, Any]]) -> dict[str, Any]:
    per_mode: dict[str, dict[str, Any]] = {}
    details: list[dict[str, Any]] = []
    with db.connection() as conn:
        kb.search(conn, LOCAL_ADMIN, "预热", k=1)  # load the model and the tokenizer outside the timings
        for mode in MODES:
            rows, latencies = [], []
            for q in questions:
                who = load_principal(conn, q.get("as")) if q.get("as") else LOCAL_ADMIN
                t0 = time.perf_counter()
                hits = kb.search(conn, who, q["question"], k=10, mode=mode)
                latencies.append((time.perf_counter() - t0) * 1000)
                s = score(hits, q["expect"])
                rows.append(s)
                if mode == "hybrid":
                    details.append({
                        "id": q.get("id"), "question": q["question"], "recall@5": s.recall5, "mrr@10": s.mrr10,
                        "top": [f"{h.title} | {h.text[:30]}" for h in hits[:3]],
                    })
            per_mode[mode] = {
                "recall@5": statistics.fmean(r.recall5 for r in rows),
                "mrr@10": statistics.fmean(r.mrr10 for r in rows),
                "ndcg@10": statistics.fmean(r.ndcg10 for r in rows),
                "latency_p50_ms": statistics.median(latencies),
            }
    return {"questions": len(questions), "modes": per_mode, "details": details}


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"检索评测：{report['questions']} 个问题",
        "| 方法 | recall@5 | MRR@10 | nDCG@10 | p50 延迟 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode, m in report["modes"].items():
        lines.append(
            f"| {mode} | {m['recall@5']:.3f} | {m['mrr@10']:.3f} | {m['ndcg@10']:.3f} | {m['latency_p50_ms']:.1f} ms |"
        )
    return "\n".join(lines)
