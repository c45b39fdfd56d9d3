"""The web chat: one HTML page and its static files (plain HTML, JavaScript and CSS, nothing from a
CDN), served by the same process as the API it calls."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"

# The page runs only its own files: no inline script, no other origin, not framed by anyone.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _Revalidated(StaticFiles):
    """Static files the browser revalidates (ETag) on every load, so an upgrade shows at once."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


def mount_webchat(app: FastAPI) -> None:
    """GET / and /chat: the chat page; /static/…: its scripts, styles and icon."""
    index = STATIC_DIR / "index.html"

    def page() -> FileResponse:
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    for path in ("/", "/chat"):
        app.add_api_route(path, page, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/static", _Revalidated(directory=STATIC_DIR), name="static")
