"""The root Query type. Every resolver asks the caller's scope first and filters in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import strawberry
from sqlalchemy import ColumnElement, Select, exists, select

from core.access import scopes
from core.access.memo import ConditionMemo
from core.db import unicode_lower
from core.models import (
    AuditEvent as AuditEventModel,
)
from core.models import (
    Employment,
    Enrolment,
    GroupMembership,
    Guardianship,
    Person,
)
from core.models import (
    Group as GroupModel,
)
from core.models import (
    School as SchoolModel,
)
from core.models import (
    SchoolYear as SchoolYearModel,
)
from core.schema import ids
from core.schema.context import Info
from core.schema.errors import bad_input, forbidden, not_found
from core.schema.filters import existing_pk
from core.schema.loaders import selected, settled
from core.schema.pagination import (
    PageStatements,
    check_first,
    newest_first,
    page_statements,
    paginate,
)
from core.schema.rows import PERSON_COLUMNS, STUDENT_COLUMNS, PersonRow, StudentRow
from core.schema.types import (
    AuditEvent,
    AuditEventConnection,
    AuditEventEdge,
    Employee,
    EmployeeConnection,
    EmployeeEdge,
    Group,
    GroupKind,
    Guardian,
    GuardianConnection,
    GuardianEdge,
    Node,
    PageInfo,
    RoleGrant,
    School,
    SchoolYear,
    Student,
    StudentConnection,
    StudentEdge,
)

MAX_SEARCH_LENGTH = 100


@strawberry.input(description="Narrow the students list; every condition must hold.")
class StudentFilter:
    school_id: strawberry.ID | None = None
    group_id: strawberry.ID | None = None
    grade: int | None = None
    search: str | None = strawberry.field(default=None, description="Part of the name.")


@strawberry.input
class PersonFilter:
    school_id: strawberry.ID | None = None
    search: str | None = strawberry.field(default=None, description="Part of the name.")


@strawberry.input
class AuditLogFilter:
    action: str | None = None
    actor_id: strawberry.ID | None = None
    resource_type: str | None = None


PERSON_ID_DESCRIPTION = (
    "The person's ID (Person:...), the same whichever role they are seen in: for "
    "recipientIds, filters and comparing with PersonRef. It is not a node ID; their "
    "Student, Employee or Guardian record has its own."
)


@strawberry.type(description="The logged-in person.")
class Me:
    id: strawberry.ID = strawberry.field(description=PERSON_ID_DESCRIPTION)
    name: str
    username: str | None
    roles: list[RoleGrant]
    _person_id: strawberry.Private[int]

    @strawberry.field(description="Your own student record, if you are a student.")
    async def student(self, info: Info) -> Student | None:
        return await _one_student(info, self._person_id, missing_ok=True)

    @strawberry.field(description="Children you have parental responsibility for.")
    async def children(self, info: Info) -> list[Student]:
        rows = await info.context.loaders.children_of_guardian.load(self._person_id)
        await _prefetch(info, "Student", rows)
        return [Student.of(r) for r in rows]


# The types `node(id)` finds: every type that implements Node and has an id of its own.
NODE_TYPES = (
    "Student",
    "Guardian",
    "Employee",
    "Group",
    "School",
    "SchoolYear",
    "Document",
    "Message",
    "ArchiveEntry",
    "ArchiveFolder",
    "AuditEvent",
)


def _require_audit_reader(info: Info) -> None:
    principal = info.context.principal
    if not any(g.scope == "municipality" for g in principal.scopes("audit_log", "read")):
        raise forbidden("Bare kommuneadministrator kan lese revisjonsloggen.")


def _audit_statement() -> Select[Any]:
    return select(AuditEventModel, Person.given_name, Person.family_name).outerjoin(
        Person, Person.id == AuditEventModel.actor_id
    )


def _audit_event(event: AuditEventModel, given: str | None, family: str | None) -> AuditEvent:
    return AuditEvent(
        id=strawberry.ID(ids.encode("AuditEvent", event.id)),
        occurred_at=event.occurred_at,
        action=event.action,
        actor_id=strawberry.ID(ids.encode("Person", event.actor_id)) if event.actor_id else None,
        actor_name=f"{given} {family}" if given else None,
        resource_type=event.resource_type,
        resource_id=event.resource_id,
        detail=event.detail,
    )


def _below(info: Info, *path: str) -> list[Any]:
    """What the query selects below the current field, at `path` (e.g. edges, node)."""
    return selected([s for f in info.selected_fields for s in f.selections], *path)


async def _prefetch(info: Info, type_name: str, rows: Sequence[Any], *path: str) -> None:
    """Load what the query asks for below `rows` before returning them (see
    Loaders.prefetch), so the nested fields resolve without awaiting."""
    if rows:
        await info.context.loaders.prefetch(type_name, rows, _below(info, *path))


def _search(search: str | None) -> ColumnElement[bool] | None:
    if search is None:
        return None
    term = search.strip()
    if not term:
        raise bad_input("Søketeksten kan ikke være tom.", field="search")
    if len(term) > MAX_SEARCH_LENGTH:
        raise bad_input(f"Søketeksten kan være høyst {MAX_SEARCH_LENGTH} tegn.", field="search")
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    full_name = unicode_lower(Person.given_name + " " + Person.family_name)
    return full_name.like(pattern, escape="\\")


_PERSON_ORDER = (Person.family_name, Person.given_name, Person.id)
# A listed person's sort key, read from the row by position (PERSON_COLUMNS, which
# STUDENT_COLUMNS begin with): by name, a row's attributes cost ~1 us each.
_person_key = itemgetter(
    *(next(i for i, c in enumerate(PERSON_COLUMNS) if c is k) for k in _PERSON_ORDER)
)
# Listing statements built once per caller (see ConditionMemo.for_caller).
_PAGE_STATEMENTS = ConditionMemo()


def _no_filter(filter: StudentFilter) -> bool:
    return (
        filter.school_id is None
        and filter.group_id is None
        and filter.grade is None
        and filter.search is None
    )


def _student_statement(info: Info) -> Select[Any]:
    loaders = info.context.loaders
    return (
        select(*STUDENT_COLUMNS)
        .join(Enrolment, loaders.current_enrolment())
        .where(loaders.student_condition())
    )


async def _filtered_students(info: Info, filter: StudentFilter) -> Select[Any]:
    """The student listing narrowed by `filter` (its ids checked: an unknown or
    malformed one is BAD_USER_INPUT)."""
    statement = _student_statement(info)
    if filter.school_id is not None:
        school_pk = await existing_pk(info, filter.school_id, "School")
        statement = statement.where(Enrolment.school_id == school_pk)
    if filter.group_id is not None:
        group_pk = await existing_pk(info, filter.group_id, "Group")
        principal = info.context.principal
        # Membership of a group the caller may not see is not told by filtering on it
        # either: the group must be in the caller's group scope, or the answer is empty.
        visible_group = select(GroupModel.id).where(
            GroupModel.id == group_pk, scopes.groups(principal, principal.scopes("group", "read"))
        )
        statement = statement.where(
            Person.id.in_(
                select(GroupMembership.student_id).where(
                    GroupMembership.group_id.in_(visible_group)
                )
            )
        )
    if filter.grade is not None:
        if not 1 <= filter.grade <= 10:
            raise bad_input("Trinn må være fra 1 til 10.", field="grade")
        statement = statement.where(Enrolment.grade == filter.grade)
    condition = _search(filter.search)
    if condition is not None:
        statement = statement.where(condition)
    return statement


async def _one_student(info: Info, pk: int, missing_ok: bool = False) -> Student | None:
    row = (await info.context.db.execute(_student_statement(info).where(Person.id == pk))).first()
    if row is not None:
        student = StudentRow.of(row)
        await _prefetch(info, "Student", [student])
        return Student.of(student)
    if missing_ok:
        return None
    exists_at_all = (
        await info.context.db.execute(select(exists().where(Enrolment.student_id == pk)))
    ).scalar()
    raise forbidden() if exists_at_all else not_found("Eleven")


async def _one_person(info: Info, kind: str, pk: int) -> PersonRow:
    """A guardian or employee by id, in scope, or FORBIDDEN / NOT_FOUND."""
    loaders = info.context.loaders
    relation = (
        Person.id.in_(_RESPONSIBLE_GUARDIANS)
        if kind == "guardian"
        else Person.id.in_(select(Employment.person_id))
    )
    row = (
        await info.context.db.execute(
            select(*PERSON_COLUMNS).where(
                Person.id == pk, relation, loaders.person_condition(kind, kind, Person.id)
            )
        )
    ).first()
    if row is not None:
        return PersonRow.of(row)
    found = (
        await info.context.db.execute(select(exists().where(Person.id == pk, relation)))
    ).scalar()
    raise forbidden() if found else not_found("Foresatte" if kind == "guardian" else "Ansatte")


# A guardian is a person with parental responsibility for a child (DOMAIN.md); a
# step-parent without it is in the register but is no one's guardian here.
_RESPONSIBLE_GUARDIANS = select(Guardianship.guardian_id).where(
    Guardianship.parental_responsibility.is_(True)
)


async def _person_connection(
    info: Info, kind: str, first: int | None, after: str | None, filter: PersonFilter | None
):  # type: ignore[no-untyped-def]
    ctx = info.context
    ctx.require(kind, "read")
    size = check_first(first, ctx.state.settings.max_page_size)
    statement = select(*PERSON_COLUMNS).where(
        ctx.loaders.person_condition(kind, kind, Person.id, listing=True)
    )
    if kind == "guardian":
        statement = statement.where(Person.id.in_(_RESPONSIBLE_GUARDIANS))
    else:
        statement = statement.where(Person.id.in_(select(Employment.person_id)))
    if filter is not None:
        if filter.school_id is not None:
            school_pk = await existing_pk(info, filter.school_id, "School")
            if kind == "guardian":
                statement = statement.where(
                    Person.id.in_(
                        select(Guardianship.guardian_id)
                        .join(Enrolment, Enrolment.student_id == Guardianship.student_id)
                        .where(
                            Enrolment.school_id == school_pk,
                            Enrolment.school_year_id == ctx.principal.current_school_year_id,
                            Guardianship.parental_responsibility.is_(True),
                            # Only a child the caller may see: else the filter told who
                            # has a child at a school outside the caller's scope.
                            ctx.loaders.student_condition(
                                Enrolment.school_id, Guardianship.student_id
                            ),
                        )
                    )
                )
            else:
                statement = statement.where(
                    Person.id.in_(
                        select(Employment.person_id).where(Employment.school_id == school_pk)
                    )
                )
        condition = _search(filter.search)
        if condition is not None:
            statement = statement.where(condition)
    page = await paginate(
        ctx.db,
        statement,
        _PERSON_ORDER,
        _person_key,
        first=size,
        after=after,
        of_columns=True,
    )
    return page


@strawberry.type
class Query:
    @strawberry.field(description="The logged-in person, their roles and relations.")
    async def me(self, info: Info) -> Me:
        principal = info.context.principal
        person = await info.context.db.get(Person, principal.person_id)
        if person is None:
            raise not_found("Personen")
        schools_by_id = {}
        school_ids = [g.school_id for g in principal.grants if g.school_id is not None]
        for school_id in school_ids:
            schools_by_id[school_id] = await info.context.loaders.school.load(school_id)
        return Me(
            id=strawberry.ID(ids.encode("Person", person.id)),
            name=person.name,
            username=person.username,
            roles=[
                RoleGrant(
                    role=g.role,
                    school=School.of(schools_by_id[g.school_id]) if g.school_id else None,
                )
                for g in principal.grants
            ],
            _person_id=person.id,
        )

    @strawberry.field(description="Schools you may see.")
    async def schools(self, info: Info) -> list[School]:
        principal = info.context.principal
        condition = scopes.schools(principal, principal.scopes("school", "read"), SchoolModel.id)
        rows = (
            await info.context.db.execute(
                select(SchoolModel).where(condition).order_by(SchoolModel.name)
            )
        ).scalars()
        return [School.of(r) for r in rows]

    @strawberry.field
    async def school(self, info: Info, id: strawberry.ID) -> School | None:
        pk = ids.decode_pk(id, "School")
        principal = info.context.principal
        condition = scopes.schools(principal, principal.scopes("school", "read"), SchoolModel.id)
        row = (
            await info.context.db.execute(
                select(SchoolModel).where(SchoolModel.id == pk, condition)
            )
        ).scalar_one_or_none()
        if row is not None:
            return School.of(row)
        if await info.context.db.get(SchoolModel, pk) is None:
            raise not_found("Skolen")
        raise forbidden()

    @strawberry.field(description="School years, the current one flagged.")
    async def school_years(self, info: Info) -> list[SchoolYear]:
        info.context.principal  # noqa: B018 - authentication required
        rows = (
            await info.context.db.execute(
                select(SchoolYearModel).order_by(SchoolYearModel.starts_on)
            )
        ).scalars()
        return [SchoolYear.of(r) for r in rows]

    @strawberry.field(description="Students in your scope, by family name, in pages.")
    async def students(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: StudentFilter | None = None,
    ) -> StudentConnection:
        ctx = info.context
        ctx.require("student", "read")
        size = check_first(first, ctx.state.settings.max_page_size)
        statement: Select[Any] | PageStatements
        if filter is None or _no_filter(filter):
            # The unfiltered listing is the same statement for every page a caller asks
            # for: built once per caller, run with the page size and cursor as values.
            statement = _PAGE_STATEMENTS.for_caller(
                ctx.principal,
                "students",
                lambda: page_statements(
                    _student_statement(info),
                    _PERSON_ORDER,
                    count=ctx.loaders.enrolment_count(),
                ),
            )
        else:
            statement = await _filtered_students(info, filter)
        page = await paginate(
            ctx.db,
            statement,
            _PERSON_ORDER,
            _person_key,
            first=size,
            after=after,
            of_columns=True,
        )
        students = [StudentRow.of(r) for r in page.rows]
        await _prefetch(info, "Student", students, "edges", "node")
        return StudentConnection(
            edges=[
                StudentEdge(_key=k, node=Student.of(r))
                for r, k in zip(students, page.keys, strict=True)
            ],
            page_info=PageInfo.of(page),
            _total=page,
        )

    @strawberry.field(description="One student; null with FORBIDDEN outside your scope.")
    async def student(self, info: Info, id: strawberry.ID) -> Student | None:
        return await _one_student(info, ids.decode_pk(id, "Student"))

    @strawberry.field(description="Guardians in your scope, by family name, in pages.")
    async def guardians(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: PersonFilter | None = None,
    ) -> GuardianConnection:
        page = await _person_connection(info, "guardian", first, after, filter)
        rows = [PersonRow.of(r) for r in page.rows]
        await _prefetch(info, "Guardian", rows, "edges", "node")
        nodes = await settled(Guardian.many(info, rows))
        return GuardianConnection(
            edges=[
                GuardianEdge(_key=k, node=node) for node, k in zip(nodes, page.keys, strict=True)
            ],
            page_info=PageInfo.of(page),
            _total=page,
        )

    @strawberry.field
    async def guardian(self, info: Info, id: strawberry.ID) -> Guardian | None:
        row = await _one_person(info, "guardian", ids.decode_pk(id, "Guardian"))
        await _prefetch(info, "Guardian", [row])
        return (await settled(Guardian.many(info, [row])))[0]

    @strawberry.field(description="Employees in your scope, by family name, in pages.")
    async def employees(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: PersonFilter | None = None,
    ) -> EmployeeConnection:
        page = await _person_connection(info, "employee", first, after, filter)
        rows = [PersonRow.of(r) for r in page.rows]
        await _prefetch(info, "Employee", rows, "edges", "node")
        nodes = await settled(Employee.many(info, rows))
        return EmployeeConnection(
            edges=[
                EmployeeEdge(_key=k, node=node) for node, k in zip(nodes, page.keys, strict=True)
            ],
            page_info=PageInfo.of(page),
            _total=page,
        )

    @strawberry.field
    async def employee(self, info: Info, id: strawberry.ID) -> Employee | None:
        row = await _one_person(info, "employee", ids.decode_pk(id, "Employee"))
        await _prefetch(info, "Employee", [row])
        return (await settled(Employee.many(info, [row])))[0]

    @strawberry.field(description="Groups of the current school year in your scope.")
    async def groups(
        self, info: Info, school_id: strawberry.ID | None = None, kind: GroupKind | None = None
    ) -> list[Group]:
        ctx = info.context
        ctx.require("group", "read")
        statement = select(GroupModel).where(
            GroupModel.school_year_id == ctx.principal.current_school_year_id,
            ctx.loaders.group_condition(),
        )
        if school_id is not None:
            school_pk = await existing_pk(info, school_id, "School")
            statement = statement.where(GroupModel.school_id == school_pk)
        if kind is not None:
            statement = statement.where(GroupModel.kind == kind.value)
        rows = (
            await ctx.db.execute(
                statement.order_by(GroupModel.school_id, GroupModel.grade, GroupModel.name)
            )
        ).scalars()
        groups = list(rows)
        await _prefetch(info, "Group", groups)
        return [Group.of(g) for g in groups]

    @strawberry.field
    async def group(self, info: Info, id: strawberry.ID) -> Group | None:
        pk = ids.decode_pk(id, "Group")
        row = await info.context.loaders.group.load(pk)
        if row is not None:
            await _prefetch(info, "Group", [row])
            return Group.of(row)
        if await info.context.db.get(GroupModel, pk) is None:
            raise not_found("Gruppen")
        raise forbidden()

    @strawberry.field(description="Any object by its global ID, authorized like its own query.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        type_name, pk = ids.decode(id, NODE_TYPES)
        query = Query()
        match type_name:
            case "Document":
                from core.schema.documents import Document, load_document

                return Document.of(await load_document(info, pk))
            case "Message":
                from core.schema.messages import message_node

                return await message_node(info, pk)
            case "ArchiveEntry":
                from core.schema.archive import entry_node

                return await entry_node(info, pk)
            case "AuditEvent":
                _require_audit_reader(info)
                statement = _audit_statement().where(AuditEventModel.id == pk)
                row = (await info.context.db.execute(statement)).first()
                if row is None:
                    raise not_found("Hendelsen")
                return _audit_event(*row)
            case "ArchiveFolder":
                from core.schema.archive import folder_node

                return await folder_node(info, pk)
            case "Student":
                return await query.student(info, id)
            case "Guardian":
                return await query.guardian(info, id)
            case "Employee":
                return await query.employee(info, id)
            case "Group":
                return await query.group(info, id)
            case "School":
                return await query.school(info, id)
            case _:
                info.context.principal  # noqa: B018 - authentication required
                row = await info.context.db.get(SchoolYearModel, pk)
                if row is None:
                    raise not_found("Skoleåret")
                return SchoolYear.of(row)

    @strawberry.field(description="The audit trail, newest first (kommuneadmin only).")
    async def audit_log(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: AuditLogFilter | None = None,
    ) -> AuditEventConnection:
        ctx = info.context
        _require_audit_reader(info)
        size = check_first(first, ctx.state.settings.max_page_size)
        statement = _audit_statement()
        if filter is not None:
            if filter.action is not None:
                statement = statement.where(AuditEventModel.action == filter.action)
            if filter.resource_type is not None:
                statement = statement.where(AuditEventModel.resource_type == filter.resource_type)
            if filter.actor_id is not None:
                statement = statement.where(
                    AuditEventModel.actor_id
                    == ids.decode_pk(filter.actor_id, ("Person", "Employee", "Guardian", "Student"))
                )
        page = await newest_first(ctx.db, statement, AuditEventModel.id, first=size, after=after)
        edges = [
            AuditEventEdge(cursor=c, node=_audit_event(*row)) for c, row in page.with_cursors()
        ]
        return AuditEventConnection(edges=edges, page_info=PageInfo.of(page), _total=page)
