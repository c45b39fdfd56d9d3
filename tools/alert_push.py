"""Alert push: each new alert goes once to WeCom as a text card, then its trend chart as an image.

Recipients. The data contract links users to branches, not to the departments that own products
(`products.owner_dept` is free text), so "the product's owners" are the product managers (role
`designer`, 产品经理), together with the risk staff (role `risk`). Only users with a `wecom_userid`
can be reached; nobody else is messaged (an `admin` is not, unless the bank gives them one of
those roles). With no such user, nothing is pushed and the alerts stay new for a later push.

Once only. An alert is new while `alert_events.pushed_at` is NULL (and it is active). A pusher
takes one new alert at a time with `FOR UPDATE SKIP LOCKED`, queues its messages in the WeCom
outbox (`api.push`, key `alert:{id}`) and sets `pushed_at` in the same transaction, so two pushers
(CLI and server, or two server processes) never queue an alert twice, and a crash queues nothing
half-way. The outbox key is a second guard: the same key is queued once, ever.

The message. A text card: 【停牌】/【关注】/【退出评估】 and the product, the rule, the value against
its condition and the month, how to dispose by replying (「确认 #ID」「误报 #ID」「已处置 #ID」, which
the alert route records), and a button to `{PUYI_PUBLIC_URL}/#alert={id}`, where the web chat asks
「预警 #ID」 for the explanation. Without a public URL there is no link to give: the same text goes
as markdown and says to send 「预警 #ID」 to 谱翼. Then a PNG of the metric's trend (six months, the
threshold dashed) as an image message, in the same outbox group so it follows the card.

Schedule. `AlertScheduler` (started by the server's lifespan when `alert_interval_minutes` > 0)
runs `run_alerts` and then `push_new_alerts` every interval in a worker thread. A session advisory
lock makes sure one process at a time does it, whatever the number of server processes and
workers; a failure is logged and the job runs again at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any

import psycopg

from api.push import (
    CARD_DESCRIPTION_BYTES,
    CARD_TITLE_BYTES,
    MARKDOWN_LIMIT,
    MAX_USERS,
    push_card_with_image,
    push_markdown_with_image,
)
from core.db import Database
from tools.alert_rules import LEVEL_NAMES, fmt_number
from tools.charts import line_chart_png
from tools.metric_defs import definition
from tools.periods import month_label

log = logging.getLogger("puyi.alerts")

# The scheduled job's lock: one process at a time runs alerts and pushes them.
SCHEDULE_LOCK = "puyi.alerts.scheduled"
# Units shown on the chart, which has ASCII labels only.
ASCII_UNITS = {"%": "%", "‱": "per 10k", "元": "CNY", "户": "customers", "笔": "count", "分": "score"}


def push_configured(settings: Any) -> bool:
    """Can Puyi send to WeCom? It needs the corp id, the app's secret and its agent id."""
    return bool(settings.wecom_corp_id and settings.wecom_secret and str(settings.wecom_agent_id or "").strip())


def recipients(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Product managers and risk staff who have a WeCom account, in a stable order. An account
    WeCom cannot have (a '|' or a space inside, '@all') is left out rather than stop every push."""
    return list(conn.execute(
        "SELECT user_id, name, role, btrim(wecom_userid) AS wecom_userid FROM users"
        " WHERE role IN ('designer', 'risk') AND coalesce(btrim(wecom_userid), '') <> ''"
        "   AND btrim(wecom_userid) !~ '[|[:space:]]' AND lower(btrim(wecom_userid)) <> '@all'"
        " ORDER BY role, user_id"
    ).fetchall())


# -- what one alert says ------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, with an ellipsis when cut."""
    if len(text.encode()) <= limit:
        return text
    out = ""
    for ch in text:
        if len((out + ch + "…").encode()) > limit:
            break
        out += ch
    return out + "…"


def _plain(text: Any) -> str:
    """Text for inside WeCom's card HTML and markdown tags: `<` `>` `&` as full-width look-alikes
    (a condition like 不良率 < 3% must not open a tag), no line breaks."""
    return " ".join(str(text).translate({ord("<"): "＜", ord(">"): "＞", ord("&"): "＆"}).split())


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _metric(key: str) -> tuple[str, str]:
    """The metric's Chinese name and unit (the key itself when unknown)."""
    try:
        d = definition(key)
    except KeyError:
        return key, ""
    return d.name, d.unit


def _trend(evidence: dict[str, Any]) -> tuple[list[str], list[float | None]]:
    """The evidence's six-month trend (`tools.alerts.metric_figures`) as (months, values)."""
    points = [p for p in evidence.get("trend") or [] if isinstance(p, dict)]
    return [str(p.get("month") or "")[:7] for p in points], [_number(p.get("value")) for p in points]


def _rule(alert: dict[str, Any]) -> dict[str, Any]:
    """The rule as snapshotted in the evidence (`tools.alerts.rule_facts`); {} if absent."""
    rule = (alert.get("evidence") or {}).get("rule")
    return rule if isinstance(rule, dict) else {}


def chart_png(alert: dict[str, Any]) -> bytes:
    """The alert's metric over its trend months, with the threshold dashed (ASCII labels)."""
    evidence = alert.get("evidence") or {}
    months, values = _trend(evidence)
    if not months:
        months, values = [str(alert["month"])[:7]], [_number(alert.get("value"))]
    unit = str(_rule(alert).get("unit") or _metric(alert["metric"])[1])
    return line_chart_png(
        months, values, threshold=_number(_rule(alert).get("threshold")),
        title=f"Alert #{alert['id']}  {alert['product_code']}  {alert['metric']}",
        series_name=alert["metric"], threshold_name="threshold", unit=ASCII_UNITS.get(unit, unit),
    )


def alert_message(alert: dict[str, Any], public_url: str | None) -> dict[str, str]:
    """The card's title, description and url (url empty without a public URL), and the same as
    markdown for when there is no link to give."""
    aid = alert["id"]
    level = LEVEL_NAMES.get(alert["level"], alert["level"])
    product = alert.get("product_name") or alert["product_code"]
    evidence, rule = alert.get("evidence") or {}, _rule(alert)
    metric_name, unit = _metric(alert["metric"])
    metric_name = _plain(rule.get("metric_name") or metric_name)
    rule_name = _plain(rule.get("title") or alert["rule"])
    value = _plain(evidence.get("display") or fmt_number(_number(alert.get("value")), str(rule.get("unit") or unit)))
    month = _plain(evidence.get("month_label") or month_label(alert["month"]))
    condition = _plain(alert.get("condition") or rule.get("condition") or "")
    product = _plain(product)
    dispose = f"回复「确认 #{aid}」「误报 #{aid}」「已处置 #{aid}」记录处置"
    title = _clip(f"【{level}】{product}：{metric_name} {value}", CARD_TITLE_BYTES)
    url = f"{public_url.rstrip('/')}/#alert={aid}" if public_url else ""
    how = "点击「查看详情」或" if url else ""
    # Most important first; a line that does not fit in WeCom's 512 bytes is left out whole
    # (cutting one could cut its tag).
    lines = [
        ("gray", f"{month} · 全行 · 预警 #{aid}"),
        ("highlight", f"{metric_name} {value}（触发条件：{condition}）"),
        ("normal", f"{how}在谱翼中发送「预警 #{aid}」查看原因；{dispose}"),
        ("normal", f"规则：{rule_name}"),
    ]
    description = ""
    for n, (cls, text) in enumerate(lines):
        part = f'<div class="{cls}">{_clip(text, 200 if n else 120)}</div>'
        if len((description + part).encode()) <= CARD_DESCRIPTION_BYTES:
            description += part
    markdown = "\n".join([
        f"**{title}**",
        f'> <font color="comment">{month} · 全行 · 预警 #{aid}</font>',
        f'> <font color="warning">{metric_name} {value}</font>（触发条件：{condition}）',
        f"> 规则：{rule_name}",
        f"在谱翼中发送「预警 #{aid}」查看原因；{dispose}。",
    ])
    return {"title": title, "description": description, "url": url, "markdown": _clip(markdown, MARKDOWN_LIMIT)}


# -- pushing ------------------------------------------------------------------------------------

_ALERT_COLUMNS = (
    "e.id, e.rule, e.product_code, p.name AS product_name, e.month, e.level, e.metric, e.value, e.condition,"
    " e.evidence"
)


def _queue_alert(conn: psycopg.Connection[Any], alert: dict[str, Any], users: list[str], public_url: str | None) -> bool:
    message = alert_message(alert, public_url)
    png = chart_png(alert)
    filename = f"alert-{alert['id']}.png"
    queued = False
    for n, start in enumerate(range(0, len(users), MAX_USERS), 1):
        chunk = users[start:start + MAX_USERS]
        key = f"alert:{alert['id']}" + (f":{n}" if n > 1 else "")
        if message["url"]:
            queued |= push_card_with_image(conn, key, chunk, message["title"], message["description"],
                                           message["url"], png, btntxt="查看详情", filename=filename)
        else:
            queued |= push_markdown_with_image(conn, key, chunk, message["markdown"], png, filename=filename)
    return queued


def push_new_alerts(db: Database, settings: Any, *, dry_run: bool = False, limit: int = 500) -> dict[str, Any]:
    """Queue every new alert (up to `limit`) for the product managers and risk staff on WeCom,
    once. Returns counts, one line per alert and a Chinese summary in `message`."""
    with db.connection() as conn:
        people = recipients(conn)
        users = [p["wecom_userid"] for p in people]
        if dry_run:
            pending = conn.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alert_events e LEFT JOIN products p ON p.code = e.product_code"
                " WHERE e.pushed_at IS NULL AND e.active ORDER BY e.id LIMIT %(n)s", {"n": limit},
            ).fetchall()
    result: dict[str, Any] = {"recipients": [p["user_id"] for p in people], "queued": 0, "skipped": 0,
                              "failed": 0, "alerts": [], "lines": []}
    if dry_run:
        for waiting in pending:
            result["alerts"].append(waiting["id"])
            result["lines"].append(f"#{waiting['id']} {alert_message(waiting, settings.public_url)['title']}")
        who = "、".join(f"{p['name']}（{p['wecom_userid']}）" for p in people) or "无"
        result["message"] = (f"将推送 {len(pending)} 条预警给 {len(people)} 人：{who}（试运行，未入队）" if pending
                             else "没有需要推送的新预警。")
        return result
    if not users:
        result["message"] = "没有可接收预警的企业微信账号（产品经理、风险管理人员均未登记 wecom_userid），未推送。"
        return result
    bad: list[int] = []  # alerts that could not be queued this time: not taken again in this call
    while len(result["alerts"]) + len(bad) < limit:
        alert: dict[str, Any] | None = None
        try:
            with db.connection() as conn:
                alert = conn.execute(
                    f"SELECT {_ALERT_COLUMNS} FROM alert_events e LEFT JOIN products p ON p.code = e.product_code"
                    " WHERE e.pushed_at IS NULL AND e.active AND e.id <> ALL(%(bad)s)"
                    " ORDER BY e.id LIMIT 1 FOR UPDATE OF e SKIP LOCKED", {"bad": bad},
                ).fetchone()
                if alert is None:
                    break
                queued = _queue_alert(conn, alert, users, settings.public_url)
                conn.execute("UPDATE alert_events SET pushed_at = now() WHERE id = %(id)s", {"id": alert["id"]})
        except psycopg.OperationalError:
            raise  # the database is gone: nothing more can be done now
        except Exception:
            if alert is None:
                raise
            log.exception("alert push: alert #%s could not be queued; it stays new", alert["id"])
            bad.append(alert["id"])
            result["failed"] += 1
            continue
        result["alerts"].append(alert["id"])
        result["queued" if queued else "skipped"] += 1
        result["lines"].append(f"#{alert['id']} {alert_message(alert, settings.public_url)['title']}")
        log.info("alert push: #%s queued for %s", alert["id"], "|".join(users))
    n = result["queued"]
    result["message"] = (f"已将 {n} 条新预警推送给 {len(users)} 人（产品经理与风险管理人员）。" if n
                         else "没有需要推送的新预警。")
    if result["failed"]:
        result["message"] += f" {result['failed']} 条未能入队，下次再试（见日志）。"
    return result


def send_queued(db: Database, settings: Any, limit: int = 200) -> int:
    """Send what is due in the outbox now (the CLI does not wait for a server); returns how many
    were sent. Anything that fails stays queued for the server's sender to retry."""
    from api.push import OutboxSender
    from api.wecom_client import WeComClient

    client = WeComClient(settings.wecom_api_base, settings.wecom_corp_id, settings.wecom_secret,
                         settings.wecom_agent_id)
    sender, sent = OutboxSender(db, client), 0
    try:
        # One at a time, stopping at the first that does not go: with WeCom unreachable, each try
        # would wait for its timeout, and the server's sender retries with backoff anyway.
        while sent < limit and sender.send_due(1):
            sent += 1
        return sent
    finally:
        client.close()


# -- the scheduled job --------------------------------------------------------------------------


def scheduled_run(db: Database, settings: Any, min_gap_seconds: float = 0.0) -> dict[str, Any] | None:
    """Evaluate the alert rules and push new alerts, unless another process is doing it now
    (None then). The lock is a session advisory lock on a connection held for the whole job:
    it ends with the job, or with the connection should the process die. The evaluation is
    skipped when some process ran it less than `min_gap_seconds` ago (the other server processes
    tick at other moments of the interval); new alerts are pushed all the same."""
    from tools.alerts import run_alerts

    with db.connection() as lock_conn:
        got = lock_conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%(k)s, 0)) AS ok",
                                {"k": SCHEDULE_LOCK}).fetchone()
        lock_conn.commit()  # idle, not idle in a transaction, while the job runs
        if not (got and got["ok"]):
            log.info("alert schedule: another process is running the alerts now; skipped")
            return None
        try:
            recent = lock_conn.execute(
                "SELECT EXISTS (SELECT 1 FROM alert_runs WHERE started_at > now() - make_interval(secs => %(s)s)) AS yes",
                {"s": min_gap_seconds}).fetchone()
            lock_conn.commit()
            outcome: dict[str, Any] = {"run": None if min_gap_seconds > 0 and recent and recent["yes"] else run_alerts(db)}
            if push_configured(settings):
                outcome["push"] = push_new_alerts(db, settings)
            return outcome
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(hashtextextended(%(k)s, 0))", {"k": SCHEDULE_LOCK})
            lock_conn.commit()


class AlertScheduler:
    """Runs `scheduled_run` every `alert_interval_minutes` (the first run one interval after the
    start) in a worker thread, so the event loop never blocks; `stop` lets a run in hand finish."""

    def __init__(self, settings: Any, db: Database, on_queued: Callable[[], None] | None = None,
                 run: Callable[..., dict[str, Any] | None] = scheduled_run) -> None:
        self.settings, self.db, self.on_queued, self.run = settings, db, on_queued, run
        self.interval = max(float(settings.alert_interval_minutes or 0) * 60.0, 0.0)
        self.stop_timeout = 60.0
        self.runs = 0  # completed jobs (tests watch it)
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    async def start(self) -> None:
        if not self.enabled or self._task is not None:
            return
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="alert-schedule")
        log.info("alert schedule: every %.1f min", self.interval / 60)

    async def stop(self) -> None:
        if self._task is None or self._stop is None:
            return
        self._stop.set()
        _, pending = await asyncio.wait([self._task], timeout=self.stop_timeout)
        if pending:
            log.warning("alert schedule: the run in hand did not finish within %.0f s; cancelled", self.stop_timeout)
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _loop(self) -> None:
        assert self._stop is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.interval)
            if self._stop.is_set():
                return
            try:
                outcome = await asyncio.to_thread(self.run, self.db, self.settings, self.interval * 0.9)
            except Exception:
                log.exception("alert schedule: the run failed; trying again in %.1f min", self.interval / 60)
                continue
            self.runs += 1
            push = (outcome or {}).get("push") or {}
            if push.get("queued") and self.on_queued is not None:
                self.on_queued()
