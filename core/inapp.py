"""The in-app message channel: a delivery becomes a message in the recipient's inbox.

It lives in core because it writes Tavle's own tables, but it is registered through the
"tavle" entry point group like every other channel.
"""

from __future__ import annotations

from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.channels import ChannelInfo, Delivery, PermanentDeliveryError, Receipt
from core.hookspecs import hookimpl
from core.models import Message, MessageKind, MessageRecipient

CHANNEL = "inapp"


@hookimpl
def channel_info() -> ChannelInfo:
    """The in-app message: free, never sensitive (DOMAIN.md: sensitive data only by
    SvarUt), and only for people who have activated their account by logging in once:
    someone who never logs in would never see it, so routing moves on to the doctype's
    next channel (e-mail) for them."""
    return ChannelInfo(
        name=CHANNEL,
        title="Melding i Tavle",
        cost_per_unit=Decimal("0"),
        unit="melding",
        may_carry_sensitive=False,
        requires="activated_at",
    )


@hookimpl
def deliver(delivery: Delivery, database: Any) -> Awaitable[Receipt] | None:
    """Put the message in the recipient's inbox; returns a coroutine resolving to a
    Receipt with status "delivered", or None when the delivery is for another channel (a
    plain function, so other channels' deliveries create no coroutine at all)."""
    if delivery.channel != CHANNEL:
        return None
    return _deliver(delivery, database)


async def _deliver(delivery: Delivery, database: Any) -> Receipt:
    if delivery.sensitive:
        raise PermanentDeliveryError("Sensitivt innhold kan ikke sendes som melding.")
    try:
        message_id = await _write_message(delivery, database)
    except IntegrityError:
        # Two workers raced past the lookup (a lease ran out mid-write): the unique
        # delivery_id kept the second message out; the first one stands.
        message_id = await _write_message(delivery, database)
    return Receipt(status="delivered", external_id=f"message:{message_id}", units=1)


async def _write_message(delivery: Delivery, database: Any) -> int:
    """Write the message and its recipient row; a retry finds the earlier message by the
    delivery id instead of writing it again."""
    async with database() as session, session.begin():
        existing = (
            await session.execute(select(Message.id).where(Message.delivery_id == delivery.id))
        ).scalar_one_or_none()
        if existing is None:
            message = Message(
                sender_id=delivery.options.get("sender_id"),
                school_id=delivery.sender.school_id,
                subject=delivery.subject,
                body=delivery.body,
                document_id=delivery.document_id,
                delivery_id=delivery.id,
                # Not a message someone wrote: kept apart in the messages statistics.
                kind=MessageKind.DOCUMENT if delivery.document_id else MessageKind.NOTICE,
            )
            session.add(message)
            await session.flush()
            session.add(
                MessageRecipient(message_id=message.id, person_id=delivery.recipient.person_id)
            )
            existing = message.id
    return existing
