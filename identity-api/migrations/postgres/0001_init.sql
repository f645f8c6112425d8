-- The identity API's schema. The storage reads and writes whole rows as
-- identity-api/src/storage/rows.rs declares them.

-- Clients of the identity API. Scopes and audiences are space-separated lists; the secret is
-- stored only as its verifier (HMAC-SHA256 under the verifier key in wrapped_keys).
CREATE TABLE clients (
    client_id       TEXT PRIMARY KEY NOT NULL,
    secret_verifier BYTEA NOT NULL,
    scopes          TEXT NOT NULL,
    audiences       TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    rotated_at      BIGINT NOT NULL
);

-- ES256 signing keys; the PKCS#8 private key is AES-256-GCM encrypted under the key-encryption
-- key whose id (the first 8 bytes of SHA-256 of the KEK, hex) is kek_id.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY NOT NULL,
    public_x        TEXT NOT NULL,
    public_y        TEXT NOT NULL,
    private_key_enc BYTEA NOT NULL,
    kek_id          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT
);

-- Secret keys sealed (AES-256-GCM, AAD = name) under the key-encryption key. Today one row:
-- 'client-secret-verifier', the 256-bit HMAC key of the client-secret verifiers, random, made
-- on first use.
CREATE TABLE wrapped_keys (
    name       TEXT PRIMARY KEY NOT NULL,
    kek_id     TEXT NOT NULL,
    key_enc    BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE token_families (
    family_id     TEXT PRIMARY KEY NOT NULL,
    client_id     TEXT NOT NULL REFERENCES clients (client_id),
    subject       TEXT NOT NULL,
    scope         TEXT NOT NULL,
    audience      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    last_used_at  BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoke_reason TEXT
);

-- Refresh tokens, stored only by their lookup key: the issue time, then the first 26 bytes of
-- SHA-256 of the token. No index by family: nothing reads tokens by family (a family is revoked
-- in token_families), and it would cost every issue and rotation one more B-tree insert.
-- Deleting a family scans this table for the foreign key: delete its tokens first, in bulk.
CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    jti        TEXT NOT NULL,
    family_id  TEXT NOT NULL REFERENCES token_families (family_id),
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    spent      BOOLEAN NOT NULL DEFAULT FALSE,
    spent_at   BIGINT
);

-- Audit trail: never a token or a secret.
CREATE TABLE audit_events (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    event     TEXT NOT NULL,
    client_id TEXT,
    subject   TEXT,
    family_id TEXT,
    outcome   TEXT NOT NULL
);
