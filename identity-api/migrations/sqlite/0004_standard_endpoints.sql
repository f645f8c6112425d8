-- The standard OAuth 2.0 endpoints (docs/OAUTH.md); identity-api/src/storage/rows.rs declares
-- the columns. /api/v1 reads neither.
--
-- grant_types: the grants the client may use at /oauth/token, space-separated
-- (client_credentials, refresh_token). A client made before, or without --grant-types, may use
-- client_credentials alone.
ALTER TABLE clients ADD COLUMN grant_types TEXT NOT NULL DEFAULT 'client_credentials';
-- may_introspect: the client may introspect the tokens of every client at /oauth/introspect,
-- not only its own (a gateway's, a resource server's).
ALTER TABLE clients ADD COLUMN may_introspect BOOLEAN NOT NULL DEFAULT FALSE;
