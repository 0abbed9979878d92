"""The Starlette application: GraphQL at /graphql (with GraphiQL), login routes, health."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
from graphql import GraphQLError
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.base import HTTPException

from core import audit, request_json
from core.access.grants import principal_for_token
from core.access.policy import Policy
from core.auth.demo import demo_routes
from core.auth.oidc import oidc_routes
from core.config import Settings
from core.db import create_engine, create_sessionmaker
from core.doctypes import load_doctypes
from core.documents.render import stop_renderer
from core.documents.render import warm_up as warm_up_renderer
from core.documents.service import visible_documents
from core.messages.routes import message_routes
from core.migrate import migration_problem
from core.models import Document
from core.plugins import channels as plugin_channels
from core.plugins import plugin_manager
from core.schema.context import Context, SocketContext, authenticate_socket
from core.schema.database import RequestDatabase
from core.schema.ids import decode_pk
from core.schema.schema import build_schema
from core.state import AppState

log = logging.getLogger(__name__)

# Container allocations between two young-generation collections while serving
# (CPython's default: 700). A page of 100 students builds ~20 000 objects (rows, GraphQL
# objects, the answer's dicts) that all live until the answer is encoded; at 700 the
# collector ran ~30 times per request and walked those survivors each time, ~10 % of the
# request's CPU (bench/read_api.py, measured alternating both settings in one process).
# Objects without cycles are freed by reference counting as before; only cyclic garbage
# waits longer, up to this many allocations (a few MB).
YOUNG_COLLECTION_AFTER = 50_000

_serving_apps = 0
_thresholds_before_serving: tuple[int, int, int] = gc.get_threshold()


@contextlib.contextmanager
def _serving_collector() -> Iterator[None]:
    """While an app serves: the heap built at start-up frozen out of the collector's
    reach, and young collections rarer (YOUNG_COLLECTION_AFTER). Both are settings of
    the whole process, so they are undone when the last serving app stops (tests run
    several apps, sometimes overlapping)."""
    global _serving_apps, _thresholds_before_serving
    # What exists now (schema, doctypes, policy, SQLAlchemy's mappers and statement
    # caches: hundreds of thousands of objects) lives as long as the process. Moved out
    # of the collector's reach, it is no longer walked by every full collection during
    # requests: bench/read_api.py's page of students answered ~3 ms sooner. (Collected
    # first, so no garbage is frozen with it.)
    gc.collect()
    gc.freeze()
    if _serving_apps == 0:
        _thresholds_before_serving = gc.get_threshold()
        _young, middle, full = _thresholds_before_serving
        gc.set_threshold(YOUNG_COLLECTION_AFTER, middle, full)
    _serving_apps += 1
    try:
        yield
    finally:
        _serving_apps -= 1
        if _serving_apps == 0:
            gc.set_threshold(*_thresholds_before_serving)
            # Back into the collector's reach, so that what has finalizers is finalized
            # while the interpreter is whole.
            gc.unfreeze()


class TavleGraphQL(GraphQL):
    """Builds the per-request context: the bearer token names a person, whose grants are
    loaded once; the request gets its own database session, closed by RequestSession."""

    async def get_context(self, request: Any, response: Any = None) -> Context:  # type: ignore[override]
        state: AppState = request.app.state.tavle
        db = RequestDatabase(state.sessions())
        if request.scope["type"] == "websocket":
            # Browsers cannot set headers on a websocket: the token comes in the
            # connection_init payload (on_ws_connect). The connection's session serves no
            # operation (each gets its own, SocketContext.for_operation) and never opens.
            return SocketContext(request=request, state=state, db=db)
        context = Context(request=request, state=state, db=db)
        header = request.headers.get("authorization", "")
        if not header:
            context.auth_problem = "Du må logge inn (Authorization: Bearer <token>)."
            return context
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            context.auth_problem = "Authorization-headeren må være 'Bearer <token>'."
            return context
        # Read when the operation starts (Context.authenticate, from RequestSession), on
        # the request's own connection: a connection of its own cost a pool checkout and
        # a rollback on return, and a request that never runs needs no read.
        context.token = token.strip()
        return context

    def parse_json(self, data: str | bytes) -> Any:
        """A request body or GET `variables`, read strictly (core/request_json.py): a
        client's bad JSON is a 400 (or 413) with a reason, never a server error. Either
        is a JSON object (a body may be a list, which strawberry refuses as a batch)."""
        try:
            value = request_json.loads(data)
        except request_json.BadJson as error:
            raise HTTPException(error.status, str(error)) from None
        if not isinstance(value, dict | list):
            raise HTTPException(400, "Forespørselen må være et JSON-objekt.")
        return value

    def decode_json(self, data: str | bytes) -> object:
        """A websocket message (HTTP bodies go through parse_json): read as strictly, and
        one that is not a JSON object is malformed too, so strawberry closes the
        connection with 4400 (a `[1]` made its handler fail and drop the connection)."""
        try:
            value = request_json.loads(data)
        except request_json.BadJson as error:
            raise json.JSONDecodeError(str(error), "", 0) from None
        if not isinstance(value, dict):
            raise json.JSONDecodeError("a message is a JSON object", "", 0)
        return value

    async def parse_http_body(self, request: Any) -> Any:
        # Refused before the body is read, when its announced length is already too much.
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > request_json.MAX_REQUEST_BYTES:
            raise HTTPException(413, "Forespørselen er for stor.")
        return await super().parse_http_body(request)

    def encode_json(self, data: object) -> str:
        """The answer as JSON, encoded by orjson: the same JSON as strawberry's
        `json.dumps` (compact; UTF-8 instead of \\u escapes), in a tenth of the time (a
        page of 100 students with guardians and groups is ~60 KB: json.dumps took ~3 ms
        of the request). What orjson refuses (an integer beyond 64 bits in a JSON
        scalar) goes to the standard encoder, as before."""
        try:
            # A str: the websocket transport sends a str as a text frame, and
            # graphql-transport-ws clients read text frames only.
            return orjson.dumps(data).decode()
        except orjson.JSONEncodeError:
            return super().encode_json(data)

    async def on_ws_connect(self, context: Any) -> Any:  # type: ignore[override]
        """graphql-transport-ws connection_init: refuse (4403) without a valid token."""
        if not await authenticate_socket(context):
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED"})
        return await super().on_ws_connect(context)


async def healthz(request: Request) -> Response:
    state: AppState = request.app.state.tavle
    try:
        problem = await migration_problem(state.engine)
    except Exception:  # any database failure means "not ready"
        return JSONResponse({"status": "unavailable"}, status_code=503)
    if problem is not None:
        # It answers, but not with the tables this code needs.
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ok"})


def load_doctypes_and_channels(settings: Settings, policy: Policy):  # type: ignore[no-untyped-def]
    """The channels the plugins provide and the doctypes validated against them; raises
    DoctypeError (file and line) on a bad doctype."""
    manager = plugin_manager()
    channels = plugin_channels(manager)
    plugin_fields: dict[str, dict[str, str]] = {}
    for answer in manager.hook.doctype_fields():
        plugin_fields.update(answer or {})
    doctypes = load_doctypes(
        settings.doctypes_dir, channels, plugin_fields=plugin_fields, roles=set(policy.roles)
    )
    return doctypes, channels


async def document_pdf(request: Request) -> Response:
    """The finalized PDF, for those who may read the document (same bearer token)."""
    state: AppState = request.app.state.tavle
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return JSONResponse({"error": "UNAUTHENTICATED"}, status_code=401)
    try:
        pk = decode_pk(request.path_params["document_id"], "Document")
    except GraphQLError:
        return JSONResponse({"error": "BAD_USER_INPUT"}, status_code=400)
    async with state.sessions() as session:
        principal = await principal_for_token(
            session, token.strip(), state.policy, demo_mode=state.settings.demo
        )
        if principal is None:
            return JSONResponse({"error": "UNAUTHENTICATED"}, status_code=401)
        row = (
            await session.execute(
                select(Document.id, Document.title, Document.pdf, Document.restricted).where(
                    Document.id == pk, visible_documents(principal, state.doctypes)
                )
            )
        ).first()
        if row is None:
            return JSONResponse({"error": "NOT_FOUND"}, status_code=404)
        if row.pdf is None:
            return JSONResponse(
                {"error": "NOT_FOUND", "message": "Dokumentet er ikke ferdigstilt."},
                status_code=404,
            )
        if row.restricted:
            await audit.record(
                session,
                actor_id=principal.person_id,
                action="read_document",
                resource_type="document",
                resource_id=pk,
            )
            await session.commit()
    return Response(
        row.pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="dokument-{pk}.pdf"',
            "Cache-Control": "no-store",
        },
    )


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the application. The policy and the doctypes are validated here: a bad policy
    or doctype file stops start-up."""
    settings = settings or Settings.from_env()
    policy = Policy.load(settings.policies_dir)
    doctypes, channels = load_doctypes_and_channels(settings, policy)
    engine = create_engine(settings.database_url)
    state = AppState(
        settings=settings,
        engine=engine,
        sessions=create_sessionmaker(engine),
        policy=policy,
        doctypes=doctypes,
        channels=channels,
    )
    graphql = TavleGraphQL(
        build_schema(settings), graphql_ide=None if settings.production else "graphiql"
    )

    pending_startups: list[Any] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for awaitable in pending_startups:
            await awaitable
        try:
            await warm_up_renderer()
        except Exception:  # the API serves without PDFs; finalizing reports the fault
            log.exception("Could not start the PDF renderer; letters try again on first use")
        try:
            with _serving_collector():
                yield
        finally:
            try:
                await engine.dispose()
            finally:
                if _serving_apps == 0:
                    # The last serving app stops the renderer process with it.
                    await asyncio.to_thread(stop_renderer)

    routes = [
        Route("/healthz", healthz),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        *message_routes(),
        Route("/documents/{document_id}/pdf", document_pdf),
        *demo_routes(),
        *oidc_routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.tavle = state
    # Plugins may add routes (delivery-report callbacks) before the app serves; what they
    # return as coroutines runs when the app starts.
    pending_startups.extend(
        r for r in plugin_manager().hook.startup(app=app) if inspect.isawaitable(r)
    )
    return app
