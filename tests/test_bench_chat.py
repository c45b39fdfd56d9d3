"""`puyi bench chat` smoke run on the small test bank: a few questions, one run, no LLM."""

from __future__ import annotations

from core.db import Database
from eval.bench_chat import askers, bench_chat, route_questions


def test_questions_per_route_leave_dispositions_out():
    questions = route_questions(per_route=12)
    assert all(len(qs) >= 10 for qs in questions.values()), {r: len(q) for r, q in questions.items()}
    assert not any("#" in q for q in questions["alert"])  # "确认 #12" would change an alert's state


def test_askers_suit_the_route(loaded_db: Database):
    with loaded_db.connection() as conn:
        who = askers(conn)
        roles = {r["user_id"]: r["role"] for r in conn.execute("SELECT user_id, role FROM users")}
    assert roles[who["element_plan"][0]] == "designer"
    assert roles[who["alert"][0]] == "risk"
    assert roles[who["catalog"][0]] == "rm"


def test_smoke_run_reports_p50_p95_per_route(loaded_db: Database):
    routes = ("catalog", "metrics", "alert", "help", "refused")
    lines = list(bench_chat(runs=1, per_route=2, db=loaded_db, routes=routes))
    text = "\n".join(lines)
    for route in routes:
        assert any(line.startswith(route) for line in lines), text
    assert "p50 ms" in text and "p95 ms" in text and "预热" in text
    with loaded_db.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM plan_drafts").fetchone()
    assert row is not None and row["n"] == 0
