"""The identity API's routes through the sidecar, every body sealed (PROTOCOL.md sections 3 and
5): token issue with Basic client credentials (step 2), introspection (step 3), token refresh
(step 5) and revocation (step 6), each with a Bearer access token."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import crypto_utils as cu
from models import SessionContext
from session import Sidecar, UnexpectedAnswer, json_of, raise_sidecar_error

TOKEN_ISSUE = "/api/v1/token/issue"  # noqa: S105 (a path)
INTROSPECT = "/api/v1/introspect"
TOKEN = "/api/v1/token"  # noqa: S105 (a path)
REVOKE = "/api/v1/revoke"


@dataclass(frozen=True)
class Answer:
    """A decrypted answer of the identity API: its status (authenticated by the response AAD)
    and its JSON body."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def error(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), str):
            return self.body["error"]
        return "(no error code)"

    @property
    def error_description(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("error_description", ""))
        return ""


class ApiRefused(Exception):
    """The identity API answered (sealed) with an error."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(f"the identity API answered {answer.status} {answer.error}: {answer.error_description}")
        self.answer = answer


class CheckFailed(Exception):
    """An answer came, but says what the protocol says it must not."""


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str

    @staticmethod
    def of(answer: Answer) -> TokenPair | None:
        body = answer.body if isinstance(answer.body, dict) else {}
        access, refresh = body.get("access_token"), body.get("refresh_token")
        if isinstance(access, str) and isinstance(refresh, str):
            return TokenPair(access, refresh)
        return None

    def __repr__(self) -> str:
        return "TokenPair(<hidden>)"


def basic(client_id: str, client_secret: str) -> str:
    """Section 5: ``Basic b64(client_id:client_secret)`` (RFC 7617, standard base64)."""
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")


def sealed_call(
    sidecar: Sidecar, session: SessionContext, path: str, authorization: str, body: dict[str, Any]
) -> Answer:
    """One sealed POST: the body under k_c2s with this request's AAD; the answer opened under
    k_s2c with the status in its AAD (a tampered status fails). A plaintext answer is the
    sidecar's own error and raised as such."""
    seq = session.take_seq()
    envelope = cu.seal_request(
        session.keys,
        session.session_id,
        "POST",
        path,
        seq,
        authorization,
        json.dumps(body, separators=(",", ":")).encode("utf-8"),
    )
    answer = sidecar.post(
        path,
        envelope.to_json(),
        {"X-Session-Id": session.session_id, "Authorization": authorization},
    )
    raise_sidecar_error(answer)
    if answer.headers.get("X-Session-Id") != session.session_id:
        raise UnexpectedAnswer("the sealed answer names another session")
    plaintext = cu.open_response(
        session.keys, session.session_id, "POST", path, seq, answer.status_code, json_of(answer)
    )
    try:
        return Answer(answer.status_code, json.loads(plaintext))
    except ValueError:
        raise UnexpectedAnswer("the decrypted answer is not JSON") from None


def issue(
    sidecar: Sidecar,
    session: SessionContext,
    client_id: str,
    client_secret: str,
    subject: str,
    scope: str | None = None,
    audience: str | None = None,
) -> Answer:
    body: dict[str, Any] = {"subject": subject}
    if scope:
        body["scope"] = scope
    if audience:
        body["audience"] = audience
    return sealed_call(sidecar, session, TOKEN_ISSUE, basic(client_id, client_secret), body)


def introspect(sidecar: Sidecar, session: SessionContext, bearer: str, token: str, hint: str | None = None) -> Answer:
    body: dict[str, Any] = {"token": token}
    if hint:
        body["token_type_hint"] = hint
    return sealed_call(sidecar, session, INTROSPECT, f"Bearer {bearer}", body)


def refresh(sidecar: Sidecar, session: SessionContext, bearer: str, refresh_token: str) -> Answer:
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return sealed_call(sidecar, session, TOKEN, f"Bearer {bearer}", body)


def revoke(sidecar: Sidecar, session: SessionContext, bearer: str, token: str, hint: str | None = None) -> Answer:
    body: dict[str, Any] = {"token": token}
    if hint:
        body["token_type_hint"] = hint
    return sealed_call(sidecar, session, REVOKE, f"Bearer {bearer}", body)
