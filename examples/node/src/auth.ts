// What the NestJS guard and the Express middleware share: where the token comes from, and the
// `request.user` the reference design's passport-jwt JwtStrategy produced.

import type { IncomingHttpHeaders } from 'node:http';
import { TokendClaims, TokendClient, TokendError, Unavailable } from './tokend-client';

/** `request.user`, the shape JwtStrategy.validate() returned. */
export interface TokendUser {
  sub: string;
  email?: string;
  name?: string;
  role?: string;
  organizationId?: string;
}

export function userFromClaims(c: TokendClaims): TokendUser {
  return { sub: c.sub, email: c.email, name: c.name, role: c.role, organizationId: c.organizationId };
}

export interface TokendAuthOptions {
  /** The access cookie; tokend's `cookies.access_name`, default `ecosire_auth`. */
  cookieName?: string;
}

interface RequestLike {
  headers: IncomingHttpHeaders;
  /** Set by cookie-parser, when the app uses it. */
  cookies?: Record<string, unknown>;
}

/**
 * passport-jwt's `ExtractJwt.fromExtractors([cookie, fromAuthHeaderAsBearerToken()])`: the
 * access cookie when it has a value — and then it decides, even when it is invalid and a good
 * Bearer header came along — else `Authorization: Bearer …`. Null when there is neither.
 */
export function tokenFromRequest(req: RequestLike, cookieName = 'ecosire_auth'): string | null {
  const cookie = req.cookies ? req.cookies[cookieName] : cookieFromHeader(req.headers.cookie, cookieName);
  if (typeof cookie === 'string' && cookie !== '') return cookie;
  const auth = req.headers.authorization;
  const m = typeof auth === 'string' ? /^bearer +(\S+)\s*$/i.exec(auth) : null;
  return m ? m[1] : null;
}

/** The first cookie `name` in a Cookie header (for apps without cookie-parser). */
function cookieFromHeader(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      let value = part.slice(eq + 1).trim();
      if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
      try {
        return decodeURIComponent(value);
      } catch {
        return value;
      }
    }
  }
  return undefined;
}

/** The outcome for one request: the user, or the status and reason to answer with. */
export type AuthOutcome =
  | { ok: true; user: TokendUser }
  | { ok: false; status: 401 | 503; reason: string };

export async function authenticate(tokend: TokendClient, req: RequestLike, cookieName?: string): Promise<AuthOutcome> {
  const token = tokenFromRequest(req, cookieName);
  if (token === null) return { ok: false, status: 401, reason: 'missing_token' };
  try {
    return { ok: true, user: userFromClaims(await tokend.verify(token)) };
  } catch (e) {
    if (e instanceof TokendError) {
      // tokend down, no keys, or an answer the app cannot use (5xx, `unreachable`): not the
      // user's fault, so not a 401 that would log the browser out. Anything else tokend
      // refused (401; 413 for an oversized token) is the token's fault.
      const unavailable = e instanceof Unavailable || e.status >= 500 || e.status === 0;
      return { ok: false, status: unavailable ? 503 : 401, reason: e.reason };
    }
    throw e;
  }
}
