"""Rendering: the doctype's jinja2 template to HTML, then WeasyPrint to PDF/A-2b.

PDF/A-2b is the archival profile the Noark 5 archive accepts; WeasyPrint embeds the fonts
and writes the XMP metadata that declares it.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PDF_VARIANT = "pdf/a-2b"


@dataclass(frozen=True)
class RenderedDocument:
    html: str
    pdf: bytes
    sha256: str


def render_pdf(html: str, *, title: str) -> bytes:
    """HTML to PDF/A-2b. CPU-bound: call through `render_pdf_async` from async code."""
    from weasyprint import HTML

    return HTML(string=html, base_url=None).write_pdf(pdf_variant=PDF_VARIANT)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def render_document(doctype: Any, context: dict[str, Any]) -> RenderedDocument:
    """Template, then PDF in a worker thread so the event loop keeps serving requests."""
    from core.doctypes import render_html

    html = render_html(doctype, context)
    pdf = await asyncio.to_thread(render_pdf, html, title=context["document"]["title"])
    return RenderedDocument(html=html, pdf=pdf, sha256=sha256(pdf))


def letter_context(
    *,
    title: str,
    created_at: datetime,
    fields: dict[str, Any],
    student: dict[str, Any],
    school_name: str,
    municipality_name: str,
    author_name: str,
    signer_name: str | None,
    signed_at: datetime | None,
    restriction_basis: str | None,
    doctype: Any,
) -> dict[str, Any]:
    """The variables every template gets (see doctypes/_base.html.j2)."""
    all_fields = {f.name: None for f in doctype.fields}
    all_fields.update(fields)
    return {
        "document": {"title": title, "created_at": created_at},
        "fields": all_fields,
        "student": student,
        "school": {"name": school_name},
        "municipality": {"name": municipality_name},
        "author": {"name": author_name},
        "signer": {"name": signer_name, "signed_at": signed_at} if signer_name else None,
        "restriction_basis": restriction_basis,
    }
