"""Who gets a document and by which channel: the doctype's recipients and channels in
order of preference, checked against what each recipient can receive."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.channels import ChannelInfo
from core.errors import BadInput

REQUIREMENT_TEXT = {
    "national_id": "fødselsnummer",
    "email": "e-postadresse",
    "mobile": "mobilnummer",
    "activated_at": "aktivert konto",
}


@dataclass(frozen=True)
class PlannedDelivery:
    recipient_id: int
    channel: str


def allowed_channels(
    doctype: Any, channels: dict[str, ChannelInfo], *, sensitive: bool
) -> list[ChannelInfo]:
    """The doctype's channels, in order; sensitive content only where the channel allows it.

    The doctype loader already refuses a sensitive doctype routed to email or SMS; this
    check is the same rule enforced again at send time, in code.
    """
    found = []
    for name in doctype.channels:
        info = channels.get(name)
        if info is None:
            raise BadInput(f"Kanalen {name!r} er ikke tilgjengelig (utvidelsen er slått av).")
        if sensitive and not info.may_carry_sensitive:
            continue
        found.append(info)
    return found


def plan_deliveries(
    doctype: Any,
    channels: dict[str, ChannelInfo],
    recipients: Sequence[Any],
    *,
    sensitive: bool,
) -> list[PlannedDelivery]:
    """One (recipient, channel) per delivery; raises BadInput naming the first recipient
    no allowed channel can reach, before anything is written."""
    usable = allowed_channels(doctype, channels, sensitive=sensitive)
    if not usable:
        if sensitive:
            raise BadInput(
                "Dokumentet inneholder sensitive personopplysninger og kan bare sendes med "
                f"SvarUt; ingen av kanalene til {doctype.key!r} "
                f"({', '.join(doctype.channels) or 'ingen'}) kan brukes.",
                field="channels",
            )
        raise BadInput(
            f"Dokumenttypen {doctype.key!r} har ingen kanal som kan brukes.", field="channels"
        )
    planned: list[PlannedDelivery] = []
    for person in recipients:
        reachable = [c for c in usable if not c.requires or getattr(person, c.requires, None)]
        if not reachable:
            missing = " eller ".join(
                f"{REQUIREMENT_TEXT.get(c.requires or '', c.requires)} ({c.title})" for c in usable
            )
            raise BadInput(
                f"{person.name} kan ikke motta dokumentet: mangler {missing}.",
                field="recipients",
            )
        chosen = reachable if doctype.delivery == "all" else reachable[:1]
        planned += [PlannedDelivery(person.id, c.name) for c in chosen]
    return planned
