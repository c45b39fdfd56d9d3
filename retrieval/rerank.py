"""Optional cross-encoder reranking of the fused candidates (PUYI_RERANKER_MODEL, a local path)."""

from __future__ import annotations

from typing import Any, Protocol

from core.errors import PuyiError


class Reranker(Protocol):
    def scores(self, query: str, texts: list[str]) -> list[float]: ...


class CrossEncoderReranker:
    """A local sentence-transformers cross-encoder (e.g. bge-reranker-v2-m3); needs torch installed."""

    def __init__(self, model_path: str) -> None:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise PuyiError("重排序需要 sentence-transformers：请另行安装 CPU 版 torch 与 sentence-transformers") from exc
        self._model: Any = CrossEncoder(model_path, device="cpu", local_files_only=True)

    def scores(self, query: str, texts: list[str]) -> list[float]:
        return [float(s) for s in self._model.predict([(query, t) for t in texts])]
