"""The durable outbox and its worker.

Every delivery row is a job. A worker claims due jobs (on PostgreSQL with
`FOR UPDATE SKIP LOCKED`, so any number of workers never take the same one), calls the
channel plugin outside any transaction, and records the result. Failures the channel
calls temporary are retried with exponential backoff until `max_attempts`; then the
delivery is failed for good. A claim carries a lease, renewed just before each send: a
worker that dies mid-send leaves the job to be claimed again after the lease, a worker
whose claim was taken over does not send at all, and the stable reference
("tavle-delivery-<id>") lets the channel's peer recognise the retry.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pluggy
from sqlalchemy import bindparam, or_, select, update
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
from core.messages.delivery import message_content
from core.models import Delivery as DeliveryRow
from core.models import DeliveryStatus, Document, Message, Municipality, Person, School
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
# How far a status may have come after the peer accepted it: a later report never moves a
# delivery back (a status poll answering "delivered" after the recipient read it).
_PROGRESS = {
    DeliveryStatus.SENT: 0,
    DeliveryStatus.DELIVERED: 1,
    DeliveryStatus.PRINTED: 1,
    DeliveryStatus.READ: 2,
    DeliveryStatus.FAILED: 3,
}
# Statuses that may still change by a report or a poll (a printed or delivered letter may
# still be read), and for how long after the last change polling goes on.
POLLED_STATUSES = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.PRINTED)
POLL_WINDOW = timedelta(days=14)


@dataclass(frozen=True)
class OutboxSettings:
    # 50 per claim: the batch's bookkeeping (claim, load, record) is a handful of
    # statements whatever its size, and an emergency SMS is thousands of jobs.
    batch_size: int = 50
    max_attempts: int = 6
    backoff_seconds: float = 30.0
    max_backoff_seconds: float = 3600.0
    lease_seconds: float = 300.0
    poll_interval_seconds: float = 2.0
    # Channel calls in flight at once within a batch (see `process_batch`). A few hide
    # the round trip; many only add client overhead (measured: 4 beat 10 against the
    # SMS gateway, bench/emergency_sms.py).
    concurrency: int = 4


class _MainText(HTMLParser):
    """The text inside <main> of a rendered letter, one paragraph per block element."""

    BLOCKS = frozenset(
        {"p", "div", "li", "tr", "h1", "h2", "h3", "h4", "ul", "ol", "table", "br", "section"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.paragraphs: list[str] = []
        self.current: list[str] = []

    def _flush(self) -> None:
        line = " ".join("".join(self.current).split())
        if line:
            self.paragraphs.append(line)
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "main":
            self.depth += 1
        elif self.depth and tag in self.BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == "main" and self.depth:
            self._flush()
            self.depth -= 1
        elif self.depth and tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.current.append(data)


def main_text(html: str | None) -> str:
    """The plain text of a rendered document's <main> element (its content block)."""
    if not html:
        return ""
    parser = _MainText()
    parser.feed(html)
    parser.close()
    parser._flush()
    return "\n\n".join(parser.paragraphs)


def reference(delivery_id: int) -> str:
    return f"tavle-delivery-{delivery_id}"


def backoff(attempt: int, settings: OutboxSettings) -> timedelta:
    """30 s, 60 s, 120 s ... capped: exponential, so a peer that is down is not hammered."""
    seconds = settings.backoff_seconds * (2 ** max(0, attempt - 1))
    return timedelta(seconds=min(seconds, settings.max_backoff_seconds))


async def _await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@dataclass(frozen=True)
class Claimed:
    """A job this worker holds: `attempt` is the attempt number the claim gave it, and is
    the fencing token when the result is written (see `process`)."""

    id: int
    attempt: int
    # When the claim's lease runs out (None: unknown, e.g. a caller's own claim).
    leased_until: datetime | None = None


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    settings: OutboxSettings,
    *,
    channels: Collection[str] | None = None,
    only: Collection[int] | None = None,
) -> list[Claimed]:
    """Take up to `batch_size` due jobs: queued and due, or claimed with an expired lease.

    `channels` limits the worker to some channels (`tavle worker --channel`), `only` to
    some deliveries (tests and benchmarks that share a database with other work).
    """
    now = utcnow()
    async with sessions() as session, session.begin():
        due = (
            select(DeliveryRow.id, DeliveryRow.attempts)
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
        if channels is not None:
            due = due.where(DeliveryRow.channel.in_(list(channels)))
        if only is not None:
            due = due.where(DeliveryRow.id.in_(list(only)))
        if session.bind.dialect.name == "postgresql":
            # Rows another worker has locked are skipped, not waited for: concurrent
            # workers each get disjoint batches, and the lock lasts until the claim
            # below commits, so no row is ever claimed by two of them.
            due = due.with_for_update(skip_locked=True)
        rows = list((await session.execute(due)).all())
        ids = [row.id for row in rows]
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
    until = now + timedelta(seconds=settings.lease_seconds)
    return [Claimed(row.id, row.attempts + 1, until) for row in rows]


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
    subject, body, text, signed_by = "", "", "", None
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
        text = main_text(document.html)
        notice = (
            f"{school.name} har sendt deg dokumentet «{document.title}». "
            "Dokumentet ligger vedlagt og kan også leses når du logger inn i Tavle."
        )
        # A sensitive or restricted letter's words stay inside the letter (it travels
        # encrypted by SvarUt); only the notice is plain text.
        body = (
            notice
            if document.sensitive or document.restricted or not text
            else (f"{text}\n\n{notice}")
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
    elif row.message_id is not None:
        content = await message_content(
            session, row.message_id, channel=row.channel, school_name=school.name
        )
        subject, body, attachments = content.subject, content.body, content.attachments
        sender_id, sensitive, text = content.sender_id, content.sensitive, content.text
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
        text="" if sensitive or restricted else text,
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


async def _attempt(
    manager: pluggy.PluginManager, delivery: Delivery, sessions: Any
) -> tuple[Receipt | None, Exception | None]:
    """Call the channel once: its receipt, or the failure to judge.

    A last check comes first, at the moment of sending: sensitive content on a channel
    not fit for it, or a document deleted since the delivery was queued (deleting stops
    queued deliveries, not one a worker has already claimed), fails for good instead of
    going out. Sending and the doctype loader refuse both earlier; this is the backstop."""
    try:
        if delivery.sensitive:
            info = loaded_channels(manager).get(delivery.channel)
            if info is not None and not info.may_carry_sensitive:
                raise PermanentDeliveryError(
                    "Sensitive personopplysninger kan bare sendes med SvarUt, ikke med "
                    f"kanalen {delivery.channel!r}."
                )
        if delivery.document_id is not None:
            async with sessions() as session:
                deleted_at = (
                    await session.execute(
                        select(Document.deleted_at).where(Document.id == delivery.document_id)
                    )
                ).scalar()
            if deleted_at is not None:
                raise PermanentDeliveryError("Dokumentet ble slettet før det ble sendt.")
        return await _call_deliver(manager, delivery, sessions), None
    except Exception as error:  # judged by `_judge`, with the time the attempt ended
        return None, error


def _judge(
    delivery: Delivery,
    attempts: int,
    receipt: Receipt | None,
    failure: Exception | None,
    settings: OutboxSettings,
) -> tuple[DeliveryStatus, dict[str, Any]]:
    """The status and column values one attempt leads to."""
    now = utcnow()
    status: DeliveryStatus
    values: dict[str, Any] = {"lease_expires_at": None, "updated_at": now}
    if receipt is not None:
        status = DeliveryStatus(receipt.status)
        values.update(
            external_id=receipt.external_id,
            units=receipt.units,
            cost=Decimal(receipt.cost),
            receipt={"receipt": receipt.detail},
            last_error=None,
        )
    elif isinstance(failure, PermanentDeliveryError):
        status = DeliveryStatus.FAILED
        values.update(last_error=str(failure), receipt={"error": str(failure), **failure.detail})
    else:
        # A temporary failure, or an unexpected error in the plugin (retried the same
        # way: the peer may have caused it), until the attempts run out.
        if isinstance(failure, TemporaryDeliveryError):
            message, detail = str(failure), failure.detail
            log.warning("delivery %s attempt %s failed: %s", delivery.id, attempts, failure)
        else:
            message, detail = f"{type(failure).__name__}: {failure}", {}
            log.error(
                "delivery %s: unexpected error in the %s plugin",
                delivery.id,
                delivery.channel,
                exc_info=failure,
            )
        if attempts >= settings.max_attempts:
            status = DeliveryStatus.FAILED
        else:
            status = DeliveryStatus.QUEUED
            values.update(next_attempt_at=now + backoff(attempts, settings))
        values.update(last_error=message, receipt={"error": message, **detail})
    if status in FINAL_STATUSES:
        values.update(finished_at=now)
    return status, values


async def _record(
    session: AsyncSession,
    delivery_id: int,
    attempts: int,
    status: DeliveryStatus,
    values: dict[str, Any],
) -> bool:
    """Write an attempt's result; False when the claim was lost meanwhile."""
    # The attempt number fences the write: a worker whose lease ran out while the
    # peer was slow must not overwrite what the worker that re-claimed it records.
    result = await session.execute(
        update(DeliveryRow)
        .where(
            DeliveryRow.id == delivery_id,
            DeliveryRow.status == DeliveryStatus.SENDING,
            DeliveryRow.attempts == attempts,
        )
        .values(status=status, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        log.warning("delivery %s: claim lost before the result was recorded", delivery_id)
        return False
    return True


async def _record_many(
    session: AsyncSession, results: Sequence[tuple[Claimed, DeliveryStatus, dict[str, Any]]]
) -> int:
    """`_record` for a batch: one executemany per shape of result (the columns an outcome
    sets), fenced the same way. Returns how many rows were written, or -1 when the driver
    does not say."""
    table = DeliveryRow.__table__
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for job, status, values in results:
        row = {f"v_{k}": v for k, v in values.items()}
        row.update(f_id=job.id, f_attempts=job.attempt, v_status=status)
        shapes.setdefault(tuple(sorted(values)), []).append(row)
    written = 0
    for columns, rows in shapes.items():
        statement = (
            table.update()
            .where(
                table.c.id == bindparam("f_id"),
                table.c.status == DeliveryStatus.SENDING,
                table.c.attempts == bindparam("f_attempts"),
            )
            .values(status=bindparam("v_status"), **{c: bindparam(f"v_{c}") for c in columns})
        )
        result = await session.execute(statement, rows)
        count = result.rowcount  # type: ignore[attr-defined]
        # Some drivers (asyncpg) do not count an executemany: -1, nothing to compare.
        written = -1 if count < 0 or written < 0 else written + count
    if 0 <= written != len(results):
        log.warning(
            "%d of %d claims were lost before the results were recorded",
            len(results) - written,
            len(results),
        )
    return written


async def process(
    sessions: async_sessionmaker[AsyncSession],
    job: Claimed | int,
    settings: OutboxSettings,
    manager: pluggy.PluginManager | None = None,
) -> DeliveryStatus | None:
    """Carry out one claimed delivery and record what happened. Returns the new status, or
    None when the claim was lost meanwhile (the lease ran out and another worker took
    the job): then that worker records the result, not this one.

    `job` is what `claim` returned; a bare delivery id means the caller claimed the row
    itself (status "sending"), and its current attempt number is the fence.
    """
    manager = manager or plugin_manager()
    delivery_id = job.id if isinstance(job, Claimed) else job
    async with sessions() as session:
        row, delivery = await load_delivery(session, delivery_id)
        attempts = job.attempt if isinstance(job, Claimed) else row.attempts
    # The lease was set when the batch was claimed; the jobs before this one may have
    # used it up. Renew it for this send, or give up if another worker has the job by
    # now: a lease must cover the whole call to the peer, never run out during it.
    if not await _renew_lease(sessions, delivery_id, attempts, settings):
        return None
    receipt, failure = await _attempt(manager, delivery, sessions)
    status, values = _judge(delivery, attempts, receipt, failure, settings)
    async with sessions() as session, session.begin():
        recorded = await _record(session, delivery_id, attempts, status, values)
    return status if recorded else None


async def _renew_lease(
    sessions: async_sessionmaker[AsyncSession],
    delivery_id: int,
    attempts: int,
    settings: OutboxSettings,
) -> bool:
    """A fresh lease for the send about to start; False (and nothing may be sent) when
    another worker has claimed the job since."""
    async with sessions() as session, session.begin():
        renewed = await session.execute(
            update(DeliveryRow)
            .where(
                DeliveryRow.id == delivery_id,
                DeliveryRow.status == DeliveryStatus.SENDING,
                DeliveryRow.attempts == attempts,
            )
            .values(lease_expires_at=utcnow() + timedelta(seconds=settings.lease_seconds))
        )
    if renewed.rowcount != 1:  # type: ignore[attr-defined]
        log.warning("delivery %s: claim lost before sending; not sent", delivery_id)
        return False
    return True


async def _preload(session: AsyncSession, ids: Sequence[int]) -> list[Any]:
    """Load a batch's rows, recipients, schools, municipalities, messages and their
    senders with six statements, so `load_delivery` finds them in the session's identity
    map instead of asking the database several times per delivery (an emergency SMS is
    thousands of deliveries of one message). The caller keeps the returned list while it
    loads: the identity map holds its objects only weakly."""

    async def fetch(entity: Any, column: Any, keys: set[Any]) -> list[Any]:
        keys.discard(None)
        if not keys:
            return []
        statement = select(entity).where(column.in_(sorted(keys)))
        return list((await session.execute(statement)).scalars())

    rows = await fetch(DeliveryRow, DeliveryRow.id, set(ids))
    schools = await fetch(School, School.id, {r.school_id for r in rows})
    messages = await fetch(Message, Message.id, {r.message_id for r in rows})
    people = {r.recipient_id for r in rows} | {m.sender_id for m in messages}
    return [
        *rows,
        *schools,
        *messages,
        *await fetch(Person, Person.id, people),
        *await fetch(Municipality, Municipality.id, {s.municipality_id for s in schools}),
    ]


async def process_batch(
    sessions: async_sessionmaker[AsyncSession],
    jobs: Sequence[Claimed],
    settings: OutboxSettings,
    manager: pluggy.PluginManager | None = None,
) -> int:
    """Carry out a claimed batch as `process` does one job, in bulk: every delivery is
    loaded in one session (a handful of statements for the whole batch), the channels are
    called concurrently (at most `settings.concurrency` at once: a gateway answers many
    requests in the time of one round trip), and every result is recorded in one
    transaction. A school's emergency SMS is thousands of jobs; one at a time, with
    several statements each, the worker itself would be the bottleneck. Returns how many
    results were recorded (fewer when a claim was lost meanwhile; -1 when the database
    driver does not count them)."""
    if not jobs:
        return 0
    manager = manager or plugin_manager()
    async with sessions() as session:
        held = await _preload(session, [job.id for job in jobs])
        loaded = [(job, (await load_delivery(session, job.id))[1]) for job in jobs]
        del held
    limit = asyncio.Semaphore(max(1, settings.concurrency))

    async def attempt(
        job: Claimed, delivery: Delivery
    ) -> tuple[Receipt | None, Exception | None] | None:
        async with limit:
            # A slow peer may have used up half the batch's lease while this job waited:
            # renew it before sending (None: another worker has the job; not sent). A
            # fast batch never gets here and costs no statement more.
            half = timedelta(seconds=settings.lease_seconds / 2)
            if job.leased_until is not None and utcnow() > job.leased_until - half:
                if not await _renew_lease(sessions, job.id, job.attempt, settings):
                    return None
            return await _attempt(manager, delivery, sessions)

    outcomes = await asyncio.gather(*(attempt(job, delivery) for job, delivery in loaded))
    results = [
        (job, *_judge(delivery, job.attempt, *outcome, settings))
        for (job, delivery), outcome in zip(loaded, outcomes, strict=True)
        if outcome is not None
    ]
    async with sessions() as session, session.begin():
        return await _record_many(session, results)


async def run_once(
    sessions: async_sessionmaker[AsyncSession],
    settings: OutboxSettings | None = None,
    manager: pluggy.PluginManager | None = None,
    *,
    channels: Collection[str] | None = None,
    only: Collection[int] | None = None,
) -> int:
    """Claim and process one batch; returns how many deliveries were processed."""
    settings = settings or OutboxSettings()
    jobs = await claim(sessions, settings, channels=channels, only=only)
    await process_batch(sessions, jobs, settings, manager)
    return len(jobs)


async def drain(
    sessions: async_sessionmaker[AsyncSession],
    settings: OutboxSettings | None = None,
    manager: pluggy.PluginManager | None = None,
    *,
    channels: Collection[str] | None = None,
    only: Collection[int] | None = None,
) -> int:
    """Process batches until nothing is due (tests and `tavle worker --once`). A delivery
    that failed temporarily is not due again until its backoff has passed, so this ends
    even while a peer is down."""
    total = 0
    while processed := await run_once(sessions, settings, manager, channels=channels, only=only):
        total += processed
    return total


async def poll_statuses(
    sessions: async_sessionmaker[AsyncSession],
    manager: pluggy.PluginManager | None = None,
    limit: int = 100,
    *,
    channels: Collection[str] | None = None,
    only: Collection[int] | None = None,
) -> int:
    """Ask the channels that report status about deliveries whose status may still
    change: "sent" ones first, then delivered or printed ones (which may yet be read)
    changed within `POLL_WINDOW`. Returns how many changed."""
    manager = manager or plugin_manager()
    reporting = [name for name, info in loaded_channels(manager).items() if info.reports_status]
    if channels is not None:
        reporting = [name for name in reporting if name in channels]
    if not reporting:
        return 0
    since = utcnow() - POLL_WINDOW
    query = (
        select(DeliveryRow.id)
        .where(
            DeliveryRow.channel.in_(reporting),
            DeliveryRow.external_id.is_not(None),
            or_(
                DeliveryRow.status == DeliveryStatus.SENT,
                DeliveryRow.status.in_(POLLED_STATUSES) & (DeliveryRow.updated_at >= since),
            ),
        )
        .order_by(DeliveryRow.status != DeliveryStatus.SENT, DeliveryRow.updated_at)
        .limit(limit)
    )
    if only is not None:
        query = query.where(DeliveryRow.id.in_(list(only)))
    async with sessions() as session:
        ids = list((await session.execute(query)).scalars())
    changed = 0
    for delivery_id in ids:
        async with sessions() as session:
            row, delivery = await load_delivery(session, delivery_id)
        try:
            answers = [await _await(r) for r in manager.hook.delivery_status(delivery=delivery)]
        except (TemporaryDeliveryError, PermanentDeliveryError) as error:
            # The peer is down or refuses the question: ask again at the next poll.
            log.warning("status of delivery %s not available: %s", delivery_id, error)
            continue
        found = next((a for a in answers if a is not None), None)
        if found is not None and await _apply_status(sessions, row.id, found):
            changed += 1
    return changed


async def _apply_status(
    sessions: async_sessionmaker[AsyncSession], delivery_id: int, status_update: StatusUpdate
) -> bool:
    """Record a later status; only forward (sent -> delivered/printed -> read), never
    for a delivery the worker has not finished sending."""
    new_status = DeliveryStatus(status_update.status)
    async with sessions() as session, session.begin():
        row = await session.get(DeliveryRow, delivery_id, with_for_update=True)
        if row is None or row.status == new_status or row.status not in _PROGRESS:
            return False
        if _PROGRESS.get(new_status, -1) <= _PROGRESS[row.status]:
            return False
        if new_status == DeliveryStatus.FAILED and row.status != DeliveryStatus.SENT:
            # A letter once delivered or read does not become undelivered.
            return False
        now = utcnow()
        row.status = new_status
        row.updated_at = now
        history = list((row.receipt or {}).get("statuses", []))
        history.append(
            {"status": new_status.value, "at": now.isoformat(), "detail": status_update.detail}
        )
        row.receipt = {**(row.receipt or {}), "statuses": history}
        if new_status in FINAL_STATUSES:
            row.finished_at = now
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
    channels: Collection[str] | None = None,
    only: Collection[int] | None = None,
) -> None:
    """The `tavle worker` loop: process due jobs, poll statuses now and then, sleep when
    there is nothing to do."""
    settings = settings or OutboxSettings()
    stop = stop or asyncio.Event()
    last_poll = 0.0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            processed = await run_once(sessions, settings, channels=channels, only=only)
            if loop.time() - last_poll >= status_poll_every:
                await poll_statuses(sessions, channels=channels, only=only)
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
    "Claimed",
    "OutboxSettings",
    "claim",
    "drain",
    "poll_statuses",
    "process",
    "process_batch",
    "record_status_update",
    "run_forever",
    "run_once",
]
