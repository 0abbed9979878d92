"""The "printmail" channel: a finalized document printed and posted as a paper letter by a
print-and-post service (an example of a third-party Tavle plugin; see docs/plugins.md).

The service's protocol (JSON over HTTP, bearer token):

- `POST {base}/letters` with {"reference", "recipient": {name, street_address,
  postal_code, postal_town}, "sender": {name, organisation_number}, "color", "duplex",
  "filename", "pdf" (base64)} answers 201 {"id", "status": "received", "sheets"}; a
  repeated "reference" answers 200 with the letter it already has, so a retry never
  posts a second letter.
- `GET {base}/letters/{id}` answers {"id", "status"}: "received", "printed", "posted"
  or "returned" (undeliverable, came back).

Settings (environment, read on every call so a change needs no restart):
TAVLE_PRINTMAIL_URL, TAVLE_PRINTMAIL_TOKEN, TAVLE_PRINTMAIL_PRICE (NOK per letter, 14.50),
TAVLE_PRINTMAIL_TIMEOUT (seconds, 10). A doctype may set `plugins.printmail.color` and
`plugins.printmail.duplex` (see `doctype_fields`).
"""

from __future__ import annotations

import base64
import os
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from core.channels import (
    ChannelInfo,
    Delivery,
    DeliveryError,
    PermanentDeliveryError,
    Receipt,
    StatusUpdate,
    TemporaryDeliveryError,
)
from core.hookspecs import hookimpl

CHANNEL = "printmail"
DEFAULT_PRICE = Decimal("14.50")

# The service's letter statuses -> Tavle's delivery statuses ("received" is no news).
STATUSES = {"printed": "printed", "posted": "printed", "returned": "failed"}
# 4xx answers that mean "not now" rather than "never".
RETRYABLE = frozenset({408, 425, 429})


def price() -> Decimal:
    try:
        return Decimal(os.environ.get("TAVLE_PRINTMAIL_PRICE", "") or DEFAULT_PRICE)
    except InvalidOperation:
        return DEFAULT_PRICE


def _client() -> httpx.AsyncClient:
    base_url = os.environ.get("TAVLE_PRINTMAIL_URL", "")
    if not base_url:
        # Not configured yet: temporary, so the letters wait in the queue for the config.
        raise TemporaryDeliveryError("Trykketjenesten er ikke konfigurert (TAVLE_PRINTMAIL_URL).")
    token = os.environ.get("TAVLE_PRINTMAIL_TOKEN", "")
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=float(os.environ.get("TAVLE_PRINTMAIL_TIMEOUT", "10")),
    )


def _check(response: httpx.Response) -> dict[str, Any]:
    """The JSON answer, or the right kind of DeliveryError for a failed request."""
    detail = {"http_status": response.status_code}
    if response.status_code >= 500 or response.status_code in RETRYABLE:
        raise TemporaryDeliveryError(
            f"Trykketjenesten svarte {response.status_code}.", detail=detail
        )
    if response.status_code >= 400:
        raise PermanentDeliveryError(
            f"Trykketjenesten avviste brevet ({response.status_code}): {response.text[:200]}",
            detail=detail,
        )
    try:
        answer = response.json()
    except ValueError as error:
        raise TemporaryDeliveryError("Trykketjenesten svarte ikke med JSON.") from error
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
        raise TemporaryDeliveryError("Trykketjenesten svarte uten brev-id.", detail=detail)
    return answer


def letter(delivery: Delivery) -> dict[str, Any]:
    """The request body for `delivery`; PermanentDeliveryError when it cannot be a letter."""
    recipient = delivery.recipient
    if not (recipient.street_address and recipient.postal_code and recipient.postal_town):
        raise PermanentDeliveryError("Mottakeren mangler fullstendig postadresse.")
    pdfs = [a for a in delivery.attachments if a.content_type == "application/pdf"]
    if len(pdfs) != 1:
        raise PermanentDeliveryError("Et papirbrev må ha nøyaktig ett ferdigstilt dokument (PDF).")
    options = delivery.options
    return {
        "reference": delivery.reference,
        "recipient": {
            "name": recipient.name,
            "street_address": recipient.street_address,
            "postal_code": recipient.postal_code,
            "postal_town": recipient.postal_town,
        },
        "sender": {
            "name": delivery.sender.school_name,
            "organisation_number": delivery.sender.organisation_number,
        },
        "color": options.get("color") is True,
        "duplex": options.get("duplex", True) is True,
        "filename": pdfs[0].filename,
        "pdf": base64.b64encode(pdfs[0].content).decode("ascii"),
    }


@hookimpl
def channel_info() -> ChannelInfo:
    """Paper letters: priced per letter, need a postal address. Not for sensitive content:
    the print service is an ordinary processor, not cleared for special categories."""
    return ChannelInfo(
        name=CHANNEL,
        title="Papirbrev (trykk og post)",
        cost_per_unit=price(),
        unit="brev",
        may_carry_sensitive=False,
        requires="street_address",
        reports_status=True,
    )


@hookimpl
def doctype_fields() -> dict[str, dict[str, Any]]:
    """Settings a doctype may give under `plugins.printmail`."""
    return {
        CHANNEL: {
            "color": "true/false: skriv ut i farger (standard: svart-hvitt).",
            "duplex": "true/false: skriv ut tosidig (standard: true).",
        }
    }


@hookimpl
async def deliver(delivery: Delivery) -> Receipt | None:
    """Hand the letter to the print service, once per `delivery.reference`."""
    if delivery.channel != CHANNEL:
        return None
    if delivery.sensitive:
        # Routing never sends sensitive documents here; refuse rather than trust it.
        raise PermanentDeliveryError("Sensitive dokumenter sendes ikke som papirbrev herfra.")
    body = letter(delivery)
    try:
        async with _client() as client:
            response = await client.post("/letters", json=body)
    except httpx.TransportError as error:  # refused, reset, timed out: try again later
        raise TemporaryDeliveryError(f"Trykketjenesten svarer ikke: {error}") from error
    answer = _check(response)
    return Receipt(
        status="sent",
        external_id=answer["id"],
        units=1,
        cost=price(),
        detail={"sheets": answer.get("sheets"), "repeated": response.status_code == 200},
    )


@hookimpl
async def delivery_status(delivery: Delivery) -> StatusUpdate | None:
    """Whether the letter has been printed and posted, or came back."""
    if delivery.channel != CHANNEL or not delivery.external_id:
        return None
    try:
        async with _client() as client:
            response = await client.get(f"/letters/{delivery.external_id}")
        answer = _check(response)
    except (httpx.TransportError, DeliveryError):
        return None  # no news (down, or does not know the id); the worker asks again later
    status = STATUSES.get(str(answer.get("status")))
    if status is None:
        return None
    return StatusUpdate(status=status, detail={"printmail_status": answer["status"]})
