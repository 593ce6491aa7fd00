// Authentik's Events API for the test provider: GET /api/v3/events/events/ with a Bearer API
// token, events shaped like Authentik's (OpenAPI `Event`, ../shared/docs/authentik.md §6), paged
// like Authentik's AutocompletePagination (`next`/`previous` 0 when absent, `autocomplete`
// always present), and /_test/ controls to add events and make the API answer 401, 403 or 500.
// The fixtures are exported so check-events-schema.mjs can validate them against the schema.
import * as crypto from 'node:crypto';

const PAGE_SIZE_DEFAULT = 20; // Authentik's pagination_default_page_size
const PAGE_SIZE_MAX = 100; // pagination_max_page_size
const BRAND = { pk: 'fcba828076b94dedb2d5a6b4c5556fa1', app: 'authentik_brands', name: 'Default brand', model_name: 'brand' };
const APPLICATION = { pk: 'bed6a2495fdc4b2e8c3f93cb2ed7e021', app: 'authentik_core', name: 'tokend test app', model_name: 'application' };
const UA = 'Mozilla/5.0 (X11; Linux x86_64) tokend-test';
export const SEEDED_ACTIONS = [
  'login', 'login_failed', 'logout', 'authorize_application', 'suspicious_request', 'secret_rotate', 'custom_tokend_test',
];

const pks = new Map(); // username → Authentik user pk (stable per run)
export function authentikUser(username, email) {
  if (!pks.has(username)) pks.set(username, pks.size + 2); // 1 is akadmin
  return { pk: pks.get(username), email: email ?? `${username}@example.com`, username };
}
const ANONYMOUS = { pk: null, email: '', username: 'AnonymousUser', is_anonymous: true };

const httpRequest = (path, args = {}) => ({
  args, path, method: 'GET', user_agent: UA, request_id: crypto.randomBytes(16).toString('hex'),
});

// Python's isoformat with microseconds and Z, strictly increasing across calls.
let lastMs = 0;
function created() {
  lastMs = Math.max(Date.now(), lastMs + 1);
  const micros = String(crypto.randomInt(1000)).padStart(3, '0');
  return new Date(lastMs).toISOString().replace('Z', `${micros}Z`);
}

// The context of each kind, modelled on the example events in authentik.md §6 and §9.
function contextFor(action, username) {
  switch (action) {
    case 'login':
      return {
        auth_method: 'password', auth_method_args: {},
        http_request: httpRequest('/api/v3/flows/executor/default-authentication-flow/', { query: 'next=%2F' }),
        geo: { continent: 'EU', country: 'DE', lat: 52.5, long: 13.4, city: 'Berlin' },
        asn: { asn: 6805, as_org: 'Telefonica Germany', network: '5.4.0.0/14' },
      };
    case 'login_failed':
      return {
        stage: { pk: '8e2c4f0d5b6a4c1e9f3d2a1b0c9d8e7f', app: 'authentik_stages_password', name: 'default-authentication-password', model_name: 'passwordstage' },
        password: '********************', username,
        http_request: httpRequest('/api/v3/flows/executor/default-authentication-flow/'),
      };
    case 'logout':
      return { http_request: httpRequest('/api/v3/flows/executor/default-invalidation-flow/') };
    case 'authorize_application':
      return {
        flow: '53287faa8a644b6cb124cb602a84282f', scopes: 'offline_access openid email profile',
        http_request: httpRequest('/api/v3/flows/executor/default-provider-authorization-explicit-consent/', {
          scope: 'openid profile email offline_access', state: crypto.randomBytes(8).toString('hex'),
          nonce: crypto.randomBytes(8).toString('hex'), client_id: 'tokend-client',
          redirect_uri: 'https://app.example.com/callback', response_type: 'code',
          code_challenge: crypto.randomBytes(32).toString('base64url'), code_challenge_method: 'S256',
        }),
        authorized_application: APPLICATION,
      };
    case 'suspicious_request':
      return {
        message: 'Revoked refresh token was used',
        token: { pk: 42, app: 'authentik_providers_oauth2', name: 'Refresh Token for tokend', model_name: 'refreshtoken' },
        provider: { pk: 3, app: 'authentik_providers_oauth2', name: 'tokend', model_name: 'oauth2provider' },
        http_request: { ...httpRequest('/application/o/token/'), method: 'POST' },
      };
    case 'secret_rotate':
      return {
        name: 'tokend-events', model: { pk: 'tokend-events', app: 'authentik_core', name: 'Token tokend-events', model_name: 'token' },
      };
    default: // custom_* from ak_create_event() in a policy
      return { message: 'a custom event from an expression policy', tokend_test: true, http_request: httpRequest('/if/flow/custom/') };
  }
}

const APPS = {
  authorize_application: 'authentik.providers.oauth2.views.authorize',
  suspicious_request: 'authentik.providers.oauth2.views.token',
  secret_rotate: 'authentik.core.tasks',
};

// One Event as Authentik serves it. `spec`: {action, user?, email?, anonymous?, context?,
// client_ip?, app?}. The user of login_failed is the anonymous user unless `user` is given.
export function makeEvent(spec, emailOf = () => undefined) {
  const action = spec.action ?? 'login';
  const username = spec.user;
  let user = {};
  if (spec.anonymous || (action === 'login_failed' && !username)) user = ANONYMOUS;
  else if (username) user = authentikUser(username, spec.email ?? emailOf(username));
  const when = created();
  const expires = new Date(Date.parse(when) + 365 * 86400e3).toISOString();
  return {
    pk: crypto.randomUUID(),
    user,
    action,
    app: spec.app ?? APPS[action] ?? (action.startsWith('custom_') ? 'authentik.policies.expression' : 'authentik.events.signals'),
    context: spec.context ?? contextFor(action, username ?? spec.attempted ?? 'mallory'),
    client_ip: spec.client_ip === undefined ? '203.0.113.7' : spec.client_ip,
    created: when,
    expires,
    brand: BRAND,
  };
}

// The seven kinds, oldest first.
export function seedEvents(emailOf) {
  return [
    makeEvent({ action: 'login', user: 'alice' }, emailOf),
    makeEvent({ action: 'login_failed', attempted: 'mallory', client_ip: '198.51.100.9' }, emailOf),
    makeEvent({ action: 'logout', user: 'bob' }, emailOf),
    makeEvent({ action: 'authorize_application', user: 'alice' }, emailOf),
    makeEvent({ action: 'suspicious_request', user: 'bob', client_ip: null }, emailOf),
    makeEvent({ action: 'secret_rotate', user: 'akadmin', email: 'root@localhost' }, emailOf),
    makeEvent({ action: 'custom_tokend_test', user: 'carol' }, emailOf),
  ];
}

// A PaginatedEventList of `all` (newest first) for `page`/`pageSize`; `null` for a page beyond
// the last (Authentik: 404 "Invalid page.").
export function paginate(all, page, pageSize) {
  const count = all.length;
  const totalPages = Math.max(1, Math.ceil(count / pageSize));
  if (page > totalPages) return null;
  const start = (page - 1) * pageSize;
  const results = all.slice(start, start + pageSize);
  return {
    pagination: {
      next: page < totalPages ? page + 1 : 0,
      previous: page > 1 ? page - 1 : 0,
      count,
      current: page,
      total_pages: totalPages,
      start_index: count ? start + 1 : 0,
      end_index: start + results.length,
    },
    results,
    // DjangoQL schema introspection; always present (AutocompletePagination).
    autocomplete: { current_model: 'authentik_events.event', models: {} },
  };
}

// The API and its controls. `emailOf(username)` gives a known account's e-mail.
export function createEventsApi({ emailOf, apiToken, sendJson, HttpError, stats }) {
  const events = seedEvents(emailOf); // oldest first
  let mode = 'normal';

  function handle(req, res, url) {
    const s = stats();
    s.events_requests += 1;
    const auth = req.headers.authorization ?? '';
    const given = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    if (given && given !== apiToken) s.events_bad_tokens += 1;
    if (mode === 'unauthorized' || given !== apiToken) {
      return sendJson(res, 401, { detail: 'Token invalid/expired', code: 'authentication_failed' }, { 'www-authenticate': 'Bearer realm="authentik"' });
    }
    if (mode === 'forbidden') {
      return sendJson(res, 403, { detail: 'You do not have permission to perform this action.', code: 'permission_denied' });
    }
    if (mode === 'error') {
      res.writeHead(500, { 'content-type': 'text/html' });
      return res.end('<h1>Server Error (500)</h1>');
    }
    const page = Number(url.searchParams.get('page') ?? '1');
    const size = Math.min(Number(url.searchParams.get('page_size') ?? PAGE_SIZE_DEFAULT), PAGE_SIZE_MAX);
    if (!Number.isInteger(page) || page < 1 || !Number.isInteger(size) || size < 1) {
      return sendJson(res, 404, { detail: 'Invalid page.' });
    }
    const ordering = url.searchParams.get('ordering') ?? '-created';
    const sorted = ordering === 'created' ? [...events] : [...events].reverse();
    const body = paginate(sorted, page, size);
    if (!body) return sendJson(res, 404, { detail: 'Invalid page.' });
    s.events_pages.push(page);
    return sendJson(res, 200, body);
  }

  const control = {
    // {"events":[{action,user?,…}]} adds those; {"count":N,"action"?,"user"?} adds N alike.
    'POST /_test/events': ({ body }) => {
      let specs = body.events;
      if (specs === undefined && Number.isInteger(body.count) && body.count > 0 && body.count <= 10000) {
        specs = Array.from({ length: body.count }, () => ({ action: body.action, user: body.user }));
      }
      if (!Array.isArray(specs)) throw new HttpError(400, 'events (array) or count (1..10000) is required');
      const added = specs.map((spec) => makeEvent(spec, emailOf));
      events.push(...added);
      return { added: added.map((e) => e.pk), total: events.length };
    },
    'GET /_test/events': () => ({ total: events.length, mode, newest: events.at(-1)?.pk ?? null }),
    'POST /_test/events-mode': ({ body }) => {
      const modes = ['normal', 'unauthorized', 'forbidden', 'error'];
      if (!modes.includes(body.mode)) throw new HttpError(400, `mode must be one of ${modes.join(', ')}`);
      mode = body.mode;
      return { mode };
    },
  };
  return { handle, control };
}
