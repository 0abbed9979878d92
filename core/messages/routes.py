"""HTTP routes of messaging: attachment downloads (only the message's sender and its
recipients, with the same bearer token as GraphQL) and received SMS from the gateway."""

from __future__ import annotations

from urllib.parse import quote

from graphql import GraphQLError
from sqlalchemy import exists, or_, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.auth.sessions import person_id_for_token
from core.messages.attachments import ALLOWED_TYPES
from core.messages.inbound import inbound_sms_callback
from core.models import AttachmentBlob, Message, MessageAttachment, MessageRecipient
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
        person_id = await person_id_for_token(session, token.strip())
        if person_id is None:
            return _error("UNAUTHENTICATED", 401)
        participant = or_(
            Message.sender_id == person_id,
            exists().where(
                MessageRecipient.message_id == Message.id,
                MessageRecipient.person_id == person_id,
            ),
        )
        row = (
            await session.execute(
                select(
                    MessageAttachment.filename,
                    MessageAttachment.content_type,
                    AttachmentBlob.content,
                )
                .join(Message, Message.id == MessageAttachment.message_id)
                .join(AttachmentBlob, AttachmentBlob.sha256 == MessageAttachment.sha256)
                .where(MessageAttachment.id == pk, participant)
            )
        ).first()
    # Someone else's attachment and a missing one answer alike: ids are not probed.
    if row is None:
        return _error("NOT_FOUND", 404)
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
