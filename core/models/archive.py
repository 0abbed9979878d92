"""The archive queue: documents waiting for, or done with, transfer to the Noark 5
archive, and the archive folders (cases) they are filed in."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, UtcDateTime, utcnow


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e])


class ArchiveStatus(enum.StrEnum):
    QUEUED = "queued"  # Klar
    ARCHIVED = "archived"  # Arkivert
    FAILED = "failed"  # Feilet
    DISMISSED = "dismissed"  # failed, and given up on with a recorded reason


class ArchiveFolderKind(enum.StrEnum):
    STUDENT = "student"  # elevmappe: one per student
    SCHOOL = "school"  # skolemappe: one per school per school year


class ArchiveFolder(Base):
    """A case (saksmappe) in the archive. Created locally on first use; its case year and
    sequence number come from the archive's receipt when we create it, or are entered by
    the municipality administrator when the case already exists (mapping)."""

    __tablename__ = "archive_folder"
    __table_args__ = (
        UniqueConstraint("student_id"),
        UniqueConstraint("school_id", "school_year_id"),
        UniqueConstraint("case_year", "case_sequence"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[ArchiveFolderKind] = mapped_column(_enum(ArchiveFolderKind, "archive_folder_kind"))
    # Student folders: the student. School folders: the school and the school year.
    student_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    school_id: Mapped[int | None] = mapped_column(ForeignKey("school.id"))
    school_year_id: Mapped[int | None] = mapped_column(ForeignKey("school_year.id"))
    title: Mapped[str] = mapped_column(String(300))
    case_year: Mapped[int | None] = mapped_column(Integer)
    case_sequence: Mapped[int | None] = mapped_column(Integer)
    # Set when the administrator mapped the folder to an existing case in the archive.
    mapped_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ArchiveEntry(Base):
    """One document to be registered (journalpost) in the archive; also the batch job.
    Its id is the external system key sent with the registry entry, so a resend after an
    unclear result finds the existing registry entry instead of creating a second one."""

    __tablename__ = "archive_entry"
    __table_args__ = (UniqueConstraint("document_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document.id"))
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("archive_folder.id"), index=True)
    status: Mapped[ArchiveStatus] = mapped_column(
        _enum(ArchiveStatus, "archive_status"), default=ArchiveStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The principal's initials when the entry was queued: a new principal applies to new
    # entries only.
    case_owner: Mapped[str | None] = mapped_column(String(20))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    registry_year: Mapped[int | None] = mapped_column(Integer)
    registry_sequence: Mapped[int | None] = mapped_column(Integer)
    receipt: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    dismissed_reason: Mapped[str | None] = mapped_column(Text)
    dismissed_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    archived_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


Index("ix_archive_entry_status", ArchiveEntry.status, ArchiveEntry.id)
