"""The "email" channel plugin against a real SMTP server (tests/fakes/smtp_server.py).

Plugin-level tests call the hooks with hand-made deliveries; the last test goes end to end
from GraphQL through the outbox worker to the server.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from core import outbox
from core.channels import (
    Attachment,
    Delivery,
    PermanentDeliveryError,
    Recipient,
    Sender,
    TemporaryDeliveryError,
)
from core.plugins import channels, create_plugin_manager
from core.schema.ids import decode_pk
from plugins.email import plugin as email_plugin
from tests import delivery_e2e as e2e
from tests.fakes.smtp_server import FakeSmtpServer

PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


def make_delivery(**changes: object) -> Delivery:
    delivery = Delivery(
        id=12,
        reference="tavle-delivery-12",
        channel="email",
        attempt=1,
        subject="Innkalling til foreldremøte på Bøler skole",
        body="Hei!\n\nVelkommen til foreldremøte tirsdag. Vi gleder oss – hilsen Åse Ødegård.",
        recipient=Recipient(
            person_id=7,
            name="Kari Nordmann",
            national_id=None,
            email="kari@example.no",
            mobile="91234567",
            street_address=None,
            postal_code=None,
            postal_town=None,
        ),
        sender=Sender(
            school_id=1,
            school_name="Bøler skole",
            organisation_number=None,
            municipality_name="Tavle kommune",
            municipality_organisation_number="999999999",
            signed_by="Rektor",
        ),
        sensitive=False,
        restricted=False,
        attachments=(Attachment("innkalling.pdf", "application/pdf", PDF),),
    )
    return replace(delivery, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as server:
        yield server


@pytest.fixture
def smtp(smtp_server: FakeSmtpServer, monkeypatch: pytest.MonkeyPatch) -> FakeSmtpServer:
    return e2e.use_smtp(monkeypatch, smtp_server, "Bøler skole <noreply@boler.example.no>")


async def send(delivery: Delivery):  # type: ignore[no-untyped-def]
    result = email_plugin.deliver(delivery)
    assert result is not None
    return await result


def test_channel_info_through_entry_point() -> None:
    info = channels(create_plugin_manager())["email"]
    assert info.title == "E-post"
    assert info.cost_per_unit == Decimal("0")
    assert info.unit == "e-post"
    assert info.may_carry_sensitive is False
    assert info.requires == "email"
    assert info.reports_status is False


def test_other_channels_are_not_ours() -> None:
    assert email_plugin.deliver(make_delivery(channel="sms")) is None


async def test_hook_answers_only_for_email_through_the_manager(smtp: FakeSmtpServer) -> None:
    # Every plugin's `deliver` is called for every delivery: all but the owner of the
    # channel answer a plain None, so exactly one answer is left.
    manager = create_plugin_manager()
    assert (
        manager.hook.deliver(delivery=make_delivery(channel="carrier-pigeon"), database=None) == []
    )
    [answer] = manager.hook.deliver(delivery=make_delivery(), database=None)
    receipt = await answer
    assert receipt.status == "delivered"
    assert len(smtp.messages) == 1


async def test_email_arrives_with_subject_body_attachment_and_reference(
    smtp: FakeSmtpServer,
) -> None:
    receipt = await send(make_delivery())

    assert receipt.status == "delivered"
    assert receipt.external_id == "<tavle-delivery-12@tavle>"
    assert receipt.units == 1
    assert receipt.cost == Decimal("0")

    [mail] = smtp.received
    assert mail.rcpt_tos == ("kari@example.no",)
    assert mail.mail_from == "noreply@boler.example.no"
    message = mail.message
    assert message["To"].addresses[0].addr_spec == "kari@example.no"
    assert message["From"].addresses[0].display_name == "Bøler skole"
    assert message["Subject"] == "Innkalling til foreldremøte på Bøler skole"
    assert message["Message-ID"] == "<tavle-delivery-12@tavle>"
    assert message["X-Tavle-Reference"] == "tavle-delivery-12"
    assert message["Auto-Submitted"] == "auto-generated"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "hilsen Åse Ødegård" in body.get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "innkalling.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == PDF


async def test_retry_keeps_the_message_id(smtp: FakeSmtpServer) -> None:
    # SMTP cannot deduplicate; an identical Message-ID lets mail clients do it.
    first = await send(make_delivery())
    second = await send(make_delivery(attempt=2))
    assert first.external_id == second.external_id
    assert [m["Message-ID"] for m in smtp.messages] == [first.external_id] * 2


async def test_line_breaks_in_subject_do_not_break_headers(smtp: FakeSmtpServer) -> None:
    await send(make_delivery(subject="Hei\r\nBcc: evil@example.com"))
    [message] = smtp.messages
    assert message["Subject"] == "Hei Bcc: evil@example.com"
    assert message["Bcc"] is None
    assert smtp.received[0].rcpt_tos == ("kari@example.no",)


async def test_refused_recipient_is_permanent(smtp: FakeSmtpServer) -> None:
    smtp.reject_recipient("kari@example.no")
    with pytest.raises(PermanentDeliveryError) as caught:
        await send(make_delivery())
    assert caught.value.detail["smtp_codes"] == [550]
    assert smtp.messages == []


async def test_temporary_refusal_is_temporary(smtp: FakeSmtpServer) -> None:
    smtp.fail_next(1, code=451)
    with pytest.raises(TemporaryDeliveryError) as caught:
        await send(make_delivery())
    assert caught.value.detail["smtp_codes"] == [451]
    # The retry goes through.
    await send(make_delivery(attempt=2))
    assert len(smtp.messages) == 1


async def test_server_down_is_temporary(smtp: FakeSmtpServer) -> None:
    smtp.down()
    try:
        with pytest.raises(TemporaryDeliveryError):
            await send(make_delivery())
    finally:
        smtp.up()
    await send(make_delivery(attempt=2))
    assert len(smtp.messages) == 1


async def test_silent_server_times_out_as_temporary(monkeypatch: pytest.MonkeyPatch) -> None:
    # A listening socket that is never accepted: the TCP handshake succeeds (kernel
    # backlog) but no greeting ever comes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setenv("TAVLE_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("TAVLE_SMTP_PORT", str(silent.getsockname()[1]))
        monkeypatch.setenv("TAVLE_SMTP_TIMEOUT", "0.3")
        with pytest.raises(TemporaryDeliveryError):
            await send(make_delivery())


async def test_sensitive_delivery_is_refused(smtp: FakeSmtpServer) -> None:
    with pytest.raises(PermanentDeliveryError, match="Sensitivt"):
        await send(make_delivery(sensitive=True))
    assert smtp.messages == []


@pytest.mark.parametrize("address", [None, "", "   ", "not-an-address", "a@b@example.no"])
async def test_recipient_without_usable_email_is_refused(
    smtp: FakeSmtpServer, address: str | None
) -> None:
    recipient = replace(make_delivery().recipient, email=address)
    with pytest.raises(PermanentDeliveryError):
        await send(make_delivery(recipient=recipient))
    assert smtp.messages == []


async def test_smtp_login(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeSmtpServer(credentials=("tavle", "hemmelig")) as server:
        monkeypatch.setenv("TAVLE_SMTP_HOST", server.host)
        monkeypatch.setenv("TAVLE_SMTP_PORT", str(server.port))
        monkeypatch.setenv("TAVLE_SMTP_STARTTLS", "0")
        monkeypatch.setenv("TAVLE_SMTP_USERNAME", "tavle")
        monkeypatch.setenv("TAVLE_SMTP_PASSWORD", "feil")
        # A wrong password is the operator's to fix, not a reason to drop the message.
        with pytest.raises(TemporaryDeliveryError):
            await send(make_delivery())
        monkeypatch.setenv("TAVLE_SMTP_PASSWORD", "hemmelig")
        await send(make_delivery(attempt=2))
        [mail] = server.received
        assert mail.authenticated_as == "tavle"


async def test_starttls_with_the_servers_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeSmtpServer(credentials=("tavle", "hemmelig"), starttls=True) as server:
        assert server.ca_file is not None
        for name, value in {
            "TAVLE_SMTP_HOST": server.host,
            "TAVLE_SMTP_PORT": str(server.port),
            "TAVLE_SMTP_USERNAME": "tavle",
            "TAVLE_SMTP_PASSWORD": "hemmelig",
            "TAVLE_SMTP_TIMEOUT": "3",
        }.items():
            monkeypatch.setenv(name, value)
        # The server insists on STARTTLS: plain text is refused, and kept for a retry.
        monkeypatch.setenv("TAVLE_SMTP_STARTTLS", "0")
        with pytest.raises(TemporaryDeliveryError):
            await send(make_delivery())
        # STARTTLS with a certificate nobody vouches for is refused too.
        monkeypatch.setenv("TAVLE_SMTP_STARTTLS", "1")
        monkeypatch.delenv("TAVLE_SMTP_CA_FILE", raising=False)
        with pytest.raises(TemporaryDeliveryError):
            await send(make_delivery())
        assert server.received == []
        # Trusting the server's CA, the message goes through encrypted and logged in.
        monkeypatch.setenv("TAVLE_SMTP_CA_FILE", server.ca_file)
        await send(make_delivery(attempt=3))
        [mail] = server.received
        assert mail.authenticated_as == "tavle"
        assert mail.tls is True


# --------------------------------------------------------------------------------------
# End to end: GraphQL createDocument -> finalizeDocument -> sendDocument -> worker -> SMTP


async def test_note_reaches_the_guardian_without_login_by_email(
    gql: Any, sessions: Any, smtp: FakeSmtpServer
) -> None:
    emma = await e2e.student_id(gql)
    await gql.token(e2e.GUARDIAN)  # Kari has logged in (in-app); Lars never has (e-mail)
    fields = {"emne": "Turdag fredag", "tekst": "Husk matpakke og gode sko på fredag."}
    sent = await e2e.send_new_document(gql, "notat_elev", emma, fields)
    [queued] = e2e.by_channel(sent)["email"]
    assert queued["status"] == "QUEUED"
    ids = [row.id for row in await e2e.delivery_rows(sessions, sent["id"])]

    assert await outbox.drain(sessions, e2e.FAST, only=ids) == len(ids)

    lars = await e2e.person(sessions, int(decode_pk(queued["recipient"]["id"], "Person")))
    assert lars.activated_at is None and lars.email
    [mail] = smtp.received
    assert mail.rcpt_tos == (lars.email,)
    message = mail.message
    assert message["Subject"] == sent["title"]
    assert message["To"].addresses[0].display_name == lars.name
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "Husk matpakke og gode sko på fredag." in body.get_content()
    [attachment] = list(message.iter_attachments())
    pdf = attachment.get_content()
    assert attachment.get_content_type() == "application/pdf"
    assert pdf == await e2e.pdf_of(sessions, sent["id"])
    assert hashlib.sha256(pdf).hexdigest() == sent["pdfSha256"]
    delivery_id = int(decode_pk(queued["id"], "Delivery"))
    assert message["X-Tavle-Reference"] == f"tavle-delivery-{delivery_id}"

    [shown] = e2e.by_channel(await e2e.document(gql, sent["id"]))["email"]
    assert shown["status"] == "DELIVERED"
    assert shown["attempts"] == 1
    assert shown["externalId"] == f"<tavle-delivery-{delivery_id}@tavle>"
