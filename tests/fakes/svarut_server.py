"""A fake KS SvarUt (ForsendelseRestServiceV1) for tests, over real HTTP.

A Starlette app under uvicorn in a background thread on 127.0.0.1 (a free port). It serves
what the svarut plugin uses, as KS documents it:

- POST /tjenester/api/forsendelse/v1/sendForsendelse: multipart/form-data, a "forsendelse"
  JSON part then one part per document ("filer", file name = the document's filnavn), in
  the order of `dokumenter`; answers {"id": "<uuid>"}.
- GET  /tjenester/api/forsendelse/v1/eksternref/{ref}: {"forsendelseIder": [{"id": ...}]}.
- GET  /tjenester/api/forsendelse/v1/{id}/status: {"forsendelsesId": {"id"},
  "sisteStatusEndring": <epoch ms>, "status": "MOTTATT"}; POST .../statuser for several.
- GET  /forsendelse/publickey/hent: the PEM certificate to encrypt "kryptert" files for.

A repeated `eksternReferanse` is refused by default with 409 Conflict and recorded in
`duplicates`, so a client that ever sends a letter twice is caught (Tavle's delivery
reference is unique per delivery). KS's v1 service itself does not check (KS: "ingen
sjekk på innhold"): `duplicate_reference="accept"` behaves like it and stores a second
forsendelse, which shows whether the client's own look-up before sending works.

It checks Basic auth (401), the multipart and the metadata (required fields, fødselsnummer
with valid mod-11 control digits, postal address unless digital-only, level 4 only when
encrypted, every file a PDF, decrypted first when `kryptert`, named as in `dokumenter`) and
answers 400 with {"message": ...} otherwise; a field the v1 model does not have is
refused too. Knobs: `set_status(id, "LEST")`, `fail_next(n)` (500s),
`accept_then_fail_next(n)` (stores the letter, then answers 500, as when the answer is
lost), `lag_lookups(n)` (eksternref finds nothing yet), `down()` / `up()` (connection
refused in between, same port).

    with FakeSvarUt(username="tavle", password="hemmelig") as svarut:
        ...  # svarut.base_url goes into TAVLE_SVARUT_BASE_URL
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._served import LoopbackServer

API = "/tjenester/api/forsendelse/v1"
_ACCOUNTING_CODE = re.compile(r"^[a-zA-Z0-9\-.øæåØÆÅ]{0,20}$")

# The v1 model (ks-no/svarut-rest-klient: json/forsendelse.json and model/*.java). SvarUt
# reads the part with Jackson into these classes; a misspelt name (v2's
# "utskriftskonfigurasjon", "konteringskode", "taushetsbelagtPost") would be dropped or
# refused there, so the fake refuses it loudly.
FORSENDELSE_FIELDS = frozenset(
    {
        "mottaker",
        "eksponertFor",
        "avgivendeSystem",
        "tittel",
        "konteringsKode",
        "kunDigitalLevering",
        "kryptert",
        "utskriftsKonfigurasjon",
        "krevNiva4Innlogging",
        "metadataFraAvleverendeSystem",
        "metadataForImport",
        "svarSendesTil",
        "svarPaForsendelse",
        "dokumenter",
        "lenker",
        "forsendelsesType",
        "eksternReferanse",
        "svarPaForsendelseLink",
        "signeringUtloper",
        "signaturType",
    }
)
ADRESSE_FIELDS = frozenset({"postAdresse", "digitalAdresse"})
POSTADRESSE_FIELDS = frozenset(
    {"navn", "adresse1", "adresse2", "adresse3", "postNummer", "postSted", "land"}
)
DIGITALADRESSE_FIELDS = frozenset({"fodselsNummer", "organisasjonsNummer"})
DOKUMENT_FIELDS = frozenset(
    {
        "filnavn",
        "mimeType",
        "skalSigneres",
        "dokumentType",
        "giroarkSider",
        "ekskluderesFraUtskrift",
    }
)
UTSKRIFT_FIELDS = frozenset({"utskriftMedFarger", "tosidig"})
STATUSES = frozenset(
    {
        "MOTTATT",
        "AKSEPTERT",
        "AVVIST",
        "VARSLET",
        "LEST",
        "SENDT_PRINT",
        "PRINTET",
        "MANUELT_HANDTERT",
        "SENDT_DIGITALT",
        "SENDT_SDP",
        "LEVERT_SDP",
        "KLAR_FOR_MOTTAK",
        "IKKE_LEVERT",
    }
)


def _unknown(value: Any, allowed: frozenset[str], where: str) -> None:
    if not isinstance(value, dict):
        raise _Invalid(f"{where} må være et objekt")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _Invalid(f"Ukjente felt i {where}: {', '.join(unknown)}")


def valid_fodselsnummer(value: str) -> bool:
    """11 digits whose two last are the mod-11 control digits (also true for D-numbers)."""
    if not re.fullmatch(r"\d{11}", value or ""):
        return False
    digits = [int(c) for c in value]
    k1 = 11 - sum(w * d for w, d in zip((3, 7, 6, 1, 8, 9, 4, 5, 2), digits, strict=False)) % 11
    k1 = 0 if k1 == 11 else k1
    k2 = 11 - sum(w * d for w, d in zip((5, 4, 3, 2, 7, 6, 5, 4, 3, 2), digits, strict=False)) % 11
    k2 = 0 if k2 == 11 else k2
    return k1 < 10 and k2 < 10 and digits[9] == k1 and digits[10] == k2


def make_fodselsnummer(birth: str = "010190", individual: int = 123) -> str:
    """A fødselsnummer with valid control digits for `birth` (ddmmyy), for test data."""
    for number in range(individual, individual + 1000):
        base = f"{birth}{number % 1000:03d}"
        for k1 in range(10):
            for k2 in range(10):
                candidate = f"{base}{k1}{k2}"
                if valid_fodselsnummer(candidate):
                    return candidate
    raise ValueError(f"no valid fødselsnummer for {birth}")


@dataclass
class ReceivedForsendelse:
    """One forsendelse the fake accepted: decoded metadata and (decrypted) file bytes."""

    id: str
    metadata: dict[str, Any]
    files: list[tuple[str, bytes]]
    encrypted: bool
    status: str = "MOTTATT"
    changed: float = field(default_factory=time.time)
    # Part names and content types as they arrived, to check the wire format.
    parts: list[dict[str, str | None]] = field(default_factory=list)

    @property
    def reference(self) -> str | None:
        return self.metadata.get("eksternReferanse")


class _Invalid(Exception):
    pass


class FakeSvarUt(LoopbackServer):
    """A SvarUt forsendelse service on loopback. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        *,
        username: str = "tavle-test",
        password: str = "service-passord",
        duplicate_reference: str = "refuse",
    ):
        if duplicate_reference not in ("refuse", "accept"):
            raise ValueError(duplicate_reference)
        super().__init__()
        self.username = username
        self.password = password
        self.duplicate_reference = duplicate_reference
        # eksternReferanse of every refused repeat (with "refuse").
        self.duplicates: list[str] = []
        self.forsendelser: dict[str, ReceivedForsendelse] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._fail_next = 0
        self._accept_then_fail = 0
        self._lookup_lag = 0
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-svarut")])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self._key, hashes.SHA256())
        )

    # ----------------------------------------------------------------- knobs and records
    def reset(self) -> None:
        with self._lock:
            self.forsendelser.clear()
            self.requests.clear()
            self.duplicates.clear()
            self._fail_next = self._accept_then_fail = self._lookup_lag = 0

    def set_status(self, forsendelse_id: str, status: str) -> None:
        """What the status endpoint answers from now on (one of SvarUt's statuses)."""
        if status not in STATUSES:
            raise ValueError(status)
        with self._lock:
            self.forsendelser[forsendelse_id].status = status
            self.forsendelser[forsendelse_id].changed = time.time()

    def fail_next(self, count: int = 1) -> None:
        """Answer the next `count` API requests with 500 without doing anything."""
        with self._lock:
            self._fail_next = count

    def accept_then_fail_next(self, count: int = 1) -> None:
        """Store the next `count` forsendelser, then answer 500 (the answer is 'lost')."""
        with self._lock:
            self._accept_then_fail = count

    def lag_lookups(self, count: int = 1) -> None:
        """Answer the next `count` eksternref look-ups with an empty list, as a search
        index that has not caught up with a forsendelse just stored would."""
        with self._lock:
            self._lookup_lag = count

    def sends(self) -> int:
        """How many sendForsendelse requests arrived (accepted, refused or failed)."""
        with self._lock:
            return sum(1 for _, path in self.requests if path.endswith("/sendForsendelse"))

    def sent_with(self, reference: str) -> list[ReceivedForsendelse]:
        with self._lock:
            return [f for f in self.forsendelser.values() if f.reference == reference]

    # ------------------------------------------------------------------------- HTTP
    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except ValueError:
            return False
        return user == self.username and password == self.password

    def _guard(self, request: Request) -> Response | None:
        with self._lock:
            self.requests.append((request.method, request.url.path))
            if self._fail_next > 0:
                self._fail_next -= 1
                return JSONResponse({"message": "Intern feil (test)"}, status_code=500)
        if not self._authorised(request):
            return JSONResponse(
                {"message": "Ugyldig brukernavn eller passord"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="SvarUt"'},
            )
        return None

    @staticmethod
    def _parts(content_type: str, body: bytes) -> list[Message]:
        # Starlette's form parser needs python-multipart; the stdlib email parser reads
        # multipart/form-data well enough once given the Content-Type header.
        if not content_type.lower().startswith("multipart/form-data"):
            raise _Invalid("Content-Type må være multipart/form-data")
        message = BytesParser().parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        if not message.is_multipart():
            raise _Invalid("Ugyldig multipart")
        return list(message.get_payload())  # type: ignore[arg-type]

    def _decrypt(self, data: bytes) -> bytes:
        try:
            return pkcs7.pkcs7_decrypt_der(data, self.certificate, self._key, [])
        except Exception as error:  # any failure is the sender's fault
            raise _Invalid(f"Kunne ikke dekryptere fil: {error}") from error

    def _validate(self, metadata: dict[str, Any], files: list[tuple[str, bytes]]) -> None:
        _unknown(metadata, FORSENDELSE_FIELDS, "forsendelse")
        for name in ("tittel", "mottaker", "avgivendeSystem"):
            if not metadata.get(name):
                raise _Invalid(f"{name} må være utfylt")
        mottaker = metadata["mottaker"]
        _unknown(mottaker, ADRESSE_FIELDS, "mottaker")
        digital = mottaker.get("digitalAdresse") or {}
        _unknown(digital, DIGITALADRESSE_FIELDS, "mottaker.digitalAdresse")
        if len(digital) > 1:
            raise _Invalid("digitalAdresse har enten fodselsNummer eller organisasjonsNummer")
        fnr = digital.get("fodselsNummer")
        if fnr is not None and not valid_fodselsnummer(str(fnr)):
            raise _Invalid(f"Ugyldig fødselsnummer: {fnr}")
        post = mottaker.get("postAdresse")
        if not post or not post.get("navn"):
            raise _Invalid("mottaker.postAdresse.navn må være utfylt")
        _unknown(post, POSTADRESSE_FIELDS, "mottaker.postAdresse")
        if "utskriftsKonfigurasjon" in metadata:
            _unknown(metadata["utskriftsKonfigurasjon"], UTSKRIFT_FIELDS, "utskriftsKonfigurasjon")
        for flag in ("kunDigitalLevering", "kryptert", "krevNiva4Innlogging"):
            if not isinstance(metadata.get(flag, False), bool):
                raise _Invalid(f"{flag} må være true eller false")
        reference = metadata.get("eksternReferanse")
        if reference is not None and (not isinstance(reference, str) or len(reference) > 100):
            raise _Invalid("eksternReferanse må være tekst på høyst 100 tegn")
        if not metadata.get("kunDigitalLevering"):
            if not post.get("postNummer") or not post.get("postSted"):
                raise _Invalid("Postnummer og poststed må være utfylt når brevet kan printes")
        if metadata.get("krevNiva4Innlogging") and not metadata.get("kryptert"):
            raise _Invalid("Forsendelser som krever nivå 4-innlogging må være kryptert")
        code = metadata.get("konteringsKode")
        if code is not None and not _ACCOUNTING_CODE.match(code):
            raise _Invalid("Ugyldig konteringskode")
        dokumenter = metadata.get("dokumenter") or []
        if not dokumenter:
            raise _Invalid("Forsendelsen må ha minst ett dokument")
        for number, dokument in enumerate(dokumenter):
            _unknown(dokument, DOKUMENT_FIELDS, f"dokumenter[{number}]")
        names = [d.get("filnavn") for d in dokumenter]
        if len({str(n).lower() for n in names}) != len(names):
            raise _Invalid("Filnavn må være unike i en forsendelse")
        if [name for name, _ in files] != names:
            raise _Invalid(f"Filene {[n for n, _ in files]} stemmer ikke med dokumenter {names}")
        for dokument, (name, data) in zip(dokumenter, files, strict=True):
            if not dokument.get("mimeType"):
                raise _Invalid(f"mimeType mangler for {name}")
            if dokument["mimeType"] == "application/pdf" and not data.startswith(b"%PDF-"):
                raise _Invalid(f"{name} er ikke en PDF")

    async def _send(self, request: Request) -> Response:
        if (refused := self._guard(request)) is not None:
            return refused
        body = await request.body()
        try:
            parts = self._parts(request.headers.get("content-type", ""), body)
            if not parts or parts[0].get_param("name", header="content-disposition") != (
                "forsendelse"
            ):
                raise _Invalid('Første part må ha name="forsendelse"')
            raw = parts[0].get_payload(decode=True) or b""
            try:
                metadata = json.loads(raw.decode("utf-8"))
            except ValueError as error:
                raise _Invalid(f"forsendelse er ikke gyldig JSON: {error}") from error
            files: list[tuple[str, bytes]] = []
            wire: list[dict[str, str | None]] = [
                {"name": "forsendelse", "filename": None, "content_type": parts[0]["content-type"]}
            ]
            for part in parts[1:]:
                filename = part.get_filename()
                name = part.get_param("name", header="content-disposition")
                if not filename:
                    raise _Invalid(f"Filpart {name!r} mangler filnavn")
                data = part.get_payload(decode=True) or b""
                if metadata.get("kryptert"):
                    data = self._decrypt(data)
                files.append((filename, data))
                wire.append(
                    {"name": name, "filename": filename, "content_type": part["content-type"]}
                )
            self._validate(metadata, files)
        except _Invalid as error:
            return JSONResponse({"message": str(error), "errorCode": "VALIDERING"}, 400)

        reference = metadata.get("eksternReferanse")
        with self._lock:
            existing = [
                f for f in self.forsendelser.values() if reference and f.reference == reference
            ]
            if existing and self.duplicate_reference == "refuse":
                self.duplicates.append(reference)
                return JSONResponse(
                    {
                        "message": f"Forsendelse med eksternReferanse {reference} finnes",
                        "errorCode": "DUPLIKAT",
                    },
                    status_code=409,
                )
            received = ReceivedForsendelse(
                id=str(uuid.uuid4()),
                metadata=metadata,
                files=files,
                encrypted=bool(metadata.get("kryptert")),
                parts=wire,
            )
            self.forsendelser[received.id] = received
            if self._accept_then_fail > 0:
                self._accept_then_fail -= 1
                return JSONResponse({"message": "Tidsavbrudd (test)"}, status_code=500)
        return JSONResponse({"id": received.id})

    async def _eksternref(self, request: Request) -> Response:
        if (refused := self._guard(request)) is not None:
            return refused
        reference = request.path_params["ref"]
        with self._lock:
            lagging = self._lookup_lag > 0
            self._lookup_lag -= 1 if lagging else 0
        ids = [] if lagging else [{"id": f.id} for f in self.sent_with(reference)]
        return JSONResponse({"forsendelseIder": ids})

    def _status_body(self, forsendelse: ReceivedForsendelse) -> dict[str, Any]:
        return {
            "forsendelsesId": {"id": forsendelse.id},
            "sisteStatusEndring": int(forsendelse.changed * 1000),
            "status": forsendelse.status,
        }

    async def _status(self, request: Request) -> Response:
        if (refused := self._guard(request)) is not None:
            return refused
        forsendelse = self.forsendelser.get(request.path_params["id"])
        if forsendelse is None:
            return JSONResponse({"message": "Fant ikke forsendelsen"}, status_code=404)
        return JSONResponse(self._status_body(forsendelse))

    async def _statuser(self, request: Request) -> Response:
        if (refused := self._guard(request)) is not None:
            return refused
        wanted = [
            item.get("id") if isinstance(item, dict) else item for item in await request.json()
        ]
        found = [self.forsendelser[i] for i in wanted if i in self.forsendelser]
        return JSONResponse({"statuser": [self._status_body(f) for f in found]})

    async def _public_key(self, request: Request) -> Response:
        pem = self.certificate.public_bytes(serialization.Encoding.PEM)
        return Response(pem, media_type="application/x-pem-file")

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(f"{API}/sendForsendelse", self._send, methods=["POST"]),
                Route(f"{API}/eksternref/{{ref:path}}", self._eksternref, methods=["GET"]),
                Route(f"{API}/statuser", self._statuser, methods=["POST"]),
                Route(f"{API}/{{id}}/status", self._status, methods=["GET"]),
                Route("/forsendelse/publickey/hent", self._public_key, methods=["GET"]),
            ]
        )
