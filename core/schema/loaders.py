"""DataLoaders, created per request: every nested list is fetched for a whole batch of
parents in one scoped SQL statement, so a request costs a bounded number of statements
whatever the number of rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from sqlalchemy import ColumnElement, and_, select
from strawberry.dataloader import DataLoader

from core.access import scopes
from core.access.grants import Principal
from core.models import (
    Employment,
    Enrolment,
    Group,
    GroupKind,
    GroupMembership,
    GroupTeacher,
    Guardianship,
    Person,
    School,
    SchoolYear,
)
from core.schema.database import RequestDatabase
from core.schema.rows import PERSON_COLUMNS, STUDENT_COLUMNS, PersonRow, StudentRow

K = TypeVar("K")
V = TypeVar("V")


def _grouped(keys: Sequence[K], pairs: Iterable[tuple[K, V]]) -> list[list[V]]:
    found: dict[K, list[V]] = defaultdict(list)
    for key, value in pairs:
        found[key].append(value)
    return [found.get(key, []) for key in keys]


class Loaders:
    """Every loader of one request; each applies the caller's scope in SQL."""

    def __init__(self, db: RequestDatabase, principal: Principal):
        self.db = db
        self.principal = principal
        year = principal.current_school_year_id
        self._year = year
        self.school = DataLoader(self._load_schools)
        self.school_year = DataLoader(self._load_school_years)
        self.group = DataLoader(self._load_groups)
        self.groups_of_student = DataLoader(self._load_groups_of_students)
        self.students_of_group = DataLoader(self._load_students_of_groups)
        self.teachers_of_group = DataLoader(self._load_teachers_of_groups)
        self.guardians_of_student = DataLoader(self._load_guardians_of_students)
        self.children_of_guardian = DataLoader(self._load_children_of_guardians)
        self.contact_teacher_of_student = DataLoader(self._load_contact_teachers)
        self._field_loaders: dict[str, DataLoader[int, bool]] = {}

    # -- field permissions ------------------------------------------------------------
    def field_allowed(self, resource: str) -> DataLoader[int, bool]:
        """Whether the caller may read the `resource` field (e.g. student_national_id) of
        each person id, answered for a whole batch in one statement."""
        loader = self._field_loaders.get(resource)
        if loader is None:
            loader = DataLoader(lambda ids: self._load_field_allowed(resource, ids))
            self._field_loaders[resource] = loader
        return loader

    async def _load_field_allowed(self, resource: str, ids: Sequence[int]) -> list[bool]:
        grants = self.principal.scopes(resource, "read")
        if not grants:
            return [False] * len(ids)
        kind = resource.split("_", 1)[0]
        condition = self.person_condition(kind, resource, Person.id)
        rows = await self.db.execute(select(Person.id).where(Person.id.in_(ids), condition))
        allowed = {r[0] for r in rows}
        return [i in allowed for i in ids]

    def person_condition(
        self, kind: str, resource: str, column: ColumnElement[int]
    ) -> ColumnElement[bool]:
        grants = self.principal.scopes(resource, "read")
        match kind:
            case "student":
                return scopes.students(self.principal, grants, column)
            case "guardian":
                return scopes.guardians(self.principal, grants, column)
            case "employee":
                return scopes.employees(self.principal, grants, column)
        raise ValueError(f"no person filter for {kind!r}")

    # -- scoped conditions shared with the root queries ---------------------------------
    def student_condition(self, school_column: ColumnElement[int] | None = Enrolment.school_id):
        return scopes.students(
            self.principal, self.principal.scopes("student", "read"), Person.id, school_column
        )

    def group_condition(self) -> ColumnElement[bool]:
        return scopes.groups(self.principal, self.principal.scopes("group", "read"))

    def current_enrolment(self) -> ColumnElement[bool]:
        return and_(Enrolment.student_id == Person.id, Enrolment.school_year_id == self._year)

    # -- batch functions ---------------------------------------------------------------
    async def _load_schools(self, ids: Sequence[int]) -> list[School | None]:
        rows = (await self.db.execute(select(School).where(School.id.in_(ids)))).scalars()
        by_id = {s.id: s for s in rows}
        return [by_id.get(i) for i in ids]

    async def _load_school_years(self, ids: Sequence[int]) -> list[SchoolYear | None]:
        rows = (await self.db.execute(select(SchoolYear).where(SchoolYear.id.in_(ids)))).scalars()
        by_id = {s.id: s for s in rows}
        return [by_id.get(i) for i in ids]

    async def _load_groups(self, ids: Sequence[int]) -> list[Group | None]:
        rows = (
            await self.db.execute(select(Group).where(Group.id.in_(ids), self.group_condition()))
        ).scalars()
        by_id = {g.id: g for g in rows}
        return [by_id.get(i) for i in ids]

    async def _load_groups_of_students(self, ids: Sequence[int]) -> list[list[Group]]:
        rows = await self.db.execute(
            select(GroupMembership.student_id, Group)
            .join(Group, Group.id == GroupMembership.group_id)
            .where(
                GroupMembership.student_id.in_(ids),
                Group.school_year_id == self._year,
                self.group_condition(),
            )
            .order_by(Group.kind, Group.name)
        )
        return _grouped(ids, ((sid, g) for sid, g in rows))

    async def _load_students_of_groups(self, ids: Sequence[int]) -> list[list[StudentRow]]:
        rows = await self.db.execute(
            select(GroupMembership.group_id, *STUDENT_COLUMNS)
            .join(Person, Person.id == GroupMembership.student_id)
            .join(Enrolment, self.current_enrolment())
            .where(GroupMembership.group_id.in_(ids), self.student_condition())
            .order_by(Person.family_name, Person.given_name, Person.id)
        )
        return _grouped(ids, ((r[0], StudentRow.of(r[1:])) for r in rows))

    async def _load_teachers_of_groups(self, ids: Sequence[int]) -> list[list[PersonRow]]:
        condition = self.person_condition("employee", "employee", Person.id)
        rows = await self.db.execute(
            select(GroupTeacher.group_id, *PERSON_COLUMNS)
            .join(Person, Person.id == GroupTeacher.employee_id)
            .where(GroupTeacher.group_id.in_(ids), condition)
            .order_by(GroupTeacher.is_contact_teacher.desc(), Person.family_name, Person.id)
        )
        return _grouped(ids, ((r[0], PersonRow.of(r[1:])) for r in rows))

    async def _load_guardians_of_students(self, ids: Sequence[int]) -> list[list[PersonRow]]:
        condition = self.person_condition("guardian", "guardian", Person.id)
        rows = await self.db.execute(
            select(Guardianship.student_id, *PERSON_COLUMNS)
            .join(Person, Person.id == Guardianship.guardian_id)
            .where(
                Guardianship.student_id.in_(ids),
                Guardianship.parental_responsibility.is_(True),
                condition,
            )
            .order_by(Person.family_name, Person.given_name, Person.id)
        )
        return _grouped(ids, ((r[0], PersonRow.of(r[1:])) for r in rows))

    async def _load_children_of_guardians(self, ids: Sequence[int]) -> list[list[StudentRow]]:
        rows = await self.db.execute(
            select(Guardianship.guardian_id, *STUDENT_COLUMNS)
            .join(Person, Person.id == Guardianship.student_id)
            .join(Enrolment, self.current_enrolment())
            .where(
                Guardianship.guardian_id.in_(ids),
                Guardianship.parental_responsibility.is_(True),
                self.student_condition(),
            )
            .order_by(Person.birth_date, Person.id)
        )
        return _grouped(ids, ((r[0], StudentRow.of(r[1:])) for r in rows))

    async def _load_contact_teachers(self, ids: Sequence[int]) -> list[PersonRow | None]:
        condition = self.person_condition("employee", "employee", Person.id)
        rows = await self.db.execute(
            select(GroupMembership.student_id, *PERSON_COLUMNS)
            .join(Group, Group.id == GroupMembership.group_id)
            .join(GroupTeacher, GroupTeacher.group_id == Group.id)
            .join(Person, Person.id == GroupTeacher.employee_id)
            .where(
                GroupMembership.student_id.in_(ids),
                Group.school_year_id == self._year,
                Group.kind == GroupKind.CLASS,
                GroupTeacher.is_contact_teacher.is_(True),
                condition,
            )
            .order_by(Person.id)
        )
        first: dict[int, PersonRow] = {}
        for r in rows:
            first.setdefault(r[0], PersonRow.of(r[1:]))
        return [first.get(i) for i in ids]


def employment_exists() -> Callable[[ColumnElement[int]], ColumnElement[bool]]:
    """A condition: the person is an employee somewhere (used by the employees list)."""
    return lambda column: column.in_(select(Employment.person_id))


__all__ = ["Loaders", "employment_exists"]
