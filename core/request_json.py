"""Reading JSON sent by clients, strictly, in one place (GraphQL bodies and variables,
the demo-token route).

orjson refuses what Python's json module lets through and the database then chokes on:
bytes that are not UTF-8, lone UTF-16 surrogates ("\\ud800", which no database can
store), and nesting deep enough to exhaust the stack (its limit is 1024 levels). On top
of that, a NUL character is refused anywhere in the document: PostgreSQL's text type
cannot hold it, and SQLite's LIKE stops at it (a search for "\\u0000" matched everyone).
"""

from __future__ import annotations

from typing import Any

import orjson

# Attachments travel base64-encoded in the JSON body: five of them, 20 MiB in all
# (core/messages/attachments.py), are ~27 MiB of base64; nothing legitimate is larger.
MAX_REQUEST_BYTES = 32 * 1024 * 1024


class BadJson(ValueError):
    """The client's JSON cannot be taken; the message says why, in Norwegian."""

    status = 400


class TooLarge(BadJson):
    status = 413


def loads(data: str | bytes) -> Any:
    """Decode a client's JSON document, or raise BadJson."""
    if len(data) > MAX_REQUEST_BYTES:
        raise TooLarge(f"Forespørselen er for stor (høyst {MAX_REQUEST_BYTES // 2**20} MiB).")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise BadJson(f"Ugyldig JSON: {error}") from None
    if has_nul(value):
        raise BadJson("Tekst kan ikke inneholde NUL-tegnet (\\u0000).")
    return value


def has_nul(value: Any) -> bool:
    """Whether a NUL character is in any string or key of a decoded JSON value (walked
    with a stack, not recursion: the value may be 1024 levels deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return True
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return False
