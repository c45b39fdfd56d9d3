"""`puyi eval routing`: accuracy of the deterministic router on the labelled question set.

The set (eval/data/routing.jsonl) has one question a line: {"id", "question", "route", "kind",
"names", "note"?}. `names` says whether the question names a product: those were written against the
demo bank's catalogue (`puyi setup` / `puyi demo`), since the router links names through the catalogue
index of the loaded bank; the questions with `"names": false` route the same on any bank.
Each question is classified with `agents.router.classify` and the loaded bank's catalogue index,
as agents/graph.py does; no LLM is involved.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from agents.router import ROUTES, classify
from tools.catalog import CatalogIndex

DEFAULT_SET = Path(__file__).parent / "data" / "routing.jsonl"
KINDS = ("plain", "colloquial", "abbreviated", "mixed", "typo", "english_mixed")
_SHORT = {"catalog": "catalog", "metrics": "metrics", "element_plan": "plan", "alert": "alert",
          "knowledge": "knowl", "help": "help", "refused": "refused"}


def load_set(path: Path = DEFAULT_SET) -> list[dict[str, Any]]:
    """The labelled questions; a malformed line is an error naming its line number."""
    items: list[dict[str, Any]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc})") from exc
        if item.get("route") not in ROUTES or not str(item.get("question", "")).strip():
            raise ValueError(f"{path}:{n}: needs a question and a route among {', '.join(ROUTES)}")
        items.append(item)
    return items


def predict(items: Iterable[dict[str, Any]], index: CatalogIndex | None) -> list[str]:
    return [classify(item["question"], index).route for item in items]


def _rate(correct: int, total: int) -> float:
    return round(correct / total, 4) if total else 0.0


def evaluate(items: Sequence[dict[str, Any]], predicted: Sequence[str]) -> dict[str, Any]:
    """Accuracy overall, per expected route and per kind, the confusion matrix
    (confusion[expected][predicted] = count) and the misrouted questions."""
    if len(items) != len(predicted):
        raise ValueError("one prediction per question")
    confusion = {r: dict.fromkeys(ROUTES, 0) for r in ROUTES}
    by_route: Counter[str] = Counter()
    ok_route: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    ok_kind: Counter[str] = Counter()
    misrouted = []
    for item, got in zip(items, predicted, strict=True):
        want, kind = item["route"], item.get("kind", "plain")
        confusion[want][got] += 1
        by_route[want] += 1
        by_kind[kind] += 1
        if got == want:
            ok_route[want] += 1
            ok_kind[kind] += 1
        else:
            misrouted.append({"id": item.get("id"), "question": item["question"], "expected": want,
                              "predicted": got, "kind": kind})
    correct = sum(ok_route.values())
    return {
        "total": len(items),
        "correct": correct,
        "accuracy": _rate(correct, len(items)),
        "per_route": {r: {"n": by_route[r], "correct": ok_route[r], "accuracy": _rate(ok_route[r], by_route[r])}
                      for r in ROUTES if by_route[r]},
        "per_kind": {k: {"n": by_kind[k], "correct": ok_kind[k], "accuracy": _rate(ok_kind[k], by_kind[k])}
                     for k in sorted(by_kind, key=lambda k: (KINDS.index(k) if k in KINDS else len(KINDS), k))},
        "confusion": confusion,
        "misrouted": misrouted,
    }


def run(conn: Any, path: Path = DEFAULT_SET, names: bool | None = None) -> dict[str, Any]:
    """Evaluate against the bank loaded in `conn`; `names=False` keeps only questions naming no product."""
    from tools.catalog import catalog_index

    items = load_set(path)
    if names is not None:
        items = [i for i in items if bool(i.get("names", True)) == names]
    report = evaluate(items, predict(items, catalog_index(conn)))
    report["file"] = str(path)
    return report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def format_report(report: dict[str, Any]) -> str:
    lines = [f"路由准确率：{report['correct']}/{report['total']} = {_pct(report['accuracy'])}", "", "按路由："]
    lines += [f"  {r:<13}{v['correct']:>4}/{v['n']:<4}{_pct(v['accuracy']):>7}" for r, v in report["per_route"].items()]
    lines += ["", "按问法："]
    lines += [f"  {k:<13}{v['correct']:>4}/{v['n']:<4}{_pct(v['accuracy']):>7}" for k, v in report["per_kind"].items()]
    routes = [r for r in ROUTES if r in report["per_route"] or any(report["confusion"][e][r] for e in ROUTES)]
    width = 9
    lines += ["", "混淆矩阵（行 = 标注路由，列 = 预测路由）：",
              " " * 14 + "".join(f"{_SHORT[r]:>{width}}" for r in routes)]
    for want in routes:
        row = report["confusion"][want]
        lines.append(f"  {_SHORT[want]:<12}" + "".join(f"{row[got]:>{width}}" for got in routes))
    if report["misrouted"]:
        lines += ["", f"路由错误（{len(report['misrouted'])} 条）："]
        lines += [f"  {m['id']}  [{m['kind']}] 应为 {m['expected']}，得到 {m['predicted']}：{m['question']}"
                  for m in report["misrouted"]]
    return "\n".join(lines)
