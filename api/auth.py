"""Who is calling: every endpoint takes the caller from a per-user token (Bearer, or the API key
of OpenAI-compatible clients) and applies that person's role."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, HTTPException, Request

from core.access import Principal, load_principal
from core.errors import UnknownUser
from core.tokens import user_for_token


def principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The signed-in user (FastAPI dependency)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "需要登录：请在 Authorization 头中提供 Bearer 令牌")
    with request.app.state.db.connection() as conn:
        user_id = user_for_token(conn, token.strip())
        if user_id is None:
            raise HTTPException(401, "令牌无效或已过期，请重新获取 (puyi users token)")
        try:
            return load_principal(conn, user_id)
        except UnknownUser as exc:
            raise HTTPException(401, str(exc)) from exc


def require(who: Principal, action: str) -> None:
    if not who.may(action):
        raise HTTPException(403, f"您的角色（{who.role}）无权执行此操作 (forbidden: {action})")
