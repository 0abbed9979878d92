"""Putting documents in the archive queue, and the folders they are filed in.

`enqueue_on` is what the document service calls when a document is finalized or sent:
inside its transaction, so the document's new status and its archive entry are written
together or not at all. Enqueueing is idempotent (one entry per document), and folders
are created on first use with INSERT .. ON CONFLICT DO NOTHING, so two documents of the
same student finalized at the same moment share one folder instead of failing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import false, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadInput
from core.models import (
    ArchiveEntry,
    ArchiveFolder,
    ArchiveFolderKind,
    ArchiveStatus,
    Document,
    Person,
    School,
    SchoolYear,
)
from core.models.base import utcnow

ENTRY_KEY_PREFIX = "tavle-arkivpost-"
FOLDER_KEY_PREFIX = "tavle-mappe-"


def entry_key(entry_id: int) -> str:
    """The external system key of an entry's registry entry (referanseEksternNoekkel)."""
    return f"{ENTRY_KEY_PREFIX}{entry_id}"


def folder_key(folder_id: int) -> str:
    """The external system key of a case Tavle created."""
    return f"{FOLDER_KEY_PREFIX}{folder_id}"


def school_folder_title(school_name: str, school_year_name: str) -> str:
    """ "Skolemappe - <school> <yyyy>/<yyyy>" (seed 000, Vedlegg 2)."""
    return f"Skolemappe - {school_name} {school_year_name}"


def student_folder_title(student_name: str) -> str:
    return f"Elevmappe - {student_name}"


def _insert(session: AsyncSession, model: Any) -> Any:
    dialect = session.bind.dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


async def student_folder(session: AsyncSession, student_id: int) -> ArchiveFolder:
    """The student's folder, created (locally) on first use: one statement when it
    exists, two when it is made (the title is read from the person inside the INSERT)."""
    query = select(ArchiveFolder).where(ArchiveFolder.student_id == student_id)
    found = (await session.execute(query)).scalar_one_or_none()
    if found is not None:
        return found
    now = utcnow()
    columns = ArchiveFolder.__table__.c
    title = literal(student_folder_title("")) + Person.given_name + " " + Person.family_name
    created = (
        await session.execute(
            _insert(session, ArchiveFolder)
            .from_select(
                ["kind", "student_id", "title", "closed", "created_at", "updated_at"],
                # Typed literals, so PostgreSQL gets its enum and timestamp types.
                select(
                    literal(ArchiveFolderKind.STUDENT, columns.kind.type),
                    Person.id,
                    title,
                    false(),
                    literal(now, columns.created_at.type),
                    literal(now, columns.updated_at.type),
                ).where(Person.id == student_id),
            )
            .on_conflict_do_nothing()
            .returning(ArchiveFolder)
        )
    ).scalar_one_or_none()
    if created is not None:
        return created
    # Nothing inserted: a concurrent transaction made the folder first, or there is no
    # such person.
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        raise BadInput("Eleven finnes ikke.", field="studentId")
    return found


async def school_folder(
    session: AsyncSession, school_id: int, school_year_id: int
) -> ArchiveFolder:
    """The school's folder for the school year, created (locally) on first use."""
    query = select(ArchiveFolder).where(
        ArchiveFolder.school_id == school_id, ArchiveFolder.school_year_id == school_year_id
    )
    found = (await session.execute(query)).scalar_one_or_none()
    if found is not None:
        return found
    school = await session.get(School, school_id)
    year = await session.get(SchoolYear, school_year_id)
    if school is None or year is None:
        raise BadInput("Skolen eller skoleåret finnes ikke.", field="schoolId")
    now = utcnow()
    await session.execute(
        _insert(session, ArchiveFolder)
        .values(
            kind=ArchiveFolderKind.SCHOOL,
            school_id=school_id,
            school_year_id=school_year_id,
            title=school_folder_title(school.name, year.name),
            closed=False,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )
    return (await session.execute(query)).scalar_one()


async def folder_for(session: AsyncSession, doctype: Any, document: Document) -> ArchiveFolder:
    """The folder the doctype files the document in (student or school folder)."""
    if doctype.folder == "school":
        folder = await school_folder(session, document.school_id, document.school_year_id)
        if folder.closed:
            raise BadInput(
                f"{folder.title} er avsluttet; dokumentet kan ikke arkiveres i den.", field="id"
            )
        return folder
    return await student_folder(session, document.student_id)


async def enqueue(
    session: AsyncSession,
    doctype: Any,
    document: Document,
    *,
    requested_by_id: int | None = None,
) -> ArchiveEntry:
    """Queue `document` for the archive (status queued) unless it already has an entry;
    returns the entry. The case owner is the school's principal's initials now: a new
    principal applies to entries queued after the change."""
    existing = (
        await session.execute(select(ArchiveEntry).where(ArchiveEntry.document_id == document.id))
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    folder = await folder_for(session, doctype, document)
    now = utcnow()
    # The case owner is read inside the INSERT, and RETURNING gives the new entry: one
    # statement. Nothing comes back when a concurrent enqueue won; then read theirs.
    inserted = (
        await session.execute(
            _insert(session, ArchiveEntry)
            .values(
                document_id=document.id,
                school_id=document.school_id,
                folder_id=folder.id,
                status=ArchiveStatus.QUEUED,
                attempts=0,
                case_owner=select(School.case_owner_initials)
                .where(School.id == document.school_id)
                .scalar_subquery(),
                requested_by_id=requested_by_id,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
            .returning(ArchiveEntry)
        )
    ).scalar_one_or_none()
    if inserted is not None:
        return inserted
    return (
        await session.execute(select(ArchiveEntry).where(ArchiveEntry.document_id == document.id))
    ).scalar_one()


async def enqueue_on(
    session: AsyncSession, doctype: Any, document: Document, *, event: str
) -> ArchiveEntry | None:
    """The document service's hook into the archive queue: when a document of a doctype
    archived "always" reaches the doctype's `archive_on` event ("finalize" or "send"),
    queue it in the caller's transaction. Anything else queues nothing (None)."""
    if event not in ("finalize", "send"):
        raise ValueError(f"unknown archive event {event!r}")
    if getattr(doctype, "archive", "never") != "always":
        return None
    archive_on = getattr(doctype, "archive_on", None) or "finalize"
    if archive_on != event:
        return None
    return await enqueue(session, doctype, document)
