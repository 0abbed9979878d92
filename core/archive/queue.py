"""Putting documents in the archive queue, and the folders they are filed in.

`enqueue_on` is what the document service calls when a document is finalized or sent:
inside its transaction, so the document's new status and its archive entry are written
together or not at all. Enqueueing is idempotent (one entry per document), and folders
are created on first use with INSERT .. ON CONFLICT DO NOTHING, so two documents of the
same student finalized at the same moment share one folder instead of failing.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam, false, literal, select
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


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name


def _insert(session: AsyncSession, model: Any) -> Any:
    return (postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert)(model)


# The statements of a queueing, built once (per dialect where the INSERT's ON CONFLICT
# differs) and run with bound parameters: enqueueing is part of every archived letter's
# send, and building them per call cost more than running them.
_ENTRY_OF_DOCUMENT = select(ArchiveEntry).where(
    ArchiveEntry.document_id == bindparam("document_id")
)
_STUDENT_FOLDER = select(ArchiveFolder).where(ArchiveFolder.student_id == bindparam("student_id"))


@functools.cache
def _new_student_folder(dialect: str) -> Any:
    """INSERT of the student's folder, its title read from the person, returning it as an
    ArchiveFolder (nothing when the folder exists: a concurrent transaction made it; or
    no such person). Loaded through `from_statement`, as `_new_entry`."""
    table = ArchiveFolder.__table__
    title = literal(student_folder_title("")) + Person.given_name + " " + Person.family_name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .from_select(
            ["kind", "student_id", "title", "closed", "created_at", "updated_at"],
            # Typed literals and parameters, so PostgreSQL gets its enum and timestamp types.
            select(
                literal(ArchiveFolderKind.STUDENT, table.c.kind.type),
                Person.id,
                title,
                false(),
                bindparam("folder_now", type_=table.c.created_at.type),
                bindparam("folder_now", type_=table.c.updated_at.type),
            ).where(Person.id == bindparam("folder_student_id")),
        )
        .on_conflict_do_nothing()
        .returning(*table.c)
    )
    return select(ArchiveFolder).from_statement(statement)


@functools.cache
def _new_entry(dialect: str) -> Any:
    """INSERT of a queued entry with the school's case owner, returning it as an
    ArchiveEntry (nothing when a concurrent enqueue made one first). A table INSERT,
    loaded through `from_statement`, so that the parameters are its bound parameters
    (an ORM INSERT reads a dict of parameters as rows of a bulk insert)."""
    table = ArchiveEntry.__table__
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .values(
            document_id=bindparam("entry_document_id"),
            school_id=bindparam("entry_school_id"),
            folder_id=bindparam("entry_folder_id"),
            status=ArchiveStatus.QUEUED,
            attempts=0,
            case_owner=select(School.case_owner_initials)
            .where(School.id == bindparam("entry_school_id"))
            .scalar_subquery(),
            requested_by_id=bindparam("entry_requested_by_id"),
            created_at=bindparam("entry_now", type_=table.c.created_at.type),
            updated_at=bindparam("entry_now", type_=table.c.updated_at.type),
        )
        .on_conflict_do_nothing()
        .returning(*table.c)
    )
    return select(ArchiveEntry).from_statement(statement)


async def student_folder(session: AsyncSession, student_id: int) -> ArchiveFolder:
    """The student's folder, created (locally) on first use: one statement when it
    exists, two when it is made (the title is read from the person inside the INSERT)."""
    parameters = {"student_id": student_id}
    found = (await session.execute(_STUDENT_FOLDER, parameters)).scalar_one_or_none()
    if found is not None:
        return found
    created = (
        await session.execute(
            _new_student_folder(_dialect(session)),
            {"folder_student_id": student_id, "folder_now": utcnow()},
        )
    ).scalar_one_or_none()
    if created is not None:
        return created
    # Nothing inserted: a concurrent transaction made the folder first, or there is no
    # such person.
    found = (await session.execute(_STUDENT_FOLDER, parameters)).scalar_one_or_none()
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
    of_document = {"document_id": document.id}
    existing = (await session.execute(_ENTRY_OF_DOCUMENT, of_document)).scalar_one_or_none()
    if existing is not None:
        return existing
    folder = await folder_for(session, doctype, document)
    # The case owner is read inside the INSERT, and RETURNING gives the new entry: one
    # statement. Nothing comes back when a concurrent enqueue won; then read theirs.
    inserted = (
        await session.execute(
            _new_entry(_dialect(session)),
            {
                "entry_document_id": document.id,
                "entry_school_id": document.school_id,
                "entry_folder_id": folder.id,
                "entry_requested_by_id": requested_by_id,
                "entry_now": utcnow(),
            },
        )
    ).scalar_one_or_none()
    if inserted is not None:
        return inserted
    return (await session.execute(_ENTRY_OF_DOCUMENT, of_document)).scalar_one()


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
