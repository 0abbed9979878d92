"""What people do with the archive queue: tick "send to archive" on an optional document,
set a failed entry back to queued, dismiss one with a reason, map a folder to an existing
case and close a school folder at year end. Each is one transaction, checks the caller's
scope in SQL, and writes an audit event."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, exists, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.access import scopes
from core.access.grants import Principal
from core.archive import queue
from core.archive.preconditions import unmet_preconditions
from core.db import transaction
from core.errors import BadInput, Forbidden, NotFound
from core.models import (
    ArchiveEntry,
    ArchiveFolder,
    ArchiveFolderKind,
    ArchiveStatus,
    Document,
    DocumentStatus,
    Enrolment,
    School,
    SchoolYear,
)
from core.models.base import utcnow

MAX_REASON_LENGTH = 1000


def entries_in_scope(principal: Principal, action: str = "read") -> ColumnElement[bool]:
    """SQL condition: archive entries the caller may `action` (read, requeue, dismiss),
    by the school the document belongs to."""
    return scopes.schools(
        principal, principal.scopes("archive_log", action), ArchiveEntry.school_id
    )


def folders_in_scope(principal: Principal, action: str = "read") -> ColumnElement[bool]:
    """SQL condition: folders the caller may `action` (read, manage). School folders by
    their school, student folders by the student."""
    grants = principal.scopes("archive_folder", action)
    return (
        (ArchiveFolder.kind == ArchiveFolderKind.SCHOOL)
        & scopes.schools(principal, grants, ArchiveFolder.school_id)
    ) | (
        (ArchiveFolder.kind == ArchiveFolderKind.STUDENT)
        & scopes.students(principal, grants, ArchiveFolder.student_id)
    )


def _doctype(state: Any, key: str) -> Any:
    doctype = state.doctypes.get(key)
    if doctype is None:
        raise BadInput(f"Ukjent dokumenttype {key!r}.", field="id")
    return doctype


async def _may_tick(
    session: AsyncSession, principal: Principal, doctype: Any, document: Document
) -> bool:
    """The doctype's archive_roles at the document's school (or municipality-wide); a
    doctype naming no roles lets whoever may finalize documents for the student tick."""
    if doctype.archive_roles:
        return any(
            grant.role in doctype.archive_roles
            and (grant.school_id is None or grant.school_id == document.school_id)
            for grant in principal.grants
        )
    grants = principal.scopes("document", "finalize")
    if not grants:
        return False
    return await _holds(session, scopes.students(principal, grants, literal(document.student_id)))


async def _school_year_span(session: AsyncSession, school_year_id: int) -> Any:
    year = await session.get(SchoolYear, school_year_id)
    return (year.starts_on, year.ends_on) if year else None


async def archive_document(state: Any, principal: Principal, document_id: int) -> Document:
    """ "Send to archive" for a document of an optional doctype: only by the roles the
    doctype names and only when its preconditions hold."""
    from core.documents.service import visible_documents

    async with transaction(state.sessions) as session:
        document = (
            await session.execute(
                select(Document).where(Document.id == document_id, Document.deleted_at.is_(None))
            )
        ).scalar_one_or_none()
        if document is None:
            raise NotFound("Dokumentet finnes ikke.")
        visible = (
            await session.execute(
                select(
                    exists().where(
                        Document.id == document_id, visible_documents(principal, state.doctypes)
                    )
                )
            )
        ).scalar()
        if not visible:
            raise Forbidden()
        doctype = _doctype(state, document.doctype_key)
        if doctype.archive == "never":
            raise BadInput(f"Dokumenttypen «{doctype.title}» skal aldri arkiveres.", field="id")
        if doctype.archive == "always":
            when = "sendes" if doctype.archive_on == "send" else "ferdigstilles"
            raise BadInput(
                f"Dokumenttypen «{doctype.title}» arkiveres automatisk når dokumentet {when}.",
                field="id",
            )
        if not await _may_tick(session, principal, doctype, document):
            raise Forbidden("Du har ikke en rolle som kan sende denne dokumenttypen til arkivet.")
        if document.status == DocumentStatus.DRAFT:
            raise BadInput("Dokumentet må ferdigstilles før det kan arkiveres.", field="id")
        existing = (
            await session.execute(
                select(ArchiveEntry.status).where(ArchiveEntry.document_id == document.id)
            )
        ).scalar_one_or_none()
        if existing is not None:
            raise BadInput(
                f"Dokumentet er allerede sendt til arkivet (status {existing.value}).", field="id"
            )
        reasons = unmet_preconditions(
            doctype, document.fields, await _school_year_span(session, document.school_year_id)
        )
        if reasons:
            raise BadInput(" ".join(reasons), field="id")
        entry = await queue.enqueue(session, doctype, document, requested_by_id=principal.person_id)
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="archive_document",
            resource_type="document",
            resource_id=document.id,
            detail={"archive_entry_id": entry.id, "doctype": doctype.key},
        )
    return document


async def _entry_for(
    session: AsyncSession, principal: Principal, entry_id: int, action: str
) -> ArchiveEntry:
    entry = await session.get(ArchiveEntry, entry_id, with_for_update=True)
    if entry is None:
        raise NotFound("Arkivposten finnes ikke.")
    allowed = (
        await session.execute(
            select(exists().where(ArchiveEntry.id == entry_id, entries_in_scope(principal, action)))
        )
    ).scalar()
    if not allowed:
        raise Forbidden()
    return entry


async def requeue_entry(state: Any, principal: Principal, entry_id: int) -> ArchiveEntry:
    """Set a failed entry back to queued (after its cause is fixed); the next batch sends
    it again. The case owner is refreshed when the entry had none."""
    async with transaction(state.sessions) as session:
        entry = await _entry_for(session, principal, entry_id, "requeue")
        if entry.status != ArchiveStatus.FAILED:
            raise BadInput(
                f"Bare arkivposter med status «feilet» kan settes til «klar» "
                f"(denne har status {entry.status.value}).",
                field="id",
            )
        previous_error = entry.last_error
        if not entry.case_owner:
            school = await session.get(School, entry.school_id)
            entry.case_owner = school.case_owner_initials if school else None
        entry.status = ArchiveStatus.QUEUED
        entry.updated_at = utcnow()
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="requeue_archive_entry",
            resource_type="archive_entry",
            resource_id=entry.id,
            detail={"previous_error": (previous_error or "")[:500]},
        )
    return entry


async def dismiss_entry(
    state: Any, principal: Principal, entry_id: int, *, reason: str
) -> ArchiveEntry:
    """Give up on a failed entry; the reason is kept on it and in the audit trail."""
    reason = (reason or "").strip()
    if not reason:
        raise BadInput("Oppgi hvorfor arkivposten avskrives.", field="reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise BadInput("Begrunnelsen er for lang.", field="reason")
    async with transaction(state.sessions) as session:
        entry = await _entry_for(session, principal, entry_id, "dismiss")
        if entry.status != ArchiveStatus.FAILED:
            raise BadInput(
                "Bare arkivposter med status «feilet» kan avskrives "
                f"(denne har status {entry.status.value}).",
                field="id",
            )
        entry.status = ArchiveStatus.DISMISSED
        entry.dismissed_reason = reason
        entry.dismissed_by_id = principal.person_id
        entry.updated_at = utcnow()
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="dismiss_archive_entry",
            resource_type="archive_entry",
            resource_id=entry.id,
            detail={"reason": reason, "document_id": entry.document_id},
        )
    return entry


async def _folder_for_change(
    session: AsyncSession, principal: Principal, folder_id: int
) -> ArchiveFolder:
    folder = await session.get(ArchiveFolder, folder_id, with_for_update=True)
    if folder is None:
        raise NotFound("Arkivmappen finnes ikke.")
    allowed = (
        await session.execute(
            select(
                exists().where(ArchiveFolder.id == folder_id, folders_in_scope(principal, "manage"))
            )
        )
    ).scalar()
    if not allowed:
        raise Forbidden()
    return folder


async def close_school_folder(state: Any, principal: Principal, folder_id: int) -> ArchiveFolder:
    """Close a school folder at year end: only when no entry for it is still queued or
    failed, i.e. every document has reached the folder in the archive."""
    async with transaction(state.sessions) as session:
        folder = await _folder_for_change(session, principal, folder_id)
        if folder.kind != ArchiveFolderKind.SCHOOL:
            raise BadInput("Bare skolemapper avsluttes ved skoleårets slutt.", field="id")
        if folder.closed:
            raise BadInput(f"{folder.title} er allerede avsluttet.", field="id")
        counts = dict(
            (
                await session.execute(
                    select(ArchiveEntry.status, func.count())
                    .where(
                        ArchiveEntry.folder_id == folder.id,
                        ArchiveEntry.status.in_([ArchiveStatus.QUEUED, ArchiveStatus.FAILED]),
                    )
                    .group_by(ArchiveEntry.status)
                )
            ).all()
        )
        if counts:
            queued = counts.get(ArchiveStatus.QUEUED, 0)
            failed = counts.get(ArchiveStatus.FAILED, 0)
            raise BadInput(
                f"{folder.title} kan ikke avsluttes: {queued} dokument(er) venter på "
                f"arkivering og {failed} har feilet. Alle dokumenter må være overført først.",
                field="id",
            )
        now = utcnow()
        folder.closed = True
        folder.closed_at = now
        folder.closed_by_id = principal.person_id
        folder.updated_at = now
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="close_school_folder",
            resource_type="archive_folder",
            resource_id=folder.id,
            detail={"title": folder.title},
        )
    return folder


def _check_case_number(case_year: int, case_sequence: int) -> None:
    if not 1990 <= case_year <= 2200:
        raise BadInput("Saksåret må være et årstall (f.eks. 2026).", field="caseYear")
    if case_sequence < 1:
        raise BadInput("Sekvensnummeret må være et positivt tall.", field="caseSequence")


async def _map(
    session: AsyncSession,
    principal: Principal,
    folder: ArchiveFolder,
    case_year: int,
    case_sequence: int,
) -> ArchiveFolder:
    if folder.closed:
        raise BadInput(f"{folder.title} er avsluttet og kan ikke kobles om.", field="id")
    taken = (
        await session.execute(
            select(ArchiveFolder.title).where(
                ArchiveFolder.case_year == case_year,
                ArchiveFolder.case_sequence == case_sequence,
                ArchiveFolder.id != folder.id,
            )
        )
    ).scalar_one_or_none()
    if taken is not None:
        raise BadInput(
            f"Saken {case_year}/{case_sequence} er allerede koblet til «{taken}».",
            field="caseSequence",
        )
    previous = (folder.case_year, folder.case_sequence)
    folder.case_year = case_year
    folder.case_sequence = case_sequence
    folder.mapped_by_id = principal.person_id
    folder.updated_at = utcnow()
    await audit.record(
        session,
        actor_id=principal.person_id,
        action="map_archive_folder",
        resource_type="archive_folder",
        resource_id=folder.id,
        detail={"case": f"{case_year}/{case_sequence}", "previous": list(previous)},
    )
    return folder


async def _holds(session: AsyncSession, condition: Any) -> bool:
    """Whether the SQL condition holds (a scope check on one given id)."""
    return bool((await session.execute(select(condition))).scalar())


async def map_school_folder(
    state: Any,
    principal: Principal,
    *,
    school_id: int,
    school_year_id: int,
    case_year: int,
    case_sequence: int,
) -> ArchiveFolder:
    """Point a school's folder for a school year at the case the archive made by hand
    (seed 000: "Endre år = årtall i Elements og sekvensnr = saksnummer i Elements")."""
    _check_case_number(case_year, case_sequence)
    if not principal.can("archive_folder", "manage"):
        raise Forbidden()
    async with transaction(state.sessions) as session:
        grants = principal.scopes("archive_folder", "manage")
        if not await _holds(session, scopes.schools(principal, grants, literal(school_id))):
            raise Forbidden()
        if await session.get(School, school_id) is None:
            raise NotFound("Skolen finnes ikke.")
        if await session.get(SchoolYear, school_year_id) is None:
            raise NotFound("Skoleåret finnes ikke.")
        folder = await queue.school_folder(session, school_id, school_year_id)
        return await _map(session, principal, folder, case_year, case_sequence)


async def map_student_folder(
    state: Any, principal: Principal, *, student_id: int, case_year: int, case_sequence: int
) -> ArchiveFolder:
    """Point a student's folder at an existing case in the archive."""
    _check_case_number(case_year, case_sequence)
    if not principal.can("archive_folder", "manage"):
        raise Forbidden()
    async with transaction(state.sessions) as session:
        if (
            await session.execute(select(Enrolment.id).where(Enrolment.student_id == student_id))
        ).first() is None:
            raise NotFound("Eleven finnes ikke.")
        grants = principal.scopes("archive_folder", "manage")
        if not await _holds(session, scopes.students(principal, grants, literal(student_id))):
            raise Forbidden()
        folder = await queue.student_folder(session, student_id)
        return await _map(session, principal, folder, case_year, case_sequence)
