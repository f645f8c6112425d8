"""Shared fixtures: the real identity-api and identity-sidecar, kept up by the Rust journey's
launcher (`journey --local --keep-running --bin-dir ...`) for the whole test session, and
helpers to run this app against them with a clean environment.

The binaries come from IDENTITY_BIN_DIR (default: the workspace's target/debug, as `cargo
build --workspace` or `cargo test --workspace` leave them); nothing is built here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[1]
REPO = APP_DIR.parents[1]
sys.path.insert(0, str(APP_DIR))

# Settings of the developer's that must not leak into a test.
OWN_VARS = ("SIDECAR_", "CLIENT_", "SUBJECT", "SCOPE", "AUDIENCE", "WEB_", "NO_COLOR")


def bin_dir() -> Path:
    return Path(os.environ.get("IDENTITY_BIN_DIR") or REPO / "target" / "debug")


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(OWN_VARS)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    """The launcher's .env lines as a dict; both binaries run until the session ends."""
    directory = bin_dir()
    journey = directory / "journey"
    missing = [p for p in (journey, directory / "identity-api", directory / "identity-sidecar") if not p.is_file()]
    if missing:
        pytest.fail(
            f"{', '.join(map(str, missing))} not found: build the workspace first "
            "(`cargo build --workspace`), or point IDENTITY_BIN_DIR at the binaries",
            pytrace=False,
        )
    launcher = subprocess.Popen(
        [str(journey), "--local", "--keep-running", "--bin-dir", str(directory)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_environ(),
        cwd=REPO,
    )
    values: dict[str, str] = {}
    deadline = time.monotonic() + 90
    assert launcher.stdout is not None
    for line in launcher.stdout:
        if "=" in line and not line.startswith("#"):
            key, value = line.rstrip("\n").split("=", 1)
            values[key] = value
            if key == "SUBJECT":
                break
        if time.monotonic() > deadline:
            break
    if "SUBJECT" not in values:
        launcher.kill()
        _, err = launcher.communicate(timeout=10)
        pytest.fail(f"journey --local --keep-running printed no settings:\n{err}", pytrace=False)
    try:
        yield values
    finally:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()


def app_env(stack: dict[str, str], **overrides: str | None) -> dict[str, str]:
    """The environment of this app for a test: the stack's settings, changed by ``overrides``
    (None removes a variable); nothing of the developer's."""
    env = clean_environ() | stack
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


NO_ENV_FILE = ["--env-file", os.devnull]


def run_cli(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(APP_DIR / "app.py"), "--cli", *NO_ENV_FILE],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=APP_DIR,
    )


class RunningApp:
    """app.py serving the web UI as a subprocess on a free port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, str(APP_DIR / "app.py"), "--port", str(self.port), *NO_ENV_FILE],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=APP_DIR,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited: {self.process.stdout.read() if self.process.stdout else ''}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("app.py did not listen within 20 s")

    def stop(self) -> str:
        """SIGTERM; returns what it printed."""
        self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return out or ""
