"""Writing audit events. Every login, mutation and read of a restricted field goes here,
in the same transaction as the work it describes, so the trail and the data never disagree."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import AuditEvent
from core.models.base import utcnow

# Built once; a plain table insert (the ORM's bulk insert machinery did per-row work
# here for nothing: the events are never loaded back as objects in the same session).
_INSERT_EVENTS = insert(AuditEvent.__table__)


async def record(
    session: AsyncSession,
    *,
    actor_id: int | None,
    action: str,
    resource_type: str | None = None,
    resource_id: str | int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await record_many(
        session,
        [
            {
                "actor_id": actor_id,
                "action": action,
                "resource_type": resource_type,
                "resource_id": None if resource_id is None else str(resource_id),
                "detail": detail or {},
            }
        ],
    )


async def record_many(session: AsyncSession, events: list[dict[str, Any]]) -> None:
    """Insert several events in one statement (field reads of a whole page, for example)."""
    if not events:
        return
    now = utcnow()
    rows = [
        {
            "occurred_at": now,
            "actor_id": e.get("actor_id"),
            "action": e["action"],
            "resource_type": e.get("resource_type"),
            "resource_id": None if e.get("resource_id") is None else str(e["resource_id"]),
            "detail": e.get("detail") or {},
        }
        for e in events
    ]
    await session.execute(_INSERT_EVENTS, rows)
