"""Archive batches: queued entries, in creation order, handed to the archive plugin in
chunks, and each result recorded.

- archived: registry year and sequence number and the receipt are kept; a folder the
  archive created gets its case year and sequence number.
- transient (refused, timeout, 5xx): the entry stays queued, attempts and the error are
  recorded, and the next batch tries again with the same external key.
- permanent (rejected): failed, with the archive's receipt, until someone requeues it.

A failing entry never stops the others. When the archive cannot be reached at all for
`max_unreachable` entries in a row the batch stops early: the rest simply waits for the
next batch. Entries queued while a batch runs wait for the next one. Only one batch runs
at a time (a PostgreSQL advisory lock; SQLite deployments are single-process and use a
process-wide lock), and even if two overlapped, the external key keeps the archive from
registering an entry twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pluggy
from sqlalchemy import Integer, Text, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import undefer

from core import audit
from core.archive.queue import entry_key, folder_key
from core.archive.settings import ArchiveSettings
from core.archive.types import ArchiveItem, ArchiveResult, FolderRef, Party, ResultKind
from core.models import (
    ArchiveEntry,
    ArchiveFolder,
    ArchiveFolderKind,
    ArchiveStatus,
    Document,
    Guardianship,
    Municipality,
    Person,
    School,
)
from core.models.base import UtcDateTime, utcnow

log = logging.getLogger("tavle.archive")

# Any constant: the key of the PostgreSQL advisory lock held while a batch runs.
BATCH_LOCK_KEY = 0x7A41_2C4E
_process_lock = asyncio.Lock()


class ArchiveNotConfigured(Exception):
    """No archive plugin answered `archive_entries`."""


class BatchAlreadyRunning(Exception):
    """Another batch holds the lock."""


@dataclass
class BatchReport:
    total: int = 0
    archived: int = 0
    failed: int = 0
    retry: int = 0
    not_tried: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        """Norwegian one-liner for the CLI and the log."""
        text_ = (
            f"{self.total} arkivposter: {self.archived} arkivert, {self.failed} feilet, "
            f"{self.retry} prøves igjen neste kjøring"
        )
        if self.not_tried:
            text_ += f", {self.not_tried} ikke forsøkt"
        if self.stopped_early:
            text_ += " (arkivet svarte ikke; kjøringen ble stoppet)"
        return text_ + f" på {self.seconds:.1f} s."


async def _await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _local_date(moment: datetime, zone: str) -> Any:
    return moment.astimezone(ZoneInfo(zone)).date()


def _masked(title: str, name: str) -> str:
    return title.replace(name, "*****") if name else title


async def _recipients(session: AsyncSession, students: Sequence[int]) -> dict[int, list[Person]]:
    rows = await session.execute(
        select(Guardianship.student_id, Person)
        .join(Person, Person.id == Guardianship.guardian_id)
        .where(
            Guardianship.student_id.in_(students), Guardianship.parental_responsibility.is_(True)
        )
        .order_by(Person.id)
    )
    found: dict[int, list[Person]] = defaultdict(list)
    for student_id, person in rows:
        found[student_id].append(person)
    return found


def _person_party(person: Person) -> Party:
    return Party(
        role="recipient",
        name=person.name,
        person_id=person.national_id,
        street_address=person.street_address,
        postal_code=person.postal_code,
        postal_town=person.postal_town,
    )


async def load_items(
    session: AsyncSession,
    entry_ids: Sequence[int],
    doctypes: Mapping[str, Any],
    settings: ArchiveSettings,
) -> tuple[list[ArchiveItem], dict[int, ArchiveResult]]:
    """The plugin's view of the entries, and a permanent result for entries that cannot
    be sent as they are (no PDF, unknown doctype, no case owner)."""
    rows = (
        await session.execute(
            select(ArchiveEntry, Document, ArchiveFolder, School)
            .join(Document, Document.id == ArchiveEntry.document_id)
            .join(ArchiveFolder, ArchiveFolder.id == ArchiveEntry.folder_id)
            .join(School, School.id == ArchiveEntry.school_id)
            .where(ArchiveEntry.id.in_(entry_ids), ArchiveEntry.status == ArchiveStatus.QUEUED)
            .options(undefer(Document.pdf))
            .order_by(ArchiveEntry.id)
        )
    ).all()
    person_ids = {d.student_id for _, d, _, _ in rows} | {d.created_by_id for _, d, _, _ in rows}
    people = {
        p.id: p
        for p in (await session.execute(select(Person).where(Person.id.in_(person_ids)))).scalars()
    }
    municipalities = {m.id: m for m in (await session.execute(select(Municipality))).scalars()}
    guardians = await _recipients(session, sorted({d.student_id for _, d, _, _ in rows}))
    items: list[ArchiveItem] = []
    refused: dict[int, ArchiveResult] = {}
    for entry, document, folder, school in rows:
        doctype = doctypes.get(document.doctype_key)
        problem = None
        if doctype is None:
            problem = f"Dokumenttypen {document.doctype_key!r} finnes ikke lenger."
        elif not document.pdf or not document.pdf_sha256:
            problem = "Dokumentet har ingen ferdigstilt PDF/A."
        elif document.deleted_at is not None:
            problem = "Dokumentet er slettet."
        case_owner = entry.case_owner or school.case_owner_initials
        if problem is None and not case_owner:
            problem = (
                f"{school.name} mangler saksansvarlig (rektors initialer, slik de er "
                "registrert i arkivet). Legg dem inn og sett arkivposten til «klar»."
            )
        if problem is not None:
            refused[entry.id] = ArchiveResult(ResultKind.PERMANENT, error=problem)
            continue
        student = people.get(document.student_id)
        student_name = student.name if student else ""
        author = people.get(document.created_by_id)
        municipality = municipalities.get(school.municipality_id)
        parties = [
            Party(
                role="sender",
                name=school.name,
                organisation_number=school.organisation_number,
                case_handler=case_owner,
            )
        ]
        if doctype.recipients in ("guardians", "student_and_guardians"):
            parties += [_person_party(p) for p in guardians[document.student_id]]
        if doctype.recipients in ("student", "student_and_guardians") and student is not None:
            parties.insert(1, _person_party(student))
        moment = document.finalized_at or document.created_at
        items.append(
            ArchiveItem(
                entry_id=entry.id,
                external_key=entry_key(entry.id),
                document_id=document.id,
                doctype=doctype.key,
                doctype_title=doctype.title,
                title=document.title,
                public_title=_masked(document.title, student_name),
                document_date=_local_date(moment, settings.timezone),
                created_at=document.created_at,
                sent_at=document.sent_at,
                registry_status=doctype.registry_status or "J",
                restricted=document.restricted,
                restriction_basis=document.restriction_basis,
                case_owner=case_owner,
                school_name=school.name,
                organisation_number=school.organisation_number,
                municipality_name=municipality.name if municipality else "",
                folder=FolderRef(
                    id=folder.id,
                    kind=folder.kind.value,
                    title=folder.title,
                    external_key=folder_key(folder.id),
                    case_year=folder.case_year,
                    case_sequence=folder.case_sequence,
                    case_owner=case_owner,
                    mapped=folder.mapped_by_id is not None,
                    student_name=student_name if folder.kind == ArchiveFolderKind.STUDENT else None,
                    student_national_id=(
                        student.national_id
                        if student is not None and folder.kind == ArchiveFolderKind.STUDENT
                        else None
                    ),
                ),
                parties=tuple(parties),
                filename=f"{document.title}.pdf",
                pdf=document.pdf,
                pdf_sha256=document.pdf_sha256,
                author=author.name if author else None,
                attempt=entry.attempts + 1,
            )
        )
    return items, refused


async def _call_plugin(
    manager: pluggy.PluginManager, items: list[ArchiveItem]
) -> list[ArchiveResult]:
    if not items:
        return []
    answer = await _await(manager.hook.archive_entries(batch=items))
    if answer is None:
        raise ArchiveNotConfigured("Ingen arkivutvidelse er installert og konfigurert.")
    results = list(answer)
    if len(results) != len(items):
        raise RuntimeError(
            f"the archive plugin returned {len(results)} results for {len(items)} entries"
        )
    return results


_RECORD = (
    update(ArchiveEntry)
    .where(ArchiveEntry.id == bindparam("entry_id"), ArchiveEntry.status == ArchiveStatus.QUEUED)
    .values(
        status=bindparam("new_status", type_=ArchiveEntry.__table__.c.status.type),
        attempts=ArchiveEntry.attempts + bindparam("tried", type_=Integer),
        registry_year=func.coalesce(bindparam("year", type_=Integer), ArchiveEntry.registry_year),
        registry_sequence=func.coalesce(
            bindparam("sequence", type_=Integer), ArchiveEntry.registry_sequence
        ),
        receipt=func.coalesce(bindparam("new_receipt", type_=Text), ArchiveEntry.receipt),
        last_error=bindparam("error", type_=Text),
        archived_at=bindparam("archived", type_=UtcDateTime()),
        updated_at=bindparam("now", type_=UtcDateTime()),
    )
)


# A folder created on first use gets the case number the archive gave it, once.
_FOLDER_CASE = (
    update(ArchiveFolder)
    .where(ArchiveFolder.id == bindparam("folder"), ArchiveFolder.case_year.is_(None))
    .values(
        case_year=bindparam("year", type_=Integer),
        case_sequence=bindparam("sequence", type_=Integer),
        updated_at=bindparam("now", type_=UtcDateTime()),
    )
)


async def _record(
    sessions: async_sessionmaker[AsyncSession], results: Mapping[int, ArchiveResult]
) -> None:
    """Write one chunk's results in one transaction, one statement for all entries. Only
    entries still queued are touched, so a concurrent requeue or dismiss (which need
    failed) can never be overwritten."""
    now = utcnow()
    rows: list[dict[str, Any]] = []
    folder_cases: dict[int, tuple[int, int]] = {}
    async with sessions() as session, session.begin():
        folders = dict(
            (
                await session.execute(
                    select(ArchiveEntry.id, ArchiveEntry.folder_id).where(
                        ArchiveEntry.id.in_(list(results))
                    )
                )
            ).all()
        )
        for entry_id, result in results.items():
            row: dict[str, Any] = {
                "entry_id": entry_id,
                "now": now,
                "year": None,
                "sequence": None,
                "new_receipt": result.receipt,
                "archived": None,
                # The plugin may skip the rest of a chunk once the archive is unreachable.
                "tried": 0 if result.detail.get("not_tried") else 1,
            }
            if result.kind == ResultKind.ARCHIVED:
                row.update(
                    new_status=ArchiveStatus.ARCHIVED,
                    year=result.registry_year,
                    sequence=result.registry_sequence,
                    error=None,
                    archived=now,
                )
                if result.case_year is not None and result.case_sequence is not None:
                    folder_cases[folders[entry_id]] = (result.case_year, result.case_sequence)
            elif result.kind == ResultKind.PERMANENT:
                row.update(
                    new_status=ArchiveStatus.FAILED,
                    error=result.error or "Arkivet avviste dokumentet.",
                )
            else:
                row.update(
                    new_status=ArchiveStatus.QUEUED,
                    error=result.error or "Midlertidig feil; prøves igjen.",
                )
            rows.append(row)
        if rows:
            connection = await session.connection()
            await connection.execute(_RECORD, rows)
        if folder_cases:
            connection = await session.connection()
            await connection.execute(
                _FOLDER_CASE,
                [
                    {"folder": folder_id, "year": year, "sequence": sequence, "now": now}
                    for folder_id, (year, sequence) in folder_cases.items()
                ],
            )


async def _queued_ids(sessions: async_sessionmaker[AsyncSession], limit: int | None) -> list[int]:
    async with sessions() as session:
        query = (
            select(ArchiveEntry.id)
            .where(ArchiveEntry.status == ArchiveStatus.QUEUED)
            .order_by(ArchiveEntry.created_at, ArchiveEntry.id)
        )
        if limit is not None:
            query = query.limit(limit)
        return list((await session.execute(query)).scalars())


async def _run(
    sessions: async_sessionmaker[AsyncSession],
    doctypes: Mapping[str, Any],
    settings: ArchiveSettings,
    manager: pluggy.PluginManager,
    limit: int | None,
) -> BatchReport:
    report = BatchReport()
    started = time.perf_counter()
    ids = await _queued_ids(sessions, limit)
    chunks = [ids[i : i + settings.chunk_size] for i in range(0, len(ids), settings.chunk_size)]

    async def load(chunk: list[int]) -> tuple[list[ArchiveItem], dict[int, ArchiveResult]]:
        async with sessions() as session:
            return await load_items(session, chunk, doctypes, settings)

    # A pipeline: while the archive works on one chunk, the next one is read from the
    # database and the previous one's results are written.
    loading: asyncio.Task[Any] | None = asyncio.create_task(load(chunks[0])) if chunks else None
    recording: asyncio.Task[None] | None = None
    unreachable_in_row = 0
    sent = 0
    try:
        for index, chunk in enumerate(chunks):
            assert loading is not None
            items, results = await loading
            loading = (
                asyncio.create_task(load(chunks[index + 1])) if index + 1 < len(chunks) else None
            )
            try:
                answers = await _call_plugin(manager, items)
            except ArchiveNotConfigured:
                raise
            except Exception as error:  # a plugin bug must not lose the entries: retry later
                log.exception("the archive plugin failed on a chunk of %s entries", len(items))
                answers = [
                    ArchiveResult(ResultKind.TRANSIENT, error=f"Feil i arkivutvidelsen: {error}")
                    for _ in items
                ]
            for item, result in zip(items, answers, strict=True):
                results[item.entry_id] = result
            if recording is not None:
                await recording
            recording = asyncio.create_task(_record(sessions, results))
            sent += len(chunk)
            for entry_id in chunk:
                result = results.get(entry_id)
                if result is None:  # dismissed or archived since the batch began
                    continue
                report.total += 1
                if result.kind == ResultKind.ARCHIVED:
                    report.archived += 1
                elif result.kind == ResultKind.PERMANENT:
                    report.failed += 1
                    report.errors.append(f"{entry_key(entry_id)}: {result.error}")
                else:
                    report.retry += 1
                unreachable_in_row = unreachable_in_row + 1 if result.unreachable else 0
            if unreachable_in_row >= settings.max_unreachable:
                report.stopped_early = True
                report.not_tried = len(ids) - sent
                break
        if recording is not None:
            await recording
            recording = None
    finally:
        for task in (loading, recording):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    report.seconds = time.perf_counter() - started
    return report


async def run_batch(
    sessions: async_sessionmaker[AsyncSession],
    doctypes: Mapping[str, Any],
    settings: ArchiveSettings | None = None,
    manager: pluggy.PluginManager | None = None,
    *,
    limit: int | None = None,
) -> BatchReport:
    """Run one archive batch now. Raises `BatchAlreadyRunning` when another batch holds
    the lock and `ArchiveNotConfigured` when no archive plugin answers."""
    from core.plugins import plugin_manager

    settings = settings or ArchiveSettings.from_env()
    manager = manager or plugin_manager()
    engine = sessions.kw["bind"]
    if engine.dialect.name == "postgresql":
        # A session-level advisory lock lives on one connection: hold that connection
        # (in autocommit, so it is not idle in a transaction) for the whole batch.
        async with engine.connect() as raw:
            lock = await raw.execution_options(isolation_level="AUTOCOMMIT")
            got = (
                await lock.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": BATCH_LOCK_KEY}
                )
            ).scalar()
            if not got:
                raise BatchAlreadyRunning("En arkivkjøring pågår allerede.")
            try:
                report = await _run(sessions, doctypes, settings, manager, limit)
            finally:
                await lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": BATCH_LOCK_KEY})
    else:
        if _process_lock.locked():
            raise BatchAlreadyRunning("En arkivkjøring pågår allerede.")
        async with _process_lock:
            report = await _run(sessions, doctypes, settings, manager, limit)
    async with sessions() as session, session.begin():
        await audit.record(
            session,
            actor_id=None,
            action="archive_batch",
            resource_type="archive_batch",
            detail={
                "total": report.total,
                "archived": report.archived,
                "failed": report.failed,
                "retry": report.retry,
                "not_tried": report.not_tried,
                "stopped_early": report.stopped_early,
                "seconds": round(report.seconds, 3),
            },
        )
    log.info("archive batch: %s", report.summary())
    return report


async def run_scheduled(
    sessions: async_sessionmaker[AsyncSession],
    doctypes: Mapping[str, Any],
    settings: ArchiveSettings | None = None,
    *,
    stop: asyncio.Event | None = None,
    clock: Callable[[], datetime] = utcnow,
    manager: pluggy.PluginManager | None = None,
) -> None:
    """Run a batch at every time of the schedule until `stop` is set (`tavle worker`).
    `clock` gives the current time (a test starts just before a scheduled time)."""
    settings = settings or ArchiveSettings.from_env()
    stop = stop or asyncio.Event()
    while not stop.is_set():
        now = clock()
        due = settings.next_run(now)
        log.info("next archive batch at %s", due.isoformat())
        try:
            await asyncio.wait_for(stop.wait(), timeout=(due - now).total_seconds())
            return
        except TimeoutError:
            pass
        try:
            await run_batch(sessions, doctypes, settings, manager)
        except BatchAlreadyRunning:
            log.warning("archive batch skipped: another batch is running")
        except Exception:  # the database or the plugin may be away; try at the next time
            log.exception("archive batch failed")
