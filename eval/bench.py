"""Benchmarks behind `puyi bench …`: figures to quote, measured in one process and one run."""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.settings import Settings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def catalog_questions(conn: Any, n: int, seed: int) -> list[tuple[str, str | None]]:
    """Catalogue questions made from whatever bank is loaded (never from the demo's names)."""
    rng = random.Random(seed)
    products = conn.execute(
        "SELECT code, name, aliases, category FROM products WHERE level = 'sellable' ORDER BY code"
    ).fetchall()
    subjects = [r["code"] for r in conn.execute("SELECT code FROM subjects ORDER BY code")]
    sources = conn.execute("SELECT system, source_code FROM system_codes ORDER BY 1, 2").fetchall()
    users = [r["user_id"] for r in conn.execute("SELECT user_id FROM users ORDER BY 1")] or [None]
    cats = ["存款", "贷款", "支付结算", "中间业务", "金融市场"]
    makers = [
        lambda p: f"{p['name']}的利率是多少？",
        lambda p: f"介绍一下{p['name']}",
        lambda p: f"{p['code']}穿透到哪些核算科目？",
        lambda p: f"{(p['aliases'] or [p['name']])[0]}是什么产品",
        lambda p: f"{p['name'][:-1] if len(p['name']) > 3 else p['name']}的期限和额度",
        lambda p: f"{p['name']}的还款方式",
    ]
    out: list[tuple[str, str | None]] = []
    while len(out) < n:
        kind = rng.random()
        if kind < 0.7 and products:
            q = rng.choice(makers)(rng.choice(products))
        elif kind < 0.8 and subjects:
            q = f"科目{rng.choice(subjects)}下面挂了哪些产品？"
        elif kind < 0.9 and sources:
            s = rng.choice(sources)
            q = f"{s['system']}系统代码{s['source_code']}对应哪个产品？"
        else:
            q = rng.choice([f"{rng.choice(cats)}类有多少个产品？", f"在售的{rng.choice(cats)}产品有哪些", "停牌的产品有哪些"])
        out.append((q, rng.choice(users)))
    return out


def bench_catalog(n_questions: int = 300, seed: int = 20261123) -> Iterator[str]:
    from agents.service import Assistant
    from core.db import open_database
    from ingest.demo import write_demo_bank
    from ingest.importer import import_folder

    with tempfile.TemporaryDirectory(prefix="puyi-bench-") as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        counts = write_demo_bank(home / "demo-bank", seed=seed)
        yield f"生成演示银行：{time.perf_counter() - t0:.1f} s（{sum(counts.values()):,} 行）"
        db = open_database(Settings(home=home, database_url=None))
        try:
            t0 = time.perf_counter()
            result = import_folder(db, home / "demo-bank")
            yield (
                f"导入演示银行（校验+加载，一个事务）：{time.perf_counter() - t0:.1f} s，"
                f"{sum(result.counts.values()):,} 行  [目标 < 60 s]"
            )
            t0 = time.perf_counter()
            import_folder(db, home / "demo-bank")
            yield f"再次导入同一目录（未改动，跳过）：{time.perf_counter() - t0:.2f} s"

            assistant = Assistant(db)
            with db.connection() as conn:
                questions = catalog_questions(conn, n_questions, seed)
            for q, who in questions[:10]:  # warm caches: name index, plans, pinyin table
                assistant.ask(q, user_id=who)
            latencies: list[float] = []
            routes: Counter[str] = Counter()
            for q, who in questions:
                t0 = time.perf_counter()
                answer = assistant.ask(q, user_id=who)
                latencies.append((time.perf_counter() - t0) * 1000)
                routes[answer.route] += 1
            yield (
                f"产品目录问答（进程内，{len(latencies)} 问）：p50 {statistics.median(latencies):.1f} ms，"
                f"p95 {percentile(latencies, 95):.1f} ms，max {max(latencies):.1f} ms  [目标 p95 < 50 ms]"
            )
            yield "路由分布：" + "，".join(f"{k} {v}" for k, v in routes.most_common())
        finally:
            db.close()
