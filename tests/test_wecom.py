"""The WeCom channel end to end: WeCom's official crypto vectors through the callback URL, refused
callbacks, and the whole path from a callback to the reply at a WeCom stand-in on loopback,
including retries, outages, restarts and two server processes on one database."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import xmltodict
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi import FastAPI
from fastapi.testclient import TestClient
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto

from agents.service import Answer, Assistant
from api.push import part_prefix
from api.server import create_app
from api.wecom import ERROR_REPLY, NOT_TEXT_REPLY, UNKNOWN_USER_REPLY, signature, wecom_markdown
from core.db import Database
from core.settings import Settings
from eval.live import free_port, stop_process
from eval.wecom_standin import reset, run_standin, send_requests, sent_messages
from tests.conftest import one

ROOT = Path(__file__).resolve().parents[1]

CORP, SECRET, AGENT, TOKEN = "ww-puyi-test", "test-secret", "1000002", "puyiToken123"
AES = base64.b64encode(b"puyi-test-aes-key-of-32-bytes!!!").decode().rstrip("=")  # 43 characters


# -- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[str, FastAPI]]:
    with run_standin(CORP, SECRET) as served:
        _STATE["standin"] = served[1]
        yield served
        _STATE.pop("standin", None)


@pytest.fixture(autouse=True)
def fresh(loaded_db: Database) -> None:
    """Empty inbox and outbox."""
    _STATE["db"] = loaded_db
    with loaded_db.connection() as conn:
        conn.execute("DELETE FROM wecom_inbox")
        conn.execute("DELETE FROM wecom_outbox")
        conn.execute("DELETE FROM chat_sessions WHERE channel = 'wecom'")


@pytest.fixture()
def api(standin: tuple[str, FastAPI]) -> Iterator[FastAPI]:
    reset(standin[1])
    yield standin[1]
    reset(standin[1])


@pytest.fixture(scope="module")
def assistant(loaded_db: Database) -> Assistant:
    return Assistant(loaded_db)


def wecom_settings(db: Database, api_base: str, **changes: Any) -> Settings:
    values = {"wecom_corp_id": CORP, "wecom_token": TOKEN, "wecom_aes_key": AES, "wecom_secret": SECRET,
              "wecom_agent_id": AGENT, "wecom_api_base": api_base, "wecom_max_age_seconds": 300,
              "wecom_poll_seconds": 0.1}  # quick workers
    return db.settings.model_copy(update=values | changes)


@contextmanager
def serve(db: Database, settings: Settings, assistant: Any) -> Iterator[tuple[TestClient, FastAPI]]:
    app = create_app(settings=settings, db=db, assistant=cast(Assistant, assistant))
    with TestClient(app, raise_server_exceptions=False) as client:
        channel = app.state.wecom
        channel.retry_seconds = 0.1
        if channel.sender is not None:
            channel.sender.base_delay = 0.1
        yield client, app


def message_xml(user: str, content: str, msg_id: str, msg_type: str = "text", corp: str = CORP) -> str:
    body = f"<Content><![CDATA[{content}]]></Content>" if msg_type == "text" else "<PicUrl><![CDATA[http://x/y.jpg]]></PicUrl>"
    return (f"<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{body}"
            f"<MsgId>{msg_id}</MsgId><AgentID>{AGENT}</AgentID></xml>")


def signed(xml: str, timestamp: str | None = None, nonce: str = "1372623149", token: str = TOKEN,
           aes: str = AES, corp: str = CORP) -> tuple[dict[str, str], str]:
    """Query parameters and body of a callback as WeCom sends it."""
    timestamp = timestamp or str(int(time.time()))
    out = xmltodict.parse(WeChatCrypto(token, aes, corp).encrypt_message(xml, nonce, timestamp))["xml"]
    body = (f"<xml><ToUserName><![CDATA[{corp}]]></ToUserName><Encrypt><![CDATA[{out['Encrypt']}]]></Encrypt>"
            f"<AgentID><![CDATA[{AGENT}]]></AgentID></xml>")
    return {"msg_signature": out["MsgSignature"], "timestamp": timestamp, "nonce": nonce}, body


def post(client: Any, xml: str, **kwargs: Any) -> Any:
    params, body = signed(xml, **kwargs)
    return client.post("/wecom/callback", params=params, content=body)


_STATE: dict[str, Any] = {}  # the database and stand-in of the running test, for wait_until's report


def wait_until(check: Callable[[], Any], timeout: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out; {describe_state()}"
        time.sleep(0.05)


def describe_state() -> str:
    """Inbox, outbox and stand-in calls, to tell where a message stalled."""
    db, app = _STATE.get("db"), _STATE.get("standin")
    lines = []
    if db is not None:
        with db.connection() as conn:
            for table, cols in (("wecom_inbox", "msg_id, from_user, status, attempts, lease_until - now() AS lease_left,"
                                                " received_at, answered_at, last_error"),
                                ("wecom_outbox", "key, status, attempts, lease_until - now() AS lease_left,"
                                                 " next_attempt_at - now() AS wait_left, created_at, sent_at, last_error")):
                lines += [f"{table}: {dict(r)}" for r in conn.execute(f"SELECT {cols} FROM {table}").fetchall()]
    if app is not None:
        with app.state.lock:
            lines += [f"stand-in: {r['path']} at {r['at']:.3f} {r['json']}" for r in app.state.requests]
    return "\n".join(lines)


def inbox(db: Database) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return list(conn.execute("SELECT * FROM wecom_inbox ORDER BY received_at, msg_id").fetchall())


def outbox(db: Database) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return list(conn.execute("SELECT * FROM wecom_outbox ORDER BY group_key, seq").fetchall())


def to(api: FastAPI, user: str) -> list[str]:
    return [m["markdown"]["content"] for m in sent_messages(api) if m["touser"] == user]


class FakeAssistant:
    """Answers with a fixed text, failing the first `fail` calls."""

    def __init__(self, text: str = "好的", fail: int = 0) -> None:
        self.text, self.fail, self.calls = text, fail, 0

    def ask(self, question: str | None, **kwargs: Any) -> Answer:
        self.calls += 1
        if self.calls <= self.fail:
            raise RuntimeError("the model server is down")
        return Answer(id=None, route="test", answer=self.text)


# -- WeCom's official vectors -------------------------------------------------------------------

# WeCom's official callback crypto vectors (from /work/shared/wecom-vectors.json: Tencent's sample code
# and wechatpy's tests, each set's source below), kept here so the tests need nothing outside the repo.
VECTORS: list[dict[str, Any]] = [
    {
        "id": "official_doc_example_QDG6eK",
        "token": "QDG6eK",
        "encoding_aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        "receive_id_corp_id": "wx5823bf96d3bd56c7",
        "verify_url": {
            "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
            "timestamp": "1409659589",
            "nonce": "263014780",
            "echostr": "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
            "expected_echostr_plaintext": "1616140317555161061",
            "decrypted_random_prefix": "c41b64491c2468d0",
            "decrypted_receive_id": "wx5823bf96d3bd56c7"
        },
        "decrypt_msg": {
            "msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6",
            "timestamp": "1409659813",
            "nonce": "1372623149",
            "post_body": "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>",
            "encrypt": "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==",
            "expected_plaintext": "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName><![CDATA[mycreate]]></FromUserName>\n<CreateTime>1409659813</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>",
            "decrypted_random_prefix": "0960688932c47ef1",
            "decrypted_receive_id": "wx5823bf96d3bd56c7"
        },
        "verify_url_raw_request": "GET /cgi-bin/wxpush?msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589&nonce=263014780&echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp%2B4RPcs8TgAE7OaBO%2BFZXvnaqQ%3D%3D",
        "encrypt_reply_example": {
            "plaintext": "<xml><ToUserName><![CDATA[mycreate]]></ToUserName><FromUserName><![CDATA[wx5823bf96d3bd56c7]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[this is a test]]></Content><MsgId>1234567890123456</MsgId><AgentID>128</AgentID></xml>"
        },
        "source": "sbzhu/weworkapi_golang sample.go @ 1799804a7c8d"
    },
    {
        "id": "weworkapi_python_sample_ww1436e0e65a779aee",
        "token": "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
        "encoding_aes_key": "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
        "receive_id_corp_id": "ww1436e0e65a779aee",
        "verify_url": {
            "msg_signature": "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb",
            "timestamp": "1476416373",
            "nonce": "47744683",
            "echostr": "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA==",
            "expected_echostr_plaintext": "1288432023552776189",
            "decrypted_random_prefix": "8908d0ff052afda0",
            "decrypted_receive_id": "ww1436e0e65a779aee"
        },
        "decrypt_msg": {
            "msg_signature": "0c3914025cb4b4d68103f6bfc8db550f79dcf48e",
            "timestamp": "1476422779",
            "nonce": "1597212914",
            "post_body": "<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>\n<Encrypt><![CDATA[Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+]]></Encrypt>\n<AgentID><![CDATA[1000002]]></AgentID>\n</xml>",
            "encrypt": "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+",
            "expected_plaintext": "<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName><CreateTime>1476422779</CreateTime><MsgType>text</MsgType><Content>你好</Content><MsgId>1456453720</MsgId><AgentID>1000002</AgentID></xml>",
            "decrypted_random_prefix": "694ce5a83ae07fe3",
            "decrypted_receive_id": "ww1436e0e65a779aee"
        },
        "encrypt_reply_example": {
            "plaintext": "<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName><CreateTime>1476422779</CreateTime><MsgType>text</MsgType><Content>你好</Content><MsgId>1456453720</MsgId><AgentID>1000002</AgentID></xml>"
        },
        "decrypt_msg_json_variant": {
            "msg_signature": "e3647471e395139e2308c1fa963f2d648a00b90e",
            "timestamp": "1409659813",
            "nonce": "1372623149",
            "post_body": "{ \"tousername\": \"wx5823bf96d3bd56c7\", \"encrypt\": \"cjhLUX7UU4yCSelv1vz7T0zT8huF51bAMVWriNvO1FMegHrQZNrtvRxbwf0fUPsFvwqR0U0fgiJNEA5Y30F2MoI2S7vv3EjVQ68C0cjw9frBoUE2Hj0BvFp9h3u6Vbsg4lc1C8AtHdaN8orKuNKkLRLuYEL52R1J3v8olJGZRLnRdVKIivixmX/eQpzgeExtp20jI1HxRP1AAZ6xZoILdqDPO549LO4WeG+685JRUTdiwcY5fjZlqeMxuT4PpMn1X9OWsS7NRj06Wa5E3Tvg4twjWp39KPfOdRte6P1T4JU=\", \"agentid\": 218 }",
            "encrypt": "cjhLUX7UU4yCSelv1vz7T0zT8huF51bAMVWriNvO1FMegHrQZNrtvRxbwf0fUPsFvwqR0U0fgiJNEA5Y30F2MoI2S7vv3EjVQ68C0cjw9frBoUE2Hj0BvFp9h3u6Vbsg4lc1C8AtHdaN8orKuNKkLRLuYEL52R1J3v8olJGZRLnRdVKIivixmX/eQpzgeExtp20jI1HxRP1AAZ6xZoILdqDPO549LO4WeG+685JRUTdiwcY5fjZlqeMxuT4PpMn1X9OWsS7NRj06Wa5E3Tvg4twjWp39KPfOdRte6P1T4JU=",
            "expected_plaintext": "{ \"ToUserName\": \"wx5823bf96d3bd56c7\", \"FromUserName\": :mycreate\", \"CreateTime\": 1409659813, \"MsgType\": \"text\", \"Content\": \"hello\", \"MsgId\": 4561255354251345929, \"AgentID\": 218}",
            "decrypted_random_prefix": "dDVXRx6kn1gOT43Q",
            "decrypted_receive_id": "ww1436e0e65a779aee"
        },
        "source": "sbzhu/weworkapi_python callback/Sample.py @ 16e0b0524e64"
    },
    {
        "id": "wechatpy_tests_wx49f0ab532d5d035a",
        "token": "123456",
        "encoding_aes_key": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
        "receive_id_corp_id": "wx49f0ab532d5d035a",
        "verify_url": {
            "msg_signature": "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96",
            "timestamp": "1411443780",
            "nonce": "437374425",
            "echostr": "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==",
            "expected_echostr_plaintext": "5927782489442352469",
            "decrypted_random_prefix": "2304fc2fe146f1f8",
            "decrypted_receive_id": "wx49f0ab532d5d035a"
        },
        "decrypt_msg": {
            "msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
            "timestamp": "1411525903",
            "nonce": "461056294",
            "post_body": "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]></Encrypt>\n<AgentID><![CDATA[1]]></AgentID>\n</xml>",
            "encrypt": "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=",
            "expected_plaintext": "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n<FromUserName><![CDATA[messense]]></FromUserName>\n<CreateTime>1411525903</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<MsgId>4363689963896700987</MsgId>\n<AgentID>1</AgentID>\n</xml>",
            "decrypted_random_prefix": "ec90b1530358d4d3",
            "decrypted_receive_id": "wx49f0ab532d5d035a"
        },
        "verify_url_negative": {
            "msg_signature": "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96",
            "timestamp": "1411443780",
            "nonce": "437374424",
            "echostr": "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==",
            "expected": "signature mismatch (InvalidSignatureException)"
        },
        "encrypt_msg_deterministic": {
            "random_prefix": "1234567890123456",
            "nonce": "461056294",
            "timestamp": "1411525903",
            "reply_plaintext": "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>",
            "expected_response_xml": "<xml>\n<Encrypt><![CDATA[9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3]]></Encrypt>\n<MsgSignature><![CDATA[407518b7649e86ef23978113f92d27afa9296533]]></MsgSignature>\n<TimeStamp>1411525903</TimeStamp>\n<Nonce><![CDATA[461056294]]></Nonce>\n</xml>",
            "expected_encrypt": "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3",
            "expected_msg_signature": "407518b7649e86ef23978113f92d27afa9296533"
        },
        "source": "wechatpy/wechatpy tests/test_crypto.py @ 5b8502e3bc4a"
    }
]




def vector_settings(db: Database, vs: dict[str, Any]) -> Settings:
    # No secret: these messages are only received, nothing is sent anywhere.
    return wecom_settings(db, "http://127.0.0.1:9", wecom_corp_id=vs["receive_id_corp_id"], wecom_token=vs["token"],
                          wecom_aes_key=vs["encoding_aes_key"], wecom_secret=None, wecom_max_age_seconds=0)


@pytest.mark.parametrize("vs", VECTORS, ids=[v["id"] for v in VECTORS])
def test_official_vectors_through_the_callback_url(loaded_db: Database, assistant: Assistant, vs: dict[str, Any]):
    crypto = WeChatCrypto(vs["token"], vs["encoding_aes_key"], vs["receive_id_corp_id"])
    verify, msg = vs["verify_url"], vs["decrypt_msg"]
    with serve(loaded_db, vector_settings(loaded_db, vs), assistant) as (client, _):
        # URL verification: the decrypted echostr comes back as plain text.
        r = client.get("/wecom/callback", params={k: verify[k] for k in ("msg_signature", "timestamp", "nonce", "echostr")})
        assert r.status_code == 200 and r.text == verify["expected_echostr_plaintext"]
        assert r.headers["content-type"].startswith("text/plain")
        if "verify_url_raw_request" in vs:  # exactly as WeCom sent it, URL-encoded
            query = vs["verify_url_raw_request"].split("?", 1)[1]
            assert client.get("/wecom/callback?" + query).text == verify["expected_echostr_plaintext"]
            assert "%2B" in query and client.get(
                "/wecom/callback?" + query.replace("%2B", "+")).text == verify["expected_echostr_plaintext"]
        if "verify_url_negative" in vs:
            neg = vs["verify_url_negative"]
            assert client.get("/wecom/callback", params={k: neg[k] for k in verify if k in neg}).status_code == 403

        # The message: 200 with an empty body, and stored exactly as decrypted.
        assert crypto.decrypt_message(msg["post_body"], msg["msg_signature"], msg["timestamp"], msg["nonce"]) == \
            msg["expected_plaintext"]
        expected = xmltodict.parse(msg["expected_plaintext"])["xml"]
        r = client.post("/wecom/callback", content=msg["post_body"].encode(),
                        params={k: msg[k] for k in ("msg_signature", "timestamp", "nonce")})
        assert r.status_code == 200 and r.content == b""
        with loaded_db.connection() as conn:
            row = one(conn, "SELECT * FROM wecom_inbox WHERE msg_id = %(m)s", {"m": expected["MsgId"]})
        assert (row["from_user"], row["msg_type"], row["content"], row["agent_id"]) == (
            expected["FromUserName"], "text", expected["Content"], expected["AgentID"])

        # Round trip: our own encryption with the vector's keys, through the same endpoint.
        reply = vs.get("encrypt_reply_example", {}).get("plaintext")
        if reply:
            params, body = signed(reply, token=vs["token"], aes=vs["encoding_aes_key"], corp=vs["receive_id_corp_id"])
            assert client.post("/wecom/callback", params=params, content=body).status_code == 200
            reply_id = xmltodict.parse(reply)["xml"]["MsgId"]
            assert sum(r["msg_id"] == reply_id for r in inbox(loaded_db)) == 1


def decrypt_by_the_spec(aes: str, encrypt: str) -> tuple[bytes, bytes, bytes]:
    """WeCom's layout, independently of wechatpy: AES-256-CBC with IV = key[:16], PKCS#7 to 32-byte
    blocks, then random(16) | length(4, big-endian) | message | receive_id."""
    key = base64.b64decode(aes + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()
    pad = plain[-1]
    assert 1 <= pad <= 32 and plain.endswith(bytes([pad]) * pad)
    plain = plain[:-pad]
    length = int.from_bytes(plain[16:20], "big")
    return plain[:16], plain[20:20 + length], plain[20 + length:]


@pytest.mark.parametrize("vs", VECTORS, ids=[v["id"] for v in VECTORS])
def test_official_vectors_match_the_documented_layout(vs: dict[str, Any]):
    for case, encrypt, expected in (("verify_url", vs["verify_url"]["echostr"], "expected_echostr_plaintext"),
                                    ("decrypt_msg", vs["decrypt_msg"]["encrypt"], "expected_plaintext")):
        data = vs[case]
        assert signature(vs["token"], data["timestamp"], data["nonce"], encrypt) == data["msg_signature"]
        prefix, message, receive_id = decrypt_by_the_spec(vs["encoding_aes_key"], encrypt)
        assert prefix.decode() == data["decrypted_random_prefix"]
        assert message.decode() == data[expected]
        assert receive_id.decode() == data["decrypted_receive_id"] == vs["receive_id_corp_id"]


def test_deterministic_encryption_vector(monkeypatch: pytest.MonkeyPatch):
    vs = next(v for v in VECTORS if "encrypt_msg_deterministic" in v)
    det = vs["encrypt_msg_deterministic"]
    monkeypatch.setattr(PrpCrypto, "get_random_string", lambda self: det["random_prefix"])
    crypto = WeChatCrypto(vs["token"], vs["encoding_aes_key"], vs["receive_id_corp_id"])
    out = crypto.encrypt_message(det["reply_plaintext"], det["nonce"], det["timestamp"])
    assert out == det["expected_response_xml"]
    assert signature(vs["token"], det["timestamp"], det["nonce"], det["expected_encrypt"]) == det["expected_msg_signature"]
    assert crypto.decrypt_message({"Encrypt": det["expected_encrypt"]}, det["expected_msg_signature"],
                                  det["timestamp"], det["nonce"]) == det["reply_plaintext"]


def test_json_variant_decrypts_but_the_callback_takes_xml_only(loaded_db: Database, assistant: Assistant):
    vs = next(v for v in VECTORS if "decrypt_msg_json_variant" in v)
    jv = vs["decrypt_msg_json_variant"]
    crypto = WeChatCrypto(vs["token"], vs["encoding_aes_key"], jv["decrypted_receive_id"])
    assert crypto.decrypt_message({"Encrypt": jv["encrypt"]}, jv["msg_signature"], jv["timestamp"], jv["nonce"]) == \
        jv["expected_plaintext"]
    with serve(loaded_db, vector_settings(loaded_db, vs), assistant) as (client, _):
        r = client.post("/wecom/callback", content=jv["post_body"].encode(),
                        params={k: jv[k] for k in ("msg_signature", "timestamp", "nonce")})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    assert inbox(loaded_db) == []


# -- refused callbacks --------------------------------------------------------------------------


def test_not_configured_is_not_found(loaded_db: Database):
    with TestClient(create_app(db=loaded_db), raise_server_exceptions=False) as client:
        for r in (client.get("/wecom/callback", params={"echostr": "x"}), client.post("/wecom/callback", content="<xml/>")):
            assert r.status_code == 404
            assert r.json()["error"]["code"] == "not_found" and "WeCom is not configured" in r.json()["error"]["message"]


def test_refused_callbacks_and_the_server_keeps_serving(loaded_db: Database, assistant: Assistant, standin,
                                                        api: FastAPI, caplog: pytest.LogCaptureFixture):
    settings = wecom_settings(loaded_db, standin[0], wecom_max_age_seconds=300)
    xml = message_xml("zhangwei", "你好", "9001")
    params, body = signed(xml)
    now = int(time.time())
    with serve(loaded_db, settings, assistant) as (client, _), caplog.at_level("INFO", logger="puyi.wecom"):
        bad_sig = params | {"msg_signature": "0" * 40}
        r = client.post("/wecom/callback", params=bad_sig, content=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert any("bad msg_signature" in rec.getMessage() for rec in caplog.records)
        assert client.get("/wecom/callback", params=bad_sig | {"echostr": "abc"}).status_code == 403

        # Missing parameters, and bodies that are not WeCom's XML.
        assert client.post("/wecom/callback", content=body).status_code == 400
        assert client.get("/wecom/callback", params={"msg_signature": "a"}).status_code == 400
        for junk in ("not xml", "<xml><Encrypt>abc", "<xml></xml>", "<xml><ToUserName>x</ToUserName></xml>",
                     '{"encrypt": "abc"}', "<other><Encrypt>abc</Encrypt></other>", ""):
            r = client.post("/wecom/callback", params=params, content=junk.encode())
            assert r.status_code == 400, junk
            assert r.json()["error"]["code"] == "bad_request"

        # Correctly signed but not decryptable, or encrypted for another corp.
        garbage = base64.b64encode(os.urandom(64)).decode()
        ts = str(now)
        r = client.post("/wecom/callback", content=f"<xml><Encrypt>{garbage}</Encrypt></xml>",
                        params={"msg_signature": signature(TOKEN, ts, "1", garbage), "timestamp": ts, "nonce": "1"})
        assert r.status_code in (400, 403)
        p2, b2 = signed(message_xml("zhangwei", "你好", "9002", corp="ww-other"), corp="ww-other")
        assert client.post("/wecom/callback", params=p2, content=b2).status_code == 403
        for sender in ("a|b", "@all"):  # would become a broadcast or a list of recipients
            assert post(client, message_xml(sender, "你好", "9003")).status_code == 400
        p3, b3 = signed(xml, timestamp="yesterday")
        assert client.post("/wecom/callback", params=p3, content=b3).status_code == 400

        # Replays: validly signed, but too old (or too far ahead).
        for ts in (str(now - 3600), str(now + 3600)):
            r = post(client, xml, timestamp=ts)
            assert r.status_code == 403 and "replay" in r.json()["error"]["message"]
        assert any("replay" in rec.getMessage() for rec in caplog.records)
        assert inbox(loaded_db) == []

        # Still serving: health, the usual 404, and a good callback.
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/wecom/nothing").json()["error"]["code"] == "not_found"
        assert client.post("/wecom/callback", params=params, content=body).status_code == 200
        assert [r["msg_id"] for r in inbox(loaded_db)] == ["9001"]


def test_events_are_ignored(loaded_db: Database, assistant: Assistant, standin, api: FastAPI):
    event = (f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[zhangwei]]></FromUserName>"
             f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
             f"<Event><![CDATA[enter_agent]]></Event><EventKey><![CDATA[]]></EventKey><AgentID>{AGENT}</AgentID></xml>")
    with serve(loaded_db, wecom_settings(loaded_db, standin[0]), assistant) as (client, _):
        r = post(client, event)
        assert r.status_code == 200 and r.content == b""
        time.sleep(0.3)
    assert inbox(loaded_db) == [] and sent_messages(api) == []


# -- from a callback to the reply ---------------------------------------------------------------


def test_a_question_is_answered_through_the_wecom_api(loaded_db: Database, assistant: Assistant, standin, api: FastAPI):
    with serve(loaded_db, wecom_settings(loaded_db, standin[0]), assistant) as (client, _):
        started = time.perf_counter()
        r = post(client, message_xml("zhangwei", "介绍一下薪易快贷", "1001"))
        elapsed = time.perf_counter() - started
        assert r.status_code == 200 and r.content == b"" and elapsed < 1.0  # stored, not answered, in the request
        (reply,) = wait_until(lambda: sent_messages(api))
        assert reply["touser"] == "zhangwei" and reply["msgtype"] == "markdown" and reply["agentid"] == 1000002
        assert len(reply["markdown"]["content"].encode()) <= 2048

        # A follow-up continues the same conversation.
        assert post(client, message_xml("zhangwei", "它的利率是多少？", "1002")).status_code == 200
        wait_until(lambda: len(sent_messages(api)) == 2)
    with loaded_db.connection() as conn:
        turns = conn.execute(
            "SELECT t.turn_id, t.answer, t.question, s.user_id, s.channel FROM chat_turns t"
            " JOIN chat_sessions s USING (session_id) WHERE s.session_id = 'wecom:rm_qd' ORDER BY t.turn_id").fetchall()
    assert [t["question"] for t in turns] == ["介绍一下薪易快贷", "它的利率是多少？"]
    assert all(t["user_id"] == "rm_qd" and t["channel"] == "wecom" for t in turns)
    assert reply["markdown"]["content"] == wecom_markdown(turns[0]["answer"]) and "薪易快贷" in turns[0]["answer"]
    rows = inbox(loaded_db)
    assert [(r["status"], r["turn_id"], r["attempts"]) for r in rows] == [
        ("answered", turns[0]["turn_id"], 1), ("answered", turns[1]["turn_id"], 1)]
    assert [r["status"] for r in outbox(loaded_db)] == ["sent", "sent"]


def test_wecoms_retries_get_one_reply(loaded_db: Database, standin, api: FastAPI):
    fake = FakeAssistant("只回答一次")
    with serve(loaded_db, wecom_settings(loaded_db, standin[0]), fake) as (client, _):
        params, body = signed(message_xml("sunli", "你好", "2001"))
        statuses = [client.post("/wecom/callback", params=params, content=body).status_code for _ in range(4)]
        assert statuses == [200] * 4
        wait_until(lambda: sent_messages(api))
        time.sleep(0.5)  # time for any duplicate to show up
    assert to(api, "sunli") == ["只回答一次"] and fake.calls == 1
    assert len(inbox(loaded_db)) == 1 and len(outbox(loaded_db)) == 1


def test_unknown_people_and_non_text_messages_get_a_polite_reply(loaded_db: Database, standin, api: FastAPI):
    fake = FakeAssistant()
    with serve(loaded_db, wecom_settings(loaded_db, standin[0]), fake) as (client, _):
        assert post(client, message_xml("stranger", "尊享贷利率？", "3001")).status_code == 200
        # rm_sn is a Puyi user_id with no WeCom account bound: a WeCom userid equal to it is not them.
        assert post(client, message_xml("rm_sn", "尊享贷利率？", "3002")).status_code == 200
        assert post(client, message_xml("zhangwei", "", "3003", msg_type="image")).status_code == 200
        wait_until(lambda: len(sent_messages(api)) == 3)
    assert to(api, "stranger") == [UNKNOWN_USER_REPLY] and to(api, "rm_sn") == [UNKNOWN_USER_REPLY]
    assert "您还未开通谱翼" in UNKNOWN_USER_REPLY and "管理员" in UNKNOWN_USER_REPLY
    assert to(api, "zhangwei") == [NOT_TEXT_REPLY] and "文字" in NOT_TEXT_REPLY
    assert fake.calls == 0
    assert {r["msg_type"] for r in inbox(loaded_db)} == {"text", "image"}


def test_a_long_answer_arrives_in_ordered_parts(loaded_db: Database, standin, api: FastAPI):
    rows = "".join(f"| 产品{i:03d} | {2 + i / 100:.2f}% | 适合稳健型客户的{i}号产品 |\n" for i in range(150))
    text = "## 产品利率一览\n\n| 产品 | 利率 | 说明 |\n| --- | --- | --- |\n" + rows + "\n以上数据截至上月末。"
    assert len(text.encode()) > 3 * 2048
    with serve(loaded_db, wecom_settings(loaded_db, standin[0]), FakeAssistant(text)) as (client, _):
        assert post(client, message_xml("zhangwei", "列出所有产品利率", "4001")).status_code == 200
        parts = wait_until(lambda: to(api, "zhangwei") if len(outbox(loaded_db)) == len(to(api, "zhangwei")) else None)
    n = len(parts)
    assert n >= 4 and all(len(p.encode()) <= 2048 for p in parts)
    assert [p[:len(part_prefix(i, n))] for i, p in enumerate(parts, 1)] == [part_prefix(i, n) for i in range(1, n + 1)]
    assert "".join(p[len(part_prefix(i, n)):] for i, p in enumerate(parts, 1)) == wecom_markdown(text)


def test_the_reply_waits_out_a_wecom_outage(loaded_db: Database, standin, api: FastAPI):
    api.state.down = True
    with serve(loaded_db, wecom_settings(loaded_db, standin[0]), FakeAssistant("迟到的回复")) as (client, _):
        assert post(client, message_xml("zhangwei", "你好", "5001")).status_code == 200
        time.sleep(1.5)
        tries = len(api.state.requests)
        # 0.1 s backoff doubling: a handful of tries, not one per 0.1 s poll.
        assert 3 <= tries <= 7, tries
        (row,) = outbox(loaded_db)
        assert row["status"] == "pending" and "503" in row["last_error"]
        api.state.down = False
        wait_until(lambda: sent_messages(api), timeout=40)
        time.sleep(0.3)
    assert to(api, "zhangwei") == ["迟到的回复"] and len(send_requests(api)) == 1
    (row,) = outbox(loaded_db)
    assert row["status"] == "sent" and row["attempts"] > tries and row["last_error"] is None


def test_failed_answers_are_retried_then_apologised_for(loaded_db: Database, standin, api: FastAPI):
    flaky, broken = FakeAssistant("第二次成功", fail=1), FakeAssistant(fail=99)
    with serve(loaded_db, wecom_settings(loaded_db, standin[0]), flaky) as (client, _):
        assert post(client, message_xml("zhangwei", "你好", "6001")).status_code == 200
        wait_until(lambda: sent_messages(api))
    with serve(loaded_db, wecom_settings(loaded_db, standin[0]), broken) as (client, _):
        assert post(client, message_xml("sunli", "你好", "6002")).status_code == 200
        wait_until(lambda: len(sent_messages(api)) == 2)
        time.sleep(0.3)
    assert to(api, "zhangwei") == ["第二次成功"] and to(api, "sunli") == [ERROR_REPLY]
    assert flaky.calls == 2 and broken.calls == 3
    first, second = inbox(loaded_db)
    assert (first["status"], first["attempts"], first["last_error"]) == ("answered", 2, None)
    assert (second["status"], second["attempts"]) == ("failed", 3) and "model server is down" in second["last_error"]


def test_messages_left_by_a_stopped_or_crashed_server_are_answered_after_a_restart(
        loaded_db: Database, standin, api: FastAPI):
    settings = wecom_settings(loaded_db, standin[0])
    fake = FakeAssistant("重启后回答")
    app = create_app(settings=settings, db=loaded_db, assistant=cast(Assistant, fake))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.portal.call(app.state.wecom.stop)  # type: ignore[union-attr]  # the workers stop first
        assert post(client, message_xml("zhangwei", "你好", "7001")).status_code == 200
        time.sleep(0.3)
    assert [r["status"] for r in inbox(loaded_db)] == ["received"] and sent_messages(api) == []
    # And one a crashed process had claimed: its lease runs out, then anyone takes it.
    with loaded_db.connection() as conn:
        conn.execute("INSERT INTO wecom_inbox (msg_id, from_user, msg_type, content, attempts, lease_until)"
                     " VALUES ('7002', 'sunli', 'text', '你好', 1, now() + interval '2 seconds')")
    with serve(loaded_db, settings, fake):
        wait_until(lambda: to(api, "zhangwei"))
        assert to(api, "sunli") == []  # still leased to the crashed process
        wait_until(lambda: to(api, "sunli"), timeout=30)
    assert to(api, "zhangwei") == to(api, "sunli") == ["重启后回答"]
    assert [(r["msg_id"], r["status"], r["attempts"]) for r in inbox(loaded_db)] == [
        ("7001", "answered", 1), ("7002", "answered", 2)]


# -- two server processes on one database -------------------------------------------------------


def ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_server_processes_on_one_database_reply_once(loaded_db: Database, pg_home: Path, standin, api: FastAPI,
                                                         tmp_path: Path):
    env = os.environ | {
        "PUYI_HOME": str(pg_home), "PUYI_DATABASE_URL": loaded_db.url, "PUYI_POOL_MAX_SIZE": "4",
        "PUYI_WECOM_CORP_ID": CORP, "PUYI_WECOM_SECRET": SECRET, "PUYI_WECOM_AGENT_ID": AGENT,
        "PUYI_WECOM_TOKEN": TOKEN, "PUYI_WECOM_AES_KEY": AES, "PUYI_WECOM_API_BASE": standin[0],
        "PUYI_WECOM_MAX_AGE_SECONDS": "300", "PUYI_WECOM_POLL_SECONDS": "0.2",
    }
    urls, procs, logs = [], [], []
    try:
        for _ in range(2):
            port = free_port()
            logs.append(tmp_path / f"server-{port}.log")
            with logs[-1].open("wb") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "api.server:create_app", "--factory",
                     "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}")
        try:
            wait_until(lambda: all(ready(u) for u in urls) or any(p.poll() is not None for p in procs), timeout=45)
            assert all(p.poll() is None for p in procs), "a server exited"

            callbacks = [signed(message_xml(user, "介绍一下薪易快贷", msg_id))
                         for user, msg_id in (("zhangwei", "8001"), ("sunli", "8002"), ("stranger", "8003"))]
            jobs = [(url, params, body) for params, body in callbacks for url in urls for _ in range(2)]
            barrier, statuses = threading.Barrier(len(jobs)), []

            def deliver(url: str, params: dict[str, str], body: str) -> None:
                barrier.wait()  # every copy of every callback at once, to both servers
                statuses.append(httpx.post(url + "/wecom/callback", params=params, content=body, timeout=10).status_code)

            threads = [threading.Thread(target=deliver, args=job) for job in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert statuses == [200] * len(jobs)
            wait_until(lambda: len(sent_messages(api)) >= 3, timeout=60)
            time.sleep(1.0)  # both servers keep polling: any duplicate would show up now
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n" + "\n".join(p.read_text(errors="replace")[-3000:] for p in logs)) from exc
    finally:
        for p in procs:
            stop_process(p, timeout=15)
    assert sorted(m["touser"] for m in sent_messages(api)) == ["stranger", "sunli", "zhangwei"]
    assert len(send_requests(api)) == 3
    assert to(api, "stranger") == [UNKNOWN_USER_REPLY] and "薪易快贷" in to(api, "zhangwei")[0]
    assert sorted((r["msg_id"], r["status"], r["attempts"]) for r in inbox(loaded_db)) == [
        ("8001", "answered", 1), ("8002", "answered", 1), ("8003", "answered", 1)]
    assert [(r["status"], r["attempts"]) for r in outbox(loaded_db)] == [("sent", 1)] * 3


def test_tables_become_lines_wecom_can_show():
    text = "前言\n\n| 产品 | 余额 |\n| --- | ---: |\n| 薪易快贷 | 1.20 亿元 |\n| 税e快贷 | 3,400.00 万元 |\n\n结尾"
    assert wecom_markdown(text) == "前言\n\n> 产品：薪易快贷；余额：1.20 亿元\n> 产品：税e快贷；余额：3,400.00 万元\n\n结尾"
    assert wecom_markdown("没有表格 | 只是竖线") == "没有表格 | 只是竖线"


def test_a_separate_worker_answers_what_the_http_process_stores(loaded_db: Database, standin, api: FastAPI):
    """What `puyi serve` runs: HTTP processes only store callbacks; `puyi worker` answers and
    sends, woken by NOTIFY (the poll interval here is far longer than the test waits)."""
    import asyncio
    import threading

    from api.wecom import run_worker

    http = wecom_settings(loaded_db, standin[0], wecom_worker="separate")
    worker = wecom_settings(loaded_db, standin[0], database_url=loaded_db.url, wecom_poll_seconds=30)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(run_worker(worker, stop)), daemon=True)
    with serve(loaded_db, http, FakeAssistant("不该由 HTTP 进程回答")) as (client, app):
        assert app.state.wecom._tasks == []  # no answerer or sender in the HTTP process
        thread.start()
        time.sleep(1.0)  # the worker is listening
        assert post(client, message_xml("zhangwei", "介绍一下薪易快贷", "7001")).status_code == 200
        (reply,) = wait_until(lambda: sent_messages(api), timeout=40)
        assert "薪易快贷" in reply["markdown"]["content"]
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=30)
    assert not thread.is_alive()
    (row,) = inbox(loaded_db)
    assert row["status"] == "answered"
