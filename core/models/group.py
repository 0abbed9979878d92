"""Groups of students per school year: classes, subject groups and SFO groups."""

from __future__ import annotations

import enum

from sqlalchemy import Boolean, CheckConstraint, Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base


class GroupKind(enum.StrEnum):
    CLASS = "class"
    SUBJECT = "subject"
    SFO = "sfo"


class Group(Base):
    __tablename__ = "student_group"
    __table_args__ = (
        UniqueConstraint("school_id", "school_year_id", "name"),
        CheckConstraint("grade IS NULL OR grade BETWEEN 1 AND 10", name="grade"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    school_year_id: Mapped[int] = mapped_column(ForeignKey("school_year.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[GroupKind] = mapped_column(
        Enum(GroupKind, name="group_kind", values_callable=lambda e: [m.value for m in e])
    )
    grade: Mapped[int | None] = mapped_column()


class GroupMembership(Base):
    __tablename__ = "group_membership"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("student_group.id", ondelete="CASCADE"), primary_key=True
    )
    student_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class GroupTeacher(Base):
    """An employee responsible for a group; the class's contact teacher is flagged."""

    __tablename__ = "group_teacher"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("student_group.id", ondelete="CASCADE"), primary_key=True
    )
    employee_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    is_contact_teacher: Mapped[bool] = mapped_column(Boolean, default=False)
