"""The web chat in a real browser: headless Chromium (Playwright) against the real app served by
uvicorn on a loopback port, over the real database.

One run uses the real assistant (a streamed catalogue answer and a follow-up in the same
conversation); the other a scripted assistant whose answer carries citations (one pointing at a
real passage), every kind of structured block and hostile HTML, so the page's rendering,
passage modal, feedback, conversation list and sign-out can be checked deterministically.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from agents.history import record_turn
from agents.service import Answer, Assistant
from api.server import create_app
from core.access import Principal
from core.db import Database
from core.tokens import issue_token, revoke_tokens
from eval.live import serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOC_PATH = "webchat-test/薪易快贷产品手册.md"
TIMEOUT_MS = 10_000

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} 不存在：网页对话的浏览器测试需要 Debian 的 chromium 包"
        if os.environ.get("PUYI_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def open_page(browser: Browser, base_url: str, path: str = "/") -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(base_url + path)
        yield page
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


def sign_in(page: Page, token: str) -> None:
    page.fill("#token", token)
    page.click("#signin")
    page.wait_for_selector("#app-view:not([hidden])")


def ask(page: Page, question: str) -> Any:
    """Send a question with Enter; wait for its answer to finish; return the answer's locator."""
    before = page.locator(".answer").count()
    page.fill("#message", question)
    page.press("#message", "Enter")
    answer = page.locator(".answer").nth(before)
    answer.wait_for()
    page.wait_for_function(
        "n => { const a = document.querySelectorAll('.answer')[n];"
        " return a && !a.classList.contains('pending') && !document.querySelector('#send').disabled; }",
        arg=before,
    )
    return answer


def save_screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=False)
    target = os.environ.get("PUYI_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / name)
    return shot


# ---------- a scripted assistant: every kind of content the page must render ----------

HOSTILE = "<img src=x onerror=\"window.__xss=1\"> 与 <script>window.__xss=2</script>"

ANSWER_MD = f"""## 薪易快贷要点

薪易快贷是面向代发工资客户的**个人信用贷款**，利率区间 3.45%–8.00% **[1]**，支用前须完成人脸识别 [2]。

- 额度：1 万至 30 万元
- 期限：6 至 36 个月
  - 可提前还款
1. 第一步：线上申请
2. 第二步：人脸识别

| 要素 | 取值 |
| --- | --- |
| 最低利率 | 3.45% |
| 最高额度 | 300,000 |

> 注意：以正式制度为准，代码 `SL001`。

原文含有 {HOSTILE} 字样，详见 [产品目录](/api/products/SL001) 与 [危险链接](javascript:window.__xss=3)。
"""

DISPLAY: list[dict[str, Any]] = [
    {"type": "table", "title": "近三月余额", "columns": ["月份", "余额（万元）", "客户数"],
     "rows": [["2024-07", 1234.5, 120], ["2024-08", 1300, 125], ["2024-09", None, 130]]},
    {"type": "chart", "title": "余额趋势", "x": ["2024-07", "2024-08", "2024-09"], "unit": "万元",
     "series": [{"name": "余额", "values": [1234.5, 1300, None]}, {"name": "目标", "values": [1200, 1250, 1350]}]},
    {"type": "alert", "title": "不良率超过阈值", "level": "red", "product": "薪易快贷", "rule": "不良率 > 2%",
     "summary": "9月不良率 2.6%，连续两个月超过阈值。",
     "evidence": [{"label": "不良率", "value": "2.6%"}, {"label": "阈值", "value": "2%"}],
     "actions": ["暂停新增投放", "开展贷后排查"]},
    {"type": "comparison", "title": "方案对比", "columns": ["要素", "方案A", "方案B"],
     "rows": [["期限", "36 个月", "24 个月"], ["利率", "4.35%", "4.35%"]]},
    {"type": "mystery", "title": "未知类型不应显示"},
]


class ScriptedAssistant(Assistant):
    """The real Assistant's checks and storage, with a scripted turn instead of the graph."""

    def __init__(self, db: Database, chunk_id: int) -> None:
        super().__init__(db, graph=object())
        self.chunk_id = chunk_id
        self.sessions: list[str | None] = []
        self.gate: threading.Event | None = threading.Event()

    def events(
        self,
        question: str | None,
        user_id: str | None = None,
        session_id: str | None = None,
        qid: Any = None,
        principal: Principal | None = None,
        channel: str | None = None,
    ) -> Iterator[tuple[str, Any]]:
        text = self.check_question(question)
        who = principal or self.principal(user_id)
        self.sessions.append(session_id)
        session = session_id or uuid.uuid4().hex
        yield "route", {"route": "knowledge", "route_name": "知识库", "session_id": session}
        if self.gate is not None:  # the first turn waits until the test has seen the pending badge
            self.gate.wait(timeout=5)
            self.gate = None
        yield "tools", ["search_documents"]
        citations: list[dict[str, Any]] = [
            {"chunk_id": self.chunk_id, "title": "薪易快贷产品手册", "doc_type": "manual", "path": DOC_PATH,
             "heading": "第二章 利率与期限", "page": 3, "snippet": "利率区间 3.45%–8.00%", "score": 0.91},
            {"chunk_id": None, "title": "人脸识别操作规程", "doc_type": "compliance", "path": "规程/人脸识别.md",
             "heading": "支用", "page": None, "snippet": "支用前须完成人脸识别，并留存影像。", "score": 0.52},
        ]
        data = {"intent": "knowledge", "tool_calls": [], "display": DISPLAY}
        with self.db.connection() as conn:
            turn_id = record_turn(conn, session_id=session, user_id=who.user_id, channel=channel or "web",
                                  question=text, route="knowledge", answer=ANSWER_MD, citations=citations, data=data)
        yield "answer", Answer(id=qid, route="knowledge", answer=ANSWER_MD, citations=citations, data=data,
                               session_id=session, turn_id=turn_id)


@pytest.fixture()
def passage(loaded_db: Database) -> Iterator[int]:
    """Three consecutive chunks of one document; yields the middle one's id. Removed afterwards,
    so that no odd-sized vector stays behind for other tests."""
    with loaded_db.connection() as conn:
        meta = conn.execute("SELECT dim FROM kb_meta WHERE id = 1").fetchone()
        dim = int(meta["dim"]) if meta else 3
        vector = "[" + ",".join(["0.1"] * dim) + "]"
        conn.execute(
            "INSERT INTO kb_documents (path, source, title, doc_type, access, sha256, source_path, chunks, embedder)"
            " VALUES (%(p)s, 'ingest', '薪易快贷产品手册', 'manual', 'public', 'x', %(p)s, 3, 'test')",
            {"p": DOC_PATH},
        )
        ids = []
        for ordinal, text in enumerate(["前文：第一章 产品概述。", "正文：利率区间 3.45%–8.00%，按客户评级定价。",
                                        "后文：第三章 还款方式。"]):
            row = conn.execute(
                "INSERT INTO kb_chunks (doc_path, ordinal, kind, title, heading_path, page, text, doc_type, access,"
                " tokens, embedding) VALUES (%(p)s, %(o)s, 'text', '薪易快贷产品手册', %(h)s, 3, %(t)s, 'manual',"
                " 'public', to_tsvector('simple', %(t)s), %(v)s::vector) RETURNING id",
                {"p": DOC_PATH, "o": ordinal, "h": ["第二章 利率与期限"], "t": text, "v": vector},
            ).fetchone()
            assert row is not None
            ids.append(int(row["id"]))
    try:
        yield ids[1]
    finally:
        with loaded_db.connection() as conn:
            conn.execute("DELETE FROM kb_documents WHERE path = %(p)s", {"p": DOC_PATH})


# ---------- the tests ----------


def test_real_assistant_streams_answers_in_one_conversation(browser: Browser, loaded_db: Database) -> None:
    from playwright.sync_api import expect

    with loaded_db.connection() as conn:
        token = issue_token(conn, "rm_sn")
    with serve(create_app(db=loaded_db)) as base, open_page(browser, base) as page:
        expect(page.locator("#signin-view")).to_be_visible()
        sign_in(page, token)
        expect(page.locator("#user-name")).to_have_text("李娜")
        expect(page.locator("#user-role")).to_have_text("客户经理")
        expect(page.locator("#user-scope")).to_contain_text("及下辖机构")

        first = ask(page, "介绍一下薪易快贷")
        expect(first.locator(".route-badge")).to_have_text("产品目录")
        expect(first.locator(".answer-body")).to_contain_text("薪易快贷")
        expect(first.locator(".answer-error")).to_be_hidden()
        expect(page.locator(".session-item")).to_have_count(1)

        second = ask(page, "它的期限是多久？")  # a follow-up: same conversation, not a new one
        expect(second.locator(".route-badge")).not_to_be_empty()
        expect(page.locator(".session-item")).to_have_count(1)
        expect(page.locator(".session-item")).to_contain_text("2 轮")

        first.locator(".feedback-up").click()
        expect(first.locator(".feedback-status")).to_have_text("已收到反馈")
        expect(first.locator(".feedback-up")).to_have_class("feedback-btn feedback-up selected")
        turn_id = int(first.get_attribute("data-turn-id") or 0)
        with loaded_db.connection() as conn:
            row = conn.execute("SELECT rating FROM feedback WHERE turn_id = %(t)s AND user_id = 'rm_sn'",
                               {"t": turn_id}).fetchone()
        assert row is not None and row["rating"] == 1

        page.click("#logout")
        expect(page.locator("#signin-view")).to_be_visible()
        assert page.evaluate("localStorage.getItem('puyi.token')") is None

        # The sign-in link `puyi serve --sign-in` prints: the token in the fragment, then cleared.
        with open_page(browser, base, "/#token=" + token) as linked:
            expect(linked.locator("#user-name")).to_have_text("李娜")
            assert "token" not in linked.url


def test_rendering_citations_blocks_feedback_and_sessions(
    browser: Browser, loaded_db: Database, passage: int, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with loaded_db.connection() as conn:
        token = issue_token(conn, "risk01")
    assistant = ScriptedAssistant(loaded_db, chunk_id=passage)
    with serve(create_app(db=loaded_db, assistant=assistant)) as base, open_page(browser, base) as page:
        # A wrong token is refused with the server's message; the right one signs in.
        page.fill("#token", "puyi_not-a-token")
        page.click("#signin")
        expect(page.locator("#signin-error")).to_contain_text("令牌无效")
        sign_in(page, token)
        expect(page.locator("#user-name")).to_have_text("孙立")
        expect(page.locator("#user-role")).to_have_text("风险管理")
        expect(page.locator("#user-scope")).to_contain_text("全行")
        expect(page.locator(".session-empty")).to_have_text("暂无历史会话")

        # The route badge shows while the answer is still being prepared.
        page.fill("#message", "薪易快贷的利率和支用要求")
        page.press("#message", "Enter")
        pending = page.locator(".answer.pending")
        expect(pending.locator(".route-badge")).to_have_text("知识库")
        assert assistant.gate is not None
        assistant.gate.set()
        answer = page.locator(".answer").first
        expect(answer).not_to_have_class("answer pending")
        expect(page.locator("#send")).to_be_enabled()

        # Markdown, rendered safely.
        body = answer.locator(".answer-body")
        expect(body.locator("h4")).to_have_text("薪易快贷要点")
        expect(body.locator("strong").first).to_have_text("个人信用贷款")
        expect(body.locator("ul > li")).to_have_count(3)
        expect(body.locator("ol > li")).to_have_count(2)
        expect(body.locator("table.md-table tbody tr")).to_have_count(2)
        expect(body.locator("blockquote code")).to_have_text("SL001")
        expect(body.locator("a[href='/api/products/SL001']")).to_have_text("产品目录")
        expect(body.locator(".md-link-blocked")).to_have_text("危险链接")
        expect(body).to_contain_text(HOSTILE)  # shown as text …
        assert body.locator("img, script, a[href^='javascript']").count() == 0  # … never as markup
        assert page.evaluate("window.__xss") is None
        expect(body.locator("a.cite-ref")).to_have_count(2)

        # Structured blocks; the unknown one is skipped.
        table = answer.locator("[data-block=table]")
        expect(table.locator("tbody tr")).to_have_count(3)
        expect(table.locator("td.num").first).to_have_text("1,234.5")
        chart = answer.locator("[data-block=chart] svg.chart")
        expect(chart.locator("path.line")).to_have_count(2)
        expect(chart.locator("circle.point")).to_have_count(5)
        expect(chart.locator("circle.point title").first).to_have_text("余额 · 2024-07：1,234.5 万元")
        alert = answer.locator(".alert-card.level-red")
        expect(alert).to_contain_text("不良率超过阈值")
        expect(alert.locator(".alert-evidence dt")).to_have_count(2)
        expect(alert.locator(".alert-actions li")).to_have_count(2)
        comparison = answer.locator("[data-block=comparison] table.comparison-table")
        expect(comparison.locator("thead th")).to_have_count(3)
        expect(comparison.locator("tr.differs")).to_have_count(1)
        expect(answer.locator("[data-block=mystery]")).to_have_count(0)
        expect(answer).not_to_contain_text("未知类型不应显示")

        # Citations: the full passage with its neighbours, or the snippet when there is no chunk.
        citations = answer.locator(".citation")
        expect(citations).to_have_count(2)
        expect(citations.first).to_contain_text("第 3 页")
        citations.first.click()
        modal = page.locator("#passage-modal")
        expect(modal).to_be_visible()
        expect(modal.locator(".passage-text")).to_have_text("正文：利率区间 3.45%–8.00%，按客户评级定价。")
        expect(modal.locator(".passage-before")).to_have_text("前文：第一章 产品概述。")
        expect(modal.locator(".passage-after")).to_have_text("后文：第三章 还款方式。")
        page.keyboard.press("Escape")
        expect(modal).to_be_hidden()
        citations.nth(1).click()
        expect(modal.locator(".passage-text")).to_have_text("支用前须完成人脸识别，并留存影像。")
        page.click("#passage-close")
        expect(modal).to_be_hidden()

        # 👎 with a comment is stored.
        answer.locator(".feedback-down").click()
        answer.locator(".feedback-comment").fill("缺少提前还款的违约金说明")
        answer.locator(".feedback-submit").click()
        expect(answer.locator(".feedback-status")).to_have_text("已收到反馈")
        expect(answer.locator(".feedback-down")).to_have_attribute("aria-pressed", "true")
        turn_id = int(answer.get_attribute("data-turn-id") or 0)
        with loaded_db.connection() as conn:
            row = conn.execute("SELECT rating, comment FROM feedback WHERE turn_id = %(t)s AND user_id = 'risk01'",
                               {"t": turn_id}).fetchone()
        assert row is not None and (row["rating"], row["comment"]) == (-1, "缺少提前还款的违约金说明")

        # The conversation is listed; a follow-up continues it.
        sessions = page.locator(".session-item")
        expect(sessions).to_have_count(1)
        expect(sessions.first).to_contain_text("薪易快贷的利率和支用要求")
        ask(page, "期限呢？")
        assert assistant.sessions[0] is None and assistant.sessions[1]
        expect(sessions).to_have_count(1)
        expect(sessions.first).to_contain_text("2 轮")

        # 新对话 clears the view; the conversation reloads from the list with its feedback.
        page.click("#new-chat")
        expect(page.locator(".answer")).to_have_count(0)
        expect(page.locator("#empty-state")).to_be_visible()
        sessions.first.click()
        expect(page.locator(".answer")).to_have_count(2)
        expect(page.locator(".question")).to_have_count(2)
        reloaded = page.locator(".answer").first
        expect(reloaded.locator(".route-badge")).to_have_text("知识库")
        expect(reloaded.locator(".feedback-down")).to_have_attribute("aria-pressed", "true")
        expect(reloaded.locator(".feedback-note")).to_contain_text("缺少提前还款的违约金说明")
        expect(reloaded.locator("svg.chart")).to_have_count(1)
        expect(sessions.first).to_have_class("session-item active")

        page.set_viewport_size({"width": 1280, "height": 1900})  # the whole first answer, blocks included
        page.locator(".messages").evaluate("m => { m.scrollTop = 0; }")
        shot = save_screenshot(page, tmp_path, "webchat.png")
        page.set_viewport_size({"width": 1280, "height": 900})
        assert shot.stat().st_size > 10_000

        # The token is remembered across a reload; once revoked, the next call signs out.
        page.reload()
        expect(page.locator("#user-name")).to_have_text("孙立")
        with loaded_db.connection() as conn:
            revoke_tokens(conn, "risk01")
        page.fill("#message", "还在吗？")
        page.press("#message", "Enter")
        expect(page.locator("#signin-view")).to_be_visible()
        expect(page.locator("#signin-error")).to_contain_text("令牌无效")
        assert page.evaluate("localStorage.getItem('puyi.token')") is None
