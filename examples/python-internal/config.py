"""Settings from the environment, and from a ``.env`` file beside this program (python-dotenv;
the environment wins over the file).

| variable             | default                 | meaning                                          |
| -------------------- | ----------------------- | ------------------------------------------------ |
| SIDECAR_URL          | http://127.0.0.1:8141   | the sidecar's base URL                           |
| CLIENT_ID            | (required)              | the client registered with the identity API      |
| CLIENT_SECRET        | (required, or the file) | its secret                                       |
| CLIENT_SECRET_FILE   |                         | a file holding the secret instead                |
| SUBJECT              | test-user               | subject of the tokens and the bound session      |
| SIDECAR_PUBLIC_KEY   | (trust on first use)    | the sidecar's signing key to pin (base64url)     |
| SCOPE, AUDIENCE      | the client's            | what to ask for at token issue                   |
| WEB_HOST, WEB_PORT   | 127.0.0.1, 3506         | where the web UI listens                         |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import load_dotenv

import crypto_utils as cu

HERE = Path(__file__).resolve().parent
DEFAULT_SIDECAR_URL = "http://127.0.0.1:8141"
DEFAULT_PORT = 3506
CREATE_CLIENT = (
    'Create a client with `identity-api client create <id> --scope "orders.read orders.write" '
    "--audience orders-api --subject-policy any --json --dev` in the directory of an `identity-api serve --dev`, or "
    "start a throwaway stack with `cargo run -p identity-sidecar-examples --bin journey -- "
    "--local --keep-running` and copy the lines it prints into .env"
)


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and what to do."""


@dataclass(frozen=True)
class Config:
    sidecar_url: str
    client_id: str
    client_secret: str = field(repr=False)
    subject: str = "test-user"
    sidecar_public_key: str | None = None
    scope: str | None = None
    audience: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT

    def __repr__(self) -> str:
        return (
            f"Config(sidecar_url={self.sidecar_url!r}, client_id={self.client_id!r}, "
            f"client_secret=<hidden>, subject={self.subject!r}, "
            f"pinned={self.sidecar_public_key is not None})"
        )


def _get(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _client_secret() -> str:
    secret, path = os.environ.get("CLIENT_SECRET", ""), _get("CLIENT_SECRET_FILE")
    if secret.strip() and path:
        raise ConfigError("set CLIENT_SECRET or CLIENT_SECRET_FILE, not both")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"CLIENT_SECRET_FILE {path}: cannot read it ({e.strerror})") from None
        secret = text[:-1] if text.endswith("\n") else text
    if not secret.strip():
        raise ConfigError(f"CLIENT_ID and CLIENT_SECRET are required (environment or .env). {CREATE_CLIENT}.")
    return secret


def load(env_file: Path | None = None) -> Config:
    """Reads ``.env`` (``env_file``, default: beside this program) without overriding the
    environment, then checks every setting."""
    load_dotenv(env_file or HERE / ".env", override=False)
    sidecar_url = _get("SIDECAR_URL") or DEFAULT_SIDECAR_URL
    parts = urlsplit(sidecar_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"SIDECAR_URL must be the sidecar's base URL, such as {DEFAULT_SIDECAR_URL} (got {sidecar_url!r})"
        )
    client_id = _get("CLIENT_ID")
    if not client_id:
        raise ConfigError(f"CLIENT_ID and CLIENT_SECRET are required (environment or .env). {CREATE_CLIENT}.")
    client_secret = _client_secret()
    pin = _get("SIDECAR_PUBLIC_KEY")
    if pin:
        try:
            cu.parse_public_key(cu.b64u_decode(pin))
        except cu.ProtocolError as e:
            raise ConfigError(
                "SIDECAR_PUBLIC_KEY must be the sidecar's public key exactly as published at "
                "/.well-known/identity-sidecar (base64url without padding of the 65-byte "
                f"uncompressed P-256 point): {e}"
            ) from None
    subject = _get("SUBJECT") or "test-user"
    if subject == cu.ANONYMOUS_SUBJECT or len(subject) > 255:
        raise ConfigError("SUBJECT must be 1 to 255 characters and not '-'")
    port_text = _get("WEB_PORT") or str(DEFAULT_PORT)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"WEB_PORT must be a TCP port number (got {port_text!r})")
    return Config(
        sidecar_url=sidecar_url.rstrip("/"),
        client_id=client_id,
        client_secret=client_secret,
        subject=subject,
        sidecar_public_key=pin,
        scope=_get("SCOPE"),
        audience=_get("AUDIENCE"),
        host=_get("WEB_HOST") or "127.0.0.1",
        port=int(port_text),
    )
