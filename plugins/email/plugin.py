"""The "email" channel: documents and messages as e-mail over SMTP.

Settings (read on every delivery): TAVLE_SMTP_HOST (127.0.0.1), TAVLE_SMTP_PORT (25),
TAVLE_SMTP_STARTTLS (0/1), TAVLE_SMTP_USERNAME, TAVLE_SMTP_PASSWORD, TAVLE_SMTP_FROM
("Tavle <noreply@tavle.invalid>"), TAVLE_SMTP_TIMEOUT (10 seconds), TAVLE_SMTP_CA_FILE (PEM of
a private CA that signed the server's certificate; system CAs otherwise).

SMTP cannot recognise a repeated message, so a retry after an unclear result (say, the
connection dropped after DATA) may deliver twice. To make such duplicates recognisable the
Message-ID is derived from the delivery's stable reference and the reference travels in
`X-Tavle-Reference`: mail clients collapse identical Message-IDs, and support staff can
match a mail to its delivery.

`deliver` is a plain function that returns a coroutine when the delivery is ours and None
otherwise. It is not `async def` on purpose: every plugin's `deliver` is called for every
delivery, and a plain None tells the worker at once that this plugin is not the one, with
no coroutine created (and left for someone to await) for other channels' deliveries.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from decimal import Decimal
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

from core.channels import ChannelInfo, Delivery, PermanentDeliveryError, Receipt
from core.hookspecs import hookimpl
from plugins.email.client import SmtpConfig, submit

CHANNEL = "email"
MESSAGE_ID_DOMAIN = "tavle"

# Deliberately simple: one @, no whitespace or angle brackets. The SMTP server is the
# authority on whether the address exists; this only keeps junk out of the headers.
_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]+")
_LINE_BREAKS = re.compile(r"[\r\n]+")


def message_id(reference: str) -> str:
    """The deterministic Message-ID of a delivery, e.g. <tavle-delivery-12@tavle>."""
    local = re.sub(r"[^A-Za-z0-9._-]", "-", reference)
    return f"<{local}@{MESSAGE_ID_DOMAIN}>"


def build_message(delivery: Delivery, from_address: str) -> EmailMessage:
    """The e-mail for `delivery`: plain-text body, attachments, reference headers."""
    recipient = (delivery.recipient.email or "").strip()
    if not recipient:
        raise PermanentDeliveryError("Mottakeren har ikke e-postadresse.")
    if not _EMAIL.fullmatch(recipient):
        raise PermanentDeliveryError("Mottakerens e-postadresse er ugyldig.")

    message = EmailMessage()
    message["From"] = from_address
    # The display name helps the recipient see who wrote; Address() quotes it safely.
    username, domain = recipient.rsplit("@", 1)
    try:
        message["To"] = Address(
            display_name=_one_line(delivery.recipient.name), username=username, domain=domain
        )
    except (ValueError, IndexError):
        message["To"] = recipient
    # A subject with line breaks would otherwise make the header invalid (or inject one).
    message["Subject"] = _one_line(delivery.subject) or "Melding fra skolen"
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = message_id(delivery.reference)
    message["X-Tavle-Reference"] = delivery.reference
    # Tells vacation responders and mailing software not to answer a no-reply sender.
    message["Auto-Submitted"] = "auto-generated"
    message["Content-Language"] = "nb"
    message.set_content(delivery.body or "", subtype="plain", charset="utf-8")
    for attachment in delivery.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        if not subtype:
            maintype, subtype = "application", "octet-stream"
        message.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
        )
    return message


def _one_line(text: str | None) -> str:
    return _LINE_BREAKS.sub(" ", text or "").strip()


@hookimpl
def channel_info() -> ChannelInfo:
    """Describe the e-mail channel: free, needs an e-mail address, never sensitive
    content (ordinary e-mail is neither encrypted end to end nor authenticated)."""
    return ChannelInfo(
        name=CHANNEL,
        title="E-post",
        cost_per_unit=Decimal("0"),
        unit="e-post",
        may_carry_sensitive=False,
        requires="email",
    )


@hookimpl
def deliver(delivery: Delivery) -> Awaitable[Receipt] | None:
    """Send `delivery` as e-mail; returns a coroutine resolving to a Receipt with status
    "delivered" (handed to the SMTP server), or None when the delivery is for another
    channel."""
    if delivery.channel != CHANNEL:
        return None
    return _deliver(delivery)


async def _deliver(delivery: Delivery) -> Receipt:
    # Defence in depth: routing should never give us sensitive content, but refuse
    # rather than trust the caller, since e-mail may pass through anyone's servers.
    if delivery.sensitive:
        raise PermanentDeliveryError("Sensitivt innhold kan ikke sendes på e-post.")
    config = SmtpConfig.from_env()
    message = build_message(delivery, config.from_address)
    await submit(config, message)
    return Receipt(
        status="delivered",
        external_id=message["Message-ID"],
        units=1,
        cost=Decimal("0"),
        detail={"attachments": len(delivery.attachments)},
    )
