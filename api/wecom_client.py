"""A small synchronous client for the WeCom (企业微信) server API: the access token, message/send and
media/upload (images).

Errors are sorted for the outbox: a `TransientSendError` is retried later (the message stays
queued), a `PermanentSendError` marks that one message failed. Secrets (corpsecret, access_token)
never appear in our log lines or exception messages.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import httpx

log = logging.getLogger("puyi.wecom")

# The token was refused: fetch a new one and try once more.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# WeCom busy or rate limits: the same request will work later.
BUSY_ERRCODES = frozenset({-1, 45009, 45033})
# Configuration problems (wrong secret or corp id, agent, IP allow-list, API not permitted): no message
# is at fault, so they are retried until the operator fixes the settings instead of failing everything.
CONFIG_ERRCODES = frozenset({40001, 40013, 40014, 40056, 41001, 42001, 48002, 60020})
# Refresh this long before the token's announced expiry (WeCom gives 7200 s).
TOKEN_MARGIN_SECONDS = 300.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class SendError(Exception):
    """A message could not be sent; `errcode` is WeCom's when it gave one."""

    def __init__(self, message: str, errcode: int | None = None) -> None:
        super().__init__(message)
        self.errcode = errcode


class TransientSendError(SendError):
    """Network trouble, WeCom busy or rate limited, or a configuration problem: retry later."""


class PermanentSendError(SendError):
    """WeCom refused this message (e.g. unknown user, bad content): retrying will not help."""


_SECRET_QUERY = re.compile(r"((?:corpsecret|access_token)=)[^&\s\"']+")


class _RedactSecrets(logging.Filter):
    """httpx logs each request's full URL at INFO; the token and the secret travel in the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is logging's problem to report, not ours
            return True
        if "corpsecret=" in text or "access_token=" in text:
            record.msg, record.args = _SECRET_QUERY.sub(r"\1***", text), None
        return True


_httpx_log = logging.getLogger("httpx")
if not any(isinstance(f, _RedactSecrets) for f in _httpx_log.filters):
    _httpx_log.addFilter(_RedactSecrets())


class WeComClient:
    """Thread-safe: the outbox sender may call it from several worker threads."""

    def __init__(
        self,
        api_base: str,
        corp_id: str,
        secret: str,
        agent_id: str | int,
        http: httpx.Client | None = None,
        timeout: float = 5.0,
    ) -> None:
        if not (corp_id and secret and str(agent_id).strip()):
            raise ValueError("企业微信发送需要 corp_id、secret 和 agent_id (WeCom corp id, secret and agent id are required)")
        self.api_base = api_base.rstrip("/")
        self.corp_id, self.secret = corp_id, secret
        self.agent_id = int(agent_id)  # WeCom wants a number; a typo fails here, at start-up
        self._http = http or httpx.Client(timeout=timeout)
        self._own_http = http is None
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0  # time.monotonic() after which the token is not used

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    # -- access token -------------------------------------------------------------------------

    def access_token(self) -> str:
        """The cached token, fetched again shortly before it expires. One thread fetches while
        the others wait, so a burst of sends costs one gettoken call."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._token_expires:
                self._token, lifetime = self._fetch_token()
                self._token_expires = time.monotonic() + max(lifetime - TOKEN_MARGIN_SECONDS, lifetime / 2)
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget `token` if it is still the cached one (another thread may have refreshed it)."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch_token(self) -> tuple[str, float]:
        body = self._call("GET", "/cgi-bin/gettoken", params={"corpid": self.corp_id, "corpsecret": self.secret})
        errcode = _errcode(body)
        if errcode != 0 or not body.get("access_token"):
            # Whatever the code, no message is at fault: keep the outbox queued and say why.
            raise TransientSendError(
                f"无法获取企业微信 access_token：errcode {errcode} {body.get('errmsg', '')}"
                " (cannot get an access token: check PUYI_WECOM_CORP_ID / PUYI_WECOM_SECRET and the IP allow-list)",
                errcode,
            )
        return str(body["access_token"]), float(body.get("expires_in") or 7200)

    # -- sending ------------------------------------------------------------------------------

    def send(self, to_users: list[str], msg_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one application message; returns WeCom's answer (it may list `invaliduser`)."""
        message = {
            "touser": "|".join(to_users),
            "msgtype": msg_type,
            "agentid": self.agent_id,
            msg_type: payload,
            # WeCom drops an identical message to the same people within the interval: a second
            # guard should a send succeed at WeCom but time out here and be retried (leases and
            # backoff bring such a retry within minutes). Kept short so that a person who asks
            # the same question again later still gets the answer again.
            "enable_duplicate_check": 1,
            "duplicate_check_interval": 300,
        }
        for attempt in (1, 2):
            token = self.access_token()
            body = self._call("POST", "/cgi-bin/message/send", params={"access_token": token}, json=message)
            errcode = _errcode(body)
            if errcode == 0:
                return body
            if errcode in TOKEN_ERRCODES and attempt == 1:
                self.invalidate(token)
                continue
            raise _refusal(f"企业微信拒绝了消息：errcode {errcode} {body.get('errmsg', '')}", errcode, "message refused")
        raise AssertionError("unreachable")  # pragma: no cover

    def upload_image(self, data: bytes, filename: str = "chart.png") -> str:
        """Upload an image as temporary media (POST /cgi-bin/media/upload?type=image) and return
        its media_id. WeCom keeps it 3 days, so upload right before the send that uses it."""
        content_type = "image/png" if data[:8] == PNG_SIGNATURE else "image/jpeg"
        for attempt in (1, 2):
            token = self.access_token()
            body = self._call("POST", "/cgi-bin/media/upload", params={"access_token": token, "type": "image"},
                              files={"media": (filename, data, content_type)})
            errcode = _errcode(body)
            if errcode == 0 and body.get("media_id"):
                return str(body["media_id"])
            if errcode in TOKEN_ERRCODES and attempt == 1:
                self.invalidate(token)
                continue
            if errcode == 0:  # accepted without an id: WeCom's trouble, not the image's
                raise TransientSendError("企业微信上传图片未返回 media_id (WeCom upload answered without a media_id)")
            raise _refusal(f"企业微信拒绝了图片上传：errcode {errcode} {body.get('errmsg', '')}", errcode, "image refused")
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        # Messages name the path only: the query carries the secret or the token.
        try:
            response = self._http.request(method, self.api_base + path, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientSendError(f"企业微信接口超时 {path} (WeCom API timed out): {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise TransientSendError(f"企业微信接口不可达 {path} (WeCom API unreachable): {type(exc).__name__}") from exc
        if response.status_code != 200:
            # 5xx and 429 are WeCom's trouble; anything else is a proxy or a wrong api_base: either
            # way no message is at fault, so it stays queued.
            raise TransientSendError(f"企业微信接口返回 HTTP {response.status_code} {path} (WeCom API HTTP error)")
        try:
            body = response.json()
        except ValueError as exc:
            raise TransientSendError(f"企业微信接口返回了非 JSON 内容 {path} (WeCom API answered non-JSON)") from exc
        if not isinstance(body, dict):
            raise TransientSendError(f"企业微信接口返回格式异常 {path} (unexpected WeCom API answer)")
        return body


def _refusal(detail: str, errcode: int, what: str) -> SendError:
    """How a refusal is retried: busy and configuration codes later, anything else never."""
    if errcode in BUSY_ERRCODES:
        return TransientSendError(detail + " (WeCom busy or rate limited)", errcode)
    if errcode in CONFIG_ERRCODES:
        return TransientSendError(detail + " (WeCom configuration problem; retried until fixed)", errcode)
    return PermanentSendError(detail + f" ({what})", errcode)


def _errcode(body: dict[str, Any]) -> int:
    try:
        return int(body.get("errcode", 0))
    except (TypeError, ValueError):
        return -1
