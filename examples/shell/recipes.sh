#!/usr/bin/env bash
# curl recipes for tokend — documentation you can run. Each recipe below is a plain curl
# command; run against `tokend dev`, the script also checks every answer and exits non-zero on
# the first one that differs:
#
#   tokend dev --socket /tmp/tokend.sock --http 127.0.0.1:9180 &
#   TOKEND_SOCKET=/tmp/tokend.sock TOKEND_HTTP=http://127.0.0.1:9180 bash examples/shell/recipes.sh
#
# Needs only bash, curl, grep and sed. Tokens go to curl on stdin (`-d @-`, `-H @-`), never
# on its command line, where other users of the host could read them (ps).
# With $EXAMPLES_SECRETS set, every token and code is appended to that file (run-tests checks
# that tokend never printed them).
set -euo pipefail

SOCK="${TOKEND_SOCKET:-/run/tokend/tokend.sock}"
HTTP="${TOKEND_HTTP:-}"   # tokend's TCP listener, e.g. http://127.0.0.1:9180
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------------------------------------
# The recipes. Each prints the HTTP status; the answer's body is in $work/body.
#   $1 path, stdin the JSON body
post() { curl -sS --unix-socket "$SOCK" -o "$work/body" -D "$work/headers" -w '%{http_code}' \
              -H 'Content-Type: application/json' -d @- "http://tokend$1"; }
#   $1 path; stdin: extra header lines, e.g. "Authorization: Bearer $TOKEN"
get_with() { curl -sS --unix-socket "$SOCK" -o "$work/body" -D "$work/headers" -w '%{http_code}' \
              -H @- "http://tokend$1"; }
#   The same over TCP: $1 path; stdin: header lines
get_tcp() { curl -sS -o "$work/body" -D "$work/headers" -w '%{http_code}' -H @- "$HTTP$1"; }
#   One string field of the last answer (tokend's JSON has no escapes in these fields).
field() { sed -nE "s/.*\"$1\":\"([^\"]*)\".*/\\1/p" "$work/body"; }
# ---------------------------------------------------------------------------------------------

remember() { if [ -n "${EXAMPLES_SECRETS:-}" ] && [ -n "$1" ]; then printf '%s\n' "$1" >>"$EXAMPLES_SECRETS"; fi; }
fail() { echo "FAIL shell: $1" >&2; echo "  status $2, body: $(head -c 400 "$work/body")" >&2; exit 1; }
# expect WHAT STATUS EXPECTED_STATUS FIXED_STRING_IN_BODY
expect() {
  [ "$2" = "$3" ] || fail "$1: expected status $3" "$2"
  grep -qF -- "$4" "$work/body" || fail "$1: expected $4 in the body" "$2"
  echo "ok   shell: $1"
}

# Is tokend ready (verification keys loaded)?
status=$(curl -sS --unix-socket "$SOCK" -o "$work/body" -w '%{http_code}' http://tokend/readyz)
expect "readyz" "$status" 200 '"ready":true'

# Mint a token at the dev issuer (tokend dev only; in production the token comes from Authentik).
status=$(echo '{"sub":"sh-jane","email":"jane@example.com","name":"Jane Doe","organizationId":"org-sh"}' | post /dev/token)
expect "dev token minted" "$status" 200 '"access_token":"'
TOKEN=$(field access_token); SID=$(field sid); remember "$TOKEN"

# Verify: POST /v1/verify {"token": …}
status=$(printf '{"token":"%s"}' "$TOKEN" | post /v1/verify)
expect "POST /v1/verify: valid" "$status" 200 '"active":true'
expect "POST /v1/verify: the claims" "$status" 200 '"sub":"sh-jane"'
grep -qF '"organizationId":"org-sh"' "$work/body" || fail "organizationId in the claims" "$status"

# Verify: GET /v1/verify with the Bearer header …
status=$(printf 'Authorization: Bearer %s\n' "$TOKEN" | get_with /v1/verify)
expect "GET /v1/verify, Bearer: valid" "$status" 200 '"email":"jane@example.com"'

# … or with the access cookie, here over TCP (the same API as the socket).
if [ -n "$HTTP" ]; then
  status=$(printf 'Cookie: ecosire_auth=%s\n' "$TOKEN" | get_tcp /v1/verify)
  expect "GET /v1/verify over TCP, cookie: valid" "$status" 200 '"sub":"sh-jane"'
else
  echo "SKIP shell: the TCP recipe (set TOKEND_HTTP)" >&2
fi

# Refusals: 401 with a machine-readable reason and WWW-Authenticate.
status=$(echo '{"sub":"sh-old","ttl":-3600}' | post /dev/token)   # an hour ago: beyond the leeway
expect "dev token minted (expired)" "$status" 200 '"access_token":"'
EXPIRED=$(field access_token); remember "$EXPIRED"
status=$(printf '{"token":"%s"}' "$EXPIRED" | post /v1/verify)
expect "expired token refused" "$status" 401 '"reason":"expired"'
grep -qi '^www-authenticate: Bearer error="invalid_token"' "$work/headers" || fail "WWW-Authenticate on a 401" "$status"

status=$(printf '' | get_with /v1/verify)
expect "no token refused" "$status" 401 '"reason":"missing_token"'

status=$(echo '{"token":"not-a-jwt"}' | post /v1/verify)
expect "garbage refused" "$status" 401 '"reason":"malformed"'

# Exchange codes: POST /v1/codes parks tokens (the access token is verified first) …
status=$(printf '{"access_token":"%s","refresh_token":"sh-refresh-opaque"}' "$TOKEN" | post /v1/codes)
expect "code issued" "$status" 201 '"expires_in":'
CODE=$(field code); remember "$CODE"
[ "${#CODE}" = 43 ] || fail "the code has 43 characters (got ${#CODE})" "$status"

# … POST /v1/codes/redeem hands them out once.
status=$(printf '{"code":"%s"}' "$CODE" | post /v1/codes/redeem)
expect "code redeemed" "$status" 200 '"refresh_token":"sh-refresh-opaque"'
[ "$(field access_token)" = "$TOKEN" ] || fail "the redeemed access token is the parked one" "$status"
status=$(printf '{"code":"%s"}' "$CODE" | post /v1/codes/redeem)
expect "second redemption refused" "$status" 410 '"reason":"code_already_redeemed"'
status=$(echo '{"code":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}' | post /v1/codes/redeem)
expect "unknown code refused" "$status" 404 '"reason":"unknown_code"'
status=$(printf '{"access_token":"%s"}' "$EXPIRED" | post /v1/codes)
expect "no code for an expired token" "$status" 401 '"reason":"expired"'

# Back-channel logout (tokend dev's issuer sends a real one to tokend): the session's tokens
# are refused from then on.
status=$(printf '{"sid":"%s"}' "$SID" | post /dev/logout)
expect "dev back-channel logout sent" "$status" 200 '"sent":true'
status=$(printf '{"token":"%s"}' "$TOKEN" | post /v1/verify)
expect "revoked token refused" "$status" 401 '"reason":"token_revoked"'

# The admin API (operators only) answers on its own socket — tokend-admin.sock beside the
# app socket unless [admin] socket says otherwise — and nowhere else: 404 on the app socket
# and over TCP.
ADMIN_SOCK="${TOKEND_ADMIN_SOCKET:-$(dirname "$SOCK")/tokend-admin.sock}"
status=$(curl -sS --unix-socket "$ADMIN_SOCK" -o "$work/body" -w '%{http_code}' http://tokend/v1/admin/sessions)
expect "admin API on the admin socket" "$status" 200 '"sessions":'
status=$(curl -sS --unix-socket "$SOCK" -o "$work/body" -w '%{http_code}' http://tokend/v1/admin/sessions)
expect "admin API absent from the app socket" "$status" 404 '"reason":'
if [ -n "$HTTP" ]; then
  status=$(printf '' | get_tcp /v1/admin/sessions)
  expect "admin API absent over TCP" "$status" 404 '"reason":'
fi

echo "shell: all checks passed"
