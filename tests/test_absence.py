"""Absence and remarks through GraphQL: who may register for whom, the automatic notices
(inbox, email copies through a real SMTP server), the same-day SMS for unannounced
absence (once per student per day, also under concurrency), an SMS gateway that is down
(delays, loses nothing), and the reports.

The database is shared by every test file of a run, so each test uses its own students
(the SMS is once per student per day) and only ever works its own outbox rows
(`outbox.drain(..., only=ids)`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from core import outbox
from core.absence.service import today
from core.models import (
    Absence,
    AbsenceSmsNotice,
    AuditEvent,
    Delivery,
    DeliveryStatus,
    Group,
    GroupMembership,
    Guardianship,
    Message,
    MessageRecipient,
    Person,
    Remark,
    SchoolYear,
)
from core.outbox import OutboxSettings
from core.schema.ids import decode_pk, encode
from tests.conftest import error_codes
from tests.fakes.sms_gateway import FakeSmsGateway
from tests.fakes.smtp_server import FakeSmtpServer

TEACHER_5A = "laerer.nordby.5a"
TEACHER_6B = "laerer.nordby.6b"
HANSEN = "foresatt.hansen"  # guardian of Emma (5A, Nordby) and Noah (9B, Sørby)
BERG = "foresatt.berg"  # guardian of Ida (6B, Nordby)
TOKEN = "rapport-hemmelighet"
# Backoff long enough that a drain right after a failure finds nothing due (the failing
# pass itself takes a while), short enough to wait out in a test.
FAST = OutboxSettings(batch_size=50, max_attempts=4, backoff_seconds=1.0, max_backoff_seconds=1.0)

REGISTER = """
mutation($input: RegisterAbsenceInput!) {
  registerAbsence(input: $input) {
    id date wholeDay lessons reportedBy validReason reason guardianSmsSent
    registeredBy { name } student { name }
  }
}"""
REMARK = """
mutation($input: RegisterRemarkInput!) {
  registerRemark(input: $input) { id kind text registeredBy { name } student { name } }
}"""
ABSENCE_REPORT = """
query($s: ID!, $from: Date!, $to: Date!) {
  absenceReport(studentId: $s, from: $from, to: $to) {
    from to student { name }
    absences { date wholeDay lessons reportedBy validReason }
    totals { wholeDays lessons validWholeDays validLessons reportedByGuardian registeredBySchool }
  }
}"""
REMARK_REPORT = """
query($s: ID!, $from: Date!, $to: Date!) {
  remarkReport(studentId: $s, from: $from, to: $to) {
    orderCount conductCount remarks { kind text }
  }
}"""


# -- helpers ---------------------------------------------------------------------------


def gid(pk: int) -> str:
    return encode("Student", pk)


async def student_pk(sessions: Any, name: str) -> int:
    given, family = name.split(" ", 1)
    async with sessions() as s:
        return (
            await s.execute(
                select(Person.id).where(Person.given_name == given, Person.family_name == family)
            )
        ).scalar_one()


async def class_students(sessions: Any, class_name: str, school_id: int = 1) -> list[int]:
    """Students of a class whose guardians all have a mobile number (the SMS tests need
    someone to text), Emma and Ida left out (other tests use them)."""
    async with sessions() as s:
        students = list(
            (
                await s.execute(
                    select(GroupMembership.student_id)
                    .join(Group, Group.id == GroupMembership.group_id)
                    .join(Person, Person.id == GroupMembership.student_id)
                    .where(
                        Group.name == class_name,
                        Group.school_id == school_id,
                        Person.username.is_(None),
                    )
                    .order_by(GroupMembership.student_id)
                )
            ).scalars()
        )
        chosen = []
        for student in students:
            mobiles = [g.mobile for g in await guardians_of(s, student)]
            if mobiles and all(mobiles):
                chosen.append(student)
        return chosen


async def guardians_of(session: Any, student: int) -> list[Person]:
    return list(
        (
            await session.execute(
                select(Person)
                .join(Guardianship, Guardianship.guardian_id == Person.id)
                .where(
                    Guardianship.student_id == student,
                    Guardianship.parental_responsibility.is_(True),
                )
                .order_by(Person.id)
            )
        ).scalars()
    )


async def count(sessions: Any, model: Any, *where: Any) -> int:
    async with sessions() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar()


async def sms_rows(sessions: Any, message_id: int) -> list[Delivery]:
    async with sessions() as s:
        return list(
            (
                await s.execute(
                    select(Delivery)
                    .where(Delivery.message_id == message_id, Delivery.channel == "sms")
                    .order_by(Delivery.id)
                )
            ).scalars()
        )


async def notice_of(sessions: Any, absence_gid: str) -> int:
    """The notice message a registration wrote (named in its audit event)."""
    async with sessions() as s:
        detail = (
            await s.execute(
                select(AuditEvent.detail).where(
                    AuditEvent.action == "register_absence",
                    AuditEvent.resource_id == str(decode_pk(absence_gid, "Absence")),
                )
            )
        ).scalar_one()
    return detail["notice_message_id"]


async def register(gql: Any, username: str, student: int, **fields: Any) -> dict[str, Any]:
    payload = {"studentId": gid(student), "date": today().isoformat(), **fields}
    return await gql.query(username, REGISTER, {"input": payload})


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
async def school_year_covers_today(sessions: Any) -> None:
    """The demo's current school year is 2026/2027; "today" must fall inside it for the
    same-day rules to apply, whatever day the suite runs on."""
    async with sessions() as s, s.begin():
        year = (await s.execute(select(SchoolYear).where(SchoolYear.is_current))).scalar_one()
        day = today()
        year.starts_on = min(year.starts_on, day - timedelta(days=30))
        year.ends_on = max(year.ends_on, day + timedelta(days=30))


@pytest.fixture(scope="module")
def gateway_server() -> Iterator[FakeSmsGateway]:
    with FakeSmsGateway(username="tavle", password="hemmelig", id_prefix="gw-absence") as server:
        yield server


@pytest.fixture
def gateway(gateway_server: FakeSmsGateway, monkeypatch: pytest.MonkeyPatch) -> FakeSmsGateway:
    if gateway_server._server is None:  # a test that took it down failed before up()
        gateway_server.up()
    gateway_server.reset()
    for name, value in {
        "TAVLE_SMS_BASE_URL": gateway_server.base_url,
        "TAVLE_SMS_USERNAME": "tavle",
        "TAVLE_SMS_PASSWORD": "hemmelig",
        "TAVLE_SMS_SENDER": "Nordby",
        "TAVLE_SMS_CALLBACK_URL": "http://tavle.test/callbacks/sms",
        "TAVLE_SMS_CALLBACK_TOKEN": TOKEN,
        "TAVLE_SMS_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(name, value)
    return gateway_server


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as server:
        monkeypatch.setenv("TAVLE_SMTP_HOST", server.host)
        monkeypatch.setenv("TAVLE_SMTP_PORT", str(server.port))
        monkeypatch.setenv("TAVLE_SMTP_STARTTLS", "0")
        monkeypatch.setenv("TAVLE_SMTP_FROM", "Nordby skole <noreply@nordby.example.no>")
        monkeypatch.delenv("TAVLE_SMTP_USERNAME", raising=False)
        monkeypatch.delenv("TAVLE_SMTP_PASSWORD", raising=False)
        yield server


# -- scope -----------------------------------------------------------------------------


async def test_teacher_registers_for_own_student_and_the_guardians_get_the_notice(
    gql: Any, sessions: Any, smtp: FakeSmtpServer
) -> None:
    emma = await student_pk(sessions, "Emma Hansen")
    yesterday = (today() - timedelta(days=1)).isoformat()
    result = await gql.query(
        TEACHER_5A,
        REGISTER,
        {
            "input": {
                "studentId": gid(emma),
                "date": yesterday,
                "wholeDay": False,
                "lessons": [3, 1],
                "validReason": True,
                "reason": "Tannlege",
            }
        },
    )
    assert not result.get("errors"), result
    absence = result["data"]["registerAbsence"]
    assert absence["student"]["name"] == "Emma Hansen"
    assert absence["date"] == yesterday
    assert (absence["wholeDay"], absence["lessons"]) == (False, [1, 3])
    assert (absence["reportedBy"], absence["validReason"]) == ("SCHOOL", True)
    assert absence["reason"] == "Tannlege"
    # Not today: no same-day SMS, only the notice.
    assert absence["guardianSmsSent"] is False

    message_id = await notice_of(sessions, absence["id"])
    async with sessions() as s:
        message = await s.get(Message, message_id)
        assert message is not None
        assert message.subject == "Fravær registrert: Emma Hansen"
        assert "timene 1 og 3" in message.body and "gyldig grunn" in message.body
        recipients = set(
            (
                await s.execute(
                    select(MessageRecipient.person_id).where(
                        MessageRecipient.message_id == message_id
                    )
                )
            ).scalars()
        )
        guardians = await guardians_of(s, emma)
        deliveries = list(
            (await s.execute(select(Delivery).where(Delivery.message_id == message_id))).scalars()
        )
    assert recipients == {g.id for g in guardians}
    assert any(g.username == HANSEN for g in guardians)
    forwarding = {g.id for g in guardians if g.email} & {
        g.guardian_id
        for g in await _guardianships(sessions, emma)
        if g.forward_to_email and g.parental_responsibility
    }
    assert {d.recipient_id for d in deliveries if d.channel == "email"} == forwarding
    assert not [d for d in deliveries if d.channel == "sms"]

    if forwarding:
        ids = [d.id for d in deliveries]
        assert await outbox.drain(sessions, FAST, only=ids) == len(ids)
        assert {m.subject for m in smtp.messages} == {"Fravær registrert: Emma Hansen"}


async def _guardianships(sessions: Any, student: int) -> list[Guardianship]:
    async with sessions() as s:
        return list(
            (
                await s.execute(select(Guardianship).where(Guardianship.student_id == student))
            ).scalars()
        )


async def test_teacher_cannot_register_for_another_class(gql: Any, sessions: Any) -> None:
    ida = await student_pk(sessions, "Ida Berg")
    before = await count(sessions, Absence, Absence.student_id == ida)
    result = await register(gql, TEACHER_5A, ida)
    assert error_codes(result) == ["FORBIDDEN"]
    remark = await gql.query(
        TEACHER_5A, REMARK, {"input": {"studentId": gid(ida), "kind": "ORDER", "text": "Uro"}}
    )
    assert error_codes(remark) == ["FORBIDDEN"]
    assert await count(sessions, Absence, Absence.student_id == ida) == before
    assert await count(sessions, Remark, Remark.student_id == ida) == 0


async def test_guardian_reports_for_own_children_only(gql: Any, sessions: Any) -> None:
    emma = await student_pk(sessions, "Emma Hansen")
    ida = await student_pk(sessions, "Ida Berg")
    tomorrow = (today() + timedelta(days=1)).isoformat()
    result = await gql.query(
        HANSEN,
        REGISTER,
        {"input": {"studentId": gid(emma), "date": tomorrow, "reason": "Legetime"}},
    )
    assert not result.get("errors"), result
    absence = result["data"]["registerAbsence"]
    assert absence["reportedBy"] == "GUARDIAN" and absence["validReason"] is False
    # The contact teacher hears about it too (seed 003: "Kontaktlærer mottar SMS fra
    # foresatte ved fravær").
    message_id = await notice_of(sessions, absence["id"])
    async with sessions() as s:
        teacher = (
            await s.execute(select(Person.id).where(Person.username == TEACHER_5A))
        ).scalar_one()
        recipients = set(
            (
                await s.execute(
                    select(MessageRecipient.person_id).where(
                        MessageRecipient.message_id == message_id
                    )
                )
            ).scalars()
        )
    assert teacher in recipients

    other = await register(gql, HANSEN, ida)
    assert error_codes(other) == ["FORBIDDEN"]
    decided = await register(gql, HANSEN, emma, validReason=True)
    assert error_codes(decided) == ["BAD_USER_INPUT"]
    as_school = await register(gql, HANSEN, emma, reportedBy="SCHOOL")
    assert error_codes(as_school) == ["BAD_USER_INPUT"]
    # Guardians do not give remarks.
    remark = await gql.query(
        HANSEN, REMARK, {"input": {"studentId": gid(emma), "kind": "ORDER", "text": "Nei"}}
    )
    assert error_codes(remark) == ["FORBIDDEN"]


async def test_students_and_principal_of_another_school_are_refused(
    gql: Any, sessions: Any
) -> None:
    noah = await student_pk(sessions, "Noah Hansen")
    emma = await student_pk(sessions, "Emma Hansen")
    assert error_codes(await register(gql, "elev.noah.hansen", noah)) == ["FORBIDDEN"]
    assert error_codes(await register(gql, "rektor.sorby", emma)) == ["FORBIDDEN"]
    assert error_codes(await register(gql, None, emma)) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"wholeDay": False}, "lessons"),
        ({"wholeDay": False, "lessons": [0]}, "lessons"),
        ({"wholeDay": False, "lessons": [2, 2]}, "lessons"),
        ({"wholeDay": True, "lessons": [1]}, "lessons"),
        ({"date": "2019-01-07"}, "date"),
        ({"date": "in three days"}, "date"),
        ({"reason": "x" * 501}, "reason"),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    gql: Any, sessions: Any, fields: dict[str, Any], field: str
) -> None:
    emma = await student_pk(sessions, "Emma Hansen")
    if fields.get("date") == "in three days":  # the school registers what happened
        fields = {"date": (today() + timedelta(days=3)).isoformat()}
    before = await count(sessions, Absence)
    result = await register(gql, TEACHER_5A, emma, **fields)
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert result["errors"][0]["extensions"]["field"] == field
    assert await count(sessions, Absence) == before


# -- the same-day SMS --------------------------------------------------------------------


async def test_unannounced_absence_texts_the_guardians_once_a_day(gql: Any, sessions: Any) -> None:
    student = (await class_students(sessions, "5A"))[0]
    first = await register(gql, TEACHER_5A, student, wholeDay=False, lessons=[1])
    assert not first.get("errors"), first
    assert first["data"]["registerAbsence"]["guardianSmsSent"] is True
    message_id = await notice_of(sessions, first["data"]["registerAbsence"]["id"])
    rows = await sms_rows(sessions, message_id)
    async with sessions() as s:
        guardians = await guardians_of(s, student)
        message = await s.get(Message, message_id)
    assert {r.recipient_id for r in rows} == {g.id for g in guardians}
    assert message is not None and message.subject.startswith("Uanmeldt fravær")

    second = await register(gql, TEACHER_5A, student, wholeDay=False, lessons=[2])
    assert second["data"]["registerAbsence"]["guardianSmsSent"] is False
    later_id = await notice_of(sessions, second["data"]["registerAbsence"]["id"])
    assert await sms_rows(sessions, later_id) == []
    assert (
        await count(
            sessions,
            AbsenceSmsNotice,
            AbsenceSmsNotice.student_id == student,
            AbsenceSmsNotice.date == today(),
        )
        == 1
    )


async def test_concurrent_registrations_send_one_sms(gql: Any, sessions: Any) -> None:
    student = (await class_students(sessions, "5A"))[1]
    results = await asyncio.gather(
        *(register(gql, TEACHER_5A, student, wholeDay=False, lessons=[n]) for n in (1, 2, 3, 4))
    )
    assert all(not r.get("errors") for r in results), results
    sent = [r["data"]["registerAbsence"]["guardianSmsSent"] for r in results]
    assert sent.count(True) == 1
    async with sessions() as s:
        guardians = await guardians_of(s, student)
        total = (
            await s.execute(
                select(func.count())
                .select_from(Delivery)
                .join(Message, Message.id == Delivery.message_id)
                .where(Message.about_student_id == student, Delivery.channel == "sms")
            )
        ).scalar()
    assert total == len(guardians)


async def test_notice_from_home_means_no_sms(gql: Any, sessions: Any) -> None:
    # The guardian reported it in the app ...
    ida = await student_pk(sessions, "Ida Berg")
    reported = await register(gql, BERG, ida)
    assert reported["data"]["registerAbsence"]["reportedBy"] == "GUARDIAN"
    registered = await register(gql, TEACHER_6B, ida)
    assert registered["data"]["registerAbsence"]["guardianSmsSent"] is False
    # ... or phoned the contact teacher, who registered the notice from home.
    student = (await class_students(sessions, "5A"))[2]
    phoned = await register(gql, TEACHER_5A, student, reportedBy="GUARDIAN")
    assert phoned["data"]["registerAbsence"]["guardianSmsSent"] is False
    school = await register(gql, TEACHER_5A, student)
    assert school["data"]["registerAbsence"]["guardianSmsSent"] is False
    async with sessions() as s:
        texts = (
            await s.execute(
                select(func.count())
                .select_from(Delivery)
                .join(Message, Message.id == Delivery.message_id)
                .where(Message.about_student_id.in_([ida, student]), Delivery.channel == "sms")
            )
        ).scalar()
    assert texts == 0


async def test_gateway_down_delays_the_sms_but_loses_none(
    gql: Any, sessions: Any, gateway: FakeSmsGateway, app: Any
) -> None:
    students = (await class_students(sessions, "5A"))[3:6]
    ids: list[int] = []
    for student in students:
        result = await register(gql, TEACHER_5A, student)
        assert result["data"]["registerAbsence"]["guardianSmsSent"] is True
        message_id = await notice_of(sessions, result["data"]["registerAbsence"]["id"])
        ids += [r.id for r in await sms_rows(sessions, message_id)]
    assert ids

    gateway.down()
    try:
        assert await outbox.drain(sessions, FAST, only=ids) == len(ids)
        async with sessions() as s:
            rows = list((await s.execute(select(Delivery).where(Delivery.id.in_(ids)))).scalars())
        assert {r.status for r in rows} == {DeliveryStatus.QUEUED}
        assert all(r.attempts == 1 and r.last_error for r in rows)
        # Nothing is due until the backoff has passed.
        assert await outbox.drain(sessions, FAST, only=ids) == 0
    finally:
        gateway.up()
    await asyncio.sleep(FAST.max_backoff_seconds + 0.05)
    assert await outbox.drain(sessions, FAST, only=ids) == len(ids)
    assert await outbox.drain(sessions, FAST, only=ids) == 0

    async with sessions() as s:
        rows = list((await s.execute(select(Delivery).where(Delivery.id.in_(ids)))).scalars())
    assert {r.status for r in rows} == {DeliveryStatus.SENT}
    assert sorted(m.reference for m in gateway.messages) == sorted(outbox.reference(i) for i in ids)
    assert all("borte fra skolen" in m.text for m in gateway.messages)
    assert all(r.cost > 0 and r.units >= 1 for r in rows)

    # The gateway's delivery report reaches the delivery.
    first = gateway.messages[0]
    response = await gateway.send_report(
        first.id, "delivered", transport=httpx.ASGITransport(app=app)
    )
    assert response.status_code == 200, response.text
    async with sessions() as s:
        reported = (
            await s.execute(select(Delivery).where(Delivery.external_id == first.id))
        ).scalar_one()
    assert reported.status == DeliveryStatus.DELIVERED


# -- remarks and reports -----------------------------------------------------------------


async def test_remark_by_teacher_notifies_the_guardians(gql: Any, sessions: Any) -> None:
    emma = await student_pk(sessions, "Emma Hansen")
    result = await gql.data(
        TEACHER_5A,
        REMARK,
        {"input": {"studentId": gid(emma), "kind": "CONDUCT", "text": "  Kastet snøball inne. "}},
    )
    remark = result["registerRemark"]
    assert (remark["kind"], remark["text"]) == ("CONDUCT", "Kastet snøball inne.")
    async with sessions() as s:
        message = (
            (
                await s.execute(
                    select(Message)
                    .where(Message.about_student_id == emma, Message.subject.like("Anmerkning%"))
                    .order_by(Message.id.desc())
                )
            )
            .scalars()
            .first()
        )
        assert message is not None
        recipients = set(
            (
                await s.execute(
                    select(MessageRecipient.person_id).where(
                        MessageRecipient.message_id == message.id
                    )
                )
            ).scalars()
        )
        guardians = await guardians_of(s, emma)
    assert message.subject == "Anmerkning i atferd: Emma Hansen"
    assert "Kastet snøball inne." in message.body
    assert recipients == {g.id for g in guardians}
    empty = await gql.query(
        TEACHER_5A, REMARK, {"input": {"studentId": gid(emma), "kind": "ORDER", "text": " "}}
    )
    assert error_codes(empty) == ["BAD_USER_INPUT"]


async def test_reports_per_student_and_period(gql: Any, sessions: Any) -> None:
    student = (await class_students(sessions, "5A"))[6]
    day = today()
    for payload in (
        {"date": (day - timedelta(days=2)).isoformat(), "validReason": True},
        {"date": (day - timedelta(days=1)).isoformat(), "wholeDay": False, "lessons": [1, 2]},
        {"date": (day - timedelta(days=40)).isoformat()},  # outside the period asked for
    ):
        result = await gql.query(
            TEACHER_5A, REGISTER, {"input": {"studentId": gid(student), **payload}}
        )
        assert not result.get("errors"), result
    await gql.data(
        TEACHER_5A, REMARK, {"input": {"studentId": gid(student), "kind": "ORDER", "text": "A"}}
    )
    period = {
        "s": gid(student),
        "from": (day - timedelta(days=10)).isoformat(),
        "to": day.isoformat(),
    }
    report = (await gql.data(TEACHER_5A, ABSENCE_REPORT, period))["absenceReport"]
    assert [a["date"] for a in report["absences"]] == [
        (day - timedelta(days=2)).isoformat(),
        (day - timedelta(days=1)).isoformat(),
    ]
    assert report["totals"] == {
        "wholeDays": 1,
        "lessons": 2,
        "validWholeDays": 1,
        "validLessons": 0,
        "reportedByGuardian": 0,
        "registeredBySchool": 2,
    }
    remarks = (await gql.data(TEACHER_5A, REMARK_REPORT, period))["remarkReport"]
    assert (remarks["orderCount"], remarks["conductCount"]) == (1, 0)

    # Out of scope: a guardian of another child, a teacher of another class.
    assert error_codes(await gql.query(BERG, ABSENCE_REPORT, period)) == ["FORBIDDEN"]
    assert error_codes(await gql.query(TEACHER_6B, REMARK_REPORT, period)) == ["FORBIDDEN"]
    backwards = {**period, "from": period["to"], "to": period["from"]}
    assert error_codes(await gql.query(TEACHER_5A, ABSENCE_REPORT, backwards)) == ["BAD_USER_INPUT"]

    # The Student type lists them too, for whoever may see them.
    query = "query($id: ID!) { student(id: $id) { absences { date } remarks { kind } } }"
    seen = (await gql.data(TEACHER_5A, query, {"id": gid(student)}))["student"]
    assert len(seen["absences"]) == 3 and [r["kind"] for r in seen["remarks"]] == ["ORDER"]


async def test_guardian_reads_own_childs_report(gql: Any, sessions: Any) -> None:
    emma = await student_pk(sessions, "Emma Hansen")
    day = today()
    period = {
        "s": gid(emma),
        "from": (day - timedelta(days=5)).isoformat(),
        "to": (day + timedelta(days=5)).isoformat(),
    }
    report = (await gql.data(HANSEN, ABSENCE_REPORT, period))["absenceReport"]
    assert report["student"]["name"] == "Emma Hansen"
    assert report["totals"]["reportedByGuardian"] >= 1
    assert report["totals"]["registeredBySchool"] >= 1


async def test_unknown_student_is_not_found(gql: Any) -> None:
    period = {"s": gid(10_000_000), "from": "2026-09-01", "to": "2026-09-30"}
    assert error_codes(await gql.query(TEACHER_5A, ABSENCE_REPORT, period)) == ["NOT_FOUND"]
    result = await register(gql, TEACHER_5A, 10_000_000)
    assert error_codes(result) == ["NOT_FOUND"]


async def test_year_report_is_a_document(gql: Any, sessions: Any) -> None:
    emma = await student_pk(sessions, "Emma Hansen")
    mutation = """
    mutation($input: CreateAbsenceYearReportInput!) {
      createAbsenceYearReport(input: $input) {
        id doctype { key archive } status fields student { name }
      }
    }"""
    result = await gql.query(TEACHER_5A, mutation, {"input": {"studentId": gid(emma)}})
    assert not result.get("errors"), result
    document = result["data"]["createAbsenceYearReport"]
    assert document["doctype"]["key"] == "fravaersrapport"
    assert document["status"] == "DRAFT"
    assert document["student"]["name"] == "Emma Hansen"
    assert document["doctype"]["archive"] == "OPTIONAL"
    fields = document["fields"]
    assert fields["periode"] == "hele skoleåret" and fields["skolear"] == "2026/2027"
    # Emma's absence so far: a lesson absence by the school (yesterday), reports from
    # home and a whole day registered after one; the report adds them up.
    async with sessions() as s:
        rows = list((await s.execute(select(Absence).where(Absence.student_id == emma))).scalars())
    assert fields["dager"] == sum(1 for a in rows if a.whole_day)
    assert fields["timer"] == sum(len(a.lessons) for a in rows if not a.whole_day)
    assert len(fields["detaljer"].splitlines()) == len(rows)
    for outsider in (BERG, HANSEN, TEACHER_6B):  # Emma's own guardian reads, not files
        refused = await gql.query(outsider, mutation, {"input": {"studentId": gid(emma)}})
        assert error_codes(refused) == ["FORBIDDEN"], outsider
