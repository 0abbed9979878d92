"""A real local print-and-post service for testing the example "printmail" plugin.

Speaks the protocol in tavle_printmail/plugin.py over real HTTP on 127.0.0.1 (port 0: a
free port), with nothing but the standard library, so a plugin author can copy it. It
asserts on what it receives the way the real service would: bearer token, a complete
address, a PDF. A repeated reference is the same letter (answer 200, not a new letter).

    with FakePrintshop(token="hemmelig") as shop:
        monkeypatch.setenv("TAVLE_PRINTMAIL_URL", shop.base_url)
        ...
        [letter] = shop.letters
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Letter:
    id: str
    reference: str
    recipient: dict[str, str]
    sender: dict[str, Any]
    color: bool
    duplex: bool
    filename: str
    pdf: bytes
    status: str = "received"


class _Server(ThreadingHTTPServer):
    # Bind the same port again after stop(), though old connections linger in TIME_WAIT.
    allow_reuse_address = True
    daemon_threads = True


class FakePrintshop:
    """The print service on loopback. Use as a context manager or call start()/stop()."""

    def __init__(self, *, token: str = "hemmelig") -> None:
        self.token = token
        self.port = 0
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status answered)
        self._letters: dict[str, Letter] = {}
        self._ids = itertools.count(1)
        self._fail_next: list[int] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakePrintshop:
        """Serve on a free port, or on the same port again after `stop()`."""
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                shop._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                shop._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: connections are refused until `start()` again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakePrintshop:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- knobs and inspection ----------------------------------------------------------

    @property
    def letters(self) -> list[Letter]:
        """Distinct letters received, in order."""
        with self._lock:
            return list(self._letters.values())

    def set_status(self, letter_id: str, status: str) -> None:
        with self._lock:
            self._letters[letter_id].status = status

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these HTTP statuses, one each."""
        with self._lock:
            self._fail_next.extend(statuses)

    def reset(self) -> None:
        with self._lock:
            self._letters.clear()
            self.requests.clear()
            self._fail_next.clear()

    # -- the protocol ------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        status, answer = self._answer(request)
        with self._lock:
            self.requests.append((request.command, request.path, status))
        payload = json.dumps(answer).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def _answer(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": "unauthorized"}
        with self._lock:
            if self._fail_next:
                return self._fail_next.pop(0), {"error": "simulated failure"}
        if request.command == "GET" and request.path.startswith("/letters/"):
            with self._lock:
                found = self._letters.get(request.path.removeprefix("/letters/"))
            if found is None:
                return 404, {"error": "no such letter"}
            return 200, {"id": found.id, "status": found.status}
        if request.command == "POST" and request.path == "/letters":
            return self._receive(raw)
        return 404, {"error": "not found"}

    def _receive(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        try:
            body = json.loads(raw)
            pdf = base64.b64decode(body["pdf"], validate=True)
            reference, recipient = body["reference"], body["recipient"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            return 400, {"error": "malformed letter"}
        missing = [
            key
            for key in ("name", "street_address", "postal_code", "postal_town")
            if not isinstance(recipient, dict) or not recipient.get(key)
        ]
        if missing:
            return 422, {"error": f"incomplete address: {', '.join(missing)}"}
        if not pdf.startswith(b"%PDF-"):
            return 422, {"error": "the document is not a PDF"}
        with self._lock:
            for letter in self._letters.values():
                if letter.reference == reference:
                    return 200, {"id": letter.id, "status": letter.status, "sheets": 1}
            letter = Letter(
                id=f"L{next(self._ids)}",
                reference=reference,
                recipient=recipient,
                sender=body.get("sender") or {},
                color=body.get("color") is True,
                duplex=body.get("duplex") is True,
                filename=str(body.get("filename")),
                pdf=pdf,
            )
            self._letters[letter.id] = letter
        return 201, {"id": letter.id, "status": letter.status, "sheets": 1}
