// A real OpenID Provider for tests/oidc.rs: the certified `oidc-provider`
// package with its development login (any login name, any password), served
// over HTTPS with a certificate the test made. Prints "ready" once listening.
//
//   node provider.mjs PORT CERT KEY REDIRECT_URI CLIENT_SECRET
import Provider from 'oidc-provider';
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';

const [port, certPath, keyPath, redirectUri, clientSecret] = process.argv.slice(2);
const issuer = `https://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'edgelb',
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  claims: { openid: ['sub'], email: ['email'], profile: ['name'] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.com`, name: `User ${id}` }),
  }),
  cookies: { keys: ['edgelb-test-cookie-key'] },
  // ROTATE_KEYS=1: a signing key of its own, not the development one (the
  // test restarts the provider with it to rotate its keys).
  jwks: process.env.ROTATE_KEYS ? { keys: [rotatedKey()] } : undefined,
});
function rotatedKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
}

const server = https.createServer(
  { cert: fs.readFileSync(certPath), key: fs.readFileSync(keyPath) },
  provider.callback(),
);
server.listen(Number(port), '127.0.0.1', () => console.log('ready'));
