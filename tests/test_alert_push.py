"""Alert push: each new alert once, as a WeCom card and then its trend chart, to the product
managers and risk staff, through the outbox and a WeCom stand-in on loopback; image upload; the
scheduled job in the server; `puyi alerts push`; a WeCom reply that disposes an alert."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from psycopg.types.json import Jsonb

from api.push import OutboxSender, push_card_with_image, push_image, push_markdown
from api.server import create_app
from api.wecom_client import PermanentSendError, WeComClient
from core.db import Database
from core.errors import PuyiError
from core.settings import Settings
from eval.wecom_standin import expire_tokens, reset, run_standin, sent_messages, uploads
from tests.conftest import one
from tests.test_wecom import AES, CORP, TOKEN, message_xml, post, wait_until
from tools.alert_push import AlertScheduler, alert_message, push_new_alerts, recipients, scheduled_run
from tools.alerts import run_alerts
from tools.charts import line_chart_png

SECRET, AGENT = "alert-secret", "1000003"  # CORP is the WeCom tests' (their callback helpers sign for it)
PUBLIC = "https://puyi.bank.example"
DESIGNER_WECOM = "qianjin"  # designer01 has none in the test bank: given one here
RISK_WECOM = "sunli"  # risk01's, as in the test bank
ROOT = Path(__file__).resolve().parents[1]


# -- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bank(loaded_db: Database) -> Database:
    """The small bank with a WeCom account for the product manager too."""
    with loaded_db.connection() as conn:
        conn.execute("UPDATE users SET wecom_userid = %(w)s WHERE user_id = 'designer01'", {"w": DESIGNER_WECOM})
    return loaded_db


@pytest.fixture(autouse=True)
def fresh(bank: Database) -> None:
    """No alerts, dispositions or queued messages."""
    with bank.connection() as conn:
        conn.execute("DELETE FROM alert_dispositions")
        conn.execute("DELETE FROM alert_events")
        conn.execute("DELETE FROM alert_runs")
        conn.execute("DELETE FROM wecom_outbox")
        conn.execute("DELETE FROM wecom_inbox")


@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[str, FastAPI]]:
    with run_standin(CORP, SECRET) as served:
        yield served


@pytest.fixture()
def api(standin: tuple[str, FastAPI]) -> Iterator[FastAPI]:
    reset(standin[1])
    yield standin[1]
    reset(standin[1])


def push_settings(db: Database, api_base: str, **changes: Any) -> Settings:
    values = {"wecom_corp_id": CORP, "wecom_token": TOKEN, "wecom_aes_key": AES, "wecom_secret": SECRET,
              "wecom_agent_id": AGENT, "wecom_api_base": api_base, "wecom_max_age_seconds": 300,
              "wecom_poll_seconds": 0.1, "public_url": PUBLIC, "alert_interval_minutes": 0.0}
    return db.settings.model_copy(update=values | changes)


def outbox(db: Database, where: str = "true") -> list[dict[str, Any]]:
    with db.connection() as conn:
        return list(conn.execute(f"SELECT * FROM wecom_outbox WHERE {where} ORDER BY group_key, seq").fetchall())


def events(db: Database) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return list(conn.execute(
            "SELECT e.*, p.name AS product_name FROM alert_events e LEFT JOIN products p ON p.code = e.product_code"
            " ORDER BY e.id").fetchall())


def sender(db: Database, standin: tuple[str, FastAPI], **kwargs: Any) -> OutboxSender:
    return OutboxSender(db, WeComClient(standin[0], CORP, SECRET, AGENT), **kwargs)


def drain(s: OutboxSender, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while outbox(s.db, "status = 'pending'"):
        assert time.monotonic() < deadline, f"the outbox did not drain: {outbox(s.db, 'status = ' + repr('pending'))}"
        s.send_due()
        time.sleep(0.02)


def png_of(payload: dict[str, Any]) -> bytes:
    return base64.b64decode(payload["png_base64"])


def crafted_alerts(db: Database, n: int) -> list[int]:
    """n alert events written directly (rule names made up), each with a six-month trend."""
    months = ["2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10"]
    ids = []
    with db.connection() as conn:
        for i in range(n):
            trend = [{"month": m, "value": 1.0 + i / 10 + k / 5} for k, m in enumerate(months)]
            evidence = {"rule": {"title": f"测试规则{i}", "metric_name": "不良率", "unit": "%", "threshold": 2.0,
                                 "condition": "不良率 ≥ 2.00%"}, "display": f"{trend[-1]['value']:.2f}%",
                        "month_label": "2026年10月", "trend": trend}
            row = conn.execute(
                "INSERT INTO alert_events (rule, product_code, month, level, metric, value, condition, evidence)"
                " VALUES (%(r)s, 'SL001', '2026-10-01', 'watch', 'npl_rate', %(v)s, '不良率 ≥ 2.00%%', %(e)s)"
                " RETURNING id",
                {"r": f"crafted_{i}", "v": trend[-1]["value"], "e": Jsonb(evidence)},
            ).fetchone()
            assert row is not None
            ids.append(row["id"])
    return ids


# -- recipients and the message -----------------------------------------------------------------


def test_recipients_are_product_managers_and_risk_staff_with_a_wecom_account(bank: Database):
    with bank.connection() as conn:
        people = recipients(conn)
        expected = conn.execute(
            "SELECT user_id FROM users WHERE role IN ('designer', 'risk') AND coalesce(wecom_userid, '') <> ''"
            " ORDER BY role, user_id").fetchall()
    assert [p["user_id"] for p in people] == [r["user_id"] for r in expected] == ["designer01", "risk01"]
    assert [p["wecom_userid"] for p in people] == [DESIGNER_WECOM, RISK_WECOM]  # not rm_qd's zhangwei


def test_the_card_gives_the_figures_the_link_and_how_to_dispose(bank: Database):
    run_alerts(bank)
    fired = events(bank)
    assert fired
    with bank.connection() as conn:
        latest = one(conn, "SELECT max(month) AS m FROM metrics_monthly")["m"]
    for alert in fired:
        message = alert_message(alert, PUBLIC + "/")
        aid = alert["id"]
        level = {"suspend": "【停牌】", "watch": "【关注】", "exit_review": "【退出评估】"}[alert["level"]]
        assert message["title"].startswith(level + alert["product_name"])
        assert len(message["title"].encode()) <= 128 and len(message["description"].encode()) <= 512
        assert message["url"] == f"{PUBLIC}/#alert={aid}"
        for words in (f"预警 #{aid}", f"确认 #{aid}", f"误报 #{aid}", f"已处置 #{aid}", f"{latest.year}年{latest.month}月"):
            assert words in message["description"] and words in message["markdown"], words
        assert "<" not in message["description"].replace("<div", "").replace("</div", "")
        # Without a public URL there is no link, and the text says how to ask instead.
        plain = alert_message(alert, None)
        assert plain["url"] == "" and f"在谱翼中发送「预警 #{aid}」查看原因" in plain["markdown"]

    # The figure on the card is the metric computed here from the facts, independently.
    npl = [a for a in fired if a["metric"] == "npl_rate"]
    assert npl
    with bank.connection() as conn:
        for alert in npl:
            rate = one(conn, "SELECT 100.0 * sum(npl_balance) / nullif(sum(balance), 0) AS r FROM metrics_monthly"
                             " WHERE product_code = %(p)s AND month = %(m)s",
                       {"p": alert["product_code"], "m": latest})["r"]
            assert f"不良率 {float(rate):.2f}%" in alert_message(alert, PUBLIC)["title"]


# -- once only ----------------------------------------------------------------------------------


def test_each_new_alert_is_pushed_once_as_a_card_then_its_chart(bank: Database, standin, api: FastAPI):
    settings = push_settings(bank, standin[0])
    first = run_alerts(bank)
    fired = events(bank)
    assert first["new"] == len(fired) > 0
    result = push_new_alerts(bank, settings)
    assert result["queued"] == len(fired) and result["failed"] == 0
    assert result["recipients"] == ["designer01", "risk01"]
    # Twice more, and the alert run again: nothing new.
    assert run_alerts(bank)["new"] == 0
    again = push_new_alerts(bank, settings)
    assert again["queued"] == 0 and again["alerts"] == [] and again["message"] == "没有需要推送的新预警。"
    assert all(e["pushed_at"] is not None for e in events(bank))

    rows = outbox(bank)
    assert len(rows) == 2 * len(fired)
    for alert in fired:
        card, chart = [r for r in rows if r["group_key"] == f"alert:{alert['id']}"]
        assert (card["key"], card["msg_type"], card["seq"]) == (f"alert:{alert['id']}#1", "textcard", 1)
        assert (chart["key"], chart["msg_type"], chart["seq"]) == (f"alert:{alert['id']}#2", "image", 2)
        assert card["to_users"] == chart["to_users"] == [DESIGNER_WECOM, RISK_WECOM]
        assert card["payload"]["url"] == f"{PUBLIC}/#alert={alert['id']}" and card["payload"]["btntxt"] == "查看详情"
        png = png_of(chart["payload"])
        assert len(png) < 100_000 and Image.open(io.BytesIO(png)).format == "PNG"

    # Through the stand-in: each card, then its chart, which was uploaded first.
    drain(sender(bank, standin))
    sent = sent_messages(api)
    assert [m["msgtype"] for m in sent].count("textcard") == [m["msgtype"] for m in sent].count("image") == len(fired)
    media = {u["media_id"]: u for u in uploads(api)}
    assert len(media) == len(fired)
    for alert in fired:
        url = f"{PUBLIC}/#alert={alert['id']}"
        at = next(i for i, m in enumerate(sent) if m["msgtype"] == "textcard" and m["textcard"]["url"] == url)
        image = sent[at + 1]  # right after its card
        assert image["msgtype"] == "image" and media[image["image"]["media_id"]]["filename"] == f"alert-{alert['id']}.png"
        assert sent[at]["touser"] == image["touser"] == f"{DESIGNER_WECOM}|{RISK_WECOM}"
        assert media[image["image"]["media_id"]]["content_type"] == "image/png"


def test_two_pushers_at_once_still_push_each_alert_once(bank: Database, standin):
    ids = crafted_alerts(bank, 30)
    settings = push_settings(bank, standin[0])
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []
    failures: list[BaseException] = []

    def push() -> None:
        try:
            barrier.wait()
            results.append(push_new_alerts(bank, settings))
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=push) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert sum(r["queued"] for r in results) == 30
    assert sorted(a for r in results for a in r["alerts"]) == ids  # disjoint: nobody took an alert twice
    rows = outbox(bank)
    assert len(rows) == 60 and sorted({r["group_key"] for r in rows}) == sorted(f"alert:{i}" for i in ids)


def test_an_alert_that_cannot_be_queued_stays_new_and_the_others_go(bank: Database, standin,
                                                                    monkeypatch: pytest.MonkeyPatch):
    ids = crafted_alerts(bank, 3)
    import tools.alert_push as alert_push

    real = alert_push.chart_png

    def broken(alert: dict[str, Any]) -> bytes:
        if alert["id"] == ids[1]:
            raise RuntimeError("no chart today")
        return real(alert)

    monkeypatch.setattr(alert_push, "chart_png", broken)
    result = push_new_alerts(bank, push_settings(bank, standin[0]))
    assert (result["queued"], result["failed"]) == (2, 1) and "未能入队" in result["message"]
    pushed = {e["id"]: e["pushed_at"] for e in events(bank)}
    assert pushed[ids[1]] is None and pushed[ids[0]] and pushed[ids[2]]  # queued and marked together
    assert {r["group_key"] for r in outbox(bank)} == {f"alert:{ids[0]}", f"alert:{ids[2]}"}
    monkeypatch.setattr(alert_push, "chart_png", real)
    assert push_new_alerts(bank, push_settings(bank, standin[0]))["alerts"] == [ids[1]]  # next time


def test_without_a_public_url_the_text_goes_as_markdown_with_the_chart(bank: Database, standin, api: FastAPI):
    (aid,) = crafted_alerts(bank, 1)
    assert push_new_alerts(bank, push_settings(bank, standin[0], public_url=None))["queued"] == 1
    text, chart = outbox(bank)
    assert (text["msg_type"], chart["msg_type"]) == ("markdown", "image")
    assert f"在谱翼中发送「预警 #{aid}」查看原因" in text["payload"]["content"]
    drain(sender(bank, standin))
    assert [m["msgtype"] for m in sent_messages(api)] == ["markdown", "image"]


def test_nobody_to_tell_means_nothing_is_pushed_and_the_alerts_wait(bank: Database, standin):
    crafted_alerts(bank, 2)
    with bank.connection() as conn:
        conn.execute("UPDATE users SET wecom_userid = NULL WHERE user_id IN ('designer01', 'risk01')")
    try:
        result = push_new_alerts(bank, push_settings(bank, standin[0]))
    finally:
        with bank.connection() as conn:
            conn.execute("UPDATE users SET wecom_userid = %(d)s WHERE user_id = 'designer01'", {"d": DESIGNER_WECOM})
            conn.execute("UPDATE users SET wecom_userid = %(r)s WHERE user_id = 'risk01'", {"r": RISK_WECOM})
    assert result["queued"] == 0 and "wecom_userid" in result["message"]
    assert outbox(bank) == [] and all(e["pushed_at"] is None for e in events(bank))


def test_dry_run_lists_without_queueing(bank: Database, standin):
    ids = crafted_alerts(bank, 2)
    result = push_new_alerts(bank, push_settings(bank, standin[0]), dry_run=True)
    assert result["alerts"] == ids and "试运行" in result["message"] and len(result["lines"]) == 2
    assert outbox(bank) == [] and all(e["pushed_at"] is None for e in events(bank))


# -- images through the outbox ------------------------------------------------------------------


def test_image_upload_then_send_with_a_transient_upload_failure_and_an_expired_token(bank: Database, standin,
                                                                                      api: FastAPI):
    png = line_chart_png(["2026-09", "2026-10"], [1.0, 2.0], threshold=1.5)
    with bank.connection() as conn:
        assert push_image(conn, "img:1", [RISK_WECOM], png)
        assert not push_image(conn, "img:1", [RISK_WECOM], png)  # once per key
    s = sender(bank, standin, base_delay=0.05)
    api.state.upload_fail_next, api.state.fail_mode = 1, "busy"
    assert s.send_due() == 0
    (row,) = outbox(bank)
    assert row["status"] == "pending" and "busy" in row["last_error"] and uploads(api) == []
    drain(s)
    (image,) = sent_messages(api)
    (upload,) = uploads(api)
    assert image["msgtype"] == "image" and image["image"] == {"media_id": upload["media_id"]}
    assert upload["data"] == png and upload["filename"] == "chart.png"
    assert outbox(bank)[0]["attempts"] == 2
    # An expired token during the upload is fetched again, once.
    expire_tokens(api)
    with bank.connection() as conn:
        push_image(conn, "img:2", [RISK_WECOM], png)
    assert s.send_due() == 1 and len(uploads(api)) == 2


def test_images_that_wecom_refuses_fail_for_good(bank: Database, standin, api: FastAPI):
    client = WeComClient(standin[0], CORP, SECRET, AGENT)
    with pytest.raises(PermanentSendError) as info:
        client.upload_image(b"\xff\xd8\xff\xe0 not a png", "x.jpg")
    assert info.value.errcode == 40005
    with pytest.raises(PermanentSendError):  # a media id the stand-in never issued
        client.send([RISK_WECOM], "image", {"media_id": "forged"})
    with bank.connection() as conn:  # a row whose picture was damaged in the database
        conn.execute(
            "INSERT INTO wecom_outbox (key, group_key, to_users, msg_type, payload)"
            " VALUES ('img:bad', 'img:bad', %(u)s, 'image', '{\"png_base64\": \"***\"}')", {"u": [RISK_WECOM]})
    assert sender(bank, standin).send_due() == 0
    assert outbox(bank)[0]["status"] == "failed" and "base64" in outbox(bank)[0]["last_error"]


def test_push_image_refuses_what_is_not_a_small_png(bank: Database):
    png = line_chart_png(["2026-10"], [1.0])
    with bank.connection() as conn:
        for bad in (b"GIF89a....", "text", b"\x89PNG\r\n\x1a\n" + b"\0" * 2_000_001):
            with pytest.raises(PuyiError):
                push_image(conn, "img:bad", [RISK_WECOM], bad)  # type: ignore[arg-type]
        with pytest.raises(PuyiError):
            push_image(conn, "img:bad", [RISK_WECOM], png, filename="图.png")
        with pytest.raises(PuyiError):  # the card is checked too, and nothing of the pair is queued
            push_card_with_image(conn, "pair:bad", [RISK_WECOM], "t", "d", "ftp://x", png)
        assert push_card_with_image(conn, "pair:1", [RISK_WECOM], "t", "d", "https://x.example", png)
        assert not push_markdown(conn, "pair:1", [RISK_WECOM], "同一个键")
    assert [(r["key"], r["msg_type"]) for r in outbox(bank)] == [("pair:1#1", "textcard"), ("pair:1#2", "image")]


# -- the scheduled job --------------------------------------------------------------------------


@contextmanager
def serving(db: Database, settings: Settings, assistant: Any = None) -> Iterator[tuple[TestClient, FastAPI]]:
    app = create_app(settings=settings, db=db, assistant=assistant)
    with TestClient(app, raise_server_exceptions=False) as client:
        if app.state.wecom.sender is not None:
            app.state.wecom.sender.base_delay = 0.1
        yield client, app


def test_the_server_evaluates_and_pushes_new_alerts_on_schedule(bank: Database, standin, api: FastAPI):
    settings = push_settings(bank, standin[0], alert_interval_minutes=0.005)  # every 0.3 s
    with serving(bank, settings) as (_, app):
        assert app.state.alerts.enabled
        cards = wait_until(lambda: [m for m in sent_messages(api) if m["msgtype"] == "textcard"] or None)
        fired = wait_until(lambda: events(bank) if all(e["pushed_at"] for e in events(bank)) else None)
        wait_until(lambda: len(sent_messages(api)) >= 2 * len(fired))
        runs = app.state.alerts.runs
        wait_until(lambda: app.state.alerts.runs >= runs + 2)  # it keeps running; nothing new to push
    assert cards and {m["textcard"]["url"] for m in sent_messages(api) if m["msgtype"] == "textcard"} == {
        f"{PUBLIC}/#alert={e['id']}" for e in fired}
    assert len(sent_messages(api)) == 2 * len(fired)
    assert app.state.alerts._task is None  # stopped with the server


def test_one_process_at_a_time_runs_the_scheduled_job(bank: Database, standin):
    settings = push_settings(bank, standin[0])
    with psycopg.connect(bank.url, autocommit=True) as other:  # another process holds the lock
        other.execute("SELECT pg_advisory_lock(hashtextextended('puyi.alerts.scheduled', 0))")
        assert scheduled_run(bank, settings) is None
        assert events(bank) == []
        other.execute("SELECT pg_advisory_unlock(hashtextextended('puyi.alerts.scheduled', 0))")
    outcome = scheduled_run(bank, settings)
    assert outcome is not None and outcome["run"]["new"] > 0 and outcome["push"]["queued"] == outcome["run"]["new"]
    # Another process ran it a moment ago: the evaluation is skipped, pushing still happens.
    crafted_alerts(bank, 1)
    outcome = scheduled_run(bank, settings, min_gap_seconds=600)
    assert outcome is not None and outcome["run"] is None and outcome["push"]["queued"] == 1
    # Without WeCom, alerts are evaluated and nothing is pushed.
    plain = bank.settings.model_copy(update={"wecom_secret": None})
    outcome = scheduled_run(bank, plain)
    assert outcome is not None and "push" not in outcome


def test_a_failed_run_is_logged_and_retried_at_the_next_interval(bank: Database, caplog: pytest.LogCaptureFixture):
    calls: list[float] = []

    def flaky(db: Database, settings: Any, gap: float) -> dict[str, Any]:
        calls.append(gap)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")
        return {"run": None, "push": {"queued": 1}}

    woken = threading.Event()

    async def main() -> None:
        settings = bank.settings.model_copy(update={"alert_interval_minutes": 0.001})
        job = AlertScheduler(settings, bank, on_queued=woken.set, run=flaky)
        await job.start()
        for _ in range(200):
            if job.runs >= 2:
                break
            await asyncio.sleep(0.02)
        await job.stop()
        assert job.runs >= 2

    with caplog.at_level("ERROR", logger="puyi.alerts"):
        asyncio.run(main())
    assert any("database hiccup" in (r.exc_text or "") or "run failed" in r.getMessage() for r in caplog.records)
    assert woken.is_set() and abs(calls[0] - 0.054) < 1e-6  # 90 % of the interval
    off = AlertScheduler(bank.settings.model_copy(update={"alert_interval_minutes": 0}), bank)
    asyncio.run(off.start())
    assert not off.enabled and off._task is None


# -- the command line ---------------------------------------------------------------------------


def cli(db: Database, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PUYI_")}
    return subprocess.run([sys.executable, "-m", "api.cli", "alerts", *args], capture_output=True, text=True,
                          env=base | {"PUYI_DATABASE_URL": db.url, "PUYI_HOME": str(db.settings.home)} | env,
                          timeout=120, cwd=ROOT)


def test_puyi_alerts_push(bank: Database, standin, api: FastAPI):
    ids = crafted_alerts(bank, 2)
    r = cli(bank, "push")
    assert r.returncode == 2 and "企业微信未配置" in r.stderr
    assert outbox(bank) == []
    wecom = {"PUYI_WECOM_CORP_ID": CORP, "PUYI_WECOM_SECRET": SECRET, "PUYI_WECOM_AGENT_ID": AGENT,
             "PUYI_WECOM_API_BASE": standin[0], "PUYI_PUBLIC_URL": PUBLIC}
    r = cli(bank, "push", "--dry-run", **wecom)
    assert r.returncode == 0, r.stderr
    assert "将推送 2 条预警" in r.stdout and f"#{ids[0]}" in r.stdout and outbox(bank) == []
    r = cli(bank, "push", **wecom)
    assert r.returncode == 0, r.stderr
    assert "已将 2 条新预警推送给 2 人" in r.stdout and "已发送 4 条" in r.stdout
    assert [m["msgtype"] for m in sent_messages(api)] == ["textcard", "image"] * 2
    r = cli(bank, "push", **wecom)
    assert r.returncode == 0 and "没有需要推送的新预警" in r.stdout
    assert len(sent_messages(api)) == 4


# -- replies in WeCom ---------------------------------------------------------------------------


def test_a_wecom_reply_explains_and_disposes_the_alert(bank: Database, standin, api: FastAPI):
    """The risk user gets the card, asks 「预警 #ID」 and replies 「确认 #ID」 in WeCom: the
    explanation comes back and the disposition is recorded as theirs, from WeCom."""
    from agents.service import Assistant

    run_alerts(bank)
    aid = events(bank)[0]["id"]
    settings = push_settings(bank, standin[0])
    with serving(bank, settings, Assistant(bank)) as (client, _):
        assert post(client, message_xml(RISK_WECOM, f"预警 #{aid}", "7001")).status_code == 200
        (why,) = wait_until(lambda: [m for m in sent_messages(api) if m["touser"] == RISK_WECOM] or None)
        assert f"#{aid}" in why["markdown"]["content"] or events(bank)[0]["product_name"] in why["markdown"]["content"]
        assert post(client, message_xml(RISK_WECOM, f"确认 #{aid}", "7002")).status_code == 200
        wait_until(lambda: len(sent_messages(api)) >= 2)
    with bank.connection() as conn:
        rows = conn.execute("SELECT * FROM alert_dispositions WHERE alert_id = %(a)s", {"a": aid}).fetchall()
    assert [(r["user_id"], r["disposition"], r["channel"]) for r in rows] == [("risk01", "confirmed", "wecom")]
