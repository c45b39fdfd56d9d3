"""The WeCom outbox: how Puyi pushes messages to people (answers, alerts).

`push_markdown` / `push_card` / `push_image` / `push_card_with_image` queue rows in `wecom_outbox`
inside the caller's transaction, once per key, ever. `OutboxSender.send_due` sends what is due; any number of processes may run one on the same
database: a row is leased (FOR UPDATE SKIP LOCKED) by one of them at a time, parts of one message go
out in order, and a failed attempt is retried with backoff until sent, so nothing queued is lost.
"""

from __future__ import annotations

import base64
import binascii
import logging
import random
import re
import unicodedata
from bisect import bisect_right
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from api.wecom_client import PNG_SIGNATURE, PermanentSendError, TransientSendError, WeComClient
from core.db import Database
from core.errors import PuyiError

log = logging.getLogger("puyi.wecom")

MARKDOWN_LIMIT = 2048  # bytes of UTF-8: WeCom refuses longer markdown content
MAX_USERS = 1000  # per message/send call
CARD_TITLE_BYTES, CARD_DESCRIPTION_BYTES, CARD_URL_BYTES, CARD_BUTTON_CHARS = 128, 512, 2048, 4
IMAGE_MAX_BYTES = 2_000_000  # WeCom takes images up to 2 MB (10 MB in newer versions): stay under both

_SENTENCE_ENDS = frozenset("。！？；!?;，,、 \t")
_JOINERS = frozenset("\u200d\ufe0e\ufe0f")  # zero-width joiner, variation selectors


# -- splitting ----------------------------------------------------------------------------------


def part_prefix(i: int, n: int) -> str:
    """The numbering put before part i of n; on its own line so a heading or table row after it
    still renders."""
    return f"（{i}/{n}）\n"


def _char_bytes(ch: str) -> int:
    o = ord(ch)
    return 1 if o < 0x80 else 2 if o < 0x800 else 3 if o < 0x10000 else 4


def split_markdown(text: str, limit: int = MARKDOWN_LIMIT) -> list[str]:
    """Split markdown into parts of at most `limit` UTF-8 bytes, numbering included.

    Cuts go after a blank line if one is in the second half of the room, else after a line end,
    else after a sentence mark or a space, else between two characters (never inside one, nor
    before a combining mark). A table row is only cut when it alone is longer than a part.
    The parts minus their `part_prefix` join back to `text` exactly.
    """
    if limit < 64:
        raise ValueError("limit must be at least 64 bytes")
    cum = [0]
    for ch in text:
        cum.append(cum[-1] + _char_bytes(ch))
    if cum[-1] <= limit:
        return [text]
    digits = 1
    while True:
        # Room for the longest prefix of a numbering with this many digits, e.g. （99/99）.
        widest = 10**digits - 1
        chunks = _chunks(text, cum, limit - len(part_prefix(widest, widest).encode()))
        if len(str(len(chunks))) <= digits:
            return [part_prefix(i, len(chunks)) + c for i, c in enumerate(chunks, 1)]
        digits += 1


def _chunks(text: str, cum: list[int], budget: int) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        hard = bisect_right(cum, cum[pos] + budget) - 1  # the furthest end that fits
        if hard >= len(text):
            out.append(text[pos:])
            break
        cut = _best_cut(text, pos, hard)
        out.append(text[pos:cut])
        pos = cut
    return out


def _best_cut(text: str, pos: int, hard: int) -> int:
    """Where to end the part that starts at pos and may run to hard (exclusive)."""
    half = pos + (hard - pos) // 2
    i = text.rfind("\n\n", pos, hard)
    if i >= 0 and i + 2 > half:
        cut = i + 2
        while cut < hard and text[cut] == "\n":
            cut += 1
        return cut
    i = text.rfind("\n", pos, hard)
    if i >= 0 and (i + 1 > half or _line_at(text, hard).lstrip().startswith("|")):
        return i + 1
    for cut in range(hard, half, -1):
        if text[cut - 1] in _SENTENCE_ENDS:
            return cut
    cut = hard
    # Keep a character with the marks and joiners that belong to it (é, 👍🏻, emoji sequences).
    while cut > pos + 1 and (unicodedata.combining(text[cut]) or text[cut] in _JOINERS or text[cut - 1] in _JOINERS
                             or text[cut - 1:cut + 1] == "\r\n"):
        cut -= 1
    return cut


def _line_at(text: str, index: int) -> str:
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    return text[start:] if end < 0 else text[start:end]


# -- queueing -----------------------------------------------------------------------------------


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise PuyiError("推送缺少幂等键 (push needs a non-empty key)")
    if "#" in key:
        raise PuyiError(f"推送键不能包含 '#'，它用于分段编号：{key!r} (push key must not contain '#')")
    if len(key) > 200:
        raise PuyiError("推送键过长（上限 200 字符） (push key longer than 200 characters)")
    return key


def _check_users(to_users: list[str]) -> list[str]:
    if isinstance(to_users, str):
        raise PuyiError("接收人应为用户列表而不是字符串 (to_users must be a list of WeCom user ids)")
    if not to_users or any(not isinstance(u, str) or not u.strip() for u in to_users):
        raise PuyiError("接收人为空或包含空的企业微信账号 (to_users is empty or has blank ids)")
    users = list(dict.fromkeys(u.strip() for u in to_users))
    for u in users:
        if "|" in u or u.lower() == "@all":
            # "@all" would message the whole bank; a list of named people is always required.
            raise PuyiError(f"接收人账号无效：{u!r} (invalid WeCom user id; '@all' is not allowed)")
    if len(users) > MAX_USERS:
        raise PuyiError(f"接收人超过 {MAX_USERS} 个 (more than {MAX_USERS} recipients)")
    return users


def _transaction(conn: psycopg.Connection[Any]) -> AbstractContextManager[Any]:
    # The rows of one push are queued together: in the caller's transaction, or in their own one
    # on an autocommit connection.
    return conn.transaction() if conn.autocommit else nullcontext()


def _queue(conn: psycopg.Connection[Any], key: str, users: list[str], msg_type: str | list[str],
           payloads: list[dict[str, Any]]) -> bool:
    # One message type for every part, or one per part (a card then its chart).
    types = [msg_type] * len(payloads) if isinstance(msg_type, str) else msg_type
    if len(payloads) == 1:
        rows = [(key, 0, types[0], payloads[0])]
    else:
        rows = [(f"{key}#{i}", i, t, p) for i, (t, p) in enumerate(zip(types, payloads, strict=True), 1)]
    with _transaction(conn):
        # Serialise pushes of one key until the transaction ends, so a second push of the key
        # (even of a text split differently) sees the first and queues nothing.
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%(k)s, 0))", {"k": "puyi.wecom_outbox:" + key})
        if conn.execute("SELECT 1 FROM wecom_outbox WHERE group_key = %(k)s OR key = %(k)s LIMIT 1",
                        {"k": key}).fetchone():
            return False
        for row_key, seq, row_type, payload in rows:
            conn.execute(
                "INSERT INTO wecom_outbox (key, group_key, seq, to_users, msg_type, payload)"
                " VALUES (%(key)s, %(g)s, %(seq)s, %(u)s, %(t)s, %(p)s) ON CONFLICT (key) DO NOTHING",
                {"key": row_key, "g": key, "seq": seq, "u": users, "t": row_type, "p": Jsonb(payload)},
            )
        # Wakes a sender in any process at commit (`puyi worker` listens); polling is the fallback.
        conn.execute("SELECT pg_notify('puyi_wecom', 'outbox')")
    return True


def push_markdown(conn: psycopg.Connection[Any], key: str, to_users: list[str], text: str) -> bool:
    """Queue a markdown message (several numbered parts when long). True if queued now, False if
    this key was queued before: the same key is pushed once, ever."""
    _check_key(key)
    users = _check_users(to_users)
    if not isinstance(text, str) or not text.strip():
        raise PuyiError("推送内容为空 (push text is empty)")
    return _queue(conn, key, users, "markdown", [{"content": part} for part in split_markdown(text)])


def push_card(conn: psycopg.Connection[Any], key: str, to_users: list[str], title: str, description: str,
              url: str, btntxt: str = "详情") -> bool:
    """Queue a text card (title, short description, a link button). Same once-per-key rule."""
    _check_key(key)
    users = _check_users(to_users)
    return _queue(conn, key, users, "textcard", [_card(title, description, url, btntxt)])


def _card(title: str, description: str, url: str, btntxt: str) -> dict[str, Any]:
    checks = [
        (title, CARD_TITLE_BYTES, "卡片标题", "card title"),
        (description, CARD_DESCRIPTION_BYTES, "卡片描述", "card description"),
        (url, CARD_URL_BYTES, "卡片链接", "card url"),
    ]
    for value, limit, zh, en in checks:
        if not isinstance(value, str) or not value.strip():
            raise PuyiError(f"{zh}为空 ({en} is empty)")
        if len(value.encode()) > limit:
            raise PuyiError(f"{zh}超过 {limit} 字节 ({en} longer than {limit} bytes)")
    if not url.startswith(("https://", "http://")):
        raise PuyiError(f"卡片链接须以 http:// 或 https:// 开头：{url!r} (card url must be http(s))")
    if not btntxt or len(btntxt) > CARD_BUTTON_CHARS:
        raise PuyiError(f"按钮文字须为 1 到 {CARD_BUTTON_CHARS} 个字 (button text must be 1-{CARD_BUTTON_CHARS} characters)")
    return {"title": title, "description": description, "url": url, "btntxt": btntxt}


def _image(png: bytes, filename: str) -> dict[str, Any]:
    # The picture itself goes into the row, so that the row is all a sender needs: WeCom's media_id
    # lives 3 days, longer than a message may wait in the outbox, so it is uploaded at send time.
    if not isinstance(png, bytes | bytearray) or bytes(png[:8]) != PNG_SIGNATURE:
        raise PuyiError("推送图片须为 PNG (push image must be PNG bytes)")
    if len(png) > IMAGE_MAX_BYTES:
        raise PuyiError(f"推送图片超过 {IMAGE_MAX_BYTES} 字节 (push image larger than {IMAGE_MAX_BYTES} bytes)")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}\.png", filename):
        raise PuyiError(f"图片文件名无效：{filename!r} (image file name must be ASCII ending in .png)")
    return {"png_base64": base64.b64encode(bytes(png)).decode("ascii"), "filename": filename}


def push_image(conn: psycopg.Connection[Any], key: str, to_users: list[str], png_bytes: bytes,
               filename: str = "chart.png") -> bool:
    """Queue a PNG image message. Same once-per-key rule."""
    _check_key(key)
    users = _check_users(to_users)
    return _queue(conn, key, users, "image", [_image(png_bytes, filename)])


def push_card_with_image(conn: psycopg.Connection[Any], key: str, to_users: list[str], title: str,
                         description: str, url: str, png_bytes: bytes, btntxt: str = "详情",
                         filename: str = "chart.png") -> bool:
    """Queue a text card and then a PNG image as one message of two parts (`key#1`, `key#2`): the
    image goes out after the card, and is given up with it should the card be refused."""
    _check_key(key)
    users = _check_users(to_users)
    return _queue(conn, key, users, ["textcard", "image"],
                  [_card(title, description, url, btntxt), _image(png_bytes, filename)])


def push_markdown_with_image(conn: psycopg.Connection[Any], key: str, to_users: list[str], text: str,
                             png_bytes: bytes, filename: str = "chart.png") -> bool:
    """Queue a short markdown message (one part) and then a PNG image, like `push_card_with_image`."""
    _check_key(key)
    users = _check_users(to_users)
    if not isinstance(text, str) or not text.strip():
        raise PuyiError("推送内容为空 (push text is empty)")
    if len(text.encode()) > MARKDOWN_LIMIT:
        raise PuyiError(f"推送内容超过 {MARKDOWN_LIMIT} 字节 (markdown before an image must fit one message)")
    return _queue(conn, key, users, ["markdown", "image"], [{"content": text}, _image(png_bytes, filename)])


# -- sending ------------------------------------------------------------------------------------


class OutboxSender:
    """Sends due outbox rows through a `WeComClient`. Synchronous: run it in a worker thread."""

    def __init__(
        self,
        db: Database,
        client: WeComClient,
        lease_seconds: float = 60.0,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
    ) -> None:
        self.db, self.client = db, client
        # Longer than one send can take (token + send, 5 s timeouts each) so that no other sender
        # takes a row while it is in flight; a crashed sender's row is taken again after it.
        self.lease_seconds = lease_seconds
        self.base_delay, self.max_delay = base_delay, max_delay

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after `attempts` failed ones: 1, 2, 4 … up to max_delay,
        with a little jitter so that senders do not retry in lockstep."""
        delay = min(self.max_delay, self.base_delay * 2 ** min(max(attempts - 1, 0), 30))
        return min(self.max_delay, delay * random.uniform(0.9, 1.1))

    def send_due(self, limit: int = 100) -> int:
        """Send up to `limit` due rows, one at a time, and return how many were sent."""
        sent = 0
        for _ in range(limit):
            row = self._claim()
            if row is None:
                break
            sent += self._send(row)
        return sent

    def _claim(self) -> dict[str, Any] | None:
        # One row per claim: its lease then covers just the one send about to happen. A later part
        # of a message waits until every earlier part is sent. The pick is a MATERIALIZED CTE, run
        # exactly once: as `WHERE key IN (SELECT … LIMIT 1 FOR UPDATE SKIP LOCKED)` the planner may
        # rescan the sub-select once per outer row (a nested-loop semi join), and each rescan skips
        # the rows this UPDATE already changed, so it leased every pending row while RETURNING
        # handed back one: the others then waited out their lease unsent.
        with self.db.connection() as conn:
            return conn.execute(
                "WITH pick AS MATERIALIZED (SELECT c.key FROM wecom_outbox c"
                "   WHERE c.status = 'pending' AND c.next_attempt_at <= now()"
                "     AND (c.lease_until IS NULL OR c.lease_until < now())"
                "     AND NOT EXISTS (SELECT 1 FROM wecom_outbox p WHERE p.group_key = c.group_key"
                "                     AND p.seq < c.seq AND p.status <> 'sent')"
                "   ORDER BY c.created_at, c.seq FOR UPDATE OF c SKIP LOCKED LIMIT 1)"
                " UPDATE wecom_outbox o SET lease_until = now() + make_interval(secs => %(lease)s),"
                " attempts = o.attempts + 1 FROM pick WHERE o.key = pick.key"
                " RETURNING o.key, o.group_key, o.seq, o.to_users, o.msg_type, o.payload, o.attempts",
                {"lease": self.lease_seconds},
            ).fetchone()

    def _send(self, row: dict[str, Any]) -> int:
        key, attempts = row["key"], row["attempts"]
        users = list(row["to_users"])
        try:
            result = self.client.send(users, row["msg_type"], self._payload(row))
        except PermanentSendError as exc:
            self._fail(row, str(exc))
            return 0
        except Exception as exc:  # TransientSendError, or a bug: keep the row and try again later
            delay = self.backoff(attempts)
            if isinstance(exc, TransientSendError):
                log.warning("wecom outbox: %s to %s, attempt %d failed, retry in %.1f s: %s",
                            key, "|".join(users), attempts, delay, exc)
            else:
                log.exception("wecom outbox: %s to %s, attempt %d failed unexpectedly, retry in %.1f s",
                              key, "|".join(users), attempts, delay)
            with self.db.connection() as conn:
                conn.execute(
                    "UPDATE wecom_outbox SET next_attempt_at = now() + make_interval(secs => %(d)s),"
                    " lease_until = NULL, last_error = %(e)s WHERE key = %(k)s AND status = 'pending'",
                    {"k": key, "d": delay, "e": f"{type(exc).__name__}: {exc}"[:2000]},
                )
            return 0
        with self.db.connection() as conn:
            conn.execute(
                "UPDATE wecom_outbox SET status = 'sent', sent_at = now(), lease_until = NULL, last_error = NULL"
                " WHERE key = %(k)s AND status = 'pending'",
                {"k": key},
            )
        missing = {name: result.get(name) for name in ("invaliduser", "unlicenseduser") if result.get(name)}
        if missing:
            # WeCom delivered to the others; these people are not reachable through this app.
            log.warning("wecom outbox: %s sent, but WeCom could not deliver to %s", key, missing)
        log.info("wecom outbox: %s sent to %s (attempt %d)", key, "|".join(users), attempts)
        return 1

    def _payload(self, row: dict[str, Any]) -> dict[str, Any]:
        """What message/send gets: an image is uploaded first (each attempt: media ids expire)."""
        payload: dict[str, Any] = row["payload"]
        if row["msg_type"] == "image" and "png_base64" in payload:
            try:
                png = base64.b64decode(payload["png_base64"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise PermanentSendError(f"推送图片内容损坏 (stored image is not valid base64): {exc}") from exc
            return {"media_id": self.client.upload_image(png, payload.get("filename") or "chart.png")}
        return payload

    def _fail(self, row: dict[str, Any], error: str) -> None:
        log.error("wecom outbox: %s to %s failed for good (attempt %d): %s",
                  row["key"], "|".join(row["to_users"]), row["attempts"], error)
        with self.db.connection() as conn:
            conn.execute(
                "UPDATE wecom_outbox SET status = 'failed', lease_until = NULL, last_error = %(e)s"
                " WHERE key = %(k)s AND status = 'pending'",
                {"k": row["key"], "e": error[:2000]},
            )
            # The later parts of the message cannot be shown without this one (and would only wait).
            later = conn.execute(
                "UPDATE wecom_outbox SET status = 'failed', lease_until = NULL, last_error = %(e)s"
                " WHERE group_key = %(g)s AND seq > %(s)s AND status = 'pending' RETURNING key",
                {"g": row["group_key"], "s": row["seq"], "e": f"an earlier part ({row['key']}) failed: {error}"[:2000]},
            ).fetchall()
        if later:
            log.error("wecom outbox: %d later part(s) of %s marked failed too", len(later), row["group_key"])
