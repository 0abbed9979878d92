"""The Sikri Elements archive (Noark 5) through Fiks Arkiv V1.

Each archive entry becomes one arkivmelding (see arkivmelding.py) sent with its PDF/A by
the configured transport (see client.py for the settings). The archive's kvittering gives
the registry year and sequence number (journalår/-sekvensnummer) and, for a folder created
on first use, the case year and sequence number. A rejected message (ugyldig forespørsel,
or a kvittering saying the registration failed) is permanent; a server error or no answer
is transient and the entry is sent again at the next batch, with the same external key, so
the archive recognises it instead of registering it twice.
"""

from __future__ import annotations

import asyncio
import logging
import os

from core.archive.types import ArchiveItem, ArchiveResult, ResultKind
from core.hookspecs import hookimpl
from plugins.elements.arkivmelding import (
    build_arkivmelding,
    file_reference,
    parse_feilmelding,
    parse_kvittering,
)
from plugins.elements.client import Answer, ElementsClient, ElementsConfig, Unreachable

log = logging.getLogger(__name__)

NAME = "elements"
# After this many "no answer" results in a row, the rest of the chunk is not tried: the
# archive is down, and the entries wait for the next batch.
MAX_UNREACHABLE_IN_CHUNK = 3


@hookimpl
def archive_info() -> dict[str, str]:
    """Elements through Fiks Arkiv, over the configured transport (no I/O)."""
    config = ElementsConfig.from_env()
    return {
        "name": NAME,
        "title": "Sikri Elements (Noark 5, Fiks Arkiv V1)",
        "transport": "Fiks IO" if config.transport == "fiksio" else "Fiks Arkiv over HTTP",
        "endpoint": config.url,
    }


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


def result_of(answer: Answer) -> ArchiveResult:
    """Turn the archive's answer into a result."""
    receipt = _text(answer.body)
    if answer.kind == "rejected":
        message = parse_feilmelding(answer.body) or f"HTTP {answer.status}"
        return ArchiveResult(
            ResultKind.PERMANENT, receipt=receipt, error=f"Arkivet avviste meldingen: {message}"
        )
    if answer.kind == "server_error":
        message = parse_feilmelding(answer.body) or f"HTTP {answer.status}"
        return ArchiveResult(
            ResultKind.TRANSIENT, receipt=receipt, error=f"Feil hos arkivet: {message}"
        )
    try:
        kvittering = parse_kvittering(answer.body)
    except ValueError as error:
        return ArchiveResult(ResultKind.TRANSIENT, receipt=receipt, error=str(error))
    failure = kvittering.folder_error or kvittering.registration_error
    if failure:
        return ArchiveResult(
            ResultKind.PERMANENT, receipt=receipt, error=f"Arkivet avviste meldingen: {failure}"
        )
    if kvittering.registry_year is None or kvittering.registry_sequence is None:
        return ArchiveResult(
            ResultKind.PERMANENT,
            receipt=receipt,
            error="Kvitteringen fra arkivet mangler journalår og sekvensnummer.",
        )
    return ArchiveResult(
        ResultKind.ARCHIVED,
        receipt=receipt,
        registry_year=kvittering.registry_year,
        registry_sequence=kvittering.registry_sequence,
        case_year=kvittering.case_year,
        case_sequence=kvittering.case_sequence,
        existing=kvittering.existing,
    )


async def _archive_one(
    client: ElementsClient, item: ArchiveItem, folder_basis: str
) -> ArchiveResult:
    try:
        xml = build_arkivmelding(item, folder_restriction_basis=folder_basis)
    except Exception as error:  # a bad value in the entry: a person must look at it
        log.exception("entry %s: could not build the arkivmelding", item.entry_id)
        return ArchiveResult(ResultKind.PERMANENT, error=f"Kunne ikke lage arkivmeldingen: {error}")
    try:
        answer = await client.send(xml, [(file_reference(item), item.pdf)])
    except Unreachable as error:
        return ArchiveResult(
            ResultKind.TRANSIENT, error=f"Arkivet svarer ikke: {error}", unreachable=True
        )
    return result_of(answer)


@hookimpl
async def archive_entries(batch: list[ArchiveItem]) -> list[ArchiveResult]:
    """Register each item in Elements; the results are in the order of `batch`. Up to
    TAVLE_ELEMENTS_CONCURRENCY messages are in flight at once."""
    config = ElementsConfig.from_env()
    folder_basis = os.environ.get(
        "TAVLE_ARCHIVE_FOLDER_BASIS", "Offl. § 13 jf. fvl. § 13 første ledd nr. 1"
    )
    results: list[ArchiveResult | None] = [None] * len(batch)
    unreachable_in_row = 0
    semaphore = asyncio.Semaphore(config.concurrency)

    async with ElementsClient(config) as client:

        async def run(index: int, item: ArchiveItem) -> None:
            nonlocal unreachable_in_row
            async with semaphore:
                if unreachable_in_row >= MAX_UNREACHABLE_IN_CHUNK:
                    results[index] = ArchiveResult(
                        ResultKind.TRANSIENT,
                        error="Ikke forsøkt: arkivet svarer ikke på de forrige meldingene.",
                        unreachable=True,
                        detail={"not_tried": "1"},
                    )
                    return
                result = await _archive_one(client, item, folder_basis)
                unreachable_in_row = unreachable_in_row + 1 if result.unreachable else 0
                results[index] = result

        await asyncio.gather(*(run(i, item) for i, item in enumerate(batch)))
    return [r for r in results if r is not None]
