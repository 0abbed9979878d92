"""`tavle policy check`: the policy files, and the role assignments in the database
against them."""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy.exc import SQLAlchemyError

from core.access.adapter import PERSON_PREFIX, person_enforcer
from core.access.policy import Policy, PolicyError
from core.access.vocabulary import GUARDIAN_ROLE, SPECIAL_PERMISSIONS
from core.config import Settings
from core.db import create_engine, create_sessionmaker


def check_policy(settings: Settings, *, with_database: bool = True) -> list[str]:
    """Every problem as 'file:line: message'; empty when all is well."""
    try:
        policy = Policy.load(settings.policies_dir)
    except PolicyError as error:
        return [str(p) for p in error.problems]
    problems: list[str] = []
    missing = sorted(SPECIAL_PERMISSIONS - policy.roles)
    if missing:
        problems.append(
            f"{policy.policy_path}:0: special permissions without a p line: {', '.join(missing)}"
        )
    if GUARDIAN_ROLE not in policy.roles:
        problems.append(f"{policy.policy_path}:0: the guardian role {GUARDIAN_ROLE!r} is missing")
    if with_database:
        problems += asyncio.run(_check_assignments(settings, policy))
    return problems


async def _check_assignments(settings: Settings, policy: Policy) -> list[str]:
    """Roles held in the database (as Casbin's adapter reads them) that the policy does
    not define: such a grant would give nothing, silently."""
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            enforcer = await person_enforcer(session, policy, None)
    except SQLAlchemyError as error:
        # The files are what this command checks; an unmigrated or absent database only
        # means there are no assignments to hold against them yet.
        print(
            f"merk: rolletildelingene i databasen ble ikke kontrollert ({type(error).__name__})",
            file=sys.stderr,
        )
        return []
    finally:
        await engine.dispose()
    held = {
        role
        for holder, role, _domain in enforcer.get_named_grouping_policy("g")
        if holder.startswith(PERSON_PREFIX)
    }
    return [
        f"database: role assignments name role {role!r}, which {policy.policy_path} does not define"
        for role in sorted(held - policy.roles)
    ]
