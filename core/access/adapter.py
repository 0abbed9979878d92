"""Casbin's view of who holds which role where, read from the database.

`RoleAssignmentAdapter` is a Casbin adapter: it loads the policy files' `p` and `g2`
lines (already validated, core/access/policy.py) and, from the database, the `g` lines
`g, person:<id>, <role>, <domain>`: role assignments, special permissions, and the
guardian role that parental responsibility gives. A domain is `school:<id>` or
`municipality`. Casbin then answers person-level questions with the model's `m2`
matcher: may this person do ACTION on RESOURCE at this domain, through which roles?

Requests do not build an enforcer: Casbin's per-enforcer set-up costs milliseconds. A
request reads the same `g` rows in the statement that checks its token
(core/access/grants.py) and asks the role-level matcher `m` for each grant's scopes;
one person's rows reach this adapter through that module's statement too.
tests/test_policy.py proves the two agree for every persona, resource and action.
`tavle policy explain` and `tavle policy check` use this adapter.

The adapter is read-only: roles are granted through GraphQL (grantRole), which checks
who may grant what and writes an audit event, never through Casbin's management API.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import casbin
from casbin.persist.adapters.asyncio import AsyncAdapter, AsyncFilteredAdapter
from casbin.util import key_match
from sqlalchemy import Integer, Select, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from core.access.grants import load_grants
from core.access.policy import Policy
from core.access.vocabulary import GUARDIAN_ROLE
from core.models import Guardianship, RoleAssignment, SpecialPermissionAssignment

# Role hierarchy lines are loaded into `g` too, in this domain pattern, so that `m2`
# follows them at every school (Casbin's domain matching; `g2` serves the role-level `m`).
EVERY_DOMAIN = "*"
MUNICIPALITY_DOMAIN = "municipality"
PERSON_PREFIX = "person:"


def subject(person_id: int) -> str:
    return f"{PERSON_PREFIX}{person_id}"


def domain(school_id: int | None) -> str:
    return MUNICIPALITY_DOMAIN if school_id is None else f"school:{school_id}"


def school_of(domain_name: str) -> int | None:
    return None if domain_name == MUNICIPALITY_DOMAIN else int(domain_name.split(":", 1)[1])


@dataclass(frozen=True)
class PersonFilter:
    """Load the `g` lines of one person only (Casbin's filtered policy)."""

    person_id: int


def _everyones_grants() -> Select[Any]:
    """(person, role, school) of every grant in the municipality. One person's are read
    by core/access/grants.py, with the statement every request uses."""
    roles = select(RoleAssignment.person_id, RoleAssignment.role, RoleAssignment.school_id)
    special = select(
        SpecialPermissionAssignment.person_id,
        SpecialPermissionAssignment.permission,
        SpecialPermissionAssignment.school_id,
    )
    guardians = (
        # The school typed: DISTINCT makes PostgreSQL settle an untyped NULL as text.
        select(Guardianship.guardian_id, literal(GUARDIAN_ROLE), literal(None, Integer))
        .where(Guardianship.parental_responsibility.is_(True))
        .distinct()
    )
    return union_all(roles, special, guardians)  # type: ignore[return-value]


class RoleAssignmentAdapter(AsyncAdapter, AsyncFilteredAdapter):  # type: ignore[misc]
    """The policy files' lines and the database's role assignments, for Casbin."""

    def __init__(self, session: AsyncSession, policy: Policy):
        self._session = session
        self._policy = policy
        self._filtered = False

    async def load_policy(self, model: Any) -> None:
        """Every person's `g` lines (for `tavle policy check`)."""
        self._filtered = False
        await self._load(model, None)

    async def load_filtered_policy(self, model: Any, filter: PersonFilter) -> None:
        """One person's `g` lines (for `tavle policy explain`)."""
        self._filtered = True
        await self._load(model, filter.person_id)

    async def is_filtered(self) -> bool:
        return self._filtered

    async def _load(self, model: Any, person_id: int | None) -> None:
        for line in self._policy.lines:
            if line.kind == "p":
                model.add_policy("p", "p", list(line.values))
            else:
                model.add_policy("g", "g2", list(line.values))
                model.add_policy("g", "g", [*line.values, EVERY_DOMAIN])
        if person_id is None:
            rows = [tuple(row) for row in await self._session.execute(_everyones_grants())]
        else:
            # The very rows a request of this person is authorized by.
            held = await load_grants(self._session, person_id)
            rows = [(person_id, grant.role, grant.school_id) for grant in held]
        for holder, role, school_id in rows:
            model.add_policy("g", "g", [subject(holder), role, domain(school_id)])

    async def save_policy(self, model: Any) -> bool:
        raise _read_only()

    async def add_policy(self, sec: str, ptype: str, rule: list[str]) -> bool:
        raise _read_only()

    async def remove_policy(self, sec: str, ptype: str, rule: list[str]) -> bool:
        raise _read_only()

    async def remove_filtered_policy(
        self, sec: str, ptype: str, field_index: int, *field_values: str
    ) -> bool:
        raise _read_only()


def _read_only() -> NotImplementedError:
    return NotImplementedError(
        "role assignments are granted with the grantRole mutation (checked and audited), "
        "not through Casbin"
    )


async def person_enforcer(
    session: AsyncSession, policy: Policy, person_id: int | None
) -> casbin.AsyncEnforcer:
    """An enforcer over the policy files and the database's role assignments: of one
    person (`person_id`), or of everyone (None)."""
    enforcer = casbin.AsyncEnforcer(
        casbin.Enforcer.new_model(text=policy.model_path.read_text(encoding="utf-8")),
        RoleAssignmentAdapter(session, policy),
    )
    enforcer.add_named_domain_matching_func("g", key_match)
    if person_id is None:
        await enforcer.load_policy()
    else:
        await enforcer.load_filtered_policy(PersonFilter(person_id))
    return enforcer


def held_domains(enforcer: casbin.AsyncEnforcer, person_id: int) -> list[str]:
    """The domains at which the person holds some role, as Casbin has loaded them."""
    lines = enforcer.get_filtered_named_grouping_policy("g", 0, subject(person_id))
    return sorted({line[2] for line in lines})


async def roles_at(enforcer: casbin.AsyncEnforcer, person_id: int, domain_name: str) -> list[str]:
    """The roles the person holds at the domain, inherited ones included."""
    return list(await enforcer.get_implicit_roles_for_user(subject(person_id), domain_name))


def person_may(
    enforcer: casbin.AsyncEnforcer, person_id: int, domain_name: str, resource: str, action: str
) -> bool:
    """Casbin's person-level answer (matcher m2)."""
    context = enforcer.new_enforce_context("2")
    # m2 matches the one `p` section and effect; only its request and matcher are its own.
    context.ptype, context.etype = "p", "e"
    return bool(enforcer.enforce(context, subject(person_id), domain_name, resource, action))


async def scopes_at(
    enforcer: casbin.AsyncEnforcer,
    person_id: int,
    resources: Iterable[tuple[str, str]],
) -> set[tuple[str, str, str, int | None]]:
    """(resource, action, scope, school) for every way the person may act, from Casbin
    alone: the domains they hold roles at, m2's decision, and the p lines of the roles
    they hold there."""
    found: set[tuple[str, str, str, int | None]] = set()
    lines = enforcer.get_policy()
    for domain_name in held_domains(enforcer, person_id):
        roles = set(await roles_at(enforcer, person_id, domain_name))
        for resource, action in resources:
            if not person_may(enforcer, person_id, domain_name, resource, action):
                continue
            for role, obj, act, scope in lines:
                if role in roles and (obj, act) == (resource, action):
                    found.add((resource, action, scope, school_of(domain_name)))
    return found
