"""Production settings: no introspection, no GraphiQL, no demo tokens, masked errors."""

from __future__ import annotations

from dataclasses import replace

import httpx

from core.app import create_app


async def test_production_disables_introspection_graphiql_and_demo(settings, gql):
    token = await gql.token("kommuneadmin")
    app = create_app(replace(settings, env="production", demo=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
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
