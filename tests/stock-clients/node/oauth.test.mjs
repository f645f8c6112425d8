// node openid-client v6, a stock OAuth client that no one here wrote, against the sidecar's
// standard OAuth routes over TLS. Run by tests/tests/stock_node_tls.rs, which starts the real
// identity API and the sidecar with a certificate of a test CA and sets:
//   ISSUER             the sidecar's https URL, the identity API's IDENTITY_ISSUER
//   CLIENT_ID, CLIENT_SECRET   a client created with `identity-api client create`
//   SCOPE              the client's scopes
//   NODE_EXTRA_CA_CERTS        the test CA (PEM), so that Node's fetch trusts the sidecar
// openid-client refuses plain http:// (without allowInsecureRequests), so every call is HTTPS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run through tests/tests/stock_node_tls.rs`);
  return value;
};
const issuer = new URL(env('ISSUER'));
const clientId = env('CLIENT_ID');
const clientSecret = env('CLIENT_SECRET');
const scope = env('SCOPE');

// client_secret_basic and client_secret_post, each found by discovery of its own kind.
const configurations = {
  'client_secret_basic, OpenID discovery': () =>
    client.discovery(issuer, clientId, undefined, client.ClientSecretBasic(clientSecret)),
  'client_secret_post, RFC 8414 discovery': () =>
    client.discovery(issuer, clientId, undefined, client.ClientSecretPost(clientSecret), {
      algorithm: 'oauth2',
    }),
};

for (const [name, discover] of Object.entries(configurations)) {
  test(`${name}: the whole life of a token`, async () => {
    const config = await discover();
    const metadata = config.serverMetadata();
    assert.equal(metadata.issuer, issuer.href.replace(/\/$/, ''));
    assert.equal(new URL(metadata.token_endpoint).origin, issuer.origin);
    assert.ok(metadata.grant_types_supported.includes('client_credentials'));

    const issued = await client.clientCredentialsGrant(config, { scope });
    assert.equal(issued.token_type.toLowerCase(), 'bearer');
    assert.ok(issued.access_token);
    assert.ok(issued.expiresIn() > 0);
    assert.ok(issued.refresh_token, 'the client is configured for refresh tokens');

    const active = await client.tokenIntrospection(config, issued.access_token);
    assert.equal(active.active, true);
    assert.equal(active.client_id, clientId);
    assert.equal(active.sub, clientId);
    assert.equal(active.iss, metadata.issuer);
    assert.deepEqual(active.scope.split(' ').sort(), scope.split(' ').sort());

    const refreshed = await client.refreshTokenGrant(config, issued.refresh_token);
    assert.ok(refreshed.access_token);
    assert.ok(refreshed.refresh_token);
    assert.notEqual(refreshed.refresh_token, issued.refresh_token, 'refresh tokens rotate');

    // A spent refresh token is refused with RFC 6749's invalid_grant (and revokes the family).
    await assert.rejects(client.refreshTokenGrant(config, issued.refresh_token), (error) => {
      assert.equal(error.error, 'invalid_grant');
      return true;
    });
    const afterReuse = await client.tokenIntrospection(config, refreshed.access_token);
    assert.equal(afterReuse.active, false);

    // Revocation: a fresh token, revoked, is inactive at once; revoking again is still 200.
    const fresh = await client.clientCredentialsGrant(config, { scope });
    await client.tokenRevocation(config, fresh.access_token);
    await client.tokenRevocation(config, fresh.access_token);
    const revoked = await client.tokenIntrospection(config, fresh.access_token);
    assert.equal(revoked.active, false);
  });
}

test('a wrong secret is refused with invalid_client', async () => {
  const config = await client.discovery(
    issuer,
    clientId,
    undefined,
    client.ClientSecretBasic('not-the-secret'),
  );
  // RFC 6749 section 5.2: 401 with a Basic challenge, which openid-client reports as such,
  // with the answer's invalid_client body.
  const error = await client.clientCredentialsGrant(config, { scope }).then(
    () => assert.fail('a wrong secret was accepted'),
    (error) => error,
  );
  assert.ok(error instanceof client.WWWAuthenticateChallengeError, String(error));
  assert.equal(error.status, 401);
  assert.equal(error.cause[0].scheme, 'basic');
  assert.equal(error.response.headers.get('cache-control'), 'no-store');
  const body = await error.response.json();
  assert.equal(body.error, 'invalid_client');
});
