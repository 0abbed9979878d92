"""A small async client for KS SvarUt's ForsendelseRestServiceV1.

Base path `/tjenester/api/forsendelse/v1`, HTTP Basic auth with the forsendelsesservice's
user name and service password. Only the calls Tavle needs: send a forsendelse (multipart:
a "forsendelse" JSON part, then one "filer" part per document), look forsendelser up by
external reference, read one forsendelse's status, and fetch SvarUt's public certificate
for encrypting level-4 letters. See README.md for the sources.

Transport and HTTP failures become the channel errors the worker understands: connection
errors, timeouts and 5xx are `TemporaryDeliveryError`; other 4xx are
`PermanentDeliveryError` carrying SvarUt's own message in `detail`.
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from core.channels import PermanentDeliveryError, TemporaryDeliveryError

API_PATH = "/tjenester/api/forsendelse/v1"
# Where SvarUt publishes the certificate whose key decrypts "kryptert" forsendelser
# (linked from the ForsendelseRestServiceV1 page, for both PROD and TEST).
PUBLIC_KEY_PATH = "/forsendelse/publickey/hent"


class DuplicateReference(PermanentDeliveryError):
    """SvarUt refused the forsendelse because one with the same `eksternReferanse` exists.

    KS's v1 service documents no such check ("ingen sjekk på innhold"), but a gateway in
    front of it, a later SvarUt version or the test double may refuse with 409 Conflict;
    for Tavle it means the letter was sent before, never that it must be sent again."""


@dataclass(frozen=True)
class SvarUtConfig:
    base_url: str
    username: str
    password: str
    timeout: float
    cost_per_letter: Decimal
    # KS asks for a long read timeout on sendForsendelse (SvarUt itself gives up after 15
    # minutes on large files). Ours must stay below the outbox lease (300 s): a worker
    # still waiting when its lease ran out would let another worker look the reference up
    # too early, find nothing, and send the letter a second time.
    send_timeout: float = 240.0
    # Optional local copy of SvarUt's certificate (PEM or DER); fetched from SvarUt if unset.
    certificate_path: str | None = None

    @classmethod
    def from_env(cls) -> SvarUtConfig:
        """Read the settings at call time, so a changed environment takes effect at once."""
        return cls(
            # No default: a test or a demo without settings must never reach the real
            # SvarUt (https://svarut.ks.no, or https://test.svarut.ks.no for KS's test).
            base_url=(os.environ.get("TAVLE_SVARUT_BASE_URL") or "").rstrip("/"),
            username=os.environ.get("TAVLE_SVARUT_USERNAME", ""),
            password=os.environ.get("TAVLE_SVARUT_PASSWORD", ""),
            timeout=float(os.environ.get("TAVLE_SVARUT_TIMEOUT", "30")),
            send_timeout=float(os.environ.get("TAVLE_SVARUT_SEND_TIMEOUT", "240")),
            cost_per_letter=cost_per_letter(),
            certificate_path=os.environ.get("TAVLE_SVARUT_CERTIFICATE") or None,
        )


def cost_per_letter() -> Decimal:
    return Decimal(os.environ.get("TAVLE_SVARUT_COST_PER_LETTER", "12.50"))


def _error_message(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """SvarUt's error body: JSON with `message` (and an error code) on the v1 API; anything
    else is passed on as text so the user still sees what SvarUt said."""
    detail: dict[str, Any] = {"http_status": response.status_code}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("error") or response.reason_phrase)
        detail["svarut_error"] = body
    else:
        message = response.text.strip()[:500] or response.reason_phrase
        detail["svarut_error"] = message
    return message, detail


# One httpx client, with its connection pool, per event loop and configuration: building
# a client loads the CA bundle (tens of milliseconds), and a fresh client means a fresh
# TLS handshake with SvarUt for every letter. Weak keys: a closed loop's clients go with
# it, so a client is never used on a loop it was not made for.
_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[SvarUtConfig, httpx.AsyncClient]
] = weakref.WeakKeyDictionary()


class SvarUtClient:
    """The calls Tavle makes to SvarUt. Cheap to make per operation: the HTTP client
    underneath is shared per event loop and configuration."""

    def __init__(self, config: SvarUtConfig, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self._transport = transport

    def _http(self) -> httpx.AsyncClient:
        if not self.config.base_url:
            # The operator's to fix: the letters wait in the queue meanwhile.
            raise TemporaryDeliveryError("SvarUt er ikke konfigurert (TAVLE_SVARUT_BASE_URL).")
        if self._transport is not None:  # a test's own transport: not shared
            return self._new_client()
        clients = _CLIENTS.setdefault(asyncio.get_running_loop(), {})
        client = clients.get(self.config)
        if client is None or client.is_closed:
            client = clients[self.config] = self._new_client()
        return client

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.config.base_url,
            auth=httpx.BasicAuth(self.config.username, self.config.password),
            timeout=self.config.timeout,
            transport=self._transport,
            headers={"Accept": "application/json"},
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
        )

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http().request(method, path, **kwargs)
        except httpx.TimeoutException as error:
            raise TemporaryDeliveryError(
                "SvarUt svarte ikke i tide", detail={"error": repr(error), "path": path}
            ) from error
        except httpx.TransportError as error:
            raise TemporaryDeliveryError(
                "Fikk ikke kontakt med SvarUt", detail={"error": repr(error), "path": path}
            ) from error
        if response.status_code >= 500:
            message, detail = _error_message(response)
            raise TemporaryDeliveryError(f"SvarUt har en feil ({message})", detail=detail)
        return response

    def _raise_for_client_error(self, response: httpx.Response, action: str) -> None:
        if response.status_code >= 400:
            message, detail = _error_message(response)
            if response.status_code in (401, 403):
                message = f"SvarUt avviste påloggingen: {message}"
            raise PermanentDeliveryError(f"SvarUt avviste {action}: {message}", detail=detail)

    async def find_by_external_reference(self, reference: str) -> list[str]:
        """Ids of the forsendelser sent with this `eksternReferanse` (GET /eksternref/{ref}).

        KS documents the answer as List<ForsendelsesId>; the KS Java client reads it as an
        object with `forsendelseIder`. Both shapes, and plain strings, are accepted.
        """
        response = await self._request("GET", f"{API_PATH}/eksternref/{quote(reference, safe='')}")
        if response.status_code == 404:
            return []
        self._raise_for_client_error(response, "oppslaget på ekstern referanse")
        body = response.json()
        if isinstance(body, dict):
            body = body.get("forsendelseIder", body.get("forsendelseIds", []))
        ids: list[str] = []
        for item in body or []:
            value = item.get("id") if isinstance(item, dict) else item
            if value:
                ids.append(str(value))
        return ids

    async def send(self, forsendelse: dict[str, Any], files: list[tuple[str, bytes]]) -> str:
        """POST /sendForsendelse: the metadata part first, then the documents in the order
        of `forsendelse["dokumenter"]`, each under the part name "filer" with its filnavn as
        file name (as the KS Java client sends them). Returns the forsendelse id."""
        parts: list[tuple[str, tuple[str | None, bytes, str]]] = [
            (
                "forsendelse",
                (
                    None,
                    json.dumps(forsendelse, ensure_ascii=False).encode("utf-8"),
                    "application/json; charset=UTF-8",
                ),
            )
        ]
        # KS: "Parts med dokumenter må være content-type application/octet-stream".
        parts += [("filer", (name, data, "application/octet-stream")) for name, data in files]
        response = await self._request(
            "POST",
            f"{API_PATH}/sendForsendelse",
            files=parts,
            timeout=httpx.Timeout(self.config.timeout, read=self.config.send_timeout),
        )
        if response.status_code == 409:
            message, detail = _error_message(response)
            raise DuplicateReference(f"SvarUt har allerede forsendelsen: {message}", detail=detail)
        self._raise_for_client_error(response, "forsendelsen")
        try:
            forsendelse_id = response.json()["id"]
        except (ValueError, KeyError, TypeError) as error:
            # Accepted or not is unclear: retry later; the eksternref lookup then finds it.
            raise TemporaryDeliveryError(
                "Uventet svar fra SvarUt", detail={"body": response.text[:500]}
            ) from error
        return str(forsendelse_id)

    async def status(self, forsendelse_id: str) -> dict[str, Any] | None:
        """GET /{id}/status -> {"forsendelsesId": {"id"}, "sisteStatusEndring", "status"},
        or None when SvarUt does not know the id (404)."""
        response = await self._request("GET", f"{API_PATH}/{quote(forsendelse_id, safe='')}/status")
        if response.status_code == 404:
            return None
        self._raise_for_client_error(response, "statusoppslaget")
        body = response.json()
        return body if isinstance(body, dict) else None

    async def certificate(self) -> x509.Certificate:
        """SvarUt's certificate for CMS encryption: a local file if configured, else the one
        SvarUt publishes."""
        if self.config.certificate_path:
            with open(self.config.certificate_path, "rb") as file:  # noqa: ASYNC230 - tiny file
                data = file.read()
        else:
            response = await self._request("GET", PUBLIC_KEY_PATH)
            self._raise_for_client_error(response, "henting av offentlig nøkkel")
            data = response.content
        try:
            if b"-----BEGIN" in data:
                return x509.load_pem_x509_certificate(data)
            return x509.load_der_x509_certificate(data)
        except ValueError as error:
            raise PermanentDeliveryError(
                "SvarUts offentlige nøkkel kunne ikke leses", detail={"error": str(error)}
            ) from error


def encrypt_for_svarut(data: bytes, certificate: x509.Certificate) -> bytes:
    """CMS EnvelopedData (DER) for SvarUt's certificate, as `kryptert: true` requires: the
    KS examples encrypt with BouncyCastle's CMS envelope for the published certificate."""
    return (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(data)
        .add_recipient(certificate)
        .set_content_encryption_algorithm(algorithms.AES256)
        .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )
