"""Root mutations. Each runs in one transaction of its own, checks scope before writing,
and writes an audit event in that same transaction."""

from __future__ import annotations

import strawberry
from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.access.grants import Principal
from core.access.vocabulary import (
    GUARDIAN_ROLE,
    ROLE_GRANT_ACTION,
    ROLE_GRANT_PREFIX,
    SPECIAL_PERMISSIONS,
    STUDENT_ROLE,
)
from core.db import transaction
from core.models import Employment, Enrolment, Person
from core.models import RoleAssignment as RoleAssignmentModel
from core.models import School as SchoolModel
from core.schema import ids
from core.schema.context import Info
from core.schema.errors import bad_input, forbidden, not_found
from core.schema.types import School

# Role names are short identifiers (policies/roles.csv); longer input is never one.
MAX_ROLE_LENGTH = 100


@strawberry.type(description="A role held by a person at a school or municipality-wide.")
class RoleAssignment:
    id: strawberry.ID
    role: str
    person_name: str
    school: School | None


@strawberry.input
class GrantRoleInput:
    person_id: strawberry.ID
    role: str
    school_id: strawberry.ID | None = strawberry.field(
        default=None, description="Null grants the role for the whole municipality."
    )


def _may_grant(principal: Principal, role: str, school_id: int | None) -> bool:
    """Granting (and revoking) needs `role_assignment` (every role) or `role:<role>` (that
    role) with action grant: at scope municipality anywhere, also municipality-wide; at
    scope school only at the schools where the granting role is held."""
    grants = (
        *principal.scopes("role_assignment", ROLE_GRANT_ACTION),
        *principal.scopes(f"{ROLE_GRANT_PREFIX}{role}", ROLE_GRANT_ACTION),
    )
    for grant in grants:
        if grant.scope == "municipality" or (grant.scope == "school" and grant.school_id is None):
            return True
        if grant.scope == "school" and school_id is not None and grant.school_id == school_id:
            return True
    return False


async def _check_recipient(
    tx: AsyncSession, principal: Principal, person_pk: int, role: str, school_pk: int | None
) -> None:
    """A staff role goes to an employee of the school (or of the municipality), the
    student role to a student enrolled at the school this year: a role held by someone
    with no place there would reach students they have nothing to do with."""
    if role == STUDENT_ROLE:
        condition = exists().where(
            Enrolment.student_id == person_pk,
            Enrolment.school_year_id == principal.current_school_year_id,
            *([Enrolment.school_id == school_pk] if school_pk is not None else []),
        )
        message = "Elevrollen kan bare gis til en elev ved skolen dette skoleåret."
    else:
        condition = exists().where(
            Employment.person_id == person_pk,
            *(
                [or_(Employment.school_id == school_pk, Employment.school_id.is_(None))]
                if school_pk is not None
                else []
            ),
        )
        message = (
            "Rollen kan bare gis til en ansatt ved skolen."
            if school_pk is not None
            else "Rollen kan bare gis til en ansatt i kommunen."
        )
    if not (await tx.execute(select(condition))).scalar():
        raise bad_input(message, field="personId")


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Give a person a role at a school (audited).")
    async def grant_role(self, info: Info, input: GrantRoleInput) -> RoleAssignment:
        principal = info.context.principal
        person_pk = ids.decode_pk(input.person_id, ("Person", "Employee", "Student", "Guardian"))
        # An empty string is a malformed ID, not "the whole municipality" (that is null).
        school_pk = (
            ids.decode_pk(input.school_id, "School") if input.school_id is not None else None
        )
        role = input.role.strip()
        if not role or len(role) > MAX_ROLE_LENGTH:
            raise bad_input("Ukjent rolle.", field="role")
        if role == GUARDIAN_ROLE:
            raise bad_input(
                "Foresatt-rollen følger av folkeregisteret og kan ikke tildeles.", field="role"
            )
        if role in SPECIAL_PERMISSIONS:
            raise bad_input(f"{role!r} er en spesialtilgang, ikke en rolle.", field="role")
        if role not in principal.policy.roles:
            raise bad_input(f"Ukjent rolle {role!r}.", field="role")
        if not _may_grant(principal, role, school_pk):
            raise forbidden("Du kan ikke tildele denne rollen her.")
        async with transaction(info.context.state.sessions) as tx:
            person = await tx.get(Person, person_pk)
            if person is None:
                raise not_found("Personen")
            school = await tx.get(SchoolModel, school_pk) if school_pk else None
            if school_pk and school is None:
                raise not_found("Skolen")
            await _check_recipient(tx, principal, person_pk, role, school_pk)
            duplicate = (
                await tx.execute(
                    select(RoleAssignmentModel.id).where(
                        RoleAssignmentModel.person_id == person_pk,
                        RoleAssignmentModel.role == role,
                        RoleAssignmentModel.school_id.is_(None)
                        if school_pk is None
                        else RoleAssignmentModel.school_id == school_pk,
                    )
                )
            ).first()
            if duplicate:
                raise bad_input("Personen har allerede denne rollen her.", field="role")
            assignment = RoleAssignmentModel(
                person_id=person_pk,
                role=role,
                school_id=school_pk,
                granted_by_id=principal.person_id,
            )
            tx.add(assignment)
            try:
                await tx.flush()
            except IntegrityError:
                raise bad_input("Personen har allerede denne rollen her.", field="role") from None
            await audit.record(
                tx,
                actor_id=principal.person_id,
                action="grant_role",
                resource_type="person",
                resource_id=person_pk,
                detail={"role": role, "school_id": school_pk},
            )
        return RoleAssignment(
            id=strawberry.ID(ids.encode("RoleAssignment", assignment.id)),
            role=role,
            person_name=person.name,
            school=School.of(school) if school else None,
        )

    @strawberry.mutation(description="Take a role away again (audited).")
    async def revoke_role(self, info: Info, id: strawberry.ID) -> RoleAssignment:
        principal = info.context.principal
        pk = ids.decode_pk(id, "RoleAssignment")
        async with transaction(info.context.state.sessions) as tx:
            assignment = await tx.get(RoleAssignmentModel, pk)
            if assignment is None:
                raise not_found("Rolletildelingen")
            if not _may_grant(principal, assignment.role, assignment.school_id):
                raise forbidden("Du kan ikke fjerne denne rollen.")
            person = await tx.get(Person, assignment.person_id)
            school = (
                await tx.get(SchoolModel, assignment.school_id) if assignment.school_id else None
            )
            await tx.delete(assignment)
            await audit.record(
                tx,
                actor_id=principal.person_id,
                action="revoke_role",
                resource_type="person",
                resource_id=assignment.person_id,
                detail={"role": assignment.role, "school_id": assignment.school_id},
            )
        return RoleAssignment(
            id=id,
            role=assignment.role,
            person_name=person.name if person else "",
            school=School.of(school) if school else None,
        )
