"""The `puyi` command line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from core.errors import PuyiError
from core.settings import Settings, get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="谱翼 Puyi：银行产品管理助手")
bench_app = typer.Typer(no_args_is_help=True, help="性能基准 (benchmarks)")
app.add_typer(bench_app, name="bench")
eval_app = typer.Typer(no_args_is_help=True, help="评测 (evaluation)")
app.add_typer(eval_app, name="eval")
users_app = typer.Typer(no_args_is_help=True, help="用户与登录令牌")
app.add_typer(users_app, name="users")
alerts_app = typer.Typer(no_args_is_help=True, help="风险预警：评估、列表、处置复盘与企业微信推送 (alerts)")
app.add_typer(alerts_app, name="alerts")
audit_app = typer.Typer(no_args_is_help=True, help="审计日志：每轮问答的记录，筛选与导出 (audit trail)")
app.add_typer(audit_app, name="audit")
llm_app = typer.Typer(no_args_is_help=True, help="大模型：用 vLLM 部署、检查已配置的端点 (LLM)")
app.add_typer(llm_app, name="llm")


class _PlanGroup(TyperGroup):
    """`puyi plan "需求…"` is short for `puyi plan new "需求…"`: anything that is not one of the
    group's commands (or its --help) goes to `new`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own (vendored) click Context
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["new", *args]
        return super().parse_args(ctx, args)


plan_app = typer.Typer(cls=_PlanGroup, no_args_is_help=True,
                       help="要素方案：设计（puyi plan \"需求…\"）、草案列表、查看、对比与导出 (element plans)")
app.add_typer(plan_app, name="plan")

# The real laws shipped beside the development tree; `make run` and the evaluation ingest them.
DEFAULT_REGULATIONS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "regulations"

out = Console()
err = Console(stderr=True)


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


@contextmanager
def _database(settings: Settings | None = None) -> Iterator[Any]:
    from core.db import open_database

    db = open_database(settings or get_settings())
    try:
        yield db
    finally:
        db.close()


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[red]错误[/red]：{message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _as_user(as_user: str | None) -> Iterator[tuple[Any, Any, Any]]:
    """(database, connection, principal) for a command run `--as` someone; a refusal or a mistake
    (unknown user, no such draft…) ends the command with its message."""
    from core.access import load_principal

    with _database() as db, db.connection() as conn:
        try:
            yield db, conn, load_principal(conn, as_user)
        except PuyiError as exc:
            _fail(str(exc))


@app.command("import")
def import_cmd(
    folder: Annotated[Path, typer.Argument(help="按数据契约组织的银行数据目录")],
    replace: Annotated[bool, typer.Option("--replace", help="用该目录的数据替换库中另一家银行的数据")] = False,
) -> None:
    """导入银行数据（先全部校验，再在一个事务中整体加载）。"""
    from ingest.importer import ImportFailed, import_folder

    with _database() as db:
        try:
            result = import_folder(db, folder, replace=replace, progress=lambda m: err.print(m, highlight=False))
        except ImportFailed as exc:
            for problem in exc.problems:
                err.print(str(problem), highlight=False, markup=False)
            _fail(f"导入失败：发现 {len(exc.problems)} 个问题，未加载任何数据 (nothing was loaded)", 1)
        for warning in result.warnings:
            err.print(f"[yellow]警告[/yellow] {warning}", highlight=False)
        if result.status == "unchanged":
            out.print(f"数据与上次导入相同，未做任何改动（{result.head_office}）。")
        else:
            total = sum(result.counts.values())
            out.print(f"已导入 {total:,} 行（{result.seconds:.1f} 秒）：" + "，".join(f"{k} {v:,}" for k, v in result.counts.items()))
            _evaluate_alerts(db)
        # Documents load one by one after the tables: a bad document never blocks the data.
        _print_index_report(index_imported_documents(db))


def _index_progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]建立知识库索引"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.description}"), console=err, transient=True)


def _print_index_report(report: Any) -> None:
    for path, message in report.failed:
        err.print(f"[yellow]跳过[/yellow] {path}: {message}", highlight=False, markup=False)
    out.print(
        f"知识库：新增 {report.added}，更新 {report.updated}，未变 {report.unchanged}，删除 {report.deleted}，"
        f"失败 {len(report.failed)}；写入 {report.chunks:,} 个片段（{report.seconds:.1f} 秒，"
        f"{report.chunks_per_second:.1f} 片段/秒）"
    )


def _run_index(db: Any, sources: list[Any], sync_source: str | None, sync_under: list[Path] | None = None) -> Any:
    from ingest.knowledge import KnowledgeIndexer
    from retrieval.embedders import make_embedder

    indexer = KnowledgeIndexer(db, make_embedder(db.settings))
    with _index_progress() as bar:
        task = bar.add_task("", total=len(sources))

        def progress(n: int, total: int, key: str) -> None:
            bar.update(task, completed=n - 1, description=Path(key).name)

        report = indexer.index(sources, sync_source=sync_source, sync_under=sync_under or [], progress=progress)
        bar.update(task, completed=len(sources))
    return report


def index_imported_documents(db: Any) -> Any:
    """Bring the knowledge base in line with the documents the last import recorded."""
    from ingest.knowledge import sources_from_import

    with db.connection() as conn:
        sources = sources_from_import(conn)
    return _run_index(db, sources, sync_source="import")


@app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[Path] | None, typer.Argument(help="文件或目录；不给则重新索引已导入银行的文档")] = None,
    doc_type: Annotated[str | None, typer.Option("--doc-type", help="manual|faq|compliance|notice|regulation|other")] = None,
    product: Annotated[list[str] | None, typer.Option("--product", help="文档涉及的产品编码（可多次）")] = None,
    access: Annotated[str, typer.Option("--access", help="public|internal|restricted")] = "internal",
    sync: Annotated[bool, typer.Option("--sync", help="删除这些目录下已不存在的文档")] = False,
) -> None:
    """把文档加入知识库（增量：未变的跳过，改动的替换，坏文件报告后跳过）。"""
    from ingest.knowledge import sources_from_paths

    with _database() as db:
        if not paths:
            _print_index_report(index_imported_documents(db))
            return
        sources = sources_from_paths(paths, doc_type=doc_type, products=product or [], access=access)
        report = _run_index(db, sources, sync_source="ingest" if sync else None, sync_under=list(paths))
    _print_index_report(report)
    if report.failed and not (report.added or report.updated or report.unchanged):
        raise typer.Exit(1)


@app.command("reindex")
def reindex_cmd() -> None:
    """换用向量模型后重建整个知识库索引。"""
    from ingest.knowledge import Source
    from retrieval.store import drop_vector_indexes

    with _database() as db:
        with db.connection() as conn:
            rows = conn.execute(
                "SELECT path, source, title, doc_type, product_codes, access, effective_date, source_path"
                " FROM kb_documents ORDER BY path"
            ).fetchall()
            with conn.transaction():
                conn.execute("DELETE FROM kb_documents")
                conn.execute("DELETE FROM kb_meta")
                drop_vector_indexes(conn)
        sources = [
            Source(key=r["path"], file=Path(r["source_path"]), source=r["source"], title=r["title"],
                   doc_type=r["doc_type"], access=r["access"], product_codes=list(r["product_codes"]),
                   effective_date=r["effective_date"])
            for r in rows
        ]
        report = _run_index(db, sources, sync_source=None)
    _print_index_report(report)


@app.command("demo")
def demo_cmd(
    out_dir: Annotated[Path | None, typer.Option("--out", help="输出目录（默认 $PUYI_HOME/demo-bank）")] = None,
    seed: Annotated[int, typer.Option("--seed", help="随机种子：同一种子生成完全相同的数据")] = 20261123,
) -> None:
    """生成演示银行的数据（数据契约格式）。"""
    from ingest.demo import write_demo_bank

    target = out_dir or get_settings().demo_dir
    counts = write_demo_bank(target, seed=seed)
    out.print(f"演示银行已写入 {target}：" + "，".join(f"{k} {v:,}" for k, v in counts.items()))


@app.command("setup")
def setup_cmd(
    regulations: Annotated[Path | None, typer.Option("--regulations", help="法规目录（默认 ../shared/corpus/regulations）")] = None,
) -> None:
    """首次使用：启动数据库并迁移；库中没有银行数据时生成并导入演示银行；把文档和法规建入知识库（增量）。"""
    with _database() as db:
        try:
            _ensure_bank(db)
        except PuyiError as exc:
            problems = getattr(exc, "problems", [])
            for problem in problems[:50]:
                err.print(str(problem), markup=False)
            _fail(f"演示银行导入失败：{exc}", 1)
        _ensure_regulations(db, regulations)
    out.print("谱翼已就绪。")


def _answer_line(assistant: Any, item: dict[str, Any]) -> dict[str, Any]:
    try:
        return assistant.ask(
            item.get("question"), user_id=item.get("as"), session_id=item.get("session"), qid=item.get("id")
        ).as_dict()
    except PuyiError as exc:
        return {"id": item.get("id"), "error": str(exc)}


@app.command("ask")
def ask_cmd(
    question: Annotated[str | None, typer.Argument(help="问题（中文）")] = None,
    as_user: Annotated[str | None, typer.Option("--as", help="以该用户身份提问（用户编号或企业微信 UserID）")] = None,
    session: Annotated[str | None, typer.Option("--session", help="会话编号")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False,
    batch: Annotated[Path | None, typer.Option("--batch", help="JSONL 文件：每行一个问题")] = None,
) -> None:
    """提一个问题（或用 --batch 批量提问）。"""
    from agents.service import Assistant

    if batch is not None:
        if not batch.is_file():
            _fail(f"找不到批量问题文件 {batch}")
        failures = 0
        with _database() as db:
            assistant = Assistant(db)
            for n, line in enumerate(batch.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                    if not isinstance(item, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    failures += 1
                    print(_json({"id": None, "error": f"{batch}:{n}: 不是合法的 JSON 对象 ({exc})"}), flush=True)
                    continue
                result = _answer_line(assistant, item)
                failures += "error" in result
                print(_json(result), flush=True)
        raise typer.Exit(1 if failures else 0)

    with _database() as db:
        assistant = Assistant(db)
        try:
            answer = assistant.ask(question, user_id=as_user, session_id=session, channel="cli")
        except PuyiError as exc:
            if as_json:
                print(_json({"id": None, "error": str(exc)}))
            _fail(str(exc))
    if as_json:
        print(_json(answer.as_dict()))
    else:
        from rich.markdown import Markdown

        out.print(Markdown(answer.answer))
        err.print(f"[dim]路由：{answer.route}  会话：{answer.session_id}[/dim]")


@app.command("chat")
def chat_cmd(
    as_user: Annotated[str | None, typer.Option("--as", help="以该用户身份对话")] = None,
) -> None:
    """终端对话（输入 /exit 退出，/reset 开始新会话）。"""
    import uuid

    from rich.markdown import Markdown

    from agents.service import Assistant

    with _database() as db:
        assistant = Assistant(db)
        try:
            who = assistant.principal(as_user)
        except PuyiError as exc:
            _fail(str(exc))
        session = uuid.uuid4().hex
        out.print(f"谱翼已就绪（{who.name}，{who.role}）。输入问题，/exit 退出，/reset 新会话。")
        while True:
            try:
                line = input("\n你> ").strip()
            except (EOFError, KeyboardInterrupt):
                out.print()
                break
            if not line:
                continue
            if line in ("/exit", "/quit", "exit", "quit"):
                break
            # /reset (新对话, 重新开始) goes to the assistant like any other message: it forgets the
            # conversation's context (agents/memory.py) and says so.
            try:
                answer = assistant.ask(line, session_id=session, principal=who, channel="cli")
            except PuyiError as exc:
                err.print(f"[red]{exc}[/red]")
                continue
            out.print(Markdown(answer.answer))
            out.print(f"[dim]（{answer.route}）[/dim]")


@eval_app.callback(invoke_without_command=True)
def eval_cmd(
    ctx: typer.Context,
    bank: Annotated[Path | None, typer.Option("--bank", help="按数据契约组织的银行数据目录")] = None,
    questions: Annotated[Path | None, typer.Option("--questions", help="JSONL 评测问题")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="报告目录（report.md、report.json、图表）")] = Path("eval-report"),
    previous: Annotated[Path | None, typer.Option("--previous", help="上次的 report.json，用于比较")] = None,
    thresholds: Annotated[Path | None, typer.Option("--thresholds", help="门槛 JSON：未达标时退出码为 1")] = None,
) -> None:
    """在一家银行自己的数据上评测：导入到全新的 PUYI_HOME，逐题提问并打分，附安全探测与报告。"""
    if ctx.invoked_subcommand is not None:
        return
    if bank is None or questions is None:
        _fail("需要 --bank 和 --questions（或使用子命令 routing / retrieval）")
    if not bank.is_dir() or not questions.is_file():
        _fail(f"找不到银行目录 {bank} 或问题文件 {questions}")
    from eval.harness import check_thresholds, load_questions, load_thresholds, run_eval

    limits: dict[str, Any] | None = None
    try:  # mistakes in the inputs are reported before minutes of import
        load_questions(questions)
        if previous is not None:
            try:
                json.loads(previous.read_text(encoding="utf-8"))["overall"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise PuyiError(f"上次的报告 {previous} 无法读取：{exc}") from exc
        if thresholds is not None:
            limits = load_thresholds(thresholds)
    except PuyiError as exc:
        _fail(str(exc))
    try:
        report = run_eval(bank, questions, out_dir, previous=previous,
                          progress=lambda m: err.print(m, highlight=False))
    except PuyiError as exc:
        _fail(str(exc))
    out.print((out_dir / "report.md").read_text(encoding="utf-8").split("\n## ")[0], highlight=False, markup=False)
    out.print(f"报告已写入 {out_dir}")
    if limits is not None:
        problems = check_thresholds(report, limits)
        for problem in problems:
            err.print(f"[red]未达标[/red] {problem}", highlight=False)
        raise typer.Exit(1 if problems else 0)


@eval_app.command("questions")
def eval_questions_cmd(
    bank: Annotated[Path, typer.Option("--bank", help="按数据契约组织的银行数据目录")],
    out_file: Annotated[Path, typer.Option("--out", help="写出的 JSONL 问题文件")] = Path("questions.jsonl"),
    seed: Annotated[int, typer.Option("--seed", help="抽样种子（同一银行、同一种子得到同一问题集）")] = 7,
) -> None:
    """从银行自己的数据生成一套起步评测问题（指标答案直接由 CSV 求和，知识问题附参考段落），供审阅后用于 puyi eval。"""
    from collections import Counter

    from eval.question_set import questions as make_questions

    missing = [f for f in ("products.csv", "branches.csv", "users.csv") if not (bank / f).is_file()]
    if not bank.is_dir() or missing:
        _fail(f"{bank} 不是按数据契约组织的银行目录：缺少 {'、'.join(missing) or '目录本身'}")
    try:
        items = make_questions(bank, seed=seed)
    except (UnicodeDecodeError, KeyError, ValueError) as exc:
        _fail(f"读取 {bank} 失败（请先用 puyi import 校验数据）：{type(exc).__name__}: {exc}")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in items), encoding="utf-8")
    by_route = Counter(q["route"] for q in items)
    out.print(f"{len(items)} 个问题 → {out_file}（" + "，".join(f"{r} {n}" for r, n in by_route.items()) + "）",
              highlight=False)
    out.print(f"请审阅后运行：puyi eval --bank {bank} --questions {out_file}", highlight=False, markup=False)


@eval_app.command("retrieval")
def eval_retrieval_cmd(
    questions: Annotated[list[Path] | None, typer.Option("--questions", help="JSONL 评测问题（可多次）")] = None,
    regulations: Annotated[Path | None, typer.Option("--regulations", help="法规目录（默认 ../shared/corpus/regulations）")] = None,
    out_file: Annotated[Path, typer.Option("--out", help="JSON 结果文件")] = Path("retrieval-eval.json"),
) -> None:
    """检索评测：混合、纯向量、纯关键词三种方法的 recall@5、MRR@10、nDCG@10。"""
    from eval.retrieval import default_question_files, evaluate, format_table, load_questions
    from tools.knowledge import KnowledgeBase

    files = questions or default_question_files()
    items = load_questions(files)
    with _database() as db:
        _ensure_bank(db)
        _ensure_regulations(db, regulations)
        report = evaluate(db, KnowledgeBase(db.settings), items)
    out_file.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    out.print(format_table(report), highlight=False)
    out.print(f"明细已写入 {out_file}")


def _ensure_bank(db: Any) -> None:
    """A database with no bank gets the demo bank, as `puyi setup` does."""
    from ingest.demo import write_demo_bank
    from ingest.importer import import_folder

    with db.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM imports").fetchone()
    if not (row and row["n"]):
        if not (db.settings.demo_dir / "products.csv").exists():
            write_demo_bank(db.settings.demo_dir)
        import_folder(db, db.settings.demo_dir, progress=lambda m: err.print(m, highlight=False))
        _evaluate_alerts(db)
    _print_index_report(index_imported_documents(db))


def _evaluate_alerts(db: Any) -> None:
    """New data is checked against the alert rules at once, not at the server's next scheduled run."""
    from tools.alerts import run_alerts

    try:
        result = run_alerts(db)
    except PuyiError as exc:
        err.print(f"[yellow]预警未评估[/yellow]：{exc}", highlight=False)
        return
    if result.get("month"):
        out.print(f"预警：{result.get('month_label') or result['month']} 触发 {result['fired']} 条，新增 {result['new']} 条"
                  "（puyi alerts list 查看）")


def _ensure_regulations(db: Any, folder: Path | None) -> None:
    from ingest.knowledge import sources_from_paths

    folder = folder or DEFAULT_REGULATIONS
    if not folder.is_dir():
        err.print(f"[yellow]未找到法规目录 {folder}，跳过[/yellow]")
        return
    sources = sources_from_paths([folder], doc_type="regulation", access="public")
    _print_index_report(_run_index(db, sources, sync_source=None))


@bench_app.command("catalog")
def bench_catalog_cmd(
    questions: Annotated[int, typer.Option("--questions", help="问题数（≥200）")] = 300,
    seed: Annotated[int, typer.Option("--seed")] = 20261123,
) -> None:
    """演示银行导入耗时，以及产品目录问答的进程内延迟 p50/p95。"""
    from eval.bench import bench_catalog

    for line in bench_catalog(n_questions=max(200, questions), seed=seed):
        out.print(line, highlight=False)


@bench_app.command("retrieval")
def bench_retrieval_cmd(
    regulations: Annotated[Path | None, typer.Option("--regulations", help="真实文档目录（默认 ../shared/corpus/regulations）")] = None,
    docs: Annotated[list[Path] | None, typer.Option("--docs", help="再加入的文档目录（可多次）")] = None,
    queries: Annotated[int, typer.Option("--queries", help="计时的问题数")] = 200,
) -> None:
    """入库吞吐（片段/秒），以及 1 万 / 10 万片段规模下的检索延迟，与 langchain-postgres PGVector 对比。"""
    from eval.bench_retrieval import bench_retrieval

    for line in bench_retrieval(regulations or DEFAULT_REGULATIONS, extra_docs=docs or [], queries=queries):
        out.print(line, highlight=False)


@bench_app.command("serve")
def bench_serve_cmd(
    requests: Annotated[int, typer.Option("--requests", help="/api/chat 请求数")] = 2000,
    concurrency: Annotated[int, typer.Option("--concurrency", help="/api/chat 并发数")] = 16,
    senders: Annotated[int, typer.Option("--senders", help="企业微信并发发送方")] = 50,
    per_sender: Annotated[int, typer.Option("--per-sender", help="每个发送方的消息数")] = 10,
    workers: Annotated[int, typer.Option("--workers", help="服务进程数")] = 2,
) -> None:
    """回环压测：/api/chat（产品目录问题）与企业微信回调的每秒请求数和延迟 p50/p99。"""
    from eval.bench_serve import bench_serve

    for line in bench_serve(requests, concurrency, senders, per_sender, workers):
        out.print(line, highlight=False)


@bench_app.command("metrics")
def bench_metrics_cmd(
    rows: Annotated[int, typer.Option("--rows", help="合成银行的月度事实行数")] = 10_000_000,
    loans: Annotated[int, typer.Option("--loans", help="合成贷款笔数（预警运行计时；0 = 跳过）")] = 1_000_000,
    skip_synthetic: Annotated[bool, typer.Option("--skip-synthetic", help="只测已导入的银行")] = False,
) -> None:
    """指标问答延迟 p50/p95：已导入的银行与千万行合成事实表；以及百万笔贷款时的预警运行耗时。"""
    from eval.bench_metrics import bench_metrics

    try:
        for line in bench_metrics(rows=rows, loans=loans, skip_synthetic=skip_synthetic):
            out.print(line, highlight=False, markup=False, soft_wrap=True)
    except PuyiError as exc:
        _fail(str(exc))


@bench_app.command("plans")
def bench_plans_cmd(
    runs: Annotated[int, typer.Option("--runs", help="每个需求重复的次数")] = 3,
) -> None:
    """要素方案设计耗时（含沙盘模拟）p50/p95/最大值：演示银行上的 6 个需求（贷款/存款，零售/普惠/对公），目标 < 3 秒。"""
    from eval.bench_plans import bench_plans

    try:
        for line in bench_plans(runs=max(1, runs)):
            out.print(line, highlight=False, markup=False, soft_wrap=True)
    except PuyiError as exc:
        _fail(str(exc))


@bench_app.command("chat")
def bench_chat_cmd(
    runs: Annotated[int, typer.Option("--runs", help="每题重复的次数")] = 3,
    per_route: Annotated[int, typer.Option("--per-route", help="每条路由的问题数（≥10）")] = 12,
) -> None:
    """对话端到端延迟 p50/p95（按路由，不用 LLM）：除要素方案外目标 p95 ≤ 300 ms；首次调用为预热不计入。"""
    from eval.bench_chat import bench_chat

    try:
        for line in bench_chat(runs=max(1, runs), per_route=max(10, per_route)):
            out.print(line, highlight=False, markup=False, soft_wrap=True)
    except PuyiError as exc:
        _fail(str(exc))


@eval_app.command("routing")
def eval_routing_cmd(
    file: Annotated[Path | None, typer.Option("--file", help="JSONL 标注问题集（默认 eval/data/routing.jsonl）")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="另写 JSON 报告 routing-eval.json")] = False,
    out_file: Annotated[Path, typer.Option("--out", help="JSON 报告文件")] = Path("routing-eval.json"),
) -> None:
    """确定性路由评测：在已导入的银行（默认演示银行）上的准确率、按路由/问法的准确率与混淆矩阵。"""
    from eval.routing_eval import DEFAULT_SET, format_report, run

    with _database() as db:
        with db.connection() as conn:
            loaded = conn.execute("SELECT count(*) AS n FROM imports").fetchone()
        if not (loaded and loaded["n"]):
            _ensure_bank(db)  # names in the set link through the loaded bank's catalogue
        with db.connection() as conn:
            try:
                report = run(conn, file or DEFAULT_SET)
            except (OSError, ValueError) as exc:
                _fail(str(exc))
    out.print(format_report(report), highlight=False, markup=False, soft_wrap=True)
    if as_json:
        out_file.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
        out.print(f"报告已写入 {out_file}")


@users_app.command("token")
def users_token_cmd(
    user_id: Annotated[str, typer.Argument(help="用户编号")],
    days: Annotated[int, typer.Option("--days", help="有效天数")] = 90,
) -> None:
    """为用户签发登录令牌（网页对话与 API 使用；只显示这一次）。"""
    from core.tokens import issue_token

    with _database() as db, db.connection() as conn:
        try:
            token = issue_token(conn, user_id, days=days)
        except PuyiError as exc:
            _fail(str(exc))
    print(token)


@app.command("serve")
def serve_cmd(
    host: Annotated[str | None, typer.Option("--host", help="监听地址（默认 PUYI_HOST 或 127.0.0.1）")] = None,
    port: Annotated[int | None, typer.Option("--port", help="端口（默认 PUYI_PORT 或 8000）")] = None,
    workers: Annotated[int, typer.Option("--workers", help="工作进程数（共用一个数据库）")] = 1,
    sign_in: Annotated[bool, typer.Option("--sign-in", help="为第一位管理员签发一天有效的令牌并打印登录链接")] = False,
) -> None:
    """启动服务：网页对话、HTTP API（/docs）、OpenAI 兼容接口（/v1）与企业微信回调。"""
    import uvicorn

    from api.server import create_app
    from core.tokens import issue_token

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = (settings.public_url or f"http://{local}:{port}").rstrip("/")
    with _database(settings) as db:  # fails here, clearly, if the database is unavailable
        with db.connection() as conn:
            admin = conn.execute(
                "SELECT user_id, name FROM users WHERE role = 'admin' ORDER BY user_id LIMIT 1"
            ).fetchone()
            link = f"{base}/#token={issue_token(conn, admin['user_id'], days=1)}" if sign_in and admin else None
        out.print(f"谱翼已启动\n  网页对话：{base}/\n  API 文档：{base}/docs\n  OpenAI 兼容接口：{base}/v1", highlight=False)
        if link:
            out.print(f"  登录链接（{admin['name']}，一天内有效）：{link}", highlight=False, soft_wrap=True)
        example = f"（例如 {admin['user_id']}）" if admin else ""
        out.print(f"  登录令牌：puyi users token 用户编号{example}", highlight=False)
        if admin is None:
            err.print("[yellow]  数据库中还没有银行数据与用户：先运行 puyi setup（演示银行）或 puyi import 目录[/yellow]")
        out.print(f"  企业微信回调：{'已配置 ' + base + '/wecom/callback' if settings.wecom_enabled else '未配置（PUYI_WECOM_*）'}",
                  highlight=False)
        worker = _start_worker(db) if settings.wecom_enabled and settings.wecom_worker == "inprocess" else None
        if worker is not None:
            os.environ["PUYI_WECOM_WORKER"] = "separate"  # for --workers processes
            settings = settings.model_copy(update={"wecom_worker": "separate"})
        try:
            # Graceful shutdown: uvicorn stops accepting, lets requests in flight finish, then the
            # lifespan stops; the worker finishes the message in hand.
            if workers > 1:
                uvicorn.run("api.server:create_app", factory=True, host=host, port=port, workers=workers,
                            timeout_graceful_shutdown=30, log_level="warning")
            else:
                uvicorn.run(create_app(settings, db=db), host=host, port=port, timeout_graceful_shutdown=30,
                            log_level="warning")
        finally:
            if worker is not None:
                from eval.live import stop_process

                stop_process(worker, timeout=40)  # it finishes the message in hand


def _start_worker(db: Any) -> subprocess.Popen[bytes]:
    """`puyi worker` beside the server, on the same database (the embedded one included)."""
    env = {**os.environ, "PUYI_DATABASE_URL": db.url}
    return subprocess.Popen([sys.executable, "-m", "api.cli", "worker"], env=env)


@app.command("worker")
def worker_cmd() -> None:
    """企业微信后台：回答已收到的消息并发送待发消息（puyi serve 会自动启动它）。"""
    import asyncio
    import signal

    from api.wecom import run_worker

    settings = get_settings()
    if not settings.wecom_enabled:
        _fail("企业微信未配置（PUYI_WECOM_CORP_ID、PUYI_WECOM_TOKEN、PUYI_WECOM_AES_KEY）")
    with contextlib.suppress(OSError):
        os.nice(10)  # answering yields the CPU to the HTTP processes' acknowledgements

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(main())


def _print_rule_status(status: dict[str, Any]) -> None:
    """Problems of the alert rules file: the rules in force stay, and the operator is told why."""
    for problem in status.get("errors", []):
        err.print(f"预警规则有误（{status['source']}），沿用此前生效的规则（{status['in_force_from']}）：{problem}",
                  style="red", markup=False, highlight=False, soft_wrap=True)
    for warning in status.get("warnings", []):
        err.print(f"预警规则提示（{status['source']}）：{warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)


def _alert_table(columns: list[str], rows: list[list[Any]]) -> Any:
    from rich.table import Table

    table = Table(*columns, show_lines=False, highlight=False)
    for row in rows:
        table.add_row(*("—" if v is None or v == "" else str(v) for v in row))
    return table


@alerts_app.command("run")
def alerts_run_cmd(
    month: Annotated[str | None, typer.Option("--month", help="评估的月份 YYYY-MM（默认最新月份）")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False,
) -> None:
    """按当前预警规则评估最新月份（或 --month），记录预警事件和证据；重复运行不会重复记录。"""
    from tools.alerts import parse_month, run_alerts

    with _database() as db:
        try:
            result = run_alerts(db, parse_month(month))
        except PuyiError as exc:
            _fail(str(exc))
    _print_rule_status(result["rules"])
    if as_json:
        print(_json(result))
        return
    out.print(
        f"{result['month_label']}：触发 {result['fired']} 条预警（新增 {result['new']}，更新 {result['updated']}，"
        f"未变 {result['unchanged']}，失效 {result['deactivated']}），用时 {result['seconds']:.2f} 秒；"
        f"规则来源：{result['rules']['in_force_from']}",
        highlight=False, markup=False, soft_wrap=True,
    )
    if result["events"]:
        out.print(_alert_table(
            ["编号", "级别", "产品", "规则", "触发值", "条件", "本次新增"],
            [[f"#{e['id']}", e["level_name"], f"{e['product_name']}（{e['product_code']}）", e["title"], e["display"],
              e["condition"], "是" if e["new"] else ""] for e in result["events"]],
        ))


@alerts_app.command("list")
def alerts_list_cmd(
    month: Annotated[str | None, typer.Option("--month", help="月份 YYYY-MM（默认最近有预警的月份）")] = None,
    level: Annotated[str | None, typer.Option("--level", help="suspend（停牌）| watch（关注）| exit_review（退出评估）")] = None,
    product: Annotated[str | None, typer.Option("--product", help="产品编码")] = None,
    include_inactive: Annotated[bool, typer.Option("--all", help="包括已失效的预警")] = False,
    as_user: Annotated[str | None, typer.Option("--as", help="以该用户身份查看（客户经理看不到全行数值）")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False,
) -> None:
    """列出预警事件（按级别、产品筛选），并报告预警规则文件的问题。"""
    from tools.alert_rules import rulebook
    from tools.alerts import list_alerts
    from tools.context import ToolContext

    with _as_user(as_user) as (db, conn, who):
        result = list_alerts(ToolContext(conn=conn, principal=who), month=month, level=level, product=product,
                             active=None if include_inactive else True)
        result["rules"] = rulebook(db.settings).current(conn).status()
    _print_rule_status(result["rules"])
    if as_json:
        print(_json(result))
        return
    out.print(f"{result['month_label']}预警（{result['scope']}）：共 {result['total']} 条（{result['by_level_text']}）",
              highlight=False, markup=False, soft_wrap=True)
    if result["last_run"] is None:
        out.print("尚未运行过预警评估：puyi alerts run", highlight=False, markup=False, soft_wrap=True)
    if result["items"]:
        out.print(_alert_table(
            ["编号", "级别", "产品", "规则", "触发值", "条件", "处置", "状态"],
            [[f"#{i['id']}", i["level_name"], f"{i['product_name']}（{i['product_code']}）", i["title"], i["display"],
              i["condition"], i["disposition_name"], "有效" if i["active"] else "已失效"] for i in result["items"]],
        ))


@alerts_app.command("review")
def alerts_review_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False,
) -> None:
    """每条规则的触发数、处置数和精确率（确认+已采取措施）/已处置，并根据处置结果建议阈值。"""
    from tools.alert_rules import rulebook
    from tools.alerts import review_rules

    with _database() as db, db.connection() as conn:
        ruleset = rulebook(db.settings).current(conn)
        result = review_rules(conn, ruleset)
    _print_rule_status(ruleset.status())
    if as_json:
        print(_json(result))
        return
    out.print(f"预警规则复盘：共触发 {result['total_fired']} 条，已处置 {result['total_disposed']} 条"
              f"（至少 {result['min_disposed']} 条处置才给出阈值建议）", highlight=False, markup=False, soft_wrap=True)
    out.print(_alert_table(
        ["规则", "条件", "触发", "已处置", "确认", "误报", "已采取措施", "精确率", "建议阈值"],
        [[f"{r['rule']}（{r['title']}）", r["condition"], r["fired"], r["disposed"], r["confirmed"], r["false_alarm"],
          r["action_taken"], r["precision_display"], (r["suggestion"] or {}).get("threshold_display", "—")]
         for r in result["rules"]],
    ))
    for r in result["rules"]:
        out.print(f"- {r['rule']}：{r['advice']}", highlight=False, markup=False, soft_wrap=True)


@alerts_app.command("dispose")
def alerts_dispose_cmd(
    alert_id: Annotated[int, typer.Argument(help="预警编号")],
    disposition: Annotated[str, typer.Argument(help="confirmed（确认）| false_alarm（误报）| action_taken（已采取措施）")],
    note: Annotated[str, typer.Option("--note", help="备注，例如误报原因")] = "",
    as_user: Annotated[str | None, typer.Option("--as", help="处置人（风险管理或管理员的用户编号）")] = None,
) -> None:
    """记录一条预警的处置结果（仅风险管理和管理员）。"""
    from tools.alerts import record_disposition

    with _as_user(as_user) as (_, conn, who):
        result = record_disposition(conn, alert_id, who, disposition, note=note, channel="cli")
    a = result["alert"]
    out.print(f"已记录：预警 #{result['alert_id']}（{a['product_name']} · {a['title']}，{a['month']}）处置为"
              f"「{result['disposition_name']}」，处置人 {result['user_name']}" + (f"；备注：{result['note']}" if result["note"] else ""),
              highlight=False, markup=False, soft_wrap=True)


@alerts_app.command("push")
def alerts_push_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="只列出将推送的预警和接收人，不入队、不发送")] = False,
) -> None:
    """把尚未推送的预警以企业微信卡片（附趋势图）推送给产品经理和风险管理人员，每条只推一次。"""
    from tools.alert_push import push_configured, push_new_alerts, send_queued

    settings = get_settings()
    if not dry_run and not push_configured(settings):
        _fail("企业微信未配置，未推送任何预警（需要 PUYI_WECOM_CORP_ID、PUYI_WECOM_SECRET、PUYI_WECOM_AGENT_ID）"
              " (WeCom is not configured: nothing was queued)")
    with _database(settings) as db:
        result = push_new_alerts(db, settings, dry_run=dry_run)
        for line in result["lines"]:
            out.print(line, highlight=False, markup=False, soft_wrap=True)
        out.print(result["message"], highlight=False, markup=False, soft_wrap=True)
        if result["queued"]:
            sent = send_queued(db, settings)
            out.print(f"已发送 {sent} 条企业微信消息；其余由服务的发送进程重试。" if sent
                      else "消息已入队，由服务的发送进程发送。", highlight=False, soft_wrap=True)


def _print_markdown(text: str) -> None:
    from rich.markdown import Markdown

    out.print(Markdown(text))


@plan_app.command("new")
def plan_new_cmd(
    text: Annotated[str, typer.Argument(help="产品设想（中文），例如「面向小微企业主的3年期经营贷，额度最高300万，利率不高于4.5%」")],
    as_user: Annotated[str | None, typer.Option("--as", help="以该用户身份设计（产品经理或管理员）")] = None,
    seed: Annotated[int, typer.Option("--seed", help="沙盘模拟的随机种子：同一种子结果相同")] = 20261123,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON（设计结果与草案）")] = False,
    no_save: Annotated[bool, typer.Option("--no-save", help="只设计，不保存草案")] = False,
) -> None:
    """设计要素方案：解读需求、收集依据、定价，生成保守/均衡/进取方案并做 A/B 沙盘，保存为创设状态的草案。"""
    from agents.plan_route import compose_design, design_plans, refusal_text
    from tools.context import ToolContext
    from tools.knowledge import KnowledgeBase
    from tools.plan_drafts import save_draft

    with _as_user(as_user) as (db, conn, who):
        if not who.may("draft_plan"):
            _fail(refusal_text(who))
        ctx = ToolContext(conn=conn, principal=who, kb=KnowledgeBase(db.settings), channel="cli")
        design = design_plans(ctx, text, seed=seed)
        draft = save_draft(conn, who, text, design, seed) if design.get("plans") and not no_save else None
    if as_json:
        print(_json({"design": design, "draft": draft}))
        return
    answer, _, _ = compose_design(design, draft)
    _print_markdown(answer)
    err.print(f"[dim]用时 {design.get('seconds') or 0:.2f} 秒" + ("；未保存草案（--no-save）" if no_save else "") + "[/dim]",
              highlight=False)


@plan_app.command("list")
def plan_list_cmd(
    as_user: Annotated[str | None, typer.Option("--as", help="以该用户身份查看（产品经理或管理员）")] = None,
    limit: Annotated[int, typer.Option("--limit", help="最多列出的草案数")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False,
) -> None:
    """列出要素方案草案（最新的在前）。"""
    from tools.plan_drafts import list_drafts
    from tools.plan_export import local_time

    with _as_user(as_user) as (_, conn, who):
        result = list_drafts(conn, who, limit=limit)
    if as_json:
        print(_json(result))
        return
    out.print(f"要素方案草案：共 {result['total']} 份", highlight=False)
    if result["drafts"]:
        out.print(_alert_table(
            ["编号", "名称", "状态", "大类", "客群", "方案", "创建人", "创建时间"],
            [[d["code"], d["name"], d["status_name"], d["category_name"], d["segment_name"], "/".join(d["plan_names"]),
              d["created_by_name"], local_time(d["created_at"])] for d in result["drafts"]],
        ))


@plan_app.command("show")
def plan_show_cmd(
    code: Annotated[str, typer.Argument(help="草案编号，例如 DRAFT-20261123-001")],
    as_user: Annotated[str | None, typer.Option("--as", help="以该用户身份查看（产品经理或管理员）")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON（完整草案）")] = False,
) -> None:
    """查看一份草案：需求理解、定价底线、各方案要点与 A/B 沙盘对比。"""
    from agents.plan_route import compose_design
    from tools.plan_drafts import get_draft

    with _as_user(as_user) as (_, conn, who):
        draft = get_draft(conn, who, code)
    if as_json:
        print(_json(draft))
        return
    answer, _, _ = compose_design(draft, draft, just_saved=False)
    _print_markdown(answer)


@plan_app.command("compare")
def plan_compare_cmd(
    codes: Annotated[list[str], typer.Argument(help="一个或多个草案编号")],
    as_user: Annotated[str | None, typer.Option("--as", help="以该用户身份查看（产品经理或管理员）")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON")] = False,
) -> None:
    """把一份或多份草案的各方案并排对比：要素、是否满足约束与沙盘指标。"""
    from tools.plan_drafts import compare_drafts

    with _as_user(as_user) as (_, conn, who):
        result = compare_drafts(conn, who, codes)
    if as_json:
        print(_json(result))
        return
    out.print(result["block"]["title"], highlight=False, markup=False, soft_wrap=True)
    out.print(_alert_table(result["columns"], result["rows"]))


@plan_app.command("export")
def plan_export_cmd(
    code: Annotated[str, typer.Argument(help="草案编号")],
    fmt: Annotated[str, typer.Option("--format", help="md（Markdown）或 docx（Word）")] = "md",
    out_file: Annotated[Path | None, typer.Option("--out", help="输出文件（默认 ./草案编号.md|docx）")] = None,
    as_user: Annotated[str | None, typer.Option("--as", help="以该用户身份导出（产品经理或管理员）")] = None,
) -> None:
    """把草案导出为 Markdown 或 Word（需求、依据、定价、各方案要素与理由、A/B 对比、假设、合规提示）。"""
    from tools.plan_drafts import get_draft
    from tools.plan_export import export_draft

    with _as_user(as_user) as (_, conn, who):
        content, name, _ = export_draft(get_draft(conn, who, code), fmt)
    target = out_file or Path(name)
    target.write_bytes(content)
    out.print(f"已导出 {target}（{len(content):,} 字节）", highlight=False)


VLLM_HINT = ("本机没有安装 vLLM。请在有 NVIDIA GPU 的机器上安装：pip install vllm"
             "（需要 CUDA；也可以在单独的环境里运行 vllm serve），然后再运行 puyi llm serve。")


def vllm_command(model_path: str, host: str, port: int, served_model_name: str | None) -> list[str]:
    """`vllm serve` with the flags Puyi's tool calling needs (Qwen2.5 speaks the hermes format)."""
    cmd = ["vllm", "serve", model_path, "--host", host, "--port", str(port),
           "--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    return cmd + (["--served-model-name", served_model_name] if served_model_name else [])


@llm_app.command("serve")
def llm_serve(
    model_path: Annotated[str, typer.Argument(help="本地模型目录或模型名，如 Qwen/Qwen2.5-7B-Instruct")],
    port: Annotated[int, typer.Option(help="监听端口")] = 8001,
    host: Annotated[str, typer.Option(help="监听地址")] = "127.0.0.1",
    served_model_name: Annotated[str | None, typer.Option(help="对外的模型名（即 PUYI_LLM_MODEL）")] = None,
) -> None:
    """用 vLLM 启动 OpenAI 兼容的大模型服务（开启工具调用：--enable-auto-tool-choice --tool-call-parser hermes）。"""
    import importlib.util
    import shutil

    if importlib.util.find_spec("vllm") is None:
        _fail(VLLM_HINT, code=1)
    cmd = vllm_command(model_path, host, port, served_model_name)
    if shutil.which("vllm") is None:  # the package without its script on PATH: run its CLI module
        cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", *cmd[1:]]
    name = served_model_name or model_path
    err.print(f"启动：{' '.join(cmd)}\n谱翼的设置：PUYI_LLM_PROVIDER=openai PUYI_LLM_BASE_URL=http://{host}:{port}/v1 "
              f"PUYI_LLM_MODEL={name}", highlight=False)
    raise typer.Exit(subprocess.call(cmd))


@llm_app.command("check")
def llm_check() -> None:
    """检查已配置的大模型端点：能回答、能流式输出、能调用工具。"""
    from agents.llm import check_endpoint, make_llm

    settings = get_settings()
    try:
        llm = make_llm(settings)
    except ValueError as exc:
        _fail(str(exc), code=1)
    if llm is None:
        _fail("没有配置大模型（PUYI_LLM_PROVIDER=none），谱翼使用规则引擎回答。"
              "配置方法见 README 的「LLM」一节。", code=1)
        return
    where = settings.llm_base_url or settings.llm_model
    out.print(f"大模型：{settings.llm_provider} {settings.llm_model or ''} @ {where}", highlight=False)
    results = check_endpoint(llm, settings.llm_timeout_seconds)
    for name, ok, detail in results:
        mark = "[green]PASS[/green]" if ok else "[red]FAIL[/red]"
        out.print(f"{mark} {name}: {detail}", highlight=False)
    if not all(ok for _, ok, _ in results):
        raise typer.Exit(1)
    out.print("全部通过 (all checks passed)", highlight=False)


_AuditUser = Annotated[str | None, typer.Option("--user", help="用户编号")]
_AuditRoute = Annotated[str | None, typer.Option("--route", help="路由：catalog|metrics|alert|element_plan|knowledge|help|refused")]
_AuditChannel = Annotated[str | None, typer.Option("--channel", help="渠道：web|wecom|openai|cli")]
_AuditSince = Annotated[str | None, typer.Option("--since", help="起始时间：2026-10-01[T09:30] 或 30m/12h/7d")]
_AuditUntil = Annotated[str | None, typer.Option("--until", help="截止时间（不含）")]
_AuditGrounding = Annotated[str | None, typer.Option("--grounding", help="failed：只看有无法溯源数字的回答")]


def _audit_rows(user: str | None, route: str | None, channel: str | None, since: str | None, until: str | None,
                grounding: str | None, limit: int | None) -> list[dict[str, Any]]:
    from core.audit import list_audit, parse_when

    if grounding not in (None, "failed"):
        _fail("--grounding 只支持 failed")
    with _database() as db, db.connection() as conn:
        return list_audit(conn, user=user, route=route, channel=channel, since=parse_when(since),
                          until=parse_when(until), grounding_failed=grounding == "failed", limit=limit)


@audit_app.command("list")
def audit_list_cmd(
    user: _AuditUser = None, route: _AuditRoute = None, channel: _AuditChannel = None, since: _AuditSince = None,
    until: _AuditUntil = None, grounding: _AuditGrounding = None,
    limit: Annotated[int, typer.Option("--limit", help="最多显示条数")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON（每行一条）")] = False,
) -> None:
    """列出审计记录（最新在前）：用户、渠道、问题、路由、工具、溯源检查、耗时与错误。"""
    from core.audit import to_jsonl

    rows = _audit_rows(user, route, channel, since, until, grounding, limit)
    if as_json:
        print(to_jsonl(rows), end="")
        return
    from rich.table import Table

    table = Table(show_lines=False)
    for column in ("编号", "时间", "用户", "渠道", "路由", "问题", "工具", "溯源", "耗时", "状态"):
        table.add_column(column)
    for r in rows:
        g = r.get("grounding") or {}
        table.add_row(str(r["id"]), r["created_at"].strftime("%Y-%m-%d %H:%M:%S"), f"{r['user_id']}（{r['role'] or '—'}）",
                      r["channel"] or "—", r["route"] or "—", (r["question"] or "")[:40],
                      "、".join(c["name"] for c in r["tool_calls"]) or "—",
                      "—" if not g or g.get("skipped") else ("通过" if g.get("ok") else f"移除 {len(g.get('unsupported', []))} 处"),
                      f"{r['latency_ms']} ms", r["status"] + (f"：{r['error']}" if r.get("error") else ""))
    out.print(table)
    out.print(f"共 {len(rows)} 条", highlight=False)


@audit_app.command("export")
def audit_export_cmd(
    fmt: Annotated[str, typer.Option("--format", help="csv | jsonl")] = "jsonl",
    out_file: Annotated[Path | None, typer.Option("--out", help="输出文件（默认打印到标准输出）")] = None,
    user: _AuditUser = None, route: _AuditRoute = None, channel: _AuditChannel = None, since: _AuditSince = None,
    until: _AuditUntil = None, grounding: _AuditGrounding = None,
    limit: Annotated[int | None, typer.Option("--limit", help="最多导出条数（默认全部）")] = None,
) -> None:
    """导出审计记录（CSV 或 JSONL，个人信息已脱敏）。"""
    from core.audit import to_csv, to_jsonl

    if fmt not in ("csv", "jsonl"):
        _fail("--format 只支持 csv 或 jsonl")
    rows = _audit_rows(user, route, channel, since, until, grounding, limit)
    content = to_csv(rows) if fmt == "csv" else to_jsonl(rows)
    if out_file is None:
        sys.stdout.write(content)
        return
    out_file.write_text(content, encoding="utf-8-sig" if fmt == "csv" else "utf-8")
    err.print(f"已导出 {len(rows)} 条审计记录到 {out_file}", highlight=False)


def main() -> None:
    logging.basicConfig(level=get_settings().log_level, stream=sys.stderr)
    from core.audit import scrub_logs

    scrub_logs()  # no ID or mobile number in the clear in any log line
    try:
        app()
    except PuyiError as exc:
        err.print(f"[red]错误[/red]：{exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
