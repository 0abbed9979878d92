"""The "svarut" channel against a fake KS SvarUt over real HTTP (tests/fakes/svarut_server.py):
the v1 sendForsendelse multipart, level 4 for sensitive letters, the external reference
that keeps a retry from sending twice, status polling, and a SvarUt that is down.

End-to-end tests start at GraphQL (createDocument -> finalizeDocument -> sendDocument),
run the outbox worker on their own deliveries and assert on what the fake received.
"""

from __future__ import annotations

import hashlib
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
from core.models import DeliveryStatus
from core.models.base import utcnow
from plugins.svarut import plugin as svarut_plugin
from plugins.svarut.client import SvarUtClient, SvarUtConfig
from tests import delivery_e2e as e2e
from tests.fakes.svarut_server import API, FakeSvarUt, make_fodselsnummer

PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
LETTER = "brev_personopplysninger"  # SvarUt, security level 3
WARNING = "varsel_orden_atferd"  # sensitive and restricted: level 4
LETTER_FIELDS = {"overskrift": "Utviklingssamtale", "tekst": "Velkommen til samtale."}
WARNING_FIELDS = {
    "karakter": "orden",
    "termin": "1. termin",
    "grunnlag": "Gjentatte brudd på ordensreglementet.",
}


@pytest.fixture(scope="module")
def svarut_server() -> Iterator[FakeSvarUt]:
    with FakeSvarUt(username="tavle", password="hemmelig") as server:
        yield server


@pytest.fixture
def svarut(svarut_server: FakeSvarUt, monkeypatch: pytest.MonkeyPatch) -> FakeSvarUt:
    if svarut_server._server is None:  # a test that took it down failed before up()
        svarut_server.up()
    svarut_server.reset()
    svarut_server.duplicate_reference = "refuse"
    _configure(monkeypatch, svarut_server)
    return svarut_server


def _configure(monkeypatch: pytest.MonkeyPatch, server: FakeSvarUt) -> None:
    monkeypatch.setenv("TAVLE_SVARUT_BASE_URL", server.base_url)
    monkeypatch.setenv("TAVLE_SVARUT_USERNAME", server.username)
    monkeypatch.setenv("TAVLE_SVARUT_PASSWORD", server.password)
    monkeypatch.setenv("TAVLE_SVARUT_TIMEOUT", "3")
    monkeypatch.delenv("TAVLE_SVARUT_CERTIFICATE", raising=False)
    monkeypatch.delenv("TAVLE_SVARUT_COST_PER_LETTER", raising=False)


def make_delivery(**changes: Any) -> Delivery:
    delivery = Delivery(
        id=41,
        reference="tavle-delivery-41",
        channel="svarut",
        attempt=1,
        subject="Innkalling til møte – Emma Hansen",
        body="",
        recipient=Recipient(
            person_id=7,
            name="Kari Hansen",
            national_id=make_fodselsnummer("150482"),
            email=None,
            mobile=None,
            street_address="Kirkeveien 14",
            postal_code="1450",
            postal_town="NESODDTANGEN",
        ),
        sender=Sender(
            school_id=1,
            school_name="Nordby skole",
            organisation_number="974000000",
            municipality_name="Eksempel kommune",
            municipality_organisation_number="999999999",
            signed_by="Rektor",
        ),
        sensitive=False,
        restricted=False,
        attachments=(Attachment("innkalling.pdf", "application/pdf", PDF),),
    )
    return replace(delivery, **changes)


async def deliver(delivery: Delivery):  # type: ignore[no-untyped-def]
    answer = svarut_plugin.deliver(delivery)
    assert answer is not None
    return await answer


async def _statuses(gql: Any, document_gid: str) -> dict[str, str]:
    """Forsendelse id -> the delivery's status, as Document.deliveries shows it."""
    shown = (await e2e.document(gql, document_gid))["deliveries"]
    return {d["externalId"]: d["status"] for d in shown}


# --------------------------------------------------------------------------------------
# End to end


async def test_letter_reaches_every_guardian_and_its_status_is_polled(
    gql: Any, sessions: Any, svarut: FakeSvarUt
) -> None:
    emma = await e2e.student_id(gql)
    sent = await e2e.send_new_document(gql, LETTER, emma, LETTER_FIELDS)
    rows = await e2e.delivery_rows(sessions, sent["id"])
    guardians = await e2e.guardians(sessions, emma)
    assert [(r.recipient_id, r.channel) for r in rows] == [(g.id, "svarut") for g in guardians]
    ids = [r.id for r in rows]

    assert await outbox.drain(sessions, e2e.FAST, only=ids) == len(ids)

    pdf = await e2e.pdf_of(sessions, sent["id"])
    assert hashlib.sha256(pdf).hexdigest() == sent["pdfSha256"]
    for row, guardian in zip(rows, guardians, strict=True):
        [received] = svarut.sent_with(f"tavle-delivery-{row.id}")
        meta = received.metadata
        assert meta["tittel"] == sent["title"]
        assert meta["avgivendeSystem"] == "Tavle"
        assert meta["mottaker"]["digitalAdresse"] == {"fodselsNummer": guardian.national_id}
        assert meta["mottaker"]["postAdresse"]["navn"] == guardian.name
        assert meta["mottaker"]["postAdresse"]["postNummer"] == guardian.postal_code
        assert meta["kunDigitalLevering"] is False
        assert meta["kryptert"] is False and meta["krevNiva4Innlogging"] is False
        assert meta["forsendelsesType"] == "Brev fra skolen"  # the doctype's plugin setting
        assert [d["mimeType"] for d in meta["dokumenter"]] == ["application/pdf"]
        assert received.files == [(meta["dokumenter"][0]["filnavn"], pdf)]
        # The wire format of the KS Java client: metadata part, then "filer" parts.
        assert [p["name"] for p in received.parts] == ["forsendelse", "filer"]
        assert received.parts[1]["content_type"] == "application/octet-stream"
    assert svarut.duplicates == []

    shown = e2e.by_channel(await e2e.document(gql, sent["id"]))["svarut"]
    assert {d["status"] for d in shown} == {"SENT"}
    assert {Decimal(str(d["cost"])) for d in shown} == {Decimal("12.50")}  # per letter
    assert {d["units"] for d in shown} == {1}
    forsendelse_ids = [d["externalId"] for d in shown]
    assert sorted(forsendelse_ids) == sorted(svarut.forsendelser)

    # SvarUt reports: the first guardian read it, the second got it on paper.
    first, second = forsendelse_ids
    svarut.set_status(first, "LEST")
    svarut.set_status(second, "SENDT_PRINT")
    assert await outbox.poll_statuses(sessions, only=ids) == 2
    assert await _statuses(gql, sent["id"]) == {first: "READ", second: "PRINTED"}
    # A printed letter may still be read; a read one never goes back.
    svarut.set_status(second, "LEST")
    svarut.set_status(first, "SENDT_DIGITALT")
    assert await outbox.poll_statuses(sessions, only=ids) == 1
    assert await _statuses(gql, sent["id"]) == {first: "READ", second: "READ"}
    history = (await e2e.delivery_row(sessions, ids[1])).receipt["statuses"]
    assert [h["detail"]["svarut_status"] for h in history] == ["SENDT_PRINT", "LEST"]


async def test_sensitive_letter_goes_encrypted_with_level_4(
    gql: Any, sessions: Any, svarut: FakeSvarUt
) -> None:
    emma = await e2e.student_id(gql)
    sent = await e2e.send_new_document(gql, WARNING, emma, WARNING_FIELDS)
    ids = [r.id for r in await e2e.delivery_rows(sessions, sent["id"])]

    await outbox.drain(sessions, e2e.FAST, only=ids)

    pdf = await e2e.pdf_of(sessions, sent["id"])
    for delivery_id in ids:
        [received] = svarut.sent_with(f"tavle-delivery-{delivery_id}")
        assert received.metadata["krevNiva4Innlogging"] is True
        assert received.metadata["kryptert"] is True
        # The fake could only read the file by decrypting it with its own key.
        assert received.encrypted is True
        assert received.files[0][1] == pdf
        row = await e2e.delivery_row(sessions, delivery_id)
        assert row.status == DeliveryStatus.SENT
        assert row.receipt["receipt"]["level4"] is True


async def test_svarut_down_keeps_letters_queued_until_it_is_back(
    gql: Any, sessions: Any, svarut: FakeSvarUt
) -> None:
    emma = await e2e.student_id(gql)
    sent = await e2e.send_new_document(gql, LETTER, emma, LETTER_FIELDS)
    ids = [r.id for r in await e2e.delivery_rows(sessions, sent["id"])]

    svarut.down()
    try:
        assert await outbox.run_once(sessions, e2e.FAST, only=ids) == len(ids)
        for delivery_id in ids:
            row = await e2e.delivery_row(sessions, delivery_id)
            assert row.status == DeliveryStatus.QUEUED
            assert row.attempts == 1
            assert row.next_attempt_at > utcnow()  # backoff: not retried at once
            assert "Fikk ikke kontakt med SvarUt" in (row.last_error or "")
        assert await outbox.drain(sessions, e2e.FAST, only=ids) == 0
    finally:
        svarut.up()
    await e2e.wait_until_due(sessions, ids)
    assert await outbox.drain(sessions, e2e.FAST, only=ids) == len(ids)

    for delivery_id in ids:
        row = await e2e.delivery_row(sessions, delivery_id)
        assert (row.status, row.attempts) == (DeliveryStatus.SENT, 2)
        assert len(svarut.sent_with(f"tavle-delivery-{delivery_id}")) == 1
    assert svarut.duplicates == []


# --------------------------------------------------------------------------------------
# The plugin and client against the fake


async def test_a_lost_answer_is_found_by_reference_not_sent_again(
    svarut: FakeSvarUt,
) -> None:
    # Like KS's v1 service, accept a repeated eksternReferanse: only the client's own
    # look-up keeps the retry from sending a second letter.
    svarut.duplicate_reference = "accept"
    svarut.accept_then_fail_next(1)
    with pytest.raises(TemporaryDeliveryError):
        await deliver(make_delivery())
    [stored] = svarut.sent_with("tavle-delivery-41")

    receipt = await deliver(make_delivery(attempt=2))

    assert receipt.external_id == stored.id
    assert receipt.detail["already_sent"] is True
    assert receipt.cost == Decimal("12.50")
    assert len(svarut.sent_with("tavle-delivery-41")) == 1
    assert svarut.sends() == 1


async def test_a_refused_duplicate_counts_as_sent(svarut: FakeSvarUt) -> None:
    first = await deliver(make_delivery())
    # The look-up lags behind (nothing found), so the client sends; SvarUt refuses the
    # repeat with 409 and the client finds the first letter instead.
    svarut.lag_lookups(1)
    second = await deliver(make_delivery(attempt=2))
    assert second.external_id == first.external_id
    assert second.detail["already_sent"] is True
    assert svarut.duplicates == ["tavle-delivery-41"]
    assert len(svarut.forsendelser) == 1


async def test_recipient_without_national_id_or_address_is_refused(svarut: FakeSvarUt) -> None:
    base = make_delivery()
    with pytest.raises(PermanentDeliveryError, match="fødselsnummer"):
        await deliver(replace(base, recipient=replace(base.recipient, national_id=None)))
    with pytest.raises(PermanentDeliveryError, match="postadresse"):
        await deliver(replace(base, recipient=replace(base.recipient, postal_code=None)))
    assert svarut.requests == []


async def test_wrong_password_is_permanent_and_missing_settings_wait(
    svarut: FakeSvarUt, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAVLE_SVARUT_PASSWORD", "feil")
    with pytest.raises(PermanentDeliveryError, match="påloggingen"):
        await deliver(make_delivery())
    # Without a base URL nothing is sent anywhere (never to the real SvarUt by default).
    monkeypatch.delenv("TAVLE_SVARUT_BASE_URL")
    with pytest.raises(TemporaryDeliveryError, match="ikke konfigurert"):
        await deliver(make_delivery())
    assert svarut.forsendelser == {}


async def test_fake_refuses_fields_outside_the_v1_model(svarut: FakeSvarUt) -> None:
    forsendelse, files, _ = svarut_plugin.build_forsendelse(make_delivery())
    client = SvarUtClient(SvarUtConfig.from_env())
    with pytest.raises(PermanentDeliveryError) as refused:
        await client.send({**forsendelse, "taushetsbelagtPost": True}, files)
    assert "taushetsbelagtPost" in str(refused.value)
    assert svarut.forsendelser == {}
    assert (await client.send(forsendelse, files)) in svarut.forsendelser


async def test_status_values_map_to_delivery_statuses(svarut: FakeSvarUt) -> None:
    receipt = await deliver(make_delivery())
    expected = {
        "MOTTATT": "sent",
        "AKSEPTERT": "sent",
        "KLAR_FOR_MOTTAK": "sent",
        "VARSLET": "delivered",
        "SENDT_DIGITALT": "delivered",
        "SENDT_SDP": "delivered",
        "LEVERT_SDP": "delivered",
        "SENDT_PRINT": "printed",
        "PRINTET": "printed",
        "LEST": "read",
        "IKKE_LEVERT": "failed",
        "AVVIST": "failed",
        "MANUELT_HANDTERT": "failed",
    }
    polled = make_delivery(external_id=receipt.external_id)
    for svarut_status, status in expected.items():
        svarut.set_status(receipt.external_id, svarut_status)
        answer = svarut_plugin.delivery_status(polled)
        assert answer is not None
        update = await answer
        assert update is not None
        assert (update.status, update.detail["svarut_status"]) == (status, svarut_status)
    assert svarut_plugin.delivery_status(make_delivery()) is None  # no forsendelse id yet
    assert f"{API}/{receipt.external_id}/status" in {path for _, path in svarut.requests}


async def test_unknown_forsendelse_has_no_status(svarut: FakeSvarUt) -> None:
    answer = svarut_plugin.delivery_status(
        make_delivery(external_id="00000000-0000-0000-0000-000000000000")
    )
    assert answer is not None
    assert await answer is None
