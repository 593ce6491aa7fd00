// Express middleware doing what the NestJS guard does: the token from cookie `ecosire_auth`
// (a present cookie decides) else `Authorization: Bearer`, verified by tokend, `req.user` =
// {sub, email, name, role, organizationId}; otherwise 401 {reason} (503 when tokend cannot
// answer). Works with or without cookie-parser.
//
//   app.use('/api', tokendAuth({ client: new TokendClient({ socketPath: '/run/tokend/tokend.sock' }) }));
//   app.get('/api/me', (req, res) => res.json(req.user));

import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { authenticate, TokendAuthOptions, TokendUser } from './auth';
import { TokendClient } from './tokend-client';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      user?: TokendUser;
    }
  }
}

export function tokendAuth(options: TokendAuthOptions & { client?: TokendClient } = {}): RequestHandler {
  const client = options.client ?? new TokendClient();
  return (req: Request, res: Response, next: NextFunction) => {
    authenticate(client, req, options.cookieName).then((outcome) => {
      if (!outcome.ok) {
        res.status(outcome.status).json({ statusCode: outcome.status, reason: outcome.reason });
        return;
      }
      req.user = outcome.user;
      next();
    }, next);
  };
}
