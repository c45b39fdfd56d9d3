"""LLM phrasing of answers: optional, checked, and never the source of a fact.

The deterministic answer is always computed first; the LLM only rewrites it from the same
passages, its citations are checked against what was retrieved, and any failure falls back.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage

from core.safety import neutralize
from prompts import load_prompt

log = logging.getLogger(__name__)
_CITE_RE = re.compile(r"\[(\d+)\]")


def knowledge_messages(question: str, passages: list[dict[str, Any]], owner: str) -> list[Any]:
    numbered = "\n\n".join(
        f"[{n}] 《{p['title']}》{(' › ' + p['heading']) if p.get('heading') else ''}\n{neutralize(p['snippet'])}"
        for n, p in enumerate(passages, 1)
    )
    return [
        SystemMessage(load_prompt("knowledge_system").render(owner=owner)),
        HumanMessage(load_prompt("knowledge_user").render(question=question, passages=numbered)),
    ]


def check_citations(text: str, n_passages: int) -> str | None:
    """Strip citations of passages that were not given; None when nothing valid is cited."""
    valid = False

    def keep(m: re.Match[str]) -> str:
        nonlocal valid
        if 1 <= int(m.group(1)) <= n_passages:
            valid = True
            return m.group(0)
        return ""

    cleaned = _CITE_RE.sub(keep, text)
    return cleaned if valid else None


def phrase_knowledge(llm: Any, question: str, passages: list[dict[str, Any]], owner: str) -> str | None:
    """An LLM-written answer citing [n] only the given passages, or None to keep the extractive one."""
    try:
        reply = llm.invoke(knowledge_messages(question, passages, owner))
    except Exception as exc:  # timeouts, connection errors, bad responses: the turn must not fail
        log.warning("LLM phrasing failed, using the extractive answer: %s", exc)
        return None
    text = reply.content if isinstance(reply.content, str) else str(reply.content)
    return check_citations(text.strip(), len(passages)) if text.strip() else None
