"""A local stand-in for the WeCom server API, for tests and `puyi bench serve`.

It implements GET /cgi-bin/gettoken, POST /cgi-bin/message/send and POST /cgi-bin/media/upload
(images: a multipart `media` part that must be a PNG; an image message must use a media_id it
issued) closely enough for Puyi's client: access tokens are checked, every request is recorded,
and switches on `app.state` make it fail the way WeCom does:

    app.state.fail_next = 2            # the next 2 sends fail …
    app.state.fail_mode = "http500"    # … with HTTP 500 ("busy": errcode -1, "ratelimit": 45009)
    app.state.down = True              # every call answers 503 until set back to False
    app.state.delay = 0.2              # each send takes this long (to make senders overlap)
    app.state.invalid_users = {"bob"}  # like a user outside the app's visible range
    app.state.upload_fail_next = 1     # the next upload fails (in fail_mode's way)
    expire_tokens(app)                 # issued tokens answer 42001 (expired)

Unlike WeCom it does not drop duplicate messages: tests count exactly what was sent.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from eval.live import serve

MARKDOWN_LIMIT = 2048
IMAGE_LIMIT = 2 * 1024 * 1024  # what WeCom's media/upload takes for an image


def create_standin(corp_id: str, secret: str, token_ttl: int = 7200) -> FastAPI:
    app = FastAPI(title="WeCom API stand-in")
    state = app.state
    state.corp_id, state.secret, state.token_ttl = corp_id, secret, token_ttl
    state.lock = threading.Lock()
    state.requests = []  # every call: {"path", "query", "json", "at"}
    state.messages = []  # the accepted message/send bodies, in order
    state.tokens = {}  # token -> expiry (time.time())
    state.fail_next = 0
    state.fail_mode = "http500"
    state.down = False
    state.invalid_users = set()
    state.delay = 0.0
    state.upload_fail_next = 0
    state.uploads = []  # accepted uploads: {"media_id", "filename", "content_type", "data"}

    def record(request: Request, body: Any) -> None:
        with state.lock:
            state.requests.append({"path": request.url.path, "query": dict(request.query_params),
                                   "json": body, "at": time.time()})

    @app.get("/cgi-bin/gettoken")
    async def gettoken(request: Request) -> Any:
        record(request, None)
        if state.down:
            return JSONResponse({"errcode": -1, "errmsg": "stand-in is down"}, status_code=503)
        q = request.query_params
        if q.get("corpid") != state.corp_id:
            return {"errcode": 40013, "errmsg": "invalid corpid"}
        if q.get("corpsecret") != state.secret:
            return {"errcode": 40001, "errmsg": "invalid credential"}
        token = "standin-" + uuid.uuid4().hex
        with state.lock:
            state.tokens[token] = time.time() + state.token_ttl
        return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": state.token_ttl}

    def refusal(request: Request, counter: str) -> Any:
        """What a call gets when the stand-in is down, set to fail it, or given a bad token; else None."""
        if state.down:
            return JSONResponse({"errcode": -1, "errmsg": "stand-in is down"}, status_code=503)
        with state.lock:
            failing = getattr(state, counter) > 0
            if failing:
                setattr(state, counter, getattr(state, counter) - 1)
            expiry = state.tokens.get(request.query_params.get("access_token", ""))
        if failing:
            if state.fail_mode == "busy":
                return {"errcode": -1, "errmsg": "system busy"}
            if state.fail_mode == "ratelimit":
                return {"errcode": 45009, "errmsg": "api freq out of limit"}
            return JSONResponse({"errcode": -1, "errmsg": "internal error"}, status_code=500)
        if expiry is None:
            return {"errcode": 40014, "errmsg": "invalid access_token"}
        if expiry < time.time():
            return {"errcode": 42001, "errmsg": "access_token expired"}
        return None

    @app.post("/cgi-bin/message/send")
    async def send(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            body = None
        record(request, body)
        if state.delay:
            await asyncio.sleep(state.delay)
        refused = refusal(request, "fail_next")
        if refused is not None:
            return refused
        problem = _check_message(body)
        if problem is None and body.get("msgtype") == "image":
            with state.lock:
                issued = {u["media_id"] for u in state.uploads}
            if body["image"].get("media_id") not in issued:
                problem = {"errcode": 40007, "errmsg": "invalid media_id"}
        if problem is not None:
            return problem
        users = body["touser"].split("|")
        invalid = [u for u in users if u in state.invalid_users]
        if len(invalid) == len(users):
            return {"errcode": 81013, "errmsg": "user & party & tag all invalid"}
        with state.lock:
            state.messages.append(body)
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "msgid": uuid.uuid4().hex}
        if invalid:
            answer["invaliduser"] = "|".join(invalid)
        return answer

    @app.post("/cgi-bin/media/upload")
    async def upload(request: Request) -> Any:
        form = await request.form()
        media = form.get("media")
        record(request, None)
        refused = refusal(request, "upload_fail_next")
        if refused is not None:
            return refused
        if request.query_params.get("type") != "image":
            return {"errcode": 40004, "errmsg": "invalid media type"}
        if not isinstance(media, UploadFile) or not media.filename:
            return {"errcode": 41005, "errmsg": "media data missing"}
        data = await media.read()
        if data[:8] != b"\x89PNG\r\n\x1a\n":
            return {"errcode": 40005, "errmsg": "invalid file type"}
        if len(data) > IMAGE_LIMIT:
            return {"errcode": 40006, "errmsg": "invalid file size"}
        media_id = "media-" + uuid.uuid4().hex
        with state.lock:
            state.uploads.append({"media_id": media_id, "filename": media.filename,
                                  "content_type": media.content_type, "data": data})
        return {"errcode": 0, "errmsg": "ok", "type": "image", "media_id": media_id,
                "created_at": str(int(time.time()))}

    return app


def _check_message(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, dict) or not isinstance(body.get("touser"), str) or not body["touser"]:
        return {"errcode": 40058, "errmsg": "touser missing"}
    msg_type = body.get("msgtype")
    payload = body.get(msg_type) if isinstance(msg_type, str) else None
    if not isinstance(payload, dict) or not isinstance(body.get("agentid"), int):
        return {"errcode": 40058, "errmsg": "msgtype, its payload or agentid missing"}
    if msg_type in ("markdown", "text"):
        content = payload.get("content")
        if not isinstance(content, str) or not content:
            return {"errcode": 44004, "errmsg": "empty content"}
        if len(content.encode()) > MARKDOWN_LIMIT:
            return {"errcode": 40058, "errmsg": "content exceed max length"}
    return None


def reset(app: FastAPI) -> None:
    """Forget what was recorded and clear every failure switch (issued tokens stay valid)."""
    with app.state.lock:
        app.state.requests.clear()
        app.state.messages.clear()
        app.state.fail_next, app.state.fail_mode, app.state.down = 0, "http500", False
        app.state.invalid_users, app.state.delay = set(), 0.0
        app.state.upload_fail_next = 0
        app.state.uploads.clear()


def expire_tokens(app: FastAPI) -> None:
    with app.state.lock:
        app.state.tokens = {t: 0.0 for t in app.state.tokens}


def sent_messages(app: FastAPI) -> list[dict[str, Any]]:
    """A copy of the accepted message/send bodies."""
    with app.state.lock:
        return list(app.state.messages)


def uploads(app: FastAPI) -> list[dict[str, Any]]:
    """A copy of the accepted image uploads."""
    with app.state.lock:
        return list(app.state.uploads)


def send_requests(app: FastAPI) -> list[dict[str, Any]]:
    """A copy of every message/send call, accepted or not."""
    with app.state.lock:
        return [r for r in app.state.requests if r["path"] == "/cgi-bin/message/send"]


@contextmanager
def run_standin(corp_id: str = "ww-standin", secret: str = "standin-secret") -> Iterator[tuple[str, FastAPI]]:
    """Serve a stand-in on a free loopback port in a background thread; yields (base URL, app)."""
    app = create_standin(corp_id, secret)
    with serve(app) as url:
        yield url, app
