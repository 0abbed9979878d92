"""Opaque global IDs: base64url of "<Type>:<primary key>"."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from core.schema.errors import bad_input

MAX_ID_LENGTH = 100
MAX_PK = 2**31 - 1


# A page of students encodes ~400 IDs, mostly the same ones request after request (the
# same class, the same guardians): remembered, an ID costs a dict lookup instead of a
# base64 round trip. Bounded: ~5 MB at most.
@lru_cache(maxsize=32_768, typed=True)
def encode(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def decode(global_id: str, expected: str | tuple[str, ...] | None = None) -> tuple[str, int]:
    """Split a global ID; raise BAD_USER_INPUT when it is malformed or of another type."""
    invalid = bad_input(f"Ugyldig ID: {global_id[:MAX_ID_LENGTH]!r}.")
    if not isinstance(global_id, str) or not 0 < len(global_id) <= MAX_ID_LENGTH:
        raise invalid
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        # validate=True: characters outside the alphabet are an error, not skipped.
        raw = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
        type_name, separator, raw_pk = raw.decode("utf-8").partition(":")
    except (binascii.Error, UnicodeError, ValueError):
        raise invalid from None
    if not separator or not type_name or not raw_pk.isascii() or not raw_pk.isdigit():
        raise invalid
    if raw_pk.startswith("0"):
        # One record, one ID: "Student:075" is not another name for Student:75.
        raise invalid
    pk = int(raw_pk)
    # Primary keys are 32-bit on PostgreSQL: a larger number names no row.
    if not 0 < pk <= MAX_PK:
        raise invalid
    allowed = (expected,) if isinstance(expected, str) else expected
    if allowed and type_name not in allowed:
        raise bad_input(f"ID-en {global_id!r} er ikke en {' eller '.join(allowed)}.")
    return type_name, pk


def decode_pk(global_id: str, expected: str | tuple[str, ...]) -> int:
    return decode(global_id, expected)[1]
