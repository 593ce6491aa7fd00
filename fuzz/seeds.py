#!/usr/bin/env python3
"""Writes the committed seed corpora of fuzz/ (issue #9): Authentik-shaped tokens and documents
(shared docs "authentik.md" §1-3), the attack cases of the tests, and edge cases. Deterministic;
rerun after changing it: `python3 fuzz/seeds.py`. Needs the `cryptography` package to sign the
raw tokens with the benchmark keys (daemon/benches/fixtures)."""
import base64, hashlib, hmac, json, os, shutil
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "daemon", "benches", "fixtures")
ISSUER = "http://127.0.0.1:1/application/o/fuzz/"
CLIENT = "fuzz"
SECRET = b"fuzz-client-secret-not-a-real-one"
EXP, IAT = 4102444800, 1700000000  # 2100, 2023: valid for as long as this corpus lives

def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def js(v): return json.dumps(v, separators=(",", ":")).encode()

rsa = serialization.load_pem_private_key(open(os.path.join(FIX, "bench-rsa-2048.pem"), "rb").read(), None)
eck = serialization.load_pem_private_key(open(os.path.join(FIX, "bench-ec-p256.pem"), "rb").read(), None)

def sign(header, payload, how):
    if isinstance(header, dict): header = js(header)
    if isinstance(payload, dict): payload = js(payload)
    msg = (b64(header) + "." + b64(payload)).encode()
    if how == "RS256":
        sig = rsa.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    elif how == "ES256":
        r, s = utils.decode_dss_signature(eck.sign(msg, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif how == "HS256":
        sig = hmac.new(SECRET, msg, hashlib.sha256).digest()
    else:
        sig = b""
    return msg.decode() + "." + b64(sig)

access = {
    "iss": ISSUER, "sub": "f0c3d0a6c6d93e1a6f1c5d6b7d1c1f3b2e6f9a8b7c6d5e4f3a2b1c0d9e8f7a6b",
    "aud": CLIENT, "exp": EXP, "iat": IAT, "auth_time": IAT - 10,
    "acr": "goauthentik.io/providers/oauth2/default", "amr": ["pwd", "mfa"],
    "sid": "9b2d5c1e4f" + "0" * 54, "jti": "Qx7lW2mB9rT4kP0aZ3sD8fG1hJ6nV5cX2yU7iO9e",
    "email": "jane@example.com", "email_verified": False, "name": "Jane Doe",
    "given_name": "Jane Doe", "preferred_username": "jane", "nickname": "jane",
    "groups": ["ecosire-admins", "developers"], "organizationId": "org-1",
    "azp": CLIENT, "uid": "a" * 40, "scope": "openid email profile offline_access",
}
idt = {k: v for k, v in access.items() if k not in ("azp", "uid", "scope")}
idt["nonce"] = "fuzz-nonce"
logout = {"iss": ISSUER, "aud": CLIENT, "iat": IAT, "exp": EXP,
          "jti": "2f1c9a7e-6b3d-4c1a-9f0e-8d7c6b5a4e3f",
          "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
          "sub": access["sub"], "sid": access["sid"]}
H_RS = {"alg": "RS256", "kid": "bench-rsa-2048", "typ": "JWT"}
H_ES = {"alg": "ES256", "kid": "bench-ec-p256", "typ": "JWT"}
H_HS = {"alg": "HS256", "typ": "JWT"}

def reset(name):
    d = os.path.join(HERE, "corpus", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d

def write(d, name, data):
    if isinstance(data, str): data = data.encode()
    open(os.path.join(d, name), "wb").write(data)

def token_seeds(name, payloads):
    d = reset(name)
    for pname, p in payloads.items():
        for hname, h in [("es", H_ES), ("hs", H_HS)]:
            write(d, f"signed-{pname}-{hname}", b"S" + js(h) + b"\0" + js(p))
        write(d, f"raw-{pname}-rs256", "R" + sign(H_RS, js(p), "RS256"))
        write(d, f"raw-{pname}-es256", "R" + sign(H_ES, js(p), "ES256"))
        write(d, f"raw-{pname}-hs256", "R" + sign(H_HS, js(p), "HS256"))
    base = payloads["authentik"]
    # Header oddities (signed mode: the signature is right, the header is the question).
    for i, h in enumerate([
        {"alg": "none"}, {"alg": "NONE", "kid": "bench-ec-p256"}, {"alg": "ES256"},
        {"alg": "ES256", "kid": "bench-ec-p256", "crit": ["exp"]},
        {"alg": "ES256", "kid": "bench-ec-p256", "cty": "JWT"},
        {"alg": "ES256", "kid": "bench-ec-p256", "zip": "DEF"},
        {"alg": "ES256", "kid": "bench-ec-p256", "typ": "id_token+jwt"},
        {"alg": "ES256", "kid": "bench-ec-p256", "typ": "at+jwt"},
        {"alg": "ES256", "kid": "bench-ec-p256", "typ": "logout+jwt"},
        {"alg": "RS256", "kid": "bench-ec-p256"}, {"alg": "HS256", "kid": "bench-rsa-2048"},
        {"alg": "ES256", "kid": "../../etc/passwd"}, {"alg": "ES256", "kid": None},
        {"alg": "ES256", "kid": 7}, {"alg": ["ES256"]}, {"alg": "ES512"}, {"alg": "EdDSA"},
        {"alg": "HS384"}, {"alg": "PS256", "kid": "bench-rsa-2048"},
    ]):
        write(d, f"signed-header-{i:02}", b"S" + js(h) + b"\0" + js(base))
    write(d, "signed-header-duplicate-alg", b'S{"alg":"none","alg":"ES256","kid":"bench-ec-p256"}\0' + js(base))
    write(d, "signed-header-not-json", b"S\xff\xfe{\0" + js(base))
    # Payload oddities.
    odd = []
    for k, v in [("exp", 1e308), ("exp", -9223372036854775808), ("exp", 9223372036854775807),
                 ("exp", 18446744073709551615), ("exp", "4102444800"), ("exp", 4102444800.5),
                 ("iat", 1e19), ("iat", -1e19), ("nbf", 9223372036854775807), ("nbf", 1e300),
                 ("aud", [CLIENT, "other"]), ("aud", []), ("aud", None), ("aud", [[CLIENT]]),
                 ("iss", ISSUER.rstrip("/")), ("iss", ISSUER.upper()), ("sub", ""), ("sub", 12),
                 ("sid", None), ("groups", "ecosire-admins"), ("groups", [1, None, {}]),
                 ("events", {}), ("nonce", None), ("azp", "other")]:
        p = dict(base); p[k] = v; odd.append(p)
    for i, p in enumerate(odd):
        write(d, f"signed-payload-{i:02}", b"S" + js(H_ES) + b"\0" + js(p))
    dup = js(base)[:-1] + b',"iss":"https://evil.example/","aud":"other","exp":1}'
    write(d, "signed-payload-duplicate-keys", b"S" + js(H_ES) + b"\0" + dup)
    write(d, "signed-payload-nested", b"S" + js(H_ES) + b"\0" + js(base)[:-1] + b',"x":' + b"[" * 200 + b"]" * 200 + b"}")
    write(d, "signed-payload-big-number", b"S" + js(H_ES) + b"\0" + js(base)[:-1] + b',"n":1' + b"0" * 400 + b"}")
    write(d, "signed-payload-array", b"S" + js(H_ES) + b"\0[1,2,3]")
    write(d, "signed-payload-bom", b"S" + js(H_ES) + b"\0\xef\xbb\xbf" + js(base))
    # Raw shapes.
    t = sign(H_RS, js(base), "RS256")
    hp, s = t.rsplit(".", 1)
    for i, raw in enumerate([
        "", ".", "..", "a.b.c", "a.b.c.d.e", hp + ".", hp, t + ".", t.replace(".", ".."),
        hp + "." + s[:-2], hp + "." + s + "=", hp + "." + s.replace("-", "+"),
        b64(js({"alg": "none"})) + "." + b64(js(base)) + ".",
        "Bearer " + t, " " + t + " ", t + "\u00e9",
        # HS256 signed with the RSA public key's JWK text as secret (key confusion).
        b64(js({"alg": "HS256", "kid": "bench-rsa-2048"})) + "." + b64(js(base)) + "." + b64(hmac.new(open(os.path.join(FIX, "bench-rsa-2048.jwk.json"), "rb").read(), (b64(js({"alg": "HS256", "kid": "bench-rsa-2048"})) + "." + b64(js(base))).encode(), hashlib.sha256).digest()),
        # A JWE (5 parts), Authentik's encrypted ID token shape.
        "eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIn0.a.b.c.d",
    ]):
        write(d, f"raw-shape-{i:02}", "R" + raw)

token_seeds("verify_token", {"authentik": access, "id-token": idt,
                             "aud-array": dict(access, aud=[CLIENT, "x"]),
                             "float-times": dict(access, exp=EXP + 0.5, iat=IAT + 0.25, nbf=IAT)})
token_seeds("logout_token", {"authentik": logout, "sid-only": {k: v for k, v in logout.items() if k != "sub"},
                             "sub-only": {k: v for k, v in logout.items() if k != "sid"},
                             "access-at-logout": dict(access, exp=IAT)})
# The logout header is logout+jwt.
d = os.path.join(HERE, "corpus", "logout_token")
write(d, "signed-logout-typ", b"S" + js(dict(H_ES, typ="logout+jwt")) + b"\0" + js(logout))
write(d, "raw-logout-typ-rs256", "R" + sign(dict(H_RS, typ="logout+jwt"), js(logout), "RS256"))
write(d, "signed-logout-with-nonce", b"S" + js(H_ES) + b"\0" + js(dict(logout, nonce="n")))
write(d, "signed-logout-no-event", b"S" + js(H_ES) + b"\0" + js(dict(logout, events={"x": {}})))
write(d, "signed-logout-event-not-object", b"S" + js(H_ES) + b"\0" + js(dict(logout, events={"http://schemas.openid.net/event/backchannel-logout": True})))

# JWKS.
d = reset("jwks")
rsa_jwk = json.load(open(os.path.join(FIX, "bench-rsa-2048.jwk.json")))
ec_jwk = json.load(open(os.path.join(FIX, "bench-ec-p256.jwk.json")))
x5 = {"x5c": ["MIIBszCCAVmgAwIBAgIUQ=="], "x5t": "abc", "x5t#S256": "def"}
for name, doc in {
    "authentik-rsa": {"keys": [dict(rsa_jwk, **x5)]},
    "authentik-ec": {"keys": [ec_jwk]},
    "authentik-no-key": {},
    "both": {"keys": [rsa_jwk, ec_jwk]},
    "with-enc-key": {"keys": [rsa_jwk, dict(rsa_jwk, kid="enc", use="enc", alg="RSA-OAEP-256", enc="A256CBC-HS512")]},
    "no-kid": {"keys": [{k: v for k, v in rsa_jwk.items() if k != "kid"}]},
    "no-alg": {"keys": [{k: v for k, v in rsa_jwk.items() if k != "alg"}, {k: v for k, v in ec_jwk.items() if k != "alg"}]},
    "duplicate-kid": {"keys": [rsa_jwk, dict(ec_jwk, kid="bench-rsa-2048")]},
    "oct": {"keys": [{"kty": "oct", "k": b64(SECRET), "kid": "bench-rsa-2048", "alg": "HS256"}]},
    "x5c-wrong-shape": {"keys": [dict(rsa_jwk, x5c="not-a-list", x5t=1)]},
    "rsa-tiny": {"keys": [dict(rsa_jwk, n="AQAB")]},
    "rsa-e-huge": {"keys": [dict(rsa_jwk, e=b64(b"\xff" * 64))]},
    "ec-p384": {"keys": [dict(ec_jwk, crv="P-384", alg="ES384")]},
    "ec-p521": {"keys": [dict(ec_jwk, crv="P-521", alg="ES512", kid="p521")]},
    "ec-secp256k1": {"keys": [dict(ec_jwk, crv="secp256k1")]},
    "okp-ed25519": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64(b"\x01" * 32), "kid": "ed"}]},
    "okp-x25519": {"keys": [{"kty": "OKP", "crv": "X25519", "x": b64(b"\x01" * 32)}]},
    "alg-mismatch": {"keys": [dict(ec_jwk, alg="RS256")]},
    "unknown-alg": {"keys": [dict(rsa_jwk, alg="RSA1_5")]},
    "keys-null": {"keys": None},
    "keys-object": {"keys": {}},
    "entry-not-object": {"keys": [1, "x", None, []]},
}.items():
    write(d, name, js(doc))
write(d, "not-json", b"<html>502 Bad Gateway</html>")
write(d, "duplicate-keys-member", b'{"keys":[],"keys":' + js([rsa_jwk]) + b"}")

# Discovery.
d = reset("discovery")
disc = {
  "issuer": "https://auth.example.com/application/o/shop/",
  "authorization_endpoint": "https://auth.example.com/application/o/authorize/",
  "token_endpoint": "https://auth.example.com/application/o/token/",
  "userinfo_endpoint": "https://auth.example.com/application/o/userinfo/",
  "end_session_endpoint": "https://auth.example.com/application/o/shop/end-session/",
  "introspection_endpoint": "https://auth.example.com/application/o/introspect/",
  "revocation_endpoint": "https://auth.example.com/application/o/revoke/",
  "device_authorization_endpoint": "https://auth.example.com/application/o/device/",
  "backchannel_logout_supported": True, "backchannel_logout_session_supported": True,
  "response_types_supported": ["code", "id_token", "id_token token", "code token", "code id_token", "code id_token token"],
  "response_modes_supported": ["query", "fragment", "form_post"],
  "jwks_uri": "https://auth.example.com/application/o/shop/jwks/",
  "grant_types_supported": ["authorization_code", "refresh_token", "implicit", "client_credentials", "password", "urn:ietf:params:oauth:grant-type:device_code"],
  "id_token_signing_alg_values_supported": ["RS256"], "subject_types_supported": ["public"],
  "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
  "acr_values_supported": ["goauthentik.io/providers/oauth2/default"],
  "scopes_supported": ["openid", "email", "profile", "offline_access"],
  "request_parameter_supported": False,
  "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "amr", "nonce", "email", "email_verified", "name", "given_name", "preferred_username", "nickname", "groups"],
  "claims_parameter_supported": False, "code_challenge_methods_supported": ["plain", "S256"],
}
write(d, "authentik", json.dumps(disc, indent=2))
write(d, "minimal", js({"issuer": disc["issuer"], "jwks_uri": disc["jwks_uri"]}))
write(d, "wrong-issuer", js(dict(disc, issuer="https://auth.example.com/application/o/shop")))
write(d, "other-origin-endpoints", js(dict(disc, token_endpoint="https://evil.example/token", jwks_uri="http://auth.example.com:80/x?y#z")))
write(d, "relative-endpoints", js(dict(disc, token_endpoint="/token", jwks_uri="jwks", authorization_endpoint="")))
write(d, "nulls", js(dict(disc, token_endpoint=None, id_token_signing_alg_values_supported=None)))
write(d, "hs256", js(dict(disc, id_token_signing_alg_values_supported=["HS256"])))
write(d, "encrypted", js(dict(disc, id_token_encryption_alg_values_supported=["RSA-OAEP-256"], id_token_encryption_enc_values_supported=["A256CBC-HS512"])))
write(d, "duplicate-issuer", b'{"issuer":"https://evil.example/","jwks_uri":"x","issuer":"https://auth.example.com/application/o/shop/"}')
write(d, "unicode-host", js(dict(disc, token_endpoint="https://xn--80ak6aa92e.com/token", jwks_uri="https://\u0430uth.example.com/application/o/shop/jwks/")))

# Redirect: the unit tests' and the e2e open-redirect table's attacks, and ordinary paths.
d = reset("redirect")
attacks = ["//evil.com", "///evil.com", "////evil.com", "/\\evil.com", "\\\\evil.com", "\\/evil.com",
    "https://evil.com", "http:evil.com", "javascript:alert(1)", "data:text/html,<script>alert(1)</script>",
    "evil.com", "%2F%2Fevil.com", "/%2Fevil.com", "/%2f%2fevil.com", "/%5Cevil.com", "/%5cevil.com",
    "%252F%252Fevil.com", "/%252F%252Fevil.com", "/%25252F%25252Fevil.com",
    "/%2525252525252F%2525252525252Fevil.com", "/a%252525252525252e", "/\t/evil.com", "/%09/evil.com",
    "/\r\n/evil.com", "/%0d%0a/evil.com", "/./evil.com/../..//evil.com", "/../evil.com", "/%2e%2e/evil.com",
    " //evil.com", "/%00/evil.com", "/%E3%80%82evil.com", "/\u3002/evil.com", "/?//evil.com", "/#//evil.com",
    "/%3F//evil.com", "/%23/%2Fevil.com", "/@evil.com", "/:@evil.com", "/x:y@evil.com"]
ok = ["/", "/dashboard", "/orders/42?tab=items#top", "/search?q=a%20b", "/a/b/c/", "/callback?next=https://x", "/search?q=100%25"]
for i, a in enumerate(attacks): write(d, f"attack-{i:02}", a)
for i, a in enumerate(ok): write(d, f"ok-{i:02}", a)
write(d, "query-redirect", "redirect=%2F%2Fevil.com&x=1")
write(d, "query-ok", "redirect=%2Fdashboard")

# Request bodies.
d = reset("request_bodies")
tok = sign(H_RS, js(access), "RS256")
for name, body in {
    "verify": js({"token": tok}), "verify-bearer": js({"token": "Bearer " + tok}),
    "verify-bearer-multibyte": js({"token": "\u00e9\u00e9\u00e9\u00e9\u00e9"}),
    "verify-unknown-field": b'{"tokn":"eyJ"}', "verify-number": b'{"token":12345678}',
    "verify-duplicate": b'{"token":"a","token":"b"}', "verify-escapes": b'{"token":"\\u0000\\ud800"}',
    "codes": js({"access_token": tok, "refresh_token": "r" * 128, "id_token": tok}),
    "redeem": js({"code": "Qx7lW2mB9rT4kP0aZ3sD8fG1hJ6nV5cX2yU7iO9eAbc"}),
    "revoke-sid": js({"sid": access["sid"]}), "revoke-sub": js({"sub": access["sub"]}),
    "revoke-both": js({"sid": "a", "sub": "b"}), "nested": b"[" * 300 + b"]" * 300,
    "backchannel": ("logout_token=" + tok).encode(), "backchannel-dup": b"logout_token=&logout_token=x&a=%ZZ",
    "login-query": b"redirect=%2Forders%2F42%3Ftab%3Ditems", "callback-query": b"code=abc&state=def&iss=https%3A%2F%2Fx",
}.items():
    write(d, name, body)

# Cookie and Authorization headers.
d = reset("cookie_header")
for name, h in {
    "access": "tokend_access=" + tok, "both": "a=b; tokend_access=" + tok + "; tokend_refresh=" + "r" * 128,
    "bearer": "ABearer " + tok, "bearer-lower": "Abearer  x", "basic": "ABasic dXNlcjpwYXNz",
    "empty-value": "tokend_access=; tokend_access=second", "quoted": 'tokend_access="abc"',
    "login": "__Host-tokend_login_0123456789abcdef=v", "two-headers": "x=1\ntokend_access=y\nABearer z",
    "odd": ";;;=;  ; tokend_access ; =x; tokend_access==", "percent": "tokend_access=%41%zz",
}.items():
    write(d, name, h)

# Config: the shipped example, the test fixtures, and edge cases.
d = reset("config_toml")
root = os.path.join(HERE, "..")
for dirpath, _, files in os.walk(os.path.join(root, "config")):
    for f in files:
        if f.endswith(".toml"):
            text = open(os.path.join(dirpath, f), "rb").read()
            if b"secret_file" not in text and b"CREDENTIALS_DIRECTORY" not in text:
                write(d, "file-" + f.replace(".toml", ""), text)
base = (f'[listen]\nhttp = "127.0.0.1:9180"\n[provider]\nissuer = "https://auth.example.com/application/o/shop/"\n'
        f'client_id = "shop"\n')
write(d, "minimal", base)
write(d, "hs", base + 'client_secret = "s"\nalgorithms = ["HS256"]\n')
write(d, "durations", base + '[verify]\nleeway = "100000000years"\ncache_ttl = "0s"\n[jwks]\nrefresh_interval = "1s"\nmax_stale = "18446744073709551615s"\n')
write(d, "env", base + "\0AUTHENTIK_URL=https://a.example/application/o/x/\nAUTHENTIK_CLIENT_ID=x\nTOKEND_VERIFY__LEEWAY=5s\n")
write(d, "flow", base + '[flow]\nredirect_uri = "https://app.example.com/auth/callback"\nfrontend_url = "https://app.example.com"\n')
write(d, "bad-types", base + '[listen.x]\nmax_connections = -1\n[cookies]\naccess_name = "a b"\n')

# Token endpoint responses (shared docs authentik.md §3.2).
d = reset("token_response")
write(d, "authentik", js({"access_token": tok, "token_type": "Bearer", "scope": "openid email profile offline_access",
                          "expires_in": 3600, "id_token": sign(H_HS, js(idt), "HS256"), "refresh_token": "r" * 128}))
write(d, "no-refresh", js({"access_token": "x", "token_type": "Bearer", "expires_in": 3600, "id_token": sign(H_ES, js(idt), "ES256")}))
write(d, "token-type-lower", js({"access_token": "x", "token_type": "bearer"}))
write(d, "expires-huge", js({"access_token": "x", "token_type": "Bearer", "expires_in": 18446744073709551615}))
write(d, "expires-negative", js({"access_token": "x", "token_type": "Bearer", "expires_in": -1}))
write(d, "expires-float", js({"access_token": "x", "token_type": "Bearer", "expires_in": 1e300}))
write(d, "id-token-jwe", js({"access_token": "x", "token_type": "Bearer", "id_token": "eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIn0.a.b.c.d"}))
write(d, "error", js({"error": "invalid_grant", "error_description": "The provided authorization grant is invalid", "request_id": "abc"}))
write(d, "error-unknown", js({"error": "slow_down"}))
write(d, "scope-array", js({"access_token": "x", "token_type": "Bearer", "scope": ["openid"]}))

# The JWKS disk cache file (jwks/disk.rs), as the daemon writes it, and its corruptions. Dated
# at generation: the target's century-long max_stale keeps these loadable, its 24 h one not.
import time
d = reset("disk_cache")
now = int(time.time())
fuzz_disc = {"issuer": ISSUER, "jwks_uri": ISSUER + "jwks/",
             "token_endpoint": "http://127.0.0.1:1/application/o/token/",
             "revocation_endpoint": "http://127.0.0.1:1/application/o/revoke/"}
cache = {"version": 1, "issuer": ISSUER, "fetched_at": now, "discovery": fuzz_disc,
         "jwks": {"keys": [dict(rsa_jwk, **x5), ec_jwk]}}
write(d, "daemon-written", js(cache))
write(d, "no-keys", js(dict(cache, jwks={})))
write(d, "other-issuer", js(dict(cache, issuer="https://auth.example.com/application/o/shop/")))
write(d, "issuer-no-slash", js(dict(cache, issuer=ISSUER.rstrip("/"))))
write(d, "discovery-other-issuer", js(dict(cache, discovery=dict(fuzz_disc, issuer=ISSUER + "x/"))))
for name, t in [("zero", 0), ("u64-max", 18446744073709551615), ("i64-max", 9223372036854775807),
                ("future", now + 3600), ("skew", now + 200), ("stale", now - 2 * 86400),
                ("negative", -1), ("float", now + 0.5), ("string", str(now)), ("huge", 1e300)]:
    write(d, f"fetched-at-{name}", js(dict(cache, fetched_at=t)))
write(d, "jwks-not-object", js(dict(cache, jwks=[rsa_jwk])))
write(d, "keys-bad-entries", js(dict(cache, jwks={"keys": [1, None, dict(rsa_jwk, n="AQAB")]})))
write(d, "missing-discovery", js({k: v for k, v in cache.items() if k != "discovery"}))
write(d, "version-2", js(dict(cache, version=2)))
write(d, "duplicate-issuer", js(cache)[:-1] + b',"issuer":"https://evil.example/"}')
write(d, "truncated", js(cache)[:100])
write(d, "empty", b"")

# The sessions snapshot file (snapshot.rs, issue #12), as the daemon writes it, and its
# corruptions: foreign, newer, truncated, numbers beyond i64, bad hashes, unknown members.
d = reset("snapshot_file")
h = b64(hashlib.sha256(b"a refresh token").digest())
snap_state = {
    "revoked_sids": [{"id": "sid-1", "at": 1700000000, "until": EXP, "why": "logout"},
                     {"id": "sid-2", "at": 1700000000, "until": 1700003600, "why": "admin_revocation"}],
    "revoked_subs": [{"id": "alice", "at": 1700000000, "until": EXP, "why": "backchannel_logout"}],
    "seen_jtis": [{"jti": "jti-1", "until": EXP}],
    "ended_refresh": [{"key": h, "until": EXP}],
    "sessions": [{"key": "sid-3", "sid": "sid-3", "sub": "bob", "email": "bob@example.com",
                  "organization_id": None, "role": "user", "created": IAT, "access_expires": EXP,
                  "refresh_expires": EXP, "last_seen": IAT, "refresh_key": h}],
}
snap = {"format": "tokend-sessions-snapshot", "version": 1, "issuer": ISSUER, "client_id": CLIENT,
        "written_at": IAT, "state": snap_state}
write(d, "daemon-written", js(snap))
write(d, "empty-state", js(dict(snap, state={k: [] for k in snap_state})))
write(d, "other-issuer", js(dict(snap, issuer="https://auth.example.com/application/o/shop/")))
write(d, "other-client", js(dict(snap, client_id="shop")))
write(d, "version-2", js(dict(snap, version=2)))
write(d, "version-0", js(dict(snap, version=0)))
write(d, "no-format", js({k: v for k, v in snap.items() if k != "format"}))
write(d, "unknown-member", js(dict(snap, extra=1)))
write(d, "truncated", js(snap)[:120])
write(d, "empty", b"")
for name, t in [("u64-max", 18446744073709551615), ("i64-min", -9223372036854775808),
                ("float", 1.5), ("huge", 1e300), ("string", "1")]:
    bad = json.loads(js(snap_state))
    bad["revoked_sids"][0]["until"] = t
    write(d, f"until-{name}", js(dict(snap, state=bad)))
for name, k in [("short", h[:10]), ("not-base64", "!!" + h[2:]), ("padded", h + "=")]:
    bad = json.loads(js(snap_state))
    bad["ended_refresh"][0]["key"] = k
    write(d, f"hash-{name}", js(dict(snap, state=bad)))
