"""Smoke test of `puyi bench plans` on the small test bank: every text designed and timed, a verdict."""

from __future__ import annotations

import re

from core.db import Database
from core.settings import Settings
from eval.bench_plans import TEXTS, bench_plans


def test_bench_times_each_requirement_and_gives_a_verdict(loaded_db: Database, settings: Settings):
    texts = (TEXTS[0], TEXTS[4])  # a loan and a deposit
    lines = list(bench_plans(runs=2, settings=settings, texts=texts))
    report = "\n".join(lines)
    assert "2 个需求 × 2 次" in lines[0] and "设计人 钱进（designer01）" in lines[0]
    for label, _ in texts:
        row = next(line for line in lines if line.startswith(f"| {label}："))
        assert re.search(r"\| 3 个方案，沙盘已模拟 \| [\d,]+ ms \| [\d,]+ ms \| [\d,]+ ms \|$", row), row
    assert "| 合计（4 次） |" in report
    assert re.search(r"目标 < 3 秒：(达标|未达标)（最大 \d+\.\d\d 秒", report)
    with loaded_db.connection() as conn:  # nothing saved
        saved = conn.execute("SELECT count(*) AS n FROM plan_drafts").fetchone()
    assert saved is not None and saved["n"] == 0
