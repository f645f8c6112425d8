"""The web API (`/steps/...`) against the real binaries, through Flask's test client: the six
steps and the check, tokens shortened and the secret never sent; each route's errors (out of
order, unknown step, wrong method, not JSON, foreign Host); the failures a user meets (wrong
secret: 401; sidecar down: 502; an ended session: 401 invalid_session with its hint); one
journey per browser; reset wipes the session keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from app import create_app
from config import Config
from conftest import closed_port_url


def config_of(stack: dict[str, str], **changes: Any) -> Config:
    settings = dict(
        sidecar_url=stack["SIDECAR_URL"],
        client_id=stack["CLIENT_ID"],
        client_secret=stack["CLIENT_SECRET"],
        subject=stack["SUBJECT"],
        sidecar_public_key=stack["SIDECAR_PUBLIC_KEY"],
    )
    settings.update(changes)
    return Config(**settings)


def client_of(config: Config) -> FlaskClient:
    return create_app(config).test_client()


def post(client: FlaskClient, path: str) -> tuple[int, dict[str, Any]]:
    answer = client.post(path, json={})
    assert answer.mimetype == "application/json", answer.data
    assert answer.headers["Cache-Control"] == "no-store"
    return answer.status_code, answer.get_json()


def test_the_six_steps_and_the_check(stack: dict[str, str]) -> None:
    client = client_of(config_of(stack))
    raw = []
    for step in ["1", "2", "3", "4", "5", "6", "check"]:
        answer = client.post(f"/steps/{step}", json={})
        raw.append(answer.get_data(as_text=True))
        body = answer.get_json()
        assert answer.status_code == 200, body
        assert body["ok"] is True and body["status"] == 200
        assert body["endpoint"].startswith("/api/v1/") and body["method"] == "POST"
        assert body["elapsed_ms"] >= 0 and body["auth"]
    bodies = [json.loads(r) for r in raw]
    assert bodies[0]["answer"]["signature"] == "verified"
    assert bodies[0]["answer"]["authenticated"] is False
    # Tokens come shortened: ten characters, an ellipsis, four.
    access = bodies[1]["answer"]["access_token"]
    assert len(access) == 15 and access[10] == "…"
    assert bodies[1]["auth"] == f"Basic {stack['CLIENT_ID']}:<secret hidden>"
    assert bodies[2]["answer"]["active"] is True
    assert bodies[3]["answer"]["subject"] == stack["SUBJECT"]
    assert "X-Subject: " + stack["SUBJECT"] in bodies[3]["auth"]
    assert bodies[5]["answer"] == {"revoked": True}
    assert bodies[6]["step"] == "check"
    assert all(a == {"active": False} for a in bodies[6]["answer"].values()), bodies[6]
    assert bodies[6]["next_step"] == "check"
    assert not any(stack["CLIENT_SECRET"] in r for r in raw)
    state = client.get("/steps").get_json()
    assert [r["step"] for r in state["results"]] == [1, 2, 3, 4, 5, 6, "check"]
    assert stack["CLIENT_SECRET"] not in client.get("/steps").get_data(as_text=True)


def test_steps_out_of_order_get_a_clear_409(stack: dict[str, str]) -> None:
    client = client_of(config_of(stack))
    status, body = post(client, "/steps/3")
    assert status == 409 and body["error"] == "out_of_order"
    assert "Step 3 (introspection (Bearer + GCM)) needs step 1" in body["message"]
    assert body["next_step"] == 1
    status, body = post(client, "/steps/check")
    assert status == 409 and "after step 6" in body["message"]
    assert post(client, "/steps/1")[0] == 200
    status, body = post(client, "/steps/1")
    assert status == 409 and "went through already" in body["message"] and "reset" in body["message"]
    assert body["next_step"] == 2


def test_reset_starts_again_and_wipes_the_keys(stack: dict[str, str]) -> None:
    app = create_app(config_of(stack))
    client = app.test_client()
    assert post(client, "/steps/1")[0] == 200
    journey = next(iter(app.extensions["journeys"]._journeys.values()))
    keys = journey.anonymous.keys
    c2s = keys.c2s
    status, body = post(client, "/steps/reset")
    assert status == 200 and body["next_step"] == 1
    assert keys.wiped and c2s == bytearray(32)
    assert client.get("/steps").get_json()["results"] == []
    assert post(client, "/steps/1")[0] == 200


def test_step_4_wipes_the_anonymous_sessions_keys(stack: dict[str, str]) -> None:
    app = create_app(config_of(stack))
    client = app.test_client()
    assert post(client, "/steps/1")[0] == 200
    journey = next(iter(app.extensions["journeys"]._journeys.values()))
    anonymous = journey.anonymous.keys
    for step in ["2", "3"]:
        assert post(client, f"/steps/{step}")[0] == 200
    assert not anonymous.wiped
    assert post(client, "/steps/4")[0] == 200
    assert anonymous.wiped and journey.anonymous is None
    assert not journey.authenticated.keys.wiped


def test_each_browser_has_its_own_journey(stack: dict[str, str]) -> None:
    app = create_app(config_of(stack))
    first, second = app.test_client(), app.test_client()
    assert post(first, "/steps/1")[0] == 200
    assert post(first, "/steps/2")[0] == 200
    status, body = post(second, "/steps/2")
    assert status == 409 and body["next_step"] == 1
    assert post(first, "/steps/3")[0] == 200


def test_route_errors_answer_json(stack: dict[str, str]) -> None:
    client = client_of(config_of(stack))
    for path in ["/steps/7", "/steps/0", "/steps/abc"]:
        status, body = post(client, path)
        assert status == 404 and body["error"] == "unknown_step", path
    answer = client.get("/steps/1")
    assert answer.status_code == 405 and answer.get_json()["ok"] is False
    answer = client.post("/steps/1", data="x", content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 415 and answer.get_json()["error"] == "unsupported_media_type"
    answer = client.post("/steps/1", json={}, headers={"Host": "attacker.example:3506"})
    assert answer.status_code == 403 and answer.get_json()["error"] == "forbidden_host"
    assert "attacker" not in answer.get_data(as_text=True)
    # Bound to a non-loopback address on purpose, it answers to the name it is reached by.
    exposed = client_of(config_of(stack, host="0.0.0.0"))  # noqa: S104
    assert exposed.get("/steps", headers={"Host": "build-box.internal:3506"}).status_code == 200
    assert client.get("/nothing-here").status_code == 404
    page = client.get("/")
    assert page.status_code == 200 and b"identity-sidecar" in page.data
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


def test_a_wrong_secret_is_401_with_the_hint(stack: dict[str, str]) -> None:
    client = client_of(config_of(stack, client_secret="not-the-secret"))
    assert post(client, "/steps/1")[0] == 200
    status, body = post(client, "/steps/2")
    assert status == 401
    assert body["ok"] is False and body["status"] == 401 and body["error"] == "invalid_client"
    assert "check CLIENT_ID and CLIENT_SECRET" in body["hint"]
    assert "not-the-secret" not in json.dumps(body)
    # Nothing recorded: step 2 is still the next one.
    assert body["next_step"] == 2


def test_the_sidecar_down_is_502_with_the_hint(stack: dict[str, str]) -> None:
    url = closed_port_url()
    client = client_of(config_of(stack, sidecar_url=url))
    status, body = post(client, "/steps/1")
    assert status == 502 and body["error"] == "sidecar_unreachable"
    assert f"cannot reach the sidecar at {url}" in body["message"]
    assert "the sidecar is not running" in body["hint"]


@pytest.mark.parametrize("pinned", [True, False])
def test_a_session_the_sidecar_does_not_know_is_401_invalid_session(stack: dict[str, str], pinned: bool) -> None:
    config = config_of(stack) if pinned else config_of(stack, sidecar_public_key=None)
    app = create_app(config)
    client = app.test_client()
    status, body = post(client, "/steps/1")
    assert status == 200
    if not pinned:
        assert "first use" in body["notes"][0]
    # As if the sidecar restarted or the session expired: it no longer knows this id.
    journey = next(iter(app.extensions["journeys"]._journeys.values()))
    journey.anonymous.session_id = "an-ended-session"
    status, body = post(client, "/steps/2")
    assert status == 401 and body["error"] == "invalid_session"
    assert "the session expired" in body["hint"]


def test_a_bug_in_this_client_is_a_json_500_without_details(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import identity

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("internal detail that must stay in the log")

    monkeypatch.setattr(identity, "issue", broken)
    client = client_of(config_of(stack))
    assert post(client, "/steps/1")[0] == 200
    status, body = post(client, "/steps/2")
    assert status == 500 and body["error"] == "internal_error"
    assert "internal detail" not in json.dumps(body)
    assert "see its log" in body["message"]
    assert "internal detail that must stay in the log" in caplog.text


def test_the_check_fails_when_the_family_is_still_active(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revocation that claims success but revoked nothing: the check sees the family active."""
    import identity

    monkeypatch.setattr(identity, "revoke", lambda *_args, **_kwargs: identity.Answer(200, {"revoked": True}))
    client = client_of(config_of(stack))
    for step in ["1", "2", "3", "4", "5", "6"]:
        assert post(client, f"/steps/{step}")[0] == 200
    status, body = post(client, "/steps/check")
    assert status == 502 and body["error"] == "check_failed"
    assert "refresh_token of the revoked family is still active" in body["message"]
    assert "not as the protocol says" in body["hint"]
