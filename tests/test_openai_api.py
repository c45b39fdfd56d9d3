"""The OpenAI-compatible API, driven by the official `openai` SDK against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from api.server import create_app
from core.db import Database
from core.tokens import issue_token
from eval.live import serve


@pytest.fixture(scope="module")
def base_url(loaded_db: Database) -> Iterator[str]:
    with serve(create_app(db=loaded_db)) as url:
        yield url + "/v1"


@pytest.fixture(scope="module")
def sdk(loaded_db: Database, base_url: str) -> openai.OpenAI:
    with loaded_db.connection() as conn:
        token = issue_token(conn, "rm_sn")
    return openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)


def test_models_lists_puyi(sdk: openai.OpenAI):
    assert [m.id for m in sdk.models.list()] == ["puyi"]


def test_completion_answers_as_the_key_owner(sdk: openai.OpenAI):
    r = sdk.chat.completions.create(model="puyi", messages=[{"role": "user", "content": "介绍一下薪易快贷"}])  # type: ignore[list-item]
    text = r.choices[0].message.content or ""
    assert r.choices[0].finish_reason == "stop" and "薪易快贷" in text
    assert "市南支行及下辖机构" in text  # the key is rm_sn's token: answers are scoped to their branch
    assert r.model_extra and r.model_extra["puyi"]["route"] == "catalog"


def test_streaming_gives_the_same_answer(sdk: openai.OpenAI):
    messages: list[Any] = [{"role": "user", "content": "薪易快贷的利率是多少"}]
    whole = sdk.chat.completions.create(model="puyi", messages=messages).choices[0].message.content
    stream = sdk.chat.completions.create(model="puyi", messages=messages, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_conversation_stays_in_one_session(sdk: openai.OpenAI, loaded_db: Database):
    first: list[Any] = [{"role": "user", "content": "介绍一下税e快贷"}]
    a = sdk.chat.completions.create(model="puyi", messages=first)
    follow: list[Any] = [*first, {"role": "assistant", "content": a.choices[0].message.content}, {"role": "user", "content": "它的期限呢"}]
    b = sdk.chat.completions.create(model="puyi", messages=follow)
    assert a.model_extra and b.model_extra
    assert a.model_extra["puyi"]["session_id"] == b.model_extra["puyi"]["session_id"]
    c = sdk.chat.completions.create(model="puyi", messages=first, extra_body={"session_id": "mine-1"})
    assert c.model_extra and c.model_extra["puyi"]["session_id"] == "mine-1"


def test_errors_reach_the_sdk_as_exceptions(sdk: openai.OpenAI, base_url: str):
    bad_key = openai.OpenAI(base_url=base_url, api_key="puyi_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.models.list()
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="puyi", messages=[{"role": "user", "content": "  "}])
    with pytest.raises(openai.UnprocessableEntityError):
        sdk.chat.completions.create(model="puyi", messages=[])
