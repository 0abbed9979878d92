"""How many SMS segments a text costs.

An SMS carries 140 octets. Texts that fit the GSM 03.38 7-bit alphabet (which has the
Norwegian letters ÆØÅæøå) are packed as septets: 160 in a single SMS, 153 per part of a
concatenated one (the user data header takes the rest). Characters from the extension
table are sent as ESC + character and so cost two septets. Any other character forces the
whole text into UCS-2: 70 UTF-16 code units alone, 67 per part; characters outside the
Basic Multilingual Plane (most emoji) are surrogate pairs and cost two.

Phones never split an escape sequence or a surrogate pair across two parts, so parts are
filled greedily rather than by dividing the total: a text can need one part more than
`ceil(units / per_part)` suggests.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# The GSM 03.38 basic character set, in code-point order 0x00-0x7F. 0x1B (ESC) is left
# out: it only introduces an extension-table character and is never text by itself.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

# The extension table: each costs ESC + the character, i.e. two septets.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

SINGLE_GSM7 = 160
PART_GSM7 = 153
SINGLE_UCS2 = 70
PART_UCS2 = 67


@dataclass(frozen=True)
class SmsEncoding:
    """The result of `count_segments`.

    `characters` counts what a person would call characters (code points); `units` what
    the network counts (septets for GSM-7, UTF-16 code units for UCS-2).
    """

    encoding: str
    segments: int
    characters: int
    units: int = 0


def is_gsm7(text: str) -> bool:
    """True if every character of `text` can be sent in the GSM 7-bit alphabet."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _unit_costs(text: str, encoding: str) -> list[int]:
    if encoding == GSM7:
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def _parts(costs: list[int], per_part: int) -> int:
    """Fill parts greedily without splitting one character's units across two parts."""
    parts, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            parts, used = parts + 1, 0
        used += cost
    return parts


def count_segments(text: str) -> SmsEncoding:
    """Encoding and number of segments of `text` (an empty text still costs one SMS)."""
    encoding = GSM7 if is_gsm7(text) else UCS2
    costs = _unit_costs(text, encoding)
    units = sum(costs)
    single, per_part = (SINGLE_GSM7, PART_GSM7) if encoding == GSM7 else (SINGLE_UCS2, PART_UCS2)
    segments = 1 if units <= single else _parts(costs, per_part)
    return SmsEncoding(encoding=encoding, segments=segments, characters=len(text), units=units)
