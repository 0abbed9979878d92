"""The in-app message channel: a delivery becomes a message in the recipient's inbox,
once, however often the worker retries it; only people who have logged in get it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from core import outbox
from core.channels import PermanentDeliveryError
from core.inapp import channel_info
from core.inapp import deliver as inapp_deliver
from core.models import Delivery, DeliveryStatus, Message, MessageRecipient
from core.schema.ids import decode_pk
from tests import delivery_e2e as e2e

NOTE = "notat_elev"  # in-app first, then e-mail
FIELDS = {"emne": "Turdag fredag", "tekst": "Husk matpakke og gode sko på fredag."}


async def _messages(sessions: Any, delivery_id: int) -> list[tuple[Message, list[int]]]:
    async with sessions() as session:
        found = list(
            (
                await session.execute(select(Message).where(Message.delivery_id == delivery_id))
            ).scalars()
        )
        return [
            (
                message,
                list(
                    (
                        await session.execute(
                            select(MessageRecipient.person_id).where(
                                MessageRecipient.message_id == message.id
                            )
                        )
                    ).scalars()
                ),
            )
            for message in found
        ]


def test_only_activated_accounts_are_reached_in_app() -> None:
    info = channel_info()
    assert (info.name, info.requires, info.may_carry_sensitive) == ("inapp", "activated_at", False)


async def test_note_lands_once_in_the_inbox_of_a_guardian_who_has_logged_in(
    gql: Any, sessions: Any
) -> None:
    emma = await e2e.student_id(gql)
    await gql.token(e2e.GUARDIAN)  # Kari logs in: her account is activated
    sent = await e2e.send_new_document(gql, NOTE, emma, FIELDS)
    [queued] = e2e.by_channel(sent)["inapp"]
    kari = int(decode_pk(queued["recipient"]["id"], "Person"))
    assert (await e2e.person(sessions, kari)).username == e2e.GUARDIAN
    # Lars has never logged in: the note goes to him by the next channel, e-mail.
    assert [d["recipient"]["id"] for d in e2e.by_channel(sent)["email"]] != [
        queued["recipient"]["id"]
    ]
    delivery_id = int(decode_pk(queued["id"], "Delivery"))

    assert await outbox.drain(sessions, e2e.FAST, only=[delivery_id]) == 1

    [(message, recipients)] = await _messages(sessions, delivery_id)
    assert recipients == [kari]
    assert message.subject == sent["title"]
    assert "Husk matpakke og gode sko på fredag." in message.body
    assert message.document_id == decode_pk(sent["id"], "Document")
    [shown] = e2e.by_channel(await e2e.document(gql, sent["id"]))["inapp"]
    assert (shown["status"], shown["externalId"]) == ("DELIVERED", f"message:{message.id}")

    # A retry (say the worker died after writing, before recording) writes nothing new.
    async with sessions() as session, session.begin():
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status=DeliveryStatus.SENDING, attempts=Delivery.attempts + 1)
        )
    assert await outbox.process(sessions, delivery_id, e2e.FAST) == DeliveryStatus.DELIVERED
    [(again, _)] = await _messages(sessions, delivery_id)
    assert again.id == message.id


async def test_other_channels_and_sensitive_content_are_not_taken(sessions: Any) -> None:
    from tests.test_svarut_channel import make_delivery

    assert inapp_deliver(make_delivery(), sessions) is None  # a SvarUt delivery
    answer = inapp_deliver(make_delivery(channel="inapp", sensitive=True), sessions)
    assert answer is not None
    with pytest.raises(PermanentDeliveryError, match="Sensitivt"):
        await answer
