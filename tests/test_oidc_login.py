"""End-to-end OpenID Connect login against a real (fake) provider on loopback.

Our app is called in-process through httpx's ASGI transport; the provider runs under
uvicorn in a thread, and the "browser" step (following the redirect to /authorize) is a
real HTTP request to it. Our callback then exchanges the code over real HTTP as well.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from core.auth import oidc
from core.auth.oidc import oidc_routes
from core.auth.sessions import hash_token, person_id_for_token
from core.config import OidcProviderSettings, Settings
from core.db import create_engine, create_sessionmaker, transaction
from core.migrate import upgrade
from core.models import AuditEvent, OidcLoginState, Person, SessionToken
from core.models.base import utcnow
from core.state import AppState
from tests.fakes.oidc_provider import FakeOidcProvider

CLIENT_ID = "tavle-test"
CLIENT_SECRET = "very-secret"
BASE = "http://testserver"
IDPORTEN_ACR = ("idporten-loa-substantial", "idporten-loa-high")
FEIDE_ACR = ("urn:mace:feide.no:auth:level:fad08:3",)

KARI_PID = "01017012345"
KARI_FEIDE = "f1b6a3c2-0000-4000-8000-000000000001"
PER_PID = "02028054321"  # known by national id only: linked on first Feide login


@dataclass
class Env:
    app: Starlette
    sessions: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    idporten: FakeOidcProvider
    feide: FakeOidcProvider
    kari_id: int
    per_id: int

    def fake(self, provider: str) -> FakeOidcProvider:
        return self.idporten if provider == "idporten" else self.feide


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[FakeOidcProvider, FakeOidcProvider]]:
    idporten = FakeOidcProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[f"{BASE}/auth/idporten/callback"],
    )
    # The Feide stand-in only takes client_secret_post, so both client auth methods run.
    feide = FakeOidcProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[f"{BASE}/auth/feide/callback"],
        token_endpoint_auth_methods=("client_secret_post",),
        acr_values_supported=FEIDE_ACR,
    )
    with idporten, feide:
        yield idporten, feide


@pytest_asyncio.fixture(scope="module")
async def env(
    providers: tuple[FakeOidcProvider, FakeOidcProvider], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    idporten, feide = providers
    db: Path = tmp_path_factory.mktemp("oidc") / "x.db"
    database_url = f"sqlite+aiosqlite:///{db}"
    engine = create_engine(database_url)
    await upgrade(engine)
    sessions = create_sessionmaker(engine)
    async with transaction(sessions) as session:
        kari = Person(
            username="oidc.kari",
            national_id=KARI_PID,
            feide_id=KARI_FEIDE,
            given_name="Kari",
            family_name="Nordmann",
        )
        per = Person(username="oidc.per", national_id=PER_PID, given_name="Per", family_name="Ås")
        session.add_all([kari, per])
        await session.flush()
        kari_id, per_id = kari.id, per.id

    settings = Settings(
        database_url=database_url,
        session_ttl_seconds=3600,
        oidc_providers=(
            OidcProviderSettings(
                name="idporten",
                issuer=idporten.issuer,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                redirect_uri=f"{BASE}/auth/idporten/callback",
                minimum_acr=IDPORTEN_ACR,
            ),
            OidcProviderSettings(
                name="feide",
                issuer=feide.issuer,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                redirect_uri=f"{BASE}/auth/feide/callback",
                minimum_acr=FEIDE_ACR,
            ),
        ),
    )
    app = Starlette(routes=oidc_routes())
    app.state.tavle = AppState(settings=settings, engine=engine, sessions=sessions, policy=None)  # type: ignore[arg-type]
    yield Env(app, sessions, engine, idporten, feide, kari_id, per_id)
    await engine.dispose()


@pytest_asyncio.fixture
async def client(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    # Every test starts from a well-behaved provider.
    env.idporten.prepare_login(sub="idporten-sub", claims={"pid": KARI_PID}, acr=IDPORTEN_ACR[0])
    env.feide.prepare_login(sub=KARI_FEIDE, acr=FEIDE_ACR[0])
    transport = httpx.ASGITransport(app=env.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


@dataclass
class Flow:
    authorize_url: str
    callback_params: dict[str, str]
    response: httpx.Response


async def login(
    client: httpx.AsyncClient,
    provider: str,
    *,
    before_callback: Callable[[str], Awaitable[None]] | None = None,
) -> Flow:
    """Run the whole flow: our /login, the provider's /authorize, our /callback."""
    start = await client.get(f"/auth/{provider}/login")
    assert start.status_code == 302, start.text
    authorize_url = start.headers["location"]
    async with httpx.AsyncClient() as browser:  # real HTTP to the provider on loopback
        answer = await browser.get(authorize_url)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == f"{BASE}/auth/{provider}/callback"
    params = {k: v[0] for k, v in parse_qs(back.query).items()}
    if before_callback is not None:
        await before_callback(params["state"])
    response = await client.get(f"/auth/{provider}/callback", params=params)
    return Flow(authorize_url, params, response)


async def session_row(env: Env, token: str) -> SessionToken:
    async with env.sessions() as session:
        return (
            await session.execute(
                select(SessionToken).where(SessionToken.token_hash == hash_token(token))
            )
        ).scalar_one()


async def resolve(env: Env, token: str) -> int | None:
    async with env.sessions() as session:
        return await person_id_for_token(session, token, demo_mode=False)


# -- the authorization request -----------------------------------------------------------


async def test_login_redirects_with_pkce_nonce_and_acr(env: Env, client: httpx.AsyncClient):
    response = await client.get("/auth/idporten/login")
    assert response.status_code == 302
    url = urlsplit(response.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{env.idporten.issuer}/authorize"
    params = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["scope"] == "openid profile"
    assert params["redirect_uri"] == f"{BASE}/auth/idporten/callback"
    assert params["acr_values"] == "idporten-loa-substantial"
    assert params["code_challenge_method"] == "S256"
    assert params["state"] and params["nonce"]

    async with env.sessions() as session:
        stored = await session.get(OidcLoginState, params["state"])
    assert stored is not None and stored.provider == "idporten"
    assert stored.nonce == params["nonce"]
    # The challenge is the S256 of the verifier we keep server-side.
    digest = hashlib.sha256(stored.code_verifier.encode()).digest()
    assert params["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def test_unknown_provider_is_404(client: httpx.AsyncClient):
    for path in ("/auth/bankid/login", "/auth/bankid/callback?code=x&state=y"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"] == "unknown_provider"


# -- happy paths ---------------------------------------------------------------------------


async def test_idporten_login_maps_pid_and_issues_token(env: Env, client: httpx.AsyncClient):
    flow = await login(client, "idporten")
    assert flow.response.status_code == 200, flow.response.text
    body = flow.response.json()
    assert body["expires_in"] == 3600
    token = body["token"]
    assert await resolve(env, token) == env.kari_id

    row = await session_row(env, token)
    assert row.method == "idporten"
    assert row.acr == "idporten-loa-substantial"
    assert timedelta(minutes=59) < row.expires_at - utcnow() <= timedelta(hours=1)
    # The code exchange carried the PKCE verifier and authenticated the client (basic).
    last = env.idporten.token_requests[-1]
    assert last["auth_method"] == "client_secret_basic"
    assert last["form"]["code_verifier"]


async def test_idporten_level_high_is_accepted(env: Env, client: httpx.AsyncClient):
    env.idporten.prepare_login(sub="x", claims={"pid": KARI_PID}, acr="idporten-loa-high")
    flow = await login(client, "idporten")
    assert flow.response.status_code == 200, flow.response.text
    assert (await session_row(env, flow.response.json()["token"])).acr == "idporten-loa-high"


async def test_feide_login_maps_sub_to_feide_id(env: Env, client: httpx.AsyncClient):
    flow = await login(client, "feide")
    assert flow.response.status_code == 200, flow.response.text
    token = flow.response.json()["token"]
    assert await resolve(env, token) == env.kari_id
    row = await session_row(env, token)
    assert (row.method, row.acr) == ("feide", FEIDE_ACR[0])
    assert env.feide.token_requests[-1]["auth_method"] == "client_secret_post"


async def test_feide_first_login_links_by_national_id_from_userinfo(
    env: Env, client: httpx.AsyncClient
):
    new_sub = "f1b6a3c2-0000-4000-8000-000000000002"
    env.feide.prepare_login(
        sub=new_sub, acr=FEIDE_ACR[0], userinfo={"https://n.feide.no/claims/nin": PER_PID}
    )
    flow = await login(client, "feide")
    assert flow.response.status_code == 200, flow.response.text
    assert await resolve(env, flow.response.json()["token"]) == env.per_id
    async with env.sessions() as session:
        assert (await session.get(Person, env.per_id)).feide_id == new_sub
    # Next time the Feide identity alone is enough.
    env.feide.prepare_login(sub=new_sub, acr=FEIDE_ACR[0])
    again = await login(client, "feide")
    assert await resolve(env, again.response.json()["token"]) == env.per_id


async def test_key_rotation_is_followed(
    env: Env, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    assert (await login(client, "idporten")).response.status_code == 200
    monkeypatch.setattr(oidc, "JWKS_REFRESH_MIN_INTERVAL_SECONDS", 0)
    env.idporten.rotate_key()
    flow = await login(client, "idporten")
    assert flow.response.status_code == 200, flow.response.text


# -- refused ID tokens ---------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["idporten", "feide"])
@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("wrong_key", "invalid_signature"),
        ("wrong_audience", "invalid_audience"),
        ("wrong_issuer", "invalid_issuer"),
        ("expired", "expired_token"),
        ("wrong_nonce", "invalid_nonce"),
    ],
)
async def test_bad_id_token_is_rejected(
    env: Env, client: httpx.AsyncClient, provider: str, tamper: str, code: str
):
    fake = env.fake(provider)
    acr = IDPORTEN_ACR[0] if provider == "idporten" else FEIDE_ACR[0]
    fake.prepare_login(sub=KARI_FEIDE, claims={"pid": KARI_PID}, acr=acr, tamper=tamper)  # type: ignore[arg-type]
    flow = await login(client, provider)
    assert flow.response.status_code == 401, flow.response.text
    body = flow.response.json()
    assert body["error"] == code
    assert body["message"]
    assert "Traceback" not in flow.response.text


@pytest.mark.parametrize(
    ("provider", "acr"),
    [
        ("idporten", "idporten-loa-low"),
        ("idporten", None),
        ("feide", "urn:mace:feide.no:auth:level:fad08:2"),
        ("feide", None),
    ],
)
async def test_acr_below_substantial_is_rejected(
    env: Env, client: httpx.AsyncClient, provider: str, acr: str | None
):
    env.fake(provider).prepare_login(sub=KARI_FEIDE, claims={"pid": KARI_PID}, acr=acr)
    flow = await login(client, provider)
    assert flow.response.status_code == 401
    assert flow.response.json()["error"] == "insufficient_acr"


async def test_idporten_token_without_valid_pid_is_rejected(env: Env, client: httpx.AsyncClient):
    env.idporten.prepare_login(sub="x", claims={"pid": "123"}, acr=IDPORTEN_ACR[0])
    flow = await login(client, "idporten")
    assert flow.response.status_code == 401
    assert flow.response.json()["error"] == "missing_pid"


# -- state, PKCE, unknown people -----------------------------------------------------------


async def test_state_cannot_be_replayed(env: Env, client: httpx.AsyncClient):
    flow = await login(client, "idporten")
    assert flow.response.status_code == 200
    replay = await client.get("/auth/idporten/callback", params=flow.callback_params)
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_state"


async def test_unknown_state_is_rejected(client: httpx.AsyncClient):
    response = await client.get("/auth/idporten/callback", params={"code": "c", "state": "nope"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_state"


@pytest.mark.parametrize(
    "params",
    [
        {"code": "c", "state": "no\x00pe"},
        {"code": "c\x00", "state": "nope"},
        {"code": "c", "state": "x" * 5000},
        {"error": "access\x00denied", "state": "s"},
    ],
)
async def test_malformed_callback_parameters_are_a_clear_400(
    client: httpx.AsyncClient, params: dict[str, str]
):
    """A NUL byte (PostgreSQL refuses it in text) or an oversized value is a bad request
    answered before any lookup, never a server error."""
    response = await client.get("/auth/idporten/callback", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


async def test_state_from_other_provider_is_rejected(env: Env, client: httpx.AsyncClient):
    start = await client.get("/auth/idporten/login")
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    response = await client.get("/auth/feide/callback", params={"code": "c", "state": state})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_state"


async def test_stale_state_is_rejected(env: Env, client: httpx.AsyncClient):
    async def age(state: str) -> None:
        async with transaction(env.sessions) as session:
            await session.execute(
                update(OidcLoginState)
                .where(OidcLoginState.state == state)
                .values(created_at=utcnow() - timedelta(minutes=11))
            )

    flow = await login(client, "idporten", before_callback=age)
    assert flow.response.status_code == 401
    assert flow.response.json()["error"] == "expired_state"


async def test_pkce_verifier_is_checked_by_the_provider(env: Env, client: httpx.AsyncClient):
    async def swap_verifier(state: str) -> None:
        async with transaction(env.sessions) as session:
            await session.execute(
                update(OidcLoginState)
                .where(OidcLoginState.state == state)
                .values(code_verifier="x" * 64)
            )

    flow = await login(client, "idporten", before_callback=swap_verifier)
    assert flow.response.status_code == 401
    assert flow.response.json()["error"] == "token_exchange_failed"
    assert env.idporten.token_requests[-1]["form"]["code_verifier"] == "x" * 64


async def test_fake_provider_rejects_wrong_verifier_directly(env: Env, client: httpx.AsyncClient):
    # The same check seen from the outside: the provider answers invalid_grant.
    start = await client.get("/auth/idporten/login")
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(start.headers["location"])
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        response = await browser.post(
            f"{env.idporten.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": f"{BASE}/auth/idporten/callback",
                "code_verifier": "wrong-" * 10,
            },
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_provider_error_is_reported(client: httpx.AsyncClient):
    response = await client.get(
        "/auth/idporten/callback", params={"error": "access_denied", "state": "s"}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "provider_error"


@pytest.mark.parametrize("provider", ["idporten", "feide"])
async def test_unknown_person_is_forbidden_and_audited(
    env: Env, client: httpx.AsyncClient, provider: str
):
    acr = IDPORTEN_ACR[0] if provider == "idporten" else FEIDE_ACR[0]
    env.fake(provider).prepare_login(sub="nobody-we-know", claims={"pid": "31129999999"}, acr=acr)
    flow = await login(client, provider)
    assert flow.response.status_code == 403
    assert flow.response.json()["error"] == "unknown_person"
    async with env.sessions() as session:
        event = await session.scalar(
            select(AuditEvent)
            .where(AuditEvent.action == "login_failed")
            .order_by(AuditEvent.id.desc())
            .limit(1)
        )
    assert event is not None
    assert event.detail == {"provider": provider, "reason": "unknown_person"}


# -- session tokens ---------------------------------------------------------------------------


async def test_logout_revokes_the_token(env: Env, client: httpx.AsyncClient):
    token = (await login(client, "idporten")).response.json()["token"]
    assert await resolve(env, token) == env.kari_id

    response = await client.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 204
    assert await resolve(env, token) is None
    assert (await session_row(env, token)).revoked_at is not None

    again = await client.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 401
    assert (await client.post("/auth/logout")).status_code == 401


async def test_expired_session_token_no_longer_resolves(env: Env, client: httpx.AsyncClient):
    token = (await login(client, "feide")).response.json()["token"]
    assert await resolve(env, token) == env.kari_id
    async with transaction(env.sessions) as session:
        await session.execute(
            update(SessionToken)
            .where(SessionToken.token_hash == hash_token(token))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert await resolve(env, token) is None


async def test_only_the_browser_that_started_a_login_can_finish_it(
    env: Env, client: httpx.AsyncClient
):
    """Someone else's browser, given the callback URL (an attacker's own login, say),
    is refused, and the login stays open for the browser that started it (found by
    review: the callback completed for any client holding the URL)."""
    other: list[httpx.Response] = []

    async def from_another_browser(state: str) -> None:
        transport = httpx.ASGITransport(app=env.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as stranger:
            params = {"code": "from-the-url", "state": state}
            other.append(await stranger.get("/auth/idporten/callback", params=params))

    flow = await login(client, "idporten", before_callback=from_another_browser)
    assert other[0].status_code == 401 and other[0].json()["error"] == "invalid_state"
    assert "nettleseren" in other[0].json()["message"]
    assert flow.response.status_code == 200, flow.response.text
    assert await resolve(env, flow.response.json()["token"]) is not None


async def test_the_login_cookie_is_for_the_callback_only(client: httpx.AsyncClient):
    """HttpOnly (no script reads it), SameSite=Lax (sent on the provider's redirect back,
    not on other sites' requests), and scoped to the redirect URI's path."""
    response = await client.get("/auth/idporten/login")
    cookie = response.headers["set-cookie"]
    state = parse_qs(urlsplit(response.headers["location"]).query)["state"][0]
    assert cookie.startswith(f"tavle_login_idporten={state};")
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].strip().lower() == "samesite=lax"
    assert attributes["path"].strip() == f"Path={urlsplit(BASE).path}/auth/idporten/callback"
