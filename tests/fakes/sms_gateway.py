"""A real HTTP SMS gateway for tests, speaking the protocol in plugins/sms/README.md.

It runs as a Starlette app under uvicorn in a background thread on 127.0.0.1 (a free
port), so the SMS plugin talks to it over real HTTP:

- `POST /v1/messages` (HTTP Basic auth): validates the JSON, counts segments itself,
  answers 201 {"id", "segments", "status": "accepted"}; a repeated `reference` answers 200
  with the same id and is not counted as a new message.
- `GET /v1/messages/{id}`: {"id", "status", "reference", "segments", "error"?}.

Knobs: `fail_next(n, status)` answers the next n requests with an error, `down()`/`up()`
stop and restart the server on the same port (connections refused in between),
`set_status()` changes what polling sees, and `send_report()` POSTs a delivery report to
the callbackUrl the message was sent with (optionally through an ASGI transport, so the
app under test need not listen on a port).

The segment count is deliberately not imported from plugins/sms/segments.py: the fake is
a second, independent opinion.

    with FakeSmsGateway(username="tavle", password="hemmelig") as gateway:
        monkeypatch.setenv("TAVLE_SMS_BASE_URL", gateway.base_url)
        ...
        [message] = gateway.messages
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes._served import LoopbackServer

_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = set("^{}\\[~]|€\f")
_TO = re.compile(r"\+47[0-9]{8}")


def gateway_segments(text: str) -> int:
    """The fake's own segment count (total units over the per-part size)."""
    if set(text) <= _GSM7 | _GSM7_EXTENSION:
        units = len(text) + sum(1 for c in text if c in _GSM7_EXTENSION)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else -(-units // part)


@dataclass
class GatewayMessage:
    id: str
    to: str
    sender: str
    text: str
    reference: str
    callback_url: str | None
    segments: int
    status: str = "accepted"
    error: str | None = None


@dataclass
class GatewayRequest:
    """Everything that reached the gateway, answered or not."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status_code: int = 0
    response: Any = None


@dataclass
class _Failure:
    remaining: int = 0
    status: int = 503
    body: dict[str, Any] = field(default_factory=dict)


class FakeSmsGateway(LoopbackServer):
    """An SMS gateway on loopback. Use as a context manager or call start()/stop()."""

    def __init__(
        self, *, username: str = "tavle", password: str = "hemmelig", id_prefix: str = "gw"
    ) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.port = 0
        self.requests: list[GatewayRequest] = []
        self._messages: dict[str, GatewayMessage] = {}
        self._by_reference: dict[str, str] = {}
        self._failure = _Failure()
        self._ids = itertools.count(1)
        # Test files sharing one database each run their own gateway: distinct prefixes
        # keep the gateway ids (looked up by delivery reports) unique across them.
        self.id_prefix = id_prefix
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeSmsGateway:
        """Serve on a free port, or on the same port as before after `down()`."""
        self._serve(self.port or 0)
        return self

    # -- knobs and inspection ----------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 503, body: dict[str, Any] | None = None) -> None:
        """Answer the next `n` requests (after authentication) with `status`."""
        with self._lock:
            self._failure = _Failure(
                remaining=n, status=status, body=body or {"error": f"simulated {status}"}
            )

    def reset(self) -> None:
        """Forget messages, requests and knobs (between tests); ids keep counting."""
        with self._lock:
            self.requests.clear()
            self._messages.clear()
            self._by_reference.clear()
            self._failure = _Failure()

    @property
    def messages(self) -> list[GatewayMessage]:
        """Distinct messages accepted, in order (a repeated reference is not a new one)."""
        with self._lock:
            return list(self._messages.values())

    def message(self, message_id: str) -> GatewayMessage:
        with self._lock:
            return self._messages[message_id]

    def set_status(self, message_id: str, status: str, error: str | None = None) -> None:
        """Change what `GET /v1/messages/{id}` answers, without calling back."""
        with self._lock:
            message = self._messages[message_id]
            message.status = status
            message.error = error

    async def send_report(
        self,
        message_id: str,
        status: str,
        error: str | None = None,
        *,
        url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> httpx.Response:
        """Set the status and POST a delivery report to the message's callbackUrl (or
        `url`). Pass `transport=httpx.ASGITransport(app=app)` to reach an app in-process."""
        self.set_status(message_id, status, error)
        message = self.message(message_id)
        target = url or message.callback_url
        if not target:
            raise ValueError(f"message {message_id} has no callbackUrl")
        report: dict[str, Any] = {"id": message.id, "reference": message.reference}
        report["status"] = status
        if error is not None:
            report["error"] = error
        async with httpx.AsyncClient(transport=transport, timeout=5) as client:
            return await client.post(target, json=report)

    # -- the gateway -------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/messages", self._create, methods=["POST"]),
                Route("/v1/messages/{id}", self._show, methods=["GET"]),
            ]
        )

    def _authorised(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.username}:{self.password}"

    async def _record(self, request: Request) -> GatewayRequest:
        body = await request.body()
        try:
            parsed: Any = await request.json() if body else None
        except ValueError:
            parsed = None
        entry = GatewayRequest(
            method=request.method,
            path=request.url.path,
            headers=dict(request.headers),
            body=body,
            json=parsed,
        )
        with self._lock:
            self.requests.append(entry)
        return entry

    def _answer(self, entry: GatewayRequest, body: Any, status: int, **kw: Any) -> Response:
        entry.status_code, entry.response = status, body
        return JSONResponse(body, status_code=status, **kw)

    def _precheck(self, entry: GatewayRequest, request: Request) -> Response | None:
        if not self._authorised(request):
            return self._answer(
                entry,
                {"error": "unauthorized"},
                401,
                headers={"WWW-Authenticate": 'Basic realm="sms"'},
            )
        with self._lock:
            if self._failure.remaining > 0:
                self._failure.remaining -= 1
                failure = self._failure
            else:
                failure = None
        if failure is not None:
            return self._answer(entry, failure.body, failure.status)
        return None

    async def _create(self, request: Request) -> Response:
        entry = await self._record(request)
        problem = self._precheck(entry, request)
        if problem is not None:
            return problem
        payload = entry.json
        reason = _invalid(payload)
        if reason is not None:
            return self._answer(entry, {"error": "invalid_request", "reason": reason}, 400)
        with self._lock:
            existing = self._by_reference.get(payload["reference"])
            if existing is not None:
                message = self._messages[existing]
                created = False
            else:
                message = GatewayMessage(
                    id=f"{self.id_prefix}-{next(self._ids):06d}",
                    to=payload["to"],
                    sender=payload["from"],
                    text=payload["text"],
                    reference=payload["reference"],
                    callback_url=payload.get("callbackUrl"),
                    segments=gateway_segments(payload["text"]),
                )
                self._messages[message.id] = message
                self._by_reference[message.reference] = message.id
                created = True
            body = {"id": message.id, "segments": message.segments, "status": message.status}
        return self._answer(entry, body, 201 if created else 200)

    async def _show(self, request: Request) -> Response:
        entry = await self._record(request)
        problem = self._precheck(entry, request)
        if problem is not None:
            return problem
        with self._lock:
            message = self._messages.get(request.path_params["id"])
            if message is None:
                return self._answer(entry, {"error": "not_found"}, 404)
            body: dict[str, Any] = {
                "id": message.id,
                "status": message.status,
                "reference": message.reference,
                "segments": message.segments,
            }
            if message.error is not None:
                body["error"] = message.error
        return self._answer(entry, body, 200)


def _invalid(payload: Any) -> str | None:
    """Why a send request is invalid, or None."""
    if not isinstance(payload, dict):
        return "body must be a JSON object"
    to = payload.get("to")
    if not isinstance(to, str) or not _TO.fullmatch(to):
        return "'to' must be +47 followed by 8 digits"
    sender = payload.get("from")
    if not isinstance(sender, str) or not 1 <= len(sender) <= 11:
        return "'from' must be 1 to 11 characters"
    text = payload.get("text")
    if not isinstance(text, str) or not text:
        return "'text' must be a non-empty string"
    reference = payload.get("reference")
    if not isinstance(reference, str) or not reference:
        return "'reference' is required"
    callback = payload.get("callbackUrl")
    if callback is not None and (
        not isinstance(callback, str) or not callback.startswith(("http://", "https://"))
    ):
        return "'callbackUrl' must be an http(s) URL"
    return None
