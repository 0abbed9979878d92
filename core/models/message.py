"""In-app messages: what the in-app channel writes, and what the inbox reads."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, UtcDateTime, utcnow


class Message(Base):
    __tablename__ = "message"

    id: Mapped[int] = mapped_column(primary_key=True)
    sender_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    school_id: Mapped[int | None] = mapped_column(ForeignKey("school.id"))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    document_id: Mapped[int | None] = mapped_column(ForeignKey("document.id"))
    # The delivery that produced this message: a retried in-app delivery finds it and
    # does not write a second message.
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("delivery.id"), unique=True)


class MessageRecipient(Base):
    __tablename__ = "message_recipient"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
