"""communicationStatistics: SMS per school and month with cost (recorded by the sms plugin
against the fake gateway), SMS from guardians, guardians' contact details and messages
sent and read; and who may see which school's figures.

The database is shared with other test files, so the checks compare figures before and
after this file's own actions, or recompute them independently from the rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from core import outbox
from core.models import (
    Delivery,
    Employment,
    Enrolment,
    Guardianship,
    Person,
    School,
)
from core.models.base import utcnow
from core.schema.ids import decode_pk, encode
from tests.conftest import error_codes
from tests.delivery_e2e import FAST
from tests.fakes.sms_gateway import FakeSmsGateway

STATS = """
query($school: ID) {
  communicationStatistics(schoolId: $school) {
    since
    sms { school { id name } month toStudents toStaff toGuardians fromGuardians failed
          segments cost }
    guardianContact { school { id name } guardians withMobile withEmail activated
                      shareWithMobile shareWithEmail shareActivated }
    messages { school { name } month sent recipients read }
  }
}
"""
SEND = "mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }"
MARK = "mutation($id: ID!) { markMessageRead(id: $id) { id } }"


@pytest.fixture(scope="module")
def gateway_server() -> Iterator[FakeSmsGateway]:
    with FakeSmsGateway(username="tavle", password="hemmelig", id_prefix="stat") as server:
        yield server


@pytest.fixture
def gateway(gateway_server: FakeSmsGateway, monkeypatch: pytest.MonkeyPatch) -> FakeSmsGateway:
    gateway_server.reset()
    for name, value in {
        "TAVLE_SMS_BASE_URL": gateway_server.base_url,
        "TAVLE_SMS_USERNAME": "tavle",
        "TAVLE_SMS_PASSWORD": "hemmelig",
        "TAVLE_SMS_SENDER": "NordbySkol",
        "TAVLE_SMS_TIMEOUT": "3",
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "TAVLE_SMS_CALLBACK_URL",
        "TAVLE_SMS_CALLBACK_TOKEN",
        "TAVLE_SMS_COST_PER_SEGMENT",
        "TAVLE_SMS_COST_PER_SEGMENT_BY_SCHOOL",
    ):
        monkeypatch.delenv(name, raising=False)
    return gateway_server


async def _school(sessions: Any, name: str) -> int:
    async with sessions() as session:
        return (await session.execute(select(School.id).where(School.name == name))).scalar_one()


def _row(rows: list[dict[str, Any]], school: str, month: str | None = None) -> dict[str, Any]:
    for row in rows:
        if row["school"]["name"] == school and (month is None or row["month"] == month):
            return row
    return {}


async def _stats(gql: Any, username: str, school: str | None = None) -> dict[str, Any]:
    data = await gql.data(username, STATS, {"school": school})
    return data["communicationStatistics"]


async def _recipients(sessions: Any, school_id: int) -> dict[str, list[int]]:
    """Two guardians, a student and an employee of the school with mobile numbers, and a
    guardian without one."""
    async with sessions() as session:
        students = (
            select(Enrolment.student_id)
            .join(Person, Person.id == Enrolment.student_id)
            .where(Enrolment.school_id == school_id, Person.mobile.is_not(None))
            .order_by(Enrolment.student_id)
        )
        student = (await session.execute(students.limit(1))).scalar_one()
        guardians = (
            select(Guardianship.guardian_id)
            .distinct()
            .join(Enrolment, Enrolment.student_id == Guardianship.student_id)
            .join(Person, Person.id == Guardianship.guardian_id)
            .where(
                Enrolment.school_id == school_id,
                Guardianship.parental_responsibility.is_(True),
                # Families with children at one school only: their SMS count there.
                Guardianship.guardian_id.not_in(
                    select(Guardianship.guardian_id)
                    .join(Enrolment, Enrolment.student_id == Guardianship.student_id)
                    .where(Enrolment.school_id != school_id)
                ),
            )
            .order_by(Guardianship.guardian_id)
        )
        with_mobile = list(
            (await session.execute(guardians.where(Person.mobile.is_not(None)).limit(2))).scalars()
        )
        without = (
            await session.execute(guardians.where(Person.mobile.is_(None)).limit(1))
        ).scalar_one()
        employee = (
            await session.execute(
                select(Employment.person_id)
                .join(Person, Person.id == Employment.person_id)
                .where(
                    Employment.school_id == school_id,
                    Person.mobile.is_not(None),
                )
                .order_by(Employment.person_id)
                .limit(1)
            )
        ).scalar_one()
    return {
        "guardians": with_mobile,
        "no_mobile": [without],
        "students": [student],
        "employees": [employee],
    }


async def test_sms_per_school_and_month_with_cost(
    gql: Any, client: Any, sessions: Any, gateway: Any, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("TAVLE_SMS_CALLBACK_TOKEN", "statistikk")
    nordby = await _school(sessions, "Nordby skole")
    month = utcnow().strftime("%Y-%m")
    before = _row((await _stats(gql, "kommuneadmin"))["sms"], "Nordby skole", month)
    people = await _recipients(sessions, nordby)
    ids = [
        *(encode("Guardian", p) for p in people["guardians"] + people["no_mobile"]),
        *(encode("Student", p) for p in people["students"]),
        *(encode("Employee", p) for p in people["employees"]),
    ]
    message = await gql.data(
        "skoleadmin.nordby",
        SEND,
        {
            "input": {
                "subject": "Stengt skole",
                "body": "Skolen er stengt i dag.",
                "recipientIds": ids,
            }
        },
    )
    message_pk = decode_pk(message["sendMessage"]["id"], "Message")
    # What an emergency SMS or a notice writes: one SMS delivery per recipient.
    async with sessions() as session, session.begin():
        rows = [
            Delivery(
                message_id=message_pk,
                recipient_id=decode_pk(i, ("Guardian", "Student", "Employee")),
                school_id=nordby,
                channel="sms",
            )
            for i in ids
        ]
        session.add_all(rows)
        await session.flush()
        delivery_ids = [r.id for r in rows]
    # Two SMS from guardians this month (through the gateway's callback), one from a
    # number nobody owns, which counts for no school.
    async with sessions() as session:
        mobiles = list(
            (
                await session.execute(
                    select(Person.mobile).where(Person.id.in_(people["guardians"]))
                )
            ).scalars()
        )
    for n, number in enumerate([*mobiles, "+4740000009"]):
        response = await client.post(
            "/callbacks/sms/inbound?token=statistikk",
            json={"id": f"stat-in-{n}", "from": number, "text": "Syk i dag"},
        )
        assert response.status_code == 200, response.text
    assert await outbox.drain(sessions, FAST, only=delivery_ids) == len(delivery_ids)
    assert len(gateway.messages) == 4  # the guardian without a mobile number got none

    after = _row((await _stats(gql, "kommuneadmin"))["sms"], "Nordby skole", month)

    def delta(key: str) -> Any:
        return (
            after[key] - before.get(key, 0)
            if key != "cost"
            else Decimal(str(after["cost"])) - Decimal(str(before.get("cost", 0)))
        )

    assert delta("toGuardians") == 2
    assert delta("toStudents") == 1
    assert delta("toStaff") == 1
    assert delta("fromGuardians") == 2
    assert delta("failed") == 1
    assert delta("segments") == 4
    assert delta("cost") == Decimal("4") * Decimal("0.69")


async def test_guardian_contact_shares_match_the_rows(gql: Any, sessions: Any):
    nordby = await _school(sessions, "Nordby skole")
    stats = await _stats(gql, "skoleadmin.nordby")
    row = _row(stats["guardianContact"], "Nordby skole")
    async with sessions() as session:
        guardians = {
            p.id: p
            for p in (
                await session.execute(
                    select(Person)
                    .join(Guardianship, Guardianship.guardian_id == Person.id)
                    .join(Enrolment, Enrolment.student_id == Guardianship.student_id)
                    .where(
                        Enrolment.school_id == nordby,
                        Enrolment.school_year_id
                        == select(Enrolment.school_year_id)
                        .where(Enrolment.school_id == nordby)
                        .order_by(Enrolment.school_year_id.desc())
                        .limit(1)
                        .scalar_subquery(),
                        Guardianship.parental_responsibility.is_(True),
                    )
                )
            ).scalars()
        }
    people = list(guardians.values())
    assert row["guardians"] == len(people) > 0
    assert row["withMobile"] == sum(1 for p in people if p.mobile)
    assert row["withEmail"] == sum(1 for p in people if p.email)
    assert row["activated"] == sum(1 for p in people if p.activated_at)
    assert 0 < row["withMobile"] < row["guardians"]  # the demo leaves some without
    assert row["shareWithMobile"] == pytest.approx(row["withMobile"] / row["guardians"])


async def test_messages_sent_and_read(gql: Any):
    month = utcnow().strftime("%Y-%m")
    before = _row((await _stats(gql, "skoleadmin.nordby"))["messages"], "Nordby skole", month)
    sent = await gql.data(
        "laerer.nordby.6b",
        SEND,
        {"input": {"subject": "Statistikk", "body": "Hei", "groupNames": ["6B"]}},
    )
    await gql.data("foresatt.berg", MARK, {"id": sent["sendMessage"]["id"]})
    after = _row((await _stats(gql, "skoleadmin.nordby"))["messages"], "Nordby skole", month)
    assert after["sent"] - before.get("sent", 0) == 1
    assert after["read"] - before.get("read", 0) == 1
    assert after["recipients"] > before.get("recipients", 0)


async def test_who_sees_which_school(gql: Any, sessions: Any):
    everyone = await _stats(gql, "kommuneadmin")
    assert {r["school"]["name"] for r in everyone["guardianContact"]} >= {
        "Nordby skole",
        "Sørby ungdomsskole",
        "Vestby skole",
    }
    assert everyone["since"] <= date.today().isoformat()
    nordby_only = await _stats(gql, "skoleadmin.nordby")
    for part in ("sms", "guardianContact", "messages"):
        assert {r["school"]["name"] for r in nordby_only[part]} <= {"Nordby skole"}
    sorby = encode("School", await _school(sessions, "Sørby ungdomsskole"))
    result = await gql.query("skoleadmin.nordby", STATS, {"school": sorby})
    assert error_codes(result) == ["FORBIDDEN"]
    one = await _stats(gql, "kommuneadmin", sorby)
    assert {r["school"]["name"] for r in one["guardianContact"]} == {"Sørby ungdomsskole"}
    for username in ("laerer.nordby.5a", "foresatt.hansen", "helsesykepleier.nordby"):
        assert error_codes(await gql.query(username, STATS, {"school": None})) == ["FORBIDDEN"]
