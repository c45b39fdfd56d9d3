"""Smoke test of `puyi bench retrieval`: a few regulations, 2,000 chunks, 20 questions."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from eval.bench_retrieval import bench_retrieval

CORPUS = Path("/work/shared/corpus/regulations")
FILES = ("存款保险条例(2015-02-17).md", "个人存款账户实名制规定(2000-03-20).md")


@pytest.fixture(scope="module")
def regulations() -> Iterator[Path]:
    """Two short regulations in a folder of our own, readable by the embedded server's system user."""
    missing = [f for f in FILES if not (CORPUS / f).is_file()]
    if missing:
        pytest.skip(f"regulation corpus not available: {missing}")
    folder = Path(tempfile.mkdtemp(prefix="puyi-test-bench-"))
    folder.chmod(0o755)
    target = folder / "regulations"
    target.mkdir()
    for f in FILES:
        shutil.copy(CORPUS / f, target / f)
    yield target
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def lines(regulations: Path) -> list[str]:
    """One run shared by the tests below: it starts a server, ingests and searches."""
    return list(bench_retrieval(regulations, sizes=(2000,), queries=20))


def test_bench_retrieval_smoke(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert any(line.startswith("入库") and "块/s" in line for line in lines), text
    assert any("扩充到 2,000 块" in line for line in lines), text
    assert any(line.startswith("Puyi 混合检索") and "ms" in line for line in lines), text
    assert any(line.startswith("Puyi 仅向量检索") and "ms" in line for line in lines), text
    header = "| 规模 | Puyi 混合检索 p50/p95 (ms) | Puyi 向量 p50/p95 | PGVector p50/p95 | 目标 |"
    assert header in lines, text
    row = next(line for line in lines if line.startswith("| 2,000 |"))
    assert row.count("/") >= 2, row
    assert any(line.startswith("目标：") for line in lines), text
    # Without the optional dependency the baseline is skipped with a reason, and the run goes on.
    if importlib.util.find_spec("langchain_postgres") is None:
        assert any("PGVector 基线已跳过" in line for line in lines), text
    # The temporary home is removed at the end.
    home = Path(lines[0].split("临时目录：")[1].split("（")[0])
    assert not home.exists()


def test_bench_retrieval_pgvector_baseline(lines: list[str]) -> None:
    pytest.importorskip("langchain_postgres")
    text = "\n".join(lines)
    assert any(line.startswith("PGVector 加载") for line in lines), text
    assert any(line.startswith("PGVector similarity_search") and "精确" in line for line in lines), text
    row = next(line for line in lines if line.startswith("| 2,000 |"))
    assert "跳过" not in row, row
