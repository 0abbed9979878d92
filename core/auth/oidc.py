"""Login with OpenID Connect: ID-porten (citizens, staff) and Feide (school staff, students).

The flow is the authorization code flow with PKCE (S256):

1. `GET /auth/{provider}/login` stores a fresh state, nonce and PKCE verifier in the
   database, gives the browser the state in an HttpOnly cookie (only the browser that
   started a login may finish it), and redirects it to the provider's authorization
   endpoint.
2. The provider sends the browser back to `GET /auth/{provider}/callback?code&state`. The
   state row is consumed (single use, at most ten minutes old), the code is exchanged at the
   token endpoint together with the PKCE verifier, and the ID token is validated: RS256
   signature against the provider's published keys, issuer, audience, expiry, nonce and the
   authentication level (`acr`, two-factor: "substantial" or better).
3. The national id number (ID-porten claim `pid`) or the Feide identity (`sub`) is mapped
   to a `Person`, and a session token is issued: `{"token": "..."}`.

`POST /auth/logout` with `Authorization: Bearer <token>` revokes the session token.

Authlib does the OAuth 2 parts (authorization URL, PKCE, token request with client
authentication); joserfc (Authlib's successor for JOSE) verifies the ID token.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import authlib.deprecate
import httpx
from joserfc import jwt
from joserfc.errors import (
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from core import audit
from core.auth.sessions import issue_token, revoke_token
from core.config import OidcProviderSettings
from core.db import transaction
from core.models import OidcLoginState, Person
from core.models.base import utcnow

# Authlib 1.9 prefers the "httpx2" package and warns when it falls back to httpx, which is
# what we install; the fallback is fully supported in this version. authlib.deprecate
# installs an "always" filter when first imported (above), so silence it only now.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.base_client import OAuthError
    from authlib.integrations.httpx_client import AsyncOAuth2Client

if TYPE_CHECKING:
    from core.state import AppState

log = logging.getLogger(__name__)

# A login that is not completed within this time must start over.
STATE_MAX_AGE = timedelta(minutes=10)
# Discovery documents and key sets are re-read after this long; providers rotate keys.
METADATA_TTL_SECONDS = 3600
# An ID token signed with an unknown key id triggers a fresh JWKS fetch, but not more often
# than this: a stream of forged tokens must not make us hammer the provider.
JWKS_REFRESH_MIN_INTERVAL_SECONDS = 10
# Clock skew tolerated between us and the provider for exp/iat/nbf.
CLOCK_LEEWAY_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 10.0
ID_TOKEN_ALGORITHMS = ("RS256",)
SCOPE = "openid profile"

# Longer than any code or state a provider or we produce; a bigger value is not a login.
CALLBACK_PARAMETER_MAX_LENGTH = 2048
NATIONAL_ID = re.compile(r"^\d{11}$")
# Feide hands out the national id number under this claim name (in the ID token when the
# client has the "userid-nin" scope, otherwise from the userinfo endpoint).
FEIDE_NIN_CLAIM = "https://n.feide.no/claims/nin"


class LoginError(Exception):
    """A login that must be refused; turned into a JSON error response, never a trace."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _reject(code: str, message: str) -> LoginError:
    return LoginError(401, code, message)


@dataclass
class _ProviderMetadata:
    """The cached discovery document and key set of one issuer."""

    discovery: dict[str, Any]
    discovery_fetched_at: float
    jwks: KeySet | None = None
    jwks_fetched_at: float = 0.0


@dataclass
class OidcMetadataCache:
    """Discovery documents and JWKS per issuer, re-read after `ttl_seconds`.

    One cache belongs to one set of routes (one application), so tests that start their own
    providers never see another test's keys.
    """

    ttl_seconds: int = METADATA_TTL_SECONDS
    _entries: dict[str, _ProviderMetadata] = field(default_factory=dict)

    async def discovery(self, provider: OidcProviderSettings) -> dict[str, Any]:
        """The provider's `/.well-known/openid-configuration`, fetched or from the cache."""
        entry = self._entries.get(provider.issuer)
        now = time.monotonic()
        if entry is not None and now - entry.discovery_fetched_at < self.ttl_seconds:
            return entry.discovery
        url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await _get_json(url)
        # OpenID Connect Discovery 1.0 section 4.3: the issuer in the document must be the
        # one we asked, or a compromised document could point us at someone else's keys.
        if document.get("issuer") != provider.issuer:
            raise LoginError(
                502, "provider_misconfigured", "Innloggingstjenesten oppga feil utsteder."
            )
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(key), str):
                raise LoginError(
                    502, "provider_misconfigured", f"Innloggingstjenesten mangler {key}."
                )
        self._entries[provider.issuer] = _ProviderMetadata(document, now)
        return document

    async def jwks(self, provider: OidcProviderSettings, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys. `refresh` asks for a new fetch (an unknown key id
        may mean the provider rotated its keys), limited to one per few seconds."""
        discovery = await self.discovery(provider)
        entry = self._entries[provider.issuer]
        now = time.monotonic()
        age = now - entry.jwks_fetched_at
        fresh = entry.jwks is not None and age < self.ttl_seconds
        if fresh and not (refresh and age >= JWKS_REFRESH_MIN_INTERVAL_SECONDS):
            assert entry.jwks is not None
            return entry.jwks
        document = await _get_json(discovery["jwks_uri"])
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise LoginError(
                502, "provider_misconfigured", "Innloggingstjenestens nøkler er ugyldige."
            ) from exc
        entry.jwks = keys
        entry.jwks_fetched_at = now
        return keys


async def _get_json(url: str) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("OIDC metadata fetch from %s failed: %s", url, exc)
        raise LoginError(
            502, "provider_unavailable", "Innloggingstjenesten svarer ikke. Prøv igjen senere."
        ) from exc
    if not isinstance(document, dict):
        raise LoginError(502, "provider_misconfigured", "Innloggingstjenesten svarte ugyldig.")
    return document


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": code, "message": message},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def _state_cookie(provider_name: str) -> str:
    return f"tavle_login_{provider_name}"


def _callback_path(provider: OidcProviderSettings) -> str:
    return urlsplit(provider.redirect_uri).path or "/"


def _provider(request: Request) -> OidcProviderSettings:
    state: AppState = request.app.state.tavle
    name = request.path_params["provider"]
    for provider in state.settings.oidc_providers:
        if provider.name == name:
            return provider
    raise LoginError(404, "unknown_provider", f"Ukjent innloggingstjeneste: {name}.")


def _token_endpoint_auth_method(discovery: dict[str, Any]) -> str:
    # Discovery's default is client_secret_basic; ID-porten and Feide both support it, and
    # some deployments only allow client_secret_post, so follow what the provider says.
    supported = discovery.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_basic" in supported:
        return "client_secret_basic"
    if "client_secret_post" in supported:
        return "client_secret_post"
    raise LoginError(
        502, "provider_misconfigured", "Innloggingstjenesten støtter ikke klienthemmelighet."
    )


class _OidcLogin:
    """The three endpoints, sharing one metadata cache."""

    def __init__(self, cache: OidcMetadataCache):
        self.cache = cache

    # -- GET /auth/{provider}/login ----------------------------------------------------

    async def login(self, request: Request) -> Response:
        try:
            provider = _provider(request)
            discovery = await self.cache.discovery(provider)
        except LoginError as exc:
            return _error(exc.status, exc.code, exc.message)
        app_state: AppState = request.app.state.tavle

        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        # RFC 7636: 43-128 characters from the unreserved set; 64 random bytes -> 86 chars.
        code_verifier = secrets.token_urlsafe(64)

        async with transaction(app_state.sessions) as session:
            # Abandoned logins leave rows behind; sweep the stale ones as we go.
            await session.execute(
                delete(OidcLoginState).where(OidcLoginState.created_at < utcnow() - STATE_MAX_AGE)
            )
            session.add(
                OidcLoginState(
                    state=state,
                    provider=provider.name,
                    nonce=nonce,
                    code_verifier=code_verifier,
                    created_at=utcnow(),
                )
            )

        extra: dict[str, str] = {"nonce": nonce}
        if provider.minimum_acr:
            extra["acr_values"] = provider.minimum_acr[0]
        async with AsyncOAuth2Client(
            client_id=provider.client_id,
            scope=SCOPE,
            redirect_uri=provider.redirect_uri,
            code_challenge_method="S256",
        ) as client:
            url, _ = client.create_authorization_url(
                discovery["authorization_endpoint"],
                state=state,
                code_verifier=code_verifier,
                **extra,
            )
        response = RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
        # The state also goes to this browser, and only this browser may complete the
        # login (RFC 6749 §10.12): else anyone holding a callback URL, an attacker's own
        # among them, could finish a login in someone else's browser.
        response.set_cookie(
            _state_cookie(provider.name),
            state,
            max_age=int(STATE_MAX_AGE.total_seconds()),
            # Where the provider sends the browser back: behind a proxy with a path
            # prefix that is not the route's own path.
            path=_callback_path(provider),
            secure=provider.redirect_uri.startswith("https://"),
            httponly=True,
            samesite="lax",  # sent on the provider's top-level redirect back to us
        )
        return response

    # -- GET /auth/{provider}/callback ---------------------------------------------------

    async def callback(self, request: Request) -> Response:
        app_state: AppState = request.app.state.tavle
        provider_name = request.path_params["provider"]
        known = next(
            (p for p in app_state.settings.oidc_providers if p.name == provider_name), None
        )
        try:
            provider = _provider(request)
            token = await self._complete(request, provider)
        except LoginError as exc:
            if exc.status != 404:
                await self._audit_failure(app_state, provider_name, exc.code)
            response = _error(exc.status, exc.code, exc.message)
        else:
            response = JSONResponse(
                {"token": token, "expires_in": app_state.settings.session_ttl_seconds},
                headers={"Cache-Control": "no-store"},
            )
        if known is not None:  # (an unknown name from the path is no cookie's name)
            # Spent either way: a state is used once.
            response.delete_cookie(_state_cookie(known.name), path=_callback_path(known))
        return response

    async def _complete(self, request: Request, provider: OidcProviderSettings) -> str:
        """Consume the state, exchange the code, validate, map to a person: the token."""
        app_state: AppState = request.app.state.tavle
        params = request.query_params
        for name in ("code", "state", "error"):
            value = params.get(name, "")
            # Refused before any lookup: PostgreSQL rejects NUL in text, and the provider's
            # error text is echoed back to the user.
            if "\x00" in value or len(value) > CALLBACK_PARAMETER_MAX_LENGTH:
                raise LoginError(400, "invalid_request", f"Ugyldig verdi i `{name}`.")
        if "error" in params:
            # The user cancelled, or the provider refused (for example a too low level).
            raise _reject(
                "provider_error",
                f"Innloggingstjenesten avviste innloggingen ({params['error'][:100]}).",
            )
        code, state = params.get("code"), params.get("state")
        if not code or not state:
            raise LoginError(400, "invalid_request", "Mangler code eller state.")
        started_here = request.cookies.get(_state_cookie(provider.name), "")
        if not secrets.compare_digest(started_here.encode(), state.encode()):
            raise _reject(
                "invalid_state",
                "Innloggingen ble ikke startet i denne nettleseren. Logg inn på nytt.",
            )

        login_state = await self._consume_state(app_state, provider, state)
        discovery = await self.cache.discovery(provider)
        tokens = await self._exchange_code(provider, discovery, code, login_state.code_verifier)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise _reject("missing_id_token", "Innloggingstjenesten sendte ingen ID-token.")
        claims = await self._validate_id_token(provider, id_token, login_state.nonce)
        acr = claims["acr"]

        async with transaction(app_state.sessions) as session:
            person = await self._find_person(session, provider, discovery, claims, tokens)
            if person is None:
                raise LoginError(
                    403,
                    "unknown_person",
                    "Du er ikke registrert i skoleadministrasjonen. Kontakt skolen.",
                )
            return await issue_token(
                session,
                person,
                method=provider.name,
                ttl_seconds=app_state.settings.session_ttl_seconds,
                acr=acr,
            )

    async def _consume_state(
        self, app_state: AppState, provider: OidcProviderSettings, state: str
    ) -> OidcLoginState:
        # Delete-with-returning in its own committed transaction: the state is spent even if
        # the rest of the login fails, and two concurrent callbacks cannot both win.
        async with transaction(app_state.sessions) as session:
            row = (
                await session.execute(
                    delete(OidcLoginState)
                    .where(OidcLoginState.state == state[:100])
                    .returning(
                        OidcLoginState.provider,
                        OidcLoginState.nonce,
                        OidcLoginState.code_verifier,
                        OidcLoginState.created_at,
                    )
                )
            ).first()
        if row is None:
            raise _reject(
                "invalid_state", "Innloggingen er ukjent eller allerede brukt. Logg inn på nytt."
            )
        login_state = OidcLoginState(
            state=state,
            provider=row.provider,
            nonce=row.nonce,
            code_verifier=row.code_verifier,
            created_at=row.created_at,
        )
        if login_state.provider != provider.name:
            raise _reject("invalid_state", "Innloggingen ble startet hos en annen tjeneste.")
        if utcnow() - login_state.created_at > STATE_MAX_AGE:
            raise _reject("expired_state", "Innloggingen tok for lang tid. Logg inn på nytt.")
        return login_state

    async def _exchange_code(
        self,
        provider: OidcProviderSettings,
        discovery: dict[str, Any],
        code: str,
        code_verifier: str,
    ) -> dict[str, Any]:
        try:
            async with AsyncOAuth2Client(
                client_id=provider.client_id,
                client_secret=provider.client_secret,
                token_endpoint_auth_method=_token_endpoint_auth_method(discovery),
                redirect_uri=provider.redirect_uri,
                code_challenge_method="S256",
                timeout=HTTP_TIMEOUT_SECONDS,
            ) as client:
                tokens = await client.fetch_token(
                    discovery["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
        except OAuthError as exc:
            # invalid_grant: wrong, used or expired code, or the PKCE verifier did not match.
            log.info("OIDC code exchange with %s refused: %s", provider.name, exc)
            raise _reject(
                "token_exchange_failed", "Innloggingstjenesten godtok ikke innloggingen."
            ) from exc
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("OIDC code exchange with %s failed: %s", provider.name, exc)
            raise LoginError(
                502, "provider_unavailable", "Innloggingstjenesten svarer ikke. Prøv igjen senere."
            ) from exc
        return dict(tokens)

    async def _validate_id_token(
        self, provider: OidcProviderSettings, id_token: str, nonce: str
    ) -> dict[str, Any]:
        """Signature, issuer, audience, expiry, nonce and authentication level."""
        keys = await self.cache.jwks(provider)
        try:
            try:
                decoded = jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
            except InvalidKeyIdError:
                # Perhaps the provider rotated its keys since we cached them.
                keys = await self.cache.jwks(provider, refresh=True)
                decoded = jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
        except JoseError as exc:
            raise _reject(
                "invalid_signature", "ID-tokenet har ugyldig signatur eller format."
            ) from exc

        claims = decoded.claims
        registry = jwt.JWTClaimsRegistry(
            leeway=CLOCK_LEEWAY_SECONDS,
            iss={"essential": True, "value": provider.issuer},
            aud={"essential": True, "value": provider.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise _reject("expired_token", "ID-tokenet er utløpt.") from exc
        except (InvalidClaimError, MissingClaimError) as exc:
            claim = getattr(exc, "claim", None) or ""
            codes = {"iss": "invalid_issuer", "aud": "invalid_audience"}
            raise _reject(
                codes.get(claim, "invalid_claims"), f"ID-tokenet har ugyldig innhold ({exc})."
            ) from exc
        except JoseError as exc:
            raise _reject("invalid_claims", "ID-tokenet har ugyldig innhold.") from exc

        # OpenID Connect Core 3.1.3.7: with several audiences, azp must name us.
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != provider.client_id:
            raise _reject("invalid_audience", "ID-tokenet er utstedt til en annen klient.")
        # The nonce ties the ID token to the browser session that started this login:
        # compared in constant time to the value we stored.
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not secrets.compare_digest(token_nonce, nonce):
            raise _reject("invalid_nonce", "ID-tokenet hører ikke til denne innloggingen.")
        # Two-factor: only the configured levels (substantial or high) are accepted.
        acr = claims.get("acr")
        if not isinstance(acr, str) or acr not in provider.minimum_acr:
            raise _reject(
                "insufficient_acr",
                "Innloggingen krever sikkerhetsnivå betydelig eller høyt (tofaktor).",
            )
        return claims

    async def _find_person(
        self,
        session: AsyncSession,
        provider: OidcProviderSettings,
        discovery: dict[str, Any],
        claims: dict[str, Any],
        tokens: dict[str, Any],
    ) -> Person | None:
        if provider.name == "idporten":
            pid = claims.get("pid")
            if not isinstance(pid, str) or not NATIONAL_ID.match(pid):
                raise _reject("missing_pid", "ID-tokenet mangler gyldig fødselsnummer.")
            return await _person_by(session, Person.national_id, pid)

        # Feide: the stable subject identifier is the account key.
        person = await _person_by(session, Person.feide_id, claims["sub"])
        if person is not None:
            return person
        # First Feide login of someone we know by national id: Feide may give the number
        # in the ID token or from userinfo. Link the Feide identity for next time.
        nin = claims.get(FEIDE_NIN_CLAIM)
        if nin is None:
            nin = await self._feide_userinfo_nin(discovery, claims["sub"], tokens)
        if not isinstance(nin, str) or not NATIONAL_ID.match(nin):
            return None
        person = await _person_by(session, Person.national_id, nin)
        if person is None or person.feide_id is not None:
            # A person already linked to another Feide account is not re-linked silently.
            return None
        person.feide_id = claims["sub"]
        return person

    async def _feide_userinfo_nin(
        self, discovery: dict[str, Any], sub: str, tokens: dict[str, Any]
    ) -> str | None:
        endpoint, access_token = discovery.get("userinfo_endpoint"), tokens.get("access_token")
        if not isinstance(endpoint, str) or not isinstance(access_token, str):
            return None
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
                response = await client.get(
                    endpoint, headers={"Authorization": f"Bearer {access_token}"}
                )
                response.raise_for_status()
                info = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.info("Feide userinfo lookup failed: %s", exc)
            return None
        # Userinfo is only trusted for the same subject as the validated ID token.
        if not isinstance(info, dict) or info.get("sub") != sub:
            return None
        nin = info.get(FEIDE_NIN_CLAIM)
        return nin if isinstance(nin, str) else None

    async def _audit_failure(self, app_state: AppState, provider: str, code: str) -> None:
        # Best effort: a failing audit write must not turn a clean 401 into a 500.
        try:
            async with transaction(app_state.sessions) as session:
                await audit.record(
                    session,
                    actor_id=None,
                    action="login_failed",
                    resource_type="login",
                    detail={"provider": provider[:20], "reason": code},
                )
        except Exception:  # noqa: BLE001
            log.exception("Could not audit a failed login")

    # -- POST /auth/logout ---------------------------------------------------------------

    async def logout(self, request: Request) -> Response:
        app_state: AppState = request.app.state.tavle
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _error(401, "unauthenticated", "Mangler Authorization: Bearer <token>.")
        async with transaction(app_state.sessions) as session:
            revoked = await revoke_token(session, token)
        if not revoked:
            return _error(401, "unauthenticated", "Ukjent eller allerede utlogget token.")
        return Response(status_code=204)


async def _person_by(session: AsyncSession, column: Any, value: str) -> Person | None:
    return (await session.execute(select(Person).where(column == value))).scalar_one_or_none()


def oidc_routes(cache: OidcMetadataCache | None = None) -> list[Route]:
    """The login routes: `GET /auth/{provider}/login`, `GET /auth/{provider}/callback` and
    `POST /auth/logout`. They read the `AppState` at `request.app.state.tavle`.

    Each call gets its own discovery/JWKS cache unless one is passed in.
    """
    handlers = _OidcLogin(cache or OidcMetadataCache())
    return [
        Route("/auth/logout", handlers.logout, methods=["POST"], name="oidc_logout"),
        Route("/auth/{provider}/login", handlers.login, methods=["GET"], name="oidc_login"),
        Route(
            "/auth/{provider}/callback", handlers.callback, methods=["GET"], name="oidc_callback"
        ),
    ]
