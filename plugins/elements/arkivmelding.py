"""Building the Fiks Arkiv V1 *arkivmelding* (no.ks.fiks.arkiv.v1.arkivering.arkivmelding.
opprett) for one archive entry, and reading the archive's *kvittering* (...opprett.kvittering).

One message per entry: a journalpost (registry entry) with the PDF/A as its document
object, filed in the entry's folder. When the folder has no case number yet the message
also carries the saksmappe; both carry our external key (referanseEksternNoekkel), so the
archive answers "Eksisterende" instead of creating a second case or registry entry when a
message is sent again after an unclear result (timeout, lost answer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from lxml import etree

from core.archive.types import ArchiveItem, FolderRef, Party

NS = "https://ks-no.github.io/standarder/fiks-protokoll/fiks-arkiv/arkivmelding/opprett/v1"
KVITTERING_NS = "https://ks-no.github.io/standarder/fiks-protokoll/fiks-arkiv/arkivmelding/opprett/kvittering/v1"
# Children of the metadatakatalog's complex types (kode, eksternNoekkel, identifikatorer,
# referanseTilMappe, saksnummer) are in the metadatakatalog's namespace.
MDK_NS = "https://ks-no.github.io/standarder/fiks-protokoll/fiks-arkiv/metadatakatalog/v1"
FEIL_NS = "https://ks-no.github.io/standarder/fiks-protokoll/fiks-arkiv/feil/feilmelding/v1"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

MESSAGE_TYPE = "no.ks.fiks.arkiv.v1.arkivering.arkivmelding.opprett"
RECEIPT_TYPE = "no.ks.fiks.arkiv.v1.arkivering.arkivmelding.opprett.kvittering"
OPPRETT_XSD = "no.ks.fiks.arkiv.v1.arkivering.arkivmelding.opprett.xsd"
KVITTERING_XSD = "no.ks.fiks.arkiv.v1.arkivering.arkivmelding.opprett.kvittering.xsd"

SYSTEM = "Tavle"
# The classification system of the K-codes (kommunenes felles klassifikasjon).
K_CODES = "K-kode"
FNR_SYSTEM = "FNR"

JOURNAL_STATUSES = {
    "J": "Journalført",
    "R": "Reservert dokument",
    "F": "Ferdigstilt fra saksbehandler",
    "E": "Ekspedert",
    "A": "Arkivert",
}
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _el(parent: etree._Element, tag: str, text: str | int | None = None) -> etree._Element:
    element = etree.SubElement(parent, _q(tag))
    if text is not None:
        element.text = str(text)
    return element


def _md(parent: etree._Element, tag: str, text: str | int | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{MDK_NS}}}{tag}")
    if text is not None:
        element.text = str(text)
    return element


def _code(parent: etree._Element, tag: str, code: str, description: str | None = None) -> None:
    element = _el(parent, tag)
    _md(element, "kode", code)
    if description:
        _md(element, "beskrivelse", description)


def _key(parent: etree._Element, tag: str, key: str) -> None:
    element = _el(parent, tag)
    _md(element, "fagsystem", SYSTEM)
    _md(element, "noekkel", key)


def _md_key(parent: etree._Element, key: str) -> None:
    element = _md(parent, "referanseEksternNoekkel")
    _md(element, "fagsystem", SYSTEM)
    _md(element, "noekkel", key)


def _datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _date(value: date) -> str:
    return value.isoformat()


def file_reference(item: ArchiveItem) -> str:
    """The file's name inside the message: plain ASCII, unique per entry."""
    stem = _SAFE_FILENAME.sub("_", item.doctype)[:60] or "dokument"
    return f"{stem}-{item.entry_id}.pdf"


def _skjerming(parent: etree._Element, code: str, description: str, basis: str) -> None:
    element = _el(parent, "skjerming")
    _code(element, "tilgangsrestriksjon", code, description)
    _el(element, "skjermingshjemmel", basis)


def _classes(parent: etree._Element, folder: FolderRef) -> None:
    for class_id in folder.classes:
        element = _el(parent, "klassifikasjon")
        _el(element, "klassifikasjonssystemID", K_CODES)
        _el(element, "klasseID", class_id)
    if folder.kind == "student" and folder.student_national_id:
        # Student folders are also ordered by the student's national identity number.
        element = _el(parent, "klassifikasjon")
        _el(element, "klassifikasjonssystemID", FNR_SYSTEM)
        _el(element, "klasseID", folder.student_national_id)
        _el(element, "erSkjermet", "true")


def _saksmappe(root: etree._Element, item: ArchiveItem, folder_restriction_basis: str) -> None:
    folder = item.folder
    mappe = _el(root, "mappe")
    mappe.set(f"{{{XSI}}}type", "saksmappe")
    _el(mappe, "tittel", folder.title)
    if folder.kind == "student":
        # The student's name is personal data: the public title leaves it out.
        _el(mappe, "offentligTittel", "Elevmappe - *****")
    _code(mappe, "arkivdel", folder.archive_part)
    if folder.kind == "student" and folder.student_name:
        part = _el(mappe, "part")
        _el(part, "partNavn", folder.student_name)
        _code(part, "partRolle", "ELEV", "Elev")
        _el(part, "erSkjermet", "true")
        _el(part, "erPersonnavn", "true")
    _skjerming(mappe, folder.access_code, "Elevdokument", folder_restriction_basis)
    _classes(mappe, folder)
    _key(mappe, "referanseEksternNoekkel", folder.external_key)
    _code(mappe, "mappetype", "saksmappe", "Saksmappe")
    _el(mappe, "saksdato", _date(item.document_date))
    unit = _el(mappe, "administrativEnhet")
    _md(unit, "navn", item.school_name)
    if item.case_owner:
        owner = _el(mappe, "saksansvarlig")
        _md(owner, "initialer", item.case_owner)
    _code(mappe, "saksstatus", "B", "Under behandling")


def _korrespondansepart(parent: etree._Element, party: Party, restricted: bool) -> None:
    element = _el(parent, "korrespondansepart")
    if party.role == "sender":
        _code(element, "korrespondanseparttype", "IA", "Intern avsender")
    else:
        _code(element, "korrespondanseparttype", "EM", "Mottaker")
    _el(element, "korrespondansepartNavn", party.name)
    if party.organisation_number:
        _el(element, "organisasjonid", party.organisation_number)
    elif party.person_id:
        _el(element, "personid", party.person_id)
    if party.street_address:
        _el(element, "postadresse", party.street_address)
    if party.postal_code:
        _el(element, "postnummer", party.postal_code)
    if party.postal_town:
        _el(element, "poststed", party.postal_town)
    if party.role == "sender":
        unit = _el(element, "administrativEnhet")
        _md(unit, "navn", party.name)
        if party.case_handler:
            handler = _el(element, "saksbehandler")
            _md(handler, "initialer", party.case_handler)
    if restricted and party.role != "sender":
        _el(element, "erSkjermet", "true")
    if party.role != "sender":
        _el(element, "erPersonnavn", "true")


def _journalpost(root: etree._Element, item: ArchiveItem) -> None:
    post = _el(root, "registrering")
    post.set(f"{{{XSI}}}type", "journalpost")
    _el(post, "opprettetDato", _datetime(item.created_at))
    if item.author:
        _el(post, "opprettetAv", item.author)
    parent = _el(post, "referanseForelderMappe")
    folder = item.folder
    if folder.case_year is not None and folder.case_sequence is not None:
        number = _md(parent, "saksnummer")
        _md(number, "saksaar", folder.case_year)
        _md(number, "sakssekvensnummer", folder.case_sequence)
    if not folder.mapped:
        # A case we created: the archive knows it by our key as well.
        _md_key(parent, folder.external_key)
    if item.restricted and item.restriction_basis:
        _skjerming(post, "UO", "Unntatt offentlighet", item.restriction_basis)
    described = _el(post, "dokumentbeskrivelse")
    _code(described, "dokumenttype", "DOK", item.doctype_title[:100])
    _code(described, "dokumentstatus", "F", "Dokumentet er ferdigstilt")
    _el(described, "tittel", item.title)
    _el(described, "opprettetDato", _datetime(item.created_at))
    _code(described, "tilknyttetRegistreringSom", "H", "Hoveddokument")
    _el(described, "dokumentnummer", 1)
    obj = _el(described, "dokumentobjekt")
    _el(obj, "versjonsnummer", 1)
    _code(obj, "variantformat", "A", "Arkivformat")
    _code(obj, "format", "RA-PDF", "PDF/A - ISO 19005")
    _el(obj, "mimeType", "application/pdf")
    _el(obj, "filnavn", item.filename)
    _el(obj, "referanseDokumentfil", file_reference(item))
    _el(obj, "sjekksum", item.pdf_sha256)
    _el(obj, "sjekksumAlgoritme", "SHA256")
    _el(obj, "filstoerrelse", len(item.pdf))
    _el(post, "tittel", item.title)
    _el(post, "offentligTittel", item.public_title)
    for party in item.parties:
        _korrespondansepart(post, party, item.restricted)
    _key(post, "referanseEksternNoekkel", item.external_key)
    outgoing = any(p.role == "recipient" for p in item.parties)
    if outgoing:
        _code(post, "journalposttype", "U", "Utgående dokument")
    else:
        _code(post, "journalposttype", "X", "Internt notat uten oppfølging")
    _code(
        post,
        "journalstatus",
        item.registry_status,
        JOURNAL_STATUSES.get(item.registry_status),
    )
    _el(post, "dokumentetsDato", _date(item.document_date))
    if item.sent_at is not None and outgoing:
        _el(post, "sendtDato", _datetime(item.sent_at))


def build_arkivmelding(
    item: ArchiveItem, *, folder_restriction_basis: str, include_folder: bool | None = None
) -> bytes:
    """The arkivmelding XML (UTF-8) for `item`. The saksmappe is included when the folder
    has no case number yet (or when `include_folder` says so)."""
    if include_folder is None:
        include_folder = item.folder.case_year is None or item.folder.case_sequence is None
    root = etree.Element(_q("arkivmelding"), nsmap={None: NS, "n5mdk": MDK_NS, "xsi": XSI})
    _el(root, "system", SYSTEM)
    _el(root, "antallFiler", 1)
    if include_folder:
        _saksmappe(root, item, folder_restriction_basis)
    _journalpost(root, item)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# ------------------------------------------------------------------------------- receipts


@dataclass(frozen=True)
class Kvittering:
    """The parts of an arkivmeldingKvittering Tavle keeps."""

    registry_year: int | None
    registry_sequence: int | None
    case_year: int | None
    case_sequence: int | None
    existing: bool
    registration_error: str | None
    folder_error: str | None


def _int(element: etree._Element | None, path: str) -> int | None:
    if element is None:
        return None
    found = element.find(path, {"k": KVITTERING_NS})
    if found is None or not (found.text or "").strip():
        return None
    return int(found.text.strip())


def _error_text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    message = element.find(f"{{{FEIL_NS}}}feilmelding")
    if message is None:
        message = element.find(f"{{{KVITTERING_NS}}}feilmelding")
    return (message.text or "").strip() if message is not None else "ukjent feil"


def parse_kvittering(xml: bytes) -> Kvittering:
    """Read an arkivmeldingKvittering. Raises ValueError when it is not one."""
    try:
        root = etree.fromstring(xml)
    except etree.XMLSyntaxError as error:
        raise ValueError(f"kvitteringen er ikke gyldig XML: {error}") from error
    if root.tag != f"{{{KVITTERING_NS}}}arkivmeldingKvittering":
        raise ValueError(f"uventet svar fra arkivet: {root.tag}")
    ns = {"k": KVITTERING_NS}
    folder = root.find("k:mappeKvittering", ns)
    registration = root.find("k:registreringKvittering", ns)
    existing_text = (
        registration.findtext("k:opprettetEllerEksisterende", default="", namespaces=ns)
        if registration is not None
        else ""
    )
    return Kvittering(
        registry_year=_int(registration, "k:journalaar"),
        registry_sequence=_int(registration, "k:journalsekvensnummer"),
        case_year=_int(folder, "k:saksaar"),
        case_sequence=_int(folder, "k:sakssekvensnummer"),
        existing=existing_text == "Eksisterende",
        registration_error=_error_text(root.find("k:registreringFeilet", ns)),
        folder_error=_error_text(root.find("k:mappeFeilet", ns)),
    )


def parse_feilmelding(xml: bytes) -> str | None:
    """The message of an ugyldigforespoersel / serverfeil / ikkefunnet answer, if it is one."""
    try:
        root = etree.fromstring(xml)
    except etree.XMLSyntaxError:
        return None
    for child in root:
        if etree.QName(child).localname == "feilmelding":
            return (child.text or "").strip()
    return None
