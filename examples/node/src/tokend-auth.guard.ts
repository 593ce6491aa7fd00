// A NestJS guard that replaces the reference design's passport-jwt `JwtStrategy` +
// `AuthGuard('jwt')`: instead of checking the JWT itself against the JWKS, it asks tokend.
// Same token order (cookie `ecosire_auth` first — a present cookie decides, even an invalid
// one — then `Authorization: Bearer`), same `request.user`: {sub, email, name, role,
// organizationId}. Refusals answer 401 with tokend's reason; tokend unreachable answers 503.
//
//   @Module({
//     providers: [{ provide: TokendClient, useValue: new TokendClient({ socketPath: '/run/tokend/tokend.sock' }) },
//                 TokendAuthGuard],
//   })
//   ...
//   @UseGuards(TokendAuthGuard)
//   @Get('me') me(@Req() req) { return req.user; }

import { CanActivate, ExecutionContext, HttpException, Inject, Injectable, Optional } from '@nestjs/common';
import { authenticate, TokendUser } from './auth';
import { TokendClient } from './tokend-client';

/** Optional provider: the access cookie's name when it is not `ecosire_auth`. */
export const TOKEND_COOKIE_NAME = 'TOKEND_COOKIE_NAME';

@Injectable()
export class TokendAuthGuard implements CanActivate {
  constructor(
    private readonly tokend: TokendClient,
    @Optional() @Inject(TOKEND_COOKIE_NAME) private readonly cookieName?: string,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const req = context.switchToHttp().getRequest<{ headers: any; cookies?: any; user?: TokendUser }>();
    const outcome = await authenticate(this.tokend, req, this.cookieName);
    if (!outcome.ok) {
      // The body passport's guard gave ({statusCode, message}), plus tokend's reason.
      const message = outcome.status === 401 ? 'Unauthorized' : 'Service Unavailable';
      throw new HttpException({ statusCode: outcome.status, message, reason: outcome.reason }, outcome.status);
    }
    req.user = outcome.user;
    return true;
  }
}
