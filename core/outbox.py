"""The durable outbox and its worker.

Every delivery row is a job. A worker claims due jobs (on PostgreSQL with
`FOR UPDATE SKIP LOCKED`, so any number of workers never take the same one), calls the
channel plugin outside any transaction, and records the result. Failures the channel
calls temporary are retried with exponential backoff until `max_attempts`; then the
delivery is failed for good. A claim carries a lease: a worker that dies mid-send leaves
the job to be claimed again after the lease, and the stable reference
("tavle-delivery-<id>") lets the channel's peer recognise the retry.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pluggy
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import undefer

from core.channels import (
    Attachment,
    Delivery,
    PermanentDeliveryError,
    Receipt,
    Recipient,
    Sender,
    StatusUpdate,
    TemporaryDeliveryError,
)
from core.models import Delivery as DeliveryRow
from core.models import DeliveryStatus, Document, Municipality, Person, School
from core.models.base import utcnow
from core.plugins import channels as loaded_channels
from core.plugins import plugin_manager

log = logging.getLogger("tavle.outbox")

FINAL_STATUSES = {
    DeliveryStatus.DELIVERED,
    DeliveryStatus.READ,
    DeliveryStatus.PRINTED,
    DeliveryStatus.FAILED,
}


@dataclass(frozen=True)
class OutboxSettings:
    batch_size: int = 20
    max_attempts: int = 6
    backoff_seconds: float = 30.0
    max_backoff_seconds: float = 3600.0
    lease_seconds: float = 300.0
    poll_interval_seconds: float = 2.0


def reference(delivery_id: int) -> str:
    return f"tavle-delivery-{delivery_id}"


def backoff(attempt: int, settings: OutboxSettings) -> timedelta:
    """30 s, 60 s, 120 s ... capped: exponential, so a peer that is down is not hammered."""
    seconds = settings.backoff_seconds * (2 ** max(0, attempt - 1))
    return timedelta(seconds=min(seconds, settings.max_backoff_seconds))


async def _await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def claim(sessions: async_sessionmaker[AsyncSession], settings: OutboxSettings) -> list[int]:
    """Take up to `batch_size` due jobs: queued and due, or claimed with an expired lease."""
    now = utcnow()
    async with sessions() as session, session.begin():
        due = (
            select(DeliveryRow.id)
            .where(
                or_(
                    (DeliveryRow.status == DeliveryStatus.QUEUED)
                    & (DeliveryRow.next_attempt_at <= now),
                    (DeliveryRow.status == DeliveryStatus.SENDING)
                    & (DeliveryRow.lease_expires_at < now),
                )
            )
            .order_by(DeliveryRow.next_attempt_at, DeliveryRow.id)
            .limit(settings.batch_size)
        )
        if session.bind.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = list((await session.execute(due)).scalars())
        if ids:
            await session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id.in_(ids))
                .values(
                    status=DeliveryStatus.SENDING,
                    attempts=DeliveryRow.attempts + 1,
                    lease_expires_at=now + timedelta(seconds=settings.lease_seconds),
                    updated_at=now,
                )
            )
    return ids


async def load_delivery(session: AsyncSession, delivery_id: int) -> tuple[DeliveryRow, Delivery]:
    """The row and the plain `Delivery` a plugin gets: document, PDF, recipient, sender."""
    row = await session.get(DeliveryRow, delivery_id)
    if row is None:
        raise LookupError(delivery_id)
    person = await session.get(Person, row.recipient_id)
    school = await session.get(School, row.school_id)
    municipality = await session.get(Municipality, school.municipality_id) if school else None
    assert person is not None and school is not None and municipality is not None
    document: Document | None = None
    attachments: tuple[Attachment, ...] = ()
    subject, body, signed_by = "", "", None
    sensitive = restricted = False
    sender_id = None
    if row.document_id is not None:
        document = (
            await session.execute(
                select(Document)
                .where(Document.id == row.document_id)
                .options(undefer(Document.pdf))
            )
        ).scalar_one()
        signer = (
            await session.get(Person, document.finalized_by_id)
            if document.finalized_by_id
            else None
        )
        signed_by = signer.name if signer else None
        sender_id = document.finalized_by_id
        subject = document.title
        body = (
            f"{school.name} har sendt deg dokumentet «{document.title}». "
            "Dokumentet ligger vedlagt og kan også leses når du logger inn i Tavle."
        )
        sensitive, restricted = document.sensitive, document.restricted
        if document.pdf:
            attachments = (
                Attachment(
                    filename=f"{document.doctype_key}-{document.id}.pdf",
                    content_type="application/pdf",
                    content=document.pdf,
                ),
            )
    delivery = Delivery(
        id=row.id,
        reference=reference(row.id),
        channel=row.channel,
        attempt=row.attempts,
        subject=subject,
        body=body,
        recipient=Recipient(
            person_id=person.id,
            name=person.name,
            national_id=person.national_id,
            email=person.email,
            mobile=person.mobile,
            street_address=person.street_address,
            postal_code=person.postal_code,
            postal_town=person.postal_town,
        ),
        sender=Sender(
            school_id=school.id,
            school_name=school.name,
            organisation_number=school.organisation_number,
            municipality_name=municipality.name,
            municipality_organisation_number=municipality.organisation_number,
            signed_by=signed_by,
        ),
        sensitive=sensitive,
        restricted=restricted,
        doctype=document.doctype_key if document else None,
        document_id=document.id if document else None,
        attachments=attachments,
        external_id=row.external_id,
        options={**(row.options or {}), "sender_id": sender_id},
    )
    return row, delivery


async def _call_deliver(manager: pluggy.PluginManager, delivery: Delivery, sessions) -> Receipt:  # type: ignore[no-untyped-def]
    answers = [
        await _await(result)
        for result in manager.hook.deliver(delivery=delivery, database=sessions)
    ]
    receipts = [a for a in answers if a is not None]
    if not receipts:
        raise PermanentDeliveryError(f"Ingen utvidelse leverer kanalen {delivery.channel!r}.")
    return receipts[0]


async def process(
    sessions: async_sessionmaker[AsyncSession],
    delivery_id: int,
    settings: OutboxSettings,
    manager: pluggy.PluginManager | None = None,
) -> DeliveryStatus:
    """Carry out one claimed delivery and record what happened."""
    manager = manager or plugin_manager()
    async with sessions() as session:
        row, delivery = await load_delivery(session, delivery_id)
        attempts = row.attempts
    status: DeliveryStatus
    values: dict[str, Any] = {"lease_expires_at": None, "updated_at": utcnow()}
    try:
        receipt = await _call_deliver(manager, delivery, sessions)
    except TemporaryDeliveryError as error:
        if attempts >= settings.max_attempts:
            status = DeliveryStatus.FAILED
            values.update(finished_at=utcnow())
        else:
            status = DeliveryStatus.QUEUED
            values.update(next_attempt_at=utcnow() + backoff(attempts, settings))
        values.update(last_error=str(error), receipt={"error": str(error), **error.detail})
        log.warning("delivery %s attempt %s failed: %s", delivery_id, attempts, error)
    except PermanentDeliveryError as error:
        status = DeliveryStatus.FAILED
        values.update(
            last_error=str(error),
            receipt={"error": str(error), **error.detail},
            finished_at=utcnow(),
        )
    except Exception as error:  # an unexpected plugin bug is retried like a peer failure
        log.exception(
            "delivery %s: unexpected error in the %s plugin", delivery_id, delivery.channel
        )
        if attempts >= settings.max_attempts:
            status = DeliveryStatus.FAILED
            values.update(finished_at=utcnow())
        else:
            status = DeliveryStatus.QUEUED
            values.update(next_attempt_at=utcnow() + backoff(attempts, settings))
        values.update(last_error=f"{type(error).__name__}: {error}")
    else:
        status = DeliveryStatus(receipt.status)
        values.update(
            external_id=receipt.external_id,
            units=receipt.units,
            cost=Decimal(receipt.cost),
            receipt={"receipt": receipt.detail},
            last_error=None,
        )
        if status in FINAL_STATUSES:
            values.update(finished_at=utcnow())
    async with sessions() as session, session.begin():
        await session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id == delivery_id, DeliveryRow.status == DeliveryStatus.SENDING)
            .values(status=status, **values)
        )
    return status


async def run_once(
    sessions: async_sessionmaker[AsyncSession],
    settings: OutboxSettings | None = None,
    manager: pluggy.PluginManager | None = None,
) -> int:
    """Claim and process one batch; returns how many deliveries were processed."""
    settings = settings or OutboxSettings()
    ids = await claim(sessions, settings)
    for delivery_id in ids:
        await process(sessions, delivery_id, settings, manager)
    return len(ids)


async def drain(
    sessions: async_sessionmaker[AsyncSession],
    settings: OutboxSettings | None = None,
    manager: pluggy.PluginManager | None = None,
) -> int:
    """Process batches until nothing is due (tests and `tavle worker --once`)."""
    total = 0
    while processed := await run_once(sessions, settings, manager):
        total += processed
    return total


async def poll_statuses(
    sessions: async_sessionmaker[AsyncSession],
    manager: pluggy.PluginManager | None = None,
    limit: int = 100,
) -> int:
    """Ask channels that report status about deliveries still in "sent"."""
    manager = manager or plugin_manager()
    reporting = [name for name, info in loaded_channels(manager).items() if info.reports_status]
    if not reporting:
        return 0
    async with sessions() as session:
        ids = list(
            (
                await session.execute(
                    select(DeliveryRow.id)
                    .where(
                        DeliveryRow.status == DeliveryStatus.SENT,
                        DeliveryRow.channel.in_(reporting),
                    )
                    .order_by(DeliveryRow.updated_at)
                    .limit(limit)
                )
            ).scalars()
        )
    changed = 0
    for delivery_id in ids:
        async with sessions() as session:
            row, delivery = await load_delivery(session, delivery_id)
        updates = [await _await(r) for r in manager.hook.delivery_status(delivery=delivery)]
        update_found = next((u for u in updates if u is not None), None)
        if update_found is not None and await _apply_status(sessions, row.id, update_found):
            changed += 1
    return changed


async def _apply_status(
    sessions: async_sessionmaker[AsyncSession], delivery_id: int, status_update: StatusUpdate
) -> bool:
    new_status = DeliveryStatus(status_update.status)
    async with sessions() as session, session.begin():
        row = await session.get(DeliveryRow, delivery_id)
        if row is None or row.status == new_status:
            return False
        row.status = new_status
        row.updated_at = utcnow()
        row.receipt = {**(row.receipt or {}), "status": status_update.detail}
        if new_status in FINAL_STATUSES:
            row.finished_at = utcnow()
    return True


async def record_status_update(
    state: Any, *, channel: str, external_id: str, update: StatusUpdate
) -> bool:
    """A delivery report from a channel's callback. False when no delivery matches."""
    sessions = state.sessions
    async with sessions() as session:
        delivery_id = (
            await session.execute(
                select(DeliveryRow.id).where(
                    DeliveryRow.channel == channel, DeliveryRow.external_id == external_id
                )
            )
        ).scalar_one_or_none()
    if delivery_id is None:
        return False
    await _apply_status(sessions, delivery_id, update)
    return True


async def run_forever(
    sessions: async_sessionmaker[AsyncSession],
    settings: OutboxSettings | None = None,
    *,
    status_poll_every: float = 60.0,
    stop: asyncio.Event | None = None,
) -> None:
    """The `tavle worker` loop: process due jobs, poll statuses now and then, sleep when
    there is nothing to do."""
    settings = settings or OutboxSettings()
    stop = stop or asyncio.Event()
    last_poll = 0.0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            processed = await run_once(sessions, settings)
            if loop.time() - last_poll >= status_poll_every:
                await poll_statuses(sessions)
                last_poll = loop.time()
        except Exception:  # the database may be briefly away; the loop must survive it
            log.exception("outbox worker iteration failed")
            processed = 0
        if not processed:
            try:
                await asyncio.wait_for(stop.wait(), timeout=settings.poll_interval_seconds)
            except TimeoutError:
                pass


__all__: Sequence[str] = [
    "OutboxSettings",
    "claim",
    "drain",
    "poll_statuses",
    "process",
    "record_status_update",
    "run_forever",
    "run_once",
]
