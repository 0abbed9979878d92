"""What a channel plugin carries for a delivery of a message (the email copy a guardian
asked for, an SMS notice): subject, text and attachments, read by the outbox worker."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from core.channels import Attachment
from core.models import AttachmentBlob, Message, MessageAttachment, MessageKind, Person


@dataclass(frozen=True)
class MessageContent:
    subject: str
    body: str
    attachments: tuple[Attachment, ...]
    sender_id: int | None
    sensitive: bool
    # The message's own words, for text-only channels (SMS).
    text: str


def email_footer(school_name: str) -> str:
    return (
        "\n\n--\n"
        f"Denne meldingen er sendt fra {school_name} i Tavle. Du får den på e-post fordi du "
        "har valgt å få meldinger videresendt. Logg inn i Tavle for å svare."
    )


async def message_content(
    session: AsyncSession, message_id: int, *, channel: str, school_name: str
) -> MessageContent:
    message = await session.get(Message, message_id)
    if message is None:
        raise LookupError(message_id)
    sender = await session.get(Person, message.sender_id) if message.sender_id else None
    body = message.body
    attachments: tuple[Attachment, ...] = ()
    if channel == "email":
        if sender is not None and message.kind == MessageKind.MESSAGE:
            body = f"Fra: {sender.name}\n\n{body}"
        body += email_footer(school_name)
        rows = await session.execute(
            select(MessageAttachment.filename, MessageAttachment.content_type, AttachmentBlob)
            .join(AttachmentBlob, AttachmentBlob.sha256 == MessageAttachment.sha256)
            .where(MessageAttachment.message_id == message_id)
            .options(undefer(AttachmentBlob.content))
            .order_by(MessageAttachment.id)
        )
        attachments = tuple(
            Attachment(filename=name, content_type=content_type, content=blob.content)
            for name, content_type, blob in rows
        )
    return MessageContent(
        subject=message.subject,
        body=body,
        attachments=attachments,
        sender_id=message.sender_id,
        sensitive=message.sensitive,
        text=message.body,
    )
