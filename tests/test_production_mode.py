"""Production settings: no introspection, no GraphiQL, no demo tokens, masked errors."""

from __future__ import annotations

from dataclasses import replace

import httpx
from sqlalchemy import select

from core.app import create_app
from core.auth.sessions import issue_token
from core.models import Person


async def _idporten_token(sessions, username: str, ttl_seconds: int) -> str:
    """A session as an ID-porten login leaves it (tests/test_oidc_login.py runs the real
    flow against a local provider)."""
    async with sessions() as session, session.begin():
        person = (
            await session.execute(select(Person).where(Person.username == username))
        ).scalar_one()
        return await issue_token(
            session, person, method="idporten", ttl_seconds=ttl_seconds, acr="idporten-loa-high"
        )


async def test_production_disables_introspection_graphiql_and_demo(settings, gql, sessions):
    demo_token = await gql.token("kommuneadmin")
    token = await _idporten_token(sessions, "kommuneadmin", settings.session_ttl_seconds)
    app = create_app(replace(settings, env="production", demo=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        # A token from demo mode no longer logs anyone in (found by review: it worked
        # until it expired); a real login's does.
        for bearer, expected in ((demo_token, ["UNAUTHENTICATED"]), (token, [])):
            r = await c.post(
                "/graphql",
                json={"query": "{ me { name } }"},
                headers={"Authorization": f"Bearer {bearer}"},
            )
            assert [e["extensions"]["code"] for e in r.json().get("errors") or []] == expected
        r = await c.post(
            "/graphql",
            json={"query": "{ __schema { types { name } } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        body = r.json()
        assert body.get("data") is None
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "introspection" in body["errors"][0]["message"].lower()
        r = await c.post(
            "/graphql",
            json={"query": "{ schools { name } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.json()["data"]["schools"]
        page = await c.get("/graphql", headers={"accept": "text/html"})
        assert "graphiql" not in page.text.lower()
        assert (
            await c.post("/auth/demo-token", json={"username": "kommuneadmin"})
        ).status_code == 404
    await app.state.tavle.engine.dispose()


async def test_development_serves_graphiql(client):
    page = await client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
