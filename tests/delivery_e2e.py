"""Shared steps of the channel tests: a document made, finalized and sent through
GraphQL, its outbox rows, and what the API says about its deliveries.

The test database is shared by every test file in a run, so the channel tests only ever
work the deliveries of their own documents (`outbox.drain(..., only=ids)`), never other
files' queued work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import undefer

from core.models import Delivery, Document, Guardianship, Person
from core.models.base import utcnow
from core.outbox import OutboxSettings
from core.schema.ids import decode_pk

if TYPE_CHECKING:
    import pytest

    from tests.fakes.smtp_server import FakeSmtpServer

TEACHER = "laerer.nordby.5a"  # contact teacher of Emma Hansen (5A, Nordby)
GUARDIAN = "foresatt.hansen"  # Kari Hansen: Emma's guardian with a login
EMMA = "Emma Hansen"

# Backoff short enough to wait out in a test, long enough that nothing is due again
# while the test looks, even on a busy machine.
FAST = OutboxSettings(batch_size=10, max_attempts=3, backoff_seconds=1.0, max_backoff_seconds=2.0)

DOCUMENT_FIELDS = """
  id title status pdfSha256
  deliveries {
    id channel status attempts lastError externalId units cost recipient { id name }
  }
"""
CREATE = "mutation($input: CreateDocumentInput!) { createDocument(input: $input) { id } }"
FINALIZE = "mutation($id: ID!) { finalizeDocument(id: $id) { id pdfSha256 } }"
SEND = "mutation($id: ID!) { sendDocument(id: $id) {" + DOCUMENT_FIELDS + "} }"
DOCUMENT = "query($id: ID!) { document(id: $id) {" + DOCUMENT_FIELDS + "} }"


async def student_id(gql: Any, name: str = EMMA, username: str = TEACHER) -> str:
    data = await gql.data(
        username,
        "query($s: String) { students(first: 5, filter: {search: $s}) {"
        " edges { node { id name } } } }",
        {"s": name},
    )
    (found,) = [e["node"]["id"] for e in data["students"]["edges"] if e["node"]["name"] == name]
    return found


async def send_new_document(
    gql: Any, doctype: str, student: str, fields: dict[str, Any], username: str = TEACHER
) -> dict[str, Any]:
    """createDocument -> finalizeDocument -> sendDocument; the sent document with its
    (queued) deliveries."""
    created = await gql.data(
        username, CREATE, {"input": {"doctype": doctype, "studentId": student, "fields": fields}}
    )
    gid = created["createDocument"]["id"]
    await gql.data(username, FINALIZE, {"id": gid})
    sent = (await gql.data(username, SEND, {"id": gid}))["sendDocument"]
    assert sent["status"] == "SENT"
    assert sent["deliveries"], "sendDocument wrote no deliveries"
    return sent


async def document(gql: Any, gid: str, username: str = TEACHER) -> dict[str, Any]:
    return (await gql.data(username, DOCUMENT, {"id": gid}))["document"]


def by_channel(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for delivery in doc["deliveries"]:
        found.setdefault(delivery["channel"], []).append(delivery)
    return found


async def delivery_rows(
    sessions: async_sessionmaker[AsyncSession], document_gid: str
) -> list[Delivery]:
    async with sessions() as session:
        return list(
            (
                await session.execute(
                    select(Delivery)
                    .where(Delivery.document_id == decode_pk(document_gid, "Document"))
                    .order_by(Delivery.id)
                )
            ).scalars()
        )


async def delivery_row(sessions: async_sessionmaker[AsyncSession], delivery_id: int) -> Delivery:
    async with sessions() as session:
        row = await session.get(Delivery, delivery_id)
        assert row is not None
        return row


async def pdf_of(sessions: async_sessionmaker[AsyncSession], document_gid: str) -> bytes:
    async with sessions() as session:
        found = (
            await session.execute(
                select(Document)
                .where(Document.id == decode_pk(document_gid, "Document"))
                .options(undefer(Document.pdf))
            )
        ).scalar_one()
        assert found.pdf
        return found.pdf


async def person(sessions: async_sessionmaker[AsyncSession], person_id: int) -> Person:
    async with sessions() as session:
        found = await session.get(Person, person_id)
        assert found is not None
        return found


async def guardians(sessions: async_sessionmaker[AsyncSession], student_gid: str) -> list[Person]:
    """The student's guardians with parental responsibility: a document's recipients."""
    async with sessions() as session:
        return list(
            (
                await session.execute(
                    select(Person)
                    .join(Guardianship, Guardianship.guardian_id == Person.id)
                    .where(
                        Guardianship.student_id == decode_pk(student_gid, "Student"),
                        Guardianship.parental_responsibility.is_(True),
                    )
                    .order_by(Person.id)
                )
            ).scalars()
        )


async def wait_until_due(sessions: async_sessionmaker[AsyncSession], ids: Sequence[int]) -> None:
    """Sleep until the backoff of these deliveries has passed."""
    async with sessions() as session:
        due = (
            await session.execute(
                select(Delivery.next_attempt_at).where(Delivery.id.in_(list(ids)))
            )
        ).scalars()
        latest = max(due)
    await asyncio.sleep(max(0.0, (latest - utcnow()).total_seconds()) + 0.05)


def use_smtp(
    monkeypatch: pytest.MonkeyPatch,
    server: FakeSmtpServer,
    sender: str = "Nordby skole <noreply@nordby.example.no>",
) -> FakeSmtpServer:
    """Point the email plugin at `server` (plain SMTP, no login), up and emptied first.

    For the per-test fixture over a module's server: a test that took the server down
    and failed before bringing it up again must not take the next ones with it."""
    if not server.running:
        server.up()
    server.reset()
    monkeypatch.setenv("TAVLE_SMTP_HOST", server.host)
    monkeypatch.setenv("TAVLE_SMTP_PORT", str(server.port))
    monkeypatch.setenv("TAVLE_SMTP_STARTTLS", "0")
    monkeypatch.setenv("TAVLE_SMTP_FROM", sender)
    monkeypatch.setenv("TAVLE_SMTP_TIMEOUT", "2")
    monkeypatch.delenv("TAVLE_SMTP_USERNAME", raising=False)
    monkeypatch.delenv("TAVLE_SMTP_PASSWORD", raising=False)
    return server
