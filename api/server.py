"""The HTTP server: a FastAPI app whose lifespan owns the database pool and the assistant.

Errors always have one shape, `{"error": {"code": …, "message": …}}`, whatever raised them.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from agents.service import Assistant
from core.access import Principal, load_principal
from core.db import Database, open_database
from core.errors import BadQuestion, DatabaseUnavailable, PuyiError, UnknownUser
from core.settings import Settings, get_settings
from core.tokens import user_for_token


class ChatRequest(BaseModel):
    message: str = Field(description="用户的问题（中文）")
    session_id: str | None = Field(default=None, description="会话编号；不给则开始新会话")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "需要登录：请在 Authorization 头中提供 Bearer 令牌")
    with request.app.state.db.connection() as conn:
        user_id = user_for_token(conn, token.strip())
        if user_id is None:
            raise HTTPException(401, "令牌无效或已过期，请重新获取 (puyi users token)")
        try:
            return load_principal(conn, user_id)
        except UnknownUser as exc:
            raise HTTPException(401, str(exc)) from exc



def create_app(
    settings: Settings | None = None, db: Database | None = None, assistant: Assistant | None = None
) -> FastAPI:
    """Build the app; tests pass their own database and assistant, `puyi serve` passes nothing."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_db = db is None
        database: Database = db if db is not None else await run_in_threadpool(
            open_database, settings or get_settings()
        )
        app.state.db = database
        app.state.assistant = assistant or Assistant(database)
        try:
            yield
        finally:
            if own_db:
                database.close()

    app = FastAPI(title="谱翼 Puyi", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", "请求格式不正确：" + "; ".join(e["msg"] for e in exc.errors()))

    @app.exception_handler(PuyiError)
    async def puyi_error(request: Request, exc: PuyiError) -> JSONResponse:
        if isinstance(exc, BadQuestion):
            return _error(400, "bad_question", str(exc))
        if isinstance(exc, DatabaseUnavailable):
            return _error(503, "database_unavailable", str(exc))
        return _error(400, "error", str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal_error", "服务器内部错误，请稍后再试 (internal error)")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(request: Request) -> Any:
        """The database answers: the instance can take traffic."""
        try:
            with request.app.state.db.connection() as conn:
                conn.execute("SELECT 1")
        except Exception:
            return _error(503, "not_ready", "数据库不可用 (database unavailable)")
        return {"status": "ready"}

    @app.post("/api/chat")
    def chat(body: ChatRequest, request: Request, who: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
        """Ask a question; the answer has the same shape as `puyi ask --json`."""
        answer = request.app.state.assistant.ask(body.message, session_id=body.session_id, principal=who)
        return answer.as_dict()  # type: ignore[no-any-return]

    return app
