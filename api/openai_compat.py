"""An OpenAI-compatible face (`/v1/models`, `/v1/chat/completions`) so the official `openai` SDK
and existing chat front ends can talk to Puyi. The API key is the person's Puyi token: answers
are scoped and masked exactly as in the web chat.

Chat front ends resend the whole conversation each turn; the last user message is the question,
and the conversation is the `session_id` given in the body (extra field) or, failing that, one
derived from the user and the conversation's first message, so follow-ups stay in one session.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth import principal
from api.routes import open_turn
from core.access import Principal
from core.errors import PuyiError

router = APIRouter(prefix="/v1", tags=["OpenAI 兼容接口"])
MODEL_ID = "puyi"
CREATED = 1_763_856_000  # fixed: the model list should not change between calls


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = MODEL_ID
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    user: str | None = None
    session_id: str | None = Field(default=None, description="谱翼会话编号（扩展字段，可选）")


# The SDK sends its api_key as a Bearer token: the same sign-in as every other endpoint.
Who = Annotated[Principal, Depends(principal)]


@router.get("/models")
def models(who: Who) -> dict[str, Any]:
    """The one model Puyi offers."""
    return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": CREATED, "owned_by": "puyi"}]}


def _session(body: CompletionRequest, who: Principal) -> str:
    if body.session_id:
        return body.session_id
    first = next((m.text() for m in body.messages if m.role == "user"), "")
    digest = hashlib.sha256(f"{who.user_id}\n{first}".encode()).hexdigest()[:24]
    return f"openai:{digest}"


def _chunk(cid: str, created: int, delta: dict[str, Any], finish: str | None = None) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: CompletionRequest, request: Request, who: Who) -> Any:
    """Answer the last user message of the conversation, streamed (`stream: true`) or whole."""
    question = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
    assistant = request.app.state.assistant
    session = _session(body, who)
    created = int(time.time())

    if not body.stream:
        answer = await run_in_threadpool(
            assistant.ask, question, session_id=session, principal=who, channel="openai"
        )
        return {
            "id": f"chatcmpl-{answer.turn_id}", "object": "chat.completion", "created": created, "model": MODEL_ID,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "puyi": {"route": answer.route, "citations": answer.citations, "session_id": answer.session_id,
                     "turn_id": answer.turn_id},
        }

    turn = await open_turn(assistant, question=question, session_id=session, principal=who, channel="openai")

    async def stream() -> AsyncIterator[str]:
        cid = f"chatcmpl-{session[-12:]}-{created}"
        yield _chunk(cid, created, {"role": "assistant", "content": ""})
        sent = ""  # an LLM's streamed tokens, forwarded as they come
        try:
            async for kind, payload in turn:
                if kind == "delta":
                    sent += payload
                    yield _chunk(cid, created, {"content": payload})
                elif kind == "answer":
                    # The final answer is the checked one: send what the tokens did not cover, or,
                    # when the check changed streamed text, the checked answer in full after them.
                    rest = payload.answer[len(sent):] if payload.answer.startswith(sent) else (
                        "\n\n---\n\n（以下为核对后的回答）\n\n" + payload.answer)
                    for line in rest.splitlines(keepends=True):
                        yield _chunk(cid, created, {"content": line})
            yield _chunk(cid, created, {}, "stop")
        except PuyiError as exc:
            yield _chunk(cid, created, {"content": f"\n\n（出错：{exc}）"}, "stop")
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

