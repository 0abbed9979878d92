"""People: students, guardians and employees are all persons; what they are comes from
their relations (enrolment, guardianship, employment) and role assignments."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, UtcDateTime, utcnow


class Person(Base):
    __tablename__ = "person"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Login name for demo tokens and the CLI; real logins map national id or Feide id.
    username: Mapped[str | None] = mapped_column(String(100), unique=True)
    # Fødselsnummer: eleven digits. Only roles with the field permission may read it.
    national_id: Mapped[str | None] = mapped_column(String(11), unique=True)
    feide_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date | None] = mapped_column(Date)
    email: Mapped[str | None] = mapped_column(String(200))
    mobile: Mapped[str | None] = mapped_column(String(20))
    street_address: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(4))
    postal_town: Mapped[str | None] = mapped_column(String(100))
    # Set the first time the person logs in: "activated account" in the statistics.
    activated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"


Index("ix_person_family_given", Person.family_name, Person.given_name, Person.id)


class Enrolment(Base):
    """A student at a school in one school year, in one grade."""

    __tablename__ = "enrolment"
    __table_args__ = (
        UniqueConstraint("student_id", "school_year_id"),
        CheckConstraint("grade BETWEEN 1 AND 10", name="grade"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    school_year_id: Mapped[int] = mapped_column(ForeignKey("school_year.id"), index=True)
    grade: Mapped[int] = mapped_column()


Index("ix_enrolment_school_year_school", Enrolment.school_year_id, Enrolment.school_id)


class Guardianship(Base):
    """A guardian of a student, as the population register states it."""

    __tablename__ = "guardianship"
    __table_args__ = (UniqueConstraint("guardian_id", "student_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    guardian_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    student_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    parental_responsibility: Mapped[bool] = mapped_column(Boolean, default=True)
    # The guardian's own choice to get messages forwarded to their email.
    forward_to_email: Mapped[bool] = mapped_column(Boolean, default=False)


class Employment(Base):
    """An employee's affiliation with a school (or the municipality when school is null)."""

    __tablename__ = "employment"
    __table_args__ = (
        UniqueConstraint("person_id", "school_id"),
        # The constraint above lets a municipality employment (school_id null) repeat.
        Index(
            "uq_employment_municipality",
            "person_id",
            unique=True,
            sqlite_where=text("school_id IS NULL"),
            postgresql_where=text("school_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    school_id: Mapped[int | None] = mapped_column(ForeignKey("school.id"), index=True)
    position: Mapped[str] = mapped_column(String(100))
    # HR system identifier, for the nightly sync.
    employee_number: Mapped[str | None] = mapped_column(String(50), unique=True)
