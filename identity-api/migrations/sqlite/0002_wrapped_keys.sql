-- Key-encryption key rotation: every sealed row records the id of the key-encryption key that
-- sealed it (the first 8 bytes of SHA-256 of the KEK, hex). Signing keys of the previous version
-- have NULL here until the first start of this version records it.
ALTER TABLE signing_keys ADD COLUMN kek_id TEXT;

-- Secret keys sealed (AES-256-GCM, AAD = name) under the key-encryption key. Today one row:
-- 'client-secret-verifier', the 256-bit HMAC key of the client-secret verifiers. It is created
-- on first use: random for a new database; for a database of the previous version, the key that
-- version derived from the KEK, so that existing client secrets keep verifying.
CREATE TABLE wrapped_keys (
    name       TEXT PRIMARY KEY NOT NULL,
    kek_id     TEXT NOT NULL,
    key_enc    BLOB NOT NULL,
    created_at BIGINT NOT NULL
);
