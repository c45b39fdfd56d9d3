"""The HTTP server: health, readiness, token sign-in, /api/chat and the error shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.server import create_app
from core.db import Database
from core.tokens import issue_token, revoke_tokens


@pytest.fixture(scope="module")
def client(loaded_db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(db=loaded_db), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def token(loaded_db: Database) -> str:
    with loaded_db.connection() as conn:
        return issue_token(conn, "rm_sn")


def test_health_and_readiness(client: TestClient):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    assert client.get("/openapi.json").json()["info"]["title"] == "谱翼 Puyi"


def test_chat_answers_as_the_token_owner(client: TestClient, token: str):
    r = client.post("/api/chat", json={"message": "介绍一下薪易快贷", "session_id": "s1"},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"id", "route", "answer", "citations", "data", "session_id"}
    assert body["route"] == "catalog" and body["session_id"] == "s1"
    assert "市南支行及下辖机构" in body["answer"]  # scoped to rm_sn's branch


@pytest.mark.parametrize(
    ("headers", "payload", "status", "code"),
    [
        ({}, {"message": "你好"}, 401, "unauthorized"),
        ({"Authorization": "Bearer puyi_not-a-token"}, {"message": "你好"}, 401, "unauthorized"),
        ("token", {"msg": "字段错了"}, 422, "invalid_request"),
        ("token", {"message": "   "}, 400, "bad_question"),
        ("token", {"message": "贷" * 10_000}, 400, "bad_question"),
    ],
)
def test_errors_have_one_shape(client: TestClient, token: str, headers, payload, status, code):
    if headers == "token":
        headers = {"Authorization": f"Bearer {token}"}
    r = client.post("/api/chat", json=payload, headers=headers)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


def test_unknown_route_and_revoked_token(client: TestClient, loaded_db: Database):
    assert client.get("/no/such/route").json()["error"]["code"] == "not_found"
    with loaded_db.connection() as conn:
        t = issue_token(conn, "risk01")
    assert client.post("/api/chat", json={"message": "你好"}, headers={"Authorization": f"Bearer {t}"}).status_code == 200
    with loaded_db.connection() as conn:
        assert revoke_tokens(conn, "risk01") >= 1
    assert client.post("/api/chat", json={"message": "你好"}, headers={"Authorization": f"Bearer {t}"}).status_code == 401
