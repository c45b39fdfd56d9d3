"""The web chat's alert links and buttons in a real browser (headless Chromium, as in
tests/test_webchat.py): a WeCom card's `/#alert=ID` link asks 「预警 #ID」 once signed in, whichever
way the sign-in happens, and an alert block's actions are buttons that send their text."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agents.history import record_turn
from agents.service import Answer, Assistant
from api.server import create_app
from core.access import Principal
from core.db import Database
from core.tokens import issue_token
from eval.live import serve
from tests.test_webchat import browser, open_page, sign_in  # noqa: F401 - browser: the shared fixture

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


class AlertAssistant(Assistant):
    """Answers every question with an alert card whose actions dispose the alert it names."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, graph=object())
        self.questions: list[str] = []

    def events(self, question: str | None, user_id: str | None = None, session_id: str | None = None,
               qid: Any = None, principal: Principal | None = None,
               channel: str | None = None) -> Iterator[tuple[str, Any]]:
        text = self.check_question(question)
        who = principal or self.principal(user_id)
        self.questions.append(text)
        session = session_id or uuid.uuid4().hex
        yield "route", {"route": "alert", "route_name": "风险预警", "session_id": session}
        number = "".join(ch for ch in text if ch.isdigit()) or "0"
        display = [{"type": "alert", "title": f"预警 #{number}", "level": "red", "product": "测试贷",
                    "rule": "不良率 ≥ 3.00%", "summary": "不良率 4.20%",
                    "evidence": [{"label": "不良率", "value": "4.20%"}],
                    "actions": [f"确认 #{number}", f"误报 #{number}", f"已处置 #{number}"]}]
        data = {"intent": "explain", "tool_calls": [], "display": display}
        answer = f"已收到：{text}"
        with self.db.connection() as conn:
            turn_id = record_turn(conn, session_id=session, user_id=who.user_id, channel=channel or "web",
                                  question=text, route="alert", answer=answer, citations=[], data=data)
        yield "answer", Answer(id=qid, route="alert", answer=answer, citations=[], data=data, session_id=session,
                               turn_id=turn_id)


def answered(page: Page, n: int) -> None:
    """Wait until n answers are shown and none is pending."""
    page.wait_for_function(
        "n => document.querySelectorAll('.answer').length >= n && !document.querySelector('.answer.pending')"
        " && !document.querySelector('#send').disabled", arg=n)


def test_alert_links_ask_once_signed_in_and_action_buttons_send(browser: Browser, loaded_db: Database) -> None:  # noqa: F811 - the fixture imported above
    from playwright.sync_api import expect

    with loaded_db.connection() as conn:
        token = issue_token(conn, "risk01")
    assistant = AlertAssistant(loaded_db)
    with serve(create_app(db=loaded_db, assistant=assistant)) as base:
        # The sign-in link and the alert together: signed in, then the question, and the address is clean.
        with open_page(browser, base, f"/#token={token}&alert=7") as page:
            answered(page, 1)
            expect(page.locator(".question")).to_have_text(["预警 #7"])
            assert "#" not in page.url and "token" not in page.url
            buttons = page.locator("[data-block=alert] .alert-action")
            expect(buttons).to_have_text(["确认 #7", "误报 #7", "已处置 #7"])
            # A button sends its text, in the same conversation.
            buttons.nth(0).click()
            answered(page, 2)
            expect(page.locator(".question")).to_have_text(["预警 #7", "确认 #7"])
            expect(page.locator(".session-item")).to_have_count(1)
            # Another card's link while the page is open: a new chat asks about that alert.
            page.evaluate("location.hash = '#alert=8'")
            answered(page, 1)
            expect(page.locator(".question")).to_have_text(["预警 #8"])
            # A saved token: the link alone is enough.
            page.goto(base + "/#alert=12")
            answered(page, 1)
            expect(page.locator(".question")).to_have_text(["预警 #12"])
        # Not signed in yet: the sign-in screen first, then the question.
        with open_page(browser, base, "/#alert=9") as page:
            expect(page.locator("#signin-view")).to_be_visible()
            assert assistant.questions == ["预警 #7", "确认 #7", "预警 #8", "预警 #12"]
            sign_in(page, token)
            answered(page, 1)
            expect(page.locator(".question")).to_have_text(["预警 #9"])
        # Anything else after the '#' is ignored.
        with open_page(browser, base, "/#alert=abc") as page:
            sign_in(page, token)
            expect(page.locator("#empty-state")).to_be_visible()
    assert assistant.questions[-1] == "预警 #9"
