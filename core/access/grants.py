"""Who holds which role where: the `g` lines of the Casbin model, read from the database.

A person's grants are their role assignments, their special permissions (each a policy
subject of its own) and, implicitly, the guardian role when the population register gives
them parental responsibility for a child. They are read once per request, in the
statement that checks the bearer token: the same rows Casbin's adapter reads
(core/access/adapter.py), and tests/test_policy.py proves both give the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from sqlalchemy import ColumnElement, bindparam, exists, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.access.policy import Policy
from core.access.vocabulary import GUARDIAN_ROLE
from core.auth.sessions import live_token_person, token_params
from core.models import (
    Guardianship,
    RoleAssignment,
    SchoolYear,
    SessionToken,
    SpecialPermissionAssignment,
)


@dataclass(frozen=True)
class Grant:
    """A role (or special permission) held at one school, or municipality-wide (None)."""

    role: str
    school_id: int | None


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

    @property
    def roles(self) -> list[str]:
        return sorted({g.role for g in self.grants})


# The row of `_grant_rows` that carries the current school year instead of a grant. Not a
# valid role name (roles are lower-case identifiers), so it can never collide with one.
_CURRENT_YEAR = "<current school year>"
# The row of `_token_grant_rows` that carries the token's person (same reasoning).
_PERSON = "<person>"


def _grant_rows(person_id: int | ColumnElement[int]):  # type: ignore[no-untyped-def]
    """One statement for everything a request needs to authorize: the person's role
    assignments, special permissions and implicit guardian role (the `g` lines), plus
    the current school year, which scopes are anchored in. `person_id` may be a scalar
    subquery (the person behind a bearer token)."""
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
    return roles, special, guardian, year


@cache
def _person_grant_rows():  # type: ignore[no-untyped-def]
    """`_grant_rows` for the bound `person_id`, built once."""
    return union_all(*_grant_rows(bindparam("person_id")))


@cache
def _token_grant_rows():  # type: ignore[no-untyped-def]
    """`_grant_rows` for the person behind a live bearer token, plus a row carrying that
    person's id (none when the token is unknown, expired or revoked). Built once and run
    with `token_params`: the check itself happens on every request."""
    person = live_token_person()
    marker = select(literal(_PERSON), SessionToken.person_id).where(person.whereclause)
    return union_all(marker, *_grant_rows(person.scalar_subquery()))


def _grants(rows: list[tuple[str, int | None]]) -> tuple[Grant, ...]:
    return tuple(
        sorted(
            {Grant(role, school_id) for role, school_id in rows if role != _CURRENT_YEAR},
            key=lambda g: (g.role, g.school_id or 0),
        )
    )


async def load_grants(session: AsyncSession, person_id: int) -> tuple[Grant, ...]:
    """Read the person's `g` lines in one statement."""
    return _grants(
        [
            tuple(r)
            for r in (await session.execute(_person_grant_rows(), {"person_id": person_id})).all()
        ]
    )


async def current_school_year_id(session: AsyncSession) -> int | None:
    return (
        await session.execute(select(SchoolYear.id).where(SchoolYear.is_current.is_(True)))
    ).scalar_one_or_none()


async def load_principal(session: AsyncSession, person_id: int, policy: Policy) -> Principal:
    """The person with their grants and the current school year, read in one statement
    (it runs before every request)."""
    rows = [
        tuple(r)
        for r in (await session.execute(_person_grant_rows(), {"person_id": person_id})).all()
    ]
    return _principal(person_id, rows, policy)  # type: ignore[arg-type]


async def principal_for_token(
    session: AsyncSession | AsyncConnection, token: str, policy: Policy, *, demo_mode: bool
) -> Principal | None:
    """The person behind a live (unexpired, unrevoked) bearer token with their grants,
    read in one statement; None for an unknown, expired or revoked token. Nothing is
    cached across requests, so a revocation or role change holds from the next one."""
    rows = [
        tuple(r)
        for r in (
            await session.execute(_token_grant_rows(), token_params(token, demo_mode=demo_mode))
        ).all()
    ]
    people = [person_id for role, person_id in rows if role == _PERSON]
    if not people or people[0] is None:
        return None
    grant_rows = [row for row in rows if row[0] != _PERSON]
    return _principal(people[0], grant_rows, policy)  # type: ignore[arg-type]


def _principal(person_id: int, rows: list[tuple[str, int | None]], policy: Policy) -> Principal:
    years = [school_id for role, school_id in rows if role == _CURRENT_YEAR]
    return Principal(
        person_id=person_id,
        grants=_grants(rows),
        policy=policy,
        current_school_year_id=years[0] if years else None,
    )
