"""The "sms" channel against a fake HTTP SMS gateway (tests/fakes/sms_gateway.py):
GSM-7 / UCS-2 segments and their cost, the idempotent reference, delivery reports at the
callback URL, status polling, and a gateway that is down.

End-to-end tests start at GraphQL (createDocument -> finalizeDocument -> sendDocument),
run the outbox worker on their own deliveries and assert on what the gateway received.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest

from core import outbox
from core.channels import Delivery, PermanentDeliveryError, Recipient, Sender
from core.models import DeliveryStatus
from core.models.base import utcnow
from plugins.sms import plugin as sms_plugin
from plugins.sms.segments import GSM7, UCS2, count_segments
from tests import delivery_e2e as e2e
from tests.fakes.sms_gateway import FakeSmsGateway

ABSENCE = "melding_uanmeldt_fravaer"  # SMS to the guardians the same day
TOKEN = "rapport-hemmelighet"


@pytest.fixture(scope="module")
def gateway_server() -> Iterator[FakeSmsGateway]:
    with FakeSmsGateway(username="tavle", password="hemmelig") as server:
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
        "TAVLE_SMS_SENDER": "NordbySkol",
        "TAVLE_SMS_CALLBACK_URL": "http://tavle.test/callbacks/sms",
        "TAVLE_SMS_CALLBACK_TOKEN": TOKEN,
        "TAVLE_SMS_TIMEOUT": "3",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TAVLE_SMS_COST_PER_SEGMENT", raising=False)
    monkeypatch.delenv("TAVLE_SMS_COST_PER_SEGMENT_BY_SCHOOL", raising=False)
    return gateway_server


def make_delivery(**changes: Any) -> Delivery:
    delivery = Delivery(
        id=77,
        reference="tavle-delivery-77",
        channel="sms",
        attempt=1,
        subject="SMS om uanmeldt fravær",
        body="",
        text="Emma er ikke på skolen i dag. Gi beskjed til skolen.",
        recipient=Recipient(
            person_id=7,
            name="Kari Hansen",
            national_id=None,
            email=None,
            mobile="912 34 567",
            street_address=None,
            postal_code=None,
            postal_town=None,
        ),
        sender=Sender(
            school_id=3,
            school_name="Nordby skole",
            organisation_number="974 000 111",
            municipality_name="Eksempel kommune",
            municipality_organisation_number="999999999",
            signed_by=None,
        ),
        sensitive=False,
        restricted=False,
    )
    return replace(delivery, **changes)


async def deliver(delivery: Delivery):  # type: ignore[no-untyped-def]
    answer = sms_plugin.deliver(delivery)
    assert answer is not None
    return await answer


# --------------------------------------------------------------------------------------
# Segments


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("", GSM7, 1),
        ("a" * 160, GSM7, 1),
        ("a" * 161, GSM7, 2),
        ("a" * 306, GSM7, 2),
        ("a" * 307, GSM7, 3),
        ("Blåbærsyltetøy på Ærø og Åsgårdstrand" * 4, GSM7, 1),  # ÆØÅæøå are GSM-7: 148
        ("€" * 80, GSM7, 1),  # extension characters cost two septets: 160
        ("€" * 81, GSM7, 2),
        # 152 septets, then an escape pair that may not be split across parts: 3 parts,
        # where total/153 would say 2 (153 + 153 + 1 = 307 > 306).
        ("a" * 152 + "€" + "a" * 152, GSM7, 3),
        ("ŋ" * 70, UCS2, 1),  # a Sámi letter forces UCS-2
        ("ŋ" * 71, UCS2, 2),
        ("Hei 😀" + "a" * 64, UCS2, 1),  # the emoji is a surrogate pair: 70 units
        ("Hei 😀" + "a" * 65, UCS2, 2),
        ("ŋ" * 134, UCS2, 2),
        ("ŋ" * 135, UCS2, 3),
    ],
)
def test_segments(text: str, encoding: str, segments: int) -> None:
    counted = count_segments(text)
    assert (counted.encoding, counted.segments) == (encoding, segments)


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("91234567", "+4791234567"),
        ("912 34 567", "+4791234567"),
        ("+47 412 34 567", "+4741234567"),
        ("0047 91234567", "+4791234567"),
        ("4791234567", "+4791234567"),
    ],
)
def test_mobile_numbers_are_normalised(given: str, normalised: str) -> None:
    assert sms_plugin.normalise_mobile(given) == normalised


@pytest.mark.parametrize("given", [None, "", "22 33 44 55", "+46 70 123 45 67", "9123456"])
def test_landlines_foreign_and_missing_numbers_are_refused(given: str | None) -> None:
    with pytest.raises(PermanentDeliveryError):
        sms_plugin.normalise_mobile(given)


# --------------------------------------------------------------------------------------
# The plugin against the gateway


async def test_cost_is_per_segment_and_may_differ_per_school(
    gateway: FakeSmsGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_text = "Beskjed fra skolen: " + "x" * 200  # 220 GSM-7 characters: 2 segments
    receipt = await deliver(make_delivery(text=long_text))
    assert (receipt.units, receipt.cost) == (2, Decimal("1.38"))  # 0.69 NOK by default
    [message] = gateway.messages
    assert (message.to, message.sender, message.text) == ("+4791234567", "NordbySkol", long_text)
    assert message.reference == "tavle-delivery-77"

    # Nordby has its own price (by organisation number); another school keeps the default.
    monkeypatch.setenv("TAVLE_SMS_COST_PER_SEGMENT_BY_SCHOOL", "999888777=0.55,974000111=0.49")
    receipt = await deliver(make_delivery(id=78, reference="tavle-delivery-78", text=long_text))
    assert receipt.cost == Decimal("0.98")
    other = replace(make_delivery().sender, school_id=9, organisation_number="911222333")
    receipt = await deliver(
        make_delivery(id=79, reference="tavle-delivery-79", text=long_text, sender=other)
    )
    assert receipt.cost == Decimal("1.38")
    # ... or by the school's id.
    monkeypatch.setenv("TAVLE_SMS_COST_PER_SEGMENT_BY_SCHOOL", "9=0.40")
    receipt = await deliver(
        make_delivery(id=80, reference="tavle-delivery-80", text=long_text, sender=other)
    )
    assert receipt.cost == Decimal("0.80")


async def test_a_repeated_reference_is_not_sent_again(gateway: FakeSmsGateway) -> None:
    first = await deliver(make_delivery())
    again = await deliver(make_delivery(attempt=2))
    assert again.external_id == first.external_id
    assert again.detail["repeated"] is True
    assert len(gateway.messages) == 1


async def test_too_long_and_sensitive_texts_are_refused(gateway: FakeSmsGateway) -> None:
    with pytest.raises(PermanentDeliveryError, match="for lang"):
        await deliver(make_delivery(text="x" * (153 * 10 + 1)))
    with pytest.raises(PermanentDeliveryError, match="Sensitivt"):
        await deliver(make_delivery(sensitive=True))
    assert gateway.messages == []


# --------------------------------------------------------------------------------------
# End to end


async def _send_absence_sms(gql: Any, sessions: Any) -> tuple[dict[str, Any], list[int]]:
    emma = await e2e.student_id(gql)
    fields = {"dato": utcnow().date().isoformat(), "fra_klokkeslett": "09:15"}
    sent = await e2e.send_new_document(gql, ABSENCE, emma, fields)
    rows = await e2e.delivery_rows(sessions, sent["id"])
    assert {r.channel for r in rows} == {"sms"}
    return sent, [r.id for r in rows]


async def test_absence_sms_reaches_guardians_and_reports_come_back(
    gql: Any, sessions: Any, app: Any, gateway: FakeSmsGateway
) -> None:
    sent, ids = await _send_absence_sms(gql, sessions)

    assert await outbox.drain(sessions, e2e.FAST, only=ids) == len(ids)

    rows = [await e2e.delivery_row(sessions, i) for i in ids]
    by_reference = {m.reference: m for m in gateway.messages}
    assert len(by_reference) == len(ids)
    for row in rows:
        message = by_reference[f"tavle-delivery-{row.id}"]
        guardian = await e2e.person(sessions, row.recipient_id)
        assert message.to == sms_plugin.normalise_mobile(guardian.mobile)
        # The document's own words, without letterhead or signature.
        assert message.text.startswith("Emma Hansen er ikke på skolen ")
        assert " fra kl. 09.15, og skolen har ikke fått melding om fravær." in message.text
        assert message.text.endswith("\n\nHilsen Nordby skole")
        assert "Med vennlig hilsen" not in message.text  # no letterhead or signature
        assert message.callback_url == f"http://tavle.test/callbacks/sms?token={TOKEN}"
        counted = count_segments(message.text)
        assert row.status == DeliveryStatus.SENT
        assert row.units == counted.segments == message.segments
        assert row.cost == counted.segments * Decimal("0.69")
        assert row.external_id == message.id
        assert row.school_id is not None  # the cost is booked on the school

    # The gateway reports back through the callback route of the running app.
    transport = httpx.ASGITransport(app=app)
    first, second = rows
    answer = await gateway.send_report(first.external_id, "delivered", transport=transport)
    assert answer.status_code == 200, answer.text
    answer = await gateway.send_report(
        second.external_id, "failed", "absent subscriber", transport=transport
    )
    assert answer.status_code == 200, answer.text
    shown = {d["externalId"]: d for d in (await e2e.document(gql, sent["id"]))["deliveries"]}
    assert shown[first.external_id]["status"] == "DELIVERED"
    assert shown[second.external_id]["status"] == "FAILED"
    history = (await e2e.delivery_row(sessions, second.id)).receipt["statuses"]
    assert history[-1]["detail"]["error"] == "absent subscriber"

    # Forged, unknown and malformed reports change nothing.
    async with httpx.AsyncClient(transport=transport, base_url="http://tavle.test") as client:
        report = {"id": first.external_id, "status": "failed"}
        forged = await client.post("/callbacks/sms?token=gjett", json=report)
        assert forged.status_code == 403
        unknown = await client.post(
            f"/callbacks/sms?token={TOKEN}", json={"id": "gw-999999", "status": "delivered"}
        )
        assert unknown.status_code == 404
        malformed = await client.post(
            f"/callbacks/sms?token={TOKEN}", json={"id": first.external_id, "status": "lest"}
        )
        assert malformed.status_code == 400
    assert (await e2e.delivery_row(sessions, first.id)).status == DeliveryStatus.DELIVERED


async def test_gateway_down_then_back_and_status_by_polling(
    gql: Any, sessions: Any, gateway: FakeSmsGateway
) -> None:
    sent, ids = await _send_absence_sms(gql, sessions)

    gateway.down()
    try:
        assert await outbox.run_once(sessions, e2e.FAST, only=ids) == len(ids)
        for delivery_id in ids:
            row = await e2e.delivery_row(sessions, delivery_id)
            assert (row.status, row.attempts) == (DeliveryStatus.QUEUED, 1)
            assert row.next_attempt_at > utcnow()
        assert await outbox.drain(sessions, e2e.FAST, only=ids) == 0
    finally:
        gateway.up()
    await e2e.wait_until_due(sessions, ids)
    assert await outbox.drain(sessions, e2e.FAST, only=ids) == len(ids)
    assert sorted(m.reference for m in gateway.messages) == sorted(
        f"tavle-delivery-{i}" for i in ids
    )

    # No callback this time: the worker's poll finds the handsets' reports.
    for message in gateway.messages:
        gateway.set_status(message.id, "delivered")
    assert await outbox.poll_statuses(sessions, only=ids) == len(ids)
    shown = (await e2e.document(gql, sent["id"]))["deliveries"]
    assert {(d["status"], d["attempts"]) for d in shown} == {("DELIVERED", 2)}
