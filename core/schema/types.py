"""GraphQL object types. Each is built from a plain row; nested lists go through the
request's DataLoaders, which apply the caller's scope in SQL."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Annotated

import strawberry

from core.models import Group as GroupModel
from core.models import GroupKind as GroupKindModel
from core.models import School as SchoolModel
from core.models import SchoolYear as SchoolYearModel
from core.schema import ids
from core.schema.context import Info
from core.schema.rows import PersonRow, StudentRow


@strawberry.interface(description="An object with a global ID, fetchable by `node(id)`.")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


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


async def _restricted(info: Info, resource: str, row: PersonRow, value, audited: bool):  # type: ignore[no-untyped-def]
    """A field with its own permission: the value when allowed, else null."""
    if value is None:
        return None
    if not await info.context.loaders.field_allowed(resource).load(row.id):
        return None
    if audited:
        info.context.audit_read(resource.split("_", 1)[0], row.id, resource)
    return value


@strawberry.type(description="A school in the municipality.")
class School(Node):
    _row: strawberry.Private[SchoolModel]

    @classmethod
    def of(cls, row: SchoolModel) -> School:
        return cls(id=strawberry.ID(ids.encode("School", row.id)), _row=row)

    @strawberry.field
    def name(self) -> str:
        return self._row.name

    @strawberry.field
    def first_grade(self) -> int:
        return self._row.first_grade

    @strawberry.field
    def last_grade(self) -> int:
        return self._row.last_grade

    @strawberry.field(description="Whether the school runs after-school care (SFO).")
    def has_sfo(self) -> bool:
        return self._row.has_sfo


@strawberry.type(description="A school year, e.g. 2026/2027.")
class SchoolYear(Node):
    _row: strawberry.Private[SchoolYearModel]

    @classmethod
    def of(cls, row: SchoolYearModel) -> SchoolYear:
        return cls(id=strawberry.ID(ids.encode("SchoolYear", row.id)), _row=row)

    @strawberry.field
    def name(self) -> str:
        return self._row.name

    @strawberry.field
    def starts_on(self) -> date:
        return self._row.starts_on

    @strawberry.field
    def ends_on(self) -> date:
        return self._row.ends_on

    @strawberry.field
    def is_current(self) -> bool:
        return self._row.is_current


@strawberry.type(description="An employee of a school or of the municipality.")
class Employee(Node):
    _row: strawberry.Private[PersonRow]

    @classmethod
    def of(cls, row: PersonRow) -> Employee:
        return cls(id=strawberry.ID(ids.encode("Employee", row.id)), _row=row)

    @strawberry.field
    def name(self) -> str:
        return self._row.name

    @strawberry.field(description="Null unless you may see employees' contact details.")
    async def email(self, info: Info) -> str | None:
        return await _restricted(info, "employee_contact", self._row, self._row.email, False)

    @strawberry.field(description="Mobile number. Null unless you may see contact details.")
    async def phone(self, info: Info) -> str | None:
        return await _restricted(info, "employee_contact", self._row, self._row.mobile, False)

    @strawberry.field(description="Fødselsnummer. Restricted; reading it is audited.")
    async def national_id(self, info: Info) -> str | None:
        return await _restricted(
            info, "employee_national_id", self._row, self._row.national_id, True
        )


@strawberry.type(description="A guardian (foresatt) with parental responsibility.")
class Guardian(Node):
    _row: strawberry.Private[PersonRow]

    @classmethod
    def of(cls, row: PersonRow) -> Guardian:
        return cls(id=strawberry.ID(ids.encode("Guardian", row.id)), _row=row)

    @strawberry.field
    def name(self) -> str:
        return self._row.name

    @strawberry.field(description="Null unless you may see guardians' contact details.")
    async def email(self, info: Info) -> str | None:
        return await _restricted(info, "guardian_contact", self._row, self._row.email, False)

    @strawberry.field(description="Mobile number. Null unless you may see contact details.")
    async def phone(self, info: Info) -> str | None:
        return await _restricted(info, "guardian_contact", self._row, self._row.mobile, False)

    @strawberry.field(description="Restricted; reading it is audited.")
    async def address(self, info: Info) -> Address | None:
        return await _restricted(info, "guardian_contact", self._row, _address(self._row), True)

    @strawberry.field(description="Fødselsnummer. Restricted; reading it is audited.")
    async def national_id(self, info: Info) -> str | None:
        return await _restricted(
            info, "guardian_national_id", self._row, self._row.national_id, True
        )

    @strawberry.field(description="The children in your scope this guardian is responsible for.")
    async def children(
        self, info: Info
    ) -> list[Annotated[Student, strawberry.lazy("core.schema.types")]]:
        rows = await info.context.loaders.children_of_guardian.load(self._row.id)
        return [Student.of(r) for r in rows]


@strawberry.type(description="A student (elev) in the current school year.")
class Student(Node):
    _row: strawberry.Private[StudentRow]

    @classmethod
    def of(cls, row: StudentRow) -> Student:
        return cls(id=strawberry.ID(ids.encode("Student", row.id)), _row=row)

    @strawberry.field
    def name(self) -> str:
        return self._row.name

    @strawberry.field
    def given_name(self) -> str:
        return self._row.given_name

    @strawberry.field
    def family_name(self) -> str:
        return self._row.family_name

    @strawberry.field
    def birth_date(self) -> date | None:
        return self._row.birth_date

    @strawberry.field(description="Grade (trinn) 1-10 in the current school year.")
    def grade(self) -> int | None:
        return self._row.grade

    @strawberry.field
    async def school(self, info: Info) -> School | None:
        if self._row.school_id is None:
            return None
        row = await info.context.loaders.school.load(self._row.school_id)
        return School.of(row) if row else None

    @strawberry.field(description="The student's groups this school year that you may see.")
    async def groups(
        self, info: Info
    ) -> list[Annotated[Group, strawberry.lazy("core.schema.types")]]:
        rows = await info.context.loaders.groups_of_student.load(self._row.id)
        return [Group.of(g) for g in rows]

    @strawberry.field(description="Guardians in your scope.")
    async def guardians(self, info: Info) -> list[Guardian]:
        rows = await info.context.loaders.guardians_of_student.load(self._row.id)
        return [Guardian.of(r) for r in rows]

    @strawberry.field(description="The contact teacher of the student's class.")
    async def contact_teacher(self, info: Info) -> Employee | None:
        row = await info.context.loaders.contact_teacher_of_student.load(self._row.id)
        return Employee.of(row) if row else None

    @strawberry.field(description="Null unless you may see students' contact details.")
    async def email(self, info: Info) -> str | None:
        return await _restricted(info, "student_contact", self._row, self._row.email, False)

    @strawberry.field(description="Mobile number. Null unless you may see contact details.")
    async def phone(self, info: Info) -> str | None:
        return await _restricted(info, "student_contact", self._row, self._row.mobile, False)

    @strawberry.field(description="Restricted; reading it is audited.")
    async def address(self, info: Info) -> Address | None:
        return await _restricted(info, "student_address", self._row, _address(self._row), True)

    @strawberry.field(description="Fødselsnummer. Restricted; reading it is audited.")
    async def national_id(self, info: Info) -> str | None:
        return await _restricted(
            info, "student_national_id", self._row, self._row.national_id, True
        )

    @strawberry.field(description="Documents about the student that you may read, newest first.")
    async def documents(
        self, info: Info
    ) -> list[Annotated[Document, strawberry.lazy("core.schema.documents")]]:  # noqa: F821
        from core.schema.documents import Document, document_loaders

        if not info.context.principal.can("document", "read"):
            return []
        rows = await document_loaders(info).of_student.load(self._row.id)
        return [Document.of(r) for r in rows]


@strawberry.type(description="A class, subject group or SFO group in one school year.")
class Group(Node):
    _row: strawberry.Private[GroupModel]

    @classmethod
    def of(cls, row: GroupModel) -> Group:
        return cls(id=strawberry.ID(ids.encode("Group", row.id)), _row=row)

    @strawberry.field
    def name(self) -> str:
        return self._row.name

    @strawberry.field
    def kind(self) -> GroupKind:
        return GroupKind(GroupKindModel(self._row.kind).value)

    @strawberry.field
    def grade(self) -> int | None:
        return self._row.grade

    @strawberry.field
    async def school(self, info: Info) -> School:
        row = await info.context.loaders.school.load(self._row.school_id)
        assert row is not None  # a foreign key guarantees it
        return School.of(row)

    @strawberry.field
    async def school_year(self, info: Info) -> SchoolYear:
        row = await info.context.loaders.school_year.load(self._row.school_year_id)
        assert row is not None
        return SchoolYear.of(row)

    @strawberry.field(description="Members in your scope, by family name.")
    async def students(self, info: Info) -> list[Student]:
        rows = await info.context.loaders.students_of_group.load(self._row.id)
        return [Student.of(r) for r in rows]

    @strawberry.field(description="Responsible teachers; the contact teacher first.")
    async def teachers(self, info: Info) -> list[Employee]:
        rows = await info.context.loaders.teachers_of_group.load(self._row.id)
        return [Employee.of(r) for r in rows]


@strawberry.type
class StudentEdge:
    cursor: str
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
class GuardianEdge:
    cursor: str
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
class EmployeeEdge:
    cursor: str
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
    actor_id: strawberry.ID | None
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
