"""Bearer tokens at the GraphQL endpoint: a request without a live session token gets
UNAUTHENTICATED and no data, whatever is wrong with the token. The OpenID Connect flow
and the token rows themselves are tested in test_oidc_login.py."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from core.app import create_app
from core.auth.sessions import hash_token
from core.db import transaction
from core.models import RoleAssignment, SessionToken
from core.models.base import utcnow
from core.schema import ids
from tests.conftest import error_codes

# One query per way of answering: a non-null root (me), a connection, a nullable field.
QUERIES = (
    "{ me { name } }",
    "{ students(first: 5) { edges { node { name } } } }",
    "{ schools { name } }",
)
PERSONA = "skoleadmin.nordby"


def assert_unauthenticated(body: dict, *secrets_not_echoed: str) -> None:
    assert error_codes(body) and set(error_codes(body)) == {"UNAUTHENTICATED"}, body
    data = body.get("data")
    assert data is None or all(v is None for v in data.values()), data
    text = str(body)
    for secret in secrets_not_echoed:
        assert secret not in text  # the token is never echoed back
    assert "Traceback" not in text


async def post(client: httpx.AsyncClient, query: str, headers: dict[str, str]) -> dict:
    response = await client.post("/graphql", json={"query": query}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("query", QUERIES)
async def test_no_token(client, query):
    assert_unauthenticated(await post(client, query, {}))


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer    ",
        "Basic a29tbXVuZWFkbWluOmhlbW1lbGln",
        "Token {token}",
        "{token}",
        "Bearer {token} extra",
        "Bearer: {token}",
    ],
)
async def test_malformed_authorization_header(client, gql, header):
    token = await gql.token(PERSONA)
    value = header.format(token=token)
    for query in QUERIES:
        assert_unauthenticated(await post(client, query, {"Authorization": value}), token)


async def test_scheme_is_case_insensitive(client, gql):
    # RFC 7235: the scheme is case-insensitive; a real token under "bearer" works.
    token = await gql.token(PERSONA)
    body = await post(client, "{ me { name } }", {"Authorization": f"bearer {token}"})
    assert body["data"]["me"]["name"] == "Tone Eide"


FORGERIES = {
    "random": lambda token: secrets.token_urlsafe(32),
    "one character changed": lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),
    "truncated": lambda token: token[:-4],
    "the stored hash": hash_token,
    "a global id": lambda token: ids.encode("Person", 1),
    "very long": lambda token: "x" * 4000,
    "sql": lambda token: "' OR '1'='1",
}


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_forged_token(client, gql, forgery):
    token = await gql.token(PERSONA)
    forged = FORGERIES[forgery](token)
    for query in QUERIES:
        body = await post(client, query, {"Authorization": f"Bearer {forged}"})
        assert_unauthenticated(body, token)


async def _fresh_token(client: httpx.AsyncClient, username: str = PERSONA) -> str:
    response = await client.post("/auth/demo-token", json={"username": username})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    return response.json()["token"]


async def test_expired_session_token(client, sessions):
    token = await _fresh_token(client)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await post(client, "{ me { name } }", headers))["data"]["me"]
    async with transaction(sessions) as session:
        await session.execute(
            update(SessionToken)
            .where(SessionToken.token_hash == hash_token(token))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    for query in QUERIES:
        assert_unauthenticated(await post(client, query, headers), token)


async def test_revoked_token_after_logout(client):
    token, other = await _fresh_token(client), await _fresh_token(client)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await post(client, "{ me { name } }", headers))["data"]["me"]
    assert (await client.post("/auth/logout", headers=headers)).status_code == 204
    for query in QUERIES:
        assert_unauthenticated(await post(client, query, headers), token)
    # Logging out ends that session only; the person's other session still works.
    body = await post(client, "{ me { name } }", {"Authorization": f"Bearer {other}"})
    assert body["data"]["me"]["name"] == "Tone Eide"


async def test_mutation_without_a_valid_token_changes_nothing(client, gql, sessions):
    count = select(func.count()).select_from(RoleAssignment)
    async with sessions() as session:
        before = await session.scalar(count)
    mutation = """mutation($input: GrantRoleInput!) {
        grantRole(input: $input) { id role } }"""
    variables = {"input": {"personId": ids.encode("Person", 1), "role": "laerer"}}
    for headers in ({}, {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}):
        response = await client.post(
            "/graphql", json={"query": mutation, "variables": variables}, headers=headers
        )
        assert_unauthenticated(response.json())
    async with sessions() as session:
        assert await session.scalar(count) == before


async def test_demo_token_endpoint_is_absent_without_demo_mode(settings):
    app = create_app(replace(settings, demo=False))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            response = await c.post("/auth/demo-token", json={"username": "kommuneadmin"})
            assert response.status_code == 404
            assert "token" not in response.json()
    finally:
        await app.state.tavle.engine.dispose()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"username": "finnes.ikke"}, 404, "unknown_user"),
        ({"username": ""}, 400, "bad_request"),
        ({"username": 42}, 400, "bad_request"),
        ({"user": "kommuneadmin"}, 400, "bad_request"),
        (["kommuneadmin"], 400, "bad_request"),
    ],
)
async def test_demo_token_bad_requests(client, body, status, error):
    response = await client.post("/auth/demo-token", json=body)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert "token" not in response.json()


async def test_demo_token_not_json(client):
    response = await client.post(
        "/auth/demo-token", content=b"username=kommuneadmin", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 400
    assert (await client.get("/auth/demo-token")).status_code == 405


async def test_a_failing_token_read_is_masked_and_returns_its_connection(gql, app, monkeypatch):
    """The token is read when execution starts (Context.authenticate). When the database
    fails there, the fields that need the caller fail with a masked error that has a
    code (no SQL reaches the client), and no connection is left checked out."""
    from sqlalchemy import text

    import core.access.grants as grants

    token = await gql.token("skoleadmin.nordby")
    pool = app.state.tavle.engine.sync_engine.pool
    before = pool.checkedout()
    monkeypatch.setattr(
        grants, "_token_grant_rows", lambda: text("SELECT * FROM no_such_table WHERE 1 = 0")
    )
    for query in (
        "{ me { name } }",
        'mutation { revokeRole(id: "Um9sZUFzc2lnbm1lbnQ6MQ") { id } }',
    ):
        result = await gql.raw(query, token=token)
        assert result["errors"], result
        for error in result["errors"]:
            assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR", error
            assert "no_such_table" not in error["message"] and "SQL" not in error["message"]
    assert pool.checkedout() == before
    monkeypatch.undo()
    assert (await gql.raw("{ me { name } }", token=token))["data"]["me"]["name"]
