"""Document life cycle: create, edit while draft, finalize (render, hash, sign), send
(one outbox delivery per recipient and channel) and delete. Each operation is one
transaction, checks the caller's scope in SQL first, and writes an audit event.

Staff write the school's documents; a guardian writes only applications (doctype
permission application:submit) and submits one by finalizing it. Who reads what is
`visible_documents`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    false,
    insert,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value

from core import audit
from core.access import scopes
from core.access.grants import Principal, ScopedGrant
from core.access.memo import ConditionMemo
from core.access.vocabulary import PERSONAL_SCOPES
from core.archive import queue as archive_queue
from core.db import transaction
from core.documents.fields import clean_fields
from core.documents.render import letter_context, render_document
from core.documents.routing import plan_deliveries
from core.documents.rules import check_doctype_rules, is_sensitive
from core.errors import BadInput, Forbidden, NotFound
from core.models import (
    Delivery,
    DeliveryStatus,
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


APPLICATION = Permission("application", "submit")


def is_application(doctype: Any) -> bool:
    """A guardian's application (permission application:submit): written, edited and
    submitted (finalized) by the guardian alone; the school sees it once submitted."""
    return _is_application_permission(doctype.permission)


@functools.lru_cache(maxsize=256)
def _is_application_permission(permission: str) -> bool:
    # Parsed once per permission text: application_keys asks for every doctype on every
    # document read.
    return Permission.parse(permission) == APPLICATION


def application_keys(doctypes: Mapping[str, Any] | None) -> list[str]:
    """The keys of the application doctypes, whose drafts are private to their author."""
    return sorted(key for key, d in (doctypes or {}).items() if is_application(d))


def _distinct(grants: tuple[ScopedGrant, ...]) -> tuple[ScopedGrant, ...]:
    """One grant per (scope, school): the SQL of a scope does not depend on the role that
    gives it, and a principal who is both rektor and skoleadmin at a school would
    otherwise repeat every subquery (longer to build, to key for the statement cache,
    and to run)."""
    seen: dict[tuple[str, int | None], ScopedGrant] = {}
    for grant in grants:
        seen.setdefault((grant.scope, grant.school_id), grant)
    return tuple(seen.values())


def _staff(grants: tuple[ScopedGrant, ...]) -> tuple[ScopedGrant, ...]:
    """The grants held as school staff: not through a guardian's children or oneself."""
    return tuple(g for g in grants if g.scope not in PERSONAL_SCOPES)


def author_grants(principal: Principal, doctype: Any) -> tuple[ScopedGrant, ...]:
    """Where the caller may write a document of `doctype`. An application needs
    application:submit (a guardian, for their own children). Every other doctype is the
    school's record and needs the doctype's permission held as staff: a guardian who may
    register absence or send messages about their child (absence:create, message:send)
    is still never the author of the school's absence notice or note, whatever a
    municipality puts in roles.csv."""
    permission = Permission.parse(doctype.permission)
    grants = principal.scopes(permission.resource, permission.action)
    return grants if is_application(doctype) else _staff(grants)


def visible_documents(principal: Principal, doctypes: Mapping[str, Any]) -> ColumnElement[bool]:
    """The condition of `_visible_documents`, built once per caller (person, school year,
    grants, policy) and doctype set: it is part of every statement that reads a document,
    and building it took ~1 ms (see core/access/memo.py)."""
    # The doctypes count through the application keys (read now, so a changed doctype
    # set is a new key), the policy by identity.
    private = tuple(application_keys(doctypes))
    values = (principal.person_id, principal.current_school_year_id, principal.grants, private)
    return _VISIBLE_MEMO.get_or_build(
        values, (principal.policy,), lambda: _visible_documents(principal, private)
    )


# An entry is a large expression (~18 KB): a bounded few hundred callers at a time.
_VISIBLE_MEMO = ConditionMemo(max_entries=512)


def _visible_documents(principal: Principal, private: Sequence[str]) -> ColumnElement[bool]:
    """SQL condition: documents the caller may read; deleted ones are gone for everyone.

    - Staff (document:read at a school or group scope): documents about students in
      scope; restricted ones only with document_restricted:read for the student.
    - Guardians and students (document:read over their own children or themselves): the
      same, but never drafts.
    - The author: their own documents about students they may read (a guardian's own
      application, restricted or not, draft or submitted).
    - A recipient: every finalized document with a delivery to them (any status), also
      when restricted (a warning of absence is restricted, and it is written to them).
      Nothing else restricted about their child, and never someone else's draft.

    An application (a doctype in `private`) still in draft is private to its author: the
    school sees it once it is submitted (finalized). `visible_documents` requires the
    doctypes so that no caller can forget that rule."""
    read = _distinct(principal.scopes("document", "read"))
    staff = _staff(read)
    family = tuple(g for g in read if g.scope in PERSONAL_SCOPES)
    restricted_ok = scopes.students(
        principal, _distinct(principal.scopes("document_restricted", "read")), Document.student_id
    )
    allowed = Document.restricted.is_(False) | restricted_ok
    finished = Document.status != DocumentStatus.DRAFT
    paths: list[ColumnElement[bool]] = [
        and_(
            finished,
            exists().where(
                Delivery.document_id == Document.id,
                Delivery.recipient_id == principal.person_id,
            ),
        )
    ]
    if staff:
        paths.append(and_(scopes.students(principal, staff, Document.student_id), allowed))
    if family:
        paths.append(
            and_(scopes.students(principal, family, Document.student_id), finished, allowed)
        )
    if read:
        paths.append(
            and_(
                Document.created_by_id == principal.person_id,
                scopes.students(principal, read, Document.student_id),
            )
        )
    condition = and_(Document.deleted_at.is_(None), or_(*paths))
    if private:
        condition = and_(
            condition,
            not_(
                and_(
                    Document.status == DocumentStatus.DRAFT,
                    Document.doctype_key.in_(private),
                    Document.created_by_id != principal.person_id,
                )
            ),
        )
    return condition


def _covering(
    principal: Principal,
    student: ColumnElement[int] | BindParameter[int],
    *grant_sets: tuple[ScopedGrant, ...],
) -> ColumnElement[bool] | None:
    """SQL condition: every one of `grant_sets` covers the student (finalizing needs both
    document:finalize and the doctype's own permission, not either of them). `student` is
    a column of the statement or a bound parameter. None when a set is empty: then
    nothing covers the student."""
    conditions = []
    for grants in grant_sets:
        if not grants:
            return None
        conditions.append(
            scopes.students(principal, _distinct(grants), Enrolment.student_id, Enrolment.school_id)
        )
    return exists().where(
        Enrolment.student_id == student,
        Enrolment.school_year_id == principal.current_school_year_id,
        *conditions,
    )


# Whole statements that depend on the caller, built once per caller and run with bound
# parameters for the rest. Building them (SQLAlchemy expression construction, then the
# cache key over the whole tree) was about half the CPU time of a finalize request; see
# core/access/memo.py for why sharing them is safe.
_STATEMENTS = ConditionMemo(max_entries=512)


async def _covers(
    session: AsyncSession,
    principal: Principal,
    student_id: int,
    *grant_sets: tuple[ScopedGrant, ...],
) -> bool:
    def build() -> Select[Any] | None:
        condition = _covering(principal, bindparam("covered_student_id"), *grant_sets)
        return None if condition is None else select(condition)

    statement = _STATEMENTS.for_caller(principal, "covers", build, grant_sets)
    if statement is None:
        return False
    return bool((await session.execute(statement, {"covered_student_id": student_id})).scalar())


NOT_YOURS = "Du har ikke tilgang til å gjøre dette for denne eleven."


async def _require(
    session: AsyncSession,
    principal: Principal,
    student_id: int,
    *grant_sets: tuple[ScopedGrant, ...],
) -> None:
    if not await _covers(session, principal, student_id, *grant_sets):
        raise Forbidden(NOT_YOURS)


def staff_grants(principal: Principal, resource: str, action: str) -> tuple[ScopedGrant, ...]:
    """Where the caller may do `action` on `resource` as school staff."""
    return _staff(principal.scopes(resource, action))


def _require_author_of_application(principal: Principal, doctype: Any, document: Any) -> None:
    """An application is the guardian's own: nobody else edits or submits it."""
    if is_application(doctype) and document.created_by_id != principal.person_id:
        raise Forbidden("Bare den som har skrevet søknaden kan endre eller sende den inn.")


def _doctype(state: Any, key: str) -> Any:
    """The doctype by key, checked against the rules no configuration may break."""
    doctype = state.doctypes.get(key)
    if doctype is None:
        raise BadInput(f"Ukjent dokumenttype {key!r}.", field="doctype")
    check_doctype_rules(doctype)
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
    session: AsyncSession, state: Any, principal: Principal, document_id: int
) -> Document:
    """The document, when the caller may see it; otherwise NOT_FOUND or FORBIDDEN. The
    common case is one statement; only a refusal asks again whether the row exists."""
    private = tuple(application_keys(state.doctypes))
    statement = _STATEMENTS.for_caller(
        principal,
        "load_document",
        lambda: select(Document).where(
            Document.id == bindparam("document_id"),
            visible_documents(principal, state.doctypes),
        ),
        private,
    )
    document = (await session.execute(statement, {"document_id": document_id})).scalar_one_or_none()
    if document is None:
        await _refuse(session, document_id)
    return document


async def _refuse(session: AsyncSession, document_id: int) -> NoReturn:
    """NOT_FOUND when no such (undeleted) document exists, else FORBIDDEN: the caller
    may not see it."""
    exists_row = (
        await session.execute(
            select(Document.id).where(Document.id == document_id, Document.deleted_at.is_(None))
        )
    ).first()
    if exists_row is None:
        raise NotFound("Dokumentet finnes ikke.")
    raise Forbidden()


def _permissions(doctypes: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """What the doctype-dependent conditions depend on: each doctype's permission."""
    return tuple(sorted((key, doctype.permission) for key, doctype in doctypes.items()))


def _allowed_by_doctype(
    principal: Principal,
    doctypes: Mapping[str, Any],
    needed: Callable[[Any], tuple[tuple[ScopedGrant, ...], ...]],
) -> ColumnElement[bool]:
    """SQL over a document row: every grant set that its own doctype needs
    (`needed(doctype)`) covers its student. Doctypes needing the same grant sets share
    one condition (for most callers, all of them do), so the check can ride along in
    the statement that loads the document, before its doctype is known."""
    groups: dict[tuple[tuple[ScopedGrant, ...], ...], list[str]] = {}
    for key, doctype in doctypes.items():
        groups.setdefault(tuple(needed(doctype)), []).append(key)
    paths = []
    for grant_sets, keys in groups.items():
        covering = _covering(principal, Document.student_id, *grant_sets)
        if covering is not None:
            paths.append(and_(Document.doctype_key.in_(sorted(keys)), covering))
    return or_(*paths) if paths else false()


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
    authoring = author_grants(principal, doctype)
    # Refuse a caller without the doctype's permission anywhere before looking at the
    # input, so the answer does not depend on what they typed.
    if not authoring:
        raise Forbidden(f"Du har ikke tilgang til å opprette «{doctype.title}».")
    cleaned = clean_fields(doctype, fields, require_all=True)
    restricted, basis = _basis(doctype, restriction_basis)
    async with transaction(state.sessions) as session:
        # The enrolment and the student's name together: one statement.
        found = (
            await session.execute(
                select(Enrolment, Person.given_name, Person.family_name)
                .join(Person, Person.id == Enrolment.student_id)
                .where(
                    Enrolment.student_id == student_id,
                    Enrolment.school_year_id == principal.current_school_year_id,
                )
            )
        ).one_or_none()
        if found is None:
            raise NotFound("Eleven finnes ikke.")
        enrolment, given_name, family_name = found
        await _require(session, principal, student_id, authoring)
        now = utcnow()
        document = Document(
            doctype_key=doctype.key,
            title=f"{doctype.title} – {given_name} {family_name}",
            student_id=student_id,
            school_id=enrolment.school_id,
            school_year_id=enrolment.school_year_id,
            fields=cleaned,
            status=DocumentStatus.DRAFT,
            sensitive=is_sensitive(doctype),
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
    """Replace a draft's field values (all of them, validated as on create) and/or its
    restriction basis; the basis only by the document's author."""
    if fields is None and restriction_basis is None:
        raise BadInput("Oppgi felt eller unntakshjemmel som skal endres.", field="fields")
    async with transaction(state.sessions) as session:
        document = await _load_for_change(session, state, principal, document_id)
        doctype = _doctype(state, document.doctype_key)
        _require_author_of_application(principal, doctype, document)
        await _require(session, principal, document.student_id, author_grants(principal, doctype))
        if document.status != DocumentStatus.DRAFT:
            raise BadInput("Dokumentet er ferdigstilt og kan ikke endres.", field="id")
        values: dict[str, Any] = {"updated_at": utcnow()}
        if fields is not None:
            values["fields"] = clean_fields(doctype, fields, require_all=True)
        if restriction_basis is not None:
            if document.created_by_id != principal.person_id:
                raise Forbidden("Bare den som har skrevet dokumentet kan endre unntakshjemmelen.")
            values["restricted"], values["restriction_basis"] = _basis(doctype, restriction_basis)
        # Only while still a draft: a finalize that committed since the read above wins,
        # so a signed document never changes under its signature.
        result = await session.execute(
            update(Document)
            .where(Document.id == document.id, Document.status == DocumentStatus.DRAFT)
            .values(**values)
        )
        if result.rowcount != 1:
            raise BadInput("Dokumentet er ferdigstilt og kan ikke endres.", field="id")
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="update_document",
            resource_type="document",
            resource_id=document.id,
        )
    return document


# Named once: an alias made per call is a new FROM object to SQLAlchemy each time.
_STUDENT = aliased(Person, name="student")
_AUTHOR = aliased(Person, name="author")
_SIGNER = aliased(Person, name="signer")


@dataclass(frozen=True)
class _LetterFacts:
    """What a letter names besides its fields, read in one statement."""

    student_name: str
    birth_date: Any
    grade: int | None
    class_name: str | None
    school_name: str
    municipality_name: str | None
    author_name: str
    signer_name: str
    allowed: bool


def _letter_facts_statement(allowed: ColumnElement[bool]) -> Select[Any]:
    """The letter's facts of document :document_id, signed by :signer_id, and whether
    `allowed` (a condition over the document's columns) holds."""
    student, author, signer = _STUDENT, _AUTHOR, _SIGNER
    grade = (
        select(Enrolment.grade)
        .where(
            Enrolment.student_id == Document.student_id,
            Enrolment.school_year_id == Document.school_year_id,
        )
        .limit(1)
        .scalar_subquery()
    )
    class_name = (
        select(Group.name)
        .join(GroupMembership, GroupMembership.group_id == Group.id)
        .where(
            GroupMembership.student_id == Document.student_id,
            Group.school_year_id == Document.school_year_id,
            Group.kind == GroupKind.CLASS,
        )
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(
            student.given_name,
            student.family_name,
            student.birth_date,
            grade,
            class_name,
            School.name,
            Municipality.name,
            author.given_name,
            author.family_name,
            signer.given_name,
            signer.family_name,
            allowed,
        )
        .select_from(Document)
        .join(student, student.id == Document.student_id)
        .join(School, School.id == Document.school_id)
        .outerjoin(Municipality, Municipality.id == School.municipality_id)
        .join(author, author.id == Document.created_by_id)
        .join(signer, signer.id == bindparam("signer_id"))
        .where(Document.id == bindparam("document_id"))
    )


def _finalize_grants(principal: Principal, doctype: Any) -> tuple[tuple[ScopedGrant, ...], ...]:
    """Staff finalize with document:finalize and the doctype's permission for the
    student; an application's author (the guardian) with application:submit alone."""
    if is_application(doctype):
        return (author_grants(principal, doctype),)
    return (author_grants(principal, doctype), staff_grants(principal, "document", "finalize"))


def _facts(row: Sequence[Any]) -> _LetterFacts:
    return _LetterFacts(
        student_name=f"{row[0]} {row[1]}",
        birth_date=row[2],
        grade=row[3],
        class_name=row[4],
        school_name=row[5],
        municipality_name=row[6],
        author_name=f"{row[7]} {row[8]}",
        signer_name=f"{row[9]} {row[10]}",
        allowed=bool(row[11]),
    )


async def _load_for_finalize(
    session: AsyncSession, state: Any, principal: Principal, document_id: int
) -> tuple[Document, _LetterFacts]:
    """The document as `_load_for_change` finds it, the letter's facts, and whether the
    caller may finalize it: one statement."""

    def build() -> Select[Any]:
        allowed = _allowed_by_doctype(
            principal, state.doctypes, lambda d: _finalize_grants(principal, d)
        )
        return (
            _letter_facts_statement(allowed)
            .add_columns(Document)
            .where(visible_documents(principal, state.doctypes))
        )

    statement = _STATEMENTS.for_caller(principal, "finalize", build, _permissions(state.doctypes))
    row = (
        await session.execute(
            statement, {"document_id": document_id, "signer_id": principal.person_id}
        )
    ).first()
    if row is None:
        await _refuse(session, document_id)
    return row[-1], _facts(row[:-1])


_DOCUMENT = Document.__table__

# The writes of finalize and send, built once (plain table statements with bound
# parameters: no per-call expression building, and no ORM synchronisation of the
# session, which these services do themselves with set_committed_value).
_SIGN = (
    update(_DOCUMENT)
    .where(
        _DOCUMENT.c.id == bindparam("document_id"),
        _DOCUMENT.c.status == DocumentStatus.DRAFT,
        _DOCUMENT.c.updated_at == bindparam("read_version"),
    )
    .values(
        status=DocumentStatus.FINALIZED,
        fields=bindparam("signed_fields"),
        html=bindparam("signed_html"),
        pdf=bindparam("signed_pdf"),
        pdf_sha256=bindparam("signed_sha256"),
        finalized_at=bindparam("signed_at"),
        finalized_by_id=bindparam("signer_id"),
        updated_at=bindparam("signed_at"),
    )
)
_MARK_SENT = (
    update(_DOCUMENT)
    .where(
        _DOCUMENT.c.id == bindparam("document_id"),
        _DOCUMENT.c.status == DocumentStatus.FINALIZED,
    )
    .values(status=DocumentStatus.SENT, sent_at=bindparam("now"), updated_at=bindparam("now"))
)
_INSERT_DELIVERIES = insert(Delivery.__table__)


async def finalize_document(state: Any, principal: Principal, document_id: int) -> Document:
    """Render, hash and sign; the document is immutable afterwards.

    Staff finalize with document:finalize and the doctype's permission for the student.
    For an application, finalizing is submitting it: only its author (the guardian, with
    application:submit for the child) does it and signs it; the school sees it from then
    on, and a doctype archived "always" on finalize is queued as for any other."""
    async with state.sessions() as session:
        # The document, what the letter needs and the permission check: one statement.
        document, facts = await _load_for_finalize(session, state, principal, document_id)
        doctype = _doctype(state, document.doctype_key)
        _require_author_of_application(principal, doctype, document)
        if not facts.allowed:
            raise Forbidden(NOT_YOURS)
        if document.status != DocumentStatus.DRAFT:
            raise BadInput("Dokumentet er allerede ferdigstilt.", field="id")
        cleaned = clean_fields(doctype, document.fields, require_all=True)
        read_version = document.updated_at
    signed_at = utcnow()
    rendered = await render_document(
        doctype,
        letter_context(
            title=document.title,
            created_at=document.created_at,
            fields=cleaned,
            student={
                "name": facts.student_name,
                "birth_date": facts.birth_date,
                "grade": facts.grade,
                "class_name": facts.class_name,
            },
            school_name=facts.school_name,
            municipality_name=facts.municipality_name or "",
            author_name=facts.author_name,
            signer_name=facts.signer_name,
            signed_at=signed_at,
            restriction_basis=document.restriction_basis,
            doctype=doctype,
        ),
    )
    async with transaction(state.sessions) as session:
        # Only the draft as it was read and rendered is signed: a concurrent finalize, or an
        # edit that committed while the PDF was rendered, makes this one lose instead of
        # signing twice or signing content other than what was saved.
        signed = {
            "status": DocumentStatus.FINALIZED,
            "fields": cleaned,
            "html": rendered.html,
            "pdf": rendered.pdf,
            "pdf_sha256": rendered.sha256,
            "finalized_at": signed_at,
            "finalized_by_id": principal.person_id,
            "updated_at": signed_at,
        }
        result = await session.execute(
            _SIGN,
            {
                "document_id": document_id,
                "read_version": read_version,
                "signed_fields": cleaned,
                "signed_html": rendered.html,
                "signed_pdf": rendered.pdf,
                "signed_sha256": rendered.sha256,
                "signed_at": signed_at,
                "signer_id": principal.person_id,
            },
        )
        if result.rowcount != 1:
            raise BadInput(
                "Dokumentet ble endret eller ferdigstilt av noen andre i mellomtiden; "
                "last det inn på nytt og prøv igjen.",
                field="id",
            )
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="finalize_document",
            resource_type="document",
            resource_id=document_id,
            detail={"sha256": rendered.sha256, "application": is_application(doctype)},
        )
        # The UPDATE matched the draft as read, so the row now is that draft plus these
        # values: bring the object read before rendering up to date instead of reading
        # the row (and its PDF) back.
        for key, value in signed.items():
            set_committed_value(document, key, value)
        # Issue 4: a doctype archived "always" is queued in this same transaction.
        await archive_queue.enqueue_on(session, doctype, document, event="finalize")
    return document


_GUARDIANS_OF = (
    select(Person)
    .join(Guardianship, Guardianship.guardian_id == Person.id)
    .where(
        Guardianship.student_id == bindparam("student_id"),
        Guardianship.parental_responsibility.is_(True),
    )
    .order_by(Person.id)
)


async def _recipients(session: AsyncSession, doctype: Any, student_id: int) -> list[Person]:
    people: list[Person] = []
    if doctype.recipients in ("student", "student_and_guardians"):
        student = await session.get(Person, student_id)
        if student is not None:
            people.append(student)
    if doctype.recipients in ("guardians", "student_and_guardians"):
        people += list((await session.execute(_GUARDIANS_OF, {"student_id": student_id})).scalars())
    return people


def _send_grants(principal: Principal, doctype: Any) -> tuple[tuple[ScopedGrant, ...], ...]:
    """Sending needs document:send as staff and the doctype's own permission."""
    return (staff_grants(principal, "document", "send"), author_grants(principal, doctype))


async def _load_for_send(
    session: AsyncSession, state: Any, principal: Principal, document_id: int
) -> tuple[Document, bool]:
    """The document as `_load_for_change` finds it, and whether the caller may send it."""

    def build() -> Select[Any]:
        allowed = _allowed_by_doctype(
            principal, state.doctypes, lambda d: _send_grants(principal, d)
        )
        return select(Document, allowed).where(
            Document.id == bindparam("document_id"),
            visible_documents(principal, state.doctypes),
        )

    statement = _STATEMENTS.for_caller(principal, "send", build, _permissions(state.doctypes))
    row = (await session.execute(statement, {"document_id": document_id})).first()
    if row is None:
        await _refuse(session, document_id)
    return row[0], bool(row[1])


async def send_document(state: Any, principal: Principal, document_id: int) -> Document:
    """Write one delivery per (recipient, channel) in the same transaction as the status
    change; the worker does the sending. Nothing is written when a recipient cannot be
    reached."""
    async with transaction(state.sessions) as session:
        # The document and whether the caller may send it: one statement.
        document, allowed = await _load_for_send(session, state, principal, document_id)
        doctype = _doctype(state, document.doctype_key)
        if not allowed:
            raise Forbidden(NOT_YOURS)
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
            doctype,
            state.channels,
            recipients,
            sensitive=document.sensitive or is_sensitive(doctype),
        )
        now = utcnow()
        # Only a finalized document is sent: of two concurrent sends, one loses here before
        # it writes any delivery (and not on the unique (document, recipient, channel)).
        result = await session.execute(_MARK_SENT, {"document_id": document.id, "now": now})
        if result.rowcount != 1:
            raise BadInput("Dokumentet er allerede sendt.", field="id")
        for key, value in (("status", DocumentStatus.SENT), ("sent_at", now), ("updated_at", now)):
            set_committed_value(document, key, value)
        # One executemany for all of them (the ids are not needed here).
        await session.execute(
            _INSERT_DELIVERIES,
            [
                {
                    "document_id": document.id,
                    "recipient_id": item.recipient_id,
                    "school_id": document.school_id,
                    "channel": item.channel,
                    "options": dict(doctype.plugins.get(item.channel, {})),
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for item in planned
            ],
        )
        # Issue 4: a doctype archived "always" on send is queued in this same transaction.
        await archive_queue.enqueue_on(session, doctype, document, event="send")
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
    school; the row stays, hidden, and the audit event keeps who, when and why. Deliveries
    still waiting in the outbox are stopped: a deleted document must not go out later."""
    reason = (reason or "").strip()
    if not reason:
        raise BadInput("Oppgi hvorfor dokumentet slettes.", field="reason")
    async with transaction(state.sessions) as session:
        document = await _load_for_change(session, state, principal, document_id)
        await _require(
            session, principal, document.student_id, staff_grants(principal, "document", "delete")
        )
        now = utcnow()
        document.deleted_at = now
        document.deleted_by_id = principal.person_id
        document.updated_at = now
        stopped = await session.execute(
            update(Delivery)
            .where(Delivery.document_id == document.id, Delivery.status == DeliveryStatus.QUEUED)
            .values(
                status=DeliveryStatus.FAILED,
                last_error="Dokumentet ble slettet før det ble sendt.",
                finished_at=now,
                updated_at=now,
            )
        )
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="delete_document",
            resource_type="document",
            resource_id=document.id,
            detail={
                "reason": reason[:500],
                "doctype": document.doctype_key,
                "stopped_deliveries": stopped.rowcount,
            },
        )
    return document
