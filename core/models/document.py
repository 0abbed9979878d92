"""Documents made from doctypes, and their deliveries (the durable outbox)."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, UtcDateTime, utcnow


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e])


class DocumentStatus(enum.StrEnum):
    DRAFT = "draft"
    FINALIZED = "finalized"
    SENT = "sent"


class Document(Base):
    __tablename__ = "document"

    id: Mapped[int] = mapped_column(primary_key=True)
    doctype_key: Mapped[str] = mapped_column(String(100), index=True)
    title: Mapped[str] = mapped_column(String(300))
    student_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    school_year_id: Mapped[int] = mapped_column(ForeignKey("school_year.id"))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[DocumentStatus] = mapped_column(
        _enum(DocumentStatus, "document_status"), default=DocumentStatus.DRAFT
    )
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    restriction_basis: Mapped[str | None] = mapped_column(String(300))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # Set when finalized: the rendered letter, its PDF/A and the signature.
    html: Mapped[str | None] = mapped_column(Text)
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    pdf_sha256: Mapped[str | None] = mapped_column(String(64))
    finalized_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finalized_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Deleting keeps the row (and its audit trail) but hides it everywhere.
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PRINTED = "printed"
    FAILED = "failed"


class Delivery(Base):
    """One document to one recipient over one channel: also the outbox job that the
    worker claims, retries with backoff, and finishes."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("document_id", "recipient_id", "channel"),
        # A message reaches each recipient once per channel (NULL document ids and
        # message ids are distinct, so each constraint guards its own kind).
        UniqueConstraint("message_id", "recipient_id", "channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int | None] = mapped_column(ForeignKey("document.id"), index=True)
    # Or a message (sendMessage's email copies, notices, SMS): exactly one of the two.
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("message.id", use_alter=True), index=True
    )
    recipient_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"))
    channel: Mapped[str] = mapped_column(String(50))
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # A claimed job whose lease runs out (a worker died mid-send) is claimed again.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(200))
    receipt: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The doctype's settings for this channel's plugin (e.g. SvarUt's security level),
    # fixed when the document is sent.
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    units: Mapped[int] = mapped_column(default=0)
    cost: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


Index("ix_delivery_due", Delivery.status, Delivery.next_attempt_at)
Index("ix_delivery_channel_external", Delivery.channel, Delivery.external_id)
