"""Who holds which role where: the `g` lines of the Casbin model, read from the database.

A person's grants are their role assignments, their special permissions (each a policy
subject of its own) and, implicitly, the guardian role when the population register gives
them parental responsibility for a child. They are read once per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import exists, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from core.access.policy import Policy, PolicyLine
from core.access.vocabulary import GUARDIAN_ROLE
from core.models import Guardianship, RoleAssignment, SchoolYear, SpecialPermissionAssignment


@dataclass(frozen=True)
class Grant:
    """A role (or special permission) held at one school, or municipality-wide (None)."""

    role: str
    school_id: int | None

    @property
    def domain(self) -> str:
        return "municipality" if self.school_id is None else f"school:{self.school_id}"

    def as_casbin_line(self, person_id: int) -> str:
        return f"g, person:{person_id}, {self.role}, {self.domain}"


@dataclass(frozen=True)
class ScopedGrant:
    """One way a person may do something: a scope, anchored at the grant's school."""

    scope: str
    school_id: int | None
    role: str


@dataclass
class Principal:
    """The logged-in person with everything authorization needs for one request."""

    person_id: int
    grants: tuple[Grant, ...]
    policy: Policy
    current_school_year_id: int | None
    _cache: dict[tuple[str, str], tuple[ScopedGrant, ...]] = field(default_factory=dict)

    def scopes(self, resource: str, action: str) -> tuple[ScopedGrant, ...]:
        """Every (scope, school) at which this person may do `action` on `resource`."""
        key = (resource, action)
        found = self._cache.get(key)
        if found is None:
            found = tuple(
                ScopedGrant(scope, grant.school_id, grant.role)
                for grant in self.grants
                for scope in sorted(self.policy.scopes(grant.role, resource, action))
            )
            self._cache[key] = found
        return found

    def can(self, resource: str, action: str) -> bool:
        return bool(self.scopes(resource, action))

    def explain(self, resource: str, action: str) -> list[tuple[Grant, PolicyLine]]:
        """The grants and policy lines that allow `action` on `resource`."""
        return [
            (grant, line)
            for grant in self.grants
            for line in self.policy.matching_lines(grant.role, resource, action)
        ]

    @property
    def roles(self) -> list[str]:
        return sorted({g.role for g in self.grants})


# The row of `_grant_rows` that carries the current school year instead of a grant. Not a
# valid role name (roles are lower-case identifiers), so it can never collide with one.
_CURRENT_YEAR = "<current school year>"


def _grant_rows(person_id: int):  # type: ignore[no-untyped-def]
    """One statement for everything a request needs to authorize: the person's role
    assignments, special permissions and implicit guardian role (the `g` lines), plus
    the current school year, which scopes are anchored in."""
    roles = select(RoleAssignment.role, RoleAssignment.school_id).where(
        RoleAssignment.person_id == person_id
    )
    special = select(
        SpecialPermissionAssignment.permission, SpecialPermissionAssignment.school_id
    ).where(SpecialPermissionAssignment.person_id == person_id)
    guardian = select(literal(GUARDIAN_ROLE), literal(None)).where(
        exists().where(
            Guardianship.guardian_id == person_id, Guardianship.parental_responsibility.is_(True)
        )
    )
    year = select(literal(_CURRENT_YEAR), SchoolYear.id).where(SchoolYear.is_current.is_(True))
    return union_all(roles, special, guardian, year)


def _grants(rows: list[tuple[str, int | None]]) -> tuple[Grant, ...]:
    return tuple(
        sorted(
            {Grant(role, school_id) for role, school_id in rows if role != _CURRENT_YEAR},
            key=lambda g: (g.role, g.school_id or 0),
        )
    )


async def load_grants(session: AsyncSession, person_id: int) -> tuple[Grant, ...]:
    """Read the person's `g` lines in one statement."""
    return _grants([tuple(r) for r in (await session.execute(_grant_rows(person_id))).all()])


async def current_school_year_id(session: AsyncSession) -> int | None:
    return (
        await session.execute(select(SchoolYear.id).where(SchoolYear.is_current.is_(True)))
    ).scalar_one_or_none()


async def load_principal(session: AsyncSession, person_id: int, policy: Policy) -> Principal:
    """The person with their grants and the current school year, read in one statement
    (it runs before every request)."""
    rows = [tuple(r) for r in (await session.execute(_grant_rows(person_id))).all()]
    years = [school_id for role, school_id in rows if role == _CURRENT_YEAR]
    return Principal(
        person_id=person_id,
        grants=_grants(rows),  # type: ignore[arg-type]
        policy=policy,
        current_school_year_id=years[0] if years else None,
    )
