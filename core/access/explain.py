"""`tavle policy explain USER ACTION RESOURCE_ID`: which rule lets a user act on one
record, or why none does."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import exists, select

from core.access import scopes
from core.access.adapter import (
    held_domains,
    person_enforcer,
    person_may,
    roles_at,
    school_of,
    subject,
)
from core.access.grants import Principal, ScopedGrant, load_principal
from core.access.policy import Policy, PolicyLine
from core.config import Settings
from core.db import create_engine, create_sessionmaker
from core.models import Employment, Enrolment, Group, Guardianship, Person, School
from core.schema import ids

RESOURCE_OF_TYPE = {
    "Student": "student",
    "Guardian": "guardian",
    "Employee": "employee",
    "Group": "group",
    "School": "school",
}


class ExplainError(Exception):
    pass


def _parse_resource_id(resource_id: str) -> tuple[str, int]:
    if ":" in resource_id:
        type_name, _, raw = resource_id.partition(":")
        # The same range as a global ID's (database keys are positive 32-bit integers).
        if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= ids.MAX_PK:
            raise ExplainError(f"ugyldig ressurs-ID {resource_id!r}")
        return type_name, int(raw)
    try:
        return ids.decode(resource_id)
    except Exception:
        raise ExplainError(f"ugyldig ressurs-ID {resource_id!r}") from None


def _condition(principal: Principal, resource: str, grant: ScopedGrant, pk: int):  # type: ignore[no-untyped-def]
    match resource:
        case "student":
            return exists().where(
                Enrolment.student_id == pk,
                Enrolment.school_year_id == principal.current_school_year_id,
                scopes.students(principal, [grant], Enrolment.student_id, Enrolment.school_id),
            )
        case "guardian":
            return exists().where(
                Person.id == pk,
                Person.id.in_(
                    select(Guardianship.guardian_id).where(
                        Guardianship.parental_responsibility.is_(True)
                    )
                ),
                scopes.guardians(principal, [grant], Person.id),
            )
        case "employee":
            return exists().where(
                Person.id == pk,
                Person.id.in_(select(Employment.person_id)),
                scopes.employees(principal, [grant], Person.id),
            )
        case "group":
            return exists().where(Group.id == pk, scopes.groups(principal, [grant]))
        case _:
            return exists().where(School.id == pk, scopes.schools(principal, [grant], School.id))


async def _matching_lines(
    enforcer: Any, policy: Policy, person_id: int, resource: str, action: str
) -> list[tuple[str, str, PolicyLine]]:
    """(domain, held role, p line) for every way Casbin lets the person do `action` on
    `resource`: at each domain they hold roles at where the m2 matcher allows it, the p
    lines of the roles they hold there, or inherit (g2) from one they hold."""
    held = enforcer.get_filtered_named_grouping_policy("g", 0, subject(person_id))
    found = []
    for domain_name in held_domains(enforcer, person_id):
        if not person_may(enforcer, person_id, domain_name, resource, action):
            continue
        reachable = set(await roles_at(enforcer, person_id, domain_name))
        for _, held_role, held_domain in held:
            if held_domain != domain_name:
                continue
            inherited = set(policy.roles_of(held_role)) & reachable
            for line in policy.lines:
                if line.kind == "p" and line.values[:3] in {
                    (role, resource, action) for role in inherited
                }:
                    found.append((domain_name, held_role, line))
    return found


async def _exists(session: Any, resource: str, pk: int) -> bool:
    """Whether the record is there at all: a denial then names the real reason."""
    match resource:
        case "student":
            found = exists().where(Enrolment.student_id == pk)
        case "guardian":
            found = exists().where(
                Guardianship.guardian_id == pk, Guardianship.parental_responsibility.is_(True)
            )
        case "employee":
            found = exists().where(Employment.person_id == pk)
        case "group":
            found = exists().where(Group.id == pk)
        case _:
            found = exists().where(School.id == pk)
    return bool((await session.execute(select(found))).scalar())


async def _explain(settings: Settings, username: str, action: str, resource_id: str):  # type: ignore[no-untyped-def]
    type_name, pk = _parse_resource_id(resource_id)
    resource = RESOURCE_OF_TYPE.get(type_name)
    if resource is None:
        raise ExplainError(
            f"kan ikke forklare tilgang til {type_name!r}; bruk {', '.join(RESOURCE_OF_TYPE)}"
        )
    policy = Policy.load(settings.policies_dir)
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            person = (
                await session.execute(select(Person).where(Person.username == username))
            ).scalar_one_or_none()
            if person is None:
                raise ExplainError(f"ingen bruker heter {username!r}")
            principal = await load_principal(session, person.id, policy)
            # Casbin decides, over the role assignments its adapter reads from the
            # database; the scope of each matching line is then tried on the record.
            enforcer = await person_enforcer(session, policy, person.id)
            held = enforcer.get_filtered_named_grouping_policy("g", 0, subject(person.id))
            lines = [f"{username} ({subject(person.id)}) har:"]
            lines += [f"  g, {', '.join(line)}" for line in sorted(held)] or ["  ingen roller"]
            matching = await _matching_lines(enforcer, policy, person.id, resource, action)
            if not matching:
                lines.append(
                    f"NEKTET: ingen av rollene gir {action!r} på {resource!r} "
                    f"i {policy.policy_path}"
                )
                return False, lines
            for domain_name, role, line in matching:
                scoped = ScopedGrant(line.values[3], school_of(domain_name), role)
                inside = (
                    await session.execute(select(_condition(principal, resource, scoped, pk)))
                ).scalar()
                if inside:
                    inheritance = (
                        "" if role == line.values[0] else f"; {role} arver {line.values[0]}"
                    )
                    lines.append(
                        f"TILLATT av {line.file.name}:{line.line}: {line}  "
                        f"(via g, {subject(person.id)}, {role}, {domain_name}{inheritance})"
                    )
                    return True, lines
            if not await _exists(session, resource, pk):
                lines.append(f"NEKTET: {type_name}:{pk} finnes ikke")
                return False, lines
            tried = ", ".join(
                f"{line.file.name}:{line.line} ({line.values[3]})" for _, _, line in matching
            )
            lines.append(
                f"NEKTET: {type_name}:{pk} er utenfor omfanget til reglene som gir {action!r} "
                f"på {resource!r}: {tried}"
            )
            return False, lines
    finally:
        await engine.dispose()


def explain(
    settings: Settings, username: str, action: str, resource_id: str
) -> tuple[bool, list[str]]:
    """(allowed, lines to print)."""
    from core.cli import CliError

    try:
        return asyncio.run(_explain(settings, username, action, resource_id))
    except ExplainError as error:
        raise CliError(str(error)) from None
