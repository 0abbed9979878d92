"""The municipality, its schools and the school years."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base


class Municipality(Base):
    __tablename__ = "municipality"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    organisation_number: Mapped[str] = mapped_column(String(9), unique=True)


class School(Base):
    __tablename__ = "school"
    __table_args__ = (
        CheckConstraint("first_grade BETWEEN 1 AND last_grade AND last_grade <= 10", name="grades"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    municipality_id: Mapped[int] = mapped_column(ForeignKey("municipality.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    organisation_number: Mapped[str | None] = mapped_column(String(9), unique=True)
    first_grade: Mapped[int] = mapped_column(Integer)
    last_grade: Mapped[int] = mapped_column(Integer)
    has_sfo: Mapped[bool] = mapped_column(Boolean, default=False)
    # The archive's case owner for new entries (the principal's initials).
    case_owner_initials: Mapped[str | None] = mapped_column(String(20))


class SchoolYear(Base):
    __tablename__ = "school_year"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(9), unique=True)  # "2026/2027"
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    is_current: Mapped[bool] = mapped_column(Boolean, default=False)


# At most one current school year: a partial unique index on both databases.
Index(
    "uq_school_year_one_current",
    SchoolYear.is_current,
    unique=True,
    sqlite_where=text("is_current"),
    postgresql_where=text("is_current"),
)
