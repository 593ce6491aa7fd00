"""A tokend client for Python apps: standard library only (http.client over a Unix socket).

    from tokend_client import Tokend, InvalidToken

    tokend = Tokend("/run/tokend/tokend.sock")
    try:
        claims = tokend.verify(token)          # {"sub", "email", "name", "role", "organizationId", ...}
    except InvalidToken as e:
        return 401, e.reason                   # "expired", "token_revoked", "bad_signature", ...

    code = tokend.issue_code(access_token, refresh_token=refresh_token)
    tokens = tokend.redeem_code(code)          # once; again -> CodeRefused("code_already_redeemed")

Every refusal is an exception carrying tokend's machine-readable `reason` (README, "Reasons")
and its HTTP status; tokens are never put in an exception's text.
"""

import http.client
import json
import os
import socket

DEFAULT_SOCKET = "/run/tokend/tokend.sock"


class TokendError(Exception):
    """tokend refused the request: `reason` is the stable machine-readable name, `status` the
    HTTP status, `message` tokend's human-readable text (never contains request content)."""

    def __init__(self, status, reason, message=""):
        super().__init__(f"{reason} ({status}): {message}" if message else f"{reason} ({status})")
        self.status = status
        self.reason = reason
        self.message = message


class InvalidToken(TokendError):
    """401: the token is not (or no longer) good — answer the app's caller with 401."""


class TokenExpired(InvalidToken):
    """401 `expired`: the client should refresh and retry."""


class TokenRevoked(InvalidToken):
    """401 `token_revoked`: the token's session ended (logout, back-channel logout, admin)."""


class CodeRefused(TokendError):
    """404 `unknown_code`, 410 `code_expired` or `code_already_redeemed`."""


class Unavailable(TokendError):
    """tokend cannot answer now: 5xx (`keys_unavailable`, `capacity_exceeded`,
    `provider_unavailable`, ...) or the socket could not be reached (reason `unreachable`)."""


def _error(status, reason, message):
    if status == 401:
        cls = {"expired": TokenExpired, "token_revoked": TokenRevoked}.get(reason, InvalidToken)
    elif reason in ("unknown_code", "code_expired", "code_already_redeemed"):
        cls = CodeRefused
    elif status >= 500:
        cls = Unavailable
    else:
        cls = TokendError
    return cls(status, reason, message)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("tokend", timeout=timeout)  # the Host header; no TCP is used
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Tokend:
    """One tokend, reached over its Unix socket (default: $TOKEND_SOCKET, else
    /run/tokend/tokend.sock). Thread-safe: every call opens its own connection."""

    def __init__(self, socket_path=None, timeout=5.0):
        self.socket_path = socket_path or os.environ.get("TOKEND_SOCKET") or DEFAULT_SOCKET
        self.timeout = timeout

    def verify(self, token):
        """The verified claims of `token` (a leading "Bearer " is tolerated), or InvalidToken."""
        return self._call("POST", "/v1/verify", {"token": token})["claims"]

    def issue_code(self, access_token, refresh_token=None, id_token=None):
        """Parks the tokens under a one-time code (60 s); the access token is verified first."""
        body = {"access_token": access_token}
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        if id_token is not None:
            body["id_token"] = id_token
        return self._call("POST", "/v1/codes", body)["code"]

    def redeem_code(self, code):
        """{"access_token", "refresh_token", "id_token", "claims"}, exactly once per code."""
        return self._call("POST", "/v1/codes/redeem", {"code": code})

    def request(self, method, path, body=None):
        """(status, parsed JSON body) of any endpoint, without raising on an error status."""
        conn = _UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as e:
            raise Unavailable(0, "unreachable", f"{self.socket_path}: {e.strerror or e}") from None
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else {}
        except ValueError:
            raise Unavailable(resp.status, "bad_response", "tokend's answer is not JSON") from None

    def _call(self, method, path, body):
        status, answer = self.request(method, path, body)
        if 200 <= status < 300:
            return answer
        raise _error(status, answer.get("reason", "unknown"), answer.get("message", ""))
