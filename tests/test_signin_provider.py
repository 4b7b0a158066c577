"""The test OpenID Connect provider refuses what a real one refuses; its ID tokens verify against its JWKS.

The browser test signs in through it; these pin that a sign-in there means something (a wrong secret, a replayed
code, a wrong PKCE verifier or an unknown user gets nowhere).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.oidc_provider import OIDCProvider

REDIRECT = "http://127.0.0.1:8501/oauth2callback"


def _request(op: OIDCProvider, method: str, path: str, form: dict | None = None,
             headers: dict | None = None) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", urlparse(op.issuer).port, timeout=10)
    body = urlencode(form) if form is not None else None
    all_headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    conn.request(method, path, body=body, headers=all_headers)
    response = conn.getresponse()
    result = response.status, dict(response.getheaders()), response.read().decode()
    conn.close()
    return result


def _authorize(op: OIDCProvider, email: str, verifier: str, **overrides: str) -> tuple[int, str]:
    """Open the login form and submit ``email``: (status, redirect location or page)."""
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {"client_id": op.client_id, "redirect_uri": REDIRECT, "response_type": "code",
             "scope": "openid email profile", "state": "st4te", "nonce": "n0nce", "code_challenge": challenge,
             "code_challenge_method": "S256", **overrides}
    status, _headers, page = _request(op, "GET", f"/authorize?{urlencode(query)}")
    if status != 200:
        return status, page
    form_id = re.search(r'name="form" value="([^"]+)"', page).group(1)
    status, headers, page = _request(op, "POST", "/authorize", {"form": form_id, "email": email})
    return status, headers.get("Location", page)


def _token(op: OIDCProvider, code: str, verifier: str, secret: str | None = None) -> tuple[int, dict]:
    basic = base64.b64encode(f"{op.client_id}:{secret or op.client_secret}".encode()).decode()
    status, _headers, body = _request(op, "POST", "/token", {
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
    }, {"Authorization": f"Basic {basic}"})
    return status, json.loads(body)


@pytest.fixture
def op():
    with OIDCProvider(users={"ana@example.org": "Ana"}, redirect_uri=REDIRECT) as provider:
        yield provider


def test_a_known_user_gets_a_code_and_an_rs256_id_token_with_the_nonce(op):
    status, _headers, body = _request(op, "GET", "/.well-known/openid-configuration")
    meta = json.loads(body)
    assert status == 200 and meta["issuer"] == op.issuer and meta["code_challenge_methods_supported"] == ["S256"]

    verifier = secrets.token_urlsafe(40)
    status, location = _authorize(op, "ana@example.org", verifier)
    assert status == 302 and location.startswith(REDIRECT + "?")
    query = {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}
    assert query["state"] == "st4te"
    status, tokens = _token(op, query["code"], verifier)
    assert status == 200

    jwks = json.loads(_request(op, "GET", "/jwks")[2])
    claims = jwt.decode(tokens["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"]).claims
    assert claims["iss"] == op.issuer and claims["aud"] == op.client_id and claims["nonce"] == "n0nce"
    assert claims["email"] == "ana@example.org" and claims["email_verified"] is True
    status, _headers, body = _request(op, "GET", "/userinfo", headers={"Authorization":
                                                                       f"Bearer {tokens['access_token']}"})
    assert status == 200 and json.loads(body)["email"] == "ana@example.org"

    # The code is single use.
    assert _token(op, query["code"], verifier)[0] == 400


def test_a_token_signed_by_another_key_does_not_verify(op):
    other = OIDCProvider(users={}, redirect_uri=REDIRECT)
    forged = other.sign({"iss": "x", "email": "ana@example.org"})
    jwks = json.loads(_request(op, "GET", "/jwks")[2])
    with pytest.raises(Exception, match="(?i)signature|key"):
        jwt.decode(forged, KeySet.import_key_set(jwks), algorithms=["RS256"])


def test_unknown_users_wrong_secrets_verifiers_and_redirects_get_nowhere(op):
    verifier = secrets.token_urlsafe(40)
    assert _authorize(op, "mallory@example.org", verifier)[0] == 403
    assert _authorize(op, "ana@example.org", verifier, redirect_uri="http://evil.example.org/cb")[0] == 400
    assert _authorize(op, "ana@example.org", verifier, client_id="someone-else")[0] == 400

    code = parse_qs(urlparse(_authorize(op, "ana@example.org", verifier)[1]).query)["code"][0]
    assert _token(op, code, verifier, secret="wrong") == (401, {"error": "invalid_client"})
    code = parse_qs(urlparse(_authorize(op, "ana@example.org", verifier)[1]).query)["code"][0]
    assert _token(op, code, "another-verifier-entirely-of-forty-three-chars")[0] == 400
    assert op.issued == []
