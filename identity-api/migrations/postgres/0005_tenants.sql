-- Tenants: every client, signing key, token family, refresh token and audit event belongs to
-- one (identity-api/src/storage/rows.rs declares the columns). Rows made before tenants carry
-- tenant_id '' until the first start adopts them into the default tenant
-- (IDENTITY_DEFAULT_TENANT), once, in one transaction (storage/tenants.rs).
CREATE TABLE tenants (
    tenant_id       TEXT PRIMARY KEY NOT NULL,
    display_name    TEXT NOT NULL,
    -- NULL: IDENTITY_ISSUER, and /t/{tenant} after it for any tenant but the default.
    issuer          TEXT,
    enabled         BOOLEAN NOT NULL,
    -- The JOSE name of the algorithm its tokens are signed with: ES256, RS256 or EdDSA.
    algorithm       TEXT NOT NULL,
    -- Where its signing key comes from instead of being generated: file:<path> or
    -- aws-sm:<secret>; NULL: generated and sealed under the KEK in signing_keys.
    signing_key_ref TEXT,
    -- Token lifetimes in seconds; NULL: the server's (--access-ttl-secs and the others).
    access_ttl      BIGINT,
    refresh_ttl     BIGINT,
    family_ttl      BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

ALTER TABLE clients ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
CREATE INDEX clients_tenant ON clients (tenant_id, client_id);

-- Signing keys of every algorithm: the public key as the members of its JWK (RFC 7517), kty
-- first, in place of the P-256 point's coordinates. A key read from outside (signing_key_ref)
-- is recorded with an empty private_key_enc and kek_id, so that every replica publishes it
-- and verifies its tokens after it is replaced.
ALTER TABLE signing_keys ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE signing_keys ADD COLUMN algorithm TEXT NOT NULL DEFAULT 'ES256';
ALTER TABLE signing_keys ADD COLUMN public_jwk TEXT NOT NULL DEFAULT '';
UPDATE signing_keys SET public_jwk =
    '{"kty":"EC","crv":"P-256","x":"' || public_x || '","y":"' || public_y || '"}';
ALTER TABLE signing_keys DROP COLUMN public_x;
ALTER TABLE signing_keys DROP COLUMN public_y;
CREATE INDEX signing_keys_tenant ON signing_keys (tenant_id);

ALTER TABLE token_families ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE refresh_tokens ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_events ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
