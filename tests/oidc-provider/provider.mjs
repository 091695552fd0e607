// A real OpenID Provider (npm `oidc-provider`, OpenID-certified) for the
// server's OIDC end-to-end tests, on 127.0.0.1 at a free port.
//
//   node provider.mjs CLIENT_ID CLIENT_SECRET REDIRECT_URI [PORT [KID]]
//
// PORT (default: a free one) lets a test restart the provider at the same
// issuer; KID (default `stele-test-key`) names its freshly made signing key,
// so a restart with another KID is a key rotation. `GET /__test/stats`
// counts the requests for its JWKS. Prints `listening on http://127.0.0.1:PORT` once ready. The login is
// scripted: the interaction logs in the account set by the test
// (`GET /__test/next?account=NAME`, default `alice`) and grants the
// requested scopes; everything else (authorization, PKCE, codes, tokens,
// ID token signing, JWKS, discovery) is oidc-provider's own code.
//
// `GET /__test/form?on=1` makes the interaction a real sign-in form instead
// (an "Account" field and a "Continue" button, posted back to the same
// interaction URL) for the web app's browser journey; `on=0` scripts it again.
//
// To test that stele refuses bad ID tokens, `GET /__test/tamper?mode=M`
// rewrites the ID token of the next token responses (until `mode=off`):
// `altered` (a claim changed, signature kept), `forged` (signed by a key
// not in the JWKS), `wrong_aud`, `wrong_nonce`, `expired`, `wrong_iss`
// (each validly signed by the provider's own key), `none` (alg none) and
// `unknown_kid` (signed by a key not in the JWKS, naming a key id it lacks).
import http from 'node:http';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK, SignJWT, decodeJwt, decodeProtectedHeader } from 'jose';

const [clientId, clientSecret, redirectUri, portArg, kidArg] = process.argv.slice(2);
if (!clientId || !clientSecret || !redirectUri) {
  console.error('usage: provider.mjs CLIENT_ID CLIENT_SECRET REDIRECT_URI');
  process.exit(2);
}

// Accounts and their groups (the groups claim stele may map to teams).
const GROUPS = {
  alice: ['ops'], // in members.toml as finance: the members file wins
  erin: ['finance', 'no-such-team'], // not in members.toml: teams from groups
  mallory: ['no-such-team'], // no team anywhere: refused
};

const kid = kidArg ?? 'stele-test-key';
const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
const attacker = (await generateKeyPair('RS256', { extractable: true })).privateKey;

let nextAccount = 'alice';
let formMode = false;
let tamper = 'off';
let jwksFetches = 0;

const server = http.createServer();
await new Promise((resolve) => server.listen(Number(portArg ?? 0), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [jwk] },
  claims: { openid: ['sub'], profile: ['preferred_username'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'groups'],
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, groups: GROUPS[id] ?? [] };
      },
    };
  },
});

async function rewrite(idToken) {
  const header = decodeProtectedHeader(idToken);
  const claims = decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  const sign = (c, key = privateKey) =>
    new SignJWT(c).setProtectedHeader({ alg: 'RS256', kid: header.kid }).sign(key);
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  switch (tamper) {
    case 'altered': {
      const [h, , s] = idToken.split('.');
      return `${h}.${b64({ ...claims, sub: 'carol', preferred_username: 'carol' })}.${s}`;
    }
    case 'forged':
      return sign({ ...claims, sub: 'carol', preferred_username: 'carol' }, attacker);
    case 'wrong_aud':
      return sign({ ...claims, aud: 'another-client' });
    case 'wrong_nonce':
      return sign({ ...claims, nonce: 'not-the-nonce-stele-sent' });
    case 'expired':
      return sign({ ...claims, iat: now - 7200, exp: now - 3600 });
    case 'wrong_iss':
      return sign({ ...claims, iss: 'http://127.0.0.1:1' });
    case 'unknown_kid':
      return new SignJWT({ ...claims, sub: 'carol', preferred_username: 'carol' })
        .setProtectedHeader({ alg: 'RS256', kid: 'a-key-nobody-published' })
        .sign(attacker);
    case 'none':
      return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    default:
      return idToken;
  }
}

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/token' && tamper !== 'off' && ctx.body && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: await rewrite(ctx.body.id_token) };
  }
});

const callback = provider.callback();
server.on('request', async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    if (url.pathname === '/__test/next') {
      nextAccount = url.searchParams.get('account') ?? 'alice';
      res.end('ok');
    } else if (url.pathname === '/__test/form') {
      formMode = url.searchParams.get('on') === '1';
      res.end('ok');
    } else if (url.pathname.startsWith('/interaction/') && formMode && req.method === 'GET') {
      // The sign-in form a person fills in (the web journey drives it).
      await provider.interactionDetails(req, res);
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test IdP sign-in</title></head>
<body><h1>Test IdP</h1><form method="post" action="${url.pathname}">
<label for="account">Account</label> <input id="account" name="account" autocomplete="username">
<button type="submit">Continue</button></form></body></html>`);
    } else if (url.pathname.startsWith('/interaction/') && formMode && req.method === 'POST') {
      const body = await new Promise((resolve) => {
        let b = '';
        req.on('data', (c) => (b += c));
        req.on('end', () => resolve(b));
      });
      const account = new URLSearchParams(body).get('account') || '';
      const details = await provider.interactionDetails(req, res);
      const grant = new provider.Grant({ accountId: account, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: account }, consent: { grantId } },
        { mergeWithLastSubmission: false },
      );
    } else if (url.pathname === '/__test/tamper') {
      tamper = url.searchParams.get('mode') ?? 'off';
      res.end('ok');
    } else if (url.pathname === '/__test/stats') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ jwks: jwksFetches }));
    } else if (url.pathname.startsWith('/interaction/')) {
      // The scripted login: the account the test chose, consenting to what was asked.
      const details = await provider.interactionDetails(req, res);
      const grant = new provider.Grant({ accountId: nextAccount, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: nextAccount }, consent: { grantId } },
        { mergeWithLastSubmission: false },
      );
    } else {
      if (url.pathname === '/jwks') jwksFetches += 1;
      callback(req, res);
    }
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
});

console.log(`listening on ${issuer}`);
