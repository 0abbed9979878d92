"""Opaque global IDs: base64url of "<Type>:<primary key>"."""

from __future__ import annotations

import base64
import binascii

from core.schema.errors import bad_input


def encode(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def decode(global_id: str, expected: str | tuple[str, ...] | None = None) -> tuple[str, int]:
    """Split a global ID; raise BAD_USER_INPUT when it is malformed or of another type."""
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, _, raw_pk = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        pk = int(raw_pk)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_input(f"Ugyldig ID: {global_id!r}.") from None
    if pk <= 0 or not type_name:
        raise bad_input(f"Ugyldig ID: {global_id!r}.")
    allowed = (expected,) if isinstance(expected, str) else expected
    if allowed and type_name not in allowed:
        raise bad_input(f"ID-en {global_id!r} er ikke en {' eller '.join(allowed)}.")
    return type_name, pk


def decode_pk(global_id: str, expected: str | tuple[str, ...]) -> int:
    return decode(global_id, expected)[1]
