"""A small real OpenID Connect provider on 127.0.0.1 for the sign-in tests (authorization code flow, RS256).

    >>> with OIDCProvider(users={"ana@example.org": "Ana"}, redirect_uri="http://127.0.0.1:8501/oauth2callback") as op:
    ...     op.metadata_url        # http://127.0.0.1:<port>/.well-known/openid-configuration, for [auth]
    ...     op.client_id, op.client_secret

It does what Google, Okta or Keycloak do for Streamlit's ``st.login``, over real HTTP: a discovery document; a JWKS
with an RSA key generated at start; an authorize endpoint that shows a login form and signs in only a configured
user; a token endpoint that checks the client secret, the single-use code, the redirect URI and the PKCE verifier
and issues an RS256 ID token carrying the request's nonce; userinfo; and end-session for logout. Every token it
issues is kept in ``issued`` for the tests to look at.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus, urlencode, urlparse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass
class _Grant:
    email: str
    nonce: str | None
    redirect_uri: str
    code_challenge: str | None
    scope: str


@dataclass
class OIDCProvider:
    users: dict[str, str]  # email -> display name: the people this provider can sign in
    redirect_uri: str  # the one redirect URI registered for the client (the app's /oauth2callback)
    client_id: str = "petseg-test"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    email_verified: bool = True
    issued: list[dict] = field(default_factory=list)  # claims of every ID token issued

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = secrets.token_hex(8)
        self._pending: dict[str, dict[str, str]] = {}  # login form id -> authorize request parameters
        self._codes: dict[str, _Grant] = {}
        self._tokens: dict[str, dict] = {}  # access token -> userinfo claims
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> OIDCProvider:
        provider = self

        class Handler(_Handler):
            op = provider

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def issuer(self) -> str:
        assert self._server is not None, "start the provider first (with OIDCProvider(...) as op)"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    # --- protocol -------------------------------------------------------------------------------------------

    def metadata(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "email", "email_verified", "name", "nonce"],
        }

    def jwks(self) -> dict:
        numbers = self._key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self._kid,
                          "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}]}

    def sign(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self._kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def authorize_error(self, query: dict[str, str]) -> str | None:
        if query.get("client_id") != self.client_id:
            return "unknown client_id"
        if query.get("redirect_uri") != self.redirect_uri:
            return f"redirect_uri {query.get('redirect_uri')!r} is not registered for this client"
        if query.get("response_type") != "code":
            return "only response_type=code is supported"
        if "openid" not in query.get("scope", "").split():
            return "scope must include openid"
        if not query.get("state"):
            return "state is missing"
        if query.get("code_challenge") and query.get("code_challenge_method") != "S256":
            return "only the S256 code challenge is supported"
        return None

    def begin_login(self, query: dict[str, str]) -> str:
        form_id = secrets.token_urlsafe(16)
        with self._lock:
            self._pending[form_id] = query
        return form_id

    def finish_login(self, form_id: str, email: str) -> str:
        """Sign ``email`` in for the pending request; the redirect back to the app (with a code), or raise."""
        with self._lock:
            query = self._pending.pop(form_id, None)
        if query is None:
            raise PermissionError("this login form expired; start again from the app")
        if email not in self.users:
            raise PermissionError(f"{email} has no account here")
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Grant(email=email, nonce=query.get("nonce"), redirect_uri=query["redirect_uri"],
                                       code_challenge=query.get("code_challenge"), scope=query.get("scope", ""))
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"

    def token(self, form: dict[str, str], basic: tuple[str, str] | None) -> dict:
        client_id, client_secret = basic or (form.get("client_id"), form.get("client_secret"))
        if client_id != self.client_id or client_secret != self.client_secret:
            raise PermissionError("invalid_client")
        if form.get("grant_type") != "authorization_code":
            raise ValueError("unsupported_grant_type")
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # single use
        if grant is None or form.get("redirect_uri") != grant.redirect_uri:
            raise ValueError("invalid_grant")
        if grant.code_challenge is not None:
            verifier = form.get("code_verifier", "")
            if _b64(hashlib.sha256(verifier.encode("ascii")).digest()) != grant.code_challenge:
                raise ValueError("invalid_grant")
        access_token = secrets.token_urlsafe(24)
        now = int(time.time())
        profile = {"sub": hashlib.sha256(grant.email.encode()).hexdigest()[:16], "email": grant.email,
                   "email_verified": self.email_verified, "name": self.users[grant.email]}
        claims = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 600,
                  "at_hash": _b64(hashlib.sha256(access_token.encode()).digest()[:16]), **profile}
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        with self._lock:
            self._tokens[access_token] = profile
            self.issued.append(claims)
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": 600, "scope": grant.scope,
                "id_token": self.sign(claims)}

    def userinfo(self, access_token: str) -> dict | None:
        with self._lock:
            return self._tokens.get(access_token)


_LOGIN_FORM = """<!doctype html><html><head><title>Test provider sign-in</title></head><body>
<h1>Sign in to the test provider</h1>
<form method="post" action="/authorize"><input type="hidden" name="form" value="{form}">
<label>Email <input name="email" type="email" autocomplete="off"></label>
<button type="submit">Continue</button></form></body></html>"""


class _Handler(BaseHTTPRequestHandler):
    op: OIDCProvider

    def log_message(self, *_args: object) -> None:  # keep the test output clean
        pass

    def _send(self, status: int, body: str | dict, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _redirect(self, location: str) -> None:
        self._send(302, "", "text/plain", {"Location": location})

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        return {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/.well-known/openid-configuration":
            self._send(200, self.op.metadata())
        elif url.path == "/jwks":
            self._send(200, self.op.jwks())
        elif url.path == "/authorize":
            error = self.op.authorize_error(query)
            if error:
                self._send(400, f"<p>{html.escape(error)}</p>", "text/html")
            else:
                self._send(200, _LOGIN_FORM.format(form=self.op.begin_login(query)), "text/html")
        elif url.path == "/userinfo":
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            info = self.op.userinfo(token)
            if info is None:
                self._send(401, {"error": "invalid_token"})
            else:
                self._send(200, info)
        elif url.path == "/logout":
            target = query.get("post_logout_redirect_uri")
            if target == self.op.redirect_uri:
                self._redirect(target)
            else:
                self._send(200, "<p>Signed out.</p>", "text/html")
        else:
            self._send(404, {"error": "not_found"})

    def do_POST(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        form = self._form()
        if url.path == "/authorize":
            try:
                self._redirect(self.op.finish_login(form.get("form", ""), form.get("email", "").strip()))
            except PermissionError as exc:
                self._send(403, f"<p>{html.escape(str(exc))}</p>", "text/html")
        elif url.path == "/token":
            basic = None
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                basic = (unquote_plus(user), unquote_plus(password))
            try:
                self._send(200, self.op.token(form, basic))
            except PermissionError as exc:
                self._send(401, {"error": str(exc)})
            except ValueError as exc:
                self._send(400, {"error": str(exc)})
        else:
            self._send(404, {"error": "not_found"})
