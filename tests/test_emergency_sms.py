"""The emergency SMS through GraphQL: who may send it, to whom it goes (everyone at the
school with a mobile number, each person once), what it costs, and how the gateway's
delivery reports add up in the summary. The SMS travel to a real HTTP gateway on
loopback (tests/fakes/sms_gateway.py).

Only a few of the school's deliveries are worked here (`outbox.drain(..., only=ids)`);
the rest are closed when the module ends, so no other test file's worker finds them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select, text, update

from core import outbox
from core.emergency.service import choose_recipients
from core.models import (
    Delivery,
    DeliveryStatus,
    EmergencySms,
    Employment,
    Guardianship,
    Message,
    MessageRecipient,
    Person,
    RecipientRole,
    School,
)
from core.models.base import utcnow
from core.outbox import OutboxSettings
from core.schema.ids import decode_pk, encode
from tests.conftest import error_codes
from tests.fakes.sms_gateway import FakeSmsGateway

TOKEN = "beredskap-rapport"
TEXT = "Skolen er stengt i dag på grunn av vannlekkasje. Elevene blir hjemme."
SEND = """
mutation($input: SendEmergencySmsInput!) {
  sendEmergencySms(input: $input) { id recipientCount segments cost school { name } }
}"""
SUMMARY = """
query($id: ID!) {
  emergencySms(id: $id) {
    id text recipientCount segments cost sentBy { name }
    summary { recipients pending sent delivered failed segments cost }
  }
}"""
FAST = OutboxSettings(batch_size=50, max_attempts=3, backoff_seconds=1.0, max_backoff_seconds=1.0)


async def school_id(sessions: Any, name: str) -> int:
    async with sessions() as s:
        return (await s.execute(select(School.id).where(School.name == name))).scalar_one()


async def expected_recipients(sessions: Any, school: int) -> set[int]:
    """Everyone at the school with a mobile, in plain SQL (independent of the service)."""
    query = text(
        """
        SELECT DISTINCT p.id FROM person p
        WHERE p.mobile IS NOT NULL AND trim(p.mobile) <> '' AND p.id IN (
          SELECT e.student_id FROM enrolment e JOIN school_year y ON y.id = e.school_year_id
           WHERE e.school_id = :school AND y.is_current
          UNION
          SELECT g.guardian_id FROM guardianship g
            JOIN enrolment e ON e.student_id = g.student_id
            JOIN school_year y ON y.id = e.school_year_id
           WHERE e.school_id = :school AND y.is_current AND g.parental_responsibility
          UNION
          SELECT m.person_id FROM employment m WHERE m.school_id = :school)
        """
    )
    async with sessions() as s:
        return set((await s.execute(query, {"school": school})).scalars())


@pytest.fixture(scope="module")
async def dual_role(sessions: Any) -> AsyncIterator[int]:
    """A Sørby employee who is also the guardian of a Sørby student: one SMS, not two."""
    sorby = await school_id(sessions, "Sørby ungdomsskole")
    async with sessions() as s, s.begin():
        student = (
            await s.execute(select(Person.id).where(Person.username == "elev.noah.hansen"))
        ).scalar_one()
        person = Person(given_name="Dobbel", family_name="Rolle", mobile="+47 912 00 001")
        s.add(person)
        await s.flush()
        s.add(Employment(person_id=person.id, school_id=sorby, position="Lærer"))
        s.add(Guardianship(guardian_id=person.id, student_id=student, parental_responsibility=True))
        person_id = person.id
    yield person_id
    # Leave the demo's relations as they were for the test files after this one.
    async with sessions() as s, s.begin():
        await s.execute(delete(Employment).where(Employment.person_id == person_id))
        await s.execute(delete(Guardianship).where(Guardianship.guardian_id == person_id))


@pytest.fixture(scope="module", autouse=True)
async def close_leftovers(sessions: Any) -> AsyncIterator[None]:
    """Close the emergency deliveries this module did not work, when it ends."""
    yield
    async with sessions() as s, s.begin():
        messages = select(EmergencySms.message_id)
        await s.execute(
            update(Delivery)
            .where(
                Delivery.message_id.in_(messages),
                Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
            )
            .values(
                status=DeliveryStatus.FAILED, last_error="closed by the test", finished_at=utcnow()
            )
        )


@pytest.fixture(scope="module")
def gateway_server() -> Iterator[FakeSmsGateway]:
    with FakeSmsGateway(username="tavle", password="hemmelig", id_prefix="gw-emergency") as server:
        yield server


@pytest.fixture
def gateway(gateway_server: FakeSmsGateway, monkeypatch: pytest.MonkeyPatch) -> FakeSmsGateway:
    gateway_server.reset()
    for name, value in {
        "TAVLE_SMS_BASE_URL": gateway_server.base_url,
        "TAVLE_SMS_USERNAME": "tavle",
        "TAVLE_SMS_PASSWORD": "hemmelig",
        "TAVLE_SMS_SENDER": "Sorby",
        "TAVLE_SMS_CALLBACK_URL": "http://tavle.test/callbacks/sms",
        "TAVLE_SMS_CALLBACK_TOKEN": TOKEN,
        "TAVLE_SMS_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(name, value)
    return gateway_server


@pytest.fixture(scope="module")
async def sent(gql: Any, sessions: Any, dual_role: int) -> dict[str, Any]:
    """The principal of Sørby sends one emergency SMS to the school."""
    sorby = await school_id(sessions, "Sørby ungdomsskole")
    result = await gql.query(
        "rektor.sorby", SEND, {"input": {"schoolId": encode("School", sorby), "text": TEXT}}
    )
    assert not result.get("errors"), result
    answer = result["data"]["sendEmergencySms"]
    assert answer["school"]["name"] == "Sørby ungdomsskole"
    return {**answer, "school": sorby}


async def _emergency_count(sessions: Any) -> int:
    async with sessions() as s:
        return (await s.execute(select(func.count()).select_from(EmergencySms))).scalar()


@pytest.mark.parametrize(
    ("username", "school"),
    [
        ("rektor.sorby", "Nordby skole"),  # principal of another school
        ("rektor.nordby", "Sørby ungdomsskole"),
        ("skoleadmin.nordby", "Nordby skole"),  # administrator, not principal
        ("laerer.sorby.9b", "Sørby ungdomsskole"),
        ("foresatt.hansen", "Sørby ungdomsskole"),
        ("elev.noah.hansen", "Sørby ungdomsskole"),
    ],
)
async def test_only_the_principal_of_the_school_or_the_municipality_may_send(
    gql: Any, sessions: Any, username: str, school: str
) -> None:
    before = await _emergency_count(sessions)
    target = encode("School", await school_id(sessions, school))
    result = await gql.query(username, SEND, {"input": {"schoolId": target, "text": TEXT}})
    assert error_codes(result) == ["FORBIDDEN"]
    assert await _emergency_count(sessions) == before


@pytest.mark.parametrize(
    ("school", "message", "code"),
    [
        (encode("School", 999_999), TEXT, "NOT_FOUND"),
        (None, "   ", "BAD_USER_INPUT"),
        (None, "Lang melding. " * 120, "BAD_USER_INPUT"),  # 1 680 characters: 11 segments
        (encode("Student", 1), TEXT, "BAD_USER_INPUT"),
    ],
)
async def test_bad_input_is_refused(
    gql: Any, sessions: Any, school: str | None, message: str, code: str
) -> None:
    before = await _emergency_count(sessions)
    target = school or encode("School", await school_id(sessions, "Sørby ungdomsskole"))
    result = await gql.query("rektor.sorby", SEND, {"input": {"schoolId": target, "text": message}})
    assert error_codes(result) == [code]
    assert await _emergency_count(sessions) == before


async def test_goes_to_everyone_with_a_mobile_once(
    sessions: Any, sent: dict[str, Any], dual_role: int
) -> None:
    expected = await expected_recipients(sessions, sent["school"])
    assert dual_role in expected
    assert sent["recipientCount"] == len(expected)
    emergency_id = decode_pk(sent["id"], "EmergencySms")
    async with sessions() as s:
        emergency = await s.get(EmergencySms, emergency_id)
        assert emergency is not None
        deliveries = list(
            (
                await s.execute(
                    select(Delivery.recipient_id, Delivery.channel, Delivery.school_id).where(
                        Delivery.message_id == emergency.message_id
                    )
                )
            ).all()
        )
        recipients = dict(
            (
                await s.execute(
                    select(MessageRecipient.person_id, MessageRecipient.role).where(
                        MessageRecipient.message_id == emergency.message_id
                    )
                )
            ).all()
        )
        message = await s.get(Message, emergency.message_id)
    # One SMS per person: the employee who is also a guardian, and guardians of siblings
    # at the same school, are texted once.
    assert len(deliveries) == len(expected)
    assert {d.recipient_id for d in deliveries} == expected
    assert {(d.channel, d.school_id) for d in deliveries} == {("sms", sent["school"])}
    assert set(recipients) == expected
    assert recipients[dual_role] == RecipientRole.EMPLOYEE
    assert message is not None and message.body == TEXT
    # 71 GSM-7 characters: one segment, 0.69 NOK each, recorded on the school.
    assert sent["segments"] == 1
    assert Decimal(str(sent["cost"])) == Decimal("0.69") * len(expected)


async def test_delivery_reports_make_up_the_summary(
    gql: Any, sessions: Any, sent: dict[str, Any], gateway: FakeSmsGateway, app: Any
) -> None:
    emergency_id = decode_pk(sent["id"], "EmergencySms")
    async with sessions() as s:
        emergency = await s.get(EmergencySms, emergency_id)
        assert emergency is not None
        ids = list(
            (
                await s.execute(
                    select(Delivery.id)
                    .where(Delivery.message_id == emergency.message_id)
                    .order_by(Delivery.id)
                    .limit(4)
                )
            ).scalars()
        )
    assert await outbox.drain(sessions, FAST, only=ids) == 4
    assert len(gateway.messages) == 4
    assert {m.text for m in gateway.messages} == {TEXT}
    transport = httpx.ASGITransport(app=app)
    first, second, third, _ = gateway.messages
    for message, status in ((first, "delivered"), (second, "delivered"), (third, "failed")):
        response = await gateway.send_report(
            message.id,
            status,
            error="absent subscriber" if status == "failed" else None,
            transport=transport,
        )
        assert response.status_code == 200, response.text

    data = (await gql.data("rektor.sorby", SUMMARY, {"id": sent["id"]}))["emergencySms"]
    assert data["text"] == TEXT and data["sentBy"]["name"]
    summary = data["summary"]
    assert summary == {
        "recipients": sent["recipientCount"],
        "pending": sent["recipientCount"] - 4,
        "sent": 1,
        "delivered": 2,
        "failed": 1,
        "segments": 4,
        "cost": summary["cost"],
    }
    assert Decimal(str(summary["cost"])) == Decimal("2.76")
    # The cost is on the school's deliveries.
    async with sessions() as s:
        school_cost = (
            await s.execute(
                select(func.sum(Delivery.cost)).where(
                    Delivery.message_id == emergency.message_id,
                    Delivery.school_id == sent["school"],
                )
            )
        ).scalar()
    assert Decimal(str(school_cost)) == Decimal("2.76")


async def test_who_may_read_the_summary(gql: Any, sent: dict[str, Any]) -> None:
    assert (await gql.data("kommuneadmin", SUMMARY, {"id": sent["id"]}))["emergencySms"]
    assert error_codes(await gql.query("rektor.nordby", SUMMARY, {"id": sent["id"]})) == [
        "FORBIDDEN"
    ]
    assert error_codes(await gql.query("laerer.sorby.9b", SUMMARY, {"id": sent["id"]})) == [
        "FORBIDDEN"
    ]
    listed = await gql.data("rektor.sorby", "query { emergencySmsList { id recipientCount } }")
    assert sent["id"] in {e["id"] for e in listed["emergencySmsList"]}
    nordby = await gql.data("rektor.nordby", "query { emergencySmsList { id } }")
    assert sent["id"] not in {e["id"] for e in nordby["emergencySmsList"]}


async def test_the_municipality_may_send_to_any_school(gql: Any, sessions: Any) -> None:
    nordby = await school_id(sessions, "Nordby skole")
    result = await gql.data(
        "kommuneadmin",
        SEND,
        {"input": {"schoolId": encode("School", nordby), "text": "Øvelse: brannalarm kl. 10."}},
    )
    assert result["sendEmergencySms"]["recipientCount"] == len(
        await expected_recipients(sessions, nordby)
    )


def test_recipients_are_chosen_once_per_person_and_phone() -> None:
    rows = [
        (1, "student", "912 34 567"),
        (2, "guardian", "+4791234568"),
        (2, "employee", "+4791234568"),  # guardian and employee: once, as employee
        (3, "guardian", "0047 912 34 567"),  # shares the student's phone: no second SMS
        (4, "guardian", "12"),  # not a valid number: kept, the worker records the failure
    ]
    chosen = choose_recipients(rows)
    assert [(r.person_id, r.role) for r in chosen] == [
        (1, RecipientRole.STUDENT),
        (2, RecipientRole.EMPLOYEE),
        (4, RecipientRole.GUARDIAN),
    ]
