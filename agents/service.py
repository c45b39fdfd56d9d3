"""One question in, one answer out: what the CLI, the web chat and the APIs all call."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from agents import memory
from agents.compose import ROUTE_NAMES
from agents.context import AgentContext
from agents.graph import build_graph
from agents.grounding import ground
from agents.history import check_session, record_turn
from agents.llm import make_llm
from core.access import Principal, load_principal
from core.audit import TurnAudit
from core.db import Database
from core.errors import BadQuestion
from core.masking import mask_data, scrub_text
from core.ratelimit import check_rate
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
        # None: the LLM configured in settings (PUYI_LLM_PROVIDER; none = deterministic); False: no LLM.
        self.llm = make_llm(db.settings) if llm is None else (llm or None)
        # Conversations run on the checkpointed graph (one thread each); a bare ask() on the other.
        self.graph = graph if graph is not None else build_graph(checkpointer=memory.checkpointer(db))
        self.oneshot = graph if graph is not None else build_graph()
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
        """The turn (see _turn), written to the audit trail whatever its outcome (core.audit)."""
        audit = TurnAudit(question, principal.user_id if principal else user_id, channel, session_id)
        try:
            yield from self._turn(question, user_id, session_id, qid, principal, channel, audit)
        except GeneratorExit:  # the caller stopped listening (a streaming client went away)
            if not audit.written:
                audit.failed(self.db, ConnectionAbortedError("the client stopped reading before the answer"))
            raise
        except Exception as exc:
            audit.failed(self.db, exc)
            raise

    def _turn(
        self,
        question: str | None,
        user_id: str | None,
        session_id: str | None,
        qid: Any,
        principal: Principal | None,
        channel: str | None,
        audit: TurnAudit,
    ) -> Iterator[tuple[str, Any]]:
        """The turn as it forms: ("route", {...}) once routed, ("tools", [...]) once the tools
        have answered, ("delta", text) pieces when an LLM streams its answer, then ("answer", Answer)
        (the final, checked text: it wins over the pieces). Streaming channels forward these as they come."""
        started = time.perf_counter()
        text = self.check_question(question)
        who = principal or self.principal(user_id)
        audit.principal = who
        if channel is not None:  # people on a channel; batch runs and evaluations are not limited
            with self.db.connection() as conn:
                check_rate(conn, who.user_id, self.db.settings.rate_limit_per_minute)
        session = session_id or uuid.uuid4().hex
        if channel is not None and session_id:
            with self.db.connection() as conn:
                check_session(conn, session, who.user_id)
        thread = memory.thread_id(channel, who.user_id, session) if channel is not None or session_id else None
        if memory.is_reset(text):
            yield from self._reset(text, who, session, thread, qid, channel, started, audit)
            return
        context = AgentContext(db=self.db, principal=who, kb=self.kb, llm=self.llm, channel=channel)
        state: dict[str, Any] = {}
        graph = self.graph if thread is not None else self.oneshot
        # On a thread: one checkpoint per turn, written when the turn ends.
        threaded: dict[str, Any] = {"config": {"configurable": {"thread_id": thread}}, "durability": "exit"} if thread else {}
        for mode, update in graph.stream(
            {"question": text, "session_id": session}, context=context, stream_mode=["updates", "custom"], **threaded
        ):
            if mode == "custom":  # the LLM's tokens as they come (agents/llm.py)
                if isinstance(update, dict) and update.get("delta"):
                    yield "delta", scrub_text(update["delta"])
                continue
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
        if self.llm is not None and state.get("llm"):
            data["llm"] = state["llm"]  # how the LLM took part: tools, no_tools, failed (with the error)…
        # Every number stated must come from a tool result or a cited passage (agents.grounding).
        grounding = ground(state["route"], state["answer"], data["tool_calls"], state.get("citations", []), text)
        state["answer"], data["grounding"] = grounding.answer, grounding.as_dict()
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
        with self.db.connection() as conn:
            audit.answered(conn, route=answer.route, intent=data["intent"], tool_calls=answer.data["tool_calls"],
                           citations=answer.citations, answer=answer.answer, grounding=answer.data["grounding"],
                           session_id=session)
        yield "answer", answer

    def _reset(self, text: str, who: Principal, session: str, thread: str | None, qid: Any,
               channel: str | None, started: float, audit: TurnAudit) -> Iterator[tuple[str, Any]]:
        """「/reset」「新对话」: forget the conversation's context; the session itself goes on."""
        if thread is not None:
            memory.forget(self.db, thread)
        yield "route", {"route": "help", "route_name": ROUTE_NAMES.get("help", "help"), "session_id": session}
        data = {"intent": "reset", "tool_calls": [], "display": []}
        answer = Answer(id=qid, route="help", answer=memory.RESET_ANSWER, data=data, session_id=session)
        if channel is not None:
            with self.db.connection() as conn:
                answer.turn_id = record_turn(
                    conn, session_id=session, user_id=who.user_id, channel=channel, question=text, route="help",
                    answer=answer.answer, citations=[], data=data,
                    elapsed_ms=int((time.perf_counter() - started) * 1000),
                )
        with self.db.connection() as conn:
            audit.answered(conn, route="help", intent="reset", tool_calls=[], citations=[], answer=answer.answer,
                           grounding=None, session_id=session)
        yield "answer", answer
