"""The "sms" channel: text messages through an HTTP SMS gateway.

The gateway protocol (send, poll, delivery-report callback) is documented in
plugins/sms/README.md, with every environment variable. In short: `deliver` POSTs the text
to `{TAVLE_SMS_BASE_URL}/v1/messages` with the delivery's reference (the gateway treats a
repeated reference as the same message, so retries never send twice), `delivery_status`
polls `GET /v1/messages/{id}`, and the `startup` hook adds the route `/callbacks/sms` where
the gateway reports "delivered"/"failed".

`deliver` and `delivery_status` are plain functions that return a coroutine when the
delivery is ours and None otherwise. They are not `async def` on purpose: every plugin's
hook is called for every delivery, and a plain None says at once "not mine", with no
coroutine created for other channels' deliveries.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.channels import (
    ChannelInfo,
    Delivery,
    PermanentDeliveryError,
    Receipt,
    Sender,
    StatusUpdate,
    TemporaryDeliveryError,
)
from core.hookspecs import hookimpl
from plugins.sms import client
from plugins.sms.segments import count_segments

log = logging.getLogger(__name__)

CHANNEL = "sms"
CALLBACK_PATH = "/callbacks/sms"
DEFAULT_COST_PER_SEGMENT = "0.69"
DEFAULT_MAX_SEGMENTS = 10

# Gateway status -> our status. Anything "in flight" is "sent" (accepted, final word later).
GATEWAY_STATUSES = {
    "accepted": "sent",
    "queued": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "failed": "failed",
}
# What a delivery report may say (the gateway only calls back with a final status).
REPORT_STATUSES = frozenset({"delivered", "failed"})

_SENDER_ID = re.compile(r"[A-Za-z0-9]{1,11}")
_SEPARATORS = re.compile(r"[\s\-.()]")


def cost_per_segment(sender: Sender | None = None) -> Decimal:
    """NOK per segment: the school's own price when TAVLE_SMS_COST_PER_SEGMENT_BY_SCHOOL
    names it ("<organisation number or school id>=<price>", comma-separated; schools
    may have their own agreement with the operator), else TAVLE_SMS_COST_PER_SEGMENT
    (0.69). The delivery row carries the school, so costs add up per school."""
    default = _price(
        os.environ.get("TAVLE_SMS_COST_PER_SEGMENT") or DEFAULT_COST_PER_SEGMENT,
        "TAVLE_SMS_COST_PER_SEGMENT",
    )
    if sender is None:
        return default
    keys = {str(sender.school_id)}
    if sender.organisation_number:
        keys.add(sender.organisation_number.replace(" ", ""))
    for item in (os.environ.get("TAVLE_SMS_COST_PER_SEGMENT_BY_SCHOOL") or "").split(","):
        if not item.strip():
            continue
        key, separator, price = item.partition("=")
        if not separator:
            raise TemporaryDeliveryError(
                "TAVLE_SMS_COST_PER_SEGMENT_BY_SCHOOL må ha formen «skole=pris,skole=pris»."
            )
        if key.strip().replace(" ", "") in keys:
            return _price(price, "TAVLE_SMS_COST_PER_SEGMENT_BY_SCHOOL")
    return default


def _price(text: str, setting: str) -> Decimal:
    try:
        price = Decimal(text.strip())
    except ArithmeticError:
        price = Decimal(-1)
    if not price.is_finite() or price < 0:
        # The operator's to fix; until then the messages wait rather than go uncosted.
        raise TemporaryDeliveryError(f"Ugyldig SMS-pris i {setting}: {text!r}.")
    return price


def max_segments() -> int:
    return int(os.environ.get("TAVLE_SMS_MAX_SEGMENTS") or DEFAULT_MAX_SEGMENTS)


def normalise_mobile(number: str | None) -> str:
    """A Norwegian mobile number as +47XXXXXXXX, or PermanentDeliveryError.

    Accepts the ways people write them: "912 34 567", "+47 912 34 567", "0047 91234567",
    "4791234567". Norwegian mobile numbers are eight digits starting with 4 or 9; the
    gateway only serves Norway, so foreign numbers are refused.
    """
    if not number or not number.strip():
        raise PermanentDeliveryError("Mottakeren har ikke mobilnummer.")
    digits = _SEPARATORS.sub("", number)
    if digits.startswith("+"):
        digits = digits[1:]
        if not digits.startswith("47"):
            raise PermanentDeliveryError("Bare norske mobilnumre (+47) støttes.")
        digits = digits[2:]
    elif digits.startswith("0047"):
        digits = digits[4:]
    elif len(digits) == 10 and digits.startswith("47"):
        digits = digits[2:]
    if not (len(digits) == 8 and digits.isdigit() and digits[0] in "49"):
        raise PermanentDeliveryError("Ugyldig norsk mobilnummer.")
    return "+47" + digits


def sms_text(delivery: Delivery) -> str:
    """The text to send: the document's own words (`delivery.text`), else the body, else
    the subject. Attachments cannot travel by SMS; doctypes that need them list another
    channel."""
    text = (
        (delivery.text or "").strip()
        or (delivery.body or "").strip()
        or (delivery.subject or "").strip()
    )
    if not text:
        raise PermanentDeliveryError("SMS-en har ingen tekst.")
    return text


@hookimpl
def channel_info() -> ChannelInfo:
    """Describe the SMS channel: paid per segment, needs a mobile number, and reports
    delivery later (callback, or polling through `delivery_status`)."""
    return ChannelInfo(
        name=CHANNEL,
        title="SMS",
        cost_per_unit=cost_per_segment(),
        unit="segment",
        may_carry_sensitive=False,
        requires="mobile",
        reports_status=True,
    )


@hookimpl
def deliver(delivery: Delivery) -> Awaitable[Receipt] | None:
    """Send `delivery` as an SMS; returns a coroutine resolving to a Receipt with status
    "sent" (the gateway accepted it; the handset's delivery report comes later), or None
    when the delivery is for another channel."""
    if delivery.channel != CHANNEL:
        return None
    return _deliver(delivery)


async def _deliver(delivery: Delivery) -> Receipt:
    # Defence in depth: routing should never give us sensitive content, but an SMS is
    # readable by anyone holding the phone, so refuse rather than trust the caller.
    if delivery.sensitive:
        raise PermanentDeliveryError("Sensitivt innhold kan ikke sendes på SMS.")
    to = normalise_mobile(delivery.recipient.mobile)
    text = sms_text(delivery)
    encoding = count_segments(text)
    limit = max_segments()
    if encoding.segments > limit:
        # A long document sent by SMS would cost the school per segment; refuse instead.
        raise PermanentDeliveryError(
            f"SMS-en er for lang: {encoding.segments} segmenter (høyst {limit}).",
            detail={"segments": encoding.segments, "max_segments": limit},
        )
    config = client.GatewayConfig.from_env()
    if not _SENDER_ID.fullmatch(config.sender):
        raise PermanentDeliveryError(
            "Avsendernavnet for SMS (TAVLE_SMS_SENDER) må være 1–11 bokstaver eller sifre."
        )
    price = cost_per_segment(delivery.sender)
    answer, repeated = await client.send_message(
        config, to=to, text=text, reference=delivery.reference
    )
    # The gateway bills, so its segment count wins; ours is the fallback and is recorded.
    segments = answer.get("segments")
    if not isinstance(segments, int) or segments < 1:
        segments = encoding.segments
    log.info(
        "SMS %s accepted by gateway as %s (%d segments%s)",
        delivery.reference,
        answer["id"],
        segments,
        ", repeated reference" if repeated else "",
    )
    return Receipt(
        status="sent",
        external_id=answer["id"],
        units=segments,
        cost=segments * price,
        detail={
            "encoding": encoding.encoding,
            "segments": segments,
            "counted_segments": encoding.segments,
            "characters": encoding.characters,
            "gateway_status": answer.get("status"),
            "repeated": repeated,
            "cost_per_segment": str(price),
        },
    )


@hookimpl
def delivery_status(delivery: Delivery) -> Awaitable[StatusUpdate | None] | None:
    """Poll the gateway for an SMS sent earlier; returns a coroutine resolving to a
    StatusUpdate ("sent", "delivered" or "failed"), or None when the delivery is for
    another channel, has no gateway id yet, or the gateway does not know it."""
    if delivery.channel != CHANNEL or not delivery.external_id:
        return None
    return _delivery_status(delivery.external_id)


async def _delivery_status(external_id: str) -> StatusUpdate | None:
    answer = await client.get_message(client.GatewayConfig.from_env(), external_id)
    if answer is None:
        log.warning("SMS gateway does not know message %s", external_id)
        return None
    gateway_status = answer.get("status")
    status = GATEWAY_STATUSES.get(gateway_status) if isinstance(gateway_status, str) else None
    if status is None:
        log.warning("SMS gateway gave unknown status %r for %s", gateway_status, external_id)
        return None
    return StatusUpdate(status=status, detail=_report_detail(answer))


def _report_detail(payload: dict[str, Any]) -> dict[str, Any]:
    detail: dict[str, Any] = {"gateway_status": payload.get("status")}
    for key in ("reference", "error"):
        if isinstance(payload.get(key), str):
            detail[key] = payload[key]
    return detail


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def sms_callback(request: Request) -> Response:
    """POST /callbacks/sms?token=...: a delivery report from the gateway."""
    expected = os.environ.get("TAVLE_SMS_CALLBACK_TOKEN", "")
    given = request.query_params.get("token", "")
    # Fail closed without a configured token: anyone could otherwise mark SMS delivered.
    # compare_digest so the token cannot be guessed byte by byte from response times.
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return _problem(403, "Ugyldig eller manglende token.")
    try:
        payload = await request.json()
    except ValueError:
        return _problem(400, "Forventet JSON.")
    if not isinstance(payload, dict):
        return _problem(400, "Forventet et JSON-objekt.")
    external_id = payload.get("id")
    status = payload.get("status")
    if not isinstance(external_id, str) or not external_id:
        return _problem(400, "Feltet 'id' mangler.")
    if status not in REPORT_STATUSES:
        return _problem(400, "Feltet 'status' må være 'delivered' eller 'failed'.")
    if "error" in payload and not isinstance(payload["error"], (str, type(None))):
        return _problem(400, "Feltet 'error' må være tekst.")

    # Imported here so the plugin loads (and its channel works) without the outbox and
    # its database layer, e.g. in plugin-level tests.
    from core.outbox import record_status_update

    known = await record_status_update(
        request.app.state.tavle,
        channel=CHANNEL,
        external_id=external_id,
        update=StatusUpdate(status=status, detail=_report_detail(payload)),
    )
    if not known:
        return _problem(404, "Ukjent melding.")
    return JSONResponse({"ok": True})


@hookimpl
def startup(app: Any) -> None:
    """Add the delivery-report route `POST /callbacks/sms` to the web application (once,
    even if start-up runs twice in one process, as it does in tests)."""
    routes = app.router.routes
    if any(getattr(route, "path", None) == CALLBACK_PATH for route in routes):
        return
    routes.append(Route(CALLBACK_PATH, sms_callback, methods=["POST"]))
