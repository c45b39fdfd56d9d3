"""The HTTP server: health, readiness, token sign-in, /api/chat and the error shape."""

from __future__ import annotations

import json
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
    assert set(body) == {"id", "turn_id", "route", "answer", "citations", "data", "session_id"}
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


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_me_shows_role_and_scope(client: TestClient, token: str):
    me = client.get("/api/me", headers=_auth(token)).json()
    assert me["user_id"] == "rm_sn" and me["role_name"] == "客户经理"
    assert me["scope_label"] == "市南支行及下辖机构"


def test_stream_sends_route_then_pieces_then_the_whole_answer(client: TestClient, token: str):
    with client.stream("POST", "/api/chat/stream", json={"message": "薪易快贷的利率是多少"}, headers=_auth(token)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _events(r.read().decode())
    kinds = [k for k, _ in events]
    assert kinds[0] == "route" and kinds[-1] == "answer" and "delta" in kinds
    assert events[0][1]["route"] == "catalog" and events[0][1]["route_name"] == "产品目录"
    final = events[-1][1]
    assert "".join(d["text"] for k, d in events if k == "delta") == final["answer"]
    assert set(final) == {"id", "turn_id", "route", "answer", "citations", "data", "session_id"}
    assert final["turn_id"] and final["session_id"] == events[0][1]["session_id"]


def test_stream_refuses_bad_input_before_streaming(client: TestClient, token: str):
    r = client.post("/api/chat/stream", json={"message": ""}, headers=_auth(token))
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_question"
    assert client.post("/api/chat/stream", json={"message": "你好"}).status_code == 401


def test_conversations_and_feedback_belong_to_their_owner(client: TestClient, token: str, loaded_db: Database):
    first = client.post("/api/chat", json={"message": "介绍一下薪易快贷"}, headers=_auth(token)).json()
    session = first["session_id"]
    second = client.post("/api/chat", json={"message": "税e快贷呢", "session_id": session}, headers=_auth(token)).json()
    assert second["session_id"] == session

    listed = client.get("/api/sessions", headers=_auth(token)).json()["sessions"]
    mine = next(s for s in listed if s["session_id"] == session)
    assert mine["turns"] == 2 and mine["title"] == "介绍一下薪易快贷"
    turns = client.get(f"/api/sessions/{session}", headers=_auth(token)).json()["turns"]
    assert [t["question"] for t in turns] == ["介绍一下薪易快贷", "税e快贷呢"]
    assert turns[0]["feedback"] is None

    r = client.post("/api/feedback", json={"turn_id": second["turn_id"], "rating": -1, "comment": "没说利率"},
                    headers=_auth(token))
    assert r.json() == {"ok": True}
    client.post("/api/feedback", json={"turn_id": second["turn_id"], "rating": 1}, headers=_auth(token))
    turns = client.get(f"/api/sessions/{session}", headers=_auth(token)).json()["turns"]
    assert turns[1]["feedback"] == {"rating": 1, "comment": ""}  # rating again replaces
    assert client.post("/api/feedback", json={"turn_id": second["turn_id"], "rating": 5},
                       headers=_auth(token)).status_code == 400

    with loaded_db.connection() as conn:
        other = issue_token(conn, "rm_qd")
    # Another person can neither read, continue nor rate this conversation.
    assert client.get(f"/api/sessions/{session}", headers=_auth(other)).status_code == 404
    assert client.post("/api/chat", json={"message": "你好", "session_id": session},
                       headers=_auth(other)).status_code == 404
    assert client.post("/api/chat/stream", json={"message": "你好", "session_id": session},
                       headers=_auth(other)).status_code == 404
    assert client.post("/api/feedback", json={"turn_id": first["turn_id"], "rating": 1},
                       headers=_auth(other)).status_code == 404
    assert session not in {s["session_id"] for s in client.get("/api/sessions", headers=_auth(other)).json()["sessions"]}


def test_catalogue_endpoints(client: TestClient, token: str):
    found = client.get("/api/products", params={"q": "薪易快贷"}, headers=_auth(token)).json()
    assert found["status"] == "found" and found["candidates"][0]["code"] == "SL001"
    listing = client.get("/api/products", params={"category": "loan"}, headers=_auth(token)).json()
    assert listing["total"] >= 2 and {"SL001", "SL002"} <= {i["code"] for i in listing["items"]}
    detail = client.get("/api/products/SL001", headers=_auth(token)).json()
    assert detail["name"] == "薪易快贷" and detail["business"]["scope"] == "市南支行及下辖机构"
    trace = client.get("/api/products/SL001/trace", headers=_auth(token)).json()
    assert trace["paths"]
    assert client.get("/api/products/NOPE1", headers=_auth(token)).json()["error"]["code"] == "not_found"
    assert client.get("/api/products/SL001/trace", params={"direction": "sideways"},
                      headers=_auth(token)).status_code == 422


def test_metrics_are_scoped_to_the_caller(client: TestClient, token: str, loaded_db: Database):
    mine = client.get("/api/metrics", params={"product": "SL001"}, headers=_auth(token)).json()
    with loaded_db.connection() as conn:
        admin = issue_token(conn, "admin01")
    bank = client.get("/api/metrics", params={"product": "SL001"}, headers=_auth(admin)).json()
    assert mine["scope"] == "市南支行及下辖机构" and bank["scope"] == "全行"
    assert mine["months"] and len(mine["months"]) == len(bank["months"])
    assert sum(m["balance"] for m in mine["months"]) < sum(m["balance"] for m in bank["months"])
    last = bank["months"][-1]["month"]
    assert client.get("/api/metrics", params={"product": "SL001", "start": last}, headers=_auth(admin)).json()["months"][0]["month"] == last
    # A branch outside the rm's subtree is refused, not silently emptied.
    r = client.get("/api/metrics", params={"product": "SL001", "branch": "B200"}, headers=_auth(token))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert client.get("/api/metrics", params={"product": "NOPE1"}, headers=_auth(token)).status_code == 404
    assert client.get("/api/metrics", params={"product": "SL001", "start": "2026/10"}, headers=_auth(token)).status_code == 422


def test_ingest_is_for_admins_and_cited_passages_open(client: TestClient, token: str, loaded_db: Database):
    doc = "# 薪易快贷服务指南\n\n## 提前还款\n\n薪易快贷支持随时提前还款，提前还款不收取违约金，按实际用款天数计息。\n"
    files = {"files": ("薪易快贷服务指南.md", doc.encode(), "text/markdown")}
    r = client.post("/api/ingest", files=files, data={"doc_type": "faq", "products": "SL001"}, headers=_auth(token))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    with loaded_db.connection() as conn:
        admin = issue_token(conn, "admin01")
    r = client.post("/api/ingest", files=files, data={"doc_type": "faq", "products": "SL001"}, headers=_auth(admin))
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 1 and r.json()["chunks"] >= 1 and r.json()["failed"] == []
    again = client.post("/api/ingest", files=files, data={"doc_type": "faq", "products": "SL001"}, headers=_auth(admin))
    assert again.json()["unchanged"] == 1  # the same upload twice changes nothing

    answer = client.post("/api/chat", json={"message": "薪易快贷可以提前还款吗"}, headers=_auth(token)).json()
    assert answer["route"] == "knowledge" and answer["citations"]
    cited = answer["citations"][0]
    passage = client.get(f"/api/passages/{cited['chunk_id']}", headers=_auth(token)).json()
    assert "提前还款" in passage["text"] and passage["title"]
    assert client.get("/api/passages/999999", headers=_auth(token)).status_code == 404
    bad = client.post("/api/ingest", files={"files": ("坏.pdf", b"not a pdf", "application/pdf")}, headers=_auth(admin))
    assert bad.status_code == 200 and bad.json()["failed"] and bad.json()["added"] == 0


def test_oversized_bodies_are_refused_and_the_server_keeps_serving(client: TestClient, token: str):
    big = b'{"message": "' + b"a" * 2_000_000 + b'"}'
    r = client.post("/api/chat", content=big, headers={**_auth(token), "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

    def chunks():
        yield b'{"message": "'
        for _ in range(30):
            yield b"a" * 100_000
        yield b'"}'

    r = client.post("/api/chat", content=chunks(), headers={**_auth(token), "Content-Type": "application/json"})
    assert r.status_code == 413
    r = client.post("/api/chat", content=b"{not json", headers={**_auth(token), "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert client.get("/healthz").status_code == 200
    assert client.delete("/api/chat", headers=_auth(token)).json()["error"]["code"] == "method_not_allowed"


def test_shutdown_finishes_turns_in_flight(loaded_db: Database):
    import threading
    import time

    import httpx

    from agents.service import Assistant
    from eval.live import serve

    class Slow(Assistant):
        def events(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            time.sleep(1.0)  # a turn still being answered when the shutdown begins
            yield from super().events(*args, **kwargs)

    with loaded_db.connection() as conn:
        t = issue_token(conn, "rm_sn")
    app = create_app(db=loaded_db, assistant=Slow(loaded_db))
    result: dict[str, httpx.Response] = {}
    with serve(app) as url:
        asking = threading.Thread(target=lambda: result.setdefault("r", httpx.post(
            url + "/api/chat", json={"message": "介绍一下薪易快贷"}, headers=_auth(t), timeout=30)))
        asking.start()
        time.sleep(0.3)
    # Leaving the block asked the server to stop while the turn was in flight: it still completed.
    asking.join()
    assert result["r"].status_code == 200 and result["r"].json()["route"] == "catalog"
