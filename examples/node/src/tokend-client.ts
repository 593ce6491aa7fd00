// A tokend client for Node apps: node's `http` over tokend's Unix socket, no dependencies.
//
//   const tokend = new TokendClient({ socketPath: '/run/tokend/tokend.sock' });
//   const claims = await tokend.verify(token);      // throws InvalidToken with .reason
//   const code = await tokend.issueCode({ access_token, refresh_token });
//   const tokens = await tokend.redeemCode(code);   // once; again: CodeRefused 'code_already_redeemed'
//
// Every refusal is a TokendError carrying tokend's machine-readable `reason` (README,
// "Reasons") and the HTTP status. Tokens are never put in an error's message.

import * as http from 'node:http';

/** The `claims` of a `/v1/verify` answer (README, "POST /v1/verify"). */
export interface TokendClaims {
  sub: string;
  email?: string;
  name?: string;
  preferred_username?: string;
  organizationId?: string;
  groups?: string[];
  role?: string;
  scope?: string;
  exp: number;
  extra?: Record<string, unknown>;
}

export interface RedeemedCode {
  access_token: string;
  refresh_token: string | null;
  id_token: string | null;
  claims: TokendClaims;
}

export class TokendError extends Error {
  constructor(
    /** HTTP status; 0 when tokend could not be reached. */
    readonly status: number,
    /** tokend's stable machine-readable reason, e.g. `expired`, `token_revoked`. */
    readonly reason: string,
    message: string,
  ) {
    super(message ? `${reason} (${status}): ${message}` : `${reason} (${status})`);
    this.name = new.target.name;
  }
}
/** 401: the token is not (or no longer) good. */
export class InvalidToken extends TokendError {}
/** 404 `unknown_code`, 410 `code_expired` / `code_already_redeemed`. */
export class CodeRefused extends TokendError {}
/** tokend cannot answer now (5xx, or `unreachable`): not the user's fault — answer 503. */
export class Unavailable extends TokendError {}

function errorFor(status: number, reason: string, message: string): TokendError {
  if (status === 401) return new InvalidToken(status, reason, message);
  if (['unknown_code', 'code_expired', 'code_already_redeemed'].includes(reason)) {
    return new CodeRefused(status, reason, message);
  }
  if (status >= 500) return new Unavailable(status, reason, message);
  return new TokendError(status, reason, message);
}

export interface TokendClientOptions {
  /** Default: $TOKEND_SOCKET, else /run/tokend/tokend.sock. */
  socketPath?: string;
  /** Per request; default 5000 ms. */
  timeoutMs?: number;
}

export class TokendClient {
  readonly socketPath: string;
  readonly timeoutMs: number;

  constructor(options: TokendClientOptions = {}) {
    this.socketPath = options.socketPath ?? process.env.TOKEND_SOCKET ?? '/run/tokend/tokend.sock';
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  /** The verified claims of `token` (a leading `Bearer ` is tolerated), or InvalidToken. */
  async verify(token: string): Promise<TokendClaims> {
    const body = await this.call<{ claims: TokendClaims }>('POST', '/v1/verify', { token });
    return body.claims;
  }

  /** Parks the tokens under a one-time code (60 s); the access token is verified first. */
  async issueCode(tokens: { access_token: string; refresh_token?: string; id_token?: string }): Promise<string> {
    const body = await this.call<{ code: string }>('POST', '/v1/codes', tokens);
    return body.code;
  }

  /** The parked tokens and their claims, exactly once per code. */
  redeemCode(code: string): Promise<RedeemedCode> {
    return this.call<RedeemedCode>('POST', '/v1/codes/redeem', { code });
  }

  /** Status and parsed JSON body of any endpoint, without throwing on an error status. */
  request(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          method,
          path,
          headers: {
            host: 'tokend',
            ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}),
          },
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (e) => reject(new Unavailable(0, 'unreachable', e.message)));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            try {
              resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : {} });
            } catch {
              reject(new Unavailable(res.statusCode ?? 0, 'bad_response', "tokend's answer is not JSON"));
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (e) => reject(new Unavailable(0, 'unreachable', `${this.socketPath}: ${e.message}`)));
      req.end(data);
    });
  }

  private async call<T>(method: string, path: string, body: unknown): Promise<T> {
    const res = await this.request(method, path, body);
    if (res.status >= 200 && res.status < 300) return res.body as T;
    throw errorFor(res.status, res.body?.reason ?? 'unknown', res.body?.message ?? '');
  }
}
