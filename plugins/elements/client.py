"""Transports to the archive: one arkivmelding with its file per request.

- "http": POST {url}/arkivmelding as multipart/form-data, part "arkivmelding" (the XML)
  then one part per file named by its referanseDokumentfil; the answer is the kvittering
  (200), an ugyldigforespoersel (400: rejected, permanent) or a serverfeil (5xx).
- "fiksio": Fiks IO style. POST {url}/fiks-io/meldinger with the headers `meldingstype`
  (no.ks.fiks.arkiv.v1.arkivering.arkivmelding.opprett), `melding-id` and
  `mottaker-konto-id`, body a zip of arkivmelding.xml and the files (202 when accepted);
  the reply message is fetched from GET {url}/fiks-io/meldinger/{melding-id}/svar (404
  until it is there), its `meldingstype` header saying kvittering or which error.

Settings (environment, read at call time): TAVLE_ELEMENTS_URL, TAVLE_ELEMENTS_TRANSPORT
("http" or "fiksio", default http), TAVLE_ELEMENTS_TIMEOUT (seconds, 30),
TAVLE_ELEMENTS_ACCOUNT (the archive's Fiks IO account id), TAVLE_ELEMENTS_USERNAME and
TAVLE_ELEMENTS_PASSWORD (HTTP Basic, optional), TAVLE_ELEMENTS_CONCURRENCY (parallel
requests per chunk, 4).
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import ssl
import uuid
import zipfile
from dataclasses import dataclass
from functools import cache

import httpx

from plugins.elements.arkivmelding import MESSAGE_TYPE, RECEIPT_TYPE


@dataclass(frozen=True)
class ElementsConfig:
    url: str
    transport: str
    timeout: float
    account: str
    username: str
    password: str
    concurrency: int

    @classmethod
    def from_env(cls) -> ElementsConfig:
        transport = os.environ.get("TAVLE_ELEMENTS_TRANSPORT", "http").strip().lower()
        if transport not in ("http", "fiksio"):
            raise ValueError(f"TAVLE_ELEMENTS_TRANSPORT must be http or fiksio, not {transport!r}")
        return cls(
            url=os.environ.get("TAVLE_ELEMENTS_URL", "http://127.0.0.1:8089").rstrip("/"),
            transport=transport,
            timeout=float(os.environ.get("TAVLE_ELEMENTS_TIMEOUT", "30")),
            account=os.environ.get("TAVLE_ELEMENTS_ACCOUNT", "elements"),
            username=os.environ.get("TAVLE_ELEMENTS_USERNAME", ""),
            password=os.environ.get("TAVLE_ELEMENTS_PASSWORD", ""),
            concurrency=max(1, int(os.environ.get("TAVLE_ELEMENTS_CONCURRENCY", "4"))),
        )


@dataclass(frozen=True)
class Answer:
    """The archive's answer: `kind` is "kvittering", "rejected" (ugyldig forespørsel) or
    "server_error"; `body` the XML as received."""

    kind: str
    body: bytes
    status: int


class Unreachable(Exception):
    """Connection refused, reset or timed out: nothing is known about the outcome."""


def _answer_kind(status: int, message_type: str | None) -> str:
    if message_type:
        if message_type == RECEIPT_TYPE:
            return "kvittering"
        if message_type.endswith("ugyldigforespoersel") or message_type.endswith("ikkefunnet"):
            return "rejected"
        return "server_error"
    if status == 200:
        return "kvittering"
    if 400 <= status < 500:
        return "rejected"
    return "server_error"


def multipart_body(xml: bytes, files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """The multipart/form-data body (part "arkivmelding", then one "fil" part per file)
    and its Content-Type. Built in one piece: it then goes out in one or two writes
    instead of one per part. File names are plain ASCII (`file_reference`)."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for field, filename, content, content_type in [
        ("arkivmelding", "arkivmelding.xml", xml, "application/xml"),
        *(("fil", name, content, "application/pdf") for name, content in files),
    ]:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
        )
        chunks += [content, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


@cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~70 ms; one context serves every chunk.
    return ssl.create_default_context()


class ElementsClient:
    """Sends arkivmeldinger over one pooled HTTP client; use as an async context manager."""

    def __init__(self, config: ElementsConfig):
        self.config = config
        auth = (config.username, config.password) if config.username else None
        limits = httpx.Limits(max_connections=config.concurrency)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout),
            auth=auth,
            # Headers and body go out in separate writes: without TCP_NODELAY the body
            # waits for the peer's delayed ACK (~40 ms per message on Linux).
            transport=httpx.AsyncHTTPTransport(
                verify=_tls_context(),
                limits=limits,
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            ),
        )

    async def __aenter__(self) -> ElementsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    async def send(self, xml: bytes, files: list[tuple[str, bytes]]) -> Answer:
        """Send one arkivmelding with its files. Raises `Unreachable`."""
        try:
            if self.config.transport == "fiksio":
                return await self._send_fiks_io(xml, files)
            return await self._send_http(xml, files)
        except (httpx.TransportError, httpx.TimeoutException) as error:
            raise Unreachable(f"{type(error).__name__}: {str(error) or 'ingen svar'}") from error

    async def _send_http(self, xml: bytes, files: list[tuple[str, bytes]]) -> Answer:
        body, content_type = multipart_body(xml, files)
        response = await self._http.post(
            f"{self.config.url}/arkivmelding", content=body, headers={"content-type": content_type}
        )
        return Answer(
            _answer_kind(response.status_code, None), response.content, response.status_code
        )

    async def _send_fiks_io(self, xml: bytes, files: list[tuple[str, bytes]]) -> Answer:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("arkivmelding.xml", xml)
            for name, content in files:
                archive.writestr(name, content)
        message_id = str(uuid.uuid4())
        response = await self._http.post(
            f"{self.config.url}/fiks-io/meldinger",
            content=buffer.getvalue(),
            headers={
                "content-type": "application/zip",
                "meldingstype": MESSAGE_TYPE,
                "melding-id": message_id,
                "mottaker-konto-id": self.config.account,
            },
        )
        if response.status_code != 202:
            return Answer(
                _answer_kind(response.status_code, response.headers.get("meldingstype")),
                response.content,
                response.status_code,
            )
        # The reply comes as a message of its own; poll for it until the timeout.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        delay = 0.005
        while True:
            reply = await self._http.get(f"{self.config.url}/fiks-io/meldinger/{message_id}/svar")
            if reply.status_code == 200:
                return Answer(
                    _answer_kind(200, reply.headers.get("meldingstype")),
                    reply.content,
                    200,
                )
            if reply.status_code != 404:
                return Answer(
                    _answer_kind(reply.status_code, None), reply.content, reply.status_code
                )
            if loop.time() + delay > deadline:
                raise httpx.ReadTimeout("ingen svarmelding fra arkivet innen tidsfristen")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
