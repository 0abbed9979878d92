async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_me(gql):
    data = await gql.data(
        "laerer.nordby.5a", "{ me { name username roles { role school { name } } } }"
    )
    assert data["me"]["username"] == "laerer.nordby.5a"
