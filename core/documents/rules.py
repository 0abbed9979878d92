"""Rules that hold whatever the doctype files say.

The doctype loader refuses files that break these rules, but a doctype object can still
be built in code (a plugin, a test, a later loader change). The document service checks
them again on every create, finalize and send, so a misconfigured doctype can never make
a sensitive form or send sensitive content through a channel that may not carry it.
"""

from __future__ import annotations

from typing import Any

from core.errors import BadInput


def is_sensitive(doctype: Any) -> bool:
    """Sensitive when the doctype says so or any of its fields is marked sensitive: one
    sensitive field makes the whole letter sensitive."""
    return bool(doctype.sensitive) or any(f.sensitive for f in doctype.fields)


def check_doctype_rules(doctype: Any) -> None:
    """Refuse a doctype object that breaks a rule of the domain (DOMAIN.md)."""
    if doctype.form and is_sensitive(doctype):
        sensitive = [f.name for f in doctype.fields if f.sensitive]
        what = f" (sensitive felt: {', '.join(sensitive)})" if sensitive else ""
        raise BadInput(
            f"Dokumenttypen {doctype.key!r} er et skjema og kan ikke inneholde sensitive "
            f"opplysninger{what}.",
            field="doctype",
        )
