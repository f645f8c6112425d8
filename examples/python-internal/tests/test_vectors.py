"""The known-answer vectors of docs/protocol-vectors.json, through this client's crypto_utils:
key schedule, AADs, sealed requests and responses, init signatures, strict base64url and the
peer-key checks of the negative vectors; and the zeroization this client promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import crypto_utils as cu

VECTORS = json.loads((Path(__file__).resolve().parents[3] / "docs" / "protocol-vectors.json").read_text())
POSITIVE = VECTORS["positive"]
NEGATIVE = VECTORS["negative"]
SIGNATURES = VECTORS["init_signatures"]


def ids(vectors: list[dict]) -> list[str]:
    return [v["name"] for v in vectors]


def test_the_file_has_vectors_of_every_kind() -> None:
    assert VECTORS["protocol"] == cu.PROTOCOL
    assert len(POSITIVE) >= 3 and len(NEGATIVE) >= 7 and len(SIGNATURES) >= 2


@pytest.mark.parametrize("v", POSITIVE, ids=ids(POSITIVE))
def test_key_schedule(v: dict) -> None:
    client = cu.private_key_from_hex(v["client_private_key_hex"])
    server = cu.private_key_from_hex(v["server_private_key_hex"])
    client_public, server_public = cu.public_key_bytes(client), cu.public_key_bytes(server)
    assert cu.b64u_encode(client_public) == v["client_public_key"]
    assert cu.b64u_encode(server_public) == v["server_public_key"]
    assert cu.hkdf_info(v["session_id"]).hex() == v["hkdf_info_hex"]
    assert (client_public + server_public).hex() == v["hkdf_salt_hex"]
    keys = cu.derive_session_keys(client, client_public, server_public, v["session_id"])
    assert bytes(keys.c2s).hex() == v["k_c2s_hex"]
    assert bytes(keys.s2c).hex() == v["k_s2c_hex"]
    assert (bytes(keys.c2s) + bytes(keys.s2c)).hex() == v["okm_hex"]
    # Another session id gives other keys: the id is bound in by the HKDF info.
    other = cu.derive_session_keys(client, client_public, server_public, v["session_id"] + "x")
    assert other.c2s != keys.c2s and other.s2c != keys.s2c


@pytest.mark.parametrize("v", POSITIVE, ids=ids(POSITIVE))
def test_sealed_request_and_responses(v: dict) -> None:
    client = cu.private_key_from_hex(v["client_private_key_hex"])
    keys = cu.derive_session_keys(
        client, cu.b64u_decode(v["client_public_key"]), cu.b64u_decode(v["server_public_key"]), v["session_id"]
    )
    r = v["request"]
    assert cu.auth_binding(r["authorization"]) == r["auth_binding"]
    aad = cu.request_aad(v["session_id"], r["method"], r["path"], r["seq"], r["authorization"])
    assert aad.hex() == r["aad_hex"]
    envelope = cu.seal_request(
        keys,
        v["session_id"],
        r["method"],
        r["path"],
        r["seq"],
        r["authorization"],
        bytes.fromhex(r["plaintext_hex"]),
        iv=bytes.fromhex(r["iv_hex"]),
    )
    assert envelope.to_json() == r["envelope"]
    for answer in v["responses"]:
        aad = cu.response_aad(v["session_id"], r["method"], r["path"], r["seq"], answer["status"])
        assert aad.hex() == answer["aad_hex"]
        plaintext = cu.open_response(
            keys, v["session_id"], r["method"], r["path"], r["seq"], answer["status"], answer["envelope"]
        )
        assert plaintext.hex() == answer["plaintext_hex"]
        # A tampered status, another seq in the AAD, or a flipped bit fail.
        with pytest.raises(cu.DecryptionFailed):
            cu.open_response(keys, v["session_id"], r["method"], r["path"], r["seq"], 299, answer["envelope"])
        flipped = dict(answer["envelope"])
        raw = bytearray(cu.b64u_decode(flipped["ciphertext"]))
        raw[0] ^= 1
        flipped["ciphertext"] = cu.b64u_encode(raw)
        with pytest.raises(cu.DecryptionFailed):
            cu.open_response(keys, v["session_id"], r["method"], r["path"], r["seq"], answer["status"], flipped)
        # Appendix B.3: an answer with another seq is refused before decrypting.
        with pytest.raises(cu.ProtocolError, match="seq"):
            cu.open_response(
                keys, v["session_id"], r["method"], r["path"], r["seq"] + 1, answer["status"], answer["envelope"]
            )


@pytest.mark.parametrize("v", SIGNATURES, ids=ids(SIGNATURES))
def test_init_signatures(v: dict) -> None:
    a = v["answer"]
    message = cu.signing_input(
        v["client_public_key"], a["server_public_key"], a["session_id"], a["expires_at"], v["subject"]
    )
    assert message.hex() == v["signing_input_hex"]
    published = v["key_document"]["keys"][0]["public_key"]
    cu.verify_init_signature(cu.b64u_decode(published), message, a["signature"])
    # Another subject, another expiry, or another key: the signature does not verify.
    other = cu.signing_input(
        v["client_public_key"], a["server_public_key"], a["session_id"], a["expires_at"] + 1, v["subject"]
    )
    with pytest.raises(cu.BadSignature):
        cu.verify_init_signature(cu.b64u_decode(published), other, a["signature"])
    stranger = cu.public_key_bytes(cu.generate_ephemeral_key())
    with pytest.raises(cu.BadSignature):
        cu.verify_init_signature(stranger, message, a["signature"])
    # The signing key's scalar gives the published key.
    signer = cu.private_key_from_hex(v["signing_private_key_hex"])
    assert cu.b64u_encode(cu.public_key_bytes(signer)) == published


def test_key_id_is_derived_from_the_key() -> None:
    raw = cu.b64u_decode(SIGNATURES[0]["key_document"]["keys"][0]["public_key"])
    assert len(cu.key_id(raw)) == 16


@pytest.mark.parametrize("v", NEGATIVE, ids=ids(NEGATIVE))
def test_negative_public_keys_are_refused(v: dict) -> None:
    """The client applies the same checks to the sidecar's key that the sidecar applies to
    the client's: each of these is refused, with the class of error the vector names."""
    if v["expected_error"] == "invalid_request":
        with pytest.raises(cu.ProtocolError, match="base64url"):
            cu.b64u_decode(v["client_public_key"])
    else:
        raw = cu.b64u_decode(v["client_public_key"])
        with pytest.raises(cu.ProtocolError):
            cu.parse_public_key(raw)


@pytest.mark.parametrize("text", ["", "A", "AB=", "A B", "+/", "AQ==", "AR"])
def test_strict_base64url(text: str) -> None:
    if text == "":
        assert cu.b64u_decode(text) == b""
        return
    with pytest.raises(cu.ProtocolError):
        cu.b64u_decode(text)


def test_session_keys_are_wiped_and_never_shown() -> None:
    v = POSITIVE[0]
    keys = cu.derive_session_keys(
        cu.private_key_from_hex(v["client_private_key_hex"]),
        cu.b64u_decode(v["client_public_key"]),
        cu.b64u_decode(v["server_public_key"]),
        v["session_id"],
    )
    c2s, s2c = keys.c2s, keys.s2c
    assert v["k_c2s_hex"] not in repr(keys) and "hidden" in repr(keys)
    keys.wipe()
    assert c2s == bytearray(32) and s2c == bytearray(32)
    assert "wiped" in repr(keys)
    with pytest.raises(cu.ProtocolError, match="wiped"):
        _ = keys.c2s
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(keys)
