// Test of the Node examples against a running `tokend dev` (examples/run-tests runs it):
//   TOKEND_SOCKET=/tmp/tokend.sock npm --prefix examples/node test
// Mints tokens at the dev issuer (POST /dev/token), checks the client (verify, codes), then
// starts a tiny NestJS app guarded by TokendAuthGuard and a tiny Express app behind
// tokendAuth(), and asserts what each answers: valid (cookie and Bearer) → 200 with the user;
// expired, revoked, missing, garbage → 401 with the reason; the cookie wins over Bearer, an
// invalid cookie included. Exits non-zero on the first mismatch. With $EXAMPLES_SECRETS set,
// appends every token and code to that file (run-tests checks tokend never printed them).

import 'reflect-metadata';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Controller, Get, Module, Req, UseGuards } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import cookieParser from 'cookie-parser';
import express from 'express';
import { CodeRefused, InvalidToken, TokendAuthGuard, TokendClient, tokendAuth, TokendError, TokendUser } from '../src';

const tokend = new TokendClient(); // $TOKEND_SOCKET

function remember(secret: string) {
  if (process.env.EXAMPLES_SECRETS && secret) fs.appendFileSync(process.env.EXAMPLES_SECRETS, secret + '\n');
}

interface Minted {
  access_token: string;
  sid: string;
  sub: string;
}
async function mint(claims: Record<string, unknown>): Promise<Minted> {
  const res = await tokend.request('POST', '/dev/token', claims);
  assert.equal(res.status, 200, `POST /dev/token answered ${res.status} ${JSON.stringify(res.body)}`);
  remember(res.body.access_token);
  return res.body;
}

let current = 'minting tokens at POST /dev/token';
async function check(what: string, fn: () => Promise<void> | void) {
  current = what;
  await fn();
  console.log(`ok   node: ${what}`);
}

async function rejects(p: Promise<unknown>, type: Function, reason: string) {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof type, `expected ${type.name}, got ${e}`);
    assert.equal((e as TokendError).reason, reason);
    return;
  }
  assert.fail(`expected ${type.name}(${reason}), got success`);
}

/** GET url with headers; status and JSON body. */
function get(url: string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null }));
      })
      .on('error', reject);
  });
}

// The NestJS app: the reference design's controller shape, with TokendAuthGuard in place of
// AuthGuard('jwt'); cookie-parser as the reference design uses it.
@Controller()
class MeController {
  @UseGuards(TokendAuthGuard)
  @Get('me')
  me(@Req() req: { user: TokendUser }) {
    return req.user;
  }
}
@Module({
  controllers: [MeController],
  providers: [{ provide: TokendClient, useValue: tokend }, TokendAuthGuard],
})
class AppModule {}

async function startNest(): Promise<{ url: string; close: () => Promise<void> }> {
  const app = await NestFactory.create(AppModule, { logger: false });
  app.use(cookieParser());
  await app.listen(0, '127.0.0.1');
  const port = (app.getHttpServer().address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, close: () => app.close() };
}

// The Express app: no cookie-parser, so the middleware reads the Cookie header itself.
async function startExpress(): Promise<{ url: string; close: () => Promise<void> }> {
  const app = express();
  app.use('/me', tokendAuth({ client: tokend }));
  app.get('/me', (req, res) => {
    res.json(req.user);
  });
  const server = await new Promise<http.Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function main() {
  const alice = await mint({ sub: 'node-alice', email: 'alice@example.com', name: 'Alice', organizationId: 'org-a' });
  const bob = await mint({ sub: 'node-bob', email: 'bob@example.com', name: 'Bob', organizationId: 'org-b' });
  const expired = await mint({ sub: 'node-expired', ttl: -3600 }); // beyond the 60 s leeway
  const carol = await mint({ sub: 'node-carol', email: 'carol@example.com', name: 'Carol' });

  // The client.
  let aliceUser: TokendUser = { sub: '' };
  await check('client: valid token verifies with its claims', async () => {
    const c = await tokend.verify(alice.access_token);
    assert.deepEqual([c.sub, c.email, c.name, c.organizationId], ['node-alice', 'alice@example.com', 'Alice', 'org-a']);
    assert.equal(typeof c.role, 'string');
    aliceUser = { sub: c.sub, email: c.email, name: c.name, role: c.role, organizationId: c.organizationId };
  });
  await check('client: expired token refused (expired)', () =>
    rejects(tokend.verify(expired.access_token), InvalidToken, 'expired'),
  );
  await check('client: garbage refused (malformed)', () => rejects(tokend.verify('not-a-jwt'), InvalidToken, 'malformed'));
  await check('client: code issued, redeemed once, refused the second time', async () => {
    const code = await tokend.issueCode({ access_token: alice.access_token });
    remember(code);
    assert.equal(code.length, 43);
    const parked = await tokend.redeemCode(code);
    assert.equal(parked.access_token, alice.access_token);
    assert.equal(parked.claims.sub, 'node-alice');
    await rejects(tokend.redeemCode(code), CodeRefused, 'code_already_redeemed');
  });
  await check('client: unknown code refused (unknown_code)', () =>
    rejects(tokend.redeemCode('B'.repeat(43)), CodeRefused, 'unknown_code'),
  );

  const apps = { nest: await startNest(), express: await startExpress() };
  try {
    // Revoke carol's session now: the dev issuer sends tokend a real back-channel logout.
    await check('client: carol verifies before the logout', async () => {
      assert.equal((await tokend.verify(carol.access_token)).sub, 'node-carol');
    });
    const out = await tokend.request('POST', '/dev/logout', { sid: carol.sid });
    await check('dev back-channel logout sent', () => assert.deepEqual([out.status, out.body.sent], [200, true]));

    for (const [name, app] of Object.entries(apps)) {
      const me = `${app.url}/me`;
      const expectUser = async (headers: Record<string, string>, user: TokendUser) => {
        const r = await get(me, headers);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.deepEqual(r.body, user);
      };
      const expect401 = async (headers: Record<string, string>, reason: string) => {
        const r = await get(me, headers);
        assert.equal(r.status, 401, JSON.stringify(r.body));
        assert.equal(r.body.reason, reason);
      };
      await check(`${name}: Bearer token → 200 with request.user {sub, email, name, role, organizationId}`, () =>
        expectUser({ authorization: `Bearer ${alice.access_token}` }, aliceUser),
      );
      await check(`${name}: cookie ecosire_auth → 200 with the user`, () =>
        expectUser({ cookie: `theme=dark; ecosire_auth=${alice.access_token}` }, aliceUser),
      );
      await check(`${name}: cookie wins over Bearer`, async () => {
        const r = await get(me, { cookie: `ecosire_auth=${alice.access_token}`, authorization: `Bearer ${bob.access_token}` });
        assert.equal(r.status, 200);
        assert.equal(r.body.sub, 'node-alice');
      });
      await check(`${name}: a present but expired cookie decides (401 expired, though the Bearer is good)`, () =>
        expect401({ cookie: `ecosire_auth=${expired.access_token}`, authorization: `Bearer ${alice.access_token}` }, 'expired'),
      );
      await check(`${name}: an empty cookie falls through to Bearer`, async () => {
        const r = await get(me, { cookie: 'ecosire_auth=', authorization: `Bearer ${bob.access_token}` });
        assert.equal(r.status, 200);
        assert.equal(r.body.sub, 'node-bob');
      });
      await check(`${name}: expired token → 401 expired`, () =>
        expect401({ authorization: `Bearer ${expired.access_token}` }, 'expired'),
      );
      await check(`${name}: revoked token → 401 token_revoked`, () =>
        expect401({ authorization: `Bearer ${carol.access_token}` }, 'token_revoked'),
      );
      await check(`${name}: no token → 401 missing_token`, () => expect401({}, 'missing_token'));
      await check(`${name}: Basic auth is no token → 401 missing_token`, () =>
        expect401({ authorization: 'Basic dXNlcjpwYXNz' }, 'missing_token'),
      );
      await check(`${name}: garbage → 401 malformed`, () => expect401({ authorization: 'Bearer not-a-jwt' }, 'malformed'));
    }
  } finally {
    await apps.nest.close();
    await apps.express.close();
  }
  console.log('node: all checks passed');
}

main().catch((e) => {
  console.error(`FAIL node: ${current}\n${e instanceof Error ? e.stack : e}`);
  process.exit(1);
});
