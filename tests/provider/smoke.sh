#!/usr/bin/env bash
# Smoke test for the test OIDC provider: starts it, exercises every /_test endpoint and the
# Authentik layout, and exits non-zero on the first failure. Needs node_modules (npm ci).
# Usage: bash tests/provider/smoke.sh [-v]   (-v prints decoded sample tokens)
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules ] || { echo "smoke: run 'npm ci' in tests/provider first" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# A back-channel logout receiver: records each POST body, answers 200.
node -e '
  const http = require("http"); const fs = require("fs");
  const s = http.createServer((req, res) => { let b = ""; req.on("data", (c) => b += c);
    req.on("end", () => { fs.appendFileSync(process.argv[1], b + "\n"); res.end("ok"); }); });
  s.listen(0, "127.0.0.1", () => console.log(s.address().port));
' "$work/bcl.log" > "$work/bcl.port" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/bcl.port" ] && break; sleep 0.1; done
bcl_port=$(cat "$work/bcl.port")

node server.mjs --port 0 --slug tokend --client-id tokend-client --public-host authentik.test:9000 \
  --redirect-uri http://127.0.0.1:1/callback --post-logout-redirect-uri http://127.0.0.1:1/bye \
  --backchannel-logout-uri "http://127.0.0.1:$bcl_port/backchannel" --access-ttl 600 --quiet \
  > "$work/ready" 2> "$work/stderr" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || { echo "smoke: provider did not start" >&2; cat "$work/stderr" >&2; exit 1; }

VERBOSE="${1:-}" READY="$(cat "$work/ready")" BCL_LOG="$work/bcl.log" node --input-type=module - <<'EOF' || { echo "--- provider stderr:" >&2; tail -40 "$work/stderr" >&2; exit 1; }
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

const ready = JSON.parse(process.env.READY);
const { port, issuer, client_id: clientId, client_secret: secret } = ready;
const B = `http://127.0.0.1:${port}`;
let passed = 0;
const ok = (name) => { passed += 1; console.log(`ok ${passed} - ${name}`); };
const decode = (t, i) => JSON.parse(Buffer.from(t.split('.')[i], 'base64url').toString());

// Raw request with an explicit Host header (fetch can't set Host).
function req(method, path, { body, headers = {}, host } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body));
    const r = http.request({ host: '127.0.0.1', port, method, path, headers: {
      ...(host ? { host } : {}), ...(data !== undefined ? { 'content-type': typeof body === 'string' ? 'application/x-www-form-urlencoded' : 'application/json' } : {}), ...headers,
    } }, (res) => { let t = ''; res.on('data', (c) => t += c); res.on('end', () => {
      let json; try { json = JSON.parse(t); } catch {}
      resolve({ status: res.statusCode, headers: res.headers, text: t, json });
    }); });
    r.on('error', reject); r.end(data);
  });
}
const ctl = async (method, path, body) => req(method, `/_test/${path}`, { body });
const basic = `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`;

// ready line
assert.deepEqual(Object.keys(ready), ['port', 'issuer', 'client_id', 'client_secret', 'api_token']);
assert.match(ready.api_token, /^[A-Za-z0-9]{60}$/);
assert.equal(issuer, 'http://authentik.test:9000/application/o/tokend/');
assert.match(secret, /^[A-Za-z0-9]{128}$/);
ok('ready line');

// discovery via the public host, and via another Host (Authentik uses the Host header)
let r = await req('GET', '/application/o/tokend/.well-known/openid-configuration', { host: 'authentik.test:9000' });
assert.equal(r.status, 200);
const d = r.json;
assert.equal(d.issuer, issuer);
const base = 'http://authentik.test:9000/application/o/';
assert.equal(d.authorization_endpoint, `${base}authorize/`);
assert.equal(d.token_endpoint, `${base}token/`);
assert.equal(d.userinfo_endpoint, `${base}userinfo/`);
assert.equal(d.revocation_endpoint, `${base}revoke/`);
assert.equal(d.introspection_endpoint, `${base}introspect/`);
assert.equal(d.jwks_uri, `${base}tokend/jwks/`);
assert.equal(d.end_session_endpoint, `${base}tokend/end-session/`);
assert.equal(d.backchannel_logout_supported, true);
assert.equal(d.backchannel_logout_session_supported, true);
assert.deepEqual(d.id_token_signing_alg_values_supported, ['RS256']);
r = await req('GET', '/application/o/tokend/.well-known/openid-configuration', { host: `internal:${port}` });
assert.equal(r.json.issuer, `http://internal:${port}/application/o/tokend/`);
assert.equal(r.json.token_endpoint, `http://internal:${port}/application/o/token/`);
r = await req('GET', '/application/o/tokend/.well-known/openid-configuration', { host: `internal:${port}`, headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'auth.example.test' } });
assert.equal(r.json.issuer, 'https://auth.example.test/application/o/tokend/');
assert.equal(r.json.jwks_uri, 'https://auth.example.test/application/o/tokend/jwks/');
assert.equal(r.json.revocation_endpoint, 'https://auth.example.test/application/o/revoke/');
r = await req('GET', '/application/o/tokend/.well-known/openid-configuration', { host: 'authentik.test:9000', headers: { 'x-forwarded-proto': 'https, http' } });
assert.equal(r.json.issuer, 'https://authentik.test:9000/application/o/tokend/');
r = await req('GET', '/application/o/tokend/');
assert.equal(r.status, 302);
ok('discovery layout + Host/X-Forwarded-*-derived issuer');

// JWKS
r = await req('GET', '/application/o/tokend/jwks/');
assert.deepEqual(r.json.keys.map((k) => k.kid), ['k1', 'k2']);
for (const k of r.json.keys) {
  assert.equal(k.alg, 'RS256'); assert.equal(k.use, 'sig'); assert.equal(k.kty, 'RSA');
  for (const p of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(k[p], undefined);
  // x5c: a self-signed certificate of this very key; x5t / x5t#S256 its SHA-1 / SHA-256.
  assert.equal(k.x5c.length, 1);
  const certDer = Buffer.from(k.x5c[0], 'base64');
  const cert = new crypto.X509Certificate(certDer);
  assert.ok(cert.verify(cert.publicKey), 'self-signed');
  const certJwk = cert.publicKey.export({ format: 'jwk' });
  assert.equal(certJwk.n, k.n); assert.equal(certJwk.e, k.e);
  assert.equal(k.x5t, crypto.createHash('sha1').update(certDer).digest('base64url'));
  assert.equal(k['x5t#S256'], crypto.createHash('sha256').update(certDer).digest('base64url'));
  assert.ok(new Date(cert.validTo) > new Date());
}
const jwks = Object.fromEntries(r.json.keys.map((k) => [k.kid, crypto.createPublicKey({ key: k, format: 'jwk' })]));
const verify = (t) => {
  const [h, p, s] = t.split('.');
  return crypto.verify('sha256', Buffer.from(`${h}.${p}`), jwks[decode(t, 0).kid], Buffer.from(s, 'base64url'));
};
ok('jwks publishes k1,k2 public RS256 keys with x5c/x5t/x5t#S256');

// login + token shapes
await ctl('POST', 'stats/reset');
r = await ctl('POST', 'login', { user: 'alice', session: 'browser1' });
assert.equal(r.status, 200, r.text);
const login = r.json;
assert.ok(login.access_token && login.id_token && login.refresh_token && login.nonce);
assert.equal(login.expires_in, 600);
assert.match(login.refresh_token, /^.{128}$/);
const ath = decode(login.access_token, 0); const at = decode(login.access_token, 1);
const idh = decode(login.id_token, 0); const id = decode(login.id_token, 1);
assert.deepEqual(ath, { alg: 'RS256', typ: 'JWT', kid: 'k1' });
assert.deepEqual(idh, { alg: 'RS256', kid: 'k1', typ: 'JWT' });
assert.ok(verify(login.access_token) && verify(login.id_token));
assert.equal(at.iss, issuer); assert.equal(at.aud, clientId); assert.equal(at.azp, clientId);
assert.equal(at.sub, 'alice'); assert.match(at.uid, /^[A-Za-z0-9]{40}$/);
assert.equal(at.scope, 'openid email profile offline_access organization');
assert.equal(at.email, 'alice@example.com'); assert.equal(at.name, 'Alice Admin');
assert.equal(at.preferred_username, 'alice'); assert.deepEqual(at.groups, ['ecosire-admins']);
assert.equal(at.organizationId, 'org-1'); assert.equal(at.nbf, undefined); assert.equal(at.client_id, undefined);
assert.equal(at.exp - at.iat, 600); assert.ok(at.jti && at.sid);
assert.equal(id.iss, issuer); assert.equal(id.aud, clientId); assert.equal(id.sub, 'alice');
assert.equal(id.nonce, login.nonce); assert.equal(id.sid, at.sid); assert.ok(id.auth_time);
for (const c of ['azp', 'uid', 'scope']) assert.equal(id[c], undefined, c);
assert.equal(id.organizationId, 'org-1'); assert.deepEqual(id.groups, ['ecosire-admins']);
if (process.env.VERBOSE === '-v') console.log(JSON.stringify({ access_token: { header: ath, payload: at }, id_token: { header: idh, payload: id } }, null, 2));
ok('login: access token + ID token in Authentik shape');

r = await ctl('POST', 'login', { user: 'carol', scope: 'openid profile' });
const carol = decode(r.json.access_token, 1);
assert.equal(carol.organizationId, undefined); assert.deepEqual(carol.groups, []); assert.equal(carol.email, undefined);
assert.equal(r.json.refresh_token, undefined);
r = await ctl('POST', 'login', { user: 'dave', scope: 'openid email profile organization' });
assert.equal(decode(r.json.access_token, 1).email, 'dave@example.com');
ok('other accounts and scope-dependent claims');

// userinfo + introspection of JWT access tokens
r = await req('GET', '/application/o/userinfo/', { headers: { authorization: `Bearer ${login.access_token}` } });
assert.equal(r.status, 200); assert.equal(r.json.sub, 'alice'); assert.equal(r.json.email, 'alice@example.com');
const introspect = (token, auth = basic) => req('POST', '/application/o/introspect/', { body: new URLSearchParams({ token }).toString(), headers: { authorization: auth } });
r = await introspect(login.access_token);
assert.equal(r.json.active, true); assert.equal(r.json.client_id, clientId); assert.equal(r.json.sub, 'alice');
r = await introspect(login.access_token, 'Basic Zm9vOmJhcg==');
assert.deepEqual(r.json, { active: false });
ok('userinfo + introspection');

// refresh with rotation; a rotated-out refresh token is refused, the new one keeps working
r = await ctl('POST', 'refresh', { refresh_token: login.refresh_token });
assert.equal(r.status, 200, r.text);
const refreshed = r.json;
assert.notEqual(refreshed.refresh_token, login.refresh_token);
const at2 = decode(refreshed.access_token, 1);
assert.equal(at2.sid, at.sid); assert.notEqual(at2.uid, at.uid);
r = await ctl('POST', 'refresh', { refresh_token: login.refresh_token });
assert.equal(r.status, 400); assert.equal(r.json.error, 'invalid_grant');
r = await ctl('POST', 'refresh', { refresh_token: refreshed.refresh_token });
assert.equal(r.status, 200, r.text);
const latestRefresh = r.json.refresh_token;
// client_secret_post only when a test allows it (start: client_secret_basic only)
const postForm = () => new URLSearchParams({ grant_type: 'refresh_token', refresh_token: latestRefresh, client_id: clientId, client_secret: secret }).toString();
r = await req('POST', '/application/o/token/', { body: postForm() });
assert.equal(r.status, 401, r.text); assert.equal(r.json.error, 'invalid_client');
assert.deepEqual((await ctl('GET', 'client-auth')).json, { methods: ['client_secret_basic'] });
r = await ctl('POST', 'client-auth', { methods: ['client_secret_basic', 'client_secret_post'] });
assert.deepEqual(r.json, { methods: ['client_secret_basic', 'client_secret_post'] });
r = await req('POST', '/application/o/token/', { body: postForm() });
assert.equal(r.status, 200, r.text);
const survivingRefresh = r.json.refresh_token;
assert.equal((await ctl('POST', 'client-auth', { methods: ['client_secret_jwt'] })).status, 400);
assert.equal((await ctl('POST', 'client-auth', { methods: [] })).status, 400);
await ctl('POST', 'client-auth', { methods: ['client_secret_basic'] });
ok('refresh rotation (old refused, new works), client_secret_post only when allowed');

// revocation of a JWT access token; client_secret_post and bad clients are refused (401) and
// not counted as revocations
const revokeForm = (extra = {}) => new URLSearchParams({ token: refreshed.access_token, ...extra }).toString();
r = await req('POST', '/application/o/revoke/', { body: revokeForm({ client_id: clientId, client_secret: secret }) });
assert.equal(r.status, 401); assert.equal(r.json.error, 'invalid_client');
r = await req('POST', '/application/o/revoke/', { body: revokeForm(), headers: { authorization: 'Basic Zm9vOmJhcg==' } });
assert.equal(r.status, 401);
assert.equal((await introspect(refreshed.access_token)).json.active, true, 'refused revocations revoke nothing');
r = await req('POST', '/application/o/introspect/', { body: new URLSearchParams({ token: refreshed.access_token, client_id: clientId, client_secret: secret }).toString() });
assert.deepEqual(r.json, { active: false }, 'introspection: client_secret_post refused');
r = await req('POST', '/application/o/revoke/', { body: revokeForm(), headers: { authorization: basic } });
assert.equal(r.status, 200);
assert.equal((await introspect(refreshed.access_token)).json.active, false);
ok('revocation (client_secret_basic only)');

// stats
r = await ctl('GET', 'stats');
assert.ok(r.json.token_requests >= 6); assert.ok(r.json.refresh_grants >= 4);
assert.ok(r.json.authorization_code_grants >= 3);
assert.equal(r.json.revocations, 1); assert.equal(r.json.revocation_requests, 3);
assert.ok(r.json.client_auth_failures >= 5, JSON.stringify(r.json));
assert.ok(r.json.hosts_seen.includes('authentik.test:9000'));
assert.ok(r.json.seen.token.some((e) => e.user_agent === 'tokend-test-provider' && e.host === 'authentik.test:9000'));
r = await ctl('POST', 'stats/reset');
assert.deepEqual(r.json, { jwks_requests: 0, discovery_requests: 0, token_requests: 0, refresh_grants: 0, authorization_code_grants: 0, revocations: 0, revocation_requests: 0, client_auth_failures: 0, hosts_seen: [], seen: {}, events_requests: 0, events_pages: [], events_bad_tokens: 0 });
await req('GET', '/application/o/tokend/jwks/', { host: 'jwks-host:1', headers: { 'user-agent': 'tokend/9', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'jwks-host' } });
await req('GET', '/application/o/tokend/jwks/', { host: 'jwks-host:1', headers: { 'user-agent': 'tokend/9', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'jwks-host' } });
await req('GET', '/application/o/tokend/.well-known/openid-configuration', { host: 'disc-host:1' });
r = await ctl('GET', 'stats');
assert.equal(r.json.jwks_requests, 2); assert.equal(r.json.discovery_requests, 1);
assert.deepEqual(r.json.hosts_seen, ['jwks-host:1', 'disc-host:1']);
assert.deepEqual(r.json.seen, {
  jwks: [{ user_agent: 'tokend/9', host: 'jwks-host:1', x_forwarded_proto: 'https', x_forwarded_host: 'jwks-host' }],
  discovery: [{ user_agent: null, host: 'disc-host:1', x_forwarded_proto: null, x_forwarded_host: null }],
});
ok('stats (per-endpoint request origins) + reset');

// key rotation
r = await ctl('POST', 'keys', { signing: 'k2', published: ['k2'] });
assert.deepEqual(r.json, { signing: 'k2', published: ['k2'] });
r = await req('GET', '/application/o/tokend/jwks/');
assert.deepEqual(r.json.keys.map((k) => k.kid), ['k2']);
r = await ctl('POST', 'login', { user: 'bob', session: 'browser2' });
assert.equal(decode(r.json.access_token, 0).kid, 'k2'); assert.equal(decode(r.json.id_token, 0).kid, 'k2');
assert.ok(verify(r.json.access_token));
assert.deepEqual(decode(r.json.access_token, 1).groups, ['ecosire-support', 'staff']);
const bobLogin = r.json;
r = await ctl('POST', 'refresh', { refresh_token: survivingRefresh });
assert.equal(r.status, 200, r.text); // grants survive the provider rebuild
assert.equal(decode(r.json.access_token, 0).kid, 'k2');
r = await ctl('POST', 'keys', { signing: 'e1', published: ['e1', 'k1'] });
r = await ctl('POST', 'login', { user: 'alice' });
assert.deepEqual(decode(r.json.access_token, 0), { alg: 'ES256', typ: 'JWT', kid: 'e1' });
assert.equal(decode(r.json.id_token, 0).alg, 'ES256');
r = await req('GET', '/application/o/tokend/jwks/');
assert.deepEqual(r.json.keys.map((k) => [k.kid, k.kty, k.alg]), [['e1', 'EC', 'ES256'], ['k1', 'RSA', 'RS256']]);
for (const k of r.json.keys) { // EC keys have certificates too
  const cert = new crypto.X509Certificate(Buffer.from(k.x5c[0], 'base64'));
  assert.ok(cert.verify(cert.publicKey)); assert.equal(cert.publicKey.export({ format: 'jwk' }).x ?? k.x, k.x);
}
r = await ctl('POST', 'keys', { signing: 'k1', published: ['k1', 'k2'] });
r = await ctl('POST', 'keys', { signing: 'nope' });
assert.equal(r.status, 400); assert.ok(r.json.error);
r = await ctl('GET', 'keys');
assert.deepEqual(r.json, { signing: 'k1', published: ['k1', 'k2'] });
ok('key rotation (k2, e1) and validation');

// JWKS modes
await ctl('POST', 'jwks-mode', { mode: 'fail' });
assert.equal((await req('GET', '/application/o/tokend/jwks/')).status, 503);
await ctl('POST', 'jwks-mode', { mode: 'empty' });
r = await req('GET', '/application/o/tokend/jwks/');
assert.equal(r.status, 200); assert.equal(r.text, '{}');
await ctl('POST', 'jwks-mode', { mode: 'normal' });
assert.equal((await req('GET', '/application/o/tokend/jwks/')).json.keys.length, 2);
assert.equal((await ctl('POST', 'jwks-mode', { mode: 'weird' })).status, 400);
ok('jwks-mode fail/empty/normal');

// /_test/sign + claims-template
r = await ctl('GET', 'claims-template?user=bob');
const tpl = r.json;
assert.equal(tpl.iss, issuer); assert.equal(tpl.sub, 'bob'); assert.equal(tpl.aud, clientId);
assert.equal(tpl.exp - tpl.iat, 300); assert.equal(tpl.organizationId, 'org-2');
for (const c of ['azp', 'uid', 'scope', 'sid', 'jti', 'email', 'name', 'preferred_username', 'groups']) assert.ok(c in tpl, c);
r = await ctl('POST', 'sign', { kid: 'k2', alg: 'RS256', payload: tpl });
let t = r.json.token;
assert.deepEqual(decode(t, 0), { alg: 'RS256', kid: 'k2', typ: 'JWT' }); assert.deepEqual(decode(t, 1), tpl); assert.ok(verify(t));
r = await ctl('POST', 'sign', { kid: 'k1', alg: 'PS256', header: { typ: 'at+jwt', kid: 'other' }, payload: tpl });
assert.deepEqual(decode(r.json.token, 0), { alg: 'PS256', kid: 'other', typ: 'at+jwt' });
assert.ok(crypto.verify('sha256', Buffer.from(r.json.token.split('.').slice(0, 2).join('.')), { key: jwks.k1, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, Buffer.from(r.json.token.split('.')[2], 'base64url')));
r = await ctl('POST', 'sign', { kid: 'e1', alg: 'ES256', payload: tpl });
assert.equal(decode(r.json.token, 0).kid, 'e1'); assert.equal(Buffer.from(r.json.token.split('.')[2], 'base64url').length, 64);
r = await ctl('POST', 'sign', { alg: 'HS256', payload: tpl });
t = r.json.token;
assert.deepEqual(decode(t, 0), { alg: 'HS256', typ: 'JWT' });
// Authentik's HS256 header has no kid member at all: a kid given, or a null header member,
// never shows up (not even as "kid": null).
for (const body of [{ kid: 'k1', alg: 'HS256', payload: tpl }, { kid: 'k1', alg: 'HS256', header: { kid: null }, payload: tpl }]) {
  const h = JSON.parse(Buffer.from((await ctl('POST', 'sign', body)).json.token.split('.')[0], 'base64url').toString());
  assert.deepEqual(h, { alg: 'HS256', typ: 'JWT' }); assert.ok(!('kid' in h));
}
r = await ctl('POST', 'sign', { kid: 'k1', alg: 'RS256', header: { crit: null }, payload: tpl });
assert.deepEqual(decode(r.json.token, 0), { alg: 'RS256', kid: 'k1', typ: 'JWT', crit: null }, 'other nulls are literal');
assert.equal(t.split('.')[2], crypto.createHmac('sha256', secret).update(t.split('.').slice(0, 2).join('.')).digest('base64url'));
r = await ctl('POST', 'sign', { alg: 'none', payload: tpl });
assert.ok(r.json.token.endsWith('.')); assert.equal(decode(r.json.token, 0).alg, 'none');
assert.equal((await ctl('POST', 'sign', { kid: 'e1', alg: 'RS256', payload: tpl })).status, 400);
assert.equal((await ctl('POST', 'sign', { kid: 'zz', alg: 'RS256', payload: tpl })).status, 400);
ok('sign (RS256, PS256, ES256, HS256, none) + claims-template');

// browse: an RP-made authorize URL, then session reuse
const verifier = crypto.randomBytes(32).toString('base64url');
const authorize = (extra = {}) => `http://authentik.test:9000/application/o/authorize/?${new URLSearchParams({
  client_id: clientId, response_type: 'code', redirect_uri: 'http://127.0.0.1:1/callback', scope: 'openid email profile offline_access',
  state: 'st1', nonce: 'n1', code_challenge: crypto.hash('sha256', verifier, 'base64url'), code_challenge_method: 'S256', ...extra })}`;
r = await ctl('POST', 'browse', { url: authorize(), user: 'bob', session: 'rp' });
assert.equal(r.status, 200, r.text);
let loc = new URL(r.json.location);
assert.equal(loc.origin + loc.pathname, 'http://127.0.0.1:1/callback');
assert.equal(loc.searchParams.get('state'), 'st1'); assert.ok(loc.searchParams.get('code')); assert.equal(loc.searchParams.get('iss'), null);
r = await req('POST', '/application/o/token/', { host: 'authentik.test:9000', headers: { authorization: basic }, body: new URLSearchParams({ grant_type: 'authorization_code', code: loc.searchParams.get('code'), redirect_uri: 'http://127.0.0.1:1/callback', code_verifier: verifier }).toString() });
assert.equal(r.status, 200, r.text); assert.ok(r.json.refresh_token, 'offline_access granted without explicit prompt');
r = await ctl('POST', 'browse', { url: authorize({ scope: 'openid email', state: 'st2' }), user: 'ignored', session: 'rp' });
loc = new URL(r.json.location);
assert.equal(loc.searchParams.get('state'), 'st2'); assert.ok(loc.searchParams.get('code'));
r = await ctl('POST', 'browse', { url: authorize({ redirect_uri: 'http://evil.example/cb' }), user: 'bob' });
assert.equal(r.status, 502); assert.ok(r.json.error); assert.equal(r.json.status, 400); assert.ok(r.json.body.length <= 2000);
ok('browse (redirect capture, session reuse, error page)');

// RP-initiated logout -> real back-channel logout
r = await ctl('POST', 'end-session', { session: 'browser2', id_token_hint: bobLogin.id_token, post_logout_redirect_uri: 'http://127.0.0.1:1/bye', state: 'bye1' });
assert.equal(r.status, 200, r.text);
assert.equal(r.json.location, 'http://127.0.0.1:1/bye?state=bye1');
assert.equal(r.json.backchannel.length, 1); assert.equal(r.json.backchannel[0].ok, true);
const logoutBody = fs.readFileSync(process.env.BCL_LOG, 'utf8').trim().split('\n').pop();
const lt = new URLSearchParams(logoutBody).get('logout_token');
const lth = decode(lt, 0); const ltp = decode(lt, 1);
assert.equal(lth.typ, 'logout+jwt'); assert.equal(lth.kid, 'k1');
assert.equal(ltp.iss, issuer); assert.equal(ltp.aud, clientId); assert.equal(ltp.sub, 'bob');
assert.equal(ltp.sid, decode(bobLogin.id_token, 1).sid);
assert.ok(ltp.events['http://schemas.openid.net/event/backchannel-logout']);
assert.equal((await introspect(bobLogin.access_token)).json.active, false, 'logout kills the session access tokens');
r = await ctl('POST', 'refresh', { refresh_token: bobLogin.refresh_token });
assert.equal(r.status, 200, 'refresh tokens survive logout (Authentik)');
assert.equal((await introspect(r.json.access_token)).json.active, true);
// ... and what they mint is no longer tied to the ended session: no sid (authentik.md §3.5-3.6)
assert.ok(decode(bobLogin.access_token, 1).sid && decode(bobLogin.id_token, 1).sid);
assert.equal(decode(r.json.access_token, 1).sid, undefined, 'refreshed access token has no sid');
assert.equal(decode(r.json.id_token, 1).sid, undefined, 'refreshed ID token has no sid');
assert.equal(decode(r.json.access_token, 1).sub, 'bob');
assert.equal((await ctl('POST', 'end-session', { session: 'nope' })).status, 404);
ok('end-session + back-channel logout token');

// bad ID token for the next code exchange only (the access token is untouched)
for (const [kind, check] of [['wrong_nonce', (id, l) => assert.notEqual(id.nonce, l.nonce)], ['wrong_audience', (id) => assert.equal(id.aud, 'some-other-client')]]) {
  assert.deepEqual((await ctl('POST', 'bad-id-token', { kind })).json, { kind });
  r = await ctl('POST', 'login', { user: 'alice' });
  const id = decode(r.json.id_token, 1);
  check(id, r.json); assert.ok(verify(r.json.id_token));
  assert.equal(decode(r.json.access_token, 1).aud, clientId);
  r = await ctl('POST', 'refresh', { refresh_token: r.json.refresh_token });
  assert.equal(decode(r.json.id_token, 1).aud, clientId, 'refresh grants unaffected');
  r = await ctl('POST', 'login', { user: 'alice' });
  assert.equal(decode(r.json.id_token, 1).nonce, r.json.nonce, 'one exchange only');
  assert.equal(decode(r.json.id_token, 1).aud, clientId);
}
assert.equal((await ctl('POST', 'bad-id-token', { kind: 'nope' })).status, 400);
ok('bad-id-token (wrong nonce, wrong audience) for the next code exchange');

// date-skew: the Date header lies by the given seconds, on every answer
{
  const dateOf = (res) => Date.parse(res.headers.date);
  assert.deepEqual((await ctl('POST', 'date-skew', { seconds: 3600 })).json, { seconds: 3600 });
  r = await req('GET', '/application/o/tokend/.well-known/openid-configuration');
  assert.ok(Math.abs(dateOf(r) - Date.now() - 3600_000) < 5000, r.headers.date);
  assert.equal((await ctl('POST', 'date-skew', { seconds: 'x' })).status, 400);
  await ctl('POST', 'date-skew', { seconds: 0 });
  r = await req('GET', '/application/o/tokend/.well-known/openid-configuration');
  assert.ok(Math.abs(dateOf(r) - Date.now()) < 5000, r.headers.date);
}
ok('date-skew (a provider whose clock is off)');

// Authentik's Events API: Bearer API token, seven seeded kinds newest first, paging with 0 for
// absent next/previous, the required autocomplete, and the 401/403/500 controls
{
  const bearer = { authorization: `Bearer ${ready.api_token}` };
  const ev = (q, headers = bearer) => req('GET', `/api/v3/events/events/?ordering=-created&${q}`, { headers });
  assert.equal((await ev('page=1', {})).status, 401);
  assert.equal((await ev('page=1', { authorization: 'Bearer wrong' })).status, 401);
  let e = await ev('page_size=100&page=1');
  assert.equal(e.status, 200, e.text);
  assert.deepEqual(e.json.results.map((x) => x.action).reverse(),
    ['login', 'login_failed', 'logout', 'authorize_application', 'suspicious_request', 'secret_rotate', 'custom_tokend_test']);
  assert.deepEqual([e.json.pagination.next, e.json.pagination.previous, e.json.pagination.count], [0, 0, 7]);
  assert.equal(typeof e.json.autocomplete, 'object');
  assert.equal((await ctl('POST', 'events', { count: 5, action: 'login', user: 'bob' })).json.total, 12);
  e = await ev('page_size=5&page=2');
  assert.deepEqual([e.json.pagination.next, e.json.pagination.previous, e.json.results.length], [3, 1, 5]);
  assert.equal((await ev('page_size=5&page=4')).status, 404);
  for (const [mode, status] of [['forbidden', 403], ['error', 500], ['unauthorized', 401], ['normal', 200]]) {
    assert.equal((await ctl('POST', 'events-mode', { mode })).status, 200);
    assert.equal((await ev('page=1')).status, status, mode);
  }
}
ok('events API (Bearer token, paging, 401/403/500 controls)');

// control API errors never crash the process
assert.equal((await ctl('POST', 'login', {})).status, 400);
assert.equal((await req('POST', '/_test/keys', { body: 'not json', headers: { 'content-type': 'application/json' } })).status, 400);
assert.equal((await ctl('GET', 'nope')).status, 404);
assert.equal((await ctl('GET', 'stats')).status, 200);
ok('control API errors are JSON');

console.log(`${passed} passed, 0 failed`);
EOF

# SIGTERM exits cleanly
kill -TERM "${pids[1]}"
for _ in $(seq 50); do kill -0 "${pids[1]}" 2>/dev/null || break; sleep 0.1; done
if kill -0 "${pids[1]}" 2>/dev/null; then echo "smoke: provider ignored SIGTERM" >&2; exit 1; fi
wait "${pids[1]}" || { echo "smoke: provider exited non-zero on SIGTERM" >&2; exit 1; }
echo "smoke: provider stopped cleanly"
node check-events-schema.mjs
