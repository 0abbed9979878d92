"""Absence, remarks (order and conduct) and emergency SMS.

The logic lives in core/messaging (absence, remarks, emergency SMS); these are the rows.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, UtcDateTime, utcnow


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e])


class AbsenceReporter(enum.StrEnum):
    GUARDIAN = "guardian"  # reported by a guardian (a notice from home)
    SCHOOL = "school"  # registered by the school


class Absence(Base):
    __tablename__ = "absence"

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    school_year_id: Mapped[int] = mapped_column(ForeignKey("school_year.id"))
    date: Mapped[date] = mapped_column(Date)
    whole_day: Mapped[bool] = mapped_column(Boolean, default=True)
    # Lesson numbers (1, 2, ...) when not the whole day.
    lessons: Mapped[list[int]] = mapped_column(JSON, default=list)
    reported_by: Mapped[AbsenceReporter] = mapped_column(_enum(AbsenceReporter, "absence_reporter"))
    reporter_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    valid_reason: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


Index("ix_absence_student_date", Absence.student_id, Absence.date)


class AbsenceSmsNotice(Base):
    """The same-day SMS for unannounced absence: one per student per day, enforced by the
    unique constraint (two teachers registering at once cannot both send it)."""

    __tablename__ = "absence_sms_notice"
    __table_args__ = (UniqueConstraint("student_id", "date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    date: Mapped[date] = mapped_column(Date)
    absence_id: Mapped[int] = mapped_column(ForeignKey("absence.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class RemarkKind(enum.StrEnum):
    ORDER = "order"  # orden
    CONDUCT = "conduct"  # atferd


class Remark(Base):
    __tablename__ = "remark"

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    school_year_id: Mapped[int] = mapped_column(ForeignKey("school_year.id"))
    kind: Mapped[RemarkKind] = mapped_column(_enum(RemarkKind, "remark_kind"))
    text: Mapped[str] = mapped_column(Text)
    teacher_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class EmergencySms(Base):
    """One emergency SMS to a whole school. The recipients are the message's recipients
    (message_recipient rows of `message_id`) and its SMS deliveries carry `message_id`;
    the counts are fixed when sent, the delivered/failed summary is read from the
    deliveries."""

    __tablename__ = "emergency_sms"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    sender_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    recipient_count: Mapped[int] = mapped_column(Integer, default=0)
    # Segments per SMS (the text is the same for every recipient) and the total cost.
    segments: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
