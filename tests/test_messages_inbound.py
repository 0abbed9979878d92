"""SMS received from guardians (POST /callbacks/sms/inbound): recorded for the statistics
and passed on as a message to the children's contact teachers."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from core.models import InboundSms, Person, School
from tests.conftest import error_codes

TOKEN = "innkommende-hemmelighet"
URL = f"/callbacks/sms/inbound?token={TOKEN}"
BOX = """
query($box: MessageBox!) {
  messages(first: 20, box: $box) { edges { node { id subject body senderRole } } }
}
"""


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAVLE_SMS_CALLBACK_TOKEN", TOKEN)


async def _mobile(sessions: Any, username: str) -> str:
    async with sessions() as session:
        return (
            await session.execute(select(Person.mobile).where(Person.username == username))
        ).scalar_one()


async def _inbound(sessions: Any, external_id: str) -> list[InboundSms]:
    async with sessions() as session:
        return list(
            (
                await session.execute(
                    select(InboundSms).where(InboundSms.external_id == external_id)
                )
            ).scalars()
        )


async def test_guardian_sms_reaches_the_contact_teacher(client: Any, gql: Any, sessions: Any):
    mobile = await _mobile(sessions, "foresatt.berg")
    spaced = f"+47 {mobile[:3]} {mobile[3:5]} {mobile[5:]}"
    payload = {"id": "in-1", "from": spaced, "text": "Ida er syk i dag."}
    for _ in range(2):  # a repeated callback records nothing new
        response = await client.post(URL, json=payload)
        assert response.status_code == 200, response.text
        assert response.json() == {"ok": True, "forwarded": True}
    [row] = await _inbound(sessions, "in-1")
    async with sessions() as session:
        nordby = (
            await session.execute(select(School.id).where(School.name == "Nordby skole"))
        ).scalar_one()
        thomas = (
            await session.execute(select(Person.id).where(Person.username == "foresatt.berg"))
        ).scalar_one()
    assert (row.school_id, row.sender_id, row.sender_role) == (nordby, thomas, "guardian")

    inbox = await gql.data("laerer.nordby.6b", BOX, {"box": "INBOX"})
    forwarded = [
        e["node"] for e in inbox["messages"]["edges"] if e["node"]["body"] == "Ida er syk i dag."
    ]
    assert len(forwarded) == 1
    assert forwarded[0]["subject"] == "SMS fra Thomas Berg"
    assert forwarded[0]["senderRole"] == "GUARDIAN"
    nurse = await gql.data("helsesykepleier.nordby", BOX, {"box": "FROM_GUARDIANS"})
    assert forwarded[0]["id"] in [e["node"]["id"] for e in nurse["messages"]["edges"]]
    other = await gql.data("laerer.nordby.5a", BOX, {"box": "INBOX"})
    assert forwarded[0]["id"] not in [e["node"]["id"] for e in other["messages"]["edges"]]
    assert error_codes(
        await gql.query(
            "foresatt.hansen",
            "query($id: ID!) { message(id: $id) { id } }",
            {"id": forwarded[0]["id"]},
        )
    ) == ["FORBIDDEN"]


async def test_unknown_number_is_kept_without_a_message(client: Any, sessions: Any):
    response = await client.post(URL, json={"id": "in-2", "from": "+4740000000", "text": "Hei"})
    assert response.json() == {"ok": True, "forwarded": False}
    [row] = await _inbound(sessions, "in-2")
    assert row.school_id is None and row.sender_id is None and row.message_id is None


@pytest.mark.parametrize(
    ("url", "body", "status"),
    [
        ("/callbacks/sms/inbound", {"from": "+4791234567", "text": "x"}, 403),
        ("/callbacks/sms/inbound?token=feil", {"from": "+4791234567", "text": "x"}, 403),
        (URL, {"text": "mangler avsender"}, 400),
        (URL, ["ikke", "et", "objekt"], 400),
    ],
)
async def test_refused_callbacks_record_nothing(
    client: Any, sessions: Any, url: str, body: Any, status: int
):
    async with sessions() as session:
        before = (await session.execute(select(func.count()).select_from(InboundSms))).scalar()
    response = await client.post(url, json=body)
    assert response.status_code == status
    async with sessions() as session:
        after = (await session.execute(select(func.count()).select_from(InboundSms))).scalar()
    assert after == before
