"""SMTP submission for the "email" channel, and the translation of SMTP failures into the
two kinds the worker understands.

Configuration is read from the environment on every call (`SmtpConfig.from_env`), so a
changed setting takes effect without a restart and tests can set it per test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from core.channels import PermanentDeliveryError, TemporaryDeliveryError

DEFAULT_FROM = "Tavle <noreply@tavle.invalid>"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "ja", "on"}


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    starttls: bool
    username: str | None
    password: str | None
    from_address: str
    timeout: float
    # PEM file of the CA that signed the SMTP server's certificate, for a municipality's
    # internal relay with its own CA; None trusts the system's CAs.
    ca_file: str | None = None

    @classmethod
    def from_env(cls) -> SmtpConfig:
        env = os.environ
        return cls(
            host=env.get("TAVLE_SMTP_HOST") or "127.0.0.1",
            port=int(env.get("TAVLE_SMTP_PORT") or 25),
            starttls=_flag(env.get("TAVLE_SMTP_STARTTLS")),
            username=env.get("TAVLE_SMTP_USERNAME") or None,
            password=env.get("TAVLE_SMTP_PASSWORD") or None,
            from_address=env.get("TAVLE_SMTP_FROM") or DEFAULT_FROM,
            timeout=float(env.get("TAVLE_SMTP_TIMEOUT") or 10),
            ca_file=env.get("TAVLE_SMTP_CA_FILE") or None,
        )


async def submit(config: SmtpConfig, message: EmailMessage) -> None:
    """Hand `message` to the SMTP server, or raise Temporary/PermanentDeliveryError.

    Only what concerns this one message is permanent: the recipient refused (5xx at RCPT)
    or the content refused (5xx after DATA). A 5xx for our login or sender address is a
    configuration fault that would fail every message alike, so those wait for the
    operator (temporary) instead of discarding the queue.
    """
    try:
        await aiosmtplib.send(
            message,
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password if config.username else None,
            # Explicit False: never upgrade opportunistically to a certificate we did
            # not ask to validate; True requires STARTTLS and fails without it.
            start_tls=config.starttls,
            # Certificates are always validated: a relay that cannot prove who it is
            # must not receive guardians' mail (and the SMTP password).
            validate_certs=True,
            cert_bundle=config.ca_file,
            timeout=config.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as error:
        refused = error.recipients
        codes = [r.code for r in refused]
        detail = {"smtp_codes": codes, "smtp_messages": [r.message for r in refused]}
        if refused and all(400 <= code < 500 for code in codes):
            raise TemporaryDeliveryError(
                f"E-postserveren avviste mottakeren midlertidig ({codes[0]}); prøver igjen.",
                detail=detail,
            ) from error
        raise PermanentDeliveryError(
            f"E-postserveren avviste mottakeren ({codes[0] if codes else '?'}).",
            detail=detail,
        ) from error
    except aiosmtplib.SMTPRecipientRefused as error:
        detail = {"smtp_codes": [error.code], "smtp_messages": [error.message]}
        if 400 <= error.code < 500:
            raise TemporaryDeliveryError(
                f"E-postserveren avviste mottakeren midlertidig ({error.code}); prøver igjen.",
                detail=detail,
            ) from error
        raise PermanentDeliveryError(
            f"E-postserveren avviste mottakeren ({error.code}).", detail=detail
        ) from error
    except aiosmtplib.SMTPDataError as error:
        detail = {"smtp_codes": [error.code], "smtp_messages": [error.message]}
        if error.code >= 500:
            raise PermanentDeliveryError(
                f"E-postserveren avviste meldingen ({error.code}).", detail=detail
            ) from error
        raise TemporaryDeliveryError(
            f"E-postserveren avviste meldingen midlertidig ({error.code}); prøver igjen.",
            detail=detail,
        ) from error
    except aiosmtplib.SMTPResponseException as error:
        # Sender refused, login refused, HELO refused, or a 4xx anywhere.
        raise TemporaryDeliveryError(
            f"E-postserveren svarte {error.code}; prøver igjen senere.",
            detail={"smtp_codes": [error.code], "smtp_messages": [error.message]},
        ) from error
    except aiosmtplib.SMTPTimeoutError as error:
        raise TemporaryDeliveryError(
            "E-postserveren svarte ikke i tide; prøver igjen senere.",
            detail={"error": repr(error)},
        ) from error
    except (aiosmtplib.SMTPException, OSError) as error:
        # Connection refused or dropped, DNS failure, STARTTLS not offered, TLS failure.
        raise TemporaryDeliveryError(
            "Fikk ikke kontakt med e-postserveren; prøver igjen senere.",
            detail={"error": repr(error)},
        ) from error
