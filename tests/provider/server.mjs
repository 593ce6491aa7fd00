#!/usr/bin/env node
// Test OIDC provider for tokend that looks like Authentik from the outside.
//
// panva's oidc-provider does the real protocol work (authorize, devInteractions login/consent,
// code + refresh grants with rotation, sessions, RP-initiated and back-channel logout). A thin
// node:http layer in front of it gives it Authentik's URL layout and answers the parts where
// Authentik differs from oidc-provider (discovery, JWKS, introspection, revocation, userinfo of
// JWT access tokens, token shapes). /_test/* is an unauthenticated control API for tests.
// See README.md. Only stdout line: the ready JSON; everything else goes to stderr.
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import { compactVerify } from 'jose';
import Provider from 'oidc-provider';
// Internal module (the version is pinned): the default adapter gives every Provider instance its
// own 1000-entry LRU, but we rebuild the Provider on key changes and must keep sessions/grants.
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

import { createEventsApi } from './events.mjs';

// oidc-provider prints notices with console.info; stdout is reserved for the ready line.
console.log = console.info = console.error;
const log = (...args) => console.error('[provider]', ...args);

// ---------------------------------------------------------------------------------------------
// Command line
const { values: argv } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    slug: { type: 'string', default: 'tokend' },
    'client-id': { type: 'string', default: 'tokend-client' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    'post-logout-redirect-uri': { type: 'string', multiple: true },
    'public-host': { type: 'string' },
    'public-scheme': { type: 'string', default: 'http' },
    'access-ttl': { type: 'string', default: '3600' },
    'backchannel-logout-uri': { type: 'string' },
    'api-token': { type: 'string' },
    quiet: { type: 'boolean', default: false },
  },
});

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
// Authentik's generate_id()/generate_client_secret(): random [A-Za-z0-9] strings.
function randomId(length) {
  let out = '';
  while (out.length < length) {
    for (const byte of crypto.randomBytes(length)) {
      if (byte < 248 && out.length < length) out += ALNUM[byte % 62]; // 248 = 4*62: no modulo bias
    }
  }
  return out;
}

const SLUG = argv.slug;
const CLIENT_ID = argv['client-id'];
const CLIENT_SECRET = argv['client-secret'] ?? randomId(128);
// Authentik API token (default_token_length 60) for /api/v3/events/events/.
const API_TOKEN = argv['api-token'] ?? randomId(60);
const REDIRECT_URIS = argv['redirect-uri'] ?? ['http://127.0.0.1:1/callback'];
const POST_LOGOUT_URIS = argv['post-logout-redirect-uri'] ?? [];
const BACKCHANNEL_URI = argv['backchannel-logout-uri'];
const ACCESS_TTL = Number(argv['access-ttl']);
const PUBLIC_SCHEME = argv['public-scheme'];
if (!['http', 'https'].includes(PUBLIC_SCHEME)) throw new Error('--public-scheme must be http or https');
if (!/^[a-z0-9-_]+$/i.test(SLUG)) throw new Error('--slug must be [A-Za-z0-9_-]+');
if (!Number.isInteger(ACCESS_TTL) || ACCESS_TTL <= 0) throw new Error('--access-ttl must be a positive integer');

const P = '/application/o'; // everything OAuth lives under here, as in Authentik
const APP = `${P}/${SLUG}`; // per-application part (issuer, discovery, jwks, end-session)
const ACR = 'goauthentik.io/providers/oauth2/default';
const SCOPES = ['openid', 'email', 'profile', 'offline_access', 'organization'];
const RESOURCE = `urn:authentik:application:${SLUG}`; // internal default resource indicator

let PORT; // known after listen()
let PUBLIC_HOST;
let ISSUER;

// ---------------------------------------------------------------------------------------------
// Keys: two RSA keys (k1, k2) the provider can sign with, EC keys e1 (P-256, ES256), e3 (P-384,
// ES384) and e5 (P-521, ES512), and an Ed25519 key o1 (EdDSA) for /_test/sign and optional
// signing. Generated per run, never
// written anywhere.
// Keys are generated straight to JWK and re-imported. Calling KeyObject.export() on a freshly
// generated key can hang Node 20 for good: export holds the key's mutex while allocating, a GC
// then finalizes the finished KeyGenJob, whose destructor takes the same mutex (seen ~1 start in
// 40-150 here, main thread in ~KeyGenJob -> uv_mutex_lock under ExportJWK).
const EC_ALGS = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' };
function makeKey(kid, kind, curve = 'P-256') {
  const { publicKey: pub, privateKey: jwk } = crypto.generateKeyPairSync(kind, {
    ...(kind === 'rsa' ? { modulusLength: 2048 } : {}),
    ...(kind === 'ec' ? { namedCurve: curve } : {}),
    publicKeyEncoding: { format: 'jwk' },
    privateKeyEncoding: { format: 'jwk' },
  });
  const alg = { rsa: 'RS256', ec: EC_ALGS[curve], ed25519: 'EdDSA' }[kind];
  return {
    kid, alg,
    privateKey: crypto.createPrivateKey({ key: jwk, format: 'jwk' }),
    publicKey: crypto.createPublicKey({ key: pub, format: 'jwk' }),
    privateJwk: { ...jwk, kid, alg, use: 'sig' },
    publicJwk: { kty: pub.kty, alg, kid, use: 'sig', ...pub },
  };
}
const KEYS = {
  k1: makeKey('k1', 'rsa'), k2: makeKey('k2', 'rsa'),
  e1: makeKey('e1', 'ec', 'P-256'), e3: makeKey('e3', 'ec', 'P-384'), e5: makeKey('e5', 'ec', 'P-521'),
  o1: makeKey('o1', 'ed25519'),
};

// Authentik publishes each key's certificate: x5c (standard base64 DER), x5t (SHA-1) and
// x5t#S256 (SHA-256, both base64url). Every key gets a self-signed X.509 v3 certificate, built
// here in DER by hand (no extra npm package; SubjectPublicKeyInfo from the JWK, so no
// KeyObject.export is needed — see above).
const der = {
  tlv(tag, ...parts) {
    const body = Buffer.concat(parts);
    let len;
    if (body.length < 0x80) len = Buffer.from([body.length]);
    else {
      const bytes = [];
      for (let n = body.length; n > 0; n >>= 8) bytes.unshift(n & 0xff);
      len = Buffer.from([0x80 | bytes.length, ...bytes]);
    }
    return Buffer.concat([Buffer.from([tag]), len, body]);
  },
  seq: (...parts) => der.tlv(0x30, ...parts),
  int(buf) {
    let i = 0;
    while (i < buf.length - 1 && buf[i] === 0) i += 1;
    const v = buf.subarray(i);
    return der.tlv(0x02, v[0] & 0x80 ? Buffer.from([0]) : Buffer.alloc(0), v);
  },
  oid(dotted) {
    const [a, b, ...rest] = dotted.split('.').map(Number);
    const out = [40 * a + b];
    for (const n of rest) {
      const groups = [n & 0x7f];
      for (let m = n >>> 7; m > 0; m >>>= 7) groups.unshift(0x80 | (m & 0x7f));
      out.push(...groups);
    }
    return der.tlv(0x06, Buffer.from(out));
  },
  null: () => Buffer.from([0x05, 0x00]),
  bits: (buf) => der.tlv(0x03, Buffer.from([0]), buf),
  utf8: (text) => der.tlv(0x0c, Buffer.from(text)),
  time: (date) => der.tlv(0x17, Buffer.from(`${date.toISOString().replace(/[-:T]/g, '').slice(2, 14)}Z`)),
  name: (cn) => der.seq(der.tlv(0x31, der.seq(der.oid('2.5.4.3'), der.utf8(cn)))),
};
const CURVE_OIDS = { 'P-256': '1.2.840.10045.3.1.7', 'P-384': '1.3.132.0.34', 'P-521': '1.3.132.0.35' };
const EC_SIG_OIDS = { ES256: '1.2.840.10045.4.3.2', ES384: '1.2.840.10045.4.3.3', ES512: '1.2.840.10045.4.3.4' };
function selfSignedCertificate(key) {
  const jwk = key.publicJwk;
  const raw = (x) => Buffer.from(x, 'base64url');
  const rsa = jwk.kty === 'RSA';
  const okp = jwk.kty === 'OKP'; // Ed25519: id-Ed25519 is both the key and the signature OID
  let spki;
  if (rsa) {
    spki = der.seq(der.seq(der.oid('1.2.840.113549.1.1.1'), der.null()),
      der.bits(der.seq(der.int(raw(jwk.n)), der.int(raw(jwk.e)))));
  } else if (okp) {
    spki = der.seq(der.seq(der.oid('1.3.101.112')), der.bits(raw(jwk.x)));
  } else {
    spki = der.seq(der.seq(der.oid('1.2.840.10045.2.1'), der.oid(CURVE_OIDS[jwk.crv])),
      der.bits(Buffer.concat([Buffer.from([4]), raw(jwk.x), raw(jwk.y)])));
  }
  let sigAlg;
  if (rsa) sigAlg = der.seq(der.oid('1.2.840.113549.1.1.11'), der.null());
  else if (okp) sigAlg = der.seq(der.oid('1.3.101.112'));
  else sigAlg = der.seq(der.oid(EC_SIG_OIDS[key.alg]));
  const now = Date.now();
  const subject = der.name(`tokend test provider ${key.kid}`);
  const tbs = der.seq(
    der.tlv(0xa0, der.int(Buffer.from([2]))), // v3
    der.int(crypto.randomBytes(16)),
    sigAlg, subject,
    der.seq(der.time(new Date(now - 86400e3)), der.time(new Date(now + 365 * 86400e3))),
    subject, spki,
  );
  let digest = `sha${key.alg.slice(2)}`; // DER ECDSA
  if (rsa) digest = 'sha256';
  else if (okp) digest = null;
  const sig = crypto.sign(digest, tbs, key.privateKey);
  return der.seq(tbs, sigAlg, der.bits(sig));
}
for (const key of Object.values(KEYS)) {
  const cert = selfSignedCertificate(key);
  Object.assign(key.publicJwk, {
    x5c: [cert.toString('base64')],
    x5t: crypto.createHash('sha1').update(cert).digest('base64url'),
    'x5t#S256': crypto.createHash('sha256').update(cert).digest('base64url'),
  });
}
const KEY_NAMES = Object.keys(KEYS).join(', ');
const state = {
  signing: 'k1', published: ['k1', 'k2'], jwksMode: 'normal', jwksStripAlg: false, tokenDelayMs: 0,
  dateSkewS: 0, // seconds added to the Date header of every answer (a provider whose clock is off)
  // Client authentication methods accepted at the token, revocation and introspection endpoints.
  // Authentik accepts both; we accept only what tokend uses, so a regression to another fails.
  clientAuth: ['client_secret_basic'],
  badIdToken: undefined, // 'wrong_nonce' | 'wrong_audience' | 'access_wrong_audience': the next code exchange's ID (or access) token
};
const COOKIE_KEY = crypto.randomBytes(32).toString('hex');

function freshStats() {
  return {
    jwks_requests: 0, discovery_requests: 0, token_requests: 0, refresh_grants: 0,
    authorization_code_grants: 0, revocations: 0, revocation_requests: 0, client_auth_failures: 0,
    hosts_seen: [], seen: {},
    // /api/v3/events/events/: every request, the pages answered 200 (in order), and requests
    // with a Bearer token other than the API token.
    events_requests: 0, events_pages: [], events_bad_tokens: 0,
  };
}
let stats = freshStats();
const seeHost = (host) => { if (!stats.hosts_seen.includes(host)) stats.hosts_seen.push(host); };
// Per endpoint, the distinct (User-Agent, Host, X-Forwarded-Proto, X-Forwarded-Host) of the
// requests it got: tokend's own (User-Agent tokend/…) can be told from the tests' and ours.
function seeRequest(endpoint, req) {
  const entry = {
    user_agent: req.headers['user-agent'] ?? null,
    host: req.headers.host ?? null,
    x_forwarded_proto: req.headers['x-forwarded-proto'] ?? null,
    x_forwarded_host: req.headers['x-forwarded-host'] ?? null,
  };
  const list = (stats.seen[endpoint] ??= []);
  if (!list.some((e) => JSON.stringify(e) === JSON.stringify(entry))) list.push(entry);
}
const backchannelLog = []; // results of back-channel logout deliveries, newest last

// ---------------------------------------------------------------------------------------------
// Accounts and Authentik's default scope mappings.
const ACCOUNTS = {
  alice: { email: 'alice@example.com', name: 'Alice Admin', groups: ['ecosire-admins'], organizationId: 'org-1' },
  bob: { email: 'bob@example.com', name: 'Bob Support', groups: ['ecosire-support', 'staff'], organizationId: 'org-2' },
  carol: { email: 'carol@example.com', name: 'Carol', groups: [] },
};
function scopedClaims(login, scope) {
  const user = ACCOUNTS[login] ?? { email: `${login}@example.com`, name: login, groups: [] };
  const scopes = new Set(String(scope ?? '').split(' '));
  const out = {};
  // Authentik 2025.10+ sends email_verified: false from its default email mapping.
  if (scopes.has('email')) Object.assign(out, { email: user.email, email_verified: false });
  if (scopes.has('profile')) Object.assign(out, { name: user.name, preferred_username: login, groups: [...user.groups] });
  if (scopes.has('organization') && user.organizationId) out.organizationId = user.organizationId;
  return out;
}

// ---------------------------------------------------------------------------------------------
// JWS helpers. Signing is done by hand (not jose) so /_test/sign can produce any header, alg
// none, or a key/alg mismatch a test asks for.
const b64 = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');
const decodePart = (token, i) => JSON.parse(Buffer.from(token.split('.')[i], 'base64url').toString());

function signJws(header, payload, alg, key) {
  const input = `${b64(header)}.${b64(payload)}`;
  const data = Buffer.from(input);
  const need = (type) => {
    if (key?.asymmetricKeyType !== type) throw new HttpError(400, `alg ${alg} needs a ${type} key`);
  };
  let sig;
  switch (alg) {
    case 'none': sig = Buffer.alloc(0); break;
    case 'HS256': sig = crypto.createHmac('sha256', Buffer.from(CLIENT_SECRET, 'utf8')).update(data).digest(); break;
    case 'RS256': case 'RS384': case 'RS512':
      need('rsa'); sig = crypto.sign(`sha${alg.slice(2)}`, data, key); break;
    case 'PS256': case 'PS384': case 'PS512': {
      need('rsa');
      const bits = Number(alg.slice(2));
      sig = crypto.sign(`sha${bits}`, data, { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: bits / 8 });
      break;
    }
    case 'ES256': case 'ES384': case 'ES512':
      need('ec'); sig = crypto.sign(`sha${alg.slice(2)}`, data, { key, dsaEncoding: 'ieee-p1363' }); break;
    case 'EdDSA':
      need('ed25519'); sig = crypto.sign(null, data, key); break;
    default: throw new HttpError(400, `unsupported alg ${alg}`);
  }
  return `${input}.${sig.toString('base64url')}`;
}

// Sign with the key currently selected by /_test/keys, header as Authentik writes it.
function signCurrent(payload) {
  const key = KEYS[state.signing];
  return signJws({ alg: key.alg, kid: key.kid, typ: 'JWT' }, payload, key.alg, key.privateKey);
}

// ---------------------------------------------------------------------------------------------
// JWT access tokens. oidc-provider does not store JWT access tokens and refuses to introspect or
// revoke them; Authentik stores them and does both. So we keep our own registry (jti -> claims)
// and serve /introspect/, /revoke/ and /userinfo/ ourselves.
const accessTokens = new Map();

async function customizeAccessToken(ctx, token, jwt) {
  const src = ctx?.oidc?.entities ?? {};
  const grantSource = src.AuthorizationCode ?? src.RotatedRefreshToken ?? src.RefreshToken;
  const { jti, iat, exp, scope } = jwt.payload;
  // A refresh after the browser session ended (logout, end-session) mints tokens that are no
  // longer tied to it: Authentik's refresh token outlives the session (FK SET_DEFAULT), and the
  // new tokens carry no sid (authentik.md §3.5-3.6).
  const session = token.sessionUid && await ctx?.oidc?.provider.Session.findByUid(token.sessionUid);
  const live = session?.authorizations?.[CLIENT_ID]?.sid === token.sid;
  jwt.header = { typ: 'JWT' }; // Authentik: typ JWT (oidc-provider default is at+jwt)
  // Authentik's claim order: ID-token fields, then scope-mapping claims, then azp/uid/scope.
  // No client_id, no nbf.
  jwt.payload = {
    iss: ISSUER,
    sub: token.accountId,
    aud: CLIENT_ID, // plain string
    exp,
    iat,
    auth_time: grantSource?.authTime,
    acr: ACR,
    nonce: grantSource?.nonce,
    sid: live ? token.sid : undefined,
    jti,
    ...scopedClaims(token.accountId, scope),
    azp: CLIENT_ID,
    uid: randomId(40),
    scope,
  };
  // Tokens refreshed after the browser session ended are no longer tied to it (Authentik: the
  // refresh token's session is gone, the new access token lives until exp).
  accessTokens.set(jti, { claims: jwt.payload, grantId: token.grantId, sessionUid: live ? token.sessionUid : undefined });
}

// Authentik deletes a browser session's access tokens when the session ends (logout). The
// oidc-provider session is looked up by uid; it must still hold this client's login (same sid).
async function sessionAlive({ sessionUid, claims }) {
  if (!sessionUid) return true;
  const session = await provider.Session.findByUid(sessionUid);
  return session?.authorizations?.[CLIENT_ID]?.sid === claims.sid;
}

// Returns the registered claims of a live access token, or undefined.
async function findAccessToken(value) {
  try {
    const { payload } = await compactVerify(value, (header) => {
      const key = KEYS[header.kid];
      if (!key) throw new Error('unknown kid');
      return key.publicKey;
    });
    const { jti } = JSON.parse(Buffer.from(payload).toString());
    const entry = accessTokens.get(jti);
    if (!entry) return undefined;
    if (entry.claims.exp <= Math.floor(Date.now() / 1000) || !await sessionAlive(entry)) {
      accessTokens.delete(jti);
      return undefined;
    }
    return { jti, ...entry };
  } catch {
    return undefined;
  }
}

async function findRefreshToken(value) {
  if (!value || value.includes('.')) return undefined;
  const rt = await provider.RefreshToken.find(value);
  if (!rt || rt.consumed || rt.clientId !== CLIENT_ID) return undefined;
  return rt;
}

// The client authentication method a request uses (RFC 6749 2.3.1 / OIDC Core 9).
function authMethod(req, form) {
  if (/^Basic\s/i.test(req.headers.authorization ?? '')) return 'client_secret_basic';
  if (form.has('client_secret')) return 'client_secret_post';
  return 'none';
}

// Authentik accepts client_secret_basic and client_secret_post; we accept what /_test/client-auth
// allows (start: client_secret_basic only, what tokend sends). A refused method counts in
// client_auth_failures, like bad credentials.
function clientAuthenticated(req, form) {
  const ok = state.clientAuth.includes(authMethod(req, form)) && credentialsMatch(req, form);
  if (!ok) stats.client_auth_failures += 1;
  return ok;
}
function credentialsMatch(req, form) {
  const basic = /^Basic\s+(.+)$/i.exec(req.headers.authorization ?? '');
  let id = form.get('client_id');
  let secret = form.get('client_secret');
  if (basic) {
    const raw = Buffer.from(basic[1], 'base64').toString();
    const i = raw.indexOf(':');
    const dec = (s) => decodeURIComponent(s.replace(/\+/g, ' '));
    try { [id, secret] = [dec(raw.slice(0, i)), dec(raw.slice(i + 1))]; } catch { return false; }
  }
  return safeEqual(id, CLIENT_ID) && safeEqual(secret, CLIENT_SECRET);
}
function safeEqual(a, b) {
  if (typeof a !== 'string') return false;
  const [x, y] = [Buffer.from(a), Buffer.from(b)];
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

// ---------------------------------------------------------------------------------------------
// oidc-provider instance. Rebuilt by /_test/keys so ID and logout tokens use the new key; the
// shared store keeps sessions, grants, codes and refresh tokens across rebuilds.
class Store { // unbounded Map with the LRU's get/set(maxAge)/delete interface
  #map = new Map();

  get(key) {
    const entry = this.#map.get(key);
    if (entry && entry.expires && entry.expires <= Date.now()) {
      this.#map.delete(key);
      return undefined;
    }
    return entry?.value;
  }

  set(key, value, options) {
    this.#map.set(key, { value, expires: options?.maxAge ? Date.now() + options.maxAge : 0 });
  }

  delete(key) { this.#map.delete(key); }
}
const store = new Store();
const adapter = (model) => new MemoryAdapter(model, store);

let provider;
let providerHandler;

function buildProvider() {
  const key = KEYS[state.signing];
  const order = [state.signing, ...Object.keys(KEYS).filter((k) => k !== state.signing)];
  const p = new Provider(ISSUER, {
    adapter,
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: REDIRECT_URIS,
      post_logout_redirect_uris: POST_LOGOUT_URIS,
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'client_secret_basic', // client_secret_post is converted below
      id_token_signed_response_alg: key.alg,
      ...(BACKCHANNEL_URI
        ? { backchannel_logout_uri: BACKCHANNEL_URI, backchannel_logout_session_required: true } : {}),
    }],
    jwks: { keys: order.map((k) => KEYS[k].privateJwk) }, // first key of an alg signs
    cookies: { keys: [COOKIE_KEY] },
    findAccount: (ctx, id) => ({
      accountId: id,
      claims: () => ({ sub: id, ...scopedClaims(id, SCOPES.join(' ')) }), // masked by scope later
    }),
    scopes: SCOPES,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'groups'],
      organization: ['organizationId'],
    },
    conformIdTokenClaims: false, // Authentik's include_claims_in_id_token (default on)
    rotateRefreshToken: true,
    responseTypes: ['code'],
    pkce: { required: () => true }, // v9 supports S256 only
    ttl: {
      AccessToken: ACCESS_TTL, IdToken: ACCESS_TTL, AuthorizationCode: 60,
      RefreshToken: 30 * 86400, Grant: 30 * 86400, Session: 14 * 86400, Interaction: 3600,
    },
    routes: {
      authorization: `/authorize/`,
      token: `/token/`,
      userinfo: `/userinfo/`,
      revocation: `/revoke/`,
      introspection: `/introspect/`,
      jwks: `/${SLUG}/jwks/`,
      end_session: `/${SLUG}/end-session/`,
    },
    // Back-channel logout goes to loopback; oidc-provider's SSRF guard would block that.
    fetch: (url, options) => {
      delete options.dispatcher;
      return globalThis.fetch(url, options);
    },
    features: {
      devInteractions: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      claimsParameter: { enabled: false },
      resourceIndicators: {
        enabled: true,
        // Clients don't send `resource` to Authentik; always apply ours so tokens are JWTs.
        defaultResource: (ctx, client, oneOf) => oneOf ?? RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: SCOPES.join(' '), // so the JWT's scope claim lists the OIDC scopes
          audience: CLIENT_ID,
          accessTokenTTL: ACCESS_TTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: KEYS[state.signing].alg, kid: state.signing } },
        }),
      },
    },
    formats: {
      customizers: { jwt: customizeAccessToken },
      // Authentik refresh tokens are 128 characters long (768 bits / 6 bits per character).
      bitsOfOpaqueRandomness: (ctx, token) => (token.kind === 'RefreshToken' ? 768 : 256),
    },
  });

  // oidc-provider only puts `sid` in tokens for clients registered for session-aware logout;
  // Authentik always does when there is a browser session.
  p.Client.prototype.includeSid = () => true;
  p.use(shapeResponses);
  p.on('grant.revoked', (ctx, grantId) => { // logout / revocation: the grant's ATs die
    for (const [jti, entry] of accessTokens) if (entry.grantId === grantId) accessTokens.delete(jti);
  });
  p.on('backchannel.success', (ctx, client, sub, sid) => backchannelLog.push({ ok: true, sub, sid }));
  p.on('backchannel.error', (ctx, err, client, sub, sid) => {
    log('back-channel logout failed:', err.message);
    backchannelLog.push({ ok: false, sub, sid, error: err.message });
  });
  p.on('server_error', (ctx, err) => log('server_error', err));
  for (const ev of ['grant.error', 'authorization.error', 'end_session.error']) {
    p.on(ev, (ctx, err) => log(ev, err.message, err.error_description ?? ''));
  }
  p.proxy = true; // koa: honour X-Forwarded-Proto/Host (https public origin, http listener)
  provider = p;
  providerHandler = p.callback();
}

// Koa middleware inside oidc-provider: adjust what it answers to match Authentik.
async function shapeResponses(ctx, next) {
  await next();
  // Authentik's authorization response carries no RFC 9207 `iss` parameter.
  const location = ctx.response.get('Location');
  if (ctx.status >= 300 && ctx.status < 400 && location) {
    const target = new URL(location, ctx.href);
    if (target.origin !== ctx.origin && target.searchParams.has('iss')) {
      target.searchParams.delete('iss');
      ctx.set('Location', target.href);
    }
  }
  // Token responses: the ID token is re-issued in Authentik's shape (typ JWT, acr, and the same
  // jti and exp as the access token from the same grant). Same key, so it stays verifiable.
  if (ctx._matchedRouteName === 'token' && ctx.status === 200 && ctx.body?.id_token) {
    const at = ctx.body.access_token ? decodePart(ctx.body.access_token, 1) : {};
    // acr and at_hash are dropped from `claims` (acr is set below; Authentik's code-flow ID token
    // has no at_hash).
    const {
      iss, sub, aud, exp, iat, auth_time: authTime, acr, amr, nonce, sid, jti, at_hash: atHash, ...claims
    } = decodePart(ctx.body.id_token, 1);
    const shaped = {
      iss, sub, aud, exp: at.exp ?? exp, iat, auth_time: authTime ?? at.auth_time, acr: ACR, amr, nonce,
      // After the browser session ended, a refresh mints tokens without sid (like the access token).
      sid: ctx.body.access_token ? at.sid : sid, jti: at.jti ?? jti, ...claims,
    };
    // /_test/bad-id-token: spoil the next code exchange's ID token (still validly signed).
    if (state.badIdToken && ctx.oidc?.params?.grant_type === 'authorization_code') {
      if (state.badIdToken === 'wrong_nonce') shaped.nonce = `${nonce ?? ''}-not-the-one-sent`;
      if (state.badIdToken === 'wrong_audience') shaped.aud = 'some-other-client';
      // The ID token stays good; the access token is for another client.
      if (state.badIdToken === 'access_wrong_audience') {
        ctx.body.access_token = signCurrent({ ...at, aud: 'some-other-client' });
      }
      log(`bad token served: ${state.badIdToken}`);
      state.badIdToken = undefined;
    }
    ctx.body.id_token = signCurrent(shaped);
  }
}

// ---------------------------------------------------------------------------------------------
// Authentik-only endpoints served by the wrapper.
// The origin a request was made for, as Authentik computes it behind a trusted proxy:
// X-Forwarded-Proto and X-Forwarded-Host (first value) when present, else http and Host. This
// provider listens on loopback only, so every peer counts as trusted (Authentik 2026.8 honours
// them only from AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS).
function requestOrigin(req) {
  const first = (h) => (req.headers[h] ?? '').split(',')[0].trim();
  const proto = first('x-forwarded-proto') || 'http';
  const host = first('x-forwarded-host') || req.headers.host || PUBLIC_HOST;
  return `${proto}://${host}`;
}

function discoveryDocument(base) {
  // Authentik computes every URL from the request (see requestOrigin).
  return {
    issuer: `${base}${APP}/`,
    authorization_endpoint: `${base}${P}/authorize/`,
    token_endpoint: `${base}${P}/token/`,
    userinfo_endpoint: `${base}${P}/userinfo/`,
    end_session_endpoint: `${base}${APP}/end-session/`,
    introspection_endpoint: `${base}${P}/introspect/`,
    revocation_endpoint: `${base}${P}/revoke/`,
    backchannel_logout_supported: true,
    backchannel_logout_session_supported: true,
    response_types_supported: ['code'],
    response_modes_supported: ['query', 'fragment', 'form_post'],
    jwks_uri: `${base}${APP}/jwks/`,
    grant_types_supported: ['authorization_code', 'refresh_token'],
    id_token_signing_alg_values_supported: [KEYS[state.signing].alg],
    subject_types_supported: ['public'],
    token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'],
    acr_values_supported: [ACR],
    scopes_supported: SCOPES,
    request_parameter_supported: false,
    claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'auth_time', 'acr', 'amr', 'nonce', 'email',
      'email_verified', 'name', 'preferred_username', 'groups', 'organizationId'],
    claims_parameter_supported: false,
    code_challenge_methods_supported: ['S256'],
  };
}

function serveJwks(res) {
  if (state.jwksMode === 'fail') return sendJson(res, 503, { error: 'jwks unavailable (test mode)' });
  if (state.jwksMode === 'empty') return sendJson(res, 200, {}, { 'access-control-allow-origin': '*' });
  const keys = state.published.map((kid) => {
    if (!state.jwksStripAlg) return KEYS[kid].publicJwk;
    const { alg, ...withoutAlg } = KEYS[kid].publicJwk; // eslint-disable-line no-unused-vars
    return withoutAlg;
  });
  return sendJson(res, 200, { keys }, { 'access-control-allow-origin': '*' });
}

async function introspect(req, res) {
  const form = new URLSearchParams((await readBody(req)).toString());
  // Authentik answers every failure, bad client credentials included, with 200 {active:false}.
  if (!clientAuthenticated(req, form)) return sendJson(res, 200, { active: false });
  const token = form.get('token') ?? '';
  const at = await findAccessToken(token);
  if (at) {
    const { azp, uid, scope, ...idTokenClaims } = at.claims;
    return sendJson(res, 200, { ...idTokenClaims, active: true, scope, client_id: CLIENT_ID });
  }
  const rt = await findRefreshToken(token);
  if (rt) {
    return sendJson(res, 200, {
      iss: ISSUER, sub: rt.accountId, aud: CLIENT_ID, exp: rt.exp, iat: rt.iat, auth_time: rt.authTime,
      acr: ACR, nonce: rt.nonce, sid: rt.sid, ...scopedClaims(rt.accountId, rt.scope),
      active: true, scope: rt.scope, client_id: CLIENT_ID,
    });
  }
  return sendJson(res, 200, { active: false });
}

// Authentik deletes just that token; oidc-provider would revoke the whole grant.
// `revocations` counts only authenticated, answered-200 calls; `revocation_requests` all.
async function revoke(req, res) {
  stats.revocation_requests += 1;
  const form = new URLSearchParams((await readBody(req)).toString());
  if (!clientAuthenticated(req, form)) {
    return sendJson(res, 401, { error: 'invalid_client', error_description: 'Client authentication failed' });
  }
  const token = form.get('token') ?? '';
  const at = await findAccessToken(token);
  if (at) accessTokens.delete(at.jti);
  else await (await findRefreshToken(token))?.destroy();
  stats.revocations += 1;
  return sendJson(res, 200, {});
}

async function userinfo(req, res) {
  const form = req.method === 'POST' ? new URLSearchParams((await readBody(req)).toString()) : new URLSearchParams();
  const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? form.get('access_token');
  const at = bearer && await findAccessToken(bearer);
  if (!at) {
    return sendJson(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
  }
  if (!at.claims.scope.split(' ').includes('openid')) {
    return sendJson(res, 403, { error: 'insufficient_scope' }, { 'www-authenticate': 'Bearer error="insufficient_scope"' });
  }
  return sendJson(res, 200, { sub: at.claims.sub, ...scopedClaims(at.claims.sub, at.claims.scope) });
}

// Token endpoint pre-processing: count, accept client_secret_post, and refuse a rotated-out
// refresh token the Authentik way (invalid_grant only; oidc-provider would also revoke the
// whole grant, killing the new refresh token too).
async function prepareTokenRequest(req, res) {
  stats.token_requests += 1;
  const form = new URLSearchParams((await readBody(req)).toString());
  const grantType = form.get('grant_type');
  if (grantType === 'refresh_token') stats.refresh_grants += 1;
  if (grantType === 'authorization_code') stats.authorization_code_grants += 1;
  if (!state.clientAuth.includes(authMethod(req, form))) {
    stats.client_auth_failures += 1;
    sendJson(res, 401, { error: 'invalid_client', error_description: `client authentication method ${authMethod(req, form)} not allowed` },
      { 'cache-control': 'no-store', pragma: 'no-cache' });
    return false;
  }
  if (!req.headers.authorization && form.has('client_secret')) {
    const enc = (s) => encodeURIComponent(s ?? '');
    req.headers.authorization = `Basic ${Buffer.from(`${enc(form.get('client_id'))}:${enc(form.get('client_secret'))}`).toString('base64')}`;
    form.delete('client_id');
    form.delete('client_secret');
  }
  if (grantType === 'refresh_token' && clientAuthenticated(req, form)) {
    const value = form.get('refresh_token');
    const rt = value && !value.includes('.')
      ? await provider.RefreshToken.find(value, { ignoreExpiration: true }) : undefined;
    if (rt?.consumed) {
      sendJson(res, 400, { error: 'invalid_grant', error_description: 'Revoked refresh token was used' },
        { 'cache-control': 'no-store', pragma: 'no-cache' });
      return false;
    }
  }
  req.body = Buffer.from(form.toString()); // oidc-provider uses a pre-read body
  req.headers['content-length'] = String(req.body.length);
  return true;
}

// ---------------------------------------------------------------------------------------------
// A tiny browser: cookie jar + redirects + devInteractions forms, talking HTTP to ourselves.
class Jar {
  cookies = new Map();

  header() { return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '); }

  update(setCookie = []) {
    for (const line of setCookie) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const expired = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)
        || (/^\s*expires=/i.test(a) && Date.parse(a.split('=')[1]) < Date.now()));
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, pair.slice(eq + 1).trim());
    }
  }
}
const namedJars = new Map();
function jarFor(name) {
  if (name === undefined) return new Jar();
  if (!namedJars.has(name)) namedJars.set(name, new Jar());
  return namedJars.get(name);
}

function isOurs(url) {
  if (!url.pathname.startsWith(`${P}/`)) return false;
  if (url.protocol === `${PUBLIC_SCHEME}:` && url.host === PUBLIC_HOST) return true;
  return url.protocol === 'http:' && [PUBLIC_HOST, `127.0.0.1:${PORT}`, `localhost:${PORT}`].includes(url.host);
}
const PUBLIC_ORIGIN = () => `${PUBLIC_SCHEME}://${PUBLIC_HOST}`;

// Every self-request goes to our socket; the URL's host becomes the Host header, and an https
// URL is sent as a TLS-terminating proxy would (X-Forwarded-Proto: https).
function selfRequest(method, href, { jar, headers = {}, body } = {}) {
  const url = new URL(href);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port: PORT, method, path: url.pathname + url.search,
      headers: {
        host: url.host, 'user-agent': 'tokend-test-provider',
        ...(url.protocol === 'https:' ? { 'x-forwarded-proto': 'https' } : {}),
        ...(jar?.cookies.size ? { cookie: jar.header() } : {}), ...headers,
        ...(body ? { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } : {}),
      },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        jar?.update(res.headers['set-cookie']);
        resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const unescapeHtml = (s) => s.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;|&#x27;/g, "'")
  .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#x2F;|&#47;/g, '/');
function parseForm(html) {
  const form = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return undefined;
  const attr = (tag, name) => {
    const m = new RegExp(`\\b${name}="([^"]*)"`, 'i').exec(tag);
    return m ? unescapeHtml(m[1]) : undefined;
  };
  const fields = {};
  for (const [input] of form[2].matchAll(/<input\b[^>]*>/gi)) {
    if (attr(input, 'type') === 'hidden' && attr(input, 'name')) fields[attr(input, 'name')] = attr(input, 'value') ?? '';
  }
  return { action: attr(form[1], 'action'), fields };
}

// Follow the provider's redirects and forms until it sends the browser elsewhere.
async function browse(startUrl, user, jar) {
  let href = startUrl;
  let method = 'GET';
  let body;
  for (let step = 0; step < 30; step += 1) {
    if (!isOurs(new URL(href))) return { location: href };
    const res = await selfRequest(method, href, { jar, body });
    if (res.status >= 300 && res.status < 400 && res.headers.location) {
      href = new URL(res.headers.location, href).href;
      [method, body] = ['GET', undefined];
      continue;
    }
    const form = res.status === 200 && parseForm(res.text);
    if (form?.action && ['login', 'consent'].includes(form.fields.prompt)) {
      const fields = form.fields.prompt === 'login' ? { ...form.fields, login: user, password: 'test' } : form.fields;
      href = new URL(form.action, href).href;
      [method, body] = ['POST', new URLSearchParams(fields).toString()];
      continue;
    }
    return { error: 'provider did not redirect away', status: res.status, body: res.text.slice(0, 2000) };
  }
  return { error: 'too many redirects', status: 508, body: '' };
}

const basicAuth = () => `Basic ${Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64')}`;
const tokenEndpoint = () => `${PUBLIC_ORIGIN()}${P}/token/`;

// ---------------------------------------------------------------------------------------------
// /_test control API
class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
const eventsApi = createEventsApi({
  emailOf: (user) => ACCOUNTS[user]?.email, apiToken: API_TOKEN, sendJson, HttpError, stats: () => stats,
});
const requireString = (v, name) => {
  if (typeof v !== 'string' || !v) throw new HttpError(400, `${name} (string) is required`);
  return v;
};

const control = {
  'GET /_test/stats': () => stats,
  'POST /_test/stats/reset': () => { stats = freshStats(); return stats; },
  'GET /_test/keys': () => ({ signing: state.signing, published: state.published }),
  'POST /_test/keys': ({ body }) => {
    const { signing = state.signing, published = state.published } = body;
    if (!KEYS[signing]) throw new HttpError(400, `signing must be one of ${KEY_NAMES}`);
    if (!Array.isArray(published) || published.some((k) => !KEYS[k])) throw new HttpError(400, `published must be an array of ${KEY_NAMES}`);
    Object.assign(state, { signing, published: [...new Set(published)] });
    buildProvider();
    log(`keys: signing=${signing} published=${state.published.join(',')}`);
    return { signing: state.signing, published: state.published };
  },
  'POST /_test/jwks-mode': ({ body }) => {
    if (!['normal', 'fail', 'empty'].includes(body.mode)) throw new HttpError(400, 'mode must be normal, fail or empty');
    state.jwksMode = body.mode;
    return { mode: state.jwksMode };
  },
  'POST /_test/token-delay': ({ body }) => {
    const ms = Number(body.ms);
    if (!Number.isInteger(ms) || ms < 0 || ms > 60000) throw new HttpError(400, 'ms must be an integer 0..60000');
    state.tokenDelayMs = ms;
    return { ms };
  },
  'POST /_test/date-skew': ({ body }) => {
    const seconds = Number(body.seconds);
    if (!Number.isInteger(seconds) || Math.abs(seconds) > 366 * 86400) throw new HttpError(400, 'seconds must be an integer within a year');
    state.dateSkewS = seconds;
    return { seconds };
  },
  'GET /_test/client-auth': () => ({ methods: state.clientAuth }),
  'POST /_test/client-auth': ({ body }) => {
    const all = ['client_secret_basic', 'client_secret_post'];
    const { methods } = body;
    if (!Array.isArray(methods) || !methods.length || methods.some((m) => !all.includes(m))) {
      throw new HttpError(400, `methods must be a non-empty array of ${all.join(', ')}`);
    }
    state.clientAuth = [...new Set(methods)];
    return { methods: state.clientAuth };
  },
  'POST /_test/bad-id-token': ({ body }) => {
    const kinds = ['wrong_nonce', 'wrong_audience', 'access_wrong_audience', 'none'];
    if (!kinds.includes(body.kind)) throw new HttpError(400, `kind must be one of ${kinds.join(', ')}`);
    state.badIdToken = body.kind === 'none' ? undefined : body.kind;
    return { kind: body.kind };
  },
  'POST /_test/jwks-strip-alg': ({ body }) => {
    if (typeof body.strip !== 'boolean') throw new HttpError(400, 'strip must be true or false');
    state.jwksStripAlg = body.strip;
    return { strip: state.jwksStripAlg };
  },
  'POST /_test/sign': ({ body }) => {
    const { kid, alg = KEYS[kid]?.alg ?? 'RS256', header = {}, payload = {} } = body;
    if (alg !== 'HS256' && alg !== 'none' && !KEYS[kid]) throw new HttpError(400, `kid must be one of ${KEY_NAMES}`);
    // HS256 (Authentik without a signing key) has no kid member at all: the kid argument is
    // ignored and a `"kid": null` override is dropped, never written (only a string kid in
    // `header` adds one). Other null members are written as given (e.g. `"crit": null`).
    const defaults = { alg, ...(kid !== undefined && alg !== 'HS256' ? { kid } : {}), typ: 'JWT' };
    const merged = { ...defaults, ...header };
    if (alg === 'HS256' && merged.kid === null) delete merged.kid;
    // `count` (bench/run): that many tokens, each with a fresh random `jti`, as `{tokens}`.
    if (body.count !== undefined) {
      if (!Number.isInteger(body.count) || body.count < 1 || body.count > 200000) throw new HttpError(400, 'count must be 1..200000');
      const tokens = [];
      for (let i = 0; i < body.count; i++) tokens.push(signJws(merged, { ...payload, jti: randomId(40) }, alg, KEYS[kid]?.privateKey));
      return { tokens };
    }
    return { token: signJws(merged, payload, alg, KEYS[kid]?.privateKey) };
  },
  'GET /_test/claims-template': ({ query }) => {
    const user = query.get('user') ?? 'alice';
    const now = Math.floor(Date.now() / 1000);
    const scope = 'openid email profile offline_access organization';
    return {
      iss: ISSUER, sub: user, aud: CLIENT_ID, exp: now + 300, iat: now, auth_time: now, acr: ACR,
      // sid and jti in Authentik's formats (sha256 hex of the session key; generate_id()).
      sid: crypto.randomBytes(32).toString('hex'), jti: randomId(40),
      ...scopedClaims(user, scope), azp: CLIENT_ID, uid: randomId(40), scope,
    };
  },
  'POST /_test/login': async ({ body }) => {
    const user = requireString(body.user, 'user');
    const scope = body.scope ?? 'openid email profile offline_access organization';
    const verifier = crypto.randomBytes(32).toString('base64url');
    const nonce = randomId(20);
    const st = randomId(20);
    const authorize = new URL(`${PUBLIC_ORIGIN()}${P}/authorize/`);
    for (const [k, v] of Object.entries({
      client_id: CLIENT_ID, response_type: 'code', redirect_uri: REDIRECT_URIS[0], scope, state: st, nonce,
      code_challenge: crypto.hash('sha256', verifier, 'base64url'), code_challenge_method: 'S256',
      ...(scope.split(' ').includes('offline_access') ? { prompt: 'consent' } : {}),
    })) authorize.searchParams.set(k, v);
    const result = await browse(authorize.href, user, jarFor(body.session));
    if (result.error) throw Object.assign(new HttpError(502, result.error), { extra: result });
    const back = new URL(result.location);
    if (!back.searchParams.has('code') || back.searchParams.get('state') !== st) {
      throw Object.assign(new HttpError(502, 'authorization failed'), { extra: { location: result.location } });
    }
    const res = await selfRequest('POST', tokenEndpoint(), {
      headers: { authorization: basicAuth() },
      body: new URLSearchParams({
        grant_type: 'authorization_code', code: back.searchParams.get('code'),
        redirect_uri: REDIRECT_URIS[0], code_verifier: verifier,
      }).toString(),
    });
    if (res.status !== 200) throw Object.assign(new HttpError(502, 'token request failed'), { extra: { status: res.status, body: res.text } });
    return { ...JSON.parse(res.text), nonce };
  },
  'POST /_test/browse': async ({ body }) => {
    const result = await browse(requireString(body.url, 'url'), body.user ?? 'alice', jarFor(body.session));
    if (result.error) throw Object.assign(new HttpError(502, result.error), { extra: result });
    return { location: result.location };
  },
  'POST /_test/refresh': async ({ body, res }) => {
    const form = { grant_type: 'refresh_token', refresh_token: requireString(body.refresh_token, 'refresh_token') };
    if (body.scope) form.scope = body.scope;
    const r = await selfRequest('POST', tokenEndpoint(), {
      headers: { authorization: basicAuth() }, body: new URLSearchParams(form).toString(),
    });
    res.statusCode = r.status; // the provider's status and JSON, verbatim
    return JSON.parse(r.text);
  },
  'POST /_test/end-session': async ({ body }) => {
    const name = requireString(body.session, 'session');
    if (!namedJars.has(name)) throw new HttpError(404, `no browser session named ${name}`);
    const jar = namedJars.get(name);
    const url = new URL(`${PUBLIC_ORIGIN()}${APP}/end-session/`);
    for (const k of ['id_token_hint', 'post_logout_redirect_uri', 'state']) if (body[k]) url.searchParams.set(k, body[k]);
    const page = await selfRequest('GET', url.href, { jar });
    const form = page.status === 200 && parseForm(page.text);
    if (!form?.fields.xsrf) throw Object.assign(new HttpError(502, 'no logout form'), { extra: { status: page.status, body: page.text.slice(0, 2000) } });
    const before = backchannelLog.length;
    const done = await selfRequest('POST', new URL(form.action, url).href, {
      jar, body: new URLSearchParams({ ...form.fields, logout: 'yes' }).toString(),
    });
    return { status: done.status, location: done.headers.location, backchannel: backchannelLog.slice(before) };
  },
};

Object.assign(control, eventsApi.control);

// ---------------------------------------------------------------------------------------------
// HTTP plumbing
function sendJson(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 1 << 20) throw new HttpError(413, 'request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function handleControl(req, res, url) {
  const route = control[`${req.method} ${url.pathname.replace(/\/$/, '')}`];
  if (!route) return sendJson(res, 404, { error: `no control endpoint ${req.method} ${url.pathname}` });
  let body = {};
  if (req.method === 'POST') {
    const raw = (await readBody(req)).toString();
    try { body = raw ? JSON.parse(raw) : {}; } catch { throw new HttpError(400, 'body must be JSON'); }
    if (typeof body !== 'object' || body === null) throw new HttpError(400, 'body must be a JSON object');
  }
  res.statusCode = 200;
  const out = await route({ body, query: url.searchParams, res });
  return sendJson(res, res.statusCode, out);
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://placeholder');
  const path = url.pathname;
  const host = req.headers.host ?? PUBLIC_HOST;
  if (path.startsWith('/_test/')) return handleControl(req, res, url);

  if (path === `${APP}/.well-known/openid-configuration` || path === `/.well-known/oauth-authorization-server${APP}/`) {
    stats.discovery_requests += 1;
    seeHost(host);
    seeRequest('discovery', req);
    return sendJson(res, 200, discoveryDocument(requestOrigin(req)));
  }
  if (path === '/api/v3/events/events/' && req.method === 'GET') {
    seeRequest('events', req);
    return eventsApi.handle(req, res, url);
  }
  if (path === `${APP}/jwks/`) {
    stats.jwks_requests += 1;
    seeHost(host);
    seeRequest('jwks', req);
    return serveJwks(res);
  }
  if (path === `${APP}/`) { // Authentik's provider root redirects to discovery
    res.writeHead(302, { location: `${APP}/.well-known/openid-configuration` });
    return res.end();
  }
  if (path === `${P}/introspect/` && req.method === 'POST') { seeRequest('introspection', req); return introspect(req, res); }
  if (path === `${P}/revoke/` && req.method === 'POST') { seeRequest('revocation', req); return revoke(req, res); }
  if (path === `${P}/userinfo/`) { seeRequest('userinfo', req); return userinfo(req, res); }
  if (path === `${P}/token/` && req.method === 'POST') {
    seeHost(host);
    seeRequest('token', req);
    if (!await prepareTokenRequest(req, res)) return undefined;
    // A slow provider (test control): counted on arrival, answered after the delay.
    if (state.tokenDelayMs > 0) await new Promise((r) => { setTimeout(r, state.tokenDelayMs); });
  }
  if (path === `${P}/authorize/` && req.method === 'GET') {
    // oidc-provider drops offline_access unless prompt=consent; Authentik doesn't need it.
    const scope = url.searchParams.get('scope')?.split(' ') ?? [];
    if (scope.includes('offline_access') && !url.searchParams.has('prompt')) {
      url.searchParams.set('prompt', 'consent');
      req.url = url.pathname + url.search;
    }
  }
  if (path.startsWith(`${P}/`)) {
    // oidc-provider derives its mount path from originalUrl minus url.
    req.originalUrl = req.url;
    req.url = req.url.slice(P.length);
    return providerHandler(req, res);
  }
  return sendJson(res, 404, { error: 'not found' });
}

const server = http.createServer((req, res) => {
  const started = Date.now();
  // A lying clock (test control): Node sends its own Date only when none was set.
  if (state.dateSkewS) res.setHeader('date', new Date(started + state.dateSkewS * 1000).toUTCString());
  if (!argv.quiet) res.on('finish', () => log(`${req.method} ${req.originalUrl ?? req.url} -> ${res.statusCode} (${Date.now() - started}ms)`));
  handle(req, res).catch((err) => {
    if (!(err instanceof HttpError)) log('error:', err);
    if (res.headersSent) return res.destroy();
    return sendJson(res, err.status ?? 500, { error: err.message, ...err.extra });
  });
});

server.listen(Number(argv.port), '127.0.0.1', () => {
  PORT = server.address().port;
  PUBLIC_HOST = argv['public-host'] ?? `127.0.0.1:${PORT}`;
  ISSUER = `${PUBLIC_SCHEME}://${PUBLIC_HOST}${APP}/`;
  buildProvider();
  process.stdout.write(`${JSON.stringify({ port: PORT, issuer: ISSUER, client_id: CLIENT_ID, client_secret: CLIENT_SECRET, api_token: API_TOKEN })}\n`);
  log(`ready on 127.0.0.1:${PORT}, issuer ${ISSUER}`);
});

function shutdown(signal) {
  log(`${signal}: shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
