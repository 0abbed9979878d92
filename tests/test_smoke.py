async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_me(gql):
    data = await gql.data(
        "laerer.nordby.5a", "{ me { name username roles { role school { name } } } }"
    )
    assert data["me"]["username"] == "laerer.nordby.5a"


async def test_healthz_is_unavailable_until_the_database_is_migrated(tmp_path):
    """A database that answers but lacks this code's tables is not ready (found by review:
    /healthz said ok, and every request then failed)."""
    from pathlib import Path

    import httpx

    from core.app import create_app
    from core.config import Settings
    from core.migrate import head_revision, upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'tavle.db'}"
    app = create_app(Settings(database_url=url, policies_dir=Path("policies")))
    engine = app.state.tavle.engine
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://tavle.test") as http:
            empty = await http.get("/healthz")
            assert empty.status_code == 503
            assert "tavle migrate" in empty.json()["reason"]
            await upgrade(engine, "0003")
            behind = await http.get("/healthz")
            assert behind.status_code == 503 and "0003" in behind.json()["reason"]
            await upgrade(engine, head_revision())
            assert (await http.get("/healthz")).json() == {"status": "ok"}
    finally:
        await engine.dispose()
