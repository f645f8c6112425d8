-- Users, roles, their credentials (passwords, TOTP, recovery codes, API keys) and the failed
-- logins that lock a username for a while (docs/users.md); identity-api/src/storage/rows.rs
-- declares the columns.

-- A user of a tenant. user_id is opaque and never changes: it is the `sub` of its tokens.
-- username_key is the username in ASCII lowercase: usernames are unique per tenant without
-- regard to case.
CREATE TABLE users (
    user_id             TEXT PRIMARY KEY NOT NULL,
    tenant_id           TEXT NOT NULL,
    username            TEXT NOT NULL,
    username_key        TEXT NOT NULL,
    email               TEXT,
    display_name        TEXT,
    enabled             BOOLEAN NOT NULL,
    -- Space-separated role names of the tenant's roles.
    roles               TEXT NOT NULL,
    -- The Argon2id hash as a PHC string (parameters and salt inside); NULL: no password.
    password_hash       TEXT,
    password_changed_at BIGINT,
    last_login_at       BIGINT,
    -- TOTP (RFC 6238): the secret sealed (AES-256-GCM, AAD = user_id) under the wrapped key
    -- 'mfa-secret-key', set only by a confirmation (a first code accepted); the last time step
    -- used, so that a code is accepted once. totp_pending_enc is an enrolment not confirmed
    -- yet, sealed alike: logins ignore it, so the confirmed secret stays until it is replaced.
    totp_secret_enc     BLOB,
    totp_confirmed_at   BIGINT,
    totp_last_step      BIGINT,
    totp_pending_enc    BLOB,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_username ON users (tenant_id, username_key);

-- What each role of a tenant grants: space-separated scopes.
CREATE TABLE roles (
    tenant_id  TEXT NOT NULL,
    role       TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, role)
);

-- MFA recovery codes: HMAC-SHA256 under the wrapped key 'api-key-verifier'; each works once.
-- pending: the codes of an enrolment not confirmed yet, which no login accepts; its
-- confirmation deletes the other codes and makes these the user's.
CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users (user_id),
    code_hash BLOB NOT NULL,
    used_at   BIGINT,
    pending   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, code_hash)
);

-- API keys: key_id is the key's public prefix, so that validation is one lookup by primary
-- key; verifier is HMAC-SHA256 of the whole key under the wrapped key 'api-key-verifier'.
-- expires_at is set on a key replaced with an overlap.
CREATE TABLE api_keys (
    key_id       TEXT PRIMARY KEY NOT NULL,
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (user_id),
    verifier     BLOB NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

-- Failed password logins by username, whether or not the user exists (a lock must not tell
-- which usernames exist). Cleared by a successful login.
CREATE TABLE login_failures (
    tenant_id     TEXT NOT NULL,
    username_key  TEXT NOT NULL,
    failures      BIGINT NOT NULL,
    last_failure  BIGINT NOT NULL,
    locked_until  BIGINT,
    PRIMARY KEY (tenant_id, username_key)
);

-- Who a client may name as the subject of /api/v1/token/issue: 'any', 'none' (its own id), or
-- 'match:<pattern>' ('*' matches any run of characters). Clients made before keep 'any'.
ALTER TABLE clients ADD COLUMN subject_policy TEXT NOT NULL DEFAULT 'any';

-- The roles of a user's token family (a password grant's), space-separated, carried by its
-- access tokens as the `roles` claim; NULL for a client's families.
ALTER TABLE token_families ADD COLUMN roles TEXT;
