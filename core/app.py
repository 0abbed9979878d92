"""The Starlette application: GraphQL at /graphql (with GraphiQL), login routes, health."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL

from core.access.grants import load_principal
from core.access.policy import Policy
from core.auth.demo import demo_routes
from core.auth.oidc import oidc_routes
from core.auth.sessions import person_id_for_token
from core.config import Settings
from core.db import create_engine, create_sessionmaker
from core.schema.context import Context
from core.schema.database import RequestDatabase
from core.schema.schema import build_schema
from core.state import AppState


class TavleGraphQL(GraphQL):
    """Builds the per-request context: the bearer token names a person, whose grants are
    loaded once; the request gets its own database session, closed by RequestSession."""

    async def get_context(self, request: Any, response: Any = None) -> Context:  # type: ignore[override]
        state: AppState = request.app.state.tavle
        db = RequestDatabase(state.sessions())
        context = Context(request=request, state=state, db=db)
        header = request.headers.get("authorization", "")
        if not header:
            context.auth_problem = "Du må logge inn (Authorization: Bearer <token>)."
            return context
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            context.auth_problem = "Authorization-headeren må være 'Bearer <token>'."
            return context
        async with state.sessions() as auth_session:
            person_id = await person_id_for_token(auth_session, token.strip())
            if person_id is None:
                context.auth_problem = "Ugyldig eller utløpt innloggingstoken."
                return context
            context._principal = await load_principal(auth_session, person_id, state.policy)
        return context


async def healthz(request: Request) -> Response:
    state: AppState = request.app.state.tavle
    try:
        async with state.sessions() as session:
            await session.execute(select(1))
    except Exception:  # any database failure means "not ready"
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the application. The policy is validated here: a bad policy file stops start-up."""
    settings = settings or Settings.from_env()
    policy = Policy.load(settings.policies_dir)
    engine = create_engine(settings.database_url)
    state = AppState(
        settings=settings, engine=engine, sessions=create_sessionmaker(engine), policy=policy
    )
    graphql = TavleGraphQL(
        build_schema(settings), graphql_ide=None if settings.production else "graphiql"
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    routes = [
        Route("/healthz", healthz),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        *demo_routes(),
        *oidc_routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.tavle = state
    return app
