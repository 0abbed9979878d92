"""A small but real OpenID Connect provider for tests, standing in for ID-porten or Feide.

It runs as a Starlette app under uvicorn in a background thread on 127.0.0.1 (a free port),
so the code under test talks to it over real HTTP: discovery, JWKS, a non-interactive
`/authorize` (it answers at once with a redirect carrying code and state), `/token` (client
authentication, single-use codes, redirect_uri and PKCE S256 checks) and `/userinfo`. ID
tokens are signed RS256 with a key generated at start.

Knobs (`prepare_login`) choose the next login's subject, claims and `acr`, and can make the
ID token bad on purpose: signed with another key, for another audience, from another
issuer, expired, or with a wrong nonce.

    with FakeOidcProvider(client_id="tavle", client_secret="s3cret",
                          redirect_uris=["http://testserver/auth/idporten/callback"]) as op:
        op.prepare_login(sub="abc", claims={"pid": "01010112345"},
                         acr="idporten-loa-substantial")
        ...  # op.issuer goes into the settings of the app under test
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote_plus, urlencode

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.fakes._served import LoopbackServer

Tamper = Literal["wrong_key", "wrong_audience", "wrong_issuer", "expired", "wrong_nonce"]


@dataclass
class LoginPlan:
    """What the next login through the fake provider produces."""

    sub: str = "test-subject"
    acr: str | None = "idporten-loa-substantial"
    # Extra ID token claims, for example {"pid": "01010112345"}.
    claims: dict[str, Any] = field(default_factory=dict)
    # Extra claims served by /userinfo (with `sub`) for the access token of this login.
    userinfo: dict[str, Any] = field(default_factory=dict)
    tamper: Tamper | None = None


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str
    plan: LoginPlan


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


class FakeOidcProvider(LoopbackServer):
    """An OpenID provider on loopback. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        client_id: str = "tavle-test",
        client_secret: str = "tavle-secret",
        redirect_uris: list[str] | None = None,
        token_endpoint_auth_methods: tuple[str, ...] = (
            "client_secret_basic",
            "client_secret_post",
        ),
        acr_values_supported: tuple[str, ...] = (
            "idporten-loa-substantial",
            "idporten-loa-high",
        ),
    ):
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        # None accepts any redirect_uri (a registered list is what real providers enforce).
        self.redirect_uris = redirect_uris
        self.token_endpoint_auth_methods = token_endpoint_auth_methods
        self.acr_values_supported = acr_values_supported
        self.plan = LoginPlan()
        # What the provider saw, for assertions.
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, Any]] = []
        self._grants: dict[str, _Grant] = {}
        self._access_tokens: dict[str, tuple[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._key: RSAKey | None = None
        self._rogue_key: RSAKey | None = None

    # -- configuration -------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The issuer identifier (also the base URL), available after start()."""
        if self.port is None:
            raise RuntimeError("FakeOidcProvider is not started")
        return self.base_url

    def prepare_login(
        self,
        *,
        sub: str = "test-subject",
        acr: str | None = "idporten-loa-substantial",
        claims: dict[str, Any] | None = None,
        userinfo: dict[str, Any] | None = None,
        tamper: Tamper | None = None,
    ) -> None:
        """Set what the next /authorize hands out (it stays in force until changed)."""
        self.plan = LoginPlan(
            sub=sub,
            acr=acr,
            claims=dict(claims or {}),
            userinfo=dict(userinfo or {}),
            tamper=tamper,
        )

    def rotate_key(self) -> None:
        """Start signing with a new key (published in the JWKS, under a new kid)."""
        self._key = RSAKey.generate_key(
            2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True
        )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeOidcProvider:
        """Generate the signing key and serve on a free loopback port; returns self."""
        self.rotate_key()
        self._rogue_key = RSAKey.generate_key(2048, auto_kid=True)
        return super().start()

    # -- the provider ----------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
                Route("/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
                Route("/userinfo", self._userinfo),
            ]
        )

    async def _discovery(self, request: Request) -> Response:
        base = self.issuer
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks",
                "userinfo_endpoint": f"{base}/userinfo",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "profile"],
                "token_endpoint_auth_methods_supported": list(self.token_endpoint_auth_methods),
                "acr_values_supported": list(self.acr_values_supported),
            }
        )

    async def _jwks(self, request: Request) -> Response:
        assert self._key is not None
        return JSONResponse(KeySet([self._key]).as_dict(private=False))

    async def _authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.authorize_requests.append(params)
        if params.get("client_id") != self.client_id:
            return _oauth_error(400, "unauthorized_client", "unknown client_id")
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or (
            self.redirect_uris is not None and redirect_uri not in self.redirect_uris
        ):
            # Never redirect to an unregistered URI: answer the browser directly.
            return _oauth_error(400, "invalid_request", "redirect_uri not registered")
        if params.get("response_type") != "code":
            return _oauth_error(400, "unsupported_response_type", "only code")
        if "openid" not in params.get("scope", "").split():
            return _oauth_error(400, "invalid_scope", "openid scope required")
        challenge = params.get("code_challenge")
        if not challenge or params.get("code_challenge_method") != "S256":
            return _oauth_error(400, "invalid_request", "PKCE with S256 is required")
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = _Grant(
                client_id=self.client_id,
                redirect_uri=redirect_uri,
                nonce=params.get("nonce"),
                code_challenge=challenge,
                plan=self.plan,
            )
        query = {"code": code}
        if "state" in params:
            query["state"] = params["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(redirect_uri + separator + urlencode(query), status_code=302)

    def _client_credentials(self, request: Request, form: dict[str, str]) -> tuple[str, str, str]:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            # RFC 6749 2.3.1: both parts are form-urlencoded before base64.
            return unquote_plus(client_id), unquote_plus(secret), "client_secret_basic"
        return form.get("client_id", ""), form.get("client_secret", ""), "client_secret_post"

    async def _token(self, request: Request) -> Response:
        # Parsed by hand: Starlette's request.form() needs python-multipart.
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        client_id, secret, method = self._client_credentials(request, form)
        self.token_requests.append({"form": form, "auth_method": method})
        if (
            method not in self.token_endpoint_auth_methods
            or client_id != self.client_id
            or not secrets.compare_digest(secret, self.client_secret)
        ):
            return _oauth_error(401, "invalid_client", "client authentication failed")
        if form.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type", "only authorization_code")
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)  # codes are single use
        if grant is None or grant.client_id != client_id:
            return _oauth_error(400, "invalid_grant", "unknown or used code")
        if form.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error(400, "invalid_grant", "redirect_uri mismatch")
        verifier = form.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(_s256(verifier), grant.code_challenge):
            return _oauth_error(400, "invalid_grant", "PKCE code_verifier mismatch")

        access_token = secrets.token_urlsafe(24)
        with self._lock:
            self._access_tokens[access_token] = (grant.plan.sub, dict(grant.plan.userinfo))
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 120,
                "scope": "openid profile",
                "id_token": self._id_token(grant),
            },
            headers={"Cache-Control": "no-store"},
        )

    def _id_token(self, grant: _Grant) -> str:
        plan = grant.plan
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": plan.sub,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 120,
            "auth_time": now,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        if plan.acr is not None:
            claims["acr"] = plan.acr
        claims.update(plan.claims)
        key = self._key
        assert key is not None and self._rogue_key is not None
        match plan.tamper:
            case "wrong_key":
                # A forgery that even claims the real key id.
                key = RSAKey.import_key(self._rogue_key.as_dict(private=True), {"kid": key.kid})
            case "wrong_audience":
                claims["aud"] = "someone-else"
            case "wrong_issuer":
                claims["iss"] = "https://evil.example"
            case "expired":
                claims["iat"] = now - 3600
                claims["exp"] = now - 1800
            case "wrong_nonce":
                claims["nonce"] = secrets.token_urlsafe(16)
        return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)

    async def _userinfo(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        with self._lock:
            entry = self._access_tokens.get(token)
        if entry is None:
            return _oauth_error(401, "invalid_token", "unknown access token")
        sub, extra = entry
        return JSONResponse({"sub": sub, **extra})
