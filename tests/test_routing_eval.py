"""The labelled routing set and its evaluator (issue 7 item 7)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from agents.router import ROUTES
from core.db import Database
from eval.routing_eval import DEFAULT_SET, KINDS, evaluate, format_report, load_set, run


def test_the_set_is_large_valid_and_balanced():
    lines = [line for line in DEFAULT_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(lines) >= 300
    items = [json.loads(line) for line in lines]
    assert len({i["id"] for i in items}) == len(items), "ids must be unique"
    per_route = Counter(i["route"] for i in items)
    assert set(per_route) == set(ROUTES)
    assert all(per_route[r] >= 25 for r in ROUTES), per_route
    for big in ("catalog", "metrics", "knowledge"):  # the everyday routes get more questions
        assert per_route[big] > max(per_route[r] for r in ("help", "refused", "alert", "element_plan"))
    assert {i["kind"] for i in items} == set(KINDS)
    for item in items:
        assert item["question"].strip() and isinstance(item["names"], bool), item
        if item["kind"] == "mixed":
            assert item.get("note"), f"{item['id']}: a mixed question says why its route answers first"
    assert len(load_set()) == len(items)


def test_evaluate_counts_accuracy_and_confusion_on_a_hand_made_set():
    items = [
        {"id": "a", "question": "q1", "route": "catalog", "kind": "plain"},
        {"id": "b", "question": "q2", "route": "catalog", "kind": "typo"},
        {"id": "c", "question": "q3", "route": "metrics", "kind": "plain"},
        {"id": "d", "question": "q4", "route": "metrics", "kind": "colloquial"},
        {"id": "e", "question": "q5", "route": "help", "kind": "plain"},
    ]
    predicted = ["catalog", "knowledge", "metrics", "catalog", "help"]
    report = evaluate(items, predicted)
    assert (report["total"], report["correct"], report["accuracy"]) == (5, 3, 0.6)
    assert report["per_route"]["catalog"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert report["per_route"]["help"] == {"n": 1, "correct": 1, "accuracy": 1.0}
    assert "refused" not in report["per_route"]
    assert report["per_kind"]["plain"] == {"n": 3, "correct": 3, "accuracy": 1.0}
    assert report["per_kind"]["typo"]["correct"] == 0
    confusion = report["confusion"]
    assert confusion["catalog"]["catalog"] == 1 and confusion["catalog"]["knowledge"] == 1
    assert confusion["metrics"]["catalog"] == 1 and confusion["metrics"]["metrics"] == 1
    assert sum(sum(row.values()) for row in confusion.values()) == 5
    assert [(m["id"], m["expected"], m["predicted"]) for m in report["misrouted"]] == [
        ("b", "catalog", "knowledge"), ("d", "metrics", "catalog")]
    table = format_report(report)
    assert "3/5 = 60.0%" in table and "混淆矩阵" in table and "q4" in table


def test_load_set_names_the_bad_line(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "x", "question": "你好", "route": "help", "kind": "plain"}\n{oops\n', encoding="utf-8")
    try:
        load_set(path)
    except ValueError as exc:
        assert ":2:" in str(exc)
    else:
        raise AssertionError("a malformed line must be an error")


def test_accuracy_on_questions_naming_no_product_against_the_test_bank(loaded_db: Database):
    """The product names in the set are the demo bank's; the rest must route the same on any bank."""
    with loaded_db.connection() as conn:
        report = run(conn, names=False)
    assert report["total"] >= 150
    assert report["accuracy"] >= 0.95, format_report(report)
