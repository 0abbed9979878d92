"""The durable outbox and its worker: `tavle worker`, retries with backoff while a peer is
down, the final failed state, leases, and concurrent workers on PostgreSQL that never
send one delivery twice.

The peer here is the e-mail channel's real SMTP server (tests/fakes/smtp_server.py); each
test works only its own deliveries, except the worker command, which drains the e-mail
queue of the whole test database (and so only looks at its own mail).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core import cli, outbox
from core.models import Delivery, DeliveryStatus, Person
from core.models.base import utcnow
from core.outbox import OutboxSettings, backoff, main_text
from core.schema.ids import decode_pk, encode
from tests import delivery_e2e as e2e
from tests.fakes.smtp_server import FakeSmtpServer

NOTE = "notat_elev"  # in-app for Kari (has logged in), e-mail for Lars (never has)
FIELDS = {"emne": "Foreldremøte", "tekst": "Velkommen til foreldremøte tirsdag kl. 18."}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as server:
        yield server


@pytest.fixture
def smtp(smtp_server: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch) -> FakeSmtpServer:
    if not smtp_server.running:  # a test that took it down failed before bringing it up
        smtp_server.up()
    smtp_server.reset()
    for name, value in _smtp_env(smtp_server).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TAVLE_SMTP_USERNAME", raising=False)
    monkeypatch.delenv("TAVLE_SMTP_PASSWORD", raising=False)
    return smtp_server


def _smtp_env(server: FakeSmtpServer) -> dict[str, str]:
    return {
        "TAVLE_SMTP_HOST": server.host,
        "TAVLE_SMTP_PORT": str(server.port),
        "TAVLE_SMTP_STARTTLS": "0",
        "TAVLE_SMTP_FROM": "Nordby skole <noreply@nordby.example.no>",
        "TAVLE_SMTP_TIMEOUT": "3",
    }


async def _note(gql: Any, sessions: Any) -> tuple[dict[str, Any], Delivery, Delivery]:
    """A note about Emma, sent: (document, Kari's in-app delivery, Lars's e-mail one)."""
    emma = await e2e.student_id(gql)
    await gql.token(e2e.GUARDIAN)  # Kari's account is activated
    sent = await e2e.send_new_document(gql, NOTE, emma, FIELDS)
    rows = {row.channel: row for row in await e2e.delivery_rows(sessions, sent["id"])}
    assert set(rows) == {"inapp", "email"}
    return sent, rows["inapp"], rows["email"]


@pytest.fixture(scope="module")
async def note(gql: Any, sessions: Any) -> tuple[dict[str, Any], Delivery, Delivery]:
    """One note, made and sent through GraphQL (one PDF rendered for the whole file)."""
    return await _note(gql, sessions)


async def _queue(
    sessions: Any, document: dict[str, Any], channel: str, count: int = 1
) -> list[int]:
    """More deliveries of the same document, queued the way sendDocument queues them (one
    row per recipient and channel), to people with an e-mail address it has not gone to
    on this channel yet: fresh work for one test without rendering another PDF."""
    document_id = decode_pk(document["id"], "Document")
    async with sessions() as session, session.begin():
        taken = select(Delivery.recipient_id).where(
            Delivery.document_id == document_id, Delivery.channel == channel
        )
        school_id = (
            await session.execute(
                select(Delivery.school_id).where(Delivery.document_id == document_id).limit(1)
            )
        ).scalar_one()
        people = list(
            (
                await session.execute(
                    select(Person.id)
                    .where(Person.email.is_not(None), Person.id.not_in(taken))
                    .order_by(Person.id)
                    .limit(count)
                )
            ).scalars()
        )
        assert len(people) == count
        rows = [
            Delivery(
                document_id=document_id,
                recipient_id=person_id,
                school_id=school_id,
                channel=channel,
                next_attempt_at=utcnow() - timedelta(seconds=1),
            )
            for person_id in people
        ]
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]


def _mail_for(server: FakeSmtpServer, delivery_id: int) -> list[Any]:
    reference = f"tavle-delivery-{delivery_id}"
    return [m for m in server.messages if m["X-Tavle-Reference"] == reference]


def test_backoff_doubles_and_is_capped() -> None:
    settings = OutboxSettings(backoff_seconds=30, max_backoff_seconds=3600)
    assert [backoff(n, settings).total_seconds() for n in range(1, 9)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
    ]


def test_plain_text_is_the_letters_main_part() -> None:
    html = (
        "<html><body><header>Nordby skole</header><h1>Tittel</h1><main>"
        "<p>Hei,\n  dette er   første avsnitt.</p><ul><li>én</li><li>to &amp; tre</li></ul>"
        "</main><div class='underskrift'>Med vennlig hilsen</div></body></html>"
    )
    assert main_text(html) == "Hei, dette er første avsnitt.\n\nén\n\nto & tre"
    assert main_text(None) == ""


async def test_worker_command_delivers_by_channel(
    gql: Any, sessions: Any, smtp: FakeSmtpServer, database_url: str, note: Any
) -> None:
    sent, inapp, email = note
    env = {
        **os.environ,
        **_smtp_env(smtp),
        "TAVLE_DATABASE_URL": database_url,
        "TAVLE_SMTP_FROM": "Nordby skole <noreply@nordby.example.no>",
    }
    env.pop("TAVLE_TEST_DATABASE_URL", None)
    command = [sys.executable, "-m", "core.cli", "worker", "--once", "--channel", "email"]

    done = await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Behandlet ")
    [mail] = _mail_for(smtp, email.id)
    lars = await e2e.person(sessions, email.recipient_id)
    assert mail["To"].addresses[0].addr_spec == lars.email
    assert (await e2e.delivery_row(sessions, email.id)).status == DeliveryStatus.DELIVERED
    # That worker served e-mail only: the in-app delivery still waits for its worker.
    assert (await e2e.delivery_row(sessions, inapp.id)).status == DeliveryStatus.QUEUED
    assert await outbox.drain(sessions, e2e.FAST, only=[inapp.id]) == 1
    shown = (await e2e.document(gql, sent["id"]))["deliveries"]
    assert {d["channel"]: d["status"] for d in shown} == {
        "inapp": "DELIVERED",
        "email": "DELIVERED",
    }


def test_worker_command_refuses_an_unknown_channel(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["worker", "--once", "--channel", "telefaks"])
    assert exit_.value.code == 1
    assert "Ukjent kanal: telefaks" in capsys.readouterr().err


async def test_server_down_keeps_the_delivery_queued_then_delivers_it_once(
    sessions: Any, smtp: FakeSmtpServer, note: Any
) -> None:
    [email_id] = await _queue(sessions, note[0], "email")
    email = await e2e.delivery_row(sessions, email_id)

    smtp.down()
    try:
        assert await outbox.run_once(sessions, e2e.FAST, only=[email.id]) == 1
        row = await e2e.delivery_row(sessions, email.id)
        assert (row.status, row.attempts) == (DeliveryStatus.QUEUED, 1)
        assert "Fikk ikke kontakt med e-postserveren" in (row.last_error or "")
        assert row.next_attempt_at > utcnow()  # backoff: not due at once
        assert await outbox.drain(sessions, e2e.FAST, only=[email.id]) == 0
    finally:
        smtp.up()
    await e2e.wait_until_due(sessions, [email.id])
    assert await outbox.drain(sessions, e2e.FAST, only=[email.id]) == 1

    row = await e2e.delivery_row(sessions, email.id)
    assert (row.status, row.attempts, row.last_error) == (DeliveryStatus.DELIVERED, 2, None)
    assert len(_mail_for(smtp, email_id)) == 1
    assert await outbox.drain(sessions, e2e.FAST, only=[email.id]) == 0


async def test_after_the_last_attempt_the_delivery_is_failed_and_shown(
    gql: Any, sessions: Any, smtp: FakeSmtpServer, note: Any
) -> None:
    sent = note[0]
    [email_id] = await _queue(sessions, sent, "email")
    email = await e2e.delivery_row(sessions, email_id)
    settings = OutboxSettings(max_attempts=3, backoff_seconds=0.3, max_backoff_seconds=0.6)

    smtp.down()
    try:
        for attempt in range(1, 4):
            assert await outbox.run_once(sessions, settings, only=[email.id]) == 1
            row = await e2e.delivery_row(sessions, email.id)
            assert row.attempts == attempt
            if attempt < 3:
                assert row.status == DeliveryStatus.QUEUED
                # Exponential: the second wait is twice the first.
                wait = (row.next_attempt_at - row.updated_at).total_seconds()
                assert wait == pytest.approx(0.3 * 2 ** (attempt - 1), abs=0.01)
                await e2e.wait_until_due(sessions, [email.id])
        assert row.status == DeliveryStatus.FAILED
        assert row.finished_at is not None
        # Failed is final: nothing is retried, even with the server back.
        smtp.up()
        assert await outbox.drain(sessions, settings, only=[email.id]) == 0
    finally:
        if not smtp.running:
            smtp.up()
    assert _mail_for(smtp, email.id) == []
    [shown] = [
        d
        for d in (await e2e.document(gql, sent["id"]))["deliveries"]
        if d["id"] == encode("Delivery", email.id)
    ]
    assert (shown["status"], shown["attempts"]) == ("FAILED", 3)
    assert "e-postserveren" in shown["lastError"]


@pytest.mark.parametrize("batch", [False, True], ids=["process", "process_batch"])
async def test_an_expired_lease_is_claimed_again_and_the_stalled_worker_does_not_send(
    sessions: Any, smtp: FakeSmtpServer, note: Any, batch: bool
) -> None:
    [email_id] = await _queue(sessions, note[0], "email")
    # A worker claims the job, then stalls past its lease (negative: expired at once).
    stalled = OutboxSettings(lease_seconds=-1)
    [first] = await outbox.claim(sessions, stalled, only=[email_id])
    [second] = await outbox.claim(sessions, OutboxSettings(), only=[email_id])
    assert (first.id, first.attempt, second.attempt) == (email_id, 1, 2)

    assert await outbox.process(sessions, second, OutboxSettings()) == DeliveryStatus.DELIVERED
    # The stalled worker wakes up: its claim is gone, so it neither sends nor records.
    if batch:
        assert await outbox.process_batch(sessions, [first], OutboxSettings()) == 0
    else:
        assert await outbox.process(sessions, first, OutboxSettings()) is None
    row = await e2e.delivery_row(sessions, email_id)
    assert (row.status, row.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert len(_mail_for(smtp, email_id)) == 1


@pytest.mark.parametrize("batch", [False, True], ids=["process", "process_batch"])
async def test_a_lease_that_ran_out_unclaimed_is_renewed_for_the_send(
    sessions: Any, smtp: FakeSmtpServer, note: Any, batch: bool
) -> None:
    # The jobs ahead in the batch took longer than the lease, but nobody else took this
    # one: the worker renews the lease for the send and delivers it.
    [email_id] = await _queue(sessions, note[0], "email")
    [job] = await outbox.claim(sessions, OutboxSettings(lease_seconds=-1), only=[email_id])
    if batch:
        assert await outbox.process_batch(sessions, [job], OutboxSettings()) in (1, -1)
    else:
        assert await outbox.process(sessions, job, OutboxSettings()) == DeliveryStatus.DELIVERED
    row = await e2e.delivery_row(sessions, email_id)
    assert row.status == DeliveryStatus.DELIVERED
    assert row.lease_expires_at is None
    assert len(_mail_for(smtp, email_id)) == 1


async def test_the_worker_loop_delivers_and_stops_when_told(
    sessions: Any, smtp: FakeSmtpServer, note: Any
) -> None:
    [inapp_id] = await _queue(sessions, note[0], "inapp")
    [email_id] = await _queue(sessions, note[0], "email")
    stop = asyncio.Event()
    settings = OutboxSettings(poll_interval_seconds=0.05)
    worker = asyncio.create_task(
        outbox.run_forever(sessions, settings, stop=stop, only=[inapp_id, email_id])
    )
    try:
        for _ in range(200):
            rows = [await e2e.delivery_row(sessions, i) for i in (inapp_id, email_id)]
            if all(row.status == DeliveryStatus.DELIVERED for row in rows):
                break
            await asyncio.sleep(0.05)
        assert [row.status for row in rows] == [DeliveryStatus.DELIVERED] * 2
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=10)
    assert len(_mail_for(smtp, email_id)) == 1


async def test_concurrent_workers_never_send_a_delivery_twice(
    sessions: Any, smtp: FakeSmtpServer, database_url: str, note: Any
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("one worker on SQLite: it has no row locks for FOR UPDATE SKIP LOCKED")
    ids = await _queue(sessions, note[0], "email", count=40)
    settings = OutboxSettings(batch_size=3)

    processed = await asyncio.gather(
        *(outbox.drain(sessions, settings, only=ids) for _ in range(4))
    )

    assert sum(processed) == len(ids)
    assert all(processed), f"a worker got no work: {processed}"
    sent_ids = Counter(m["Message-ID"] for m in smtp.messages)
    assert set(sent_ids) == {f"<tavle-delivery-{i}@tavle>" for i in ids}
    assert set(sent_ids.values()) == {1}
    async with sessions() as session:
        final = (
            await session.execute(
                select(Delivery.status, Delivery.attempts).where(Delivery.id.in_(ids))
            )
        ).all()
    assert set(final) == {(DeliveryStatus.DELIVERED, 1)}
