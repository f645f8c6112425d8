"""The six steps of the journey, one at a time, and the check that the revoked family is
inactive; shared by the web UI (one :class:`Journey` per browser) and the CLI.

1. session init (anonymous ECDH)              4. authenticated session refresh (Bearer + X-Subject)
2. token issue (Basic + GCM)                  5. token refresh (Bearer + GCM)
3. introspection (Bearer + GCM)               6. revocation (Bearer + GCM)

A step runs only when every step before it has gone through, and each only once until a reset;
anything else is :class:`OutOfOrder`. A failed step records nothing and may be tried again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import crypto_utils as cu
import hints
import identity
from config import Config
from identity import Answer, ApiRefused, CheckFailed, TokenPair
from models import SessionContext, StepResult, shorten, shorten_tokens
from session import Sidecar, SidecarError, SidecarUnreachable

STEPS = {
    1: ("session init (anonymous ECDH)", "/api/v1/session/init"),
    2: ("token issue (Basic + GCM)", identity.TOKEN_ISSUE),
    3: ("introspection (Bearer + GCM)", identity.INTROSPECT),
    4: ("authenticated session refresh (Bearer + X-Subject)", "/api/v1/session/init"),
    5: ("token refresh (Bearer + GCM)", identity.TOKEN),
    6: ("revocation (Bearer + GCM)", identity.REVOKE),
}
CHECK = "check"
CHECK_NAME = "the revoked family is inactive (introspection)"


class OutOfOrder(Exception):
    """A step asked for before the steps it needs, or again after it went through."""


class StepFailed(Exception):
    """A step that did not go through: the HTTP status to answer with and what to show."""

    def __init__(self, result: StepResult, http_status: int) -> None:
        super().__init__(result.message)
        self.result = result
        self.http_status = http_status


class Journey:
    """One walk through the six steps, holding its sessions and tokens between steps."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sidecar = Sidecar(config.sidecar_url, config.sidecar_public_key)
        self.lock = threading.Lock()
        self.results: list[StepResult] = []
        self.anonymous: SessionContext | None = None
        self.authenticated: SessionContext | None = None
        self.first: TokenPair | None = None
        self.second: TokenPair | None = None

    @property
    def done(self) -> int:
        """How many of the six steps have gone through."""
        return sum(1 for r in self.results if isinstance(r.number, int))

    def run(self, step: int | str) -> StepResult:
        """Runs step 1..6 or ``"check"``; raises :class:`OutOfOrder` or :class:`StepFailed`."""
        with self.lock:
            self._check_order(step)
            name, endpoint = (CHECK_NAME, identity.INTROSPECT) if step == CHECK else STEPS[int(step)]
            started = time.perf_counter()
            try:
                result = _STEP_FUNCTIONS[step](self)
            except OutOfOrder:
                raise
            except Exception as e:  # every failure becomes a result with a hint
                raise _failure(step, name, endpoint, e, started, self.config) from e
            result.elapsed_ms = (time.perf_counter() - started) * 1e3
            self.results.append(result)
            return result

    def reset(self) -> None:
        """Forgets everything and wipes the session keys."""
        with self.lock:
            self._wipe()
            self.results.clear()
            self.first = self.second = None

    def _wipe(self) -> None:
        for session in (self.anonymous, self.authenticated):
            if session is not None:
                session.end()
        self.anonymous = self.authenticated = None

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "next_step": self.done + 1 if self.done < 6 else CHECK,
                "results": [r.to_json() for r in self.results],
            }

    def _check_order(self, step: int | str) -> None:
        done = self.done
        if step == CHECK:
            if done < 6:
                raise OutOfOrder(
                    f"The check comes after step 6 (revocation); the journey is at step {done + 1}. "
                    "Take the steps in order, 1 to 6."
                )
            return
        number = int(step)
        if number <= done:
            raise OutOfOrder(
                f"Step {number} ({STEPS[number][0]}) went through already. Take the next step "
                f"({done + 1 if done < 6 else 'the check'}), or reset to walk the journey again."
            )
        if number > done + 1:
            raise OutOfOrder(
                f"Step {number} ({STEPS[number][0]}) needs step {done + 1} "
                f"({STEPS[done + 1][0]}) first: take the steps in order, 1 to 6."
            )

    # --- the steps ------------------------------------------------------------------------

    def _step1(self) -> StepResult:
        session, result = self.sidecar.init_session()
        self.anonymous = session
        notes = [] if self.sidecar.trust().pinned else ["NOTICE: " + self.sidecar.trust().describe()]
        return _result(1, "none (ephemeral P-256 key; answer signature verified)", 200, result.to_json(), notes)

    def _step2(self) -> StepResult:
        c = self.config
        answer = identity.issue(
            self.sidecar, _live(self.anonymous), c.client_id, c.client_secret, c.subject, c.scope, c.audience
        )
        self.first = _pair(_expect_ok(answer))
        return _result(2, f"Basic {c.client_id}:<secret hidden>", answer.status, shorten_tokens(answer.body))

    def _step3(self) -> StepResult:
        first = _have(self.first)
        answer = _expect_ok(
            identity.introspect(
                self.sidecar, _live(self.anonymous), first.access_token, first.access_token, "access_token"
            )
        )
        _require(answer, "active", True, "introspection says the access token just issued is not active")
        return _result(3, f"Bearer {shorten(first.access_token)}", answer.status, shorten_tokens(answer.body))

    def _step4(self) -> StepResult:
        first, anonymous = _have(self.first), _live(self.anonymous)
        session, result = self.sidecar.init_session(
            bearer=first.access_token, subject=self.config.subject, previous_session=anonymous.session_id
        )
        self.authenticated = session
        # The sidecar ended the anonymous session (X-Session-Id): its keys are of no more use.
        anonymous.end()
        self.anonymous = None
        auth = (
            f"Bearer {shorten(first.access_token)}, X-Subject: {self.config.subject}, "
            f"X-Session-Id: {shorten(anonymous.session_id)}"
        )
        return _result(4, auth, 200, result.to_json())

    def _step5(self) -> StepResult:
        first = _have(self.first)
        answer = _expect_ok(
            identity.refresh(self.sidecar, _live(self.authenticated), first.access_token, first.refresh_token)
        )
        self.second = _pair(answer)
        return _result(5, f"Bearer {shorten(first.access_token)}", answer.status, shorten_tokens(answer.body))

    def _step6(self) -> StepResult:
        second = _have(self.second)
        answer = _expect_ok(
            identity.revoke(
                self.sidecar, _live(self.authenticated), second.access_token, second.refresh_token, "refresh_token"
            )
        )
        _require(answer, "revoked", True, "the identity API says it revoked nothing")
        return _result(6, f"Bearer {shorten(second.access_token)}", answer.status, shorten_tokens(answer.body))

    def _check(self) -> StepResult:
        """Introspection needs an active bearer, and every token of the revoked family is
        inactive now: ask with a token of a new family, revoked again afterwards."""
        c, second, session = self.config, _have(self.second), _live(self.authenticated)
        checker = _pair(
            _expect_ok(
                identity.issue(self.sidecar, session, c.client_id, c.client_secret, c.subject, c.scope, c.audience)
            )
        )
        answers: dict[str, Any] = {}
        status = 200
        for label, token, hint in (
            ("refresh_token of the revoked family", second.refresh_token, "refresh_token"),
            ("access_token of the revoked family", second.access_token, "access_token"),
        ):
            answer = _expect_ok(identity.introspect(self.sidecar, session, checker.access_token, token, hint))
            _require(answer, "active", False, f"introspection says the {label} is still active")
            answers[label] = shorten_tokens(answer.body)
            status = answer.status
        _expect_ok(identity.revoke(self.sidecar, session, checker.access_token, checker.refresh_token, "refresh_token"))
        auth = f"Bearer {shorten(checker.access_token)} (a new family, issued and revoked for this check)"
        return _result(CHECK, auth, status, answers)


_STEP_FUNCTIONS: dict[int | str, Callable[[Journey], StepResult]] = {
    1: Journey._step1,
    2: Journey._step2,
    3: Journey._step3,
    4: Journey._step4,
    5: Journey._step5,
    6: Journey._step6,
    CHECK: Journey._check,
}


def _result(number: int | str, auth: str, status: int, answer: Any, notes: list[str] | None = None) -> StepResult:
    name, endpoint = (CHECK_NAME, identity.INTROSPECT) if number == CHECK else STEPS[int(number)]
    return StepResult(number, name, "POST", endpoint, auth, status, answer, 0.0, notes=notes or [])


def _live(session: SessionContext | None) -> SessionContext:
    if session is None:
        raise OutOfOrder("no session: start again from step 1 (reset)")
    return session


def _have(pair: TokenPair | None) -> TokenPair:
    if pair is None:
        raise OutOfOrder("no tokens yet: start again from step 1 (reset)")
    return pair


def _expect_ok(answer: Answer) -> Answer:
    if not answer.ok:
        raise ApiRefused(answer)
    return answer


def _require(answer: Answer, field: str, value: bool, message: str) -> None:
    """The answer's ``field`` is exactly ``value``, or the services break the protocol."""
    if not isinstance(answer.body, dict) or answer.body.get(field) is not value:
        raise CheckFailed(message)


def _pair(answer: Answer) -> TokenPair:
    pair = TokenPair.of(answer)
    if pair is None:
        raise CheckFailed("the answer carries no token pair")
    return pair


# --- failures and what to do about them ----------------------------------------------------


def _failure(step: int | str, name: str, endpoint: str, e: Exception, started: float, config: Config) -> StepFailed:
    """The result of a failed step: status, code, message and hint; and the HTTP status the web
    API answers with (the refusal's own, or 502 when the sidecar could not be reached or its
    answer did not verify)."""
    status: int | None
    answer: Any = None
    if isinstance(e, ApiRefused):
        status, code, http = e.answer.status, e.answer.error, e.answer.status
        answer = shorten_tokens(e.answer.body)
    elif isinstance(e, SidecarError):
        status, code, http = e.status, e.code, e.status
        answer = {"error": e.code, "error_description": e.description}
    elif isinstance(e, SidecarUnreachable):
        status, code, http = None, "sidecar_unreachable", 502
    elif isinstance(e, cu.BadSignature):
        status, code, http = 200, "signature_mismatch", 502
    elif isinstance(e, cu.DecryptionFailed):
        status, code, http = None, "decryption_failed", 502
    elif isinstance(e, CheckFailed):
        status, code, http = 200, "check_failed", 502
    elif isinstance(e, cu.ProtocolError):
        status, code, http = None, "unexpected_answer", 502
    else:
        status, code, http = None, "internal_error", 500
    message = (
        f"step {step} ({name}, {endpoint}): {e}"
        if code != "internal_error"
        else (f"step {step} ({name}, {endpoint}): an error in this client ({type(e).__name__}); see its log")
    )
    result = StepResult(
        number=step,
        name=name,
        method="POST",
        endpoint=endpoint,
        auth="",
        status=status,
        answer=answer,
        elapsed_ms=(time.perf_counter() - started) * 1e3,
        ok=False,
        error=code,
        message=message,
        hint=hints.hint(e, step, config),
    )
    return StepFailed(result, http)


class JourneyStore:
    """One journey per browser (a random cookie), at most ``limit`` at once: the least recently
    used is wiped and forgotten when a new one needs its place."""

    def __init__(self, config: Config, limit: int = 64) -> None:
        self.config = config
        self.limit = limit
        self._journeys: OrderedDict[str, Journey] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Journey:
        with self._lock:
            journey = self._journeys.get(key)
            if journey is None:
                journey = self._journeys[key] = Journey(self.config)
                while len(self._journeys) > self.limit:
                    _, old = self._journeys.popitem(last=False)
                    old.reset()
            self._journeys.move_to_end(key)
            return journey

    def wipe_all(self) -> None:
        with self._lock:
            for journey in self._journeys.values():
                journey.reset()
            self._journeys.clear()
