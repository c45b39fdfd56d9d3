"""The `puyi` command as a user runs it: a separate process on the same embedded database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.db import Database
from core.settings import Settings
from tests.conftest import one

PUYI = [sys.executable, "-m", "api.cli"]


def run(settings: Settings, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PUYI_HOME": str(settings.home)}
    env.pop("PUYI_DATABASE_URL", None)
    return subprocess.run(
        [*PUYI, *args], capture_output=True, text=True, env=env, input=input, timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_ask_json_contract(loaded_db: Database, settings: Settings):
    r = run(settings, "ask", "--json", "--as", "rm_sn", "--session", "abc", "薪易快贷的利率是多少？")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"id", "turn_id", "route", "answer", "citations", "data", "session_id"}
    assert out["route"] == "catalog" and out["session_id"] == "abc" and "3.45%" in out["answer"]


def test_ask_batch_answers_every_line_and_flags_bad_ones(loaded_db: Database, settings: Settings, tmp_path: Path):
    batch = tmp_path / "q.jsonl"
    batch.write_text(
        "\n".join([
            json.dumps({"id": "q1", "question": "薪易快贷的利率", "as": None, "session": None}, ensure_ascii=False),
            json.dumps({"id": "q2", "question": "你好", "as": "rm_qd", "session": "s"}, ensure_ascii=False),
            "{not json",
            json.dumps({"id": "q4", "question": "", "as": None, "session": None}),
            json.dumps({"id": "q5", "question": "快贷", "as": "ghost", "session": None}, ensure_ascii=False),
        ]) + "\n",
        encoding="utf-8",
    )
    r = run(settings, "ask", "--json", "--batch", str(batch))
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x.get("id") for x in lines] == ["q1", "q2", None, "q4", "q5"]
    assert lines[0]["route"] == "catalog" and lines[1]["route"] == "help"
    assert "error" in lines[2] and ":3:" in lines[2]["error"]
    assert "问题为空" in lines[3]["error"] and "未知用户" in lines[4]["error"]
    assert r.returncode == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", ""], "问题为空"),
        (["ask", "贷" * 10_000], "问题过长"),
        (["ask", "--as", "nobody", "你好"], "未知用户"),
        (["ask", "--batch", "/nonexistent.jsonl"], "找不到"),
        (["import", "/nonexistent-bank-folder"], ""),
    ],
)
def test_bad_input_exits_non_zero_with_a_message(loaded_db: Database, settings: Settings, args: list[str], message: str):
    r = run(settings, *args)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_import_reports_problems_as_file_line_column(loaded_db: Database, settings: Settings, tmp_path: Path):
    from tests.bankfactory import write_small_bank

    bank = write_small_bank(tmp_path / "bad", extra_rows={"product_links.csv": [{"from_code": "SL001", "to_code": "NOPE"}]})
    before = loaded_db.connection
    with before() as conn:
        n = one(conn, "SELECT count(*) AS n FROM product_links")["n"]
    r = run(settings, "import", str(bank))
    assert r.returncode == 1
    assert "product_links.csv:" in r.stderr and "to_code" in r.stderr and "NOPE" in r.stderr
    with before() as conn:
        assert one(conn, "SELECT count(*) AS n FROM product_links")["n"] == n


def test_chat_session_in_the_terminal(loaded_db: Database, settings: Settings):
    r = run(settings, "chat", "--as", "rm_qd", input="薪易快贷的利率是多少\n/reset\n/exit\n")
    assert r.returncode == 0, r.stderr
    assert "3.45%" in r.stdout and "已开始新的对话" in r.stdout


def test_ingest_and_reindex_commands(loaded_db: Database, settings: Settings, pg_home: Path):
    folder = pg_home / "docs"
    folder.mkdir()
    (folder / "开户问答.md").write_text("# 开户问答\n\n问：开户要带什么？\n答：本人身份证原件。\n", encoding="utf-8")
    (folder / "坏文件.pdf").write_bytes(b"%PDF-1.4 broken")
    r = run(settings, "ingest", str(folder), "--doc-type", "faq", "--access", "public")
    assert r.returncode == 0, r.stderr
    assert "新增 1" in r.stdout and "失败 1" in r.stdout and "坏文件.pdf" in r.stderr
    again = run(settings, "ingest", str(folder), "--doc-type", "faq", "--access", "public")
    assert "未变 1" in again.stdout
    assert run(settings, "ingest", str(folder), "--doc-type", "nonsense").returncode != 0
    re = run(settings, "reindex")
    assert re.returncode == 0, re.stderr
    assert "新增" in re.stdout and "失败 0" in re.stdout
    answer = json.loads(run(settings, "ask", "--json", "开户需要带什么证件？").stdout)
    assert answer["route"] == "knowledge" and any(c["title"] == "开户问答" for c in answer["citations"])
