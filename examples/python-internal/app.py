"""The journey in a browser (a Flask web UI, http://127.0.0.1:3506) or on the command line
(``--cli``). All the cryptography runs here, server-side; the page only calls ``/steps/...``.

    uv run python app.py            # the web UI
    uv run python app.py --cli      # the six steps and the check, then exit 0 or 1

Web API (JSON; every POST needs ``Content-Type: application/json``):

- ``POST /steps/1`` .. ``/steps/6``: one step; ``POST /steps/check``: the check that the revoked
  family is inactive (after step 6); ``POST /steps/reset``: start again; ``GET /steps``: where
  the journey is. A step answers 200 with its endpoint, authentication, status, decrypted answer
  (tokens shortened) and time; a failed step answers the refusal's status (401 for a wrong
  secret) or 502 when the sidecar is down or its answer did not verify, with a message and a
  hint; a step out of order answers 409 and says which step comes next.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

import config as config_module
from config import Config, ConfigError
from journey import CHECK, STEPS, Journey, JourneyStore, OutOfOrder, StepFailed
from models import StepResult

HERE = Path(__file__).resolve().parent
COOKIE = "journey"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
log = logging.getLogger("python-internal")


# --- the web UI ----------------------------------------------------------------------------


def create_app(config: Config) -> Flask:
    app = Flask(__name__, static_folder=str(HERE / "static"), static_url_path="/static")
    app.json.sort_keys = False  # answers keep the identity API's order
    store = JourneyStore(config)
    app.extensions["journeys"] = store
    # Served on loopback, it answers only to loopback names; bound elsewhere on purpose
    # (WEB_HOST), it is reachable directly anyway and answers to any name.
    check_host = config.host in LOCAL_HOSTS

    def journey_of_request() -> tuple[Journey, str | None]:
        """This browser's journey; a new cookie when it has none."""
        key = request.cookies.get(COOKIE, "")
        if len(key) == 22 and key.replace("-", "").replace("_", "").isalnum():
            return store.get(key), None
        key = secrets.token_urlsafe(16)
        return store.get(key), key

    def answer(body: dict[str, Any], status: int, new_cookie: str | None) -> Response:
        response = jsonify(body)
        response.status_code = status
        if new_cookie:
            response.set_cookie(COOKIE, new_cookie, httponly=True, samesite="Strict")
        return response

    @app.before_request
    def guard() -> Response | None:
        # DNS rebinding: a page of another site must not drive this server through a name of its own.
        host = request.host.split("]")[0] + "]" if request.host.startswith("[") else request.host.split(":")[0]
        if check_host and host not in LOCAL_HOSTS:
            message = "This server answers only to a loopback name: open http://localhost:PORT or 127.0.0.1."
            return answer({"ok": False, "error": "forbidden_host", "message": message}, 403, None)
        # A cross-site form cannot send JSON without a preflight: POSTs must be JSON.
        if request.method == "POST" and request.mimetype != "application/json":
            return answer(
                {
                    "ok": False,
                    "error": "unsupported_media_type",
                    "message": "POST with Content-Type: application/json.",
                },
                415,
                None,
            )
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.path.startswith("/steps"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/")
    def index() -> Response:
        return send_from_directory(HERE / "static", "index.html")

    @app.get("/steps")
    def state() -> Response:
        journey, cookie = journey_of_request()
        doc = journey.state()
        doc.update(
            sidecar_url=config.sidecar_url,
            client_id=config.client_id,
            subject=config.subject,
            pinned=config.sidecar_public_key is not None,
            steps={n: {"name": name, "endpoint": endpoint} for n, (name, endpoint) in STEPS.items()},
        )
        return answer(doc, 200, cookie)

    @app.post("/steps/reset")
    def reset() -> Response:
        journey, cookie = journey_of_request()
        journey.reset()
        return answer(
            {"ok": True, "next_step": 1, "message": "The journey starts again at step 1; the session keys were wiped."},
            200,
            cookie,
        )

    @app.post("/steps/<step>")
    def run_step(step: str) -> Response:
        if step != CHECK and not (step.isdigit() and int(step) in STEPS):
            return answer(
                {"ok": False, "error": "unknown_step", "message": "The steps are 1 to 6, check and reset."}, 404, None
            )
        journey, cookie = journey_of_request()
        try:
            result = journey.run(CHECK if step == CHECK else int(step))
        except OutOfOrder as e:
            doc = {"ok": False, "step": step, "error": "out_of_order", "message": str(e)}
            doc.update(next_step=journey.state()["next_step"])
            return answer(doc, 409, cookie)
        except StepFailed as e:
            if e.http_status >= 500 and e.result.error == "internal_error":
                log.error("step %s failed inside this client", step, exc_info=e.__cause__)
            doc = e.result.to_json()
            doc["next_step"] = journey.state()["next_step"]
            return answer(doc, e.http_status, cookie)
        doc = result.to_json()
        doc["next_step"] = journey.state()["next_step"]
        return answer(doc, 200, cookie)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        return answer(
            {"ok": False, "error": (e.name or "error").lower().replace(" ", "_"), "message": e.description},
            e.code or 500,
            None,
        )

    @app.errorhandler(Exception)
    def internal_error(e: Exception) -> Response:
        log.error("unexpected error", exc_info=e)
        return answer(
            {"ok": False, "error": "internal_error", "message": "An error in this client; see its log."}, 500, None
        )

    return app


def serve(config: Config) -> int:
    app = create_app(config)
    store: JourneyStore = app.extensions["journeys"]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(
        f"identity-sidecar journey web UI: http://{_url_host(config.host)}:{config.port}  "
        f"(sidecar {config.sidecar_url}, client {config.client_id})",
        flush=True,
    )
    if config.host not in LOCAL_HOSTS:
        print(f"NOTICE: listening on {config.host}, not only on this machine (WEB_HOST)", flush=True)
    try:
        app.run(host=config.host, port=config.port, threaded=True, use_reloader=False)
    finally:
        store.wipe_all()
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# --- the command line ----------------------------------------------------------------------


class Style:
    """ANSI colours on a terminal, none with NO_COLOR set (no-color.org) or when piped."""

    def __init__(self, stream: Any) -> None:
        self.on = stream.isatty() and not os.environ.get("NO_COLOR")

    def paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on else text

    def bold(self, t: str) -> str:
        return self.paint("1", t)

    def dim(self, t: str) -> str:
        return self.paint("2", t)

    def red(self, t: str) -> str:
        return self.paint("1;31", t)

    def green(self, t: str) -> str:
        return self.paint("32", t)

    def yellow(self, t: str) -> str:
        return self.paint("33", t)

    def cyan(self, t: str) -> str:
        return self.paint("36", t)


def step_lines(result: StepResult, style: Style) -> str:
    label = f"[{result.number}/6]" if result.number != CHECK else "[check]"
    status = str(result.status)
    status = style.green(status) if result.status and 200 <= result.status < 300 else style.red(status)
    answer = json.dumps(result.answer, indent=2, ensure_ascii=False).replace("\n", "\n        ")
    return (
        f"{style.bold(label)} {style.bold(result.name)}\n"
        f"    {style.dim('endpoint')} {result.method} {style.cyan(result.endpoint)}  HTTP {status}  "
        f"{style.dim(f'{result.elapsed_ms:.1f} ms')}\n"
        f"    {style.dim('auth    ')} {result.auth}\n"
        f"    {style.dim('answer  ')} {answer}\n"
    )


def run_cli(config: Config) -> int:
    out, err = Style(sys.stdout), Style(sys.stderr)
    print(
        f"{out.bold('identity-sidecar journey (Python) via')} {out.cyan(config.sidecar_url)} "
        f"as client {config.client_id} for subject {config.subject}\n",
        flush=True,
    )
    journey = Journey(config)
    total = 0.0
    try:
        for step in [*STEPS, CHECK]:
            try:
                result = journey.run(step)
            except StepFailed as e:
                failed = e.result
                print(f"{err.red('FAILED:')} {failed.message}", file=sys.stderr)
                if failed.answer:
                    print(f"        {json.dumps(failed.answer, ensure_ascii=False)}", file=sys.stderr)
                print(f"{err.yellow('what to do:')} {failed.hint}", file=sys.stderr, flush=True)
                return 1
            if step == 1:
                trust = journey.sidecar.trust()
                line = out.green("trust:") if trust.pinned else out.yellow("NOTICE:")
                print(f"{line} {trust.describe()}\n")
            print(step_lines(result, out), flush=True)
            total += result.elapsed_ms
    finally:
        journey.reset()
    print(
        f"{out.green('OK:')} the six steps went through, and the check: the revoked family is "
        f"inactive ({total:.1f} ms in calls)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The identity-sidecar journey in Python: a web UI that walks the six steps one "
        "button at a time, or (--cli) all of them on the command line. Settings come from the "
        "environment and a .env file beside this program: SIDECAR_URL, CLIENT_ID, CLIENT_SECRET "
        "(or CLIENT_SECRET_FILE), SUBJECT, SIDECAR_PUBLIC_KEY, SCOPE, AUDIENCE, WEB_HOST, WEB_PORT.",
    )
    parser.add_argument(
        "--cli",
        action="store_true",
        help="walk the six steps and the check on the command line; exit 0 when all went through, 1 when one "
        "failed, 2 on bad settings",
    )
    parser.add_argument("--host", help="address of the web UI (WEB_HOST, default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, help="port of the web UI (WEB_PORT, default 3506)")
    parser.add_argument("--env-file", type=Path, help="the .env file to read (default: the one beside app.py)")
    args = parser.parse_args(argv)
    try:
        config = config_module.load(args.env_file)
    except ConfigError as e:
        print(f"{Style(sys.stderr).red('python-internal:')} {e}", file=sys.stderr)
        return 2
    if args.host or args.port:
        config = dataclasses.replace(config, host=args.host or config.host, port=args.port or config.port)
    if args.cli:
        return run_cli(config)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
