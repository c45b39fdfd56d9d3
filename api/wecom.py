"""WeCom (企业微信) channel: the callback URL, and the workers that answer and send.

WeCom drops a callback that takes 5 s and retries it 3 times, so the POST handler only verifies,
decrypts and stores the message (`wecom_inbox`, whose primary key MsgId makes every retry, restart
and replica see it once), then answers 200 at once. The answerer claims stored messages with a lease,
asks the assistant in a worker thread and, in one transaction, queues the reply in the outbox and
marks the message answered. The sender pushes the outbox through the WeCom API (`api.push`).
Everything in between lives in PostgreSQL: a process that stops or crashes loses nothing, and any
process on the same database picks the work up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import xmltodict
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from api.push import OutboxSender, push_markdown
from api.wecom_client import WeComClient
from core.access import load_principal
from core.db import Database
from core.errors import DatabaseUnavailable, PuyiError, UnknownUser
from core.masking import scrub_text

log = logging.getLogger("puyi.wecom")

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # MsgId: a 64-bit integer in practice
_USER = re.compile(r"[^|\s]{1,64}")  # userid: 1-64 characters; '|' separates recipients

router = APIRouter(tags=["企业微信"])

NO_ANSWER_REPLY = "抱歉，谱翼暂时没有找到可以回答的内容，请换个说法再问。"
NOT_TEXT_REPLY = "谱翼目前只能阅读文字消息，请用文字描述您的问题。"
UNKNOWN_USER_REPLY = "您还未开通谱翼，暂时无法使用。如需开通，请联系系统管理员为您的企业微信账号开通权限。"
ERROR_REPLY = "抱歉，谱翼处理您的问题时出错了，请稍后再试；如仍有问题，请联系系统管理员。"


def _poll_seconds(settings: Any) -> float:
    return float(min(max(settings.wecom_poll_seconds, 0.05), 60.0))


_TABLE_ROW = re.compile(r"^\s*\|(.+)\|\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def wecom_markdown(text: str) -> str:
    """WeCom's application markdown has no tables: each table row becomes one line of
    `header：value` pairs, so figures stay readable on a phone."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if _TABLE_ROW.match(lines[i]) and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1]):
            headers = [c.strip() for c in _TABLE_ROW.match(lines[i]).group(1).split("|")]  # type: ignore[union-attr]
            i += 2
            while i < len(lines) and (row := _TABLE_ROW.match(lines[i])):
                cells = [c.strip() for c in row.group(1).split("|")]
                out.append("> " + "；".join(f"{h}：{c}" if h else c for h, c in zip(headers, cells, strict=False)))
                i += 1
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def make_crypto(settings: Any) -> WeChatCrypto:
    try:
        return WeChatCrypto(settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id)
    except Exception as exc:  # the library asserts on the key length, base64 raises on bad text
        raise PuyiError(
            "企业微信 EncodingAESKey 无效：应为 43 个字符 (PUYI_WECOM_AES_KEY must be the 43-character EncodingAESKey)"
        ) from exc


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """WeCom's msg_signature: sha1 of the four strings sorted and joined."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode()).hexdigest()


# -- the callback URL ---------------------------------------------------------------------------


def _channel(request: Request) -> WeComChannel:
    channel = getattr(request.app.state, "wecom", None)
    if not isinstance(channel, WeComChannel) or not channel.enabled:
        raise HTTPException(404, "企业微信未配置 (WeCom is not configured on this server)")
    return channel


def _client_host(request: Request) -> str:
    return request.client.host if request.client else "?"


def _authenticate(request: Request, channel: WeComChannel, msg_signature: str, timestamp: str, nonce: str,
                  encrypt: str) -> None:
    """Refuse anything not signed with our token, and signed callbacks too old to be fresh."""
    settings = channel.settings
    expected = signature(settings.wecom_token, timestamp, nonce, encrypt)
    if not hmac.compare_digest(expected, msg_signature.lower()):
        log.warning("wecom callback refused: bad msg_signature from %s (wrong PUYI_WECOM_TOKEN, or not WeCom)",
                    _client_host(request))
        raise HTTPException(403, "签名校验失败 (invalid signature)")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise HTTPException(400, "timestamp 参数无效 (invalid timestamp)") from None
    max_age = settings.wecom_max_age_seconds
    if max_age > 0 and abs(time.time() - sent_at) > max_age:
        log.warning("wecom callback refused as a replay: timestamp %s is more than %d s from now (from %s)",
                    timestamp, max_age, _client_host(request))
        raise HTTPException(403, "回调已过期，疑似重放 (callback timestamp too old: replay refused)")


def _decrypt(request: Request, channel: WeComChannel, field: str, decrypt: Callable[[], str]) -> str:
    """wechatpy's decryption of `field`: encrypted for another corp → 403, garbage → 400, logged."""
    try:
        return decrypt()
    except (InvalidCorpIdException, InvalidSignatureException):
        log.warning("wecom callback refused: %s is not for corp %s (check PUYI_WECOM_AES_KEY / CORP_ID)",
                    field, channel.settings.wecom_corp_id)
        raise HTTPException(403, "无法解密：CorpID 或 EncodingAESKey 不符 (cannot decrypt for this corp)") from None
    except Exception:
        log.warning("wecom callback refused: %s cannot be decrypted (from %s)", field, _client_host(request))
        raise HTTPException(400, f"{field} 无法解密 (malformed {field})") from None


def _missing(**params: str | None) -> None:
    absent = [name for name, value in params.items() if not value]
    if absent:
        raise HTTPException(400, f"缺少参数：{', '.join(absent)} (missing query parameters)")


@router.get("/wecom/callback", response_class=PlainTextResponse, summary="企业微信回调地址验证")
async def verify_url(
    request: Request,
    msg_signature: str | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
    echostr: str | None = None,
) -> PlainTextResponse:
    """WeCom checks the URL when it is saved: answer with the decrypted echostr."""
    channel = _channel(request)
    _missing(msg_signature=msg_signature, timestamp=timestamp, nonce=nonce, echostr=echostr)
    assert msg_signature and timestamp and nonce and echostr
    echostr = echostr.replace(" ", "+")  # a '+' sent unescaped arrives as a space; base64 has none
    _authenticate(request, channel, msg_signature, timestamp, nonce, echostr)
    plain = _decrypt(request, channel, "echostr", lambda: channel.crypto.check_signature(
        msg_signature.lower(), timestamp, nonce, echostr))
    log.info("wecom callback URL verified")
    return PlainTextResponse(plain)


def _xml_fields(data: str | bytes) -> dict[str, Any]:
    """The children of <xml>…</xml>; HTTPException 400 for anything else. xmltodict leaves
    entities disabled, so no entity expansion tricks."""
    try:
        doc = xmltodict.parse(data)
    except Exception:
        raise HTTPException(400, "XML 格式错误 (malformed XML)") from None
    fields = doc.get("xml") if isinstance(doc, dict) else None
    if not isinstance(fields, dict):
        raise HTTPException(400, "XML 格式错误：缺少 <xml> 根节点 (malformed XML)")
    return fields


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    return value.strip() if isinstance(value, str) else ""


@router.post("/wecom/callback", summary="企业微信消息回调")
async def receive(
    request: Request,
    msg_signature: str | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> Response:
    """Verify, decrypt and store the message, then answer 200 with an empty body at once."""
    channel = _channel(request)
    _missing(msg_signature=msg_signature, timestamp=timestamp, nonce=nonce)
    assert msg_signature and timestamp and nonce
    encrypt = _text(_xml_fields(await request.body()), "Encrypt")
    if not encrypt:
        raise HTTPException(400, "缺少 Encrypt 字段 (no <Encrypt> in the callback)")
    _authenticate(request, channel, msg_signature, timestamp, nonce, encrypt)
    plain = _decrypt(request, channel, "Encrypt", lambda: channel.crypto.decrypt_message(
        {"Encrypt": encrypt}, msg_signature.lower(), timestamp, nonce))
    message = _xml_fields(plain)
    msg_type = _text(message, "MsgType").lower()
    msg_id = _text(message, "MsgId")
    from_user = _text(message, "FromUserName")
    if msg_type == "event" or not msg_type:
        # subscribe, enter_agent, …: nothing to answer.
        log.info("wecom: event %r from %s ignored", _text(message, "Event"), from_user or "?")
        return Response(status_code=200)
    if not msg_id or not from_user:
        log.info("wecom: %s message without MsgId or sender ignored", msg_type)
        return Response(status_code=200)
    if not _ID.fullmatch(msg_id) or not _USER.fullmatch(from_user) or from_user.lower() == "@all":
        # WeCom's ids never look like this; they become outbox keys and recipients, so refuse them.
        log.warning("wecom callback refused: unexpected MsgId %r or FromUserName %r", msg_id[:80], from_user[:80])
        raise HTTPException(400, "MsgId 或 FromUserName 格式异常 (unexpected MsgId or FromUserName)")
    # PostgreSQL text cannot hold NUL; nobody types one.
    content = _text(message, "Content").replace("\x00", "") if msg_type == "text" else ""
    try:
        new = await run_in_threadpool(
            channel.receive, msg_id, from_user, _text(message, "AgentID") or None, msg_type, content)
    except Exception:
        # Not stored: a non-200 makes WeCom retry, and the retry may find the database back.
        log.exception("wecom: could not store message %s from %s", msg_id, from_user)
        raise HTTPException(503, "暂时无法接收消息，请稍后重试 (cannot store the message now)") from None
    if new:
        log.info("wecom: received %s message %s from %s", msg_type, msg_id, from_user)
        channel.notify()
    else:
        log.info("wecom: message %s from %s already received (WeCom retry) — ignored", msg_id, from_user)
    return Response(status_code=200)


# -- the workers --------------------------------------------------------------------------------


class WeComChannel:
    """Owns the answerer and the sender (asyncio tasks that do their blocking work in threads)."""

    def __init__(self, settings: Any, db: Database, assistant: Any, client: WeComClient | None = None,
                 poll_seconds: float | None = None) -> None:
        self.settings, self.db, self.assistant = settings, db, assistant
        self.client = client
        self.poll_seconds = poll_seconds if poll_seconds is not None else _poll_seconds(settings)
        self.lease_seconds = 60.0  # a message whose process died is taken again after this
        self.max_attempts = 3  # then the asker gets ERROR_REPLY instead of an answer
        self.retry_seconds = 5.0  # after a failed answer: 5 s, then 10 s
        # Messages answered at once by this process, each in a thread; half the pool, so that
        # callbacks and the sender always find a connection.
        self.concurrency = max(1, min(4, settings.pool_max_size // 2))
        self.stop_timeout = 30.0  # how long stop() lets the job in hand finish
        self.sender: OutboxSender | None = None
        self._crypto: WeChatCrypto | None = None
        self._own_client = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox_event: asyncio.Event | None = None
        self._outbox_event: asyncio.Event | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.wecom_enabled)

    @property
    def crypto(self) -> WeChatCrypto:
        if self._crypto is None:
            self._crypto = make_crypto(self.settings)
        return self._crypto

    async def start(self) -> None:
        if not self.enabled or self._tasks:
            return
        self.crypto  # noqa: B018 - a bad EncodingAESKey stops the server now, not at the first message
        s = self.settings
        if s.wecom_worker == "separate":
            log.info("wecom: callbacks are stored here and answered by `puyi worker`")
            return
        if self.client is None and s.wecom_secret and s.wecom_agent_id:
            try:
                self.client = WeComClient(s.wecom_api_base, s.wecom_corp_id, s.wecom_secret, s.wecom_agent_id)
            except ValueError as exc:
                raise PuyiError(f"PUYI_WECOM_AGENT_ID 应为数字：{s.wecom_agent_id!r} (agent id must be a number)") from exc
            self._own_client = True
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._inbox_event, self._outbox_event = asyncio.Event(), asyncio.Event()
        self._tasks = [asyncio.create_task(self._answer_loop(), name="wecom-answerer")]
        if self.client is None:
            log.warning("wecom: PUYI_WECOM_SECRET or PUYI_WECOM_AGENT_ID unset: messages are answered, "
                        "but the replies stay queued in wecom_outbox until they are set")
        else:
            self.sender = OutboxSender(self.db, self.client)
            self._tasks.append(asyncio.create_task(self._send_loop(), name="wecom-sender"))
        log.info("wecom: channel started (poll every %.2f s)", self.poll_seconds)

    async def stop(self) -> None:
        """Take no new work, let the job in hand finish (up to stop_timeout), then cancel."""
        if not self._tasks:
            return
        self._stopping = True
        self.notify()
        self.notify_outbox()
        _, pending = await asyncio.wait(self._tasks, timeout=self.stop_timeout)
        for task in pending:
            log.warning("wecom: %s did not finish within %.0f s; cancelled (its work stays queued)",
                        task.get_name(), self.stop_timeout)
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._own_client and self.client is not None:
            self.client.close()
            self.client, self._own_client = None, False
        log.info("wecom: channel stopped")

    def notify(self) -> None:
        """A message was stored: wake the answerer (callable from any thread)."""
        self._set(self._inbox_event)

    def notify_outbox(self) -> None:
        """Something was pushed: wake the sender (callable from any thread)."""
        self._set(self._outbox_event)

    def _set(self, event: asyncio.Event | None) -> None:
        if event is None or self._loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            event.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(event.set)

    async def _wait(self, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=self.poll_seconds)

    # -- receiving (called by the POST handler, in a thread) ----------------------------------

    def receive(self, msg_id: str, from_user: str, agent_id: str | None, msg_type: str, content: str) -> bool:
        """Store a message once; False when this MsgId was stored before (a retry, or a replica)."""
        with self.db.connection() as conn:
            row = conn.execute(
                "INSERT INTO wecom_inbox (msg_id, from_user, agent_id, msg_type, content)"
                " VALUES (%(id)s, %(u)s, %(a)s, %(t)s, %(c)s) ON CONFLICT (msg_id) DO NOTHING RETURNING msg_id",
                {"id": msg_id, "u": from_user, "a": agent_id, "t": msg_type, "c": content},
            ).fetchone()
            if row is not None:  # delivered at commit to a `puyi worker` in any process
                conn.execute("SELECT pg_notify('puyi_wecom', 'inbox')")
        return row is not None

    # -- answering ------------------------------------------------------------------------------

    async def _answer_loop(self) -> None:
        assert self._inbox_event is not None
        while not self._stopping:
            self._inbox_event.clear()  # before looking, so a message stored meanwhile wakes us again
            try:
                rows = await asyncio.to_thread(self.claim_messages, self.concurrency)
                if rows:
                    await asyncio.gather(*(asyncio.to_thread(self.handle, row) for row in rows))
                    self.notify_outbox()
                    continue
            except Exception:
                log.exception("wecom answerer: cannot read wecom_inbox; trying again in %.1f s", self.poll_seconds)
            await self._wait(self._inbox_event)

    def claim_messages(self, limit: int) -> list[dict[str, Any]]:
        """Lease up to `limit` stored messages to this process. A message whose lease ran out (its
        process stopped or crashed) is taken again. Each person's messages are answered one at a
        time, oldest first, so that a conversation stays in order across processes."""
        # A MATERIALIZED CTE runs the pick once (see OutboxSender._claim: a sub-select in WHERE
        # may be rescanned and then lease more than `limit` messages).
        with self.db.connection() as conn:
            return conn.execute(
                "WITH pick AS MATERIALIZED (SELECT c.msg_id FROM wecom_inbox c"
                "   WHERE c.status = 'received' AND (c.lease_until IS NULL OR c.lease_until < now())"
                "     AND NOT EXISTS (SELECT 1 FROM wecom_inbox e WHERE e.from_user = c.from_user"
                "                     AND e.status = 'received' AND (e.received_at, e.msg_id) < (c.received_at, c.msg_id))"
                "   ORDER BY c.received_at, c.msg_id FOR UPDATE OF c SKIP LOCKED LIMIT %(n)s)"
                " UPDATE wecom_inbox i SET lease_until = now() + make_interval(secs => %(lease)s),"
                " attempts = i.attempts + 1 FROM pick WHERE i.msg_id = pick.msg_id"
                " RETURNING i.msg_id, i.from_user, i.msg_type, i.content, i.attempts",
                {"lease": self.lease_seconds, "n": limit},
            ).fetchall()

    def handle(self, row: dict[str, Any]) -> None:
        """Answer one claimed message; never raises (a failure is recorded for a later retry)."""
        started = time.perf_counter()
        msg_id, user, attempts = row["msg_id"], row["from_user"], row["attempts"]
        try:
            if attempts > self.max_attempts:
                # Taken again after its lease ran out that many times: the process answering it died.
                self._give_up(row, "the answering process stopped or crashed on every attempt")
                return
            try:
                reply, turn_id, what = self._compose(row)
            except Exception as exc:
                self._retry_later(row, exc)
                return
            with self.db.connection() as conn:  # one transaction: the reply is queued iff answered
                push_markdown(conn, f"reply:{msg_id}", [user], wecom_markdown(reply) if reply.strip() else NO_ANSWER_REPLY)
                conn.execute(
                    "UPDATE wecom_inbox SET status = 'answered', answered_at = now(), turn_id = %(t)s,"
                    " lease_until = NULL, last_error = NULL WHERE msg_id = %(id)s AND status = 'received'",
                    {"id": msg_id, "t": turn_id},
                )
            log.info("wecom: answered %s from %s (%s) in %.1f s", msg_id, user, what, time.perf_counter() - started)
        except Exception:
            # The database went away mid-way: the lease runs out and the message is taken again.
            log.exception("wecom: could not record the outcome of %s from %s; it will be retried", msg_id, user)

    def _compose(self, row: dict[str, Any]) -> tuple[str, int | None, str]:
        """The reply text, the stored turn and a few words for the log."""
        if row["msg_type"] != "text":
            return NOT_TEXT_REPLY, None, f"{row['msg_type']} message: text only"
        with self.db.connection() as conn:
            # Only the WeCom account bound to a Puyi user counts: load_principal would also accept a
            # Puyi user_id, and a WeCom userid that happens to equal someone's user_id is not them.
            found = conn.execute(
                "SELECT user_id FROM users WHERE wecom_userid = %(w)s", {"w": row["from_user"]}
            ).fetchone()
            try:
                principal = load_principal(conn, found["user_id"]) if found else None
            except UnknownUser:
                principal = None
        if principal is None:
            return UNKNOWN_USER_REPLY, None, "unknown WeCom user: refused"
        try:
            answer = self.assistant.ask(
                row["content"], principal=principal, session_id=f"wecom:{principal.user_id}", channel="wecom")
        except DatabaseUnavailable:
            raise
        except PuyiError as exc:  # the question itself (empty, too long): the message says why
            return str(exc), None, f"as {principal.user_id}: {type(exc).__name__}"
        return answer.answer, answer.turn_id, f"as {principal.user_id}, route {answer.route}"

    def _retry_later(self, row: dict[str, Any], exc: Exception) -> None:
        msg_id, user, attempts = row["msg_id"], row["from_user"], row["attempts"]
        error = scrub_text(f"{type(exc).__name__}: {exc}")[:2000]  # logged and stored: no personal data
        if attempts >= self.max_attempts:
            log.error("wecom: answering %s from %s failed %d times; sending an apology: %s",
                      msg_id, user, attempts, error, exc_info=exc)
            self._give_up(row, error)
            return
        delay = self.retry_seconds * 2 ** (attempts - 1)
        log.warning("wecom: answering %s from %s failed (attempt %d of %d), retry in %.1f s: %s",
                    msg_id, user, attempts, self.max_attempts, delay, error, exc_info=exc)
        with self.db.connection() as conn:
            # The lease doubles as the retry time: no process takes the message before it.
            conn.execute(
                "UPDATE wecom_inbox SET last_error = %(e)s, lease_until = now() + make_interval(secs => %(d)s)"
                " WHERE msg_id = %(id)s AND status = 'received'",
                {"id": msg_id, "e": error, "d": delay},
            )

    def _give_up(self, row: dict[str, Any], error: str) -> None:
        with self.db.connection() as conn:
            try:
                push_markdown(conn, f"reply:{row['msg_id']}", [row["from_user"]], ERROR_REPLY)
            except DatabaseUnavailable:
                raise
            except PuyiError as exc:  # refused before writing anything: still close the message
                log.error("wecom: no apology can be queued for %s: %s", row["msg_id"], exc)
            conn.execute(
                "UPDATE wecom_inbox SET status = 'failed', lease_until = NULL, last_error = %(e)s"
                " WHERE msg_id = %(id)s AND status = 'received'",
                {"id": row["msg_id"], "e": error[:2000]},
            )
        log.error("wecom: %s from %s marked failed after %d attempts: %s",
                  row["msg_id"], row["from_user"], row["attempts"], error)

    # -- sending --------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        assert self._outbox_event is not None and self.sender is not None
        while not self._stopping:
            self._outbox_event.clear()
            try:
                # Small batches, so that stop() waits for a few sends at most.
                if await asyncio.to_thread(self.sender.send_due, 10):
                    continue
            except Exception:
                log.exception("wecom sender: cannot read wecom_outbox; trying again in %.1f s", self.poll_seconds)
            await self._wait(self._outbox_event)


# -- `puyi worker`: answering and sending apart from the HTTP processes --------------------------


async def _listen(url: str, channel: WeComChannel) -> None:
    """Wake the channel when any process stores a message or pushes one (LISTEN/NOTIFY)."""
    import psycopg

    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute("LISTEN puyi_wecom")
                channel.notify()  # whatever arrived while we were not listening
                channel.notify_outbox()
                async for note in conn.notifies():
                    channel.notify() if note.payload == "inbox" else channel.notify_outbox()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("wecom worker: LISTEN connection lost (%s); polling until it is back", exc)
            await asyncio.sleep(max(channel.poll_seconds, 1.0))


async def run_worker(settings: Any, stop: asyncio.Event) -> None:
    """Answer stored WeCom messages and send the outbox until `stop` is set."""
    from agents.service import Assistant
    from core.db import open_database

    db = await asyncio.to_thread(open_database, settings)
    channel = WeComChannel(settings.model_copy(update={"wecom_worker": "inprocess"}), db, Assistant(db))
    try:
        await channel.start()
        listener = asyncio.create_task(_listen(db.url, channel), name="wecom-listen")
        await stop.wait()
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await channel.stop()  # finishes the message in hand
    finally:
        db.close()
