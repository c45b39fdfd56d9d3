"""`puyi bench serve`: load on loopback against a real server process.

Measures requests/s and latency p50/p99 for `/api/chat` with catalogue questions, and the
acknowledgement latency of WeCom callbacks from concurrent senders, with the replies delivered
to a local stand-in of the WeCom API. The server runs as its own process(es), as in production;
the load comes from this process, on the same machine.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import xmltodict

from core.settings import Settings
from eval.bench import catalog_questions, percentile

CORP_ID, SECRET, TOKEN = "wwbench0000000001", "bench-secret", "benchtoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as WeCom issues them
AGENT_ID = "1000002"


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def _summary(name: str, latencies: list[float], seconds: float, errors: int) -> str:
    ms = [x * 1000 for x in latencies]
    return (f"{name:<28} {len(ms):>6} 次  {len(ms) / seconds:>7.1f} 次/秒  p50 {percentile(ms, 50):6.1f} ms  "
            f"p99 {percentile(ms, 99):6.1f} ms  错误 {errors}")


async def _load_chat(base: str, items: list[tuple[str, str]], concurrency: int) -> tuple[list[float], float, int]:
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                question, token = queue.get_nowait()
                t0 = time.perf_counter()
                r = await client.post("/api/chat", json={"message": question},
                                      headers={"Authorization": f"Bearer {token}"})
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started, errors


def _replies_to(standin: Any, user: str) -> int:
    from eval.wecom_standin import sent_messages

    return sum(1 for m in sent_messages(standin) if user in m["touser"].split("|"))


async def _load_wecom(
    base: str, senders: list[str], questions: list[str], per_sender: int, standin: Any = None
) -> tuple[list[float], float, int, int]:
    """Each sender posts its messages one after another; with `standin`, it waits for the reply
    to each before the next, as a person in a chat does (otherwise it sends back to back)."""
    from wechatpy.enterprise.crypto import WeChatCrypto

    crypto = WeChatCrypto(TOKEN, AES_KEY, CORP_ID)
    latencies: list[float] = []
    errors = 0
    rng = random.Random(7)
    sent = 0
    limits = httpx.Limits(max_connections=len(senders), max_keepalive_connections=len(senders))
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def sender(user: str) -> None:
            nonlocal errors, sent
            replies = _replies_to(standin, user) if standin is not None else 0
            if standin is not None:
                await asyncio.sleep(rng.random())  # people do not all press send in the same millisecond
            for _ in range(per_sender):
                msg_id = str(uuid.uuid4().int % 10**19)
                now = str(int(time.time()))
                xml = (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{user}]]>"
                       f"</FromUserName><CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                       f"<Content><![CDATA[{rng.choice(questions)}]]></Content><MsgId>{msg_id}</MsgId>"
                       f"<AgentID>{AGENT_ID}</AgentID></xml>")
                nonce = uuid.uuid4().hex[:10]
                encrypted = crypto.encrypt_message(xml, nonce, now)
                # The encrypted envelope carries its own signature; WeCom sends it in the query.
                env = xmltodict.parse(encrypted)["xml"]
                body = (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{env['Encrypt']}]]>"
                        f"</Encrypt><AgentID><![CDATA[{AGENT_ID}]]></AgentID></xml>")
                params = {"msg_signature": env["MsgSignature"], "timestamp": now, "nonce": nonce}
                t0 = time.perf_counter()
                r = await client.post("/wecom/callback", params=params, content=body.encode())
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200
                sent += 1
                if standin is not None:
                    before, deadline = replies, time.monotonic() + 120
                    while _replies_to(standin, user) <= before and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    replies = _replies_to(standin, user)

        started = time.perf_counter()
        await asyncio.gather(*(sender(u) for u in senders))
        return latencies, time.perf_counter() - started, errors, sent


def bench_serve(
    requests: int = 2000, concurrency: int = 16, senders: int = 50, per_sender: int = 10, workers: int = 2,
    seed: int = 20261123,
) -> Iterator[str]:
    from core.db import open_database, stop_embedded
    from core.tokens import issue_token
    from eval.live import free_port, stop_process
    from eval.wecom_standin import run_standin, sent_messages
    from ingest.demo import write_demo_bank
    from ingest.importer import import_folder

    home = Path(tempfile.mkdtemp(prefix="puyi-bench-serve-"))
    home.chmod(0o755)  # the embedded server may run as its own system user
    settings = Settings(home=home, database_url=None)
    db = open_database(settings)
    proc: subprocess.Popen[bytes] | None = None
    try:
        write_demo_bank(settings.demo_dir, seed=seed)
        import_folder(db, settings.demo_dir)
        with db.connection() as conn:
            users = [r["user_id"] for r in conn.execute("SELECT user_id FROM users ORDER BY user_id")]
            tokens = {u: issue_token(conn, u, days=1) for u in users}
            items = [(q, tokens[u or users[0]]) for q, u in catalog_questions(conn, requests, seed)]
            wecom_users = [r["wecom_userid"] for r in conn.execute(
                "SELECT wecom_userid FROM users WHERE wecom_userid <> '' ORDER BY user_id")]
        if not wecom_users:
            wecom_users = users
        questions = [q for q, _ in items[:200]]
        yield (f"演示银行已载入（{len(users)} 位用户）；puyi serve --workers {workers}（另有企业微信后台进程），"
               f"本机 CPU {os.cpu_count()} 核，压测客户端在同一台机器上")

        with run_standin(CORP_ID, SECRET) as (api_base, standin):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            # `puyi serve` as an operator runs it: HTTP worker processes plus the WeCom worker.
            proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", str(workers)],
                env=_server_env(home, db.url, api_base), stdout=subprocess.DEVNULL,
            )
            _wait_ready(base, proc)
            asyncio.run(_load_chat(base, items[:50], 4))  # warm-up: pools, catalogue index, code paths

            latencies, seconds, errors = asyncio.run(_load_chat(base, items, concurrency))
            yield _summary(f"/api/chat（并发 {concurrency}）", latencies, seconds, errors)

            senders_ids = [wecom_users[i % len(wecom_users)] for i in range(senders)]
            # Warm-up: each server process's first callbacks (imports, crypto, connections).
            asyncio.run(_load_wecom(base, senders_ids[:10], questions, 1, standin=standin))
            # People in a chat: each sender waits for the answer before asking again.
            acks, seconds, errors, sent = asyncio.run(
                _load_wecom(base, senders_ids, questions, per_sender, standin=standin))
            yield _summary(f"企业微信回调确认（{senders} 人对话）", acks, seconds, errors)
            yield f"  {sent} 条问题全部答复送达用时 {seconds:.1f} 秒（{sent / seconds:.1f} 条/秒）"
            # A burst: every sender posts back to back without waiting, to find where acks saturate.
            acks, seconds, errors, sent = asyncio.run(_load_wecom(base, senders_ids, questions, per_sender))
            yield _summary(f"企业微信回调确认（{senders} 方连发）", acks, seconds, errors)
            started, progress = time.monotonic() - seconds, None
            while time.monotonic() - started < 600:
                with db.connection() as conn:
                    progress = conn.execute(
                        "SELECT (SELECT count(*) FROM wecom_inbox WHERE status = 'received') AS waiting,"
                        " (SELECT count(*) FROM wecom_outbox WHERE status = 'pending') AS pending,"
                        " (SELECT count(*) FROM wecom_inbox) AS received,"
                        " (SELECT count(DISTINCT group_key) FROM wecom_outbox WHERE status = 'sent') AS replies"
                        ).fetchone()
                if progress and progress["waiting"] == 0 and progress["pending"] == 0:
                    break
                time.sleep(0.2)
            assert progress is not None
            elapsed = time.monotonic() - started
            yield (f"  全部 {progress['received']} 条消息的答复 {progress['replies']} 条已送达，连发部分用时 "
                   f"{elapsed:.1f} 秒；stand-in 共收到 {len(sent_messages(standin))} 段")
    finally:
        if proc is not None:
            stop_process(proc)
        db.close()
        stop_embedded(settings.pg_dir)
        shutil.rmtree(home, ignore_errors=True)


def _server_env(home: Path, database_url: str, api_base: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUYI_")}
    env.update({
        "PUYI_HOME": str(home), "PUYI_DATABASE_URL": database_url, "PUYI_WECOM_CORP_ID": CORP_ID,
        "PUYI_WECOM_AGENT_ID": AGENT_ID, "PUYI_WECOM_SECRET": SECRET, "PUYI_WECOM_TOKEN": TOKEN,
        "PUYI_WECOM_AES_KEY": AES_KEY, "PUYI_WECOM_API_BASE": api_base, "PUYI_LOG_LEVEL": "WARNING",
    })
    return env
