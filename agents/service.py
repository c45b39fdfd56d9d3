"""One question in, one answer out: what the CLI, the web chat and the APIs all call."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from agents.compose import ROUTE_NAMES
from agents.context import AgentContext
from agents.graph import build_graph
from agents.history import check_session, record_turn
from core.access import Principal, load_principal
from core.db import Database
from core.errors import BadQuestion
from core.masking import mask_data, scrub_text
from tools.knowledge import KnowledgeBase


@dataclass
class Answer:
    id: Any
    route: str
    answer: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    data: Any = None
    session_id: str = ""
    turn_id: int | None = None  # the stored turn, for feedback; None when not recorded

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Assistant:
    """Holds the compiled graph; cheap to call once built."""

    def __init__(self, db: Database, graph: Any = None, kb: KnowledgeBase | None = None, llm: Any = None) -> None:
        self.db = db
        self.llm = llm
        self.graph = graph if graph is not None else build_graph()
        # The retriever inside loads its model on the first knowledge question, not here.
        self.kb = kb if kb is not None else KnowledgeBase(db.settings)

    def principal(self, user_id: str | None) -> Principal:
        with self.db.connection() as conn:
            return load_principal(conn, user_id)

    def check_question(self, question: str | None) -> str:
        text = (question or "").strip()
        if not text:
            raise BadQuestion("问题为空，请输入您要咨询的内容 (empty question)")
        limit = self.db.settings.max_question_chars
        if len(text) > limit:
            raise BadQuestion(f"问题过长（{len(text)} 字），请精简到 {limit} 字以内 (question too long)")
        return text

    def ask(
        self,
        question: str | None,
        user_id: str | None = None,
        session_id: str | None = None,
        qid: Any = None,
        principal: Principal | None = None,
        channel: str | None = None,
    ) -> Answer:
        """Answer one question; with a channel the turn is stored in the asker's conversation."""
        events = self.events(question, user_id, session_id, qid, principal, channel)
        return next(payload for kind, payload in events if kind == "answer")  # type: ignore[no-any-return]

    def events(
        self,
        question: str | None,
        user_id: str | None = None,
        session_id: str | None = None,
        qid: Any = None,
        principal: Principal | None = None,
        channel: str | None = None,
    ) -> Iterator[tuple[str, Any]]:
        """The turn as it forms: ("route", {...}) once routed, ("tools", [...]) once the tools
        have answered, then ("answer", Answer). Streaming channels forward these as they come."""
        started = time.perf_counter()
        text = self.check_question(question)
        who = principal or self.principal(user_id)
        session = session_id or uuid.uuid4().hex
        if channel is not None and session_id:
            with self.db.connection() as conn:
                check_session(conn, session, who.user_id)
        context = AgentContext(db=self.db, principal=who, kb=self.kb, llm=self.llm, channel=channel)
        state: dict[str, Any] = {}
        for update in self.graph.stream(
            {"question": text, "session_id": session}, context=context, stream_mode="updates"
        ):
            for node, values in update.items():
                state.update(values or {})
                if node == "route_question":
                    yield "route", {"route": state["route"], "route_name": ROUTE_NAMES.get(state["route"], state["route"]),
                                    "session_id": session}
                elif node == "call_tools":
                    yield "tools", [c["name"] for c in state.get("tool_calls", [])]
        data = {
            "intent": state["decision"].intent,
            "tool_calls": state.get("tool_calls", []),
            "display": state.get("display", []),
        }
        # Masking is the last step for everything shown: no tool or template can skip it.
        answer = Answer(
            id=qid,
            route=state["route"],
            answer=scrub_text(state["answer"]),
            citations=mask_data(state.get("citations", [])),
            data=mask_data(data),
            session_id=session,
        )
        if channel is not None:
            with self.db.connection() as conn:
                answer.turn_id = record_turn(
                    conn, session_id=session, user_id=who.user_id, channel=channel, question=text,
                    route=answer.route, answer=answer.answer, citations=answer.citations, data=answer.data,
                    elapsed_ms=int((time.perf_counter() - started) * 1000),
                )
        yield "answer", answer
