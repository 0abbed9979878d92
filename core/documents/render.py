"""Rendering: the doctype's jinja2 template to HTML, then WeasyPrint to PDF/A-2b.

PDF/A-2b is the archival profile the Noark 5 archive accepts; WeasyPrint embeds the fonts
and writes the XMP metadata that declares it.

Fonts: PDF/A needs every font embedded, and WeasyPrint subsets each font it embeds with
fontTools for every document. For the full DejaVu fonts (6 000 glyphs and large OpenType
layout tables) that subsetting was about 75 % of the time per letter. So the letters use
"Tavle Sans" / "Tavle Serif": DejaVu cut down once per process to the scripts Norwegian
letters need (Latin, including the Sami and Vietnamese letters found in names, and common
punctuation and symbols), handed to WeasyPrint as @font-face rules. A character outside
that set still prints: the templates list "DejaVu Sans" and the generic family after it,
so Pango falls back to the installed fonts for that character.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import io
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

PDF_VARIANT = "pdf/a-2b"

log = logging.getLogger(__name__)

# Where Debian/Ubuntu (fonts-dejavu-core) and most distributions put DejaVu.
FONT_DIRS: tuple[Path, ...] = (
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".local/share/fonts",
)
# (family, weight, style) -> DejaVu file the face is cut from.
FONT_FACES: dict[tuple[str, int, str], str] = {
    ("Tavle Sans", 400, "normal"): "DejaVuSans.ttf",
    ("Tavle Sans", 700, "normal"): "DejaVuSans-Bold.ttf",
    ("Tavle Sans", 400, "italic"): "DejaVuSans-Oblique.ttf",
    ("Tavle Sans", 700, "italic"): "DejaVuSans-BoldOblique.ttf",
    ("Tavle Serif", 400, "normal"): "DejaVuSerif.ttf",
    ("Tavle Serif", 700, "normal"): "DejaVuSerif-Bold.ttf",
}
# Code points kept in the cut-down fonts. Every extra glyph costs time in each document
# (WeasyPrint subsets the embedded font per PDF), so this is Norwegian and Sami text plus
# the symbols the templates use; rarer letters fall back to the full installed fonts.
FONT_UNICODES: tuple[range, ...] = (
    range(0x0020, 0x007F),  # ASCII
    range(0x00A0, 0x0180),  # Latin-1 and Latin Extended-A (æ ø å; Sami č đ ŋ š ŧ ž)
    range(0x2010, 0x2027),  # dashes, quotes, bullet, ellipsis
    range(0x2030, 0x203B),  # per mille, angle quotes
    range(0x20AC, 0x20AD),  # euro
    range(0x2116, 0x2117),  # numero
    range(0x2122, 0x2123),  # trade mark
    range(0x2190, 0x2194),  # arrows
    range(0x2212, 0x2213),  # minus sign
    range(0x2610, 0x2613),  # ballot boxes ☐ ☑ ☒ (forms, consents)
    range(0x2713, 0x2715),  # check marks
    range(0xFFFD, 0xFFFE),  # replacement character
)


@dataclass(frozen=True)
class RenderedDocument:
    html: str
    pdf: bytes
    sha256: str


def _find_font(name: str) -> Path | None:
    for directory in FONT_DIRS:
        if directory.is_dir():
            for path in directory.rglob(name):
                return path
    return None


def _subset_font(path: Path) -> bytes:
    from fontTools import subset
    from fontTools.ttLib import TTFont

    options = subset.Options()
    # No OpenType layout tables: WeasyPrint drops GSUB/GPOS when embedding anyway, and
    # reading DejaVu's large ones per document is what made rendering slow. Latin text
    # needs no shaping; the cost is DejaVu's (slight) kerning.
    options.layout_features = []
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "kern", "FFTM"]
    options.hinting = False
    options.name_IDs = ["*"]
    options.notdef_outline = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[cp for block in FONT_UNICODES for cp in block])
    font = TTFont(str(path), lazy=True)
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


@cache
def font_face_css() -> str:
    """@font-face rules for the cut-down letter fonts (data: URLs, nothing written to
    disk); "" when DejaVu is not installed, and the templates' fallback fonts apply."""
    rules = []
    for (family, weight, style), name in FONT_FACES.items():
        path = _find_font(name)
        if path is None:
            log.warning("Font %s not found in %s; letters use fallback fonts", name, FONT_DIRS)
            continue
        try:
            data = base64.b64encode(_subset_font(path)).decode("ascii")
        except Exception:  # a damaged font file must not stop rendering; fall back instead
            log.exception("Could not cut down the font %s; letters use fallback fonts", path)
            continue
        rules.append(
            f'@font-face {{ font-family: "{family}"; font-weight: {weight}; '
            f'font-style: {style}; src: url("data:font/ttf;base64,{data}"); }}'
        )
    return "\n".join(rules)


class _NoSubsetterWarning(logging.Filter):
    """Drop WeasyPrint's per-font, per-document warning that it subsets with fontTools
    because libharfbuzz-subset is not installed: expected here (the fonts are cut down
    for exactly that reason) and otherwise three log lines for every letter."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "instead of HarfBuzz-Subset" not in record.getMessage()


logging.getLogger("weasyprint").addFilter(_NoSubsetterWarning())

_per_thread = threading.local()


def _fonts() -> tuple[Any, list[Any]]:
    """This thread's FontConfiguration and font stylesheet. WeasyPrint loads @font-face
    fonts when the stylesheet is built, so reusing them skips that per document; they are
    kept per thread because Pango/fontconfig objects are not shared across threads."""
    cached = getattr(_per_thread, "fonts", None)
    if cached is None:
        from weasyprint import CSS
        from weasyprint.text.fonts import FontConfiguration

        config = FontConfiguration()
        css = font_face_css()
        cached = (config, [CSS(string=css, font_config=config)] if css else [])
        _per_thread.fonts = cached
    return cached


def render_pdf(html: str) -> bytes:
    """HTML to PDF/A-2b (the title comes from the HTML's <title>). CPU-bound: async code
    goes through `render_document`, which runs it in the renderer process."""
    from weasyprint import HTML

    font_config, stylesheets = _fonts()
    return HTML(string=html, base_url=None).write_pdf(
        pdf_variant=PDF_VARIANT, stylesheets=stylesheets, font_config=font_config
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the renderer process ------------------------------------------------------------------
# PDFs are made in a process of their own. WeasyPrint is pure Python: in a thread of the
# server it held the GIL for most of a letter's ~100 ms, so every other request waited
# for it, and the server's own work between letters (and its collector, walking the
# server's heap in the middle of a layout) made each letter ~5-15 % slower than the same
# letter rendered alone (bench/documents.py). The renderer process does nothing else: it
# keeps WeasyPrint, the fonts and its caches warm, and the server stays responsive. One
# process: letters are rendered one at a time, as before, in the order asked.

# A letter's worth of text in the letter fonts, for the warm-up.
_WARM_UP_HTML = (
    "<html><head><title>Tavle</title></head><body>"
    "<h1>Tavle</h1><p><b>Æ Ø Å</b> <i>æ ø å</i> – «dokument» 1 2 3</p></body></html>"
)

_renderer_lock = threading.Lock()
_renderer_pool: ProcessPoolExecutor | None = None


def start_renderer() -> None:
    """In a renderer process, once: WeasyPrint's imports, the cut-down fonts and a first
    layout (~2 s), then that heap frozen out of the collector's reach, so the collections
    during a letter walk only the letter. The process ends when the server's does, even
    when the server was killed and could not stop it."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_with, args=(parent.sentinel,), name="tavle-renderer-parent", daemon=True
        ).start()
    render_pdf(_WARM_UP_HTML)
    gc.collect()
    gc.freeze()


def _exit_with(parent_sentinel: int) -> None:
    """In a renderer process: wait until the server's process has ended, then end too."""
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(0)


def render_timed(html: str) -> tuple[bytes, float]:
    """In the renderer process: the PDF of `html` and the seconds WeasyPrint took."""
    started = time.perf_counter()
    pdf = render_pdf(html)
    return pdf, time.perf_counter() - started


def renderer_is_warm() -> bool:
    """In the renderer process: whether the fonts are loaded and the heap frozen."""
    return getattr(_per_thread, "fonts", None) is not None and gc.get_freeze_count() > 0


def _renderer() -> ProcessPoolExecutor:
    global _renderer_pool
    with _renderer_lock:
        if _renderer_pool is None:
            # spawn, not fork: the server has threads (aiosqlite's, the event loop's
            # executors), and a forked child would inherit their locks mid-use.
            _renderer_pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_renderer,
            )
        return _renderer_pool


def stop_renderer() -> None:
    """Stop the renderer process (a new one starts on the next letter)."""
    global _renderer_pool
    with _renderer_lock:
        pool, _renderer_pool = _renderer_pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


async def in_renderer(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` in the renderer process. A renderer that died (killed, out of
    memory) is replaced once and the call made again; a letter's own error (a template
    WeasyPrint cannot lay out) is raised as it is."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_renderer(), function, *args)
    except BrokenProcessPool:
        log.warning("The PDF renderer process stopped; starting a new one")
        stop_renderer()
        return await loop.run_in_executor(_renderer(), function, *args)


@dataclass
class RenderStatistics:
    """Letters rendered by this server process, and WeasyPrint's time for them (measured
    in the renderer process, so without the hand-over)."""

    documents: int = 0
    seconds: float = 0.0


render_statistics = RenderStatistics()


async def render_document(doctype: Any, context: dict[str, Any]) -> RenderedDocument:
    """Template, then PDF in the renderer process; the event loop keeps serving."""
    from core.doctypes import render_html

    html = render_html(doctype, context)
    pdf, seconds = await in_renderer(render_timed, html)
    render_statistics.documents += 1
    render_statistics.seconds += seconds
    return RenderedDocument(html=html, pdf=pdf, sha256=sha256(pdf))


async def warm_up() -> None:
    """Start the renderer process and wait until it is warm (see `start_renderer`), so
    that the first user's letter does not pay for it."""
    if not await in_renderer(renderer_is_warm):
        raise RuntimeError("the PDF renderer did not warm up")


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
