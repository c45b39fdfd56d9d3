"""`puyi bench chat`: end-to-end latency of a chat turn per route, without an LLM.

On the bank loaded in the Puyi database (the demo bank after `puyi setup`), the questions of the
labelled routing set (eval/data/routing.jsonl, written against the demo bank) are asked through
`Assistant.ask` — route, tools, compose and masking, no channel so nothing is stored as a turn —
`per_route` questions per route, each `runs` times, by a user suited to the route: element plans by
a designer (the only role that may draft), alerts by a risk officer, metrics alternately by a
bank-wide risk officer and a branch relationship manager, everything else by a relationship manager.
Disposition messages ("确认 #12") are left out: they would change alert state.
The first call of each route is a warm-up and is not timed: it loads what a running server has
loaded already (the knowledge retriever's model, the catalogue index, the design step's caches).
The element-plan drafts the benchmark saves are deleted at the end.
Target: p95 ≤ 300 ms for every route except element plans (which price and simulate a design).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agents.router import ROUTES, alert_intent
from core.db import Database
from core.errors import PuyiError
from eval.bench import percentile
from eval.routing_eval import DEFAULT_SET, load_set

TARGET_MS = 300.0
UNTARGETED = ("element_plan",)
ROUTE_LABELS = {"catalog": "产品目录", "metrics": "指标", "element_plan": "要素方案", "alert": "预警",
                "knowledge": "知识问答", "help": "帮助", "refused": "拒答"}


def route_questions(path: Path = DEFAULT_SET, per_route: int = 12,
                    routes: tuple[str, ...] = ROUTES) -> dict[str, list[str]]:
    """Up to `per_route` labelled questions per route, in file order, dispositions left out."""
    out: dict[str, list[str]] = {r: [] for r in routes}
    for item in load_set(path):
        route, question = item["route"], item["question"]
        if route not in out or len(out[route]) >= per_route:
            continue
        if route == "alert" and alert_intent(question) == "dispose":
            continue
        out[route].append(question)
    return out


def _users(conn: Any) -> dict[str, list[str]]:
    """The first user of each role; an rm of a branch (not the head office) comes first."""
    rows = conn.execute(
        "SELECT u.user_id, u.role, b.level FROM users u LEFT JOIN branches b ON b.code = u.branch_code"
        " ORDER BY u.user_id"
    ).fetchall()
    by_role: dict[str, list[str]] = {}
    for r in rows:
        by_role.setdefault(r["role"], []).append(r["user_id"])
    branch_rms = [r["user_id"] for r in rows if r["role"] == "rm" and r["level"] == "branch"]
    if branch_rms:
        by_role["rm"] = branch_rms + [u for u in by_role["rm"] if u not in branch_rms]
    return by_role


def askers(conn: Any) -> dict[str, list[str | None]]:
    """Who asks each route's questions (cycled over the questions); None = the console admin."""
    users = _users(conn)

    def first(*roles: str) -> str | None:
        return next((users[r][0] for r in roles if users.get(r)), None)

    rm, risk, designer = first("rm", "admin"), first("risk", "admin"), first("designer", "admin")
    return {"catalog": [rm], "metrics": [risk, rm], "element_plan": [designer], "alert": [risk],
            "knowledge": [rm], "help": [rm], "refused": [rm]}


def time_routes(db: Database, questions: dict[str, list[str]], runs: int = 3,
                assistant: Any = None) -> dict[str, dict[str, Any]]:
    """Per route: the timed samples (ms), the routes actually taken, who asked and the warm-up time."""
    from agents.service import Assistant

    assistant = assistant or Assistant(db)
    with db.connection() as conn:
        who = askers(conn)
        row = conn.execute("SELECT coalesce(max(id), 0) AS id FROM plan_drafts").fetchone()
        last_draft = int(row["id"]) if row else 0
    principals = {u: assistant.principal(u) for users in who.values() for u in users}
    results: dict[str, dict[str, Any]] = {}
    try:
        for route, items in questions.items():
            if not items:
                continue
            users = who.get(route) or [None]
            t0 = time.perf_counter()
            assistant.ask(items[0], principal=principals[users[0]])  # warm-up, not timed
            warm = (time.perf_counter() - t0) * 1000
            samples: list[float] = []
            taken: dict[str, int] = {}
            for _ in range(max(1, runs)):
                for i, question in enumerate(items):
                    principal = principals[users[i % len(users)]]
                    t0 = time.perf_counter()
                    answer = assistant.ask(question, principal=principal)
                    samples.append((time.perf_counter() - t0) * 1000)
                    taken[answer.route] = taken.get(answer.route, 0) + 1
            results[route] = {"samples": samples, "taken": taken, "warmup_ms": warm,
                              "users": [principals[u].user_id for u in users],
                              "questions": len(items)}
    finally:
        # The benchmark's element-plan drafts are not the bank's work: remove them.
        with db.connection() as conn:
            conn.execute("DELETE FROM plan_drafts WHERE id > %(id)s AND created_by = ANY(%(by)s)",
                         {"id": last_draft, "by": [principals[u].user_id for u in who.get("element_plan", [])]})
    return results


def report_lines(results: dict[str, dict[str, Any]], runs: int) -> Iterator[str]:
    # ASCII headers only: Chinese characters are two columns wide and would skew the table.
    yield f"{'route':<14}{'qs':>4}{'calls':>7}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'warm-up':>9}  目标"

    failed = []
    for route, r in results.items():
        s = r["samples"]
        p50, p95 = statistics.median(s), percentile(s, 95)
        if route in UNTARGETED:
            verdict = "（不设 300 ms 目标：设计并模拟方案）"
        else:
            ok = p95 <= TARGET_MS
            verdict = f"p95 ≤ {TARGET_MS:.0f} ms {'✓' if ok else '✗'}"
            if not ok:
                failed.append(route)
        yield (f"{route:<14}{r['questions']:>4}{len(s):>7}{p50:>9.1f}{p95:>9.1f}{max(s):>9.1f}"
               f"{r['warmup_ms']:>9.1f}  {ROUTE_LABELS.get(route, route)}：{verdict}")
        off = {k: v for k, v in r["taken"].items() if k != route}
        if off:
            yield f"    注意：{sum(off.values())} 次实际走了其他路由 {off}"
    users = "；".join(f"{route}: {', '.join(r['users'])}" for route, r in results.items())
    yield f"提问人：{users}"
    yield f"每条路由的第一次调用为预热（加载检索模型、目录索引等），不计入统计；其余每题 {runs} 次。"
    yield "结论：" + ("除要素方案外，各路由 p95 均 ≤ 300 ms。" if not failed
                     else f"未达标的路由：{', '.join(failed)}。")


def bench_chat(runs: int = 3, per_route: int = 12, db: Database | None = None,
               routes: tuple[str, ...] = ROUTES, path: Path = DEFAULT_SET) -> Iterator[str]:
    """Lines of the report; opens the configured database unless one is given."""
    from core.db import open_database
    from core.settings import get_settings

    own = db is None
    database = db or open_database(get_settings())
    try:
        with database.connection() as conn:
            row = conn.execute("SELECT count(*) AS n FROM products").fetchone()
        if not (row and row["n"]):
            raise PuyiError("数据库中还没有银行数据：请先运行 `puyi setup`（演示银行）或 `puyi import 目录`")
        questions = route_questions(path, per_route, routes)
        yield (f"端到端延迟（Assistant.ask，确定性路由与模板，不用 LLM）：每条路由 {per_route} 题，"
               f"共 {sum(len(q) for q in questions.values())} 题 × {runs} 次")
        t0 = time.perf_counter()
        results = time_routes(database, questions, runs)
        yield from report_lines(results, runs)
        yield f"总耗时 {time.perf_counter() - t0:.1f} s"
    finally:
        if own:
            database.close()
