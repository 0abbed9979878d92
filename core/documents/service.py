"""Document life cycle: create, edit while draft, finalize (render, hash, sign), send
(one outbox delivery per recipient and channel) and delete. Each operation is one
transaction, checks the caller's scope in SQL first, and writes an audit event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.access import scopes
from core.access.grants import Principal
from core.db import transaction
from core.documents.fields import clean_fields
from core.documents.render import letter_context, render_document
from core.documents.routing import plan_deliveries
from core.errors import BadInput, Forbidden, NotFound
from core.models import (
    Delivery,
    Document,
    DocumentStatus,
    Enrolment,
    Group,
    GroupKind,
    GroupMembership,
    Guardianship,
    Municipality,
    Person,
    School,
)
from core.models.base import utcnow

MAX_BASIS_LENGTH = 300


@dataclass(frozen=True)
class Permission:
    resource: str
    action: str

    @classmethod
    def parse(cls, text: str) -> Permission:
        resource, _, action = text.partition(":")
        return cls(resource, action)


def visible_documents(principal: Principal) -> Any:
    """SQL condition: documents the caller may read. Restricted documents need the
    separate document_restricted permission; deleted ones are gone for everyone."""
    readable = scopes.students(principal, principal.scopes("document", "read"), Document.student_id)
    restricted_ok = scopes.students(
        principal, principal.scopes("document_restricted", "read"), Document.student_id
    )
    return and_(
        Document.deleted_at.is_(None),
        readable,
        (Document.restricted.is_(False)) | restricted_ok,
    )


async def _student_in_scope(
    session: AsyncSession, principal: Principal, student_id: int, *permissions: Permission
) -> bool:
    grants = [g for p in permissions for g in principal.scopes(p.resource, p.action)]
    if not grants:
        return False
    condition = scopes.students(principal, grants, Enrolment.student_id, Enrolment.school_id)
    return bool(
        (
            await session.execute(
                select(
                    exists().where(
                        Enrolment.student_id == student_id,
                        Enrolment.school_year_id == principal.current_school_year_id,
                        condition,
                    )
                )
            )
        ).scalar()
    )


async def _require(
    session: AsyncSession, principal: Principal, student_id: int, *permissions: Permission
) -> None:
    if not await _student_in_scope(session, principal, student_id, *permissions):
        raise Forbidden("Du har ikke tilgang til å gjøre dette for denne eleven.")


def _doctype(state: Any, key: str) -> Any:
    doctype = state.doctypes.get(key)
    if doctype is None:
        raise BadInput(f"Ukjent dokumenttype {key!r}.", field="doctype")
    return doctype


def _basis(doctype: Any, requested: str | None) -> tuple[bool, str | None]:
    """(restricted, basis): the doctype's default unless the author may and does set one."""
    if requested is None:
        return doctype.restricted, doctype.restriction_basis if doctype.restricted else None
    if not doctype.restriction_basis_editable:
        raise BadInput(
            "Unntakshjemmelen for denne dokumenttypen kan ikke endres.", field="restrictionBasis"
        )
    basis = requested.strip()
    if not basis:
        if doctype.restricted:
            raise BadInput(
                "Dokumenttypen er unntatt offentlighet og må ha en hjemmel.",
                field="restrictionBasis",
            )
        return False, None
    if len(basis) > MAX_BASIS_LENGTH:
        raise BadInput("Hjemmelen er for lang.", field="restrictionBasis")
    return True, basis


async def _load_for_change(
    session: AsyncSession, principal: Principal, document_id: int
) -> Document:
    document = (
        await session.execute(
            select(Document).where(Document.id == document_id, Document.deleted_at.is_(None))
        )
    ).scalar_one_or_none()
    if document is None:
        raise NotFound("Dokumentet finnes ikke.")
    visible = (
        await session.execute(
            select(exists().where(Document.id == document_id, visible_documents(principal)))
        )
    ).scalar()
    if not visible:
        raise Forbidden()
    return document


async def create_document(
    state: Any,
    principal: Principal,
    *,
    doctype_key: str,
    student_id: int,
    fields: Any,
    restriction_basis: str | None = None,
) -> Document:
    doctype = _doctype(state, doctype_key)
    cleaned = clean_fields(doctype, fields, require_all=False)
    restricted, basis = _basis(doctype, restriction_basis)
    async with transaction(state.sessions) as session:
        enrolment = (
            await session.execute(
                select(Enrolment).where(
                    Enrolment.student_id == student_id,
                    Enrolment.school_year_id == principal.current_school_year_id,
                )
            )
        ).scalar_one_or_none()
        if enrolment is None:
            raise NotFound("Eleven finnes ikke.")
        await _require(session, principal, student_id, Permission.parse(doctype.permission))
        student = await session.get(Person, student_id)
        assert student is not None
        now = utcnow()
        document = Document(
            doctype_key=doctype.key,
            title=f"{doctype.title} – {student.name}",
            student_id=student_id,
            school_id=enrolment.school_id,
            school_year_id=enrolment.school_year_id,
            fields=cleaned,
            status=DocumentStatus.DRAFT,
            sensitive=doctype.sensitive,
            restricted=restricted,
            restriction_basis=basis,
            created_by_id=principal.person_id,
            created_at=now,
            updated_at=now,
        )
        session.add(document)
        await session.flush()
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="create_document",
            resource_type="document",
            resource_id=document.id,
            detail={"doctype": doctype.key, "student_id": student_id},
        )
    return document


async def update_document(
    state: Any,
    principal: Principal,
    document_id: int,
    *,
    fields: Any | None,
    restriction_basis: str | None,
) -> Document:
    async with transaction(state.sessions) as session:
        document = await _load_for_change(session, principal, document_id)
        doctype = _doctype(state, document.doctype_key)
        await _require(
            session, principal, document.student_id, Permission.parse(doctype.permission)
        )
        if document.status != DocumentStatus.DRAFT:
            raise BadInput("Dokumentet er ferdigstilt og kan ikke endres.", field="id")
        if fields is not None:
            document.fields = clean_fields(doctype, fields, require_all=False)
        if restriction_basis is not None:
            document.restricted, document.restriction_basis = _basis(doctype, restriction_basis)
        document.updated_at = utcnow()
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="update_document",
            resource_type="document",
            resource_id=document.id,
        )
    return document


async def _class_name(session: AsyncSession, student_id: int, year_id: int) -> str | None:
    return (
        await session.execute(
            select(Group.name)
            .join(GroupMembership, GroupMembership.group_id == Group.id)
            .where(
                GroupMembership.student_id == student_id,
                Group.school_year_id == year_id,
                Group.kind == GroupKind.CLASS,
            )
        )
    ).scalar()


async def finalize_document(state: Any, principal: Principal, document_id: int) -> Document:
    """Render, hash and sign; the document is immutable afterwards."""
    async with state.sessions() as session:
        document = await _load_for_change(session, principal, document_id)
        doctype = _doctype(state, document.doctype_key)
        await _require(
            session,
            principal,
            document.student_id,
            Permission("document", "finalize"),
            Permission.parse(doctype.permission),
        )
        if document.status != DocumentStatus.DRAFT:
            raise BadInput("Dokumentet er allerede ferdigstilt.", field="id")
        cleaned = clean_fields(doctype, document.fields, require_all=True)
        student = await session.get(Person, document.student_id)
        school = await session.get(School, document.school_id)
        author = await session.get(Person, document.created_by_id)
        signer = await session.get(Person, principal.person_id)
        assert student and school and author and signer
        municipality = await session.get(Municipality, school.municipality_id)
        enrolment = (
            await session.execute(
                select(Enrolment.grade).where(
                    Enrolment.student_id == student.id,
                    Enrolment.school_year_id == document.school_year_id,
                )
            )
        ).scalar()
        class_name = await _class_name(session, student.id, document.school_year_id)
    signed_at = utcnow()
    rendered = await render_document(
        doctype,
        letter_context(
            title=document.title,
            created_at=document.created_at,
            fields=cleaned,
            student={
                "name": student.name,
                "birth_date": student.birth_date,
                "grade": enrolment,
                "class_name": class_name,
            },
            school_name=school.name,
            municipality_name=municipality.name if municipality else "",
            author_name=author.name,
            signer_name=signer.name,
            signed_at=signed_at,
            restriction_basis=document.restriction_basis,
            doctype=doctype,
        ),
    )
    async with transaction(state.sessions) as session:
        # Only a draft is finalized: a concurrent finalize loses here instead of signing twice.
        result = await session.execute(
            update(Document)
            .where(Document.id == document_id, Document.status == DocumentStatus.DRAFT)
            .values(
                status=DocumentStatus.FINALIZED,
                fields=cleaned,
                html=rendered.html,
                pdf=rendered.pdf,
                pdf_sha256=rendered.sha256,
                finalized_at=signed_at,
                finalized_by_id=principal.person_id,
                updated_at=signed_at,
            )
        )
        if result.rowcount != 1:
            raise BadInput("Dokumentet er allerede ferdigstilt.", field="id")
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="finalize_document",
            resource_type="document",
            resource_id=document_id,
            detail={"sha256": rendered.sha256},
        )
        finalized = await session.get(Document, document_id)
        assert finalized is not None
    return finalized


async def _recipients(session: AsyncSession, doctype: Any, student_id: int) -> list[Person]:
    people: list[Person] = []
    if doctype.recipients in ("student", "student_and_guardians"):
        student = await session.get(Person, student_id)
        if student is not None:
            people.append(student)
    if doctype.recipients in ("guardians", "student_and_guardians"):
        people += list(
            (
                await session.execute(
                    select(Person)
                    .join(Guardianship, Guardianship.guardian_id == Person.id)
                    .where(
                        Guardianship.student_id == student_id,
                        Guardianship.parental_responsibility.is_(True),
                    )
                    .order_by(Person.id)
                )
            ).scalars()
        )
    return people


async def send_document(state: Any, principal: Principal, document_id: int) -> Document:
    """Write one delivery per (recipient, channel) in the same transaction as the status
    change; the worker does the sending. Nothing is written when a recipient cannot be
    reached."""
    async with transaction(state.sessions) as session:
        document = await _load_for_change(session, principal, document_id)
        doctype = _doctype(state, document.doctype_key)
        await _require(
            session,
            principal,
            document.student_id,
            Permission("document", "send"),
            Permission.parse(doctype.permission),
        )
        if document.status == DocumentStatus.DRAFT:
            raise BadInput("Dokumentet må ferdigstilles før det sendes.", field="id")
        if document.status == DocumentStatus.SENT:
            raise BadInput("Dokumentet er allerede sendt.", field="id")
        if doctype.recipients == "none" or not doctype.channels:
            raise BadInput(f"Dokumenttypen {doctype.key!r} sendes ikke ut.", field="id")
        recipients = await _recipients(session, doctype, document.student_id)
        if not recipients:
            raise BadInput("Dokumentet har ingen mottakere.", field="recipients")
        planned = plan_deliveries(
            doctype, state.channels, recipients, sensitive=document.sensitive or doctype.sensitive
        )
        now = utcnow()
        for item in planned:
            session.add(
                Delivery(
                    document_id=document.id,
                    recipient_id=item.recipient_id,
                    school_id=document.school_id,
                    channel=item.channel,
                    options=dict(doctype.plugins.get(item.channel, {})),
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
        document.status = DocumentStatus.SENT
        document.sent_at = now
        document.updated_at = now
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="send_document",
            resource_type="document",
            resource_id=document.id,
            detail={"deliveries": [[p.recipient_id, p.channel] for p in planned]},
        )
    return document


async def delete_document(
    state: Any, principal: Principal, document_id: int, *, reason: str
) -> Document:
    """Needs the special permission "slett dokument" (document:delete) at the student's
    school; the row stays, hidden, and the audit event keeps who, when and why."""
    reason = (reason or "").strip()
    if not reason:
        raise BadInput("Oppgi hvorfor dokumentet slettes.", field="reason")
    async with transaction(state.sessions) as session:
        document = await _load_for_change(session, principal, document_id)
        await _require(session, principal, document.student_id, Permission("document", "delete"))
        now = utcnow()
        document.deleted_at = now
        document.deleted_by_id = principal.person_id
        document.updated_at = now
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="delete_document",
            resource_type="document",
            resource_id=document.id,
            detail={"reason": reason[:500], "doctype": document.doctype_key},
        )
    return document
