"""Shared fixtures: one migrated database with the demo municipality per test session
(SQLite by default, PostgreSQL with TAVLE_TEST_DATABASE_URL), the app over ASGI, and a
GraphQL helper that logs in as a demo persona."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.app import create_app
from core.config import Settings, normalise_database_url
from core.db import create_engine, create_sessionmaker
from core.demo import load_demo
from core.migrate import upgrade


def _postgres_url() -> str | None:
    url = os.environ.get("TAVLE_TEST_DATABASE_URL")
    if url is None:
        return None
    if not url.strip():
        # Set but empty (a CI secret that is missing): the PostgreSQL run must fail, not
        # pass quietly on SQLite.
        pytest.exit("TAVLE_TEST_DATABASE_URL is set but empty", returncode=1)
    return normalise_database_url(url)


async def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = _postgres_url()
    if url is None:
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'tavle.db'}"
    try:
        asyncio.run(_reset_postgres(url))
    except Exception as error:  # CI must fail, never skip, without PostgreSQL
        pytest.exit(f"PostgreSQL at {url} is unreachable: {error}", returncode=1)
    return url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await upgrade(engine)
    await load_demo(create_sessionmaker(engine))
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture(scope="session")
def settings(database_url: str, engine: AsyncEngine) -> Settings:
    return Settings(database_url=database_url, demo=True, policies_dir=Path("policies"))


@pytest.fixture(scope="session")
async def app(settings: Settings):  # type: ignore[no-untyped-def]
    application = create_app(settings)
    yield application
    await application.state.tavle.engine.dispose()


@pytest.fixture(scope="session")
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tavle.test") as c:
        yield c


class GraphQLClient:
    """Posts GraphQL as a demo persona; tokens are fetched once per persona."""

    def __init__(self, http: httpx.AsyncClient):
        self.http = http
        self.tokens: dict[str, str] = {}

    async def token(self, username: str) -> str:
        if username not in self.tokens:
            response = await self.http.post("/auth/demo-token", json={"username": username})
            assert response.status_code == 200, response.text
            self.tokens[username] = response.json()["token"]
        return self.tokens[username]

    async def raw(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code in (200, 400), response.text
        return response.json()

    async def query(
        self, username: str | None, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        token = await self.token(username) if username else None
        return await self.raw(query, variables, token=token)

    async def data(
        self, username: str, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The data of a query that must succeed without errors."""
        result = await self.query(username, query, variables)
        assert not result.get("errors"), result["errors"]
        return result["data"]


@pytest.fixture(scope="session")
def gql(client: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(client)


@pytest.fixture(scope="session")
async def emma(gql: GraphQLClient) -> str:
    """Emma Hansen (5A, Nordby), as her contact teacher finds her: the demo's student
    for documents, messages and the archive."""
    from tests.delivery_e2e import student_id

    return await student_id(gql, "Emma Hansen", "laerer.nordby.5a")


def error_codes(result: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in result.get("errors") or []]
