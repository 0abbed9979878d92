"""Messages: what the in-app channel writes, what `sendMessage` writes, and what the
inbox reads. A message keeps the recipients it was resolved to when it was sent (with
the role and the group they were reached through), so a later group change does not
rewrite history."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, UtcDateTime, utcnow


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e])


class MessageKind(enum.StrEnum):
    """Why a message exists: written by a person, or written by Tavle itself."""

    MESSAGE = "message"  # sendMessage / a reply
    DOCUMENT = "document"  # the in-app copy of a sent document
    NOTICE = "notice"  # automatic notice (absence, remark)
    EMERGENCY = "emergency"  # the in-app copy of an emergency SMS


class RecipientRole(enum.StrEnum):
    """What the recipient (or the sender) was when the message was sent."""

    GUARDIAN = "guardian"
    STUDENT = "student"
    EMPLOYEE = "employee"


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
    kind: Mapped[MessageKind] = mapped_column(
        _enum(MessageKind, "message_kind"),
        default=MessageKind.MESSAGE,
        # As migration 0004 added the column to existing rows.
        server_default=MessageKind.MESSAGE.value,
    )
    # The sender's role when writing: the school nurse reads what guardians wrote.
    sender_role: Mapped[RecipientRole | None] = mapped_column(
        _enum(RecipientRole, "message_sender_role")
    )
    # Replies share the first message's id as their thread; the first message has none.
    thread_id: Mapped[int | None] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), index=True
    )
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    read_receipt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A message about one student may not carry sensitive content (SvarUt is the way).
    about_student_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


Index("ix_message_school_sent", Message.school_id, Message.sent_at)


class MessageRecipient(Base):
    __tablename__ = "message_recipient"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    role: Mapped[RecipientRole | None] = mapped_column(_enum(RecipientRole, "recipient_role"))
    # The group the recipient was found through (null when named directly), and for a
    # guardian the child that made them a recipient.
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("student_group.id", ondelete="SET NULL")
    )
    student_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))


class AttachmentBlob(Base):
    """Attachment content, addressed by its SHA-256: the same file sent to many messages
    is stored once, and no user-given name ever becomes a path."""

    __tablename__ = "attachment_blob"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class MessageAttachment(Base):
    __tablename__ = "message_attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(ForeignKey("attachment_blob.sha256"))


class MessageQuestion(Base):
    """An optional question with answer options, at most one per message."""

    __tablename__ = "message_question"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), unique=True
    )
    text: Mapped[str] = mapped_column(String(500))


class MessageQuestionOption(Base):
    __tablename__ = "message_question_option"
    __table_args__ = (UniqueConstraint("question_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    question_id: Mapped[int] = mapped_column(
        ForeignKey("message_question.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(String(200))


class MessageAnswer(Base):
    """One recipient's answer; answering again replaces it."""

    __tablename__ = "message_answer"

    question_id: Mapped[int] = mapped_column(
        ForeignKey("message_question.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True
    )
    option_id: Mapped[int] = mapped_column(
        ForeignKey("message_question_option.id", ondelete="CASCADE")
    )
    answered_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class InboundSms(Base):
    """A text message received from a phone (e.g. a guardian reporting absence to the
    contact teacher): the "SMS from guardians" count in the statistics."""

    __tablename__ = "inbound_sms"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int | None] = mapped_column(ForeignKey("school.id"), index=True)
    from_number: Mapped[str] = mapped_column(String(20))
    # The person the number belongs to, when it is known.
    sender_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    sender_role: Mapped[RecipientRole | None] = mapped_column(
        _enum(RecipientRole, "inbound_sms_sender_role")
    )
    text: Mapped[str] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    # The in-app message it became (to the contact teacher), if any.
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
