"""The HTTP server: a FastAPI app whose lifespan owns the database pool, the assistant and the
WeCom workers. Errors always have one shape, `{"error": {"code": …, "message": …}}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agents import memory
from agents.history import NotYours
from agents.service import Assistant
from api import openai_compat, routes, wecom
from api.webchat import mount_webchat
from core.db import Database, open_database
from core.errors import BadQuestion, DatabaseUnavailable, PuyiError, UnknownUser
from core.ratelimit import RateLimited
from core.settings import Settings, get_settings
from tools.alert_push import AlertScheduler

log = logging.getLogger("puyi.server")

STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 413: "too_large", 503: "unavailable"}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


class BodyLimit:
    """Refuses bodies over the limit before they are read into memory: by Content-Length when
    sent, and by counting otherwise (chunked uploads)."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int, upload_paths: tuple[str, ...]) -> None:
        self.app, self.limit, self.upload_limit, self.upload_paths = app, limit, upload_limit, upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"] in self.upload_paths else self.limit
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            log.warning("refused %s %s: body of %s bytes over %d", scope["method"], scope["path"], length.decode(), limit)
            await error_response(413, "too_large", f"请求体过大（上限 {limit} 字节）(request too large)")(scope, receive, send)
            return
        seen = 0
        refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit and not refused:
                # Answer 413 ourselves and tell the app the client went away: the app's own
                # body parser would otherwise turn any error raised here into a 400.
                refused = True
                log.warning("refused %s %s: streamed body over %d bytes", scope["method"], scope["path"], limit)
                await error_response(413, "too_large", f"请求体过大（上限 {limit} 字节）(request too large)")(
                    scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, guarded_send)


def create_app(
    settings: Settings | None = None, db: Database | None = None, assistant: Assistant | None = None
) -> FastAPI:
    """Build the app; tests pass their own database and assistant, `puyi serve` passes nothing."""
    conf = settings or (db.settings if db is not None else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_db = db is None
        database: Database = db if db is not None else await run_in_threadpool(open_database, conf)
        app.state.settings = conf
        app.state.db = database
        app.state.assistant = assistant or Assistant(database)
        app.state.wecom = wecom.WeComChannel(conf, database, app.state.assistant)
        await app.state.wecom.start()
        # Every alert_interval_minutes: evaluate the alert rules and push new alerts (one process
        # at a time across workers and replicas: an advisory lock in PostgreSQL).
        app.state.alerts = AlertScheduler(conf, database, on_queued=app.state.wecom.notify_outbox)
        await app.state.alerts.start()
        # Conversations untouched for memory_ttl_days are forgotten now and then daily.
        app.state.memory_expiry = asyncio.create_task(memory.expire_daily(database), name="memory-expiry")
        try:
            yield
        finally:
            # The server has stopped taking requests and finished those in flight; the workers
            # finish the message in hand (anything unfinished stays in PostgreSQL for the next start).
            app.state.memory_expiry.cancel()
            await app.state.alerts.stop()
            await app.state.wecom.stop()
            if own_db:
                database.close()

    app = FastAPI(
        title="谱翼 Puyi",
        version="0.1.0",
        description="行内产品管理助手：网页对话、HTTP API、OpenAI 兼容接口与企业微信回调。",
        lifespan=lifespan,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404 and exc.detail == "Not Found":
            return error_response(404, "not_found", f"没有这个地址：{request.url.path} (not found)")
        if exc.status_code == 405:
            return error_response(405, "method_not_allowed", f"{request.method} 不适用于 {request.url.path}")
        return error_response(exc.status_code, STATUS_CODES.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(422, "invalid_request", "请求格式不正确：" + problems)

    @app.exception_handler(PuyiError)
    async def puyi_error(request: Request, exc: PuyiError) -> JSONResponse:
        return puyi_error_response(exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "服务器内部错误，请稍后再试 (internal error)")

    @app.get("/healthz", tags=["运维"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["运维"])
    def readyz(request: Request) -> Any:
        """The database answers: the instance can take traffic."""
        try:
            with request.app.state.db.connection() as conn:
                conn.execute("SELECT 1")
        except Exception:
            return error_response(503, "not_ready", "数据库不可用 (database unavailable)")
        return {"status": "ready"}

    app.include_router(routes.router)
    app.include_router(openai_compat.router)
    app.include_router(wecom.router)
    mount_webchat(app)
    app.add_middleware(
        BodyLimit, limit=conf.max_body_bytes, upload_limit=conf.max_upload_bytes, upload_paths=("/api/ingest",)
    )
    return app


def puyi_error_response(exc: PuyiError) -> JSONResponse:
    """The HTTP status and code for an expected failure."""
    if isinstance(exc, BadQuestion):
        return error_response(400, "bad_question", str(exc))
    if isinstance(exc, NotYours):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, UnknownUser):
        return error_response(401, "unauthorized", str(exc))
    if isinstance(exc, DatabaseUnavailable):
        return error_response(503, "database_unavailable", str(exc))
    if isinstance(exc, RateLimited):
        response = error_response(429, "rate_limited", str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    return error_response(400, "bad_request", str(exc))
