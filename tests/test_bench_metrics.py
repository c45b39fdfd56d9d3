"""Smoke test of `puyi bench metrics`: a tiny synthetic bank on the test server, built, then reused."""

from __future__ import annotations

import pytest

from core.db import Database
from core.settings import Settings
from eval.bench_metrics import bench_metrics
from tests.bankfactory import METRICS_MONTHLY


def small_run(settings: Settings) -> str:
    return "\n".join(bench_metrics(rows=20_000, loans=3_000, rounds=1, settings=settings,
                                   synthetic_db="puyi_bench_metrics_test"))


@pytest.fixture(scope="module")
def runs(loaded_db: Database, settings: Settings) -> tuple[str, str]:
    return small_run(settings), small_run(settings)


def test_latency_on_the_loaded_and_the_synthetic_bank(runs: tuple[str, str]):
    first, _ = runs
    assert f"已导入的银行：{len(METRICS_MONTHLY)} 行月度事实" in first
    assert "合成银行生成完毕" in first and "刷新汇总表" in first
    for kind in ("全行用户", "分行客户经理", "支行客户经理"):
        assert f"| 已导入银行（{kind}） |" in first and f"| 合成银行（{kind}） |" in first
    synthetic = first[first.index("生成合成银行"):]
    assert "未给出数字" not in synthetic, synthetic  # every shape has data in the synthetic bank
    assert "p95 ≤ 300 ms" in first


def test_alert_run_is_timed(runs: tuple[str, str]):
    first, _ = runs
    assert "预警运行 run_alerts（3,000 笔贷款" in first and "| 预警运行（3,000 笔贷款） |" in first


def test_second_run_reuses_the_synthetic_bank(runs: tuple[str, str]):
    _, second = runs
    assert "复用已有的合成银行" in second and "复用已有的 3,000 笔合成贷款" in second
    assert "合成银行生成完毕" not in second


def test_without_a_bank_it_says_how_to_load_one(empty_db: Database, settings: Settings):
    out = "\n".join(bench_metrics(settings=settings, skip_synthetic=True))
    assert "puyi setup" in out and "| 场景 |" in out
