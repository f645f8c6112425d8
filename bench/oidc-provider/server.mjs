// oidc-provider as the baseline of issue 6: client_credentials issuance and introspection,
// in-memory adapter (its default), one Node process, production mode.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 3900);
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: 'bench',
    client_secret: 'bench-secret-0123456789abcdef0123456789',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'orders.read orders.write',
  }],
  scopes: ['orders.read', 'orders.write'],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
  },
});
provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider ${port}`));
