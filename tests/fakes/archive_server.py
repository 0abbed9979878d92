"""A fake Sikri Elements behind Fiks Arkiv V1, over real HTTP, for tests and the bench.

A Starlette app under uvicorn in a background thread on 127.0.0.1 (a free port). It takes
what the elements plugin sends, both transports:

- POST /arkivmelding: multipart/form-data, part "arkivmelding" (the XML) then the files.
- POST /fiks-io/meldinger: a zip (arkivmelding.xml + files) with the headers meldingstype,
  melding-id, mottaker-konto-id; 202, and the reply is fetched from
  GET /fiks-io/meldinger/{melding-id}/svar (404 until ready; header meldingstype).

Each message is validated as the archive would: against the official XSD
(no.ks.fiks.arkiv.v1.arkivering.arkivmelding.opprett.xsd from TAVLE_FIKS_ARKIV_XSD_DIR),
antallFiler against the files, each file against its sjekksum (SHA256) and filstoerrelse,
the parent case (saksnummer, our external key, or the saksmappe in the same message), the
case owner's initials against the archive's users (when `users` is given), closed cases.
A rejected message gets 400 with an ugyldigforespoersel. A valid one gets a kvittering
(valid per ...opprett.kvittering.xsd) with journalår/sekvensnummer, and saksår/
sekvensnummer for a case it created. Registrations and cases are deduplicated by their
referanseEksternNoekkel: a resend answers "Eksisterende" with the same numbers.

Knobs: `down()` / `up()` (connection refused, same port), `fail_fraction(f, seed)` (HTTP
500 serverfeil before registering, for a random fraction f of messages),
`hang_after_registering(seconds, count)` (registers, then answers only after `seconds`,
so the client times out), `add_case(year, sequence, title)` (a case made by hand),
`close_case(...)`. Counters: `created` (registrations created per external key),
`received` (messages per external key), `requests`.

    with FakeArchive() as archive:
        ...  # archive.base_url goes into TAVLE_ELEMENTS_URL
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import re
import threading
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from plugins.elements.arkivmelding import (
    FEIL_NS,
    KVITTERING_NS,
    KVITTERING_XSD,
    MDK_NS,
    NS,
    OPPRETT_XSD,
    RECEIPT_TYPE,
    XSI,
)
from plugins.elements.xsd import schema
from tests.fakes._served import LoopbackServer

UGYLDIG_NS = (
    "https://ks-no.github.io/standarder/fiks-protokoll/fiks-arkiv/feil/ugyldigforespoersel/v1"
)
SERVERFEIL_NS = "https://ks-no.github.io/standarder/fiks-protokoll/fiks-arkiv/feil/serverfeil/v1"
UGYLDIG_TYPE = "no.ks.fiks.arkiv.v1.feilmelding.ugyldigforespoersel"
SERVERFEIL_TYPE = "no.ks.fiks.arkiv.v1.feilmelding.serverfeil"
NSMAP = {"a": NS, "m": MDK_NS}


class _Invalid(Exception):
    """The message is rejected (ugyldig forespørsel)."""


@dataclass
class Case:
    year: int
    sequence: int
    title: str
    external_key: str | None
    case_owner: str | None
    archive_part: str | None
    access_code: str | None
    classes: tuple[str, ...]
    closed: bool = False


@dataclass
class Registration:
    key: str
    year: int
    sequence: int
    case: tuple[int, int]
    title: str
    journal_status: str
    restricted_basis: str | None
    checksum: str
    xml: bytes


def _mdk(parent: etree._Element, tag: str, text: object) -> None:
    etree.SubElement(parent, f"{{{MDK_NS}}}{tag}").text = str(text)


class FakeArchive(LoopbackServer):
    # hang_after_registering() holds answers back on purpose: down() cuts them off.
    graceful_shutdown = 1

    def __init__(self, *, users: set[str] | None = None, year: int | None = None):
        super().__init__()
        self.users = users
        self.year = year or datetime.now(UTC).year
        self.cases: dict[tuple[int, int], Case] = {}
        self.case_keys: dict[str, tuple[int, int]] = {}
        self.registrations: dict[str, Registration] = {}
        self.created: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.requests = 0
        self.rejected: list[str] = []
        self.replies: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self._next_journal = 1
        self._next_case = 1000
        self._fail_fraction = 0.0
        self._random = random.Random(0)
        self._hang_seconds = 0.0
        self._hang_count: int | None = 0
        self._opprett = schema(OPPRETT_XSD)
        self._kvittering = schema(KVITTERING_XSD)

    # ------------------------------------------------------------------ knobs
    def fail_fraction(self, fraction: float, seed: int = 0) -> None:
        """Answer 500 (before registering) for a random `fraction` of messages."""
        self._fail_fraction = fraction
        self._random = random.Random(seed)

    def hang_after_registering(self, seconds: float, count: int | None = None) -> None:
        """Register, then answer only after `seconds` (the next `count` messages; None
        for all; 0 seconds switches it off)."""
        self._hang_seconds = seconds
        self._hang_count = count

    def add_case(self, year: int, sequence: int, title: str, case_owner: str = "") -> None:
        """A case made by hand in the archive (to map a folder to)."""
        self.cases[(year, sequence)] = Case(
            year, sequence, title, None, case_owner, "SAK", "EL", ()
        )

    def close_case(self, year: int, sequence: int) -> None:
        self.cases[(year, sequence)].closed = True

    def case_by_key(self, key: str) -> Case | None:
        number = self.case_keys.get(key)
        return self.cases.get(number) if number else None

    def reset_counters(self) -> None:
        self.created.clear()
        self.received.clear()
        self.requests = 0

    # ------------------------------------------------------------------ handling
    def _text(self, element: etree._Element | None, path: str) -> str | None:
        if element is None:
            return None
        found = element.find(path, NSMAP)
        return found.text.strip() if found is not None and found.text else None

    def _validate_files(self, root: etree._Element, files: dict[str, bytes]) -> None:
        declared = int(self._text(root, "a:antallFiler") or "0")
        if declared != len(files):
            raise _Invalid(f"antallFiler er {declared}, men meldingen har {len(files)} filer")
        for obj in root.iterfind(".//a:dokumentobjekt", NSMAP):
            name = self._text(obj, "a:referanseDokumentfil")
            if name not in files:
                raise _Invalid(f"filen {name!r} mangler i meldingen")
            content = files[name]
            algorithm = self._text(obj, "a:sjekksumAlgoritme")
            checksum = self._text(obj, "a:sjekksum")
            if algorithm != "SHA256" or hashlib.sha256(content).hexdigest() != checksum:
                raise _Invalid(f"sjekksummen for {name} stemmer ikke")
            size = self._text(obj, "a:filstoerrelse")
            if size is not None and int(size) != len(content):
                raise _Invalid(f"filstoerrelse for {name} stemmer ikke")
            if not content.startswith(b"%PDF"):
                raise _Invalid(f"{name} er ikke en PDF")

    def _case_of_mappe(self, mappe: etree._Element) -> tuple[tuple[int, int], bool]:
        key = self._text(mappe, "a:referanseEksternNoekkel/m:noekkel")
        if key and key in self.case_keys:
            return self.case_keys[key], True
        owner = self._text(mappe, "a:saksansvarlig/m:initialer")
        if self.users is not None and owner not in self.users:
            raise _Invalid(f"saksansvarlig {owner!r} finnes ikke som bruker i arkivet")
        number = (self.year, self._next_case)
        self._next_case += 1
        self.cases[number] = Case(
            year=number[0],
            sequence=number[1],
            title=self._text(mappe, "a:tittel") or "",
            external_key=key,
            case_owner=owner,
            archive_part=self._text(mappe, "a:arkivdel/m:kode"),
            access_code=self._text(mappe, "a:skjerming/a:tilgangsrestriksjon/m:kode"),
            classes=tuple(
                c.text for c in mappe.iterfind("a:klassifikasjon/a:klasseID", NSMAP) if c.text
            ),
        )
        if key:
            self.case_keys[key] = number
        return number, False

    def _parent_case(self, post: etree._Element) -> tuple[int, int]:
        parent = post.find("a:referanseForelderMappe", NSMAP)
        if parent is None:
            raise _Invalid("journalposten mangler referanseForelderMappe")
        year = self._text(parent, "m:saksnummer/m:saksaar")
        sequence = self._text(parent, "m:saksnummer/m:sakssekvensnummer")
        if year and sequence:
            number = (int(year), int(sequence))
            if number not in self.cases:
                raise _Invalid(f"saken {number[0]}/{number[1]} finnes ikke i arkivet")
            return number
        key = self._text(parent, "m:referanseEksternNoekkel/m:noekkel")
        if key and key in self.case_keys:
            return self.case_keys[key]
        raise _Invalid("fant ikke saken journalposten skal i")

    def _register(self, xml: bytes, files: dict[str, bytes]) -> tuple[str, bytes, bool]:
        """Validate and register; returns (external key, kvittering, created now)."""
        try:
            root = etree.fromstring(xml)
        except etree.XMLSyntaxError as error:
            raise _Invalid(f"ugyldig XML: {error}") from error
        if not self._opprett.validate(root):
            errors = "; ".join(f"linje {e.line}: {e.message}" for e in self._opprett.error_log)
            raise _Invalid(f"meldingen er ikke gyldig etter skjemaet: {errors}")
        self._validate_files(root, files)
        post = root.find("a:registrering", NSMAP)
        if post is None:
            raise _Invalid("meldingen har ingen registrering")
        key = self._text(post, "a:referanseEksternNoekkel/m:noekkel")
        if not key:
            raise _Invalid("registreringen mangler referanseEksternNoekkel")
        self.received[key] += 1
        with self._lock:
            existing = self.registrations.get(key)
            mappe = root.find("a:mappe", NSMAP)
            folder_number: tuple[int, int] | None = None
            folder_existing = True
            if mappe is not None:
                folder_number, folder_existing = self._case_of_mappe(mappe)
            if existing is not None:
                return key, self._kvittering_xml(existing, folder_number, True, True), False
            case_number = self._parent_case(post)
            if self.cases[case_number].closed:
                raise _Invalid(f"saken {case_number[0]}/{case_number[1]} er avsluttet")
            status = self._text(post, "a:journalstatus/m:kode") or ""
            if status not in {"J", "R", "F", "E", "A"}:
                raise _Invalid(f"ukjent journalstatus {status!r}")
            registration = Registration(
                key=key,
                year=self.year,
                sequence=self._next_journal,
                case=case_number,
                title=self._text(post, "a:tittel") or "",
                journal_status=status,
                restricted_basis=self._text(post, "a:skjerming/a:skjermingshjemmel"),
                checksum=self._text(post, ".//a:sjekksum") or "",
                xml=xml,
            )
            self._next_journal += 1
            self.registrations[key] = registration
            self.created[key] += 1
        return key, self._kvittering_xml(registration, folder_number, folder_existing, False), True

    def _kvittering_xml(
        self,
        registration: Registration,
        folder_number: tuple[int, int] | None,
        folder_existing: bool,
        existing: bool,
    ) -> bytes:
        root = etree.Element(
            f"{{{KVITTERING_NS}}}arkivmeldingKvittering",
            nsmap={None: KVITTERING_NS, "n5mdk": MDK_NS, "xsi": XSI},
        )

        def k(parent: etree._Element, tag: str, text: object = None) -> etree._Element:
            element = etree.SubElement(parent, f"{{{KVITTERING_NS}}}{tag}")
            if text is not None:
                element.text = str(text)
            return element

        if folder_number is not None:
            case = self.cases[folder_number]
            folder = k(root, "mappeKvittering")
            folder.set(f"{{{XSI}}}type", "saksmappeKvittering")
            k(folder, "systemID", str(uuid.uuid5(uuid.NAMESPACE_URL, f"case:{folder_number}")))
            if case.external_key:
                ref = k(folder, "referanseEksternNoekkel")
                _mdk(ref, "fagsystem", "Tavle")
                _mdk(ref, "noekkel", case.external_key)
            k(
                folder,
                "opprettetEllerEksisterende",
                "Eksisterende" if folder_existing else "Opprettet",
            )
            k(folder, "saksaar", folder_number[0])
            k(folder, "sakssekvensnummer", folder_number[1])
        post = k(root, "registreringKvittering")
        post.set(f"{{{XSI}}}type", "journalpostKvittering")
        k(post, "systemID", str(uuid.uuid5(uuid.NAMESPACE_URL, f"post:{registration.key}")))
        k(post, "opprettetDato", datetime.now(UTC).isoformat(timespec="seconds"))
        described = k(post, "dokumentbeskrivelseKvittering")
        k(described, "systemID", str(uuid.uuid5(uuid.NAMESPACE_URL, f"doc:{registration.key}")))
        k(described, "dokumentnummer", 1)
        ref = k(post, "referanseEksternNoekkel")
        _mdk(ref, "fagsystem", "Tavle")
        _mdk(ref, "noekkel", registration.key)
        k(post, "opprettetEllerEksisterende", "Eksisterende" if existing else "Opprettet")
        k(post, "journalaar", registration.year)
        k(post, "journalsekvensnummer", registration.sequence)
        k(post, "journalpostnummer", registration.sequence)
        status = k(post, "journalstatus")
        _mdk(status, "kode", registration.journal_status)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    def kvittering_is_valid(self, xml: bytes) -> bool:
        return bool(self._kvittering.validate(etree.fromstring(xml)))

    @staticmethod
    def _error(namespace: str, message: str) -> bytes:
        tag = "ugyldigforespoersel" if namespace == UGYLDIG_NS else "serverfeil"
        root = etree.Element(f"{{{namespace}}}{tag}", nsmap={"f": namespace, None: FEIL_NS})
        etree.SubElement(root, f"{{{FEIL_NS}}}feilId").text = str(uuid.uuid4())
        etree.SubElement(root, f"{{{FEIL_NS}}}feilmelding").text = message
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    async def _handle(self, xml: bytes, files: dict[str, bytes]) -> tuple[int, str, bytes]:
        """(HTTP status, Fiks message type, body) for one message."""
        self.requests += 1
        if self._fail_fraction and self._random.random() < self._fail_fraction:
            return 500, SERVERFEIL_TYPE, self._error(SERVERFEIL_NS, "Intern feil i arkivet")
        try:
            key, body, _ = self._register(xml, files)
        except _Invalid as error:
            self.rejected.append(str(error))
            return 400, UGYLDIG_TYPE, self._error(UGYLDIG_NS, str(error))
        if self._hang_seconds and (self._hang_count is None or self._hang_count > 0):
            if self._hang_count is not None:
                self._hang_count -= 1
            await asyncio.sleep(self._hang_seconds)
        return 200, RECEIPT_TYPE, body

    @staticmethod
    def _multipart(content_type: str, body: bytes) -> tuple[bytes, dict[str, bytes]]:
        """The "arkivmelding" part and the files of a multipart/form-data body. Split by
        hand on the boundary (the stdlib email parser costs ~4 ms per message)."""
        kind, _, params = content_type.partition(";")
        if kind.strip().lower() != "multipart/form-data":
            raise _Invalid("Content-Type må være multipart/form-data")
        match = re.search(r'boundary="?([^";]+)"?', params)
        if not match:
            raise _Invalid("multipart uten boundary")
        delimiter = b"--" + match.group(1).encode("latin-1")
        xml: bytes | None = None
        files: dict[str, bytes] = {}
        pieces = body.split(delimiter)
        if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
            raise _Invalid("ugyldig multipart")
        for piece in pieces[1:-1]:
            head, separator, content = piece.partition(b"\r\n\r\n")
            if not separator or not content.endswith(b"\r\n"):
                raise _Invalid("ugyldig multipart-del")
            content = content[:-2]
            disposition = next(
                (
                    line.decode("utf-8", "replace")
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-disposition:")
                ),
                "",
            )
            name = re.search(r'\bname="([^"]*)"', disposition)
            filename = re.search(r'\bfilename="([^"]*)"', disposition)
            if name and name.group(1) == "arkivmelding":
                xml = content
            else:
                files[filename.group(1) if filename else ""] = content
        if xml is None:
            raise _Invalid("delen «arkivmelding» mangler")
        return xml, files

    async def _post_http(self, request: Request) -> Response:
        try:
            xml, files = self._multipart(
                request.headers.get("content-type", ""), await request.body()
            )
        except _Invalid as error:
            return Response(self._error(UGYLDIG_NS, str(error)), 400, media_type="application/xml")
        status, _, body = await self._handle(xml, files)
        return Response(body, status, media_type="application/xml")

    async def _post_fiks_io(self, request: Request) -> Response:
        message_id = request.headers.get("melding-id", "")
        if (
            request.headers.get("meldingstype")
            != "no.ks.fiks.arkiv.v1.arkivering.arkivmelding.opprett"
        ):
            return Response(b"ukjent meldingstype", 400)
        try:
            uuid.UUID(message_id)
            with zipfile.ZipFile(io.BytesIO(await request.body())) as archive:
                contents = {name: archive.read(name) for name in archive.namelist()}
        except (ValueError, zipfile.BadZipFile):
            return Response(b"ugyldig melding", 400)
        xml = contents.pop("arkivmelding.xml", b"")
        status, message_type, body = await self._handle(xml, contents)
        self.replies[message_id] = (message_type, body)
        return Response(status_code=202)

    async def _get_reply(self, request: Request) -> Response:
        reply = self.replies.pop(request.path_params["id"], None)
        if reply is None:
            return Response(status_code=404)
        return Response(
            reply[1], 200, media_type="application/xml", headers={"meldingstype": reply[0]}
        )

    async def _stats(self, request: Request) -> Response:
        """Counters for a fake running in another process (the bench)."""
        return JSONResponse(
            {
                "requests": self.requests,
                "created": sum(self.created.values()),
                "registrations": len(self.registrations),
                "duplicates": sum(1 for n in self.created.values() if n > 1),
                "rejected": len(self.rejected),
            }
        )

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/_stats", self._stats, methods=["GET"]),
                Route("/arkivmelding", self._post_http, methods=["POST"]),
                Route("/fiks-io/meldinger", self._post_fiks_io, methods=["POST"]),
                Route("/fiks-io/meldinger/{id}/svar", self._get_reply, methods=["GET"]),
            ]
        )


def main() -> None:
    """Serve the fake in this process until killed: `python -m tests.fakes.archive_server`
    prints "PORT <n>" once it listens (the bench runs it apart from the batch, so the two
    do not share one interpreter lock)."""
    import argparse

    parser = argparse.ArgumentParser(description="fake Elements / Fiks Arkiv archive")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    archive = FakeArchive()
    archive._serve(args.port)
    print(f"PORT {archive.port}", flush=True)
    try:
        while archive._thread is not None and archive._thread.is_alive():
            archive._thread.join(timeout=1)
    except KeyboardInterrupt:
        archive.stop()


if __name__ == "__main__":
    main()
