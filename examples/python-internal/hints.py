"""What a user can do about a failure: the same advice as the Rust journey's (examples/src/output.rs)."""

from __future__ import annotations

import crypto_utils as cu
from config import CREATE_CLIENT, Config
from identity import Answer, ApiRefused, CheckFailed
from session import BadPin, SidecarError, SidecarUnreachable, UnexpectedAnswer


def hint(e: Exception, step: int | str, config: Config) -> str:
    """What a user can do about a failure (the same advice as the Rust journey's)."""
    if isinstance(e, SidecarUnreachable):
        return (
            f"the sidecar is not running or not at {config.sidecar_url}. Start it (and the identity "
            "API), or set SIDECAR_URL to where it listens. To build and start both on this machine: "
            "cargo run -p identity-sidecar-examples --bin journey -- --local --keep-running"
        )
    if isinstance(e, BadPin):
        return (
            "SIDECAR_PUBLIC_KEY must be the sidecar's public key exactly as published at /.well-known/identity-sidecar."
        )
    if isinstance(e, cu.BadSignature):
        return (
            "signature mismatch: the session init answer is not signed by the key you pinned "
            "(SIDECAR_PUBLIC_KEY). If the sidecar's key was rotated, update the pin from a trusted "
            "copy of its public key; otherwise something between you and the sidecar answers in "
            "its place: do not continue."
        )
    if isinstance(e, cu.DecryptionFailed):
        return (
            "the sidecar's encrypted answer did not verify: it was altered in transit, or another "
            "sidecar without this session answered. Reset and walk the journey again; if it "
            "persists, check what sits between you and the sidecar."
        )
    if isinstance(e, CheckFailed):
        return (
            "the services answered, but not as the protocol says they must: this is a bug in the "
            "identity API or the sidecar (or they are of different versions); please report it."
        )
    if isinstance(e, SidecarError):
        return _sidecar_hint(e)
    if isinstance(e, ApiRefused):
        return _api_hint(e.answer)
    if isinstance(e, (UnexpectedAnswer, cu.ProtocolError)):
        return (
            "the answer is not what this protocol version expects: check that SIDECAR_URL points "
            "to an identity-sidecar of the same version as this client."
        )
    return "an error in this client: see the server's log, and please report it."


NOT_A_SIDECAR = "SIDECAR_URL does not point to an identity-sidecar, or the route is not in its SIDECAR_ROUTES."
AGAIN = "Reset and walk the journey again."


def _sidecar_hint(e: SidecarError) -> str:
    return {
        "invalid_session": (
            "the session expired or the sidecar does not know it (it restarted, or another "
            "replica answered). Reset and walk the journey again: step 1 opens a new session."
        ),
        "upstream_unavailable": (
            "the sidecar cannot reach the identity API. Start identity-api, or point the sidecar "
            "at it with --upstream / SIDECAR_UPSTREAM (default http://127.0.0.1:8140)."
        ),
        "upstream_timeout": (
            "the identity API did not answer in time (SIDECAR_UPSTREAM_TIMEOUT_MS). Check its logs and its database."
        ),
        "too_many_requests": (
            "the sidecar is rate-limiting session inits or its session table is full: wait a "
            "moment (Retry-After) and try again."
        ),
        "invalid_token": (
            "the sidecar found the access token not active (expired or revoked) when opening the "
            "authenticated session. Reset and walk the journey again from step 1."
        ),
        "subject_mismatch": "SUBJECT is not the subject (`sub`) of the access token: they must be equal.",
        "decryption_failed": (
            "the sidecar could not read the request: the client and the sidecar disagree on the "
            "protocol; check that both are of the same version."
        ),
        "invalid_request": (
            f"the sidecar could not read the request ({e.description}): the client and the "
            "sidecar disagree on the protocol; check that both are of the same version."
        ),
        "not_found": NOT_A_SIDECAR,
        "method_not_allowed": NOT_A_SIDECAR,
    }.get(e.code, f"the sidecar refused: {e.description}")


def _api_hint(answer: Answer) -> str:
    hints = {
        "invalid_client": (
            "the identity API refused the client credentials: check CLIENT_ID and CLIENT_SECRET. "
            f"{CREATE_CLIENT}. Or issue a new secret with `identity-api client rotate-secret <id>`."
        ),
        "invalid_scope": (
            "SCOPE asks for a scope this client is not allowed: leave SCOPE unset to get every allowed scope."
        ),
        "invalid_target": (
            "AUDIENCE is not an audience this client is allowed: leave AUDIENCE unset to get the client's audience."
        ),
        "subject_mismatch": (
            "the token and the session's subject differ: SUBJECT must be the subject the token was issued for."
        ),
        "invalid_token": f"the identity API found the bearer token not active (expired or revoked). {AGAIN}",
        "invalid_grant": f"the refresh token is unknown, expired, spent or revoked. {AGAIN}",
    }
    if answer.error in hints:
        return hints[answer.error]
    if answer.status == 403:
        return (
            "the identity API refused the request: if it says the request did not come through "
            "the sidecar, give both the same IDENTITY_INTERNAL_TOKEN."
        )
    return "see the identity API's error above and its logs."
