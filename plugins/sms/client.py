"""HTTP client for the SMS gateway protocol described in plugins/sms/README.md.

Configuration is read from the environment on every call (`GatewayConfig.from_env`), so a
changed setting takes effect without a restart and tests can set it per test.

Failures are translated here, once, into the two kinds the worker understands: anything
that may succeed later (no connection, timeout, 5xx, 408, 429, an answer we cannot read)
is a `TemporaryDeliveryError`; any other 4xx is a `PermanentDeliveryError`. Retrying is
safe because the gateway treats a repeated `reference` as the same message.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx

from core.channels import PermanentDeliveryError, TemporaryDeliveryError

DEFAULT_SENDER = "Tavle"
DEFAULT_TIMEOUT = 10.0

# 4xx answers that say "not now" rather than "never".
RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class GatewayConfig:
    base_url: str | None
    username: str | None
    password: str | None
    sender: str
    callback_url: str | None
    callback_token: str | None
    timeout: float

    @classmethod
    def from_env(cls) -> GatewayConfig:
        env = os.environ
        return cls(
            base_url=env.get("TAVLE_SMS_BASE_URL") or None,
            username=env.get("TAVLE_SMS_USERNAME") or None,
            password=env.get("TAVLE_SMS_PASSWORD") or None,
            sender=env.get("TAVLE_SMS_SENDER") or DEFAULT_SENDER,
            callback_url=env.get("TAVLE_SMS_CALLBACK_URL") or None,
            callback_token=env.get("TAVLE_SMS_CALLBACK_TOKEN") or None,
            timeout=float(env.get("TAVLE_SMS_TIMEOUT") or DEFAULT_TIMEOUT),
        )

    def callback_url_with_token(self) -> str | None:
        """The callback URL given to the gateway, carrying `?token=` so our callback route
        can tell the gateway's reports from forgeries. The token is added here unless the
        configured URL already has one, so operators set URL and token independently."""
        if not self.callback_url:
            return None
        if not self.callback_token:
            return self.callback_url
        parts = urlsplit(self.callback_url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if any(key == "token" for key, _ in query):
            return self.callback_url
        query.append(("token", self.callback_token))
        return urlunsplit(parts._replace(query=urlencode(query)))


# One client, with its connection pool, per event loop and configuration. Building a
# client loads the CA bundle (tens of milliseconds) and a fresh client opens a fresh
# connection (a TLS handshake to a real gateway) for every SMS; an emergency SMS to one
# school is thousands of them. Weak keys: a closed loop's clients go with it.
_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[GatewayConfig, httpx.AsyncClient]
] = weakref.WeakKeyDictionary()
POOL_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=20)


def _client(config: GatewayConfig) -> httpx.AsyncClient:
    if not config.base_url:
        # A missing setting is fixable by the operator: keep the message queued.
        raise TemporaryDeliveryError("SMS-gatewayen er ikke konfigurert (TAVLE_SMS_BASE_URL).")
    clients = _CLIENTS.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(config)
    if client is None or client.is_closed:
        auth = None
        if config.username is not None:
            auth = httpx.BasicAuth(config.username, config.password or "")
        client = httpx.AsyncClient(
            base_url=config.base_url, auth=auth, timeout=config.timeout, limits=POOL_LIMITS
        )
        clients[config] = client
    return client


def _error_detail(response: httpx.Response) -> dict[str, Any]:
    detail: dict[str, Any] = {"http_status": response.status_code}
    try:
        body = response.json()
    except ValueError:
        body = response.text[:500]
    detail["response"] = body
    return detail


def _raise_for_status(response: httpx.Response, action: str) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = _error_detail(response)
    if status >= 500 or status in RETRYABLE_CLIENT_ERRORS:
        raise TemporaryDeliveryError(
            f"SMS-gatewayen svarte {status} ved {action}; prøver igjen senere.", detail=detail
        )
    raise PermanentDeliveryError(
        f"SMS-gatewayen avviste {action} ({status}).",
        detail=detail,
    )


def _json_object(response: httpx.Response, action: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        # The gateway may well have accepted the message; a retry with the same
        # reference finds it again instead of sending twice.
        raise TemporaryDeliveryError(
            f"Uventet svar fra SMS-gatewayen ved {action}.", detail=_error_detail(response)
        )
    return body


async def send_message(
    config: GatewayConfig, *, to: str, text: str, reference: str
) -> tuple[dict[str, Any], bool]:
    """POST /v1/messages. Returns the gateway's answer and whether it was a repeat of an
    earlier reference (200 instead of 201)."""
    payload: dict[str, Any] = {
        "to": to,
        "from": config.sender,
        "text": text,
        "reference": reference,
    }
    callback = config.callback_url_with_token()
    if callback:
        payload["callbackUrl"] = callback
    try:
        response = await _client(config).post("/v1/messages", json=payload)
    except httpx.TimeoutException as error:
        raise TemporaryDeliveryError(
            "SMS-gatewayen svarte ikke i tide; prøver igjen senere.",
            detail={"error": repr(error)},
        ) from error
    except httpx.TransportError as error:
        raise TemporaryDeliveryError(
            "Fikk ikke kontakt med SMS-gatewayen; prøver igjen senere.",
            detail={"error": repr(error)},
        ) from error
    _raise_for_status(response, "sending")
    return _json_object(response, "sending"), response.status_code == 200


async def get_message(config: GatewayConfig, message_id: str) -> dict[str, Any] | None:
    """GET /v1/messages/{id}. None when the gateway does not know the id (404)."""
    try:
        response = await _client(config).get(f"/v1/messages/{quote(message_id, safe='')}")
    except httpx.TransportError as error:  # includes timeouts
        raise TemporaryDeliveryError(
            "Fikk ikke kontakt med SMS-gatewayen.", detail={"error": repr(error)}
        ) from error
    if response.status_code == 404:
        return None
    _raise_for_status(response, "statusspørring")
    return _json_object(response, "statusspørring")
