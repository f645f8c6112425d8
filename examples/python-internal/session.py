"""Talking to the sidecar: the HTTP transport, whom to trust for session init signatures, and
session init itself, anonymous (PROTOCOL.md section 1, journey step 1) and authenticated with a
Bearer token and X-Subject (section 2, journey step 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

import crypto_utils as cu
from models import SessionContext, SessionResult

SESSION_INIT = "/api/v1/session/init"
KEY_DOCUMENT = "/.well-known/identity-sidecar"
# Connect and read timeouts: a sidecar that does not answer is reported, never waited on forever.
TIMEOUT = (3.05, 15)


class SidecarUnreachable(Exception):
    """No HTTP answer at all: connection refused, DNS, timeout."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the sidecar at {url}: {reason}")
        self.url = url


class SidecarError(Exception):
    """The sidecar's own plaintext error (section 4): unauthenticated, so only a reason to retry
    or to start a new session, never data."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(f"the sidecar answered {status} {code}: {description}")
        self.status = status
        self.code = code
        self.description = description


class UnexpectedAnswer(cu.ProtocolError):
    """An answer that is not what this protocol version says."""


class BadPin(cu.ProtocolError):
    """SIDECAR_PUBLIC_KEY is not a public key in the published form."""


@dataclass(frozen=True)
class Trust:
    """The sidecar's signing keys this client accepts. ``pinned``: one key from the
    configuration, which verifies any key_id (Appendix B.2); otherwise the keys of the published
    document, fetched on first use, each verifying only its own key_id."""

    pinned: bool
    keys: dict[str, bytes]

    def key_for(self, key_id: str) -> bytes:
        if self.pinned:
            return next(iter(self.keys.values()))
        try:
            return self.keys[key_id]
        except KeyError:
            raise cu.BadSignature(f"the answer names key_id {key_id!r}, which the sidecar does not publish") from None

    def describe(self) -> str:
        if self.pinned:
            return "session init answers are verified against the pinned key (SIDECAR_PUBLIC_KEY)"
        return (
            "SIDECAR_PUBLIC_KEY is not set: trusted the key(s) "
            + ", ".join(self.keys)
            + f" fetched from {KEY_DOCUMENT} on first use. Anyone able to answer in the sidecar's "
            "place could have served that document; pin the key (from a trusted copy) with "
            "SIDECAR_PUBLIC_KEY."
        )


class Sidecar:
    """One sidecar at ``base_url``; the HTTP session is reused across calls."""

    def __init__(self, base_url: str, pinned_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()
        self._pinned = pinned_key
        self._trust: Trust | None = None

    def url(self, path: str) -> str:
        return self.base_url + path

    # --- transport ------------------------------------------------------------------------

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> requests.Response:
        try:
            return self.http.post(
                self.url(path),
                json=body,
                headers={"Accept": "application/json", **headers},
                timeout=TIMEOUT,
                allow_redirects=False,
            )
        except requests.RequestException as e:
            raise SidecarUnreachable(self.url(path), _reason(e)) from None

    def get_json(self, path: str) -> Any:
        try:
            answer = self.http.get(self.url(path), timeout=TIMEOUT, allow_redirects=False)
        except requests.RequestException as e:
            raise SidecarUnreachable(self.url(path), _reason(e)) from None
        raise_sidecar_error(answer)
        if answer.status_code != 200:
            raise UnexpectedAnswer(f"GET {path} answered {answer.status_code}")
        return json_of(answer)

    # --- trust ----------------------------------------------------------------------------

    def trust(self) -> Trust:
        """The pinned key, or the published document fetched once (trust on first use)."""
        if self._trust is None:
            if self._pinned:
                try:
                    raw = cu.b64u_decode(self._pinned.strip())
                    cu.parse_public_key(raw)
                except cu.ProtocolError as e:
                    raise BadPin(f"SIDECAR_PUBLIC_KEY is not a P-256 public key: {e}") from None
                self._trust = Trust(pinned=True, keys={cu.key_id(raw): raw})
            else:
                self._trust = Trust(pinned=False, keys=self._fetch_keys())
        return self._trust

    def _fetch_keys(self) -> dict[str, bytes]:
        doc = self.get_json(KEY_DOCUMENT)
        if not isinstance(doc, dict) or doc.get("protocol") != cu.PROTOCOL:
            raise UnexpectedAnswer(f"{KEY_DOCUMENT} is not an {cu.PROTOCOL} key document")
        keys: dict[str, bytes] = {}
        for entry in doc.get("keys") or []:
            if isinstance(entry, dict) and isinstance(entry.get("key_id"), str):
                raw = cu.b64u_decode(entry.get("public_key", ""))
                cu.parse_public_key(raw)
                keys[entry["key_id"]] = raw
        if not keys:
            raise UnexpectedAnswer(f"{KEY_DOCUMENT} lists no key")
        return keys

    # --- sections 1 and 2: session init ---------------------------------------------------

    def init_session(
        self,
        bearer: str | None = None,
        subject: str | None = None,
        previous_session: str | None = None,
    ) -> tuple[SessionContext, SessionResult]:
        """Anonymous without ``bearer``; with it, a session bound to ``subject``. The answer's
        signature is verified before any key is derived; the ephemeral private key lives only
        in this call."""
        trust = self.trust()
        private = cu.generate_ephemeral_key()
        client_public = cu.public_key_bytes(private)
        client_public_b64u = cu.b64u_encode(client_public)
        headers: dict[str, str] = {}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
            headers["X-Subject"] = subject or ""
            if previous_session:
                headers["X-Session-Id"] = previous_session
        answer = self.post(SESSION_INIT, {"client_public_key": client_public_b64u}, headers)
        raise_sidecar_error(answer)
        if answer.status_code != 200:
            raise UnexpectedAnswer(f"session init answered {answer.status_code}")
        body = json_of(answer)
        result = _parse_init_answer(body, expected_subject=subject if bearer is not None else None)
        server_public = cu.b64u_decode(body["server_public_key"])
        cu.parse_public_key(server_public)
        cu.verify_init_signature(
            trust.key_for(result.key_id),
            cu.signing_input(
                client_public_b64u,
                body["server_public_key"],
                result.session_id,
                result.expires_at,
                result.subject,
            ),
            body.get("signature", ""),
        )
        keys = cu.derive_session_keys(private, client_public, server_public, result.session_id)
        del private
        context = SessionContext(
            session_id=result.session_id,
            keys=keys,
            expires_at=result.expires_at,
            subject=result.subject,
            key_id=result.key_id,
        )
        return context, result


def _parse_init_answer(body: Any, expected_subject: str | None) -> SessionResult:
    """Field types, then Appendix B.3: ``authenticated`` and ``subject`` agree with each other
    and with the subject asked for, before the signature is checked."""
    if not isinstance(body, dict):
        raise UnexpectedAnswer("the session init answer is not a JSON object")
    session_id = cu.check_session_id(body.get("session_id"))
    expires_at, expires_in = body.get("expires_at"), body.get("expires_in")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int):
        raise UnexpectedAnswer("the session init answer's expires_at is not an integer")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise UnexpectedAnswer("the session init answer's expires_in is not an integer")
    authenticated, subject = body.get("authenticated"), body.get("subject")
    if not isinstance(body.get("server_public_key"), str) or not isinstance(body.get("key_id"), str):
        raise UnexpectedAnswer("the session init answer lacks server_public_key or key_id")
    if authenticated is not (expected_subject is not None) or subject != expected_subject:
        raise UnexpectedAnswer("the session init answer's authenticated/subject do not match the session asked for")
    return SessionResult(
        session_id=session_id,
        expires_in=expires_in,
        expires_at=expires_at,
        authenticated=authenticated,
        subject=subject,
        key_id=body["key_id"],
    )


def json_of(answer: requests.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        raise UnexpectedAnswer(f"the answer ({answer.status_code}) is not JSON") from None


def raise_sidecar_error(answer: requests.Response) -> None:
    """A plaintext section 4 error (no X-Session-Id, ``{"error", "error_description"}``)."""
    if answer.status_code < 400 or "X-Session-Id" in answer.headers:
        return
    try:
        body = answer.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        raise SidecarError(answer.status_code, body["error"], str(body.get("error_description", "")))
    raise UnexpectedAnswer(
        f"the answer ({answer.status_code}) is neither sealed nor a sidecar error: is SIDECAR_URL an identity-sidecar?"
    )


def _reason(e: requests.RequestException) -> str:
    if isinstance(e, requests.ConnectionError):
        return "connection refused or host unreachable"
    if isinstance(e, requests.Timeout):
        return "no answer in time"
    return type(e).__name__
