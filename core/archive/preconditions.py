"""The conditions an optional archiving waits for (seed 000, Vedlegg 2), checked against
the document's field values when someone ticks "send to archive".

A doctype names its preconditions (`archive_preconditions`); each is read from fields the
doctype declares, by these conventions:

- whole_school_year: a field `periode` whose value is "Hele skoleåret" (or "Hele året"),
  or date fields `fra_dato` and `til_dato` covering the document's school year.
- all_assessments_closed: a boolean `alle_avsluttet` (or `alle_vurderinger_avsluttet`)
  that is true, or a field `vurderingsstatus` / `status` whose value is "Avsluttet".
- grades_checked: a boolean `karakterer_kontrollert` or `kontrollert` that is true.
- conduct_mark_lowered: a boolean `nedsatt_karakter` (or `karakter_nedsatt`,
  `orden_nedsatt`, `atferd_nedsatt`) that is true, or a mark field (`karakter_orden`,
  `karakter_atferd`, `orden`, `atferd`) set to "Nokså god" or "Lite god".

A doctype naming a precondition without any of its fields can never be archived; the
answer says which field is missing, so the municipality can fix the doctype.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from core.doctypes import ARCHIVE_PRECONDITIONS

WHOLE_YEAR_VALUES = {"hele skoleåret", "hele året", "hele skolearet"}
LOWERED_MARK_FIELDS = ("karakter_orden", "karakter_atferd", "orden", "atferd")
LOWERED_MARKS = {"nokså god", "lite god"}


def _declared(doctype: Any) -> set[str]:
    return {f.name for f in doctype.fields}


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in {"ja", "true"})


def _date(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except (TypeError, ValueError):
        return None


def _check(
    name: str,
    declared: set[str],
    fields: Mapping[str, Any],
    year: tuple[dt.date, dt.date] | None,
) -> str | None:
    """None when the precondition holds, else the reason (Norwegian)."""
    what = ARCHIVE_PRECONDITIONS.get(name, name)
    if name == "whole_school_year":
        if "periode" in declared:
            value = str(fields.get("periode") or "").strip().lower()
            return None if value in WHOLE_YEAR_VALUES else f"Kan ikke arkiveres ennå: {what}."
        if {"fra_dato", "til_dato"} <= declared and year is not None:
            start, end = _date(fields.get("fra_dato")), _date(fields.get("til_dato"))
            if start and end and start <= year[0] and end >= year[1]:
                return None
            return f"Kan ikke arkiveres ennå: {what}."
        return "Dokumenttypen mangler feltet «periode» som forutsetningen krever."
    candidates: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
        # precondition: (boolean fields, status fields whose value must be "avsluttet")
        "all_assessments_closed": (
            ("alle_avsluttet", "alle_vurderinger_avsluttet"),
            ("vurderingsstatus", "status"),
        ),
        "grades_checked": (("karakterer_kontrollert", "kontrollert"), ()),
        "conduct_mark_lowered": (
            ("nedsatt_karakter", "karakter_nedsatt", "orden_nedsatt", "atferd_nedsatt"),
            (),
        ),
    }
    if name not in candidates:
        return f"Ukjent forutsetning for arkivering: {name}."
    flags, statuses = candidates[name]
    present_flags = [f for f in flags if f in declared]
    present_statuses = [f for f in statuses if f in declared]
    marks = (
        [f for f in LOWERED_MARK_FIELDS if f in declared] if name == "conduct_mark_lowered" else []
    )
    if any(str(fields.get(f) or "").strip().lower() in LOWERED_MARKS for f in marks):
        return None
    if not present_flags and not present_statuses and not marks:
        needed = ", ".join(f"«{f}»" for f in flags + statuses)
        return f"Dokumenttypen mangler et felt som forutsetningen krever ({needed})."
    if any(_true(fields.get(f)) for f in present_flags):
        return None
    if any(str(fields.get(f) or "").strip().lower() == "avsluttet" for f in present_statuses):
        return None
    return f"Kan ikke arkiveres ennå: {what}."


def unmet_preconditions(
    doctype: Any, fields: Mapping[str, Any], school_year: tuple[dt.date, dt.date] | None
) -> list[str]:
    """The reasons the document may not be archived yet; empty when every precondition
    of the doctype holds."""
    declared = _declared(doctype)
    reasons = []
    for name in doctype.archive_preconditions:
        reason = _check(name, declared, fields or {}, school_year)
        if reason:
            reasons.append(reason)
    return reasons
