"""The HTTP API behind the web chat and other tools. Every endpoint authenticates and applies
the caller's role: the same scoping in SQL as the assistant, the same masking of what is shown."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import iterate_in_threadpool

from agents.history import list_sessions, save_feedback, session_turns
from api.auth import principal, require
from core.access import ROLE_NAMES, Principal, branch_in_scope
from core.errors import PuyiError
from core.masking import mask_data
from tools import catalog
from tools.context import ToolContext

log = logging.getLogger("puyi.api")
router = APIRouter(prefix="/api")
Who = Annotated[Principal, Depends(principal)]


class ChatRequest(BaseModel):
    message: str = Field(description="用户的问题（中文）")
    session_id: str | None = Field(default=None, description="会话编号；不给则开始新会话")


class FeedbackRequest(BaseModel):
    turn_id: int = Field(description="被评价的回答（回答里的 turn_id）")
    rating: int = Field(description="1 = 有用 👍，-1 = 没用 👎")
    comment: str = Field(default="", max_length=2000, description="意见（可选）")


@router.get("/me", tags=["对话"])
def me(who: Who) -> dict[str, Any]:
    """The signed-in user: name, role and the branch scope their answers are limited to."""
    return {
        "user_id": who.user_id, "name": who.name, "role": who.role, "role_name": ROLE_NAMES.get(who.role, who.role),
        "branch_code": who.branch_code, "branch_name": who.branch_name, "scope_label": who.scope_label,
    }


@router.post("/chat", tags=["对话"])
def chat(body: ChatRequest, request: Request, who: Who) -> dict[str, Any]:
    """Ask a question; the answer has the same shape as `puyi ask --json`."""
    answer = request.app.state.assistant.ask(body.message, session_id=body.session_id, principal=who, channel="api")
    return answer.as_dict()  # type: ignore[no-any-return]


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(jsonable_encoder(data), ensure_ascii=False)}\n\n"


async def open_turn(assistant: Any, **kwargs: Any) -> AsyncIterator[tuple[str, Any]]:
    """The turn's events for a streaming response. The first one is taken before the response
    starts, so that bad input (empty question, someone else's session) still gets its proper
    HTTP status instead of an error inside a stream that already said 200."""
    turn = assistant.events(**kwargs)
    first = await run_in_threadpool(next, turn)

    async def events() -> AsyncIterator[tuple[str, Any]]:
        yield first
        async for event in iterate_in_threadpool(turn):
            yield event

    return events()


def _pieces(text: str) -> Iterator[str]:
    """The answer in line-sized pieces, so a client can render it progressively."""
    yield from re.findall(r"[^\n]*\n|[^\n]+$", text)


@router.post("/chat/stream", tags=["对话"], response_class=StreamingResponse)
async def chat_stream(body: ChatRequest, request: Request, who: Who) -> StreamingResponse:
    """Ask a question and receive the answer as server-sent events: `route` once routed, `tools`
    once the tools have answered, `delta` pieces of the answer text, then `answer` (the whole
    object, as from /api/chat); `error` if the turn fails."""
    turn = await open_turn(request.app.state.assistant, question=body.message, session_id=body.session_id,
                           principal=who, channel="web")

    async def events() -> AsyncIterator[str]:
        streamed = False  # an LLM's own deltas came; else the answer is sent in pieces at the end
        try:
            async for kind, payload in turn:
                if kind == "delta":
                    streamed = True
                    yield _sse("delta", {"text": payload})
                elif kind == "answer":
                    for piece in [] if streamed else _pieces(payload.answer):
                        yield _sse("delta", {"text": piece})
                    yield _sse("answer", payload.as_dict())
                else:
                    yield _sse(kind, payload)
        except PuyiError as exc:
            yield _sse("error", {"error": {"code": "bad_request", "message": str(exc)}})
        except Exception:
            log.exception("stream failed for %s", who.user_id)
            yield _sse("error", {"error": {"code": "internal_error", "message": "服务器内部错误，请稍后再试"}})

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache",
                                                                               "X-Accel-Buffering": "no"})


@router.post("/feedback", tags=["对话"])
def feedback(body: FeedbackRequest, request: Request, who: Who) -> dict[str, Any]:
    """👍/👎 with an optional comment on one of your own answers; rating again replaces it."""
    with request.app.state.db.connection() as conn:
        save_feedback(conn, body.turn_id, who.user_id, body.rating, body.comment)
    return {"ok": True}


@router.get("/sessions", tags=["对话"])
def sessions(request: Request, who: Who, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    """Your conversations, most recent first."""
    with request.app.state.db.connection() as conn:
        return {"sessions": list_sessions(conn, who.user_id, limit)}


@router.get("/sessions/{session_id}", tags=["对话"])
def session(session_id: str, request: Request, who: Who) -> dict[str, Any]:
    """One of your conversations with every turn and your feedback on it."""
    with request.app.state.db.connection() as conn:
        return session_turns(conn, session_id, who.user_id)


@router.get("/passages/{chunk_id}", tags=["知识库"])
def passage(chunk_id: int, request: Request, who: Who) -> dict[str, Any]:
    """A cited passage in full, with the text just before and after it (if you may read it)."""
    with request.app.state.db.connection() as conn:
        row = conn.execute(
            "SELECT c.id, c.doc_path, c.ordinal, c.title, c.doc_type, c.heading_path, c.page, c.text,"
            " (SELECT text FROM kb_chunks p WHERE p.doc_path = c.doc_path AND p.ordinal = c.ordinal - 1) AS before,"
            " (SELECT text FROM kb_chunks n WHERE n.doc_path = c.doc_path AND n.ordinal = c.ordinal + 1) AS after"
            " FROM kb_chunks c WHERE c.id = %(id)s AND c.access = ANY(%(a)s)",
            {"id": chunk_id, "a": list(who.doc_access)},
        ).fetchone()
    if row is None:
        raise HTTPException(404, "没有找到该段落，或您无权查看 (no such passage)")
    return mask_data({
        "chunk_id": row["id"], "title": row["title"], "doc_type": row["doc_type"], "path": row["doc_path"],
        "heading": " > ".join(row["heading_path"] or []), "page": row["page"], "text": row["text"],
        "before": row["before"], "after": row["after"],
    })


# Read-only catalogue and metrics: the same tools the assistant calls, as JSON.

@router.get("/products", tags=["产品目录"])
def products(
    request: Request,
    who: Who,
    q: Annotated[str | None, Query(description="编码、系统代码、名称、别名或模糊说法")] = None,
    category: str | None = None,
    segment: str | None = None,
    level: str | None = "sellable",
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 30,
) -> dict[str, Any]:
    """Search the catalogue (`q`) or list it by category, segment, level and status."""
    with request.app.state.db.connection() as conn:
        ctx = ToolContext(conn=conn, principal=who)
        if q:
            return catalog.find_product(ctx, q, limit=limit, level=level if level != "sellable" else None)
        return catalog.list_products(ctx, category, segment, level or None, status, limit)


@router.get("/products/{code}", tags=["产品目录"])
def product(code: str, request: Request, who: Who) -> dict[str, Any]:
    """A product's elements, parents, children, system codes and (within your scope) latest business."""
    with request.app.state.db.connection() as conn:
        result = catalog.get_product(ToolContext(conn=conn, principal=who), code)
    if result.get("error") == "not_found":
        raise HTTPException(404, f"产品目录中没有编码为 {code} 的产品 (no such product)")
    return result


@router.get("/products/{code}/trace", tags=["产品目录"])
def trace(
    code: str, request: Request, who: Who,
    direction: Annotated[str, Query(pattern="^(down|up)$", description="down = 向下穿透到科目；up = 向上到可售产品")] = "down",
) -> dict[str, Any]:
    """Penetrate the catalogue from a product (or, upwards, from an accounting subject)."""
    with request.app.state.db.connection() as conn:
        ctx = ToolContext(conn=conn, principal=who)
        return catalog.trace_down(ctx, code) if direction == "down" else catalog.trace_up(ctx, code)


METRIC_COLUMNS = ("balance", "avg_balance", "customers", "new_customers", "lost_customers", "volume",
                  "interest_income", "interest_expense", "fee_income", "opex", "provision", "npl_balance",
                  "overdue_balance", "complaints")


@router.get("/metrics", tags=["经营指标"])
def metrics(
    request: Request,
    who: Who,
    product: Annotated[str, Query(description="产品编码")],
    start: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="起始月 YYYY-MM")] = None,
    end: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="截止月 YYYY-MM")] = None,
    branch: Annotated[str | None, Query(description="机构编码（须在您的可见范围内）")] = None,
) -> dict[str, Any]:
    """A product's monthly figures summed over your branch scope (or one branch inside it)."""
    with request.app.state.db.connection() as conn:
        scope = who.scope_branch
        if branch is not None:
            inside = conn.execute(
                "SELECT 1 FROM branch_closure WHERE descendant = %(b)s AND (%(s)s::text IS NULL OR ancestor = %(s)s)",
                {"b": branch, "s": scope},
            ).fetchone()
            if inside is None:
                raise HTTPException(403, f"机构 {branch} 不在您的可见范围内 (branch outside your scope)")
            scope = branch
        # float8: JSON numbers (a Decimal would be sent as a string)
        sums = ", ".join(f"sum({c})::float8 AS {c}" for c in METRIC_COLUMNS)
        rows = conn.execute(
            f"SELECT to_char(month, 'YYYY-MM') AS month, {sums}, count(DISTINCT branch_code) AS branches"
            " FROM metrics_monthly WHERE product_code = %(p)s"
            " AND (%(start)s::text IS NULL OR month >= to_date(%(start)s, 'YYYY-MM'))"
            " AND (%(end)s::text IS NULL OR month <= to_date(%(end)s, 'YYYY-MM'))"
            " AND " + branch_in_scope("branch_code") +
            " GROUP BY month ORDER BY month",
            {"p": product, "start": start, "end": end, "scope": scope},
        ).fetchall()
        if not rows and conn.execute("SELECT 1 FROM products WHERE code = %(p)s", {"p": product}).fetchone() is None:
            raise HTTPException(404, f"产品目录中没有编码为 {product} 的产品 (no such product)")
    label = who.scope_label if branch is None else branch
    return {"product": product, "scope": label, "months": rows}


# Alerts: the list, one alert's explanation and dispositions (risk and admin users).


class DispositionRequest(BaseModel):
    disposition: str = Field(description="confirmed（确认）| false_alarm（误报）| action_taken（已采取措施）")
    note: str = Field(default="", max_length=2000, description="备注，例如误报原因（可选）")


@router.get("/alerts", tags=["风险预警"])
def alerts_list(
    request: Request,
    who: Who,
    month: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="月份 YYYY-MM（默认最近有预警的月份）")] = None,
    level: Annotated[str | None, Query(description="suspend | watch | exit_review")] = None,
    product: Annotated[str | None, Query(description="产品编码")] = None,
    include_inactive: Annotated[bool, Query(alias="all", description="包括已失效的预警")] = False,
) -> dict[str, Any]:
    """Alert events of a month (bank-wide figures only for bank-wide roles), and the state of the
    alert rules: where they come from and any error in the rules file (the previous rules stay)."""
    from tools.alert_rules import rulebook
    from tools.alerts import list_alerts

    with request.app.state.db.connection() as conn:
        result = list_alerts(ToolContext(conn=conn, principal=who), month=month, level=level, product=product,
                             active=None if include_inactive else True)
        result["rules"] = rulebook(request.app.state.db.settings).current(conn).status()
    return result


@router.get("/alerts/{alert_id}", tags=["风险预警"])
def alert_detail(alert_id: int, request: Request, who: Who) -> dict[str, Any]:
    """Why an alert fired: rule and threshold, value and six-month trend, contributing loans
    (masked), branch concentration and next steps — limited to your branch scope."""
    from tools.alerts import explain_alert

    with request.app.state.db.connection() as conn:
        result = explain_alert(ToolContext(conn=conn, principal=who), alert_id=alert_id)
    if result["status"] == "not_found":
        raise HTTPException(404, f"没有编号为 #{alert_id} 的预警 (no such alert)")
    return mask_data(result)  # type: ignore[no-any-return]


@router.post("/alerts/{alert_id}/disposition", tags=["风险预警"])
def alert_disposition(alert_id: int, body: DispositionRequest, request: Request, who: Who) -> dict[str, Any]:
    """Record a disposition of an alert (risk and admin users)."""
    from tools.alerts import AlertNotFound, record_disposition

    require(who, "dispose_alert")
    with request.app.state.db.connection() as conn:
        try:
            return record_disposition(conn, alert_id, who, body.disposition, body.note, channel="api")
        except AlertNotFound as exc:
            raise HTTPException(404, str(exc)) from exc


# Admin: add documents to the knowledge base.

SAFE_NAME = re.compile(r"[^\w.\-\u4e00-\u9fff（）()]+")


@router.post("/ingest", tags=["知识库"])
async def ingest(
    request: Request,
    who: Who,
    files: Annotated[list[UploadFile], File(description="文档：pdf、docx、xlsx、csv、md、txt、html")],
    doc_type: Annotated[str | None, Form(description="manual|faq|compliance|notice|regulation|other")] = None,
    access: Annotated[str, Form(description="public|internal|restricted")] = "internal",
    products: Annotated[str, Form(description="涉及的产品编码，逗号分隔")] = "",
) -> dict[str, Any]:
    """Add documents to the knowledge base (admins). The same file name again replaces the
    earlier upload when its content changed; a file that cannot be read is reported and skipped."""
    require(who, "ingest")
    from ingest.knowledge import KnowledgeIndexer, sources_from_paths
    from retrieval.embedders import make_embedder

    settings = request.app.state.db.settings
    folder = Path(settings.home) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    for upload in files:
        name = SAFE_NAME.sub("_", Path(upload.filename or "").name).strip("._")
        if not name:
            raise HTTPException(400, "上传的文件没有文件名 (file without a name)")
        target = folder / name
        target.write_bytes(await upload.read())
        saved.append(target)
    codes = [c.strip() for c in products.split(",") if c.strip()]
    sources = sources_from_paths(saved, doc_type=doc_type, products=codes, access=access)
    started = time.perf_counter()

    def index() -> Any:
        return KnowledgeIndexer(request.app.state.db, make_embedder(settings)).index(sources)

    report = await run_in_threadpool(index)
    log.info("ingest by %s: %d files in %.1f s", who.user_id, len(saved), time.perf_counter() - started)
    return {
        "added": report.added, "updated": report.updated, "unchanged": report.unchanged,
        "chunks": report.chunks, "failed": [{"file": Path(p).name, "message": m} for p, m in report.failed],
        "seconds": round(time.perf_counter() - started, 2),
    }


# Element plans: drafts designed from a product idea (designers and admins).


class PlanRequest(BaseModel):
    text: str = Field(min_length=1, max_length=2000, description="产品设想（中文），例如「面向小微企业主的3年期经营贷，额度最高300万」")
    seed: int = Field(default=20261123, description="沙盘模拟的随机种子：同一种子结果相同")


def _draft_errors(exc: PuyiError) -> HTTPException:
    from tools.plan_drafts import DraftForbidden, DraftNotFound

    if isinstance(exc, DraftForbidden):
        return HTTPException(403, str(exc))
    if isinstance(exc, DraftNotFound):
        return HTTPException(404, str(exc))
    return HTTPException(400, str(exc))


@router.get("/plans", tags=["要素方案"])
def plans_list(request: Request, who: Who, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    """The bank's element-plan drafts, newest first (designers and admins)."""
    from tools.plan_drafts import list_drafts

    require(who, "draft_plan")
    with request.app.state.db.connection() as conn:
        return list_drafts(conn, who, limit=limit)


@router.post("/plans", tags=["要素方案"], status_code=201)
def plans_create(body: PlanRequest, request: Request, who: Who) -> dict[str, Any]:
    """Design element plans for a product idea (requirement, evidence, pricing, 保守/均衡/进取 plans
    and the A/B sandbox) and save them as a draft in the 创设 status (designers and admins)."""
    from agents.plan_route import design_plans  # the same design step as the chat route
    from tools.plan_drafts import save_draft

    require(who, "draft_plan")
    with request.app.state.db.connection() as conn:
        ctx = ToolContext(conn=conn, principal=who, kb=request.app.state.assistant.kb, channel="api")
        try:
            design = design_plans(ctx, body.text, seed=body.seed)
            draft = save_draft(conn, who, body.text, design, body.seed) if design.get("plans") else None
        except PuyiError as exc:
            raise _draft_errors(exc) from exc
    return mask_data({"draft": draft, "design": design})  # type: ignore[no-any-return]


@router.get("/plans/{code}", tags=["要素方案"])
def plans_detail(code: str, request: Request, who: Who) -> dict[str, Any]:
    """One draft in full: requirement, evidence, pricing, plans, simulation and warnings."""
    from tools.plan_drafts import get_draft

    require(who, "draft_plan")
    with request.app.state.db.connection() as conn:
        try:
            return mask_data(get_draft(conn, who, code))  # type: ignore[no-any-return]
        except PuyiError as exc:
            raise _draft_errors(exc) from exc


@router.get("/plans/{code}/export", tags=["要素方案"], response_class=Response)
def plans_export(
    code: str, request: Request, who: Who,
    fmt: Annotated[str, Query(alias="format", pattern="^(md|docx)$", description="md（Markdown）或 docx（Word）")] = "md",
) -> Response:
    """A draft as a Markdown or Word document (download)."""
    from tools.plan_drafts import get_draft
    from tools.plan_export import export_draft

    require(who, "draft_plan")
    with request.app.state.db.connection() as conn:
        try:
            content, name, media = export_draft(mask_data(get_draft(conn, who, code)), fmt)
        except PuyiError as exc:
            raise _draft_errors(exc) from exc
    return Response(content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})
