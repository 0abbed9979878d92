"""A real SMTP server for tests (aiosmtpd on 127.0.0.1, a free port, its own thread).

It keeps every message it accepts, parsed with the `email` package, and can be told to
misbehave: refuse recipients permanently (550), answer the next transactions with a
temporary 451, require AUTH, require STARTTLS (`starttls=True`: a self-signed certificate
for 127.0.0.1, its PEM in `ca_file` for the client to trust), or go down (`down()`:
connection refused) and come back on the same port (`up()`).

    with FakeSmtpServer() as smtp:
        monkeypatch.setenv("TAVLE_SMTP_PORT", str(smtp.port))
        ...
        [mail] = smtp.messages
        assert mail["Subject"] == "Hei"
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted SMTP transaction."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    authenticated_as: str | None
    tls: bool = False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FakeSmtpServer:
    """An SMTP server on loopback. Use as a context manager or call start()/stop()."""

    def __init__(
        self, *, credentials: tuple[str, str] | None = None, starttls: bool = False
    ) -> None:
        self.host = "127.0.0.1"
        self.port = _free_port()
        # (username, password) the server demands via AUTH; None means no AUTH at all.
        self.credentials = credentials
        self.starttls = starttls
        self.ca_file: str | None = None
        self._tls_context: ssl.SSLContext | None = None
        if starttls:
            self._tls_context, self.ca_file = _self_signed_context(self.host)
        self.received: list[ReceivedMail] = []
        self._rejected: dict[str, tuple[int, str]] = {}
        self._temporary_failures = 0
        self._temporary_code = 451
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeSmtpServer:
        """Listen on `self.port` (the same port after a restart); returns self."""
        smtp_kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            smtp_kwargs = {
                "authenticator": self._authenticate,
                "auth_required": True,
                # Without STARTTLS the test client speaks plain text to loopback.
                "auth_require_tls": self.starttls,
            }
        if self._tls_context is not None:
            smtp_kwargs.update(tls_context=self._tls_context, require_starttls=True)
        self._controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ready_timeout=5,
            **smtp_kwargs,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until `start()`/`up()`."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    down = stop

    def up(self) -> FakeSmtpServer:
        return self.start()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> FakeSmtpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- knobs -------------------------------------------------------------------------

    def reject_recipient(
        self, address: str, code: int = 550, text: str = "5.1.1 Mailbox unavailable"
    ) -> None:
        """Answer RCPT TO for `address` with `code` (550: permanent) from now on."""
        with self._lock:
            self._rejected[address.lower()] = (code, text)

    def fail_next(self, n: int = 1, code: int = 451) -> None:
        """Answer RCPT TO of the next `n` transactions with a temporary error."""
        with self._lock:
            self._temporary_failures = n
            self._temporary_code = code

    def reset(self) -> None:
        """Forget received mail and all knobs (between tests)."""
        with self._lock:
            self.received.clear()
            self._rejected.clear()
            self._temporary_failures = 0

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [mail.message for mail in self.received]

    # -- server side -------------------------------------------------------------------

    def _authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self.credentials is not None
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if (login, auth_data.password.decode()) == self.credentials:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    def _rcpt_answer(self, address: str) -> str | None:
        with self._lock:
            rejected = self._rejected.get(address.lower())
            if rejected is not None:
                code, text = rejected
                return f"{code} {text}"
            if self._temporary_failures > 0:
                self._temporary_failures -= 1
                return f"{self._temporary_code} 4.3.0 Try again later"
        return None

    def _accept(self, envelope: Envelope, session: Session) -> None:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data if session.authenticated else None
        with self._lock:
            self.received.append(
                ReceivedMail(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    message=message,
                    raw=raw,
                    authenticated_as=login if isinstance(login, str) else None,
                    tls=session.ssl is not None,
                )
            )


def _self_signed_context(host: str) -> tuple[ssl.SSLContext, str]:
    """A server TLS context with a fresh self-signed certificate for `host` (an IP), and
    the path of its PEM, which the client is given as its CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-smtp")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = Path(tempfile.mkdtemp(prefix="fake-smtp-"))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)


class _Handler:
    """aiosmtpd handler hooks; the decisions live in FakeSmtpServer."""

    def __init__(self, server: FakeSmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self,
        server: Any,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        answer = self.server._rcpt_answer(address)
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.server._accept(envelope, session)
        return "250 Message accepted for delivery"
