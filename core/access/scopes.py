"""Scopes compiled to SQL: the relationship strategies of the authorization model.

Each function turns a caller's scoped grants for one resource into a boolean SQL
expression over the columns of the query it is used in, so the database returns only rows
in scope. Nothing is fetched first and filtered in Python. No grant yields `false()`.

What each scope means per kind of row:

- municipality: every row.
- school: students enrolled at the grant's school, their guardians, employees employed
  there, its groups; municipality-wide grants cover every school.
- own_groups: students of groups the person teaches, their guardians, the groups' teachers,
  those groups and their schools. own_sfo_groups: the same, SFO groups only.
- own_children: children with parental responsibility, the children's groups, schools and
  teachers; as a guardian row only the person themself.
- self: the person themself; for a student also their groups, school and teachers.

Students, groups and teaching relations count in the current school year.
`guardian_messages` applies to messages only (see core/messaging).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, column, exists, false, or_, select, table, true
from sqlalchemy.sql import Select, TableClause
from sqlalchemy.sql.elements import BindParameter

from core.access.grants import Principal, ScopedGrant
from core.access.memo import ConditionMemo
from core.models import (
    Employment,
    Enrolment,
    Group,
    GroupKind,
    GroupMembership,
    GroupTeacher,
    Guardianship,
)

F = TypeVar("F", bound=Callable[..., ColumnElement[bool]])

# The conditions depend only on the caller (person, school year, grants), the columns
# they are built over and the options; built once per such key (see core/access/memo.py).
_MEMO = ConditionMemo(max_entries=2048)


def _memoized(build: F) -> F:
    """`build(principal, grants, *columns, **options)`, remembered per caller."""

    @functools.wraps(build)
    def memoized(
        principal: Principal, grants: Iterable[ScopedGrant], *columns: Any, **options: Any
    ) -> ColumnElement[bool]:
        grants = tuple(grants)
        if any(isinstance(c, BindParameter) for c in columns):
            # A value in place of a column (`literal(id)`) is a new object every call:
            # its entry would never be used again, so it is not kept.
            return build(principal, grants, *columns, **options)
        values = (
            build.__name__,
            principal.person_id,
            principal.current_school_year_id,
            grants,
            tuple(sorted(options.items())),
        )
        return _MEMO.get_or_build(
            values, columns, lambda: build(principal, grants, *columns, **options)
        )

    return memoized  # type: ignore[return-value]


def _light(model: type, *names: str) -> TableClause:
    """A lightweight stand-in for `model`'s table with only `names`: it renders the same
    SQL, and aliasing it does not copy every column and foreign key as aliasing the full
    Table does (that cost ~1 ms per guardian condition)."""
    full = model.__table__  # type: ignore[attr-defined]
    return table(full.name, *(column(name, full.c[name].type) for name in names))


_GUARDIANSHIP = _light(Guardianship, "guardian_id", "student_id", "parental_responsibility")
_ENROLMENT = _light(Enrolment, "student_id", "school_year_id", "school_id")
_GROUP_MEMBERSHIP = _light(GroupMembership, "student_id", "group_id")


def _any(conditions: Iterable[ColumnElement[bool]]) -> ColumnElement[bool]:
    conditions = list(conditions)
    if not conditions:
        return false()
    return conditions[0] if len(conditions) == 1 else or_(*conditions)


def _taught_group_ids(principal: Principal, sfo_only: bool) -> Select[tuple[int]]:
    query = (
        select(GroupTeacher.group_id)
        .join(Group, Group.id == GroupTeacher.group_id)
        .where(
            GroupTeacher.employee_id == principal.person_id,
            Group.school_year_id == principal.current_school_year_id,
        )
    )
    if sfo_only:
        query = query.where(Group.kind == GroupKind.SFO)
    return query


def _taught_student_ids(principal: Principal, sfo_only: bool) -> Select[tuple[int]]:
    return select(GroupMembership.student_id).where(
        GroupMembership.group_id.in_(_taught_group_ids(principal, sfo_only))
    )


def _children_ids(principal: Principal) -> Select[tuple[int]]:
    return select(Guardianship.student_id).where(
        Guardianship.guardian_id == principal.person_id,
        Guardianship.parental_responsibility.is_(True),
    )


def _enrolled_at(school_id: int | None, principal: Principal) -> Select[tuple[int]]:
    query = select(Enrolment.student_id).where(
        Enrolment.school_year_id == principal.current_school_year_id
    )
    if school_id is not None:
        query = query.where(Enrolment.school_id == school_id)
    return query


def _groups_of_students(
    student_ids: Select[tuple[int]], principal: Principal
) -> Select[tuple[int]]:
    return (
        select(GroupMembership.group_id)
        .join(Group, Group.id == GroupMembership.group_id)
        .where(
            GroupMembership.student_id.in_(student_ids),
            Group.school_year_id == principal.current_school_year_id,
        )
    )


@_memoized
def students(
    principal: Principal,
    grants: Iterable[ScopedGrant],
    student_id: ColumnElement[int],
    school_id: ColumnElement[int] | None = None,
) -> ColumnElement[bool]:
    """Students in scope. `school_id` is the query's current-enrolment school column, when
    the query has one; without it the school scope is checked by a subquery."""
    conditions: list[ColumnElement[bool]] = []
    for grant in grants:
        match grant.scope:
            case "municipality":
                return true()
            case "school":
                if grant.school_id is None:
                    return true()
                if school_id is not None:
                    conditions.append(school_id == grant.school_id)
                else:
                    conditions.append(student_id.in_(_enrolled_at(grant.school_id, principal)))
            case "own_groups" | "own_sfo_groups":
                conditions.append(
                    student_id.in_(_taught_student_ids(principal, grant.scope == "own_sfo_groups"))
                )
            case "own_children":
                conditions.append(student_id.in_(_children_ids(principal)))
            case "self":
                conditions.append(student_id == principal.person_id)
    return _any(conditions)


def _responsible_guardians_of(students: Select[tuple[int]]) -> Select[tuple[int]]:
    return select(Guardianship.guardian_id).where(
        Guardianship.student_id.in_(students), Guardianship.parental_responsibility.is_(True)
    )


def _guardians_of_enrolled(
    school_id: int, principal: Principal, guardian_id: ColumnElement[int], listing: bool
) -> ColumnElement[bool]:
    """`guardian_id` is a guardian with parental responsibility for a student enrolled at
    the school this year. A parent without it is not the school's guardian: no list,
    message or notice treats them as one, so staff do not see them either (only the
    municipality's register administrators, at municipality scope).

    Two equivalent forms, because SQLite plans them very differently: for a few given
    guardians (a loader's batch, one id) a correlated EXISTS probes each one through the
    (guardian_id, student_id) and (student_id, school_year_id) indexes; for a listing,
    which scans guardians in name order, the uncorrelated IN builds the set once.
    PostgreSQL plans both as a semi-join."""
    if listing:
        students = _enrolled_at(school_id, principal)
        return guardian_id.in_(_responsible_guardians_of(students))
    # Aliases of lightweight tables: the same SQL as ORM `aliased()`, far cheaper to build.
    other, enrolment = _GUARDIANSHIP.alias().c, _ENROLMENT.alias().c
    return exists().where(
        other.guardian_id == guardian_id,
        other.parental_responsibility.is_(True),
        enrolment.student_id == other.student_id,
        enrolment.school_year_id == principal.current_school_year_id,
        enrolment.school_id == school_id,
    )


def _guardians_of_taught(
    principal: Principal, sfo_only: bool, guardian_id: ColumnElement[int], listing: bool
) -> ColumnElement[bool]:
    """`guardian_id` is a guardian with parental responsibility for a member of a group
    the person teaches (the same two forms as above)."""
    groups = _taught_group_ids(principal, sfo_only)
    if listing:
        students = select(GroupMembership.student_id).where(GroupMembership.group_id.in_(groups))
        return guardian_id.in_(_responsible_guardians_of(students))
    other, membership = _GUARDIANSHIP.alias().c, _GROUP_MEMBERSHIP.alias().c
    return exists().where(
        other.guardian_id == guardian_id,
        other.parental_responsibility.is_(True),
        membership.student_id == other.student_id,
        membership.group_id.in_(groups),
    )


@_memoized
def guardians(
    principal: Principal,
    grants: Iterable[ScopedGrant],
    guardian_id: ColumnElement[int],
    *,
    listing: bool = False,
) -> ColumnElement[bool]:
    """Guardians in scope: guardians of students in scope, or the person themself.
    `listing` picks the SQL form for a query that scans many guardians (see above)."""
    conditions: list[ColumnElement[bool]] = []
    for grant in grants:
        match grant.scope:
            case "municipality":
                return true()
            case "school":
                if grant.school_id is None:
                    return true()
                conditions.append(
                    _guardians_of_enrolled(grant.school_id, principal, guardian_id, listing)
                )
            case "own_groups" | "own_sfo_groups":
                sfo_only = grant.scope == "own_sfo_groups"
                conditions.append(_guardians_of_taught(principal, sfo_only, guardian_id, listing))
            case "own_children" | "self":
                conditions.append(guardian_id == principal.person_id)
    return _any(conditions)


@_memoized
def employees(
    principal: Principal, grants: Iterable[ScopedGrant], employee_id: ColumnElement[int]
) -> ColumnElement[bool]:
    """Employees in scope."""
    conditions: list[ColumnElement[bool]] = []
    for grant in grants:
        match grant.scope:
            case "municipality":
                return true()
            case "school":
                query = select(Employment.person_id)
                if grant.school_id is not None:
                    query = query.where(Employment.school_id == grant.school_id)
                conditions.append(employee_id.in_(query))
            case "own_groups" | "own_sfo_groups":
                groups = _taught_group_ids(principal, grant.scope == "own_sfo_groups")
                conditions.append(
                    employee_id.in_(
                        select(GroupTeacher.employee_id).where(GroupTeacher.group_id.in_(groups))
                    )
                )
            case "own_children" | "self":
                learners = (
                    _children_ids(principal)
                    if grant.scope == "own_children"
                    else select(GroupMembership.student_id).where(
                        GroupMembership.student_id == principal.person_id
                    )
                )
                teachers = select(GroupTeacher.employee_id).where(
                    GroupTeacher.group_id.in_(_groups_of_students(learners, principal))
                )
                conditions.append(employee_id.in_(teachers))
                if grant.scope == "self":
                    conditions.append(employee_id == principal.person_id)
    return _any(conditions)


@_memoized
def groups(principal: Principal, grants: Iterable[ScopedGrant]) -> ColumnElement[bool]:
    """Groups in scope (any school year; callers add the year they list)."""
    conditions: list[ColumnElement[bool]] = []
    for grant in grants:
        match grant.scope:
            case "municipality":
                return true()
            case "school":
                if grant.school_id is None:
                    return true()
                conditions.append(Group.school_id == grant.school_id)
            case "own_groups" | "own_sfo_groups":
                conditions.append(
                    Group.id.in_(_taught_group_ids(principal, grant.scope == "own_sfo_groups"))
                )
            case "own_children":
                conditions.append(
                    Group.id.in_(_groups_of_students(_children_ids(principal), principal))
                )
            case "self":
                conditions.append(
                    Group.id.in_(
                        select(GroupMembership.group_id).where(
                            GroupMembership.student_id == principal.person_id
                        )
                    )
                )
    return _any(conditions)


@_memoized
def schools(
    principal: Principal, grants: Iterable[ScopedGrant], school_id: ColumnElement[int]
) -> ColumnElement[bool]:
    """Schools in scope."""
    conditions: list[ColumnElement[bool]] = []
    for grant in grants:
        match grant.scope:
            case "municipality":
                return true()
            case "school":
                if grant.school_id is None:
                    return true()
                conditions.append(school_id == grant.school_id)
            case "own_groups" | "own_sfo_groups":
                conditions.append(
                    school_id.in_(
                        select(Group.school_id).where(
                            Group.id.in_(
                                _taught_group_ids(principal, grant.scope == "own_sfo_groups")
                            )
                        )
                    )
                )
            case "own_children" | "self":
                learners = (
                    _children_ids(principal)
                    if grant.scope == "own_children"
                    else select(Enrolment.student_id).where(
                        Enrolment.student_id == principal.person_id
                    )
                )
                conditions.append(
                    school_id.in_(
                        select(Enrolment.school_id).where(
                            Enrolment.student_id.in_(learners),
                            Enrolment.school_year_id == principal.current_school_year_id,
                        )
                    )
                )
                if grant.scope == "self":
                    conditions.append(
                        school_id.in_(
                            select(Employment.school_id).where(
                                Employment.person_id == principal.person_id
                            )
                        )
                    )
    return _any(conditions)


__all__ = ["employees", "groups", "guardians", "schools", "students"]
