"""GraphQL object types. Each is built from a plain row; nested lists go through the
request's DataLoaders, which apply the caller's scope in SQL."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Sequence
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, TypeVar

import strawberry

from core.models import Group as GroupModel
from core.models import GroupKind as GroupKindModel
from core.models import School as SchoolModel
from core.models import SchoolYear as SchoolYearModel
from core.schema import ids
from core.schema.context import Info
from core.schema.loaders import cached, then
from core.schema.pagination import encode_cursor
from core.schema.rows import GroupRow, PersonRow, StudentRow

T = TypeVar("T")


@strawberry.interface(description="An object with a global ID, fetchable by `node(id)`.")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None

    @classmethod
    def of(cls, page: Any) -> PageInfo:
        """The page info of a `core.schema.pagination.Page`."""
        return cls(has_next_page=page.has_next_page, end_cursor=page.end_cursor)


@strawberry.type(description="A postal address (restricted: reading it is audited).")
class Address:
    street: str | None
    postal_code: str | None
    postal_town: str | None


@strawberry.enum
class GroupKind(enum.Enum):
    CLASS = "class"
    SUBJECT = "subject"
    SFO = "sfo"


def _address(row: PersonRow) -> Address | None:
    if not (row.street_address or row.postal_code or row.postal_town):
        return None
    return Address(
        street=row.street_address, postal_code=row.postal_code, postal_town=row.postal_town
    )


def _allowed(info: Info, resource: str, row: PersonRow) -> bool | Awaitable[bool]:
    """Whether the caller may read the `resource` field of `row`: at once when it follows
    from their grants alone or was prefetched, else an awaitable (batched SQL)."""
    loaders = info.context.loaders
    implied = loaders.field_implied(resource)
    if implied is not None:
        return implied
    return cached(loaders.field_allowed(resource), row.id)


def _permitted(info: Info, resource: str, row: PersonRow, value: T) -> T | None:
    """A field with its own permission (not audited): the value when allowed, else null."""
    if value is None:
        return None
    return then(_allowed(info, resource, row), lambda ok: value if ok else None)  # type: ignore[return-value]


def _restricted(info: Info, resource: str, row: PersonRow, value: T) -> T | None:
    """A restricted field (national id, address): the value when allowed, else null; a
    read that returns a value is audited."""
    if value is None:
        return None

    def read(ok: bool) -> T | None:
        if not ok:
            return None
        info.context.audit_read(resource.split("_", 1)[0], row.id, resource)
        return value

    return then(_allowed(info, resource, row), read)  # type: ignore[return-value]


# Plain (resolver-less) fields are filled when an object is built: GraphQL reads them
# without calling a resolver, which matters when a page holds thousands of fields.
# Contact details (email, phone) are not audited, so they are decided for a whole list
# of rows at once (`Loaders.fields_allowed`) and stored as plain fields too.


@strawberry.type(description="A school in the municipality.")
class School(Node):
    name: str
    first_grade: int
    last_grade: int
    has_sfo: bool = strawberry.field(description="Whether the school runs after-school care (SFO).")

    @classmethod
    def of(cls, row: SchoolModel) -> School:
        return cls(
            id=strawberry.ID(ids.encode("School", row.id)),
            name=row.name,
            first_grade=row.first_grade,
            last_grade=row.last_grade,
            has_sfo=row.has_sfo,
        )


@strawberry.type(description="A school year, e.g. 2026/2027.")
class SchoolYear(Node):
    name: str
    starts_on: date
    ends_on: date
    is_current: bool

    @classmethod
    def of(cls, row: SchoolYearModel) -> SchoolYear:
        return cls(
            id=strawberry.ID(ids.encode("SchoolYear", row.id)),
            name=row.name,
            starts_on=row.starts_on,
            ends_on=row.ends_on,
            is_current=row.is_current,
        )


P = TypeVar("P", bound="_ContactDetails")


class _ContactDetails:
    """Building Employee and Guardian objects: their e-mail and phone are plain fields,
    filled in or left null when the object is built, by the field permission
    `_contact_resource` (checked for a whole list of rows at once)."""

    _contact_resource: ClassVar[str]

    @classmethod
    def of(cls: type[P], row: PersonRow, contact: bool) -> P:
        return cls(  # type: ignore[call-arg]
            id=strawberry.ID(ids.encode(cls.__name__, row.id)),
            name=row.name,
            email=row.email if contact else None,
            phone=row.mobile if contact else None,
            _row=row,
        )

    @classmethod
    def many(cls: type[P], info: Info, rows: Sequence[PersonRow]) -> list[P] | Awaitable[list[P]]:
        """Objects for `rows`, with contact details where the caller may see them."""
        loaders = info.context.loaders
        implied = loaders.field_implied(cls._contact_resource)
        if implied is not None:  # the same answer for every row the caller may read
            return [cls.of(r, implied) for r in rows]
        allowed = loaders.fields_allowed(cls._contact_resource, [r.id for r in rows])
        return then(allowed, lambda flags: [cls.of(r, a) for r, a in zip(rows, flags, strict=True)])


@strawberry.type(description="An employee of a school or of the municipality.")
class Employee(_ContactDetails, Node):
    name: str
    email: str | None = strawberry.field(
        description="Null unless you may see employees' contact details."
    )
    phone: str | None = strawberry.field(
        description="Mobile number. Null unless you may see contact details."
    )
    _row: strawberry.Private[PersonRow]
    _contact_resource = "employee_contact"

    @strawberry.field(
        description=(
            "Fødselsnummer. Null unless your role may see it (no error: a list stays one "
            "answer); a read that returns it is audited."
        )
    )
    def national_id(self, info: Info) -> str | None:
        return _restricted(info, "employee_national_id", self._row, self._row.national_id)


@strawberry.type(description="A guardian (foresatt) with parental responsibility.")
class Guardian(_ContactDetails, Node):
    name: str
    email: str | None = strawberry.field(
        description="Null unless you may see guardians' contact details."
    )
    phone: str | None = strawberry.field(
        description="Mobile number. Null unless you may see contact details."
    )
    _row: strawberry.Private[PersonRow]
    _contact_resource = "guardian_contact"

    @strawberry.field(
        description="Null unless your role may see addresses; a read that returns it is audited."
    )
    def address(self, info: Info) -> Address | None:
        return _restricted(info, "guardian_address", self._row, _address(self._row))

    @strawberry.field(
        description=(
            "Fødselsnummer. Null unless your role may see it (no error: a list stays one "
            "answer); a read that returns it is audited."
        )
    )
    def national_id(self, info: Info) -> str | None:
        return _restricted(info, "guardian_national_id", self._row, self._row.national_id)

    @strawberry.field(description="The children in your scope this guardian is responsible for.")
    def children(
        self, info: Info
    ) -> list[Annotated[Student, strawberry.lazy("core.schema.types")]]:
        rows = cached(info.context.loaders.children_of_guardian, self._row.id)
        return then(rows, lambda found: [Student.of(r) for r in found])  # type: ignore[return-value]


@strawberry.type(description="A student (elev) in the current school year.")
class Student(Node):
    name: str
    given_name: str
    family_name: str
    birth_date: date | None
    grade: int | None = strawberry.field(
        description="Grade (trinn) 1-10 in the current school year."
    )
    _row: strawberry.Private[StudentRow]

    @classmethod
    def of(cls, row: StudentRow) -> Student:
        return cls(
            id=strawberry.ID(ids.encode("Student", row.id)),
            name=row.name,
            given_name=row.given_name,
            family_name=row.family_name,
            birth_date=row.birth_date,
            grade=row.grade,
            _row=row,
        )

    # Relations resolve at once when prefetched (Loaders.prefetch), else load in batches.

    @strawberry.field
    def school(self, info: Info) -> School | None:
        if self._row.school_id is None:
            return None
        row = cached(info.context.loaders.school, self._row.school_id)
        return then(row, lambda found: School.of(found) if found else None)  # type: ignore[return-value]

    @strawberry.field(description="The student's groups this school year that you may see.")
    def groups(self, info: Info) -> list[Annotated[Group, strawberry.lazy("core.schema.types")]]:
        loaders = info.context.loaders
        rows = cached(loaders.groups_of_student, self._row.id)
        return then(rows, lambda found: [loaders.built(g, Group.of) for g in found])  # type: ignore[return-value]

    @strawberry.field(description="Guardians in your scope.")
    def guardians(self, info: Info) -> list[Guardian]:
        rows = cached(info.context.loaders.guardians_of_student, self._row.id)
        return then(rows, lambda found: Guardian.many(info, found))  # type: ignore[return-value]

    @strawberry.field(description="The contact teacher of the student's class.")
    def contact_teacher(self, info: Info) -> Employee | None:
        row = cached(info.context.loaders.contact_teacher_of_student, self._row.id)
        return then(row, lambda found: _first(Employee.many(info, [found])) if found else None)  # type: ignore[return-value]

    @strawberry.field(description="Null unless you may see students' contact details.")
    def email(self, info: Info) -> str | None:
        return _permitted(info, "student_contact", self._row, self._row.email)

    @strawberry.field(description="Mobile number. Null unless you may see contact details.")
    def phone(self, info: Info) -> str | None:
        return _permitted(info, "student_contact", self._row, self._row.mobile)

    @strawberry.field(
        description="Null unless your role may see addresses; a read that returns it is audited."
    )
    def address(self, info: Info) -> Address | None:
        return _restricted(info, "student_address", self._row, _address(self._row))

    @strawberry.field(
        description=(
            "Fødselsnummer. Null unless your role may see it (no error: a list stays one "
            "answer); a read that returns it is audited."
        )
    )
    def national_id(self, info: Info) -> str | None:
        return _restricted(info, "student_national_id", self._row, self._row.national_id)

    @strawberry.field(description="Documents about the student that you may read, newest first.")
    async def documents(
        self, info: Info
    ) -> list[Annotated[Document, strawberry.lazy("core.schema.documents")]]:  # noqa: F821
        from core.schema.documents import Document, document_loaders

        # No role check here: the loader's condition also finds what was sent to the
        # caller (a student's grades), and nothing else.
        rows = await document_loaders(info).of_student.load(self._row.id)
        return [Document.of(r) for r in rows]

    @strawberry.field(description="This school year's absence that you may read, by date.")
    async def absences(
        self, info: Info
    ) -> list[Annotated[Absence, strawberry.lazy("core.schema.absence")]]:  # noqa: F821
        from core.schema.absence import student_absences

        return await student_absences(info, self._row.id)

    @strawberry.field(description="This school year's remarks that you may read, oldest first.")
    async def remarks(
        self, info: Info
    ) -> list[Annotated[Remark, strawberry.lazy("core.schema.absence")]]:  # noqa: F821
        from core.schema.absence import student_remarks

        return await student_remarks(info, self._row.id)


def _first(objects: list[T] | Awaitable[list[T]]) -> T | Awaitable[T]:
    return then(objects, lambda found: found[0])


@strawberry.type(description="A class, subject group or SFO group in one school year.")
class Group(Node):
    name: str
    kind: GroupKind
    grade: int | None
    _row: strawberry.Private[GroupModel | GroupRow]

    @classmethod
    def of(cls, row: GroupModel | GroupRow) -> Group:
        return cls(
            id=strawberry.ID(ids.encode("Group", row.id)),
            name=row.name,
            kind=_GROUP_KINDS[GroupKindModel(row.kind)],
            grade=row.grade,
            _row=row,
        )

    # A foreign key guarantees the school and the school year exist.

    @strawberry.field
    def school(self, info: Info) -> School:
        row = cached(info.context.loaders.school, self._row.school_id)
        return then(row, School.of)  # type: ignore[return-value]

    @strawberry.field
    def school_year(self, info: Info) -> SchoolYear:
        row = cached(info.context.loaders.school_year, self._row.school_year_id)
        return then(row, SchoolYear.of)  # type: ignore[return-value]

    @strawberry.field(description="Members in your scope, by family name.")
    def students(self, info: Info) -> list[Student]:
        rows = cached(info.context.loaders.students_of_group, self._row.id)
        return then(rows, lambda found: [Student.of(r) for r in found])  # type: ignore[return-value]

    @strawberry.field(description="Responsible teachers; the contact teacher first.")
    def teachers(self, info: Info) -> list[Employee]:
        rows = cached(info.context.loaders.teachers_of_group, self._row.id)
        return then(rows, lambda found: Employee.many(info, found))  # type: ignore[return-value]


_GROUP_KINDS = {GroupKindModel(k.value): k for k in GroupKind}


@strawberry.type
class KeyedEdge:
    """An edge of a keyset-paginated listing: its cursor is encoded from the row's sort
    key when a client asks for it (most page by pageInfo.endCursor alone)."""

    _key: strawberry.Private[Sequence[Any]]

    @strawberry.field
    def cursor(self, info: Info) -> str:  # noqa: ARG002 - (self, info): see execution.py
        return encode_cursor(self._key)


@strawberry.type
class StudentEdge(KeyedEdge):
    node: Student


@strawberry.type
class StudentConnection:
    edges: list[StudentEdge]
    page_info: PageInfo
    _total: strawberry.Private[object]

    @strawberry.field
    async def total_count(self) -> int:
        return await self._total.total_count()  # type: ignore[attr-defined]


@strawberry.type
class GuardianEdge(KeyedEdge):
    node: Guardian


@strawberry.type
class GuardianConnection:
    edges: list[GuardianEdge]
    page_info: PageInfo
    _total: strawberry.Private[object]

    @strawberry.field
    async def total_count(self) -> int:
        return await self._total.total_count()  # type: ignore[attr-defined]


@strawberry.type
class EmployeeEdge(KeyedEdge):
    node: Employee


@strawberry.type
class EmployeeConnection:
    edges: list[EmployeeEdge]
    page_info: PageInfo
    _total: strawberry.Private[object]

    @strawberry.field
    async def total_count(self) -> int:
        return await self._total.total_count()  # type: ignore[attr-defined]


@strawberry.type(description="A role or special permission held at a school or municipality-wide.")
class RoleGrant:
    role: str
    school: School | None


@strawberry.type(description="One audit event: who did what to which record, and when.")
class AuditEvent(Node):
    occurred_at: datetime
    action: str
    actor_id: strawberry.ID | None = strawberry.field(
        description="Who did it: a person's ID (Person:...), as Me.id: not a node ID."
    )
    actor_name: str | None
    resource_type: str | None
    resource_id: str | None
    detail: strawberry.scalars.JSON


@strawberry.type
class AuditEventEdge:
    cursor: str
    node: AuditEvent


@strawberry.type
class AuditEventConnection:
    edges: list[AuditEventEdge]
    page_info: PageInfo
    _total: strawberry.Private[object]

    @strawberry.field
    async def total_count(self) -> int:
        return await self._total.total_count()  # type: ignore[attr-defined]
