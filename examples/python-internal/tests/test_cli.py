"""`app.py --cli` against the real binaries: the six steps and the check go through (pinned key
and trust on first use), plain when piped, coloured on a terminal unless NO_COLOR; and each
failure exits non-zero with the Rust journey's hint: sidecar not running, wrong secret,
signature mismatch, bad settings. The secret is never printed."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import crypto_utils as cu
from conftest import APP_DIR, NO_ENV_FILE, app_env, closed_port_url, run_cli


def output(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


def test_the_journey_goes_through_with_the_pinned_key(stack: dict[str, str]) -> None:
    done = run_cli(app_env(stack))
    assert done.returncode == 0, output(done)
    for label in ["[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]", "[check]"]:
        assert label in done.stdout, done.stdout
    assert "trust: session init answers are verified against the pinned key" in done.stdout
    assert "OK: the six steps went through" in done.stdout
    assert '"active": false' in done.stdout
    assert '"subject": "' + stack["SUBJECT"] + '"' in done.stdout
    # Piped: no colour codes. Tokens shortened, the secret never shown.
    assert "\x1b[" not in output(done)
    assert stack["CLIENT_SECRET"] not in output(done)
    assert "Basic " + stack["CLIENT_ID"] + ":<secret hidden>" in done.stdout


def test_without_a_pin_the_key_is_trusted_on_first_use_and_said_so(stack: dict[str, str]) -> None:
    done = run_cli(app_env(stack, SIDECAR_PUBLIC_KEY=None))
    assert done.returncode == 0, output(done)
    assert "NOTICE: SIDECAR_PUBLIC_KEY is not set" in done.stdout
    assert "first use" in done.stdout


def run_on_a_terminal(env: dict[str, str]) -> tuple[int, str]:
    """The CLI with stdout and stderr on a pseudo-terminal."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, str(APP_DIR / "app.py"), "--cli", *NO_ENV_FILE],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        cwd=APP_DIR,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return process.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_coloured_on_a_terminal_and_plain_with_no_color(stack: dict[str, str]) -> None:
    code, text = run_on_a_terminal(app_env(stack))
    assert code == 0, text
    assert "\x1b[32mOK:\x1b[0m" in text
    code, text = run_on_a_terminal(app_env(stack, NO_COLOR="1"))
    assert code == 0, text
    assert "\x1b[" not in text
    assert "OK: the six steps went through" in text


def test_a_wrong_secret_fails_at_step_2_with_the_hint(stack: dict[str, str]) -> None:
    done = run_cli(app_env(stack, CLIENT_SECRET="not-the-secret"))
    assert done.returncode == 1, output(done)
    assert "FAILED: step 2 (token issue" in done.stderr
    assert "401 invalid_client" in done.stderr
    assert "check CLIENT_ID and CLIENT_SECRET" in done.stderr
    assert "[1/6]" in done.stdout and "[2/6]" not in done.stdout
    assert "not-the-secret" not in output(done)


def test_no_sidecar_is_explained(stack: dict[str, str]) -> None:
    url = closed_port_url()
    done = run_cli(app_env(stack, SIDECAR_URL=url))
    assert done.returncode == 1, output(done)
    assert "FAILED: step 1" in done.stderr
    assert f"the sidecar is not running or not at {url}" in done.stderr
    assert "--keep-running" in done.stderr


def test_a_pin_that_is_not_the_sidecars_key_is_a_signature_mismatch(stack: dict[str, str]) -> None:
    foreign = cu.b64u_encode(cu.public_key_bytes(cu.generate_ephemeral_key()))
    done = run_cli(app_env(stack, SIDECAR_PUBLIC_KEY=foreign))
    assert done.returncode == 1, output(done)
    assert "signature mismatch" in done.stderr
    assert "do not continue" in done.stderr


def test_missing_or_bad_settings_exit_2_and_say_what_to_set(stack: dict[str, str]) -> None:
    done = run_cli(app_env(stack, CLIENT_SECRET=None))
    assert done.returncode == 2, output(done)
    assert "CLIENT_ID and CLIENT_SECRET are required" in done.stderr
    done = run_cli(app_env(stack, SIDECAR_PUBLIC_KEY="not-a-key"))
    assert done.returncode == 2, output(done)
    assert "SIDECAR_PUBLIC_KEY must be the sidecar's public key" in done.stderr
    done = run_cli(app_env(stack, SIDECAR_URL="127.0.0.1:8141"))
    assert done.returncode == 2, output(done)
    assert "SIDECAR_URL must be the sidecar's base URL" in done.stderr
