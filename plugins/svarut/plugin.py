"""The KS SvarUt channel: letters to a person's digital mailbox (Digipost/e-Boks/Altinn via
SvarUt), printed and posted by SvarUt when the person has none.

Settings (environment): TAVLE_SVARUT_BASE_URL, TAVLE_SVARUT_USERNAME, TAVLE_SVARUT_PASSWORD,
TAVLE_SVARUT_TIMEOUT (seconds, 30), TAVLE_SVARUT_COST_PER_LETTER (NOK, 12.50) and optionally
TAVLE_SVARUT_CERTIFICATE (SvarUt's certificate for encrypting level-4 letters; fetched from
SvarUt when unset), TAVLE_SVARUT_SEND_TIMEOUT (seconds, 240). The API and its sources are
described in README.md next to this file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from core.channels import (
    ChannelInfo,
    Delivery,
    PermanentDeliveryError,
    Receipt,
    StatusUpdate,
    TemporaryDeliveryError,
)
from core.hookspecs import hookimpl
from plugins.svarut.client import (
    DuplicateReference,
    SvarUtClient,
    SvarUtConfig,
    cost_per_letter,
    encrypt_for_svarut,
)

log = logging.getLogger(__name__)

CHANNEL = "svarut"
AVGIVENDE_SYSTEM = "Tavle"

# SvarUt's forsendelse statuses (ForsendelseRestServiceV1, "Status") -> Tavle's.
STATUS_MAP: dict[str, str] = {
    "MOTTATT": "sent",  # received, id assigned
    "AKSEPTERT": "sent",  # validated, letter file made
    "KLAR_FOR_MOTTAK": "sent",  # waiting for the receiving system to fetch it
    "VARSLET": "delivered",  # the recipient has been notified of it
    "SENDT_DIGITALT": "delivered",  # delivered digitally, not read yet
    "SENDT_SDP": "delivered",  # sent to the recipient's digital mailbox
    "LEVERT_SDP": "delivered",  # the digital mailbox confirmed delivery
    "SENDT_PRINT": "printed",  # handed to the print supplier
    "PRINTET": "printed",  # print receipt from the supplier
    "LEST": "read",  # the whole letter downloaded by the recipient
    "IKKE_LEVERT": "failed",  # digital-only and could not be delivered
    "AVVIST": "failed",  # rejected: bad metadata or the letter file could not be made
    "MANUELT_HANDTERT": "failed",  # closed by hand at SvarUt, e.g. after an error
}

# KS: konteringsKode must match ^[a-zA-Z0-9\-\.øæåØÆÅ]{0,20}$.
_ACCOUNTING_CODE = re.compile(r"^[a-zA-Z0-9\-.øæåØÆÅ]{0,20}$")
# KS: a filnavn may not contain a folder or any of " < > ? * | : and is at most 226 chars.
_BAD_FILENAME_CHARS = re.compile(r'[\\/"<>?*|:\x00-\x1f]')


@hookimpl
def channel_info() -> ChannelInfo:
    """SvarUt may carry sensitive letters (level-4 login) and needs the national id number."""
    return ChannelInfo(
        name=CHANNEL,
        title="SvarUt (digital post)",
        cost_per_unit=cost_per_letter(),
        unit="brev",
        may_carry_sensitive=True,
        requires="national_id",
        reports_status=True,
    )


@hookimpl
def doctype_fields() -> dict[str, dict[str, Any]]:
    """Settings a doctype may give under `plugins.svarut`."""
    return {
        CHANNEL: {
            "security_level": (
                "3 eller 4: innloggingsnivå mottakeren trenger for å lese brevet. Sensitive og "
                "unntatt offentlighet-brev sendes alltid med nivå 4 (kryptert)."
            ),
            "letter_type": (
                "Forsendelsestype i SvarUt (fritekst), f.eks. «Vedtak skoleplass»; brukes til "
                "sortering og ruting hos mottaker."
            ),
            "accounting_code": (
                "Konteringskode for fakturaen fra SvarUt (inntil 20 tegn: bokstaver, tall, - og .)."
            ),
            "print_color": "true/false: skriv ut i farger dersom brevet sendes som papirpost.",
            "print_duplex": "true/false: skriv ut tosidig dersom brevet sendes som papirpost.",
            "document_type": "Noark-dokumenttype for dokumentene i forsendelsen (valgfritt).",
        }
    }


def _settings(delivery: Delivery) -> dict[str, Any]:
    """The doctype's SvarUt settings: either nested under "svarut" or given flat."""
    nested = delivery.options.get(CHANNEL)
    return nested if isinstance(nested, dict) else dict(delivery.options)


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "ja", "yes")
    return bool(value)


def _filenames(delivery: Delivery) -> list[str]:
    """Unique, SvarUt-safe file names (SvarUt compares them case-insensitively)."""
    names: list[str] = []
    seen: set[str] = set()
    for number, attachment in enumerate(delivery.attachments, start=1):
        name = _BAD_FILENAME_CHARS.sub("_", attachment.filename or "").strip() or (
            f"dokument-{number}.pdf"
        )
        stem, dot, suffix = name.rpartition(".")
        if not dot:
            stem, suffix = name, ""
        candidate, counter = name, 2
        while candidate.lower() in seen:
            candidate = f"{stem}-{counter}.{suffix}" if suffix else f"{stem}-{counter}"
            counter += 1
        candidate = candidate[-226:]
        seen.add(candidate.lower())
        names.append(candidate)
    return names


def build_forsendelse(delivery: Delivery) -> tuple[dict[str, Any], list[tuple[str, bytes]], bool]:
    """The forsendelse JSON (field names of ForsendelseRestServiceV1), the files in the
    order of `dokumenter`, and whether the files must be encrypted (level 4)."""
    recipient = delivery.recipient
    if not recipient.national_id:
        raise PermanentDeliveryError(
            "Mottakeren mangler fødselsnummer, så brevet kan ikke sendes med SvarUt",
            detail={"person_id": recipient.person_id},
        )
    if not delivery.attachments:
        raise PermanentDeliveryError(
            "Forsendelsen har ikke noe dokument å sende med SvarUt",
            detail={"delivery_id": delivery.id},
        )
    if not (recipient.postal_code and recipient.postal_town):
        # SvarUt requires a full postal address unless the letter is digital-only, and
        # Tavle never sends digital-only: a letter must reach a person without a mailbox.
        raise PermanentDeliveryError(
            "Mottakeren mangler postadresse (postnummer og poststed), som SvarUt krever "
            "dersom brevet må skrives ut",
            detail={"person_id": recipient.person_id},
        )
    settings = _settings(delivery)
    sensitive = delivery.sensitive or delivery.restricted
    try:
        level = int(settings.get("security_level") or (4 if sensitive else 3))
    except (TypeError, ValueError) as error:
        raise PermanentDeliveryError(
            "Ugyldig sikkerhetsnivå for SvarUt i dokumenttypen",
            detail={"security_level": settings.get("security_level")},
        ) from error
    if level not in (3, 4):
        raise PermanentDeliveryError(
            "Sikkerhetsnivå for SvarUt må være 3 eller 4", detail={"security_level": level}
        )
    # Sensitive and restricted letters never go out below level 4, whatever the doctype says.
    level4 = sensitive or level == 4
    accounting_code = settings.get("accounting_code")
    if accounting_code is not None and not _ACCOUNTING_CODE.match(str(accounting_code)):
        raise PermanentDeliveryError(
            "Ugyldig konteringskode for SvarUt i dokumenttypen",
            detail={"accounting_code": accounting_code},
        )

    names = _filenames(delivery)
    dokumenter: list[dict[str, Any]] = []
    for name, attachment in zip(names, delivery.attachments, strict=True):
        is_pdf = attachment.content_type.split(";")[0].strip().lower() == "application/pdf"
        dokument: dict[str, Any] = {
            "filnavn": name,
            "mimeType": attachment.content_type.split(";")[0].strip() or "application/pdf",
            "skalSigneres": False,
            # Only PDF can be printed; anything else travels digitally only.
            "ekskluderesFraUtskrift": not is_pdf,
        }
        if settings.get("document_type"):
            dokument["dokumentType"] = str(settings["document_type"])
        dokumenter.append(dokument)

    post_adresse: dict[str, Any] = {
        "navn": recipient.name,
        "adresse1": recipient.street_address,
        "postNummer": recipient.postal_code,
        "postSted": recipient.postal_town,
        "land": "Norge",
    }
    forsendelse: dict[str, Any] = {
        "tittel": delivery.subject,
        "eksternReferanse": delivery.reference,
        "avgivendeSystem": AVGIVENDE_SYSTEM,
        "mottaker": {
            "digitalAdresse": {"fodselsNummer": recipient.national_id},
            "postAdresse": post_adresse,
        },
        "kunDigitalLevering": False,
        # Level 4: the recipient must log in with ID-porten level 4 (substantial/high)
        # to open it, and SvarUt requires the files to be encrypted for its key. The v1
        # model has no field for "sensitive" as such (v2's taushetsbelagtPost only
        # concerns organisations in Altinn, and inneholderPersonsensitivInformasjon is
        # v2 only); level 4 + encryption is how v1 protects a sensitive letter.
        "kryptert": level4,
        "krevNiva4Innlogging": level4,
        "utskriftsKonfigurasjon": {
            "utskriftMedFarger": _flag(settings.get("print_color"), False),
            "tosidig": _flag(settings.get("print_duplex"), True),
        },
        "dokumenter": dokumenter,
        "lenker": [],
        "eksponertFor": [],
        "svarPaForsendelseLink": False,
    }
    if settings.get("letter_type"):
        forsendelse["forsendelsesType"] = str(settings["letter_type"])
    if accounting_code:
        forsendelse["konteringsKode"] = str(accounting_code)
    files = [(name, a.content) for name, a in zip(names, delivery.attachments, strict=True)]
    return forsendelse, files, level4


@hookimpl
def deliver(delivery: Delivery) -> Awaitable[Receipt] | None:
    """Send the letter with SvarUt, once per `delivery.reference`; returns a coroutine
    resolving to a Receipt with status "sent" (SvarUt has it; delivery, print and reading
    are reported later through `delivery_status`), or None for other channels."""
    if delivery.channel != CHANNEL:
        return None
    return _deliver(delivery)


async def _deliver(delivery: Delivery) -> Receipt:
    # KS's v1 service does not check `eksternReferanse` for duplicates, so a retry asks it
    # for forsendelser with our reference first: after an unclear result (timeout, lost
    # answer) it finds the letter and returns its receipt instead of sending a second
    # one. A 409 to the send itself (a SvarUt or proxy that does check) means the
    # same.
    forsendelse, files, encrypt = build_forsendelse(delivery)
    config = SvarUtConfig.from_env()
    client = SvarUtClient(config)
    names = [name for name, _ in files]

    # A first attempt has nothing to find (no earlier attempt can have sent it), so the
    # look-up costs a round trip only on retries.
    existing = (
        await client.find_by_external_reference(delivery.reference) if delivery.attempt > 1 else []
    )
    if not existing:
        if encrypt:
            certificate = await client.certificate()
            files = [(name, encrypt_for_svarut(data, certificate)) for name, data in files]
        try:
            forsendelse_id = await client.send(forsendelse, files)
        except DuplicateReference as refused:
            existing = await client.find_by_external_reference(delivery.reference)
            if not existing:
                # Refused as a duplicate, yet not found: nothing to record as sent.
                raise TemporaryDeliveryError(
                    "SvarUt avviste forsendelsen som duplikat, men finner den ikke",
                    detail=refused.detail,
                ) from refused
        else:
            return _receipt(forsendelse_id, config, encrypt, names, already_sent=False)
    log.info("SvarUt already has %s as %s; not sending again", delivery.reference, existing)
    return _receipt(existing[0], config, encrypt, names, already_sent=True)


def _receipt(
    forsendelse_id: str,
    config: SvarUtConfig,
    level4: bool,
    documents: list[str],
    *,
    already_sent: bool,
) -> Receipt:
    # One letter, one price: SvarUt bills per forsendelse (print costs more, but that is
    # known only later and billed by KS; the recorded cost is the configured letter price).
    return Receipt(
        status="sent",
        external_id=forsendelse_id,
        units=1,
        cost=config.cost_per_letter,
        detail={
            "forsendelse_id": forsendelse_id,
            "already_sent": already_sent,
            "level4": level4,
            "documents": documents,
        },
    )


def _changed_at(value: Any) -> str | None:
    """sisteStatusEndring: epoch milliseconds in v1 (a Java Date), ISO text elsewhere."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC).isoformat()
    return str(value) if value else None


@hookimpl
def delivery_status(delivery: Delivery) -> Awaitable[StatusUpdate | None] | None:
    """Poll SvarUt for the letter's status and map it to Tavle's ("sent", "delivered",
    "printed", "read", "failed"); SvarUt's own status is kept in `detail`. Returns a
    coroutine, or None for other channels and deliveries SvarUt has no id for."""
    if delivery.channel != CHANNEL or not delivery.external_id:
        return None
    return _delivery_status(delivery.external_id)


async def _delivery_status(forsendelse_id: str) -> StatusUpdate | None:
    body = await SvarUtClient(SvarUtConfig.from_env()).status(forsendelse_id)
    if not body or not body.get("status"):
        return None
    raw = str(body["status"]).upper()
    mapped = STATUS_MAP.get(raw)
    if mapped is None:
        log.warning("Unknown SvarUt status %r for %s", raw, forsendelse_id)
        return None
    return StatusUpdate(
        status=mapped,
        detail={
            "svarut_status": raw,
            "forsendelse_id": forsendelse_id,
            "changed_at": _changed_at(body.get("sisteStatusEndring")),
        },
    )
