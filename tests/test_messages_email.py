"""End to end: sendMessage -> outbox -> email plugin -> a real SMTP server
(tests/fakes/smtp_server.py) for guardians who chose "forward to email"; an SMTP server
that is down delays the copy but loses nothing."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from core import outbox
from core.models import Delivery, Person
from core.models.base import utcnow
from core.outbox import OutboxSettings
from core.schema.ids import decode_pk
from tests import delivery_e2e as e2e
from tests.delivery_e2e import FAST
from tests.fakes.smtp_server import FakeSmtpServer

SEND = """
mutation($input: SendMessageInput!) { sendMessage(input: $input) { id sender { name } } }
"""
PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as server:
        yield server


@pytest.fixture
def smtp(smtp_server: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch) -> FakeSmtpServer:
    return e2e.use_smtp(monkeypatch, smtp_server)


async def _send_to_6b(gql: Any, subject: str) -> dict[str, Any]:
    result = await gql.data(
        "laerer.nordby.6b",
        SEND,
        {
            "input": {
                "subject": subject,
                "body": "Husk gymtøy på torsdag.",
                "groupNames": ["6B"],
                "attachments": [
                    {
                        "filename": "ukeplan.pdf",
                        "contentType": "application/pdf",
                        "contentBase64": base64.b64encode(PDF).decode(),
                    }
                ],
            }
        },
    )
    return result["sendMessage"]


async def _deliveries(sessions: Any, message_gid: str) -> list[Delivery]:
    async with sessions() as session:
        return list(
            (
                await session.execute(
                    select(Delivery)
                    .where(Delivery.message_id == decode_pk(message_gid, "Message"))
                    .order_by(Delivery.id)
                )
            ).scalars()
        )


async def test_forwarded_message_arrives_by_email(gql: Any, sessions: Any, smtp: FakeSmtpServer):
    message = await _send_to_6b(gql, "Ukeplan uke 48")
    deliveries = await _deliveries(sessions, message["id"])
    assert deliveries, "no guardian of 6B forwards to email"
    ids = [d.id for d in deliveries]

    assert await outbox.drain(sessions, FAST, only=ids) == len(ids)

    async with sessions() as session:
        thomas = (
            await session.execute(select(Person).where(Person.username == "foresatt.berg"))
        ).scalar_one()
        emails = {
            p.id: p.email
            for p in (
                await session.execute(
                    select(Person).where(Person.id.in_([d.recipient_id for d in deliveries]))
                )
            ).scalars()
        }
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == sorted(emails.values())
    [mail] = [m.message for m in smtp.received if m.rcpt_tos == (thomas.email,)]
    assert mail["Subject"] == "Ukeplan uke 48"
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Husk gymtøy på torsdag." in text
    assert f"Fra: {message['sender']['name']}" in text
    assert "videresendt" in text
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "ukeplan.pdf"
    assert attachment.get_content() == PDF
    assert {d.status for d in await _deliveries(sessions, message["id"])} == {"delivered"}


async def test_smtp_down_delays_but_loses_nothing(gql: Any, sessions: Any, smtp: FakeSmtpServer):
    message = await _send_to_6b(gql, "Beskjed mens e-posten er nede")
    ids = [d.id for d in await _deliveries(sessions, message["id"])]
    # A backoff no drain here outlives: each delivery is tried exactly once while down.
    patient = OutboxSettings(batch_size=50, max_attempts=3, backoff_seconds=60)
    smtp.down()
    try:
        assert await outbox.drain(sessions, patient, only=ids) == len(ids)
        rows = await _deliveries(sessions, message["id"])
        assert {d.status for d in rows} == {"queued"}
        assert all(d.attempts == 1 and d.last_error for d in rows)
        assert all(d.next_attempt_at > utcnow() for d in rows)
        assert await outbox.drain(sessions, patient, only=ids) == 0  # not due yet
    finally:
        smtp.up()
    # The backoff has passed.
    async with sessions() as session, session.begin():
        await session.execute(
            update(Delivery).where(Delivery.id.in_(ids)).values(next_attempt_at=utcnow())
        )
    assert await outbox.drain(sessions, patient, only=ids) == len(ids)
    rows = await _deliveries(sessions, message["id"])
    assert {d.status for d in rows} == {"delivered"}
    assert all(d.attempts == 2 for d in rows)
    assert len(smtp.received) == len(ids)
