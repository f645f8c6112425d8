-- Clients of the identity API. Scopes and audiences are space-separated lists.
CREATE TABLE clients (
    client_id       TEXT PRIMARY KEY NOT NULL,
    secret_verifier BYTEA NOT NULL,
    scopes          TEXT NOT NULL,
    audiences       TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    rotated_at      BIGINT NOT NULL
);

-- ES256 signing keys; the PKCS#8 private key is AES-256-GCM encrypted under the key-encryption key.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY NOT NULL,
    public_x        TEXT NOT NULL,
    public_y        TEXT NOT NULL,
    private_key_enc BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT
);

CREATE TABLE token_families (
    family_id    TEXT PRIMARY KEY NOT NULL,
    client_id    TEXT NOT NULL REFERENCES clients (client_id),
    subject      TEXT NOT NULL,
    scope        TEXT NOT NULL,
    audience     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    revoked_at   BIGINT,
    revoke_reason TEXT
);

-- Refresh tokens are stored only as SHA-256 hashes.
CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    jti        TEXT NOT NULL,
    family_id  TEXT NOT NULL REFERENCES token_families (family_id),
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    spent      BOOLEAN NOT NULL DEFAULT FALSE,
    spent_at   BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

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
