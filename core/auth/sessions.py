"""Session tokens: random bearer tokens whose SHA-256 is stored; they expire and can be
revoked. Every issued token is an audited login."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from functools import cache

from sqlalchemy import bindparam, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from core import audit
from core.models import Person, SessionToken
from core.models.base import utcnow


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    session: AsyncSession,
    person: Person,
    *,
    method: str,
    ttl_seconds: int,
    acr: str | None = None,
) -> str:
    """Create a session for `person` and audit the login. The caller commits."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        SessionToken(
            token_hash=hash_token(token),
            person_id=person.id,
            method=method,
            acr=acr,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    if person.activated_at is None:
        person.activated_at = now
    await audit.record(
        session,
        actor_id=person.id,
        action="login",
        resource_type="person",
        resource_id=person.id,
        detail={"method": method, "acr": acr},
    )
    return token


# Logins without a password or two-factor: /auth/demo-token and `tavle token`. Their
# tokens hold only while demo mode is on, also those issued before a restart without it.
PASSWORDLESS_METHODS = ("demo", "cli")


@cache
def live_token_person() -> Select[tuple[int]]:
    """The `person_id` behind a live (unexpired, unrevoked) token: no row when there is
    none. Usable as a scalar subquery, so the token check can share a statement. Built
    once (expression building costs more than running it); bind `token_params`."""
    return select(SessionToken.person_id).where(
        SessionToken.token_hash == bindparam("token_hash"),
        SessionToken.revoked_at.is_(None),
        SessionToken.expires_at > bindparam("now"),
        or_(
            bindparam("demo_mode"),
            not_(SessionToken.method.in_(PASSWORDLESS_METHODS)),
        ),
    )


def token_params(token: str, *, demo_mode: bool) -> dict[str, object]:
    """The parameters of `live_token_person`: checked now, on every request."""
    return {"token_hash": hash_token(token), "now": utcnow(), "demo_mode": demo_mode}


async def person_id_for_token(session: AsyncSession, token: str, *, demo_mode: bool) -> int | None:
    """The person behind a live (unexpired, unrevoked) token, or None."""
    row = (
        await session.execute(live_token_person(), token_params(token, demo_mode=demo_mode))
    ).first()
    return None if row is None else row[0]


async def revoke_token(session: AsyncSession, token: str) -> bool:
    """Log out: the token stops working at once. Returns False for an unknown token."""
    result = await session.execute(
        update(SessionToken)
        .where(SessionToken.token_hash == hash_token(token), SessionToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(SessionToken.person_id)
    )
    person_id = result.scalar_one_or_none()
    if person_id is None:
        return False
    await audit.record(
        session, actor_id=person_id, action="logout", resource_type="person", resource_id=person_id
    )
    return True
