"""The archive queue through GraphQL, with real finalize and send: doctypes archived
"always" are queued when finalized or sent (by their archive_on), "optional" ones only by
`archiveDocument`, only by the roles the doctype names and only when its preconditions
hold, "never" ones not at all; the archive log, counts and folders in the caller's scope.

Finalizing renders a real PDF (~0.2 s), so only a few documents are made here.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from core.archive.preconditions import unmet_preconditions
from core.archive.settings import ArchiveSettings
from core.doctypes import sample_fields
from core.models import ArchiveEntry, ArchiveFolder, ArchiveStatus, School
from core.schema.ids import decode_pk
from tests.conftest import error_codes

TEACHER = "laerer.nordby.5a"  # contact teacher of Emma Hansen's class (5A, Nordby)
ADMIN = "skoleadmin.nordby"

CREATE = """mutation($input: CreateDocumentInput!) {
  createDocument(input: $input) { id status archive { status } } }"""
FINALIZE = "mutation($id: ID!) { finalizeDocument(id: $id) { id status archive { status } } }"
SEND = "mutation($id: ID!) { sendDocument(id: $id) { id status archive { status } } }"
ARCHIVE = """mutation($id: ID!) {
  archiveDocument(id: $id) { id archive { id status registryYear registrySequence receipt
                                          caseOwner folder { kind title } } } }"""
LOG = """query($status: ArchiveStatus, $school: ID) {
  archiveLog(status: $status, school: $school, first: 200) {
    totalCount edges { node { id status schoolName document { id } } } } }"""
COUNTS = "{ archiveCounts { schoolId schoolName queued archived failed dismissed } }"


async def _document(
    gql: Any, app: Any, username: str, doctype: str, student: str, **fields: Any
) -> str:
    values = {**sample_fields(app.state.tavle.doctypes[doctype]), **fields}
    data = await gql.data(
        username, CREATE, {"input": {"doctype": doctype, "studentId": student, "fields": values}}
    )
    return data["createDocument"]["id"]


async def _finalized(gql: Any, app: Any, username: str, doctype: str, student: str, **fields: Any):
    gid = await _document(gql, app, username, doctype, student, **fields)
    data = await gql.data(username, FINALIZE, {"id": gid})
    return gid, data["finalizeDocument"]


async def _entry_count(sessions: Any, document_gid: str) -> int:
    async with sessions() as s:
        return (
            await s.execute(
                select(func.count())
                .select_from(ArchiveEntry)
                .where(ArchiveEntry.document_id == decode_pk(document_gid, "Document"))
            )
        ).scalar()


async def test_always_on_finalize_is_queued_with_the_finalize(gql, app, sessions, emma) -> None:
    gid, finalized = await _finalized(gql, app, TEACHER, "fravaersvarsel", emma)
    assert finalized["status"] == "FINALIZED"
    assert finalized["archive"] == {"status": "QUEUED"}
    assert await _entry_count(sessions, gid) == 1
    async with sessions() as s:
        entry = (
            await s.execute(
                select(ArchiveEntry).where(ArchiveEntry.document_id == decode_pk(gid, "Document"))
            )
        ).scalar_one()
        folder = await s.get(ArchiveFolder, entry.folder_id)
        school = await s.get(School, entry.school_id)
    assert entry.status == ArchiveStatus.QUEUED and entry.attempts == 0
    assert entry.case_owner == school.case_owner_initials and entry.case_owner
    assert folder.kind.value == "student" and folder.title == "Elevmappe - Emma Hansen"
    assert folder.student_id == decode_pk(emma, "Student")
    # Ticking "send to archive" on a doctype archived always is refused.
    refused = await gql.query(TEACHER, ARCHIVE, {"id": gid})
    assert error_codes(refused) == ["BAD_USER_INPUT"]
    assert "automatisk" in refused["errors"][0]["message"]


async def test_always_on_send_is_queued_when_sent(gql, app, sessions, emma) -> None:
    gid, finalized = await _finalized(
        gql, app, TEACHER, "varsel_orden_atferd", emma, karakter="orden"
    )
    assert finalized["archive"] is None  # archive_on: send
    sent = await gql.data(TEACHER, SEND, {"id": gid})
    assert sent["sendDocument"]["status"] == "SENT"
    assert sent["sendDocument"]["archive"] == {"status": "QUEUED"}
    assert await _entry_count(sessions, gid) == 1


async def test_never_is_refused(gql, app, sessions, emma) -> None:
    gid, finalized = await _finalized(gql, app, TEACHER, "notat_elev", emma)
    assert finalized["archive"] is None
    refused = await gql.query(TEACHER, ARCHIVE, {"id": gid})
    assert error_codes(refused) == ["BAD_USER_INPUT"]
    assert "aldri" in refused["errors"][0]["message"]
    assert await _entry_count(sessions, gid) == 0


async def test_optional_needs_the_precondition_and_a_named_role(gql, app, sessions, emma) -> None:
    # Absence report: only for the whole school year (archive_roles: skoleadmin, laerer).
    term, _ = await _finalized(gql, app, TEACHER, "fravaersrapport", emma, periode="1. termin")
    refused = await gql.query(TEACHER, ARCHIVE, {"id": term})
    assert error_codes(refused) == ["BAD_USER_INPUT"]
    assert "hele skoleåret" in refused["errors"][0]["message"]
    assert await _entry_count(sessions, term) == 0

    draft = await _document(gql, app, TEACHER, "fravaersrapport", emma, periode="hele skoleåret")
    assert error_codes(await gql.query(TEACHER, ARCHIVE, {"id": draft})) == ["BAD_USER_INPUT"]
    whole = (await gql.data(TEACHER, FINALIZE, {"id": draft}))["finalizeDocument"]["id"]
    # The guardian may not read a restricted report, so may not archive it either.
    assert error_codes(await gql.query("foresatt.hansen", ARCHIVE, {"id": whole})) == ["FORBIDDEN"]
    data = await gql.data(TEACHER, ARCHIVE, {"id": whole})
    archive = data["archiveDocument"]["archive"]
    assert archive["status"] == "QUEUED" and archive["registryYear"] is None
    assert archive["folder"] == {"kind": "STUDENT", "title": "Elevmappe - Emma Hansen"}
    again = await gql.query(TEACHER, ARCHIVE, {"id": whole})
    assert error_codes(again) == ["BAD_USER_INPUT"]
    assert await _entry_count(sessions, whole) == 1

    # Moving notice: only skoleadmin or kommuneadmin may send it to the archive.
    notice, _ = await _finalized(gql, app, ADMIN, "flyttemelding", emma)
    denied = await gql.query(TEACHER, ARCHIVE, {"id": notice})
    assert error_codes(denied) == ["FORBIDDEN"]
    data = await gql.data(ADMIN, ARCHIVE, {"id": notice})
    assert data["archiveDocument"]["archive"]["status"] == "QUEUED"


def test_preconditions_read_the_doctypes_fields(app) -> None:
    doctypes = app.state.tavle.doctypes
    year = None
    report = doctypes["fravaersrapport"]
    assert unmet_preconditions(report, {"periode": "hele skoleåret"}, year) == []
    assert unmet_preconditions(report, {"periode": "2. termin"}, year)
    assessments = doctypes["vurderinger"]
    assert unmet_preconditions(assessments, {"alle_avsluttet": True}, year) == []
    assert unmet_preconditions(assessments, {"alle_avsluttet": False}, year)
    grades = doctypes["terminkarakterer"]
    assert unmet_preconditions(grades, {"karakterer_kontrollert": True}, year) == []
    assert "kontrollert" in unmet_preconditions(grades, {}, year)[0]
    remarks = doctypes["anmerkningsrapport"]
    assert unmet_preconditions(remarks, {"nedsatt_karakter": True}, year) == []
    assert unmet_preconditions(remarks, {"karakter_orden": "Lite god"}, year) == []
    assert unmet_preconditions(remarks, {"karakter_orden": "God"}, year)
    # A doctype naming a precondition without the field it is read from says so.
    broken = type(
        "Doctype", (), {"fields": (), "archive_preconditions": ("all_assessments_closed",)}
    )
    assert "mangler" in unmet_preconditions(broken, {}, year)[0]


async def test_log_counts_and_folders_in_scope(gql, app, sessions, emma) -> None:
    await _finalized(gql, app, TEACHER, "fravaersvarsel", emma)
    admin_log = (await gql.data(ADMIN, LOG, {}))["archiveLog"]
    assert admin_log["totalCount"] >= 1
    assert {e["node"]["schoolName"] for e in admin_log["edges"]} == {"Nordby skole"}
    queued = (await gql.data(ADMIN, LOG, {"status": "QUEUED"}))["archiveLog"]["edges"]
    assert queued and all(e["node"]["status"] == "QUEUED" for e in queued)
    everyone = (await gql.data("kommuneadmin", LOG, {}))["archiveLog"]["totalCount"]
    assert everyone >= admin_log["totalCount"]
    for outsider in ("foresatt.hansen", TEACHER, "rektor.sorby"):
        assert error_codes(await gql.query(outsider, LOG, {})) == ["FORBIDDEN"]

    counts = (await gql.data(ADMIN, COUNTS))["archiveCounts"]
    assert [c["schoolName"] for c in counts] == ["Nordby skole"]
    async with sessions() as s:
        nordby = (await s.execute(select(School.id).where(School.name == "Nordby skole"))).scalar()
        by_status = dict(
            (
                await s.execute(
                    select(ArchiveEntry.status, func.count())
                    .where(ArchiveEntry.school_id == nordby)
                    .group_by(ArchiveEntry.status)
                )
            ).all()
        )
    assert counts[0]["queued"] == by_status.get(ArchiveStatus.QUEUED, 0)
    assert counts[0]["archived"] == by_status.get(ArchiveStatus.ARCHIVED, 0)

    folders = "{ archiveFolders(kind: STUDENT) { title kind caseYear closed } }"
    titles = [f["title"] for f in (await gql.data(ADMIN, folders))["archiveFolders"]]
    assert "Elevmappe - Emma Hansen" in titles
    assert error_codes(await gql.query(TEACHER, folders)) == ["FORBIDDEN"]

    closing = "mutation($id: ID!) { closeSchoolFolder(id: $id) { closed } }"
    student_folder = await gql.query(
        "kommuneadmin", "{ archiveFolders(kind: STUDENT) { id title } }"
    )
    emma_folder = next(
        f["id"]
        for f in student_folder["data"]["archiveFolders"]
        if f["title"] == "Elevmappe - Emma Hansen"
    )
    refused = await gql.query("kommuneadmin", closing, {"id": emma_folder})
    assert error_codes(refused) == ["BAD_USER_INPUT"]  # only school folders close
    assert error_codes(await gql.query(ADMIN, closing, {"id": emma_folder})) == ["FORBIDDEN"]


async def test_archive_log_statement_count_does_not_grow_with_the_page(gql, app, sessions):
    from tests.test_archive_batches import make_entries
    from tests.test_query_cost import count_queries

    await make_entries(sessions, app.state.tavle.doctypes, 30, "fravaersvarsel", offset=60)
    query = """query($n: Int) { archiveLog(first: $n) { totalCount edges { node {
        status receipt attempts registryYear schoolName folder { title caseYear }
        document { title doctype { key } archive { status } } } } } }"""
    engine = app.state.tavle.engine
    await gql.token("kommuneadmin")
    with count_queries(engine) as two:
        await gql.data("kommuneadmin", query, {"n": 2})
    with count_queries(engine) as thirty:
        data = await gql.data("kommuneadmin", query, {"n": 30})
    assert len(data["archiveLog"]["edges"]) == 30
    assert all(e["node"]["document"]["archive"] for e in data["archiveLog"]["edges"])
    assert len(two) == len(thirty), (two, thirty)


def test_schedule_from_config() -> None:
    from datetime import UTC, datetime

    from core.archive.settings import ScheduleError

    settings = ArchiveSettings.from_env({})
    assert settings.schedule == ("0 15 * * *", "0 2 * * *")
    winter = settings.next_run(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))  # 13:00 in Oslo
    assert (winter.hour, winter.day, winter.utcoffset().total_seconds()) == (15, 23, 3600)
    night = settings.next_run(datetime(2026, 11, 23, 14, 0, tzinfo=UTC))  # 15:00 in Oslo
    assert (night.hour, night.day) == (2, 24)
    summer = settings.next_run(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    assert (summer.hour, summer.utcoffset().total_seconds()) == (15, 7200)
    custom = ArchiveSettings.from_env({"TAVLE_ARCHIVE_SCHEDULE": "30 6 * * 1-5"})
    assert custom.next_run(datetime(2026, 11, 21, 12, 0, tzinfo=UTC)).weekday() == 0
    with pytest.raises(ScheduleError):
        ArchiveSettings.from_env({"TAVLE_ARCHIVE_SCHEDULE": "0 25 * * *"})


def test_cli_refuses_a_bad_schedule(monkeypatch, capsys) -> None:
    from core.cli import main

    monkeypatch.setenv("TAVLE_ARCHIVE_SCHEDULE", "not cron")
    with pytest.raises(SystemExit) as exit_:
        main(["archive", "run"])
    assert exit_.value.code == 1
    assert "ugyldig cron-uttrykk" in capsys.readouterr().err


async def test_archive_counts_show_only_the_callers_schools(gql, app, emma) -> None:
    # At least one Nordby entry exists (queued when finalized).
    await _finalized(gql, app, TEACHER, "fravaersvarsel", emma)
    nordby = {c["schoolName"] for c in (await gql.data(ADMIN, COUNTS))["archiveCounts"]}
    assert nordby == {"Nordby skole"}
    everyone = {c["schoolName"] for c in (await gql.data("kommuneadmin", COUNTS))["archiveCounts"]}
    assert "Nordby skole" in everyone
    # Another school's administrator sees none of Nordby's, not even when asking for it.
    other = {
        c["schoolName"] for c in (await gql.data("skoleadmin.vestby", COUNTS))["archiveCounts"]
    }
    assert "Nordby skole" not in other
    schools = (await gql.data("kommuneadmin", "{ schools { id name } }"))["schools"]
    nordby_id = next(s["id"] for s in schools if s["name"] == "Nordby skole")
    asked = await gql.data(
        "skoleadmin.vestby",
        "query($s: ID) { archiveCounts(school: $s) { schoolName } }",
        {"s": nordby_id},
    )
    assert asked["archiveCounts"] == []
    # Teachers, a principal without the administrator role, guardians and students have
    # no archive log at all.
    for username in (TEACHER, "rektor.sorby", "foresatt.hansen", "elev.noah.hansen"):
        assert error_codes(await gql.query(username, COUNTS)) == ["FORBIDDEN"], username
