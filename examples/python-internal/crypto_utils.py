"""The cryptography of docs/PROTOCOL.md, section by section, with PyCA's ``cryptography``.

- Terms: strict base64url without padding (:func:`b64u_decode`).
- Section 1: ephemeral P-256 key pairs, the peer-key checks, the key schedule
  (:func:`derive_session_keys`), and the server authentication (:func:`verify_init_signature`).
- Section 3: the AADs and the sealed envelopes (:func:`seal_request`, :func:`open_response`).

Zeroization, and where Python stops it
--------------------------------------
Section 1 says Z, the OKM, the ephemeral private keys and the session keys MUST be wiped as soon
as they are no longer needed. What this module does:

- The OKM is derived straight into a ``bytearray`` (``HKDF.derive_into``), split into the two
  session keys (also ``bytearray``), and overwritten with zeros at once.
- The session keys live in :class:`SessionKeys`, whose :meth:`SessionKeys.wipe` overwrites them
  with zeros; it runs when a session is replaced, reset, or the program ends (``with`` blocks).
- Z is copied into a ``bytearray`` that is wiped right after the HKDF.
- The ephemeral private key is an OpenSSL object held only inside :func:`derive_session_keys`;
  its last reference is dropped right after the ECDH, and OpenSSL clears the scalar when it
  frees the key (``BN_clear_free``).

What Python does not allow, so this module cannot promise it:

- ``EllipticCurvePrivateKey.exchange`` returns Z as an immutable ``bytes`` object. Its copy is
  wiped, but the original stays in the heap until the garbage collector frees it, and freed
  memory is not cleared.
- ``AESGCM(key)`` copies the key into the library's own cipher context, which ``cryptography``
  does not promise to wipe when the object is collected; the same goes for the HMAC state of
  the HKDF and any other buffer inside ``cryptography``'s Rust and OpenSSL code.
- The interpreter may copy buffers anywhere (string formatting, ``repr`` in a traceback, a
  debugger); no Python code can find those copies. Swapped-out pages and core dumps can hold
  them too: deploy with swap off and core dumps disabled where this matters.

The Rust implementation of this protocol (``identity-protocol``) does better on all of these
(``zeroize`` on drop, checked by a memory scan in its tests); this client gets as close as the
language lets it, and says where it stops.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PROTOCOL = "identity-sidecar/v1"
PUBLIC_KEY_LEN = 65
IV_LEN = 12
TAG_LEN = 16
KEY_LEN = 32
MAX_SEQ = 2**53 - 1
SESSION_ID_MAX = 512

SIGNING_LABEL = b"identity-sidecar/v1 session-init"
HKDF_INFO_LABEL = b"identity-sidecar/v1 session"
REQUEST_LABEL = b"identity-sidecar/v1 request"
RESPONSE_LABEL = b"identity-sidecar/v1 response"
ANONYMOUS_SUBJECT = "-"

_B64U = re.compile(r"[A-Za-z0-9_-]*")
_SESSION_ID = re.compile(r"[\x21-\x7e]{1,512}")


class ProtocolError(Exception):
    """An answer or a key that does not follow docs/PROTOCOL.md."""


class BadSignature(ProtocolError):
    """The session init answer is not signed by the trusted key."""


class DecryptionFailed(ProtocolError):
    """A sealed answer did not verify (AES-GCM tag, wrong key, or a tampered status)."""


# --- Terms: base64url without padding -------------------------------------------------------


def b64u_encode(data: bytes | bytearray) -> str:
    return base64.urlsafe_b64encode(bytes(data)).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Strict base64url without padding: no padding, no standard alphabet, no whitespace, and
    canonical trailing bits (re-encoding must give the same text)."""
    if not isinstance(text, str) or not _B64U.fullmatch(text) or len(text) % 4 == 1:
        raise ProtocolError("not base64url without padding")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise ProtocolError("not base64url without padding") from e
    if b64u_encode(data) != text:
        raise ProtocolError("non-canonical base64url (unused trailing bits set)")
    return data


# --- Section 1: key pairs and peer keys -----------------------------------------------------


def generate_ephemeral_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_key_bytes(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The 65-byte uncompressed SEC1 point."""
    return private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def parse_public_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    """A peer's key: exactly 65 bytes, 0x04, on the curve (checked by OpenSSL on load); the
    all-zero point is refused like any other point off the curve."""
    if len(raw) != PUBLIC_KEY_LEN or raw[0] != 0x04:
        raise ProtocolError("a public key must be 65 bytes starting with 0x04")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as e:
        raise ProtocolError("the public key is not a point on P-256") from e


def private_key_from_hex(scalar_hex: str) -> ec.EllipticCurvePrivateKey:
    """A key from its big-endian scalar (the known-answer vectors use these)."""
    return ec.derive_private_key(int(scalar_hex, 16), ec.SECP256R1())


def key_id(public_key: bytes) -> str:
    """Appendix B.1: the first 16 characters of b64u(SHA-256(public key))."""
    return b64u_encode(hashlib.sha256(public_key).digest())[:16]


# --- Section 1: key schedule ----------------------------------------------------------------


def wipe(buffer: bytearray | memoryview | None) -> None:
    """Overwrites a mutable buffer with zeros (see the module's notes for what it cannot reach)."""
    if buffer is not None:
        buffer[:] = bytes(len(buffer))


class SessionKeys:
    """k_c2s and k_s2c in bytearrays: read through :attr:`c2s` / :attr:`s2c`, wiped by
    :meth:`wipe`. Never printed: its ``repr`` names no bytes."""

    __slots__ = ("_c2s", "_s2c")

    def __init__(self, c2s: bytearray, s2c: bytearray) -> None:
        self._c2s = c2s
        self._s2c = s2c

    @property
    def c2s(self) -> bytearray:
        if not any(self._c2s):
            raise ProtocolError("the session keys were wiped: start a new session")
        return self._c2s

    @property
    def s2c(self) -> bytearray:
        if not any(self._s2c):
            raise ProtocolError("the session keys were wiped: start a new session")
        return self._s2c

    @property
    def wiped(self) -> bool:
        return not any(self._c2s) and not any(self._s2c)

    def wipe(self) -> None:
        wipe(self._c2s)
        wipe(self._s2c)

    def __enter__(self) -> SessionKeys:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wipe()

    def __repr__(self) -> str:
        return f"SessionKeys(<{'wiped' if self.wiped else 'hidden'}>)"

    def __reduce__(self) -> object:
        raise TypeError("session keys are not to be pickled")


def hkdf_info(session_id: str) -> bytes:
    return HKDF_INFO_LABEL + b"\x00" + session_id.encode("ascii")


def derive_session_keys(
    client_private: ec.EllipticCurvePrivateKey,
    client_public: bytes,
    server_public: bytes,
    session_id: str,
) -> SessionKeys:
    """Z = ECDH x-coordinate; OKM = HKDF-SHA256(salt = client_pk || server_pk, Z, info, 64);
    k_c2s = OKM[0..32], k_s2c = OKM[32..64]. Z and the OKM are wiped before returning."""
    peer = parse_public_key(server_public)
    z = bytearray(client_private.exchange(ec.ECDH(), peer))
    okm = bytearray(2 * KEY_LEN)
    try:
        HKDF(
            algorithm=hashes.SHA256(),
            length=len(okm),
            salt=bytes(client_public) + bytes(server_public),
            info=hkdf_info(session_id),
        ).derive_into(z, okm)
        return SessionKeys(bytearray(okm[:KEY_LEN]), bytearray(okm[KEY_LEN:]))
    finally:
        wipe(z)
        wipe(okm)


# --- Section 1: server authentication -------------------------------------------------------


def signing_input(
    client_public_b64u: str,
    server_public_b64u: str,
    session_id: str,
    expires_at: int,
    subject: str | None,
) -> bytes:
    subject_text = ANONYMOUS_SUBJECT if subject is None else subject
    return b"\n".join(
        [
            SIGNING_LABEL,
            client_public_b64u.encode("ascii"),
            server_public_b64u.encode("ascii"),
            session_id.encode("ascii"),
            str(expires_at).encode("ascii"),
            subject_text.encode("utf-8"),
        ]
    )


def verify_init_signature(signing_key: bytes, message: bytes, signature_b64u: str) -> None:
    """ECDSA P-256 / SHA-256 over ``message``, the signature as 64 bytes r || s."""
    raw = b64u_decode(signature_b64u)
    if len(raw) != 64:
        raise BadSignature("the signature is not 64 bytes (r || s)")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        parse_public_key(signing_key).verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise BadSignature("the session init answer is not signed by the trusted key") from e


def check_session_id(session_id: object) -> str:
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        raise ProtocolError("session_id is not 1 to 512 visible ASCII characters")
    return session_id


# --- Section 3: envelopes -------------------------------------------------------------------


def auth_binding(authorization: str | None) -> str:
    """b64u(SHA-256(the Authorization header value)), or '-' without one."""
    if authorization is None:
        return "-"
    return b64u_encode(hashlib.sha256(authorization.encode("latin-1")).digest())


def request_aad(session_id: str, method: str, path: str, seq: int, authorization: str | None) -> bytes:
    return b"\n".join(
        [
            REQUEST_LABEL,
            session_id.encode("ascii"),
            method.upper().encode("ascii"),
            path.encode("ascii"),
            str(seq).encode("ascii"),
            auth_binding(authorization).encode("ascii"),
        ]
    )


def response_aad(session_id: str, method: str, path: str, seq: int, status: int) -> bytes:
    return b"\n".join(
        [
            RESPONSE_LABEL,
            session_id.encode("ascii"),
            method.upper().encode("ascii"),
            path.encode("ascii"),
            str(seq).encode("ascii"),
            f"{status:03d}".encode("ascii"),
        ]
    )


@dataclass(frozen=True)
class Envelope:
    seq: int
    iv: str
    ciphertext: str

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "iv": self.iv, "ciphertext": self.ciphertext}


def seal(key: bytearray, plaintext: bytes, aad: bytes, seq: int, iv: bytes | None = None) -> Envelope:
    """AES-256-GCM with a fresh 12-byte IV (a fixed one only for the known-answer vectors)."""
    if not 1 <= seq <= MAX_SEQ:
        raise ProtocolError("seq must be in 1 .. 2^53-1")
    iv = os.urandom(IV_LEN) if iv is None else iv
    if len(iv) != IV_LEN:
        raise ProtocolError("an IV is 12 bytes")
    ciphertext = AESGCM(key).encrypt(iv, plaintext, aad)
    return Envelope(seq=seq, iv=b64u_encode(iv), ciphertext=b64u_encode(ciphertext))


def parse_envelope(body: object) -> Envelope:
    """An envelope's JSON: ``seq`` a JSON integer in range, a 12-byte IV, a ciphertext at least as
    long as the tag."""
    if not isinstance(body, dict):
        raise ProtocolError("the sealed answer is not a JSON object")
    seq, iv, ciphertext = body.get("seq"), body.get("iv"), body.get("ciphertext")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise ProtocolError("the sealed answer's seq is not an integer in 1 .. 2^53-1")
    if not isinstance(iv, str) or len(b64u_decode(iv)) != IV_LEN:
        raise ProtocolError("the sealed answer's iv is not 12 bytes of base64url")
    if not isinstance(ciphertext, str) or len(b64u_decode(ciphertext)) < TAG_LEN:
        raise ProtocolError("the sealed answer's ciphertext is shorter than the GCM tag")
    return Envelope(seq=seq, iv=iv, ciphertext=ciphertext)


def open_envelope(key: bytearray, envelope: Envelope, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(b64u_decode(envelope.iv), b64u_decode(envelope.ciphertext), aad)
    except InvalidTag as e:
        raise DecryptionFailed("the sealed answer did not verify") from e


def seal_request(
    keys: SessionKeys,
    session_id: str,
    method: str,
    path: str,
    seq: int,
    authorization: str | None,
    plaintext: bytes,
    iv: bytes | None = None,
) -> Envelope:
    return seal(keys.c2s, plaintext, request_aad(session_id, method, path, seq, authorization), seq, iv)


def open_response(
    keys: SessionKeys, session_id: str, method: str, path: str, seq: int, status: int, body: object
) -> bytes:
    """Appendix B.3: an answer whose seq is not the request's is refused before decrypting."""
    envelope = parse_envelope(body)
    if envelope.seq != seq:
        raise ProtocolError(f"the sealed answer carries seq {envelope.seq}, the request had {seq}")
    return open_envelope(keys.s2c, envelope, response_aad(session_id, method, path, seq, status))
