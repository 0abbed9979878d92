"""Archive batches against a real fake archive (tests/fakes/archive_server.py) over HTTP:
creation order and registry numbers, folders created on first use, nothing lost and
nothing twice when the archive is down for several batches, answers 500 for a third of
the entries at random, or times out after having registered an entry; permanent
rejections go to failed with the receipt, are requeued after the cause is fixed, or
dismissed with a reason; school folders close only when nothing is left; the case owner
follows the principal for new entries; the Fiks IO transport; `tavle archive run`.

Documents are inserted finalized with a small PDF (rendering thousands of letters is not
what is tested here) and queued through the real `core.archive.queue.enqueue`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from core.archive import queue
from core.archive.batch import run_batch
from core.archive.settings import ArchiveSettings
from core.db import transaction
from core.doctypes import sample_fields
from core.models import (
    ArchiveEntry,
    ArchiveFolder,
    ArchiveStatus,
    AuditEvent,
    Document,
    DocumentStatus,
    Enrolment,
    Person,
    School,
    SchoolYear,
)
from core.models.base import utcnow
from core.plugins import plugin_manager
from core.schema import ids
from plugins.elements.xsd import xsd_dir
from tests.conftest import error_codes

pytestmark = pytest.mark.skipif(
    xsd_dir() is None,
    reason="the Fiks Arkiv XSDs are not there (set TAVLE_FIKS_ARKIV_XSD_DIR); the fake "
    "archive validates every message against them",
)

ROOT = Path(__file__).resolve().parent.parent
STUDENT_DOCTYPE = "fravaersvarsel"  # archived always, student folder
SCHOOL_DOCTYPE = "gruppeoversikt"  # archived when ticked, school folder
SETTINGS = ArchiveSettings(chunk_size=10, max_unreachable=3)

LOG = """
query($status: ArchiveStatus, $school: ID, $after: String) {
  archiveLog(status: $status, school: $school, first: 200, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id status receipt lastError attempts registryYear registrySequence
                   schoolName folder { title caseYear caseSequence closed }
                   document { id title } } }
  }
}"""


@pytest.fixture(scope="module")
def fake_archive() -> Iterator[Any]:
    from tests.fakes.archive_server import FakeArchive

    with FakeArchive() as archive:
        yield archive


@pytest.fixture
def elements(fake_archive: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TAVLE_ELEMENTS_URL", fake_archive.base_url)
    monkeypatch.setenv("TAVLE_ELEMENTS_TRANSPORT", "http")
    monkeypatch.setenv("TAVLE_ELEMENTS_TIMEOUT", "5")
    monkeypatch.setenv("TAVLE_ELEMENTS_CONCURRENCY", "4")
    fake_archive.fail_fraction(0)
    fake_archive.hang_after_registering(0)
    if fake_archive._server is None:
        fake_archive.up()
    return fake_archive


# --------------------------------------------------------------------------------------
# Helpers (also used by test_archive_arkivmelding.py)


async def school_id(sessions: Any, name: str) -> int:
    async with sessions() as s:
        return (await s.execute(select(School.id).where(School.name == name))).scalar_one()


async def make_entries(
    sessions: Any,
    doctypes: dict[str, Any],
    count: int,
    doctype_key: str,
    *,
    school: str = "Nordby skole",
    offset: int = 0,
) -> list[int]:
    """`count` finalized documents of `doctype_key` for students of `school` (cycling
    through them from `offset`), each queued; returns the entry ids in creation order."""
    doctype = doctypes[doctype_key]
    entry_ids: list[int] = []
    async with transaction(sessions) as s:
        students = (
            await s.execute(
                select(Enrolment.student_id, Enrolment.school_id, Enrolment.school_year_id)
                .join(SchoolYear, SchoolYear.id == Enrolment.school_year_id)
                .join(School, School.id == Enrolment.school_id)
                .where(SchoolYear.is_current.is_(True), School.name == school)
                .order_by(Enrolment.student_id)
            )
        ).all()
        author = (
            await s.execute(select(Person.id).where(Person.username == "skoleadmin.nordby"))
        ).scalar_one()
        names = {
            p.id: p.name
            for p in (
                await s.execute(select(Person).where(Person.id.in_([r[0] for r in students])))
            ).scalars()
        }
        for index in range(count):
            student_id, school_pk, year_id = students[(offset + index) % len(students)]
            now = utcnow()
            pdf = b"%PDF-1.7\n% tavle test " + os.urandom(8).hex().encode() + b"\n%%EOF\n"
            document = Document(
                doctype_key=doctype.key,
                title=f"{doctype.title} – {names[student_id]}",
                student_id=student_id,
                school_id=school_pk,
                school_year_id=year_id,
                fields=sample_fields(doctype),
                status=DocumentStatus.FINALIZED,
                sensitive=doctype.sensitive,
                restricted=doctype.restricted,
                restriction_basis=doctype.restriction_basis,
                created_by_id=author,
                created_at=now,
                updated_at=now,
                html="<p>test</p>",
                pdf=pdf,
                pdf_sha256=hashlib.sha256(pdf).hexdigest(),
                finalized_at=now,
                finalized_by_id=author,
            )
            s.add(document)
            await s.flush()
            entry = await queue.enqueue(s, doctype, document)
            entry_ids.append(entry.id)
    return entry_ids


async def entries(sessions: Any, entry_ids: list[int]) -> list[ArchiveEntry]:
    async with sessions() as s:
        return list(
            (
                await s.execute(
                    select(ArchiveEntry)
                    .where(ArchiveEntry.id.in_(entry_ids))
                    .order_by(ArchiveEntry.id)
                )
            ).scalars()
        )


async def batch(sessions: Any, doctypes: dict[str, Any], settings: ArchiveSettings = SETTINGS):
    return await run_batch(sessions, doctypes, settings, plugin_manager())


async def until_settled(sessions: Any, doctypes: dict[str, Any], entry_ids: list[int]) -> int:
    """Run batches until none of `entry_ids` is queued; returns the number of batches."""
    for runs in range(1, 15):
        await batch(sessions, doctypes)
        if all(e.status != ArchiveStatus.QUEUED for e in await entries(sessions, entry_ids)):
            return runs
    raise AssertionError("entries still queued after 14 batches")


def assert_archived_once(fake: Any, rows: list[ArchiveEntry]) -> None:
    for row in rows:
        key = queue.entry_key(row.id)
        assert row.status == ArchiveStatus.ARCHIVED, (row.id, row.status, row.last_error)
        assert fake.created[key] == 1, f"{key} registered {fake.created[key]} times"
        registration = fake.registrations[key]
        assert (row.registry_year, row.registry_sequence) == (
            registration.year,
            registration.sequence,
        )


# --------------------------------------------------------------------------------------
# Tests


async def test_batch_in_creation_order_with_numbers_folders_and_receipts(
    sessions, app, elements, monkeypatch
) -> None:
    monkeypatch.setenv("TAVLE_ELEMENTS_CONCURRENCY", "1")
    doctypes = app.state.tavle.doctypes
    # Two documents per student: the second finds the case the first one created.
    first = await make_entries(sessions, doctypes, 6, STUDENT_DOCTYPE, school="Sørby ungdomsskole")
    second = await make_entries(sessions, doctypes, 6, STUDENT_DOCTYPE, school="Sørby ungdomsskole")
    report = await batch(sessions, doctypes)
    assert report.archived >= 12 and not report.stopped_early
    rows = await entries(sessions, first + second)
    assert_archived_once(elements, rows)
    # Creation order: the archive saw them in the order they were queued.
    sequences = [r.registry_sequence for r in rows]
    assert sequences == sorted(sequences)
    async with sessions() as s:
        folders = {
            f.id: f
            for f in (
                await s.execute(
                    select(ArchiveFolder).where(ArchiveFolder.id.in_([r.folder_id for r in rows]))
                )
            ).scalars()
        }
    assert len(folders) == 6  # one student folder per student
    for folder in folders.values():
        case = elements.case_by_key(queue.folder_key(folder.id))
        assert case is not None and (folder.case_year, folder.case_sequence) == (
            case.year,
            case.sequence,
        )
        assert folder.title.startswith("Elevmappe - ")
        assert case.archive_part == "SAK" and case.access_code == "EL"
        assert {"B34", "B31"} <= set(case.classes)
    for row in rows:
        registration = elements.registrations[queue.entry_key(row.id)]
        assert registration.case == (
            folders[row.folder_id].case_year,
            folders[row.folder_id].case_sequence,
        )
        assert elements.kvittering_is_valid(row.receipt.encode())
        assert row.attempts == 1 and row.last_error is None


async def test_archive_down_for_several_batches_loses_nothing(sessions, app, elements) -> None:
    doctypes = app.state.tavle.doctypes
    ids_ = await make_entries(sessions, doctypes, 8, STUDENT_DOCTYPE)
    elements.down()
    try:
        for _ in range(3):
            report = await batch(sessions, doctypes)
            assert report.stopped_early and report.archived == 0
        rows = await entries(sessions, ids_)
        assert all(r.status == ArchiveStatus.QUEUED for r in rows)
        tried = [r for r in rows if r.attempts]
        assert tried and all("svarer ikke" in (r.last_error or "") for r in tried)
    finally:
        elements.up()
    await until_settled(sessions, doctypes, ids_)
    assert_archived_once(elements, await entries(sessions, ids_))


async def test_500_for_a_third_of_the_entries(sessions, app, elements) -> None:
    doctypes = app.state.tavle.doctypes
    ids_ = await make_entries(sessions, doctypes, 30, STUDENT_DOCTYPE, offset=3)
    elements.fail_fraction(1 / 3, seed=7)
    runs = await until_settled(sessions, doctypes, ids_)
    elements.fail_fraction(0)
    rows = await entries(sessions, ids_)
    assert_archived_once(elements, rows)
    retried = [r for r in rows if r.attempts > 1]
    assert runs > 1 and 3 <= len(retried) < len(rows)
    assert all(r.last_error is None for r in rows)  # cleared once archived


async def test_timeout_after_registering_is_not_registered_twice(
    sessions, app, elements, monkeypatch
) -> None:
    monkeypatch.setenv("TAVLE_ELEMENTS_TIMEOUT", "0.3")
    monkeypatch.setenv("TAVLE_ELEMENTS_CONCURRENCY", "1")
    doctypes = app.state.tavle.doctypes
    await batch(sessions, doctypes)  # what other tests left queued goes first otherwise
    ids_ = await make_entries(sessions, doctypes, 4, STUDENT_DOCTYPE, offset=9)
    async with sessions() as s:
        queued_before = (
            await s.execute(
                select(func.count())
                .select_from(ArchiveEntry)
                .where(ArchiveEntry.status == ArchiveStatus.QUEUED, ArchiveEntry.id < ids_[0])
            )
        ).scalar()
    assert queued_before == 0
    elements.hang_after_registering(1.0, count=2)
    await batch(sessions, doctypes)
    rows = await entries(sessions, ids_)
    hung = [r for r in rows if r.status == ArchiveStatus.QUEUED]
    assert len(hung) == 2 and all("svarer ikke" in r.last_error for r in hung)
    for row in hung:  # the archive has them, we do not know it yet
        assert elements.created[queue.entry_key(row.id)] == 1
    await batch(sessions, doctypes)
    rows = await entries(sessions, ids_)
    assert_archived_once(elements, rows)
    for row in hung:
        assert elements.received[queue.entry_key(row.id)] == 2
        assert "<opprettetEllerEksisterende>Eksisterende" in next(
            r.receipt for r in rows if r.id == row.id
        )


async def test_rejected_entry_fails_with_receipt_then_requeue_and_close_folder(
    sessions, app, gql, elements
) -> None:
    doctypes = app.state.tavle.doctypes
    vestby = await school_id(sessions, "Vestby skole")
    async with sessions() as s:
        year = (
            await s.execute(select(SchoolYear).where(SchoolYear.is_current.is_(True)))
        ).scalar_one()
    mapping = """mutation($input: MapSchoolFolderInput!) {
      mapSchoolFolder(input: $input) { id title caseYear caseSequence mapped closed } }"""
    school_gid = ids.encode("School", vestby)
    year_gid = ids.encode("SchoolYear", year.id)
    # A typo in the case number: the archive has no case 2026/999.
    data = await gql.data(
        "kommuneadmin",
        mapping,
        {
            "input": {
                "schoolId": school_gid,
                "schoolYearId": year_gid,
                "caseYear": 2026,
                "caseSequence": 999,
            }
        },
    )
    folder = data["mapSchoolFolder"]
    assert folder["title"] == f"Skolemappe - Vestby skole {year.name}"
    assert folder["mapped"] and folder["caseSequence"] == 999
    denied = await gql.query(
        "skoleadmin.nordby",
        mapping,
        {
            "input": {
                "schoolId": school_gid,
                "schoolYearId": year_gid,
                "caseYear": 2026,
                "caseSequence": 5,
            }
        },
    )
    assert error_codes(denied) == ["FORBIDDEN"]

    [entry_id] = await make_entries(sessions, doctypes, 1, SCHOOL_DOCTYPE, school="Vestby skole")
    await batch(sessions, doctypes)
    [row] = await entries(sessions, [entry_id])
    assert row.status == ArchiveStatus.FAILED
    assert "2026/999 finnes ikke" in row.last_error and "ugyldigforespoersel" in row.receipt
    entry_gid = ids.encode("ArchiveEntry", entry_id)
    log = await gql.data("kommuneadmin", LOG, {"status": "FAILED", "school": school_gid})
    node = next(e["node"] for e in log["archiveLog"]["edges"] if e["node"]["id"] == entry_gid)
    assert "finnes ikke" in node["receipt"] and node["folder"]["caseSequence"] == 999

    close = "mutation($id: ID!) { closeSchoolFolder(id: $id) { closed closedAt } }"
    refused = await gql.query("kommuneadmin", close, {"id": folder["id"]})
    assert error_codes(refused) == ["BAD_USER_INPUT"]
    assert "1 har feilet" in refused["errors"][0]["message"]

    # The administrator fixes the mapping; the school's administrator requeues it.
    elements.add_case(2026, 555, f"Skolemappe - Vestby skole {year.name}", "VS")
    await gql.data(
        "kommuneadmin",
        mapping,
        {
            "input": {
                "schoolId": school_gid,
                "schoolYearId": year_gid,
                "caseYear": 2026,
                "caseSequence": 555,
            }
        },
    )
    requeue = "mutation($id: ID!) { requeueArchiveEntry(id: $id) { id status } }"
    assert error_codes(await gql.query("skoleadmin.nordby", requeue, {"id": entry_gid})) == [
        "FORBIDDEN"
    ]
    data = await gql.data("kommuneadmin", requeue, {"id": entry_gid})
    assert data["requeueArchiveEntry"]["status"] == "QUEUED"
    again = await gql.query("kommuneadmin", requeue, {"id": entry_gid})
    assert error_codes(again) == ["BAD_USER_INPUT"]
    await batch(sessions, doctypes)
    [row] = await entries(sessions, [entry_id])
    assert_archived_once(elements, [row])
    assert elements.registrations[queue.entry_key(entry_id)].case == (2026, 555)

    closed = await gql.data("kommuneadmin", close, {"id": folder["id"]})
    assert closed["closeSchoolFolder"]["closed"] is True
    # Nothing more can be filed in a closed school folder.
    with pytest.raises(Exception, match="avsluttet"):
        await make_entries(sessions, doctypes, 1, SCHOOL_DOCTYPE, school="Vestby skole")


async def test_dismiss_needs_a_reason_and_is_audited(sessions, app, gql, elements) -> None:
    doctypes = app.state.tavle.doctypes
    [entry_id] = await make_entries(sessions, doctypes, 1, STUDENT_DOCTYPE, offset=20)
    async with transaction(sessions) as s:  # a rejection, as the batch records one
        await s.execute(
            update(ArchiveEntry)
            .where(ArchiveEntry.id == entry_id)
            .values(status=ArchiveStatus.FAILED, last_error="Arkivet avviste meldingen: test")
        )
    dismiss = """mutation($input: DismissArchiveEntryInput!) {
      dismissArchiveEntry(input: $input) { id status dismissedReason } }"""
    gid = ids.encode("ArchiveEntry", entry_id)
    blank = await gql.query("skoleadmin.nordby", dismiss, {"input": {"id": gid, "reason": " "}})
    assert error_codes(blank) == ["BAD_USER_INPUT"]
    teacher = await gql.query("laerer.nordby.5a", dismiss, {"input": {"id": gid, "reason": "x"}})
    assert error_codes(teacher) == ["FORBIDDEN"]
    reason = "Dokumentet er produsert på nytt og arkivert."
    data = await gql.data("skoleadmin.nordby", dismiss, {"input": {"id": gid, "reason": reason}})
    assert data["dismissArchiveEntry"] == {
        "id": gid,
        "status": "DISMISSED",
        "dismissedReason": reason,
    }
    async with sessions() as s:
        event = (
            await s.execute(
                select(AuditEvent).where(
                    AuditEvent.action == "dismiss_archive_entry",
                    AuditEvent.resource_id == str(entry_id),
                )
            )
        ).scalar_one()
    assert event.detail["reason"] == reason
    requeue = "mutation($id: ID!) { requeueArchiveEntry(id: $id) { id } }"
    assert error_codes(await gql.query("kommuneadmin", requeue, {"id": gid})) == ["BAD_USER_INPUT"]


async def test_case_owner_follows_the_principal_for_new_entries(
    sessions, app, gql, elements
) -> None:
    doctypes = app.state.tavle.doctypes
    sorby = await school_id(sessions, "Sørby ungdomsskole")
    school = "Sørby ungdomsskole"

    async def set_initials(value: str | None) -> None:
        async with transaction(sessions) as s:
            await s.execute(
                update(School).where(School.id == sorby).values(case_owner_initials=value)
            )

    async with sessions() as s:
        original = (await s.get(School, sorby)).case_owner_initials
    try:
        await set_initials(None)
        [missing] = await make_entries(
            sessions, doctypes, 1, STUDENT_DOCTYPE, school=school, offset=11
        )
        await batch(sessions, doctypes)
        [row] = await entries(sessions, [missing])
        # No principal's initials: failed with a reason a person can act on.
        assert row.status == ArchiveStatus.FAILED and "saksansvarlig" in row.last_error
        await set_initials("AB")
        [old] = await make_entries(sessions, doctypes, 1, STUDENT_DOCTYPE, school=school, offset=12)
        await set_initials("CD")  # a new principal
        [new] = await make_entries(sessions, doctypes, 1, STUDENT_DOCTYPE, school=school, offset=13)
        requeue = "mutation($id: ID!) { requeueArchiveEntry(id: $id) { status caseOwner } }"
        data = await gql.data("kommuneadmin", requeue, {"id": ids.encode("ArchiveEntry", missing)})
        assert data["requeueArchiveEntry"] == {"status": "QUEUED", "caseOwner": "CD"}
        rows = {r.id: r for r in await entries(sessions, [missing, old, new])}
        assert (rows[old].case_owner, rows[new].case_owner) == ("AB", "CD")
        await batch(sessions, doctypes)
        rows_ = await entries(sessions, [missing, old, new])
        assert_archived_once(elements, rows_)
        for entry_id, initials in ((old, "AB"), (new, "CD"), (missing, "CD")):
            xml = elements.registrations[queue.entry_key(entry_id)].xml.decode()
            assert f"<n5mdk:initialer>{initials}</n5mdk:initialer>" in xml
    finally:
        await set_initials(original)


async def test_fiks_io_transport(sessions, app, elements, monkeypatch) -> None:
    monkeypatch.setenv("TAVLE_ELEMENTS_TRANSPORT", "fiksio")
    doctypes = app.state.tavle.doctypes
    ids_ = await make_entries(sessions, doctypes, 5, STUDENT_DOCTYPE, offset=15)
    await batch(sessions, doctypes)
    assert_archived_once(elements, await entries(sessions, ids_))
    assert not elements.replies  # every reply message was fetched


async def test_worker_runs_batches_on_the_schedule(sessions, app, elements) -> None:
    from datetime import UTC, datetime, timedelta

    from core.archive.batch import run_scheduled

    doctypes = app.state.tavle.doctypes
    ids_ = await make_entries(sessions, doctypes, 2, STUDENT_DOCTYPE, offset=19)
    settings = ArchiveSettings(schedule=("0 15 * * *", "0 2 * * *"))
    # A clock running 0.2 s before the next scheduled time, at real speed.
    real = datetime.now(UTC)
    offset = settings.next_run(real) - real - timedelta(seconds=0.2)
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_scheduled(
            sessions,
            doctypes,
            settings,
            stop=stop,
            clock=lambda: datetime.now(UTC) + offset,
            manager=plugin_manager(),
        )
    )
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            rows = await entries(sessions, ids_)
            if all(r.status == ArchiveStatus.ARCHIVED for r in rows):
                break
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=10)
    assert_archived_once(elements, rows)


async def test_cli_archive_run(sessions, app, elements, database_url) -> None:
    doctypes = app.state.tavle.doctypes
    ids_ = await make_entries(sessions, doctypes, 3, STUDENT_DOCTYPE, offset=17)
    env = {
        **os.environ,
        "TAVLE_DATABASE_URL": database_url,
        "TAVLE_ELEMENTS_URL": elements.base_url,
        "TAVLE_ELEMENTS_TRANSPORT": "http",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "core.cli",
        "archive",
        "run",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    assert "Arkivkjøring ferdig" in out.decode() and "arkivert" in out.decode()
    assert_archived_once(elements, await entries(sessions, ids_))
