"""Field values checked against a doctype: types, required fields, choices."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any

from core.errors import BadInput

MAX_TEXT = 2_000
MAX_MULTILINE = 20_000
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _value(field: Any, raw: Any) -> Any:
    name, kind = field.name, field.type
    where = f"fields.{name}"
    if kind in ("text", "multiline", "email"):
        if not isinstance(raw, str):
            raise BadInput(f"Feltet {name!r} må være tekst.", field=where)
        text = raw.strip()
        limit = MAX_MULTILINE if kind == "multiline" else MAX_TEXT
        if len(text) > limit:
            raise BadInput(f"Feltet {name!r} kan være høyst {limit} tegn.", field=where)
        if kind == "email" and text and not EMAIL.match(text):
            raise BadInput(f"Feltet {name!r} må være en e-postadresse.", field=where)
        return text
    if kind == "number":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise BadInput(f"Feltet {name!r} må være et tall.", field=where)
        return raw
    if kind == "boolean":
        if not isinstance(raw, bool):
            raise BadInput(f"Feltet {name!r} må være true eller false.", field=where)
        return raw
    if kind == "choice":
        if raw not in field.options:
            raise BadInput(
                f"Feltet {name!r} må være ett av: {', '.join(map(str, field.options))}.",
                field=where,
            )
        return raw
    parsers = {
        "date": date.fromisoformat,
        "time": time.fromisoformat,
        "datetime": datetime.fromisoformat,
    }
    if kind in parsers:
        if not isinstance(raw, str):
            raise BadInput(f"Feltet {name!r} må være en ISO-dato/tid.", field=where)
        try:
            return parsers[kind](raw).isoformat()
        except ValueError:
            raise BadInput(f"Feltet {name!r} har ugyldig {kind}: {raw!r}.", field=where) from None
    raise BadInput(f"Feltet {name!r} har en ukjent type {kind!r}.", field=where)


def clean_fields(doctype: Any, values: Any, *, require_all: bool) -> dict[str, Any]:
    """Validated, normalised values. Unknown fields are errors; with `require_all` every
    required field must have a value (create and update ask for it, and finalize checks
    again in case the doctype gained a required field since)."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise BadInput("`fields` må være et JSON-objekt.", field="fields")
    known = {f.name: f for f in doctype.fields}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise BadInput(
            f"Ukjente felt for {doctype.key}: {', '.join(unknown)}.", field=f"fields.{unknown[0]}"
        )
    cleaned: dict[str, Any] = {}
    for name, field in known.items():
        raw = values.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if require_all and field.required:
                raise BadInput(
                    f"Feltet {field.label or name!r} må fylles ut.", field=f"fields.{name}"
                )
            continue
        cleaned[name] = _value(field, raw)
    return cleaned
