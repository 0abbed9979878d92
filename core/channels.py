"""What a channel plugin is given and gives back: the delivery to carry out, the receipt,
and the two kinds of failure. Plain dataclasses, so a plugin needs nothing from the
database layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class ChannelInfo:
    """How a channel presents itself (`channel_info` hook).

    `requires` names the recipient's (Person's) attribute the channel cannot work
    without: "national_id" (SvarUt), "email", "mobile", "activated_at" (in-app: the
    person has logged in at least once), or None.
    """

    name: str
    title: str
    cost_per_unit: Decimal
    unit: str
    may_carry_sensitive: bool
    requires: str | None = None
    # Whether the worker should poll `delivery_status` for this channel's deliveries.
    reports_status: bool = False


@dataclass(frozen=True)
class Recipient:
    person_id: int
    name: str
    national_id: str | None
    email: str | None
    mobile: str | None
    street_address: str | None
    postal_code: str | None
    postal_town: str | None


@dataclass(frozen=True)
class Sender:
    """The school that sends, on behalf of the municipality."""

    school_id: int
    school_name: str
    organisation_number: str | None
    municipality_name: str
    municipality_organisation_number: str
    signed_by: str | None


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class Delivery:
    """One document (or message) to one recipient over one channel.

    `reference` is stable across retries ("tavle-delivery-<id>"): channels pass it to
    their peer as the external reference so a retry after an unclear result never sends
    twice.
    """

    id: int
    reference: str
    channel: str
    attempt: int
    subject: str
    body: str
    recipient: Recipient
    sender: Sender
    sensitive: bool
    restricted: bool
    doctype: str | None = None
    document_id: int | None = None
    attachments: tuple[Attachment, ...] = ()
    external_id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # The document's own words as plain text (its template's <main>), without letterhead
    # or signature: what a text-only channel (SMS) sends. `body` adds a line saying where
    # the whole document is.
    text: str = ""


@dataclass(frozen=True)
class Receipt:
    """What the channel's peer answered.

    status: "delivered" (in the recipient's hands), "sent" (accepted by the peer, final
    status later through `delivery_status` or a callback).
    """

    status: str
    external_id: str | None = None
    units: int = 1
    cost: Decimal = Decimal("0")
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusUpdate:
    """A later status from the peer (`delivery_status` hook): e.g. SvarUt's "LEST"."""

    status: str  # "sent", "delivered", "read", "printed", "failed"
    detail: dict[str, Any] = field(default_factory=dict)


class DeliveryError(Exception):
    """Base of the failures a channel may raise."""

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.detail = detail or {}


class TemporaryDeliveryError(DeliveryError):
    """The peer is down, timed out or answered 5xx: retry later with backoff."""


class PermanentDeliveryError(DeliveryError):
    """The peer rejected the delivery for good (invalid recipient, 4xx): do not retry."""
