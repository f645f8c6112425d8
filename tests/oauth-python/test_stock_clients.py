"""The standard OAuth 2.0 endpoints of the real identity-api binary, driven by stock clients:
authlib's OAuth2Session (client_credentials with client_secret_basic and client_secret_post,
refresh_token, the password grant of a user made with the CLI, introspect_token, revoke_token,
its errors) and PyJWT's PyJWKClient (an access
token verified against the JWKS, with the issuer and the algorithms from the metadata). Also
runs the README's authlib snippet as it is written there.

    IDENTITY_API_BIN=target/debug/identity-api pytest tests/oauth-python   (.ci/run does this)
"""

import json
import os
import pathlib
import re
import secrets
import subprocess
import tempfile
import time

import jwt
import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("IDENTITY_API_BIN", str(ROOT / "target" / "debug" / "identity-api"))
SCOPE = "orders.read orders.write"
AUDIENCE = "orders-api"
PASSWORD = "correct horse battery staple"


class Server:
    """identity-api serve on a free loopback port, SQLite in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory()
        self.env = {
            **os.environ,
            "IDENTITY_DATABASE_URL": f"sqlite://{self.dir.name}/identity.db",
            "IDENTITY_KEY_ENCRYPTION_KEY": self.run("kek", "generate").strip(),
            "IDENTITY_INTERNAL_TOKEN": secrets.token_urlsafe(32),
            "IDENTITY_SERVICE_TOKEN": secrets.token_urlsafe(32),
            "RUST_LOG": "warn",
        }
        self.clients = {}
        self.process = None
        self.url = None

    def run(self, *args, stdin=None):
        env = getattr(self, "env", os.environ)
        done = subprocess.run(
            [BIN, *args], env=env, capture_output=True, text=True, timeout=60, check=False,
            input=stdin,
        )
        assert done.returncode == 0, f"identity-api {' '.join(args)}: {done.stderr}"
        return done.stdout

    def create_client(self, client_id, *flags, scope=SCOPE):
        out = self.run(
            "client", "create", client_id, "--scope", scope, "--audience", AUDIENCE,
            *flags, "--json",
        )
        self.clients[client_id] = json.loads(out)["client_secret"]

    def start(self):
        self.process = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0"],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            found = re.search(r"identity-api listening on (http://\S+)", line)
            if found:
                self.url = found.group(1)
                return
        self.stop()
        raise RuntimeError("identity-api serve did not print its address")

    def stop(self):
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.dir.cleanup()

    def session(self, client_id, method="client_secret_basic", **kwargs):
        return OAuth2Session(
            client_id, self.clients[client_id], token_endpoint_auth_method=method, **kwargs
        )


@pytest.fixture(scope="module")
def server():
    s = Server()
    s.create_client("svc", "--grant-types", "client_credentials")
    s.create_client("refresher", "--grant-types", "client_credentials refresh_token")
    s.create_client("gateway", "--grant-types", "refresh_token", "--may-introspect")
    s.create_client("other")
    s.create_client("portal", "--grant-types", "password refresh_token")
    s.run("role", "set", "viewer", "orders.read")
    created = s.run("user", "create", "alice", "--roles", "viewer", "--password-stdin", "--json",
                    stdin=PASSWORD + "\n")
    s.user_id = json.loads(created)["user_id"]
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def metadata(server):
    answer = requests.get(f"{server.url}/.well-known/oauth-authorization-server", timeout=10)
    answer.raise_for_status()
    return answer.json()


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_and_the_jwks(server, metadata, method):
    assert method in metadata["token_endpoint_auth_methods_supported"]
    client = server.session("svc", method, scope="orders.read")
    token = client.fetch_token(
        metadata["token_endpoint"], grant_type="client_credentials", resource=AUDIENCE
    )
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "orders.read"
    assert "refresh_token" not in token, "svc may not use the refresh_token grant"

    jwks = jwt.PyJWKClient(metadata["jwks_uri"])
    key = jwks.get_signing_key_from_jwt(token["access_token"])
    claims = jwt.decode(
        token["access_token"],
        key.key,
        algorithms=metadata["access_token_signing_alg_values_supported"],
        issuer=metadata["issuer"],
        audience=AUDIENCE,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    assert claims["sub"] == "svc" and claims["client_id"] == "svc"
    assert claims["scope"] == "orders.read"
    assert jwt.get_unverified_header(token["access_token"])["typ"] == "at+jwt"
    # Another audience does not verify.
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            token["access_token"], key.key, algorithms=["ES256"],
            issuer=metadata["issuer"], audience="billing-api",
        )


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_refresh_token_rotates_and_reuse_revokes(server, metadata, method):
    client = server.session("refresher", method)
    first = client.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    assert first["refresh_token"]
    second = client.refresh_token(
        metadata["token_endpoint"], refresh_token=first["refresh_token"]
    )
    assert second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == SCOPE
    # The first one again is reuse: invalid_grant, and the family is revoked.
    with pytest.raises(OAuthError) as refused:
        client.refresh_token(metadata["token_endpoint"], refresh_token=first["refresh_token"])
    assert refused.value.error == "invalid_grant"
    answer = client.introspect_token(
        metadata["introspection_endpoint"], token=second["access_token"]
    )
    assert answer.json() == {"active": False}


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_introspect_and_revoke(server, metadata, method):
    endpoint = metadata["introspection_endpoint"]
    client = server.session("refresher", method)
    token = client.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    access = token["access_token"]

    info = client.introspect_token(endpoint, token=access).json()
    assert info["active"] is True
    for field in ["scope", "client_id", "sub", "aud", "iss", "exp", "iat", "token_type", "jti"]:
        assert field in info, field
    assert info["client_id"] == "refresher" and info["iss"] == metadata["issuer"]
    hinted = client.introspect_token(
        endpoint, token=token["refresh_token"], token_type_hint="refresh_token"
    ).json()
    assert hinted["active"] is True and hinted["token_use"] == "refresh_token"

    # Another client sees nothing of it; the gateway client and the service token see it all.
    other = server.session("other", method)
    assert other.introspect_token(endpoint, token=access).json() == {"active": False}
    gateway = server.session("gateway", method)
    assert gateway.introspect_token(endpoint, token=access).json() == info
    by_service = requests.post(
        endpoint,
        data={"token": access},
        headers={"x-service-token": server.env["IDENTITY_SERVICE_TOKEN"]},
        timeout=10,
    )
    assert by_service.json() == info
    assert by_service.headers["cache-control"] == "no-store"

    # Another client's revocation does nothing; the client's own revokes the family at once.
    assert other.revoke_token(metadata["revocation_endpoint"], token=access).status_code == 200
    assert client.introspect_token(endpoint, token=access).json()["active"] is True
    revoked = client.revoke_token(
        metadata["revocation_endpoint"], token=access, token_type_hint="access_token"
    )
    assert revoked.status_code == 200
    assert client.introspect_token(endpoint, token=access).json() == {"active": False}
    refreshed = client.introspect_token(endpoint, token=token["refresh_token"]).json()
    assert refreshed == {"active": False}
    # Unknown tokens are revoked as well as any.
    assert client.revoke_token(metadata["revocation_endpoint"], token="nope").status_code == 200


def test_errors_as_authlib_reads_them(server, metadata):
    endpoint = metadata["token_endpoint"]
    wrong = OAuth2Session("svc", "wrong-secret")
    with pytest.raises(OAuthError) as refused:
        wrong.fetch_token(endpoint, grant_type="client_credentials")
    assert refused.value.error == "invalid_client"
    with pytest.raises(OAuthError) as refused:
        server.session("svc", scope="orders.admin").fetch_token(
            endpoint, grant_type="client_credentials"
        )
    assert refused.value.error == "invalid_scope"
    with pytest.raises(OAuthError) as refused:
        server.session("svc").fetch_token(endpoint, grant_type="password", username="u",
                                          password="p")
    assert refused.value.error == "unauthorized_client"
    with pytest.raises(OAuthError) as refused:
        server.session("svc").fetch_token(
            endpoint, grant_type="urn:ietf:params:oauth:grant-type:device_code", device_code="d"
        )
    assert refused.value.error == "unsupported_grant_type"
    with pytest.raises(OAuthError) as refused:
        server.session("gateway").fetch_token(endpoint, grant_type="client_credentials")
    assert refused.value.error == "unauthorized_client"
    # The raw answer: 401 with the Basic challenge, never cached.
    answer = requests.post(
        endpoint, data={"grant_type": "client_credentials"}, auth=("svc", "wrong"), timeout=10
    )
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Basic ")
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["pragma"] == "no-cache"
    # Over the real socket: an oversized form (refused from its Content-Length) and one that is
    # not UTF-8 are each a 400 invalid_request that says so.
    form = {"content-type": "application/x-www-form-urlencoded"}
    for body, says in [
        (b"grant_type=client_credentials&pad=" + b"a" * 70_000, "over the limit"),
        (b"grant_type=client_credentials&scope=%FF", "not UTF-8"),
    ]:
        answer = requests.post(endpoint, data=body, headers=form, auth=("svc", "x"), timeout=10)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_request"
        assert says in answer.json()["error_description"]


def test_metadata_lists_exactly_the_endpoints(server, metadata):
    assert metadata["issuer"] == server.url
    assert metadata["grant_types_supported"] == ["client_credentials", "refresh_token", "password"]
    assert metadata["response_types_supported"] == []
    assert "authorization_endpoint" not in metadata
    openid = requests.get(f"{server.url}/.well-known/openid-configuration", timeout=10).json()
    assert openid == metadata
    for name in ["token_endpoint", "introspection_endpoint", "revocation_endpoint"]:
        # Each exists and takes POST only.
        assert requests.get(metadata[name], timeout=10).status_code == 405
    jwks = requests.get(metadata["jwks_uri"], timeout=10)
    assert jwks.headers["cache-control"] == "max-age=300"


def test_readme_snippet(server):
    """The README's "Use it from a stock OAuth client" snippet, run as written."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use it from a stock OAuth client", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    env = {
        "IDENTITY_ISSUER": server.url,
        "CLIENT_ID": "svc",
        "CLIENT_SECRET": server.clients["svc"],
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        exec(compile(snippet, "README.md", "exec"), {})  # noqa: S102
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_password_grant_as_authlib_sends_it(server, metadata):
    endpoint = metadata["token_endpoint"]
    session = server.session("portal", scope="orders.read")
    token = session.fetch_token(endpoint, grant_type="password", username="Alice",
                                password=PASSWORD)
    assert token["scope"] == "orders.read"
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["sub"] == server.user_id
    assert claims["roles"] == ["viewer"]
    refreshed = session.refresh_token(endpoint, refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]
    assert jwt.decode(refreshed["access_token"], options={"verify_signature": False})["roles"] == [
        "viewer"
    ]
    with pytest.raises(OAuthError) as refused:
        server.session("portal").fetch_token(endpoint, grant_type="password", username="alice",
                                             password="not the password")
    assert refused.value.error == "invalid_grant"
    assert refused.value.description == "invalid username or password"
