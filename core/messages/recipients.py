"""Who a message may reach, compiled to SQL, and the resolution of persons and groups to
recipient rows when a message is sent.

What the `message:send` scopes reach:

- municipality: every student, every guardian with parental responsibility, every
  employee, every group.
- school: the school's students, their guardians, its employees and its groups.
- own_groups / own_sfo_groups: the students of the groups the person teaches, their
  guardians, and those groups; colleagues at the school the role is held at.
- own_children (guardians): the contact teachers of their children; nobody else, and no
  groups.
- self: nobody.

Guardians are always those with parental responsibility: a step-parent registered without
it gets no messages about the child.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.access import scopes
from core.access.grants import Principal, ScopedGrant
from core.errors import BadInput, Forbidden
from core.models import (
    Employment,
    Enrolment,
    Group,
    GroupMembership,
    GroupTeacher,
    Guardianship,
    Person,
    RecipientRole,
)

# Scopes that reach students, their guardians and whole groups.
STAFF_SCOPES = frozenset({"municipality", "school", "own_groups", "own_sfo_groups"})

# A message to a whole municipality is an emergency SMS's job, not a message's; this caps
# what one `sendMessage` writes in one transaction.
MAX_RECIPIENTS = 5000


class Audience:
    GUARDIANS = "guardians"
    STUDENTS = "students"
    ALL = "all"


@dataclass(frozen=True)
class ResolvedRecipient:
    person_id: int
    role: RecipientRole
    group_id: int | None
    student_id: int | None  # for a guardian: the child that made them a recipient
    school_id: int | None


def _any(conditions: Iterable[ColumnElement[bool]]) -> ColumnElement[bool]:
    conditions = list(conditions)
    if not conditions:
        return false()
    return conditions[0] if len(conditions) == 1 else or_(*conditions)


def _staff(grants: Iterable[ScopedGrant]) -> list[ScopedGrant]:
    return [g for g in grants if g.scope in STAFF_SCOPES]


def reachable_students(
    principal: Principal, grants: Sequence[ScopedGrant], student_id: ColumnElement[int]
) -> ColumnElement[bool]:
    staff = _staff(grants)
    if not staff:
        return false()
    return scopes.students(principal, staff, student_id)


def reachable_guardians(
    principal: Principal, grants: Sequence[ScopedGrant], guardian_id: ColumnElement[int]
) -> ColumnElement[bool]:
    staff = _staff(grants)
    if not staff:
        return false()
    return guardian_id.in_(
        select(Guardianship.guardian_id).where(
            Guardianship.parental_responsibility.is_(True),
            Guardianship.student_id.in_(_enrolled_now(principal)),
            scopes.students(principal, staff, Guardianship.student_id),
        )
    )


def _enrolled_now(principal: Principal):  # type: ignore[no-untyped-def]
    return select(Enrolment.student_id).where(
        Enrolment.school_year_id == principal.current_school_year_id
    )


def contact_teachers_of_children(principal: Principal):  # type: ignore[no-untyped-def]
    """The contact teachers of the caller's children (current school year)."""
    children = select(Guardianship.student_id).where(
        Guardianship.guardian_id == principal.person_id,
        Guardianship.parental_responsibility.is_(True),
    )
    return (
        select(GroupTeacher.employee_id)
        .join(Group, Group.id == GroupTeacher.group_id)
        .join(GroupMembership, GroupMembership.group_id == Group.id)
        .where(
            GroupTeacher.is_contact_teacher.is_(True),
            Group.school_year_id == principal.current_school_year_id,
            GroupMembership.student_id.in_(children),
        )
    )


def reachable_employees(
    principal: Principal, grants: Sequence[ScopedGrant], employee_id: ColumnElement[int]
) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = []
    for grant in grants:
        match grant.scope:
            case "municipality":
                return employee_id.in_(select(Employment.person_id))
            case "school" | "own_groups" | "own_sfo_groups":
                query = select(Employment.person_id)
                if grant.school_id is not None:
                    query = query.where(Employment.school_id == grant.school_id)
                conditions.append(employee_id.in_(query))
            case "own_children":
                conditions.append(employee_id.in_(contact_teachers_of_children(principal)))
    return _any(conditions)


def reachable_groups(principal: Principal, grants: Sequence[ScopedGrant]) -> ColumnElement[bool]:
    staff = _staff(grants)
    if not staff:
        return false()
    return scopes.groups(principal, staff) & (
        Group.school_year_id == principal.current_school_year_id
    )


def sender_role(principal: Principal, grants: Sequence[ScopedGrant]) -> RecipientRole:
    """A caller who may send only as a guardian writes as a guardian (what the school
    nurse reads); anyone with a staff scope writes as an employee."""
    if _staff(grants) or any(g.scope != "own_children" for g in grants):
        return RecipientRole.EMPLOYEE
    return RecipientRole.GUARDIAN


async def find_groups_by_name(
    session: AsyncSession, principal: Principal, grants: Sequence[ScopedGrant], names: list[str]
) -> list[int]:
    """Group ids for names like "5A", "9 Matematikk" or "SFO 1-2", among the groups the
    caller may message. A name found at several schools must be given by id instead."""
    wanted = {n.strip().casefold(): n.strip() for n in names if n.strip()}
    if not wanted:
        raise BadInput("Oppgi gruppenavn.", field="groupNames")
    rows = (
        await session.execute(
            select(Group.id, Group.name).where(
                reachable_groups(principal, grants),
            )
        )
    ).all()
    found: dict[str, list[int]] = {}
    for group_id, name in rows:
        key = name.casefold()
        if key in wanted:
            found.setdefault(key, []).append(group_id)
    result: list[int] = []
    for key, original in wanted.items():
        matches = found.get(key, [])
        if not matches:
            raise BadInput(
                f"Fant ingen gruppe «{original}» du kan sende melding til.", field="groupNames"
            )
        if len(matches) > 1:
            raise BadInput(
                f"Gruppenavnet «{original}» finnes ved flere skoler; velg gruppen med ID.",
                field="groupNames",
            )
        result.append(matches[0])
    return result


async def resolve(
    session: AsyncSession,
    principal: Principal,
    grants: Sequence[ScopedGrant],
    *,
    persons: list[tuple[str, int]],
    group_ids: list[int],
    audience: str,
) -> list[ResolvedRecipient]:
    """Every recipient, each person once, with the role and group they came through.

    `persons` are (type, id) from global IDs: Student, Guardian, Employee or Person.
    Raises Forbidden when any named person or group is outside the caller's scope, so a
    message never reaches part of its addressees silently.
    """
    year = principal.current_school_year_id
    recipients: dict[int, ResolvedRecipient] = {}

    def add(recipient: ResolvedRecipient) -> None:
        recipients.setdefault(recipient.person_id, recipient)

    if group_ids:
        allowed = set(
            (
                await session.execute(
                    select(Group.id).where(
                        Group.id.in_(group_ids), reachable_groups(principal, grants)
                    )
                )
            ).scalars()
        )
        if allowed != set(group_ids):
            raise Forbidden("Du kan ikke sende melding til en eller flere av gruppene.")
        if audience in (Audience.STUDENTS, Audience.ALL):
            rows = await session.execute(
                select(GroupMembership.student_id, Group.id, Group.school_id)
                .join(Group, Group.id == GroupMembership.group_id)
                .where(Group.id.in_(group_ids))
                .order_by(Group.id, GroupMembership.student_id)
            )
            for student_id, group_id, school_id in rows:
                add(ResolvedRecipient(student_id, RecipientRole.STUDENT, group_id, None, school_id))
        if audience in (Audience.GUARDIANS, Audience.ALL):
            rows = await session.execute(
                select(
                    Guardianship.guardian_id, GroupMembership.student_id, Group.id, Group.school_id
                )
                .join(GroupMembership, GroupMembership.student_id == Guardianship.student_id)
                .join(Group, Group.id == GroupMembership.group_id)
                .where(Group.id.in_(group_ids), Guardianship.parental_responsibility.is_(True))
                .order_by(Group.id, Guardianship.guardian_id, GroupMembership.student_id)
            )
            for guardian_id, student_id, group_id, school_id in rows:
                add(
                    ResolvedRecipient(
                        guardian_id, RecipientRole.GUARDIAN, group_id, student_id, school_id
                    )
                )

    if persons:
        wanted = {pk for _, pk in persons}
        typed = {pk: kind for kind, pk in persons}
        found: dict[int, ResolvedRecipient] = {}
        person_col = Person.id
        if any(kind in ("Student", "Person") for kind in typed.values()):
            rows = await session.execute(
                select(Person.id, Enrolment.school_id)
                .join(Enrolment, Enrolment.student_id == Person.id)
                .where(
                    Person.id.in_([pk for pk, k in typed.items() if k in ("Student", "Person")]),
                    Enrolment.school_year_id == year,
                    reachable_students(principal, grants, person_col),
                )
            )
            for pk, school_id in rows:
                found.setdefault(
                    pk, ResolvedRecipient(pk, RecipientRole.STUDENT, None, None, school_id)
                )
        if any(kind in ("Guardian", "Person") for kind in typed.values()):
            candidates = [pk for pk, k in typed.items() if k in ("Guardian", "Person")]
            rows = await session.execute(
                select(Guardianship.guardian_id, Guardianship.student_id, Enrolment.school_id)
                .join(Enrolment, Enrolment.student_id == Guardianship.student_id)
                .where(
                    Guardianship.guardian_id.in_(candidates),
                    Guardianship.parental_responsibility.is_(True),
                    Enrolment.school_year_id == year,
                    reachable_guardians(principal, grants, Guardianship.guardian_id),
                    reachable_students(principal, grants, Guardianship.student_id),
                )
                .order_by(Guardianship.guardian_id, Guardianship.student_id)
            )
            for pk, child, school_id in rows:
                found.setdefault(
                    pk, ResolvedRecipient(pk, RecipientRole.GUARDIAN, None, child, school_id)
                )
        if any(kind in ("Employee", "Person") for kind in typed.values()):
            candidates = [pk for pk, k in typed.items() if k in ("Employee", "Person")]
            rows = await session.execute(
                select(Employment.person_id, Employment.school_id)
                .where(
                    Employment.person_id.in_(candidates),
                    reachable_employees(principal, grants, Employment.person_id),
                )
                .order_by(Employment.person_id, Employment.school_id)
            )
            for pk, school_id in rows:
                # An employee is reached as such; a Person ID that is both prefers this.
                if typed[pk] == "Employee" or pk not in found:
                    found[pk] = ResolvedRecipient(pk, RecipientRole.EMPLOYEE, None, None, school_id)
        missing = wanted - set(found)
        if missing:
            raise Forbidden("Du kan ikke sende melding til en eller flere av mottakerne.")
        # Named persons keep their own role even when a group also brought them in.
        for recipient in found.values():
            recipients[recipient.person_id] = recipient

    recipients.pop(principal.person_id, None)  # nobody sends to themself
    if not recipients:
        raise BadInput("Meldingen har ingen mottakere.", field="recipientIds")
    if len(recipients) > MAX_RECIPIENTS:
        raise BadInput(
            f"En melding kan ha høyst {MAX_RECIPIENTS} mottakere; del den opp.",
            field="recipientIds",
        )
    return list(recipients.values())


def main_school(recipients: Iterable[ResolvedRecipient]) -> int | None:
    """The school a message belongs to (statistics, the nurse's reading): the school most
    of its recipients belong to."""
    counted = Counter(r.school_id for r in recipients if r.school_id is not None)
    return counted.most_common(1)[0][0] if counted else None


__all__ = [
    "MAX_RECIPIENTS",
    "Audience",
    "ResolvedRecipient",
    "contact_teachers_of_children",
    "find_groups_by_name",
    "main_school",
    "reachable_employees",
    "reachable_groups",
    "reachable_guardians",
    "reachable_students",
    "resolve",
    "sender_role",
]
