"""The "email" channel plugin against a real SMTP server (tests/fakes/smtp_server.py).

Plugin-level: hooks are called directly with hand-made deliveries; no database.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest

from core.channels import (
    Attachment,
    Delivery,
    PermanentDeliveryError,
    Recipient,
    Sender,
    TemporaryDeliveryError,
)
from core.plugins import channels, create_plugin_manager
from plugins.email import plugin as email_plugin
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
    if not smtp_server.running:  # a test that took it down failed before bringing it up
        smtp_server.up()
    smtp_server.reset()
    monkeypatch.setenv("TAVLE_SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("TAVLE_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("TAVLE_SMTP_STARTTLS", "0")
    monkeypatch.setenv("TAVLE_SMTP_FROM", "Bøler skole <noreply@boler.example.no>")
    monkeypatch.setenv("TAVLE_SMTP_TIMEOUT", "2")
    monkeypatch.delenv("TAVLE_SMTP_USERNAME", raising=False)
    monkeypatch.delenv("TAVLE_SMTP_PASSWORD", raising=False)
    return smtp_server


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
    # The hook is firstresult: a coroutine returned for someone else's channel would shadow
    # the plugin that owns it, so the e-mail plugin must answer a plain None.
    manager = create_plugin_manager()
    assert manager.hook.deliver(delivery=make_delivery(channel="carrier-pigeon")) is None
    receipt = await manager.hook.deliver(delivery=make_delivery())
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
