"""Demo and test of tokend_client.py against `tokend dev` (examples/run-tests runs it).

    tokend dev --socket /tmp/tokend.sock &
    TOKEND_SOCKET=/tmp/tokend.sock python3 examples/python/demo.py

Mints tokens at the dev issuer (POST /dev/token), then: a valid token verifies with its claims;
an expired one, a revoked one (after a back-channel logout from the dev issuer) and garbage are
refused with their reasons; a code is issued, redeemed once and refused the second time. Exits
non-zero on the first answer that differs. With $EXAMPLES_SECRETS set, appends every token and
code it saw to that file (run-tests checks that tokend never printed them).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokend_client import (  # noqa: E402
    CodeRefused,
    InvalidToken,
    Tokend,
    TokendError,
    TokenExpired,
    TokenRevoked,
)

tokend = Tokend()  # $TOKEND_SOCKET


def unexpected(exc_type, exc, tb):
    """An exception where a check expected an answer (e.g. a valid token refused)."""
    print(f"FAIL python: unexpected {exc_type.__name__}: {exc}", file=sys.stderr)
    sys.__excepthook__(exc_type, exc, tb)


sys.excepthook = unexpected
secrets_file = os.environ.get("EXAMPLES_SECRETS")


def remember(secret):
    if secrets_file and secret:
        with open(secrets_file, "a") as f:
            f.write(secret + "\n")


def mint(**claims):
    """A token from the dev issuer (dev only: `tokend dev` serves /dev/token)."""
    status, body = tokend.request("POST", "/dev/token", claims)
    if status != 200:
        sys.exit(f"FAIL python: POST /dev/token answered {status} {body}")
    remember(body["access_token"])
    return body


def check(what, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} python: {what}" + (f" — {detail}" if detail and not ok else ""))
    if not ok:
        sys.exit(1)


def refused(what, exc_type, reason, call):
    try:
        got = call()
    except TokendError as e:
        check(what, isinstance(e, exc_type) and e.reason == reason,
              f"expected {exc_type.__name__}({reason}), got {type(e).__name__}({e.reason})")
        return
    check(what, False, f"expected {exc_type.__name__}({reason}), got success")


# A valid token: the claims come back.
jane = mint(sub="py-jane", email="jane@example.com", name="Jane Doe", organizationId="org-py",
            groups=["staff"])
claims = tokend.verify(jane["access_token"])
check("valid token verifies", claims.get("sub") == "py-jane", f"sub = {claims.get('sub')!r}")
check("claims carry email, name, organizationId",
      (claims.get("email"), claims.get("name"), claims.get("organizationId"))
      == ("jane@example.com", "Jane Doe", "org-py"),
      repr((claims.get("email"), claims.get("name"), claims.get("organizationId"))))
check("claims carry a role", isinstance(claims.get("role"), str), repr(claims.get("role")))
check("a 'Bearer ' prefix is tolerated",
      tokend.verify("Bearer " + jane["access_token"]).get("sub") == "py-jane")

# Refusals, each with its reason.
expired = mint(sub="py-expired", ttl=-3600)  # an hour ago: beyond the 60 s leeway
refused("expired token refused", TokenExpired, "expired", lambda: tokend.verify(expired["access_token"]))
refused("garbage refused", InvalidToken, "malformed", lambda: tokend.verify("not-a-jwt"))
refused("empty token refused", InvalidToken, "missing_token", lambda: tokend.verify(""))
head, payload, sig = jane["access_token"].split(".")
tampered = ".".join([head, payload, ("B" if sig[0] == "A" else "A") + sig[1:]])
refused("a tampered signature is refused", InvalidToken, "bad_signature",
        lambda: tokend.verify(tampered))

# Exchange codes: issued for a good token, redeemed exactly once.
code = tokend.issue_code(jane["access_token"], refresh_token="py-refresh-token-opaque")
remember(code)
check("code issued (43 chars)", isinstance(code, str) and len(code) == 43, f"len {len(code)}")
parked = tokend.redeem_code(code)
check("code redeemed: the same access token",
      parked.get("access_token") == jane["access_token"])
check("code redeemed: the refresh token and claims",
      parked.get("refresh_token") == "py-refresh-token-opaque" and parked["claims"]["sub"] == "py-jane",
      repr((parked.get("refresh_token"), parked["claims"].get("sub"))))
refused("second redemption refused", CodeRefused, "code_already_redeemed",
        lambda: tokend.redeem_code(code))
refused("unknown code refused", CodeRefused, "unknown_code",
        lambda: tokend.redeem_code("A" * 43))
refused("no code for an expired token", InvalidToken, "expired",
        lambda: tokend.issue_code(expired["access_token"]))

# Revocation: the dev issuer sends a real back-channel logout for the token's session.
bob = mint(sub="py-bob", email="bob@example.com", name="Bob")
check("token verifies before logout", tokend.verify(bob["access_token"]).get("sub") == "py-bob")
status, body = tokend.request("POST", "/dev/logout", {"sid": bob["sid"]})
check("dev back-channel logout sent", status == 200 and body.get("sent") is True, f"{status} {body}")
refused("revoked token refused", TokenRevoked, "token_revoked",
        lambda: tokend.verify(bob["access_token"]))
refused("no code for a revoked token", InvalidToken, "token_revoked",
        lambda: tokend.issue_code(bob["access_token"]))
check("another session of another user still verifies",
      tokend.verify(jane["access_token"]).get("sub") == "py-jane")

print("python: all checks passed")
