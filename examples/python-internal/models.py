"""What the journey holds and shows: a live session, one step's result, a session init's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crypto_utils import SessionKeys

# Fields of an answer that hold tokens or secrets, shortened wherever they are shown.
TOKEN_FIELDS = frozenset({"access_token", "refresh_token", "token", "client_secret", "session_id", "id_token"})


def shorten(value: str) -> str:
    """The first 10 and last 4 characters of a token, enough to tell two apart."""
    return value if len(value) <= 20 else f"{value[:10]}…{value[-4:]}"


def shorten_tokens(value: Any) -> Any:
    """A copy of a JSON value with every token field shortened, at any depth."""
    if isinstance(value, dict):
        return {
            k: shorten(v) if k in TOKEN_FIELDS and isinstance(v, str) else shorten_tokens(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [shorten_tokens(v) for v in value]
    return value


@dataclass(repr=False)
class SessionContext:
    """A live session with the sidecar: its id, its keys, its subject, its request counter."""

    session_id: str
    keys: SessionKeys
    expires_at: int
    subject: str | None
    key_id: str
    next_seq: int = 1

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def end(self) -> None:
        """Wipes the session keys: the session can carry no more requests."""
        self.keys.wipe()

    def __repr__(self) -> str:
        return (
            f"SessionContext(session_id={shorten(self.session_id)!r}, subject={self.subject!r}, "
            f"expires_at={self.expires_at}, keys={self.keys!r})"
        )


@dataclass(frozen=True)
class SessionResult:
    """What a session init answered, for display (the session id shortened)."""

    session_id: str
    expires_in: int
    expires_at: int
    authenticated: bool
    subject: str | None
    key_id: str

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "session_id": shorten(self.session_id),
            "expires_in": self.expires_in,
            "expires_at": self.expires_at,
            "authenticated": self.authenticated,
            "key_id": self.key_id,
            "signature": "verified",
        }
        if self.subject is not None:
            answer["subject"] = self.subject
        return answer


@dataclass
class StepResult:
    """One step as the page and the CLI show it: endpoint, authentication (tokens shortened,
    secrets never), status, the decrypted answer (tokens shortened), time taken; on failure the
    error and what to do about it."""

    number: int | str
    name: str
    method: str
    endpoint: str
    auth: str
    status: int | None
    answer: Any
    elapsed_ms: float
    ok: bool = True
    error: str | None = None
    message: str | None = None
    hint: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ok": self.ok,
            "step": self.number,
            "name": self.name,
            "method": self.method,
            "endpoint": self.endpoint,
            "auth": self.auth,
            "status": self.status,
            "answer": self.answer,
            "elapsed_ms": round(self.elapsed_ms, 2),
        }
        if self.notes:
            doc["notes"] = self.notes
        if not self.ok:
            doc.update(error=self.error, message=self.message, hint=self.hint)
        return doc
