"""The element_plan route through the whole graph: a designer gets plans, the A/B table and a saved
draft; an rm a polite refusal with no design run; errors become the answer; numbers in the answer
are the design's display strings. The first tests use a hand-made design; the last ones run the
real pipeline (tools.plans + tools.sandbox) on the small bank."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agents import plan_route
from agents.service import Assistant
from core.access import LOCAL_ADMIN as LOCAL_ADMIN_PRINCIPAL
from core.db import Database
from core.errors import BadQuestion
from tests.test_plan_drafts import TEXT, sample_design
from tools.plan_types import PLAN_NAMES


@pytest.fixture()
def assistant(loaded_db: Database) -> Assistant:
    with loaded_db.connection() as conn:
        conn.execute("TRUNCATE plan_drafts RESTART IDENTITY")
    return Assistant(loaded_db)


@pytest.fixture()
def fake_design(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the design step with the hand-made design; records each call's arguments."""
    seen: list[dict[str, Any]] = []

    def design_plans(ctx: Any, text: str, seed: int = 20261123) -> dict[str, Any]:
        seen.append({"text": text, "seed": seed, "user": ctx.principal.user_id})
        return sample_design()

    monkeypatch.setattr(plan_route, "design_plans", design_plans)
    return seen


def _drafts(db: Database) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return [dict(r) for r in conn.execute("SELECT code, created_by, status FROM plan_drafts ORDER BY id").fetchall()]


def test_designer_gets_plans_ab_table_and_a_saved_draft(assistant: Assistant, fake_design: list[dict[str, Any]],
                                                         loaded_db: Database):
    a = assistant.ask(TEXT, user_id="designer01")
    assert a.route == "element_plan"
    assert fake_design == [{"text": TEXT, "seed": 20261123, "user": "designer01"}]
    assert [c["name"] for c in a.data["tool_calls"]] == ["design_plans", "save_draft"]
    drafts = _drafts(loaded_db)
    assert len(drafts) == 1 and drafts[0]["created_by"] == "designer01" and drafts[0]["status"] == "designing"
    code = drafts[0]["code"]
    text = a.answer
    assert "小微经营贷（草案）" in text and code in text and f"puyi plan export {code}" in text
    assert "利率上限 4.5%" in text and "担保方式 ← 相似产品 抵押经营贷（SL004）" in text
    assert "约束冲突：额度最高300万与信用方式不兼容" in text
    assert "**定价底线**：3.90%（资金成本（FTP） 2.00% + 预期损失 0.80% + 运营成本 0.60% + 资本成本 0.30% + 目标利润 0.20%）" in text
    assert "| 均衡 | 4.10% | 36月 | 5.00 万元 – 200.00 万元 | 抵押 | 线上 | 是 |" in text
    assert "| 净贡献 | 12.30 万元 | 15.60 万元 | 9.80 万元 |" in text
    assert "未提供还款方式，按等额本息设计" in text and "无法按五级分类和逾期排除风险客户" in text
    assert text.count("额度最高300万与信用方式不兼容") == 1
    kinds = [(b["type"], b.get("title")) for b in a.data["display"]]
    assert kinds == [("comparison", "方案沙盘对比（12个月）"), ("comparison", "要素方案对比"),
                     ("chart", "各方案月末余额（12个月）")]
    elements = a.data["display"][1]
    assert elements["columns"] == ["要素", *PLAN_NAMES]
    assert ["最高利率", "4.35%", "4.10%", "3.85%"] in elements["rows"]


def test_every_number_in_the_answer_comes_from_the_design(assistant: Assistant, fake_design: list[dict[str, Any]]):
    a = assistant.ask(TEXT, user_id="designer01")
    design = a.data["tool_calls"][0]["result"]
    draft = a.data["tool_calls"][1]["result"]
    import json

    from agents.plan_route import _value

    # Everything the design holds, as text, and each element value as displayed.
    source = json.dumps(design, ensure_ascii=False) + draft["code"] + TEXT
    source += " ".join(_value(e) for p in design["plans"] for e in p["elements"])
    for number in re.findall(r"\d+(?:\.\d+)?", a.answer.replace(draft["code"], "")):
        assert number in source, number


def test_rm_gets_a_polite_refusal_and_no_design_runs(assistant: Assistant, fake_design: list[dict[str, Any]],
                                                      loaded_db: Database):
    a = assistant.ask(TEXT, user_id="rm_qd")
    assert a.route == "element_plan"
    assert fake_design == [] and _drafts(loaded_db) == []
    assert "抱歉" in a.answer and "客户经理" in a.answer and "产品经理和管理员" in a.answer
    assert [c["name"] for c in a.data["tool_calls"]] == ["refused"] and a.data["display"] == []


def test_a_design_error_becomes_the_answer(assistant: Assistant, monkeypatch: pytest.MonkeyPatch, loaded_db: Database):
    def design_plans(ctx: Any, text: str, seed: int = 20261123) -> dict[str, Any]:
        raise BadQuestion("没有读出要设计的产品类别：请说明是贷款还是存款")

    monkeypatch.setattr(plan_route, "design_plans", design_plans)
    a = assistant.ask(TEXT, user_id="designer01")
    assert a.answer == "没有读出要设计的产品类别：请说明是贷款还是存款"
    assert _drafts(loaded_db) == []


def test_a_design_without_plans_is_not_saved(assistant: Assistant, monkeypatch: pytest.MonkeyPatch,
                                             loaded_db: Database):
    def design_plans(ctx: Any, text: str, seed: int = 20261123) -> dict[str, Any]:
        return {**sample_design(), "plans": [], "simulation": None, "warnings": ["需求中没有可设计的产品大类"]}

    monkeypatch.setattr(plan_route, "design_plans", design_plans)
    a = assistant.ask(TEXT, user_id="designer01")
    assert "没有生成方案：需求中没有可设计的产品大类" in a.answer and _drafts(loaded_db) == []


def test_naming_draft_codes_compares_them(assistant: Assistant, fake_design: list[dict[str, Any]]):
    first = assistant.ask(TEXT, user_id="designer01").data["tool_calls"][1]["result"]["code"]
    second = assistant.ask(TEXT).data["tool_calls"][1]["result"]["code"]  # the console admin
    a = assistant.ask(f"对比方案草稿 {first} 和 {second.lower()}", user_id="designer01")
    assert a.route == "element_plan" and [c["name"] for c in a.data["tool_calls"]] == ["compare_drafts"]
    assert f"{first}·保守" in a.answer and f"{second}·进取" in a.answer
    assert a.data["display"][0]["type"] == "comparison"
    missing = assistant.ask("对比方案草稿 DRAFT-20990101-001", user_id="designer01")
    assert "没有编号为 DRAFT-20990101-001 的要素方案草案" in missing.answer


# --- HTTP ---------------------------------------------------------------------------------------------


@pytest.fixture()
def client(assistant: Assistant, loaded_db: Database) -> Any:
    from fastapi.testclient import TestClient

    from api.server import create_app

    with TestClient(create_app(db=loaded_db), raise_server_exceptions=False) as c:
        yield c


def _bearer(db: Database, user: str) -> dict[str, str]:
    from core.tokens import issue_token

    with db.connection() as conn:
        return {"Authorization": f"Bearer {issue_token(conn, user)}"}


def test_http_designer_creates_lists_reads_and_exports_drafts(client: Any, loaded_db: Database,
                                                               fake_design: list[dict[str, Any]]):
    import io

    import docx

    designer = _bearer(loaded_db, "designer01")
    r = client.post("/api/plans", json={"text": TEXT, "seed": 5}, headers=designer)
    assert r.status_code == 201, r.text
    body = r.json()
    code = body["draft"]["code"]
    assert fake_design == [{"text": TEXT, "seed": 5, "user": "designer01"}]
    assert body["draft"]["status"] == "designing" and [p["name"] for p in body["design"]["plans"]] == list(PLAN_NAMES)
    listing = client.get("/api/plans", headers=designer).json()
    assert listing["total"] == 1 and listing["drafts"][0]["code"] == code
    draft = client.get(f"/api/plans/{code}", headers=designer).json()
    assert draft["seed"] == 5 and draft["pricing"]["floor"]["display"] == "3.90%" and len(draft["plans"]) == 3
    md = client.get(f"/api/plans/{code}/export", params={"format": "md"}, headers=designer)
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert f'filename="{code}.md"' in md.headers["content-disposition"] and "## 四、方案" in md.text
    word = client.get(f"/api/plans/{code}/export?format=docx", headers=designer)
    assert word.status_code == 200 and "wordprocessingml" in word.headers["content-type"]
    assert any("一、需求" in p.text for p in docx.Document(io.BytesIO(word.content)).paragraphs)


def test_http_errors_follow_the_api_shape(client: Any, loaded_db: Database, fake_design: list[dict[str, Any]]):
    rm, designer = _bearer(loaded_db, "rm_qd"), _bearer(loaded_db, "designer01")
    for method, url, kwargs in (("post", "/api/plans", {"json": {"text": TEXT}}), ("get", "/api/plans", {}),
                                ("get", "/api/plans/DRAFT-20990101-001", {}),
                                ("get", "/api/plans/DRAFT-20990101-001/export", {})):
        r = getattr(client, method)(url, headers=rm, **kwargs)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (url, r.text)
    assert fake_design == []
    missing = client.get("/api/plans/DRAFT-20990101-001", headers=designer)
    assert missing.status_code == 404 and "DRAFT-20990101-001" in missing.json()["error"]["message"]
    bad = client.get("/api/plans/DRAFT-20990101-001/export?format=pdf", headers=designer)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    assert client.post("/api/plans", json={"text": ""}, headers=designer).status_code == 422
    assert client.get("/api/plans").status_code == 401


# --- command line -------------------------------------------------------------------------------------


def test_cli_lists_shows_compares_and_exports_drafts(assistant: Assistant, loaded_db: Database, settings: Any,
                                                     tmp_path: Any):
    import json

    from tests.test_cli import run
    from tests.test_plan_drafts import DESIGNER
    from tools.plan_drafts import save_draft

    with loaded_db.connection() as conn:
        a = save_draft(conn, DESIGNER, TEXT, sample_design(), 11)["code"]
        b = save_draft(conn, DESIGNER, TEXT, sample_design(simulate=False), 11)["code"]
    listed = run(settings, "plan", "list", "--as", "designer01", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [d["code"] for d in json.loads(listed.stdout)["drafts"]] == [b, a]
    table = run(settings, "plan", "list", "--as", "designer01")
    assert table.returncode == 0 and "要素方案草案：共 2 份" in table.stdout
    shown = run(settings, "plan", "show", a.lower(), "--as", "designer01")
    assert shown.returncode == 0, shown.stderr
    assert "3.90%" in shown.stdout and "方案沙盘对比" in shown.stdout and a in shown.stdout
    full = json.loads(run(settings, "plan", "show", a, "--json").stdout)
    assert full["code"] == a and full["plans"] == sample_design()["plans"]
    compared = run(settings, "plan", "compare", a, b, "--json")
    assert compared.returncode == 0 and json.loads(compared.stdout)["columns"][1] == f"{a}·保守"
    out = tmp_path / "plan.docx"
    exported = run(settings, "plan", "export", a, "--format", "docx", "--out", str(out))
    assert exported.returncode == 0 and out.read_bytes()[:2] == b"PK"
    md = run(settings, "plan", "export", a, "--out", str(tmp_path / "plan.md"))
    assert md.returncode == 0 and (tmp_path / "plan.md").read_text(encoding="utf-8").startswith("# 小微经营贷（草案）")
    for args in (("plan", "show", a, "--as", "rm_qd"), ("plan", "list", "--as", "risk01")):
        refused = run(settings, *args)
        assert refused.returncode == 2 and "产品经理和管理员" in refused.stderr.replace("\n", "")
    missing = run(settings, "plan", "show", "DRAFT-20990101-001")
    assert missing.returncode == 2 and "没有编号为 DRAFT-20990101-001" in missing.stderr.replace("\n", "")


def test_cli_plan_shortcut_refuses_an_rm_before_designing(assistant: Assistant, loaded_db: Database, settings: Any):
    from tests.test_cli import run

    r = run(settings, "plan", TEXT, "--as", "rm_qd")
    message = r.stderr.replace("\n", "")
    assert r.returncode == 2 and "客户经理" in message and "产品经理和管理员" in message
    assert _drafts(loaded_db) == []


# --- end to end through the real design steps (tools.plans, tools.plan_evidence, tools.sandbox) --------


def _numbers_come_from(answer: str, design: dict[str, Any], extra: str = "") -> None:
    import json

    from agents.plan_route import _value
    from tools.plan_export import requirement_rows

    source = json.dumps(design, ensure_ascii=False) + extra
    source += " ".join(_value(e) for p in design["plans"] for e in p["elements"])
    source += " ".join(str(c) for row in requirement_rows(design["requirement"]) for c in row)
    for number in re.findall(r"\d+(?:\.\d+)?", answer):
        assert number in source, number


def test_real_design_through_the_assistant(assistant: Assistant, loaded_db: Database):
    a = assistant.ask(TEXT, user_id="designer01")
    assert a.route == "element_plan" and [c["name"] for c in a.data["tool_calls"]] == ["design_plans", "save_draft"]
    design, draft = a.data["tool_calls"][0]["result"], a.data["tool_calls"][1]["result"]
    assert [p["name"] for p in design["plans"]] == list(PLAN_NAMES)
    assert draft["code"] in a.answer and "**定价底线**" in a.answer
    _numbers_come_from(a.answer.replace(draft["code"], ""), design)
    kinds = [b["type"] for b in a.data["display"]]
    assert kinds[:2] == ["comparison", "comparison"] and "chart" in kinds
    assert a.data["display"][0] == design["simulation"]["comparison"]
    # Saved as designed; exported with its content; the same seed simulates the same way.
    with loaded_db.connection() as conn:
        from tools.plan_drafts import get_draft
        from tools.plan_export import to_docx, to_markdown

        stored = get_draft(conn, LOCAL_ADMIN_PRINCIPAL, draft["code"])
    assert stored["plans"] == design["plans"] and stored["simulation"] == design["simulation"]
    md = to_markdown(stored)
    assert "## 五、A/B 沙盘对比" in md and design["simulation"]["comparison"]["rows"][0][1] in md
    import io

    import docx

    tables = docx.Document(io.BytesIO(to_docx(stored))).tables
    assert any(t.rows[0].cells[0].text == "指标" for t in tables)
    again = assistant.ask(TEXT, user_id="designer01").data["tool_calls"][0]["result"]
    assert again["simulation"]["comparison"] == design["simulation"]["comparison"]


def test_real_design_for_a_deposit_and_an_unreadable_idea(assistant: Assistant):
    a = assistant.ask("出一个三年期大额存单的要素方案，起存20万，利率不低于1.5%", user_id="designer01")
    assert a.route == "element_plan", a.answer
    design = a.data["tool_calls"][0]["result"]
    assert design["pricing"]["kind"] == "deposit_ceiling" and "**可承受利率上限**" in a.answer
    _numbers_come_from(a.answer.replace(a.data["tool_calls"][1]["result"]["code"], ""), design)
    vague = assistant.ask("出一个要素方案", user_id="designer01")
    assert vague.route == "element_plan" and [c["name"] for c in vague.data["tool_calls"]] == ["error"]
    assert "没有看出这是哪一类产品" in vague.answer and "贷款" in vague.answer


def test_real_design_over_http_and_the_cli(client: Any, loaded_db: Database, settings: Any):
    import json

    from tests.test_cli import run

    r = client.post("/api/plans", json={"text": TEXT}, headers=_bearer(loaded_db, "designer01"))
    assert r.status_code == 201, r.text
    assert r.json()["draft"]["status"] == "designing" and r.json()["design"]["simulation"]["comparison"]["rows"]
    cli = run(settings, "plan", TEXT, "--as", "designer01", "--json")
    assert cli.returncode == 0, cli.stderr
    out = json.loads(cli.stdout)
    assert out["draft"]["code"].startswith("DRAFT-") and len(out["design"]["plans"]) == 3
    # Same text and seed from the CLI and over HTTP: the same simulation.
    assert out["design"]["simulation"]["comparison"] == r.json()["design"]["simulation"]["comparison"]
    dry = run(settings, "plan", "new", TEXT, "--no-save")
    assert dry.returncode == 0 and "方案沙盘对比" in dry.stdout and "已保存为草案" not in dry.stdout
    assert len(_drafts(loaded_db)) == 2
