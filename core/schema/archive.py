"""GraphQL for the archive queue: the archive log (queued, archived, failed, with the
archive's receipt), counts per status per school, a document's archive entry, and the
mutations "send to archive", requeue, dismiss, map and close folders."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import strawberry
from sqlalchemy import func, select
from strawberry.dataloader import DataLoader

from core.archive import service
from core.documents.service import visible_documents
from core.models import ArchiveEntry as EntryModel
from core.models import ArchiveFolder as FolderModel
from core.models import ArchiveStatus as StatusModel
from core.models import Document as DocumentModel
from core.models import School as SchoolModel
from core.schema import ids
from core.schema.context import Info
from core.schema.errors import forbidden, not_found
from core.schema.filters import optional_pk
from core.schema.pagination import check_first, newest_first
from core.schema.types import Node, PageInfo


@strawberry.enum(description="Klar (queued), Arkivert (archived), Feilet (failed), Avskrevet.")
class ArchiveStatus(enum.Enum):
    QUEUED = "queued"
    ARCHIVED = "archived"
    FAILED = "failed"
    DISMISSED = "dismissed"


@strawberry.enum
class ArchiveFolderKind(enum.Enum):
    STUDENT = "student"
    SCHOOL = "school"


@strawberry.type(description="A folder (case) in the archive: a student's or a school year's.")
class ArchiveFolder(Node):
    kind: ArchiveFolderKind
    title: str
    case_year: int | None = strawberry.field(description="Saksår in the archive.")
    case_sequence: int | None = strawberry.field(description="Sekvensnummer in the archive.")
    mapped: bool = strawberry.field(
        description="Mapped by the administrator to a case made in the archive by hand."
    )
    closed: bool
    closed_at: datetime | None

    @classmethod
    def of(cls, row: FolderModel) -> ArchiveFolder:
        return cls(
            id=strawberry.ID(ids.encode("ArchiveFolder", row.id)),
            kind=ArchiveFolderKind(row.kind.value),
            title=row.title,
            case_year=row.case_year,
            case_sequence=row.case_sequence,
            mapped=row.mapped_by_id is not None,
            closed=row.closed,
            closed_at=row.closed_at,
        )


class ArchiveLoaders:
    """Per-request loaders; attached lazily to the context."""

    def __init__(self, info: Info):
        self.ctx = info.context
        self.entry_of_document = DataLoader(self._entry_of_document)
        self.folders = DataLoader(self._folders)
        self.documents = DataLoader(self._documents)
        self.schools = DataLoader(self._schools)

    async def _entry_of_document(self, keys: Sequence[int]) -> list[EntryModel | None]:
        rows = (
            await self.ctx.db.execute(select(EntryModel).where(EntryModel.document_id.in_(keys)))
        ).scalars()
        found = {r.document_id: r for r in rows}
        return [found.get(k) for k in keys]

    async def _folders(self, keys: Sequence[int]) -> list[FolderModel | None]:
        rows = (
            await self.ctx.db.execute(select(FolderModel).where(FolderModel.id.in_(keys)))
        ).scalars()
        found = {r.id: r for r in rows}
        return [found.get(k) for k in keys]

    async def _documents(self, keys: Sequence[int]) -> list[DocumentModel | None]:
        # Only documents the caller may read: the log may list an entry whose (restricted)
        # document the caller cannot open.
        rows = (
            await self.ctx.db.execute(
                select(DocumentModel).where(
                    DocumentModel.id.in_(keys),
                    visible_documents(self.ctx.principal, self.ctx.state.doctypes),
                )
            )
        ).scalars()
        found = {r.id: r for r in rows}
        return [found.get(k) for k in keys]

    async def _schools(self, keys: Sequence[int]) -> list[SchoolModel | None]:
        rows = (
            await self.ctx.db.execute(select(SchoolModel).where(SchoolModel.id.in_(keys)))
        ).scalars()
        found = {r.id: r for r in rows}
        return [found.get(k) for k in keys]


def archive_loaders(info: Info) -> ArchiveLoaders:
    loaders = info.context.extra.get("archive")
    if loaders is None:
        loaders = info.context.extra["archive"] = ArchiveLoaders(info)
    return loaders


@strawberry.type(description="A document's transfer to the archive.")
class ArchiveEntry(Node):
    _row: strawberry.Private[EntryModel]

    @classmethod
    def of(cls, row: EntryModel) -> ArchiveEntry:
        return cls(id=strawberry.ID(ids.encode("ArchiveEntry", row.id)), _row=row)

    @strawberry.field
    def status(self) -> ArchiveStatus:
        return ArchiveStatus(StatusModel(self._row.status).value)

    @strawberry.field(description="Journalår of the registry entry, once archived.")
    def registry_year(self) -> int | None:
        return self._row.registry_year

    @strawberry.field(description="Journalsekvensnummer of the registry entry, once archived.")
    def registry_sequence(self) -> int | None:
        return self._row.registry_sequence

    @strawberry.field(description="The archive's receipt (kvittering or error), as received.")
    def receipt(self) -> str | None:
        return self._row.receipt

    @strawberry.field(description="Why the last transfer did not succeed.")
    def last_error(self) -> str | None:
        return self._row.last_error

    @strawberry.field
    def attempts(self) -> int:
        return self._row.attempts

    @strawberry.field(description="Case owner (saksansvarlig) sent with the entry.")
    def case_owner(self) -> str | None:
        return self._row.case_owner

    @strawberry.field
    def dismissed_reason(self) -> str | None:
        return self._row.dismissed_reason

    @strawberry.field
    def created_at(self) -> datetime:
        return self._row.created_at

    @strawberry.field
    def updated_at(self) -> datetime:
        return self._row.updated_at

    @strawberry.field
    def archived_at(self) -> datetime | None:
        return self._row.archived_at

    @strawberry.field
    async def folder(self, info: Info) -> ArchiveFolder | None:
        row = await archive_loaders(info).folders.load(self._row.folder_id)
        return ArchiveFolder.of(row) if row else None

    @strawberry.field(description="The school the document belongs to.")
    async def school_name(self, info: Info) -> str | None:
        row = await archive_loaders(info).schools.load(self._row.school_id)
        return row.name if row else None

    @strawberry.field(description="The document; null when you may not read it.")
    async def document(
        self, info: Info
    ) -> Annotated[Document, strawberry.lazy("core.schema.documents")] | None:  # noqa: F821
        from core.schema.documents import Document

        row = await archive_loaders(info).documents.load(self._row.document_id)
        return Document.of(row) if row else None


async def document_archive(info: Info, document_id: int) -> ArchiveEntry | None:
    """`Document.archive`: the document's archive entry, if it has one."""
    row = await archive_loaders(info).entry_of_document.load(document_id)
    return ArchiveEntry.of(row) if row else None


async def _one_in_scope(info: Info, model: Any, in_scope: Any, pk: int, what: str) -> Any:
    """The row `pk` of `model`: NOT_FOUND when there is none, FORBIDDEN when the SQL
    condition `in_scope` (the caller's scope) does not hold for it."""
    row = (await info.context.db.execute(select(model, in_scope).where(model.id == pk))).first()
    if row is None:
        raise not_found(what)
    if not row[1]:
        raise forbidden()
    return row[0]


async def entry_node(info: Info, pk: int) -> ArchiveEntry:
    """`node(id)` for an archive entry, within archive_log:read (as archiveLog)."""
    principal = info.context.require("archive_log", "read")
    in_scope = service.entries_in_scope(principal)
    return ArchiveEntry.of(await _one_in_scope(info, EntryModel, in_scope, pk, "Arkivoppføringen"))


async def folder_node(info: Info, pk: int) -> ArchiveFolder:
    """`node(id)` for an archive folder, within archive_folder:read (as archiveFolders)."""
    principal = info.context.require("archive_folder", "read")
    in_scope = service.folders_in_scope(principal)
    return ArchiveFolder.of(await _one_in_scope(info, FolderModel, in_scope, pk, "Arkivmappen"))


@strawberry.type
class ArchiveEntryEdge:
    cursor: str
    node: ArchiveEntry


@strawberry.type
class ArchiveEntryConnection:
    edges: list[ArchiveEntryEdge]
    page_info: PageInfo
    _total: strawberry.Private[object]

    @strawberry.field
    async def total_count(self) -> int:
        return await self._total.total_count()  # type: ignore[attr-defined]


@strawberry.type(description="How many archive entries a school has in each status.")
class ArchiveCount:
    school_id: strawberry.ID
    school_name: str
    queued: int
    archived: int
    failed: int
    dismissed: int


@strawberry.type
class ArchiveQuery:
    @strawberry.field(
        description="The archive log, newest first: queued, archived and failed entries "
        "with the archive's receipt (archive_log:read; your schools only)."
    )
    async def archive_log(
        self,
        info: Info,
        status: ArchiveStatus | None = None,
        school: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> ArchiveEntryConnection:
        ctx = info.context
        principal = ctx.require("archive_log", "read")
        size = check_first(first, ctx.state.settings.max_page_size)
        statement = select(EntryModel).where(service.entries_in_scope(principal))
        if status is not None:
            statement = statement.where(EntryModel.status == StatusModel(status.value))
        school_pk = await optional_pk(info, school, "School")
        if school_pk is not None:
            statement = statement.where(EntryModel.school_id == school_pk)
        page = await newest_first(ctx.db, statement, EntryModel.id, first=size, after=after)
        return ArchiveEntryConnection(
            edges=[
                ArchiveEntryEdge(cursor=c, node=ArchiveEntry.of(r[0]))
                for c, r in page.with_cursors()
            ],
            page_info=PageInfo.of(page),
            _total=page,
        )

    @strawberry.field(description="Archive entries per status per school (your schools).")
    async def archive_counts(
        self, info: Info, school: strawberry.ID | None = None
    ) -> list[ArchiveCount]:
        ctx = info.context
        principal = ctx.require("archive_log", "read")
        statement = (
            select(EntryModel.school_id, SchoolModel.name, EntryModel.status, func.count())
            .join(SchoolModel, SchoolModel.id == EntryModel.school_id)
            .where(service.entries_in_scope(principal))
            .group_by(EntryModel.school_id, SchoolModel.name, EntryModel.status)
            .order_by(SchoolModel.name)
        )
        school_pk = await optional_pk(info, school, "School")
        if school_pk is not None:
            statement = statement.where(EntryModel.school_id == school_pk)
        counts: dict[int, dict[str, Any]] = {}
        for school_id, name, status, count in (await ctx.db.execute(statement)).all():
            row = counts.setdefault(school_id, {"name": name})
            row[StatusModel(status).value] = count
        return [
            ArchiveCount(
                school_id=strawberry.ID(ids.encode("School", school_id)),
                school_name=row["name"],
                queued=row.get("queued", 0),
                archived=row.get("archived", 0),
                failed=row.get("failed", 0),
                dismissed=row.get("dismissed", 0),
            )
            for school_id, row in counts.items()
        ]

    @strawberry.field(description="Archive folders you may see (archive_folder:read).")
    async def archive_folders(
        self, info: Info, kind: ArchiveFolderKind | None = None, school: strawberry.ID | None = None
    ) -> list[ArchiveFolder]:
        ctx = info.context
        principal = ctx.require("archive_folder", "read")
        statement = select(FolderModel).where(service.folders_in_scope(principal))
        if kind is not None:
            statement = statement.where(FolderModel.kind == kind.value)
        school_pk = await optional_pk(info, school, "School")
        if school_pk is not None:
            statement = statement.where(FolderModel.school_id == school_pk)
        rows = (await ctx.db.execute(statement.order_by(FolderModel.id).limit(500))).scalars()
        return [ArchiveFolder.of(r) for r in rows]


@strawberry.input
class DismissArchiveEntryInput:
    id: strawberry.ID
    reason: str


@strawberry.input
class MapSchoolFolderInput:
    school_id: strawberry.ID
    school_year_id: strawberry.ID
    case_year: int
    case_sequence: int


@strawberry.input
class MapStudentFolderInput:
    student_id: strawberry.ID
    case_year: int
    case_sequence: int


async def _entry(info: Info, pk: int) -> ArchiveEntry:
    row = await info.context.db.get(EntryModel, pk)
    assert row is not None
    return ArchiveEntry.of(row)


async def _folder(info: Info, pk: int) -> ArchiveFolder:
    row = await info.context.db.get(FolderModel, pk)
    assert row is not None
    return ArchiveFolder.of(row)


@strawberry.type
class ArchiveMutation:
    @strawberry.mutation(
        description='"Send to archive" for a document of an optional doctype: by the '
        "roles the doctype names, when its preconditions hold."
    )
    async def archive_document(
        self, info: Info, id: strawberry.ID
    ) -> Annotated[Document, strawberry.lazy("core.schema.documents")]:  # noqa: F821
        from core.schema.documents import Document

        pk = ids.decode_pk(id, "Document")
        await service.archive_document(info.context.state, info.context.principal, pk)
        row = await info.context.db.get(DocumentModel, pk)
        assert row is not None
        return Document.of(row)

    @strawberry.mutation(description="Set a failed entry back to queued (after fixing the cause).")
    async def requeue_archive_entry(self, info: Info, id: strawberry.ID) -> ArchiveEntry:
        pk = ids.decode_pk(id, "ArchiveEntry")
        await service.requeue_entry(info.context.state, info.context.principal, pk)
        return await _entry(info, pk)

    @strawberry.mutation(description="Give up on a failed entry, with a reason (audited).")
    async def dismiss_archive_entry(
        self, info: Info, input: DismissArchiveEntryInput
    ) -> ArchiveEntry:
        pk = ids.decode_pk(input.id, "ArchiveEntry")
        await service.dismiss_entry(
            info.context.state, info.context.principal, pk, reason=input.reason
        )
        return await _entry(info, pk)

    @strawberry.mutation(
        description="Close a school folder at year end; refused while entries for it are "
        "queued or failed."
    )
    async def close_school_folder(self, info: Info, id: strawberry.ID) -> ArchiveFolder:
        pk = ids.decode_pk(id, "ArchiveFolder")
        await service.close_school_folder(info.context.state, info.context.principal, pk)
        return await _folder(info, pk)

    @strawberry.mutation(
        description="Map a school's folder for a school year to an existing case (year + "
        "sequence number) made in the archive."
    )
    async def map_school_folder(self, info: Info, input: MapSchoolFolderInput) -> ArchiveFolder:
        folder = await service.map_school_folder(
            info.context.state,
            info.context.principal,
            school_id=ids.decode_pk(input.school_id, "School"),
            school_year_id=ids.decode_pk(input.school_year_id, "SchoolYear"),
            case_year=input.case_year,
            case_sequence=input.case_sequence,
        )
        return await _folder(info, folder.id)

    @strawberry.mutation(description="Map a student's folder to an existing case in the archive.")
    async def map_student_folder(self, info: Info, input: MapStudentFolderInput) -> ArchiveFolder:
        folder = await service.map_student_folder(
            info.context.state,
            info.context.principal,
            student_id=ids.decode_pk(input.student_id, "Student"),
            case_year=input.case_year,
            case_sequence=input.case_sequence,
        )
        return await _folder(info, folder.id)
