"""Demo tokens: log in as a demo persona by username. Only with TAVLE_DEMO=1; otherwise
the route answers 404 as if it did not exist."""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core import request_json
from core.auth.sessions import issue_token
from core.db import transaction
from core.models import Person


async def demo_token(request: Request) -> JSONResponse:
    state = request.app.state.tavle
    if not state.settings.demo:
        return JSONResponse({"error": "not_found"}, status_code=404)
    try:
        body = request_json.loads(await request.body() or b"{}")
        username = body["username"]
        if not isinstance(username, str) or not username.strip():
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return JSONResponse(
            {"error": "bad_request", "message": 'Send JSON {"username": "<persona>"}.'},
            status_code=400,
        )
    async with transaction(state.sessions) as session:
        person = (
            await session.execute(select(Person).where(Person.username == username.strip()))
        ).scalar_one_or_none()
        if person is None:
            return JSONResponse(
                {"error": "unknown_user", "message": f"Ingen bruker heter {username!r}."},
                status_code=404,
            )
        token = await issue_token(
            session, person, method="demo", ttl_seconds=state.settings.session_ttl_seconds
        )
    return JSONResponse({"token": token}, headers={"Cache-Control": "no-store"})


def demo_routes() -> list[Route]:
    return [Route("/auth/demo-token", demo_token, methods=["POST"])]
