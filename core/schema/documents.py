"""GraphQL for documents: the DocType and Document types, their queries and mutations."""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from sqlalchemy import or_, select
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON

from core.access import scopes
from core.documents import service
from core.models import Delivery as DeliveryModel
from core.models import Document as DocumentModel
from core.models import DocumentStatus as DocumentStatusModel
from core.models import Person
from core.schema import ids
from core.schema.context import Info
from core.schema.errors import bad_input, forbidden, not_found
from core.schema.filters import optional_pk
from core.schema.pagination import check_first, newest_first
from core.schema.types import Node, PageInfo


@strawberry.enum
class DocumentStatus(enum.Enum):
    DRAFT = "draft"
    FINALIZED = "finalized"
    SENT = "sent"


@strawberry.enum
class ArchiveRule(enum.Enum):
    ALWAYS = "always"
    OPTIONAL = "optional"
    NEVER = "never"


@strawberry.type(description="A field of a document type.")
class DocTypeField:
    name: str
    label: str
    type: str
    required: bool
    options: list[str] | None


@strawberry.type(description="A document type: how documents of it are made, sent and archived.")
class DocType:
    key: str
    title: str
    description: str | None
    sensitive: bool
    restricted: bool
    restriction_basis: str | None
    restriction_basis_editable: bool
    channels: list[str]
    delivery: str
    recipients: str
    archive: ArchiveRule
    folder: str | None
    registry_status: str | None
    form: bool
    permission: str
    fields: list[DocTypeField]

    @classmethod
    def of(cls, doctype: Any) -> DocType:
        return cls(
            key=doctype.key,
            title=doctype.title,
            description=doctype.description,
            sensitive=doctype.sensitive,
            restricted=doctype.restricted,
            restriction_basis=doctype.restriction_basis,
            restriction_basis_editable=doctype.restriction_basis_editable,
            channels=list(doctype.channels),
            delivery=doctype.delivery,
            recipients=doctype.recipients,
            archive=ArchiveRule(doctype.archive),
            folder=doctype.folder,
            registry_status=doctype.registry_status,
            form=doctype.form,
            permission=doctype.permission,
            fields=[
                DocTypeField(
                    name=f.name,
                    label=f.label,
                    type=f.type,
                    required=f.required,
                    options=[str(o) for o in f.options] if f.options else None,
                )
                for f in doctype.fields
            ],
        )


@strawberry.type(description="A person named on a record (author, signer, recipient).")
class PersonRef:
    id: strawberry.ID = strawberry.field(
        description="The person's ID (Person:...), as Me.id: not a node ID."
    )
    name: str


@strawberry.type(description="One document to one recipient over one channel.")
class DocumentDelivery:
    id: strawberry.ID
    channel: str
    status: str
    recipient: PersonRef
    attempts: int
    last_error: str | None
    external_id: str | None
    units: int
    cost: Decimal
    updated_at: datetime


def _person_ref(person: Any | None) -> PersonRef | None:
    if person is None:
        return None
    return PersonRef(id=strawberry.ID(ids.encode("Person", person.id)), name=person.name)


class DocumentLoaders:
    """Per-request loaders for document parts; attached lazily to the context."""

    def __init__(self, info: Info):
        self.ctx = info.context
        self.people = DataLoader(self._people)
        self.deliveries = DataLoader(self._deliveries)
        self.of_student = DataLoader(self._of_student)

    async def _people(self, keys: Sequence[int]) -> list[Any]:
        rows = (await self.ctx.db.execute(select(Person).where(Person.id.in_(keys)))).scalars()
        found = {p.id: p for p in rows}
        return [found.get(k) for k in keys]

    async def _deliveries(self, keys: Sequence[int]) -> list[list[Any]]:
        rows = await self.ctx.db.execute(
            select(DeliveryModel, Person)
            .join(Person, Person.id == DeliveryModel.recipient_id)
            .join(DocumentModel, DocumentModel.id == DeliveryModel.document_id)
            .where(DeliveryModel.document_id.in_(keys), self._deliveries_seen())
            .order_by(DeliveryModel.id)
        )
        grouped: dict[int, list[Any]] = defaultdict(list)
        for delivery, person in rows:
            grouped[delivery.document_id].append((delivery, person))
        return [grouped.get(k, []) for k in keys]

    def _deliveries_seen(self) -> Any:
        """Whose deliveries the caller sees: every one of a document about a student in
        their scope as staff, or of one they wrote; else (a guardian, a student) only
        their own. The other guardian's delivery would tell its channel, that they have
        an e-mail address or a mobile number, and why it failed."""
        principal = self.ctx.principal
        seen = [
            DeliveryModel.recipient_id == principal.person_id,
            DocumentModel.created_by_id == principal.person_id,
        ]
        staff = service.staff_grants(principal, "document", "read")
        if staff:
            seen.append(scopes.students(principal, staff, DocumentModel.student_id))
        return or_(*seen)

    async def _of_student(self, keys: Sequence[int]) -> list[list[Any]]:
        rows = (
            await self.ctx.db.execute(
                select(DocumentModel)
                .where(
                    DocumentModel.student_id.in_(keys),
                    service.visible_documents(self.ctx.principal, self.ctx.state.doctypes),
                )
                .order_by(DocumentModel.created_at.desc(), DocumentModel.id.desc())
            )
        ).scalars()
        grouped: dict[int, list[Any]] = defaultdict(list)
        for document in rows:
            grouped[document.student_id].append(document)
        return [grouped.get(k, []) for k in keys]


def document_loaders(info: Info) -> DocumentLoaders:
    ctx = info.context
    loaders = ctx.extra.get("documents")
    if loaders is None:
        loaders = ctx.extra["documents"] = DocumentLoaders(info)
    return loaders


@strawberry.type(description="A document made from a doctype for one student.")
class Document(Node):
    _row: strawberry.Private[DocumentModel]

    @classmethod
    def of(cls, row: DocumentModel) -> Document:
        return cls(id=strawberry.ID(ids.encode("Document", row.id)), _row=row)

    @strawberry.field
    def doctype(self, info: Info) -> DocType | None:
        doctype = info.context.state.doctypes.get(self._row.doctype_key)
        return DocType.of(doctype) if doctype else None

    @strawberry.field
    def title(self) -> str:
        return self._row.title

    @strawberry.field
    def status(self) -> DocumentStatus:
        return DocumentStatus(DocumentStatusModel(self._row.status).value)

    @strawberry.field(
        description="The field values (JSON object). A restricted document's values are "
        "its exempt content: every read of them is audited, as a download of its PDF is."
    )
    def fields(self, info: Info) -> JSON:
        if self._row.restricted:
            info.context.audit_read("document", self._row.id, "fields")
        return self._row.fields

    @strawberry.field
    async def student(
        self, info: Info
    ) -> Annotated[Student, strawberry.lazy("core.schema.types")] | None:  # noqa: F821
        from core.schema.queries import _one_student

        return await _one_student(info, self._row.student_id, missing_ok=True)

    @strawberry.field
    async def created_by(self, info: Info) -> PersonRef | None:
        return _person_ref(await document_loaders(info).people.load(self._row.created_by_id))

    @strawberry.field
    def created_at(self) -> datetime:
        return self._row.created_at

    @strawberry.field(description="When it was finalized (signed).")
    def finalized_at(self) -> datetime | None:
        return self._row.finalized_at

    @strawberry.field(description="Who finalized it: the signature.")
    async def signed_by(self, info: Info) -> PersonRef | None:
        if self._row.finalized_by_id is None:
            return None
        return _person_ref(await document_loaders(info).people.load(self._row.finalized_by_id))

    @strawberry.field
    def sent_at(self) -> datetime | None:
        return self._row.sent_at

    @strawberry.field
    def restricted(self) -> bool:
        return self._row.restricted

    @strawberry.field
    def restriction_basis(self) -> str | None:
        return self._row.restriction_basis

    @strawberry.field(description="SHA-256 of the PDF/A, recorded when finalized.")
    def pdf_sha256(self) -> str | None:
        return self._row.pdf_sha256

    @strawberry.field(description="Where the PDF can be downloaded (with the same token).")
    def pdf_url(self) -> str | None:
        if self._row.pdf_sha256 is None:
            return None
        return f"/documents/{ids.encode('Document', self._row.id)}/pdf"

    @strawberry.field(description="The document's transfer to the archive, if queued.")
    async def archive(
        self, info: Info
    ) -> Annotated[ArchiveEntry, strawberry.lazy("core.schema.archive")] | None:  # noqa: F821
        from core.schema.archive import document_archive

        return await document_archive(info, self._row.id)

    @strawberry.field
    async def deliveries(self, info: Info) -> list[DocumentDelivery]:
        rows = await document_loaders(info).deliveries.load(self._row.id)
        return [
            DocumentDelivery(
                id=strawberry.ID(ids.encode("Delivery", d.id)),
                channel=d.channel,
                status=str(d.status.value if hasattr(d.status, "value") else d.status).upper(),
                recipient=_person_ref(p),  # type: ignore[arg-type]
                attempts=d.attempts,
                last_error=d.last_error,
                external_id=d.external_id,
                units=d.units,
                cost=d.cost,
                updated_at=d.updated_at,
            )
            for d, p in rows
        ]


@strawberry.type
class DocumentEdge:
    cursor: str
    node: Document


@strawberry.type
class DocumentConnection:
    edges: list[DocumentEdge]
    page_info: PageInfo
    _total: strawberry.Private[object]

    @strawberry.field
    async def total_count(self) -> int:
        return await self._total.total_count()  # type: ignore[attr-defined]


@strawberry.input
class DocumentFilter:
    student_id: strawberry.ID | None = None
    doctype: str | None = None
    status: DocumentStatus | None = None


async def load_document(info: Info, pk: int) -> DocumentModel:
    """A document in the caller's scope, or FORBIDDEN / NOT_FOUND."""
    principal = info.context.principal
    row = (
        await info.context.db.execute(
            select(DocumentModel).where(
                DocumentModel.id == pk,
                service.visible_documents(principal, info.context.state.doctypes),
            )
        )
    ).scalar_one_or_none()
    if row is not None:
        return row
    exists_row = (
        await info.context.db.execute(
            select(DocumentModel.id).where(
                DocumentModel.id == pk, DocumentModel.deleted_at.is_(None)
            )
        )
    ).first()
    raise forbidden() if exists_row else not_found("Dokumentet")


@strawberry.type
class DocumentQuery:
    @strawberry.field(description="Every document type, as configured in doctypes/.")
    def doctypes(self, info: Info) -> list[DocType]:
        info.context.principal  # noqa: B018 - authentication required
        return [
            DocType.of(d) for d in sorted(info.context.state.doctypes.values(), key=lambda d: d.key)
        ]

    @strawberry.field(
        description="Documents you may read, newest first: those about students in your "
        "scope, those you wrote, and those sent to you."
    )
    async def documents(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: DocumentFilter | None = None,
    ) -> DocumentConnection:
        ctx = info.context
        size = check_first(first, ctx.state.settings.max_page_size)
        # No role check of its own: a student without document:read still reads what was
        # sent to them, and the condition leaves out everything else.
        statement = select(DocumentModel).where(
            service.visible_documents(ctx.principal, ctx.state.doctypes)
        )
        if filter is not None:
            student_pk = await optional_pk(info, filter.student_id, "Student")
            if student_pk is not None:
                statement = statement.where(DocumentModel.student_id == student_pk)
            if filter.doctype is not None:
                if filter.doctype not in ctx.state.doctypes:
                    raise bad_input(f"Ukjent dokumenttype {filter.doctype!r}.", field="doctype")
                statement = statement.where(DocumentModel.doctype_key == filter.doctype)
            if filter.status is not None:
                statement = statement.where(DocumentModel.status == filter.status.value)
        page = await newest_first(ctx.db, statement, DocumentModel.id, first=size, after=after)
        return DocumentConnection(
            edges=[DocumentEdge(cursor=c, node=Document.of(r[0])) for c, r in page.with_cursors()],
            page_info=PageInfo.of(page),
            _total=page,
        )

    @strawberry.field
    async def document(self, info: Info, id: strawberry.ID) -> Document | None:
        return Document.of(await load_document(info, ids.decode_pk(id, "Document")))


@strawberry.input(description="A new document: every required field of the doctype is given.")
class CreateDocumentInput:
    doctype: str = strawberry.field(description="The doctype's key (see `doctypes`).")
    student_id: strawberry.ID
    fields: JSON = strawberry.field(description="Field values by name, checked by the doctype.")
    restriction_basis: str | None = strawberry.field(
        default=None,
        description="Set or override the restriction basis (makes the document restricted), "
        "when the doctype allows it; empty text lifts a restriction the doctype does not "
        "require.",
    )


@strawberry.input(description="Changes to a draft; a finalized document cannot change.")
class UpdateDocumentInput:
    id: strawberry.ID
    fields: JSON | None = strawberry.field(
        default=None, description="All field values, replacing the old ones."
    )
    restriction_basis: str | None = strawberry.field(
        default=None,
        description="Only the document's author, and only when the doctype allows it.",
    )


@strawberry.input(description="Deleting needs the special permission 'slett dokument'.")
class DeleteDocumentInput:
    id: strawberry.ID
    reason: str = strawberry.field(description="Why: kept in the audit log.")


@strawberry.type
class DocumentMutation:
    @strawberry.mutation(description="Create a draft document from a doctype for a student.")
    async def create_document(self, info: Info, input: CreateDocumentInput) -> Document:
        document = await service.create_document(
            info.context.state,
            info.context.principal,
            doctype_key=input.doctype,
            student_id=ids.decode_pk(input.student_id, "Student"),
            fields=input.fields,
            restriction_basis=input.restriction_basis,
        )
        return Document.of(document)

    @strawberry.mutation(description="Edit a draft.")
    async def update_document(self, info: Info, input: UpdateDocumentInput) -> Document:
        document = await service.update_document(
            info.context.state,
            info.context.principal,
            ids.decode_pk(input.id, "Document"),
            fields=input.fields,
            restriction_basis=input.restriction_basis,
        )
        return Document.of(document)

    @strawberry.mutation(
        description="Render to PDF/A, hash and sign; immutable afterwards. For a guardian's "
        "application (doctype permission application:submit) this submits it: only its "
        "author may, and the school sees it from then on."
    )
    async def finalize_document(self, info: Info, id: strawberry.ID) -> Document:
        # The service returns the row as committed (status, hash, signature): no re-read.
        document = await service.finalize_document(
            info.context.state, info.context.principal, ids.decode_pk(id, "Document")
        )
        return Document.of(document)

    @strawberry.mutation(description="Queue one delivery per recipient and channel.")
    async def send_document(self, info: Info, id: strawberry.ID) -> Document:
        document = await service.send_document(
            info.context.state, info.context.principal, ids.decode_pk(id, "Document")
        )
        return Document.of(document)

    @strawberry.mutation(
        description="Delete (special permission 'slett dokument'; audited). Deliveries not "
        "yet sent are stopped."
    )
    async def delete_document(self, info: Info, input: DeleteDocumentInput) -> Document:
        document = await service.delete_document(
            info.context.state,
            info.context.principal,
            ids.decode_pk(input.id, "Document"),
            reason=input.reason,
        )
        return Document.of(document)
