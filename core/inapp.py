"""The in-app message channel: a delivery becomes a message in the recipient's inbox.

It lives in core because it writes Tavle's own tables, but it is registered through the
"tavle" entry point group like every other channel.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from core.channels import ChannelInfo, Delivery, PermanentDeliveryError, Receipt
from core.hookspecs import hookimpl
from core.models import Message, MessageRecipient

CHANNEL = "inapp"


@hookimpl
def channel_info() -> ChannelInfo:
    """The in-app message: free, reaches every person with an account, never sensitive
    (DOMAIN.md: sensitive data only by SvarUt)."""
    return ChannelInfo(
        name=CHANNEL,
        title="Melding i Tavle",
        cost_per_unit=Decimal("0"),
        unit="melding",
        may_carry_sensitive=False,
        requires=None,
    )


@hookimpl
async def deliver(delivery: Delivery, database) -> Receipt | None:  # type: ignore[no-untyped-def]
    """Write the message and its recipient row; a retry finds the earlier message by the
    delivery id instead of writing it again."""
    if delivery.channel != CHANNEL:
        return None
    if delivery.sensitive:
        raise PermanentDeliveryError("Sensitivt innhold kan ikke sendes som melding.")
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
            )
            session.add(message)
            await session.flush()
            session.add(
                MessageRecipient(message_id=message.id, person_id=delivery.recipient.person_id)
            )
            existing = message.id
    return Receipt(status="delivered", external_id=f"message:{existing}", units=1)
