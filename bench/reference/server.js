// bench/run's reference verifier, written the way the reference design verifies tokens:
// express + cookie-parser + passport + passport-jwt, keys from jwks-rsa's passportJwtSecret
// (cache and rate limit on), RS256 only, issuer and audience checked, the token taken from the
// `ecosire_auth` cookie, then from `Authorization: Bearer`. Every path is protected; a valid token
// gets 200 with its claims, anything else passport's 401.
//
// node server.js --port PORT --issuer ISSUER --jwks JWKS_URL --audience CLIENT_ID
// Prints one JSON line {"port": N} on stdout when listening.
'use strict';
const { parseArgs } = require('node:util');
const express = require('express');
const cookieParser = require('cookie-parser');
const passport = require('passport');
const { Strategy: JwtStrategy, ExtractJwt } = require('passport-jwt');
const { passportJwtSecret } = require('jwks-rsa');

const { values: argv } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    issuer: { type: 'string' },
    jwks: { type: 'string' },
    audience: { type: 'string' },
  },
});
for (const k of ['issuer', 'jwks', 'audience']) {
  if (!argv[k]) throw new Error(`--${k} is required`);
}

const fromCookie = (req) => (req && req.cookies ? req.cookies.ecosire_auth || null : null);

passport.use(new JwtStrategy({
  jwtFromRequest: ExtractJwt.fromExtractors([fromCookie, ExtractJwt.fromAuthHeaderAsBearerToken()]),
  secretOrKeyProvider: passportJwtSecret({
    jwksUri: argv.jwks,
    cache: true,
    cacheMaxEntries: 5,
    cacheMaxAge: 10 * 60 * 1000,
    rateLimit: true,
    jwksRequestsPerMinute: 10,
  }),
  algorithms: ['RS256'],
  issuer: argv.issuer,
  audience: argv.audience,
}, (payload, done) => done(null, payload)));

const app = express();
app.disable('x-powered-by');
app.use(cookieParser());
app.use(passport.initialize());
app.use(passport.authenticate('jwt', { session: false }));
app.use((req, res) => res.json({ valid: true, claims: req.user }));

const server = app.listen(Number(argv.port), '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
