"""HTTP routes of messaging: attachment downloads (for whoever may read the message, with
the same bearer token as GraphQL) and received SMS from the gateway."""

from __future__ import annotations

from urllib.parse import quote

from graphql import GraphQLError
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core import audit
from core.access.grants import principal_for_token
from core.db import transaction
from core.messages.attachments import ALLOWED_TYPES
from core.messages.inbound import inbound_sms_callback
from core.messages.service import is_health_read, visible_messages
from core.models import AttachmentBlob, Message, MessageAttachment
from core.schema.ids import decode_pk
from core.state import AppState


def _error(code: str, status: int) -> JSONResponse:
    return JSONResponse({"error": code}, status_code=status)


async def download_attachment(request: Request) -> Response:
    state: AppState = request.app.state.tavle
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _error("UNAUTHENTICATED", 401)
    try:
        pk = decode_pk(request.path_params["attachment_id"], "MessageAttachment")
    except GraphQLError:
        return _error("BAD_USER_INPUT", 400)
    async with state.sessions() as session:
        principal = await principal_for_token(
            session, token.strip(), state.policy, demo_mode=state.settings.demo
        )
        if principal is None:
            return _error("UNAUTHENTICATED", 401)
        # The same rule as reading the message in GraphQL: whoever may read the message
        # may download its attachments (its sender and recipients, the school nurse).
        row = (
            await session.execute(
                select(
                    MessageAttachment.filename,
                    MessageAttachment.content_type,
                    AttachmentBlob.content,
                    Message,
                )
                .join(Message, Message.id == MessageAttachment.message_id)
                .join(AttachmentBlob, AttachmentBlob.sha256 == MessageAttachment.sha256)
                .where(MessageAttachment.id == pk, visible_messages(principal))
            )
        ).first()
    # Someone else's attachment and a missing one answer alike: ids are not probed.
    if row is None:
        return _error("NOT_FOUND", 404)
    if is_health_read(principal, row.Message):
        async with transaction(state.sessions) as tx:
            await audit.record(
                tx,
                actor_id=principal.person_id,
                action="read_attachment",
                resource_type="message",
                resource_id=row.Message.id,
                detail={"attachment_id": pk},
            )
    content_type = (
        row.content_type if row.content_type in ALLOWED_TYPES else "application/octet-stream"
    )
    if content_type == "text/plain":
        content_type = "text/plain; charset=utf-8"
    return Response(
        row.content,
        media_type=content_type,
        headers={
            # Always a download, never rendered inside Tavle's origin.
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(row.filename)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "no-store",
        },
    )


def message_routes() -> list[Route]:
    return [
        Route("/messages/attachments/{attachment_id}", download_attachment),
        Route("/callbacks/sms/inbound", inbound_sms_callback, methods=["POST"]),
    ]
