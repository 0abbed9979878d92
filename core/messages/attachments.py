"""Attachments: checked against a short list of types (by their content, not only the
name the sender gave), limited in size and number, and stored once per content hash."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from io import BytesIO

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadInput
from core.models import AttachmentBlob, MessageAttachment
from core.models.base import utcnow

MAX_ATTACHMENTS = 5
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_TOTAL_BYTES = 20 * 1024 * 1024
MAX_FILENAME = 120

OOXML = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
}
ODF = {
    "application/vnd.oasis.opendocument.text": ".odt",
    "application/vnd.oasis.opendocument.spreadsheet": ".ods",
}
# What a school sends home: letters, week plans, pictures. No HTML, SVG or scripts,
# which a browser would run when the file is opened from Tavle's own origin.
ALLOWED_TYPES: dict[str, tuple[str, ...]] = {
    "application/pdf": (".pdf",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/png": (".png",),
    "text/plain": (".txt",),
    **{k: (v,) for k, v in OOXML.items()},
    **{k: (v,) for k, v in ODF.items()},
}

_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


@dataclass(frozen=True)
class AttachmentInput:
    filename: str
    content_type: str
    content_base64: str


@dataclass(frozen=True)
class CheckedAttachment:
    filename: str
    content_type: str
    content: bytes
    sha256: str


def safe_filename(name: str) -> str:
    """A name safe in a header and on any file system: no paths, no control characters."""
    name = unicodedata.normalize("NFC", name).strip()
    name = _UNSAFE_NAME.sub("_", name).strip(" .")
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_FILENAME - len(ext) - 1] + dot + ext) if dot else name[:MAX_FILENAME]
    return name


def _zip_members(content: bytes) -> set[str] | None:
    try:
        with zipfile.ZipFile(BytesIO(content)) as archive:
            return set(archive.namelist())
    except (zipfile.BadZipFile, ValueError):
        return None


def content_matches(content_type: str, content: bytes) -> bool:
    """Whether the bytes are what the type says (magic numbers, zip layout, UTF-8)."""
    if content_type == "application/pdf":
        return content.startswith(b"%PDF-")
    if content_type == "image/jpeg":
        return content.startswith(b"\xff\xd8\xff")
    if content_type == "image/png":
        return content.startswith(b"\x89PNG\r\n\x1a\n")
    if content_type == "text/plain":
        if b"\x00" in content:
            return False
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True
    if content_type in OOXML:
        members = _zip_members(content)
        return members is not None and "[Content_Types].xml" in members
    if content_type in ODF:
        members = _zip_members(content)
        return members is not None and "mimetype" in members
    return False


def check(attachments: list[AttachmentInput]) -> list[CheckedAttachment]:
    """Decode and check every attachment; BAD_USER_INPUT names the file that fails."""
    if len(attachments) > MAX_ATTACHMENTS:
        raise BadInput(f"Høyst {MAX_ATTACHMENTS} vedlegg per melding.", field="attachments")
    checked: list[CheckedAttachment] = []
    total = 0
    for item in attachments:
        filename = safe_filename(item.filename)
        if not filename:
            raise BadInput("Vedlegget må ha et filnavn.", field="attachments")
        content_type = item.content_type.strip().lower()
        extensions = ALLOWED_TYPES.get(content_type)
        if extensions is None:
            raise BadInput(
                f"«{filename}»: filtypen {item.content_type!r} kan ikke sendes som vedlegg "
                "(tillatt: PDF, JPEG, PNG, tekst, Word, Excel, PowerPoint, OpenDocument).",
                field="attachments",
            )
        if not filename.lower().endswith(extensions):
            raise BadInput(
                f"«{filename}»: filnavnet må slutte på {' eller '.join(extensions)}.",
                field="attachments",
            )
        # base64 is 4/3 of the size: refuse an oversized upload before decoding it.
        if len(item.content_base64) > (MAX_ATTACHMENT_BYTES * 4) // 3 + 8:
            raise BadInput(
                f"«{filename}» er større enn {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB.",
                field="attachments",
            )
        try:
            content = base64.b64decode(item.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise BadInput(
                f"«{filename}»: innholdet er ikke gyldig base64.", field="attachments"
            ) from None
        if not content:
            raise BadInput(f"«{filename}» er tom.", field="attachments")
        if len(content) > MAX_ATTACHMENT_BYTES:
            raise BadInput(
                f"«{filename}» er større enn {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB.",
                field="attachments",
            )
        total += len(content)
        if total > MAX_TOTAL_BYTES:
            raise BadInput(
                f"Vedleggene er til sammen større enn {MAX_TOTAL_BYTES // (1024 * 1024)} MB.",
                field="attachments",
            )
        if not content_matches(content_type, content):
            raise BadInput(
                f"«{filename}»: innholdet er ikke en fil av typen {content_type}.",
                field="attachments",
            )
        checked.append(
            CheckedAttachment(filename, content_type, content, hashlib.sha256(content).hexdigest())
        )
    return checked


def _insert_ignoring_duplicates(dialect: str):  # type: ignore[no-untyped-def]
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(AttachmentBlob).on_conflict_do_nothing(index_elements=["sha256"])


async def store(
    session: AsyncSession, message_id: int, attachments: list[CheckedAttachment]
) -> None:
    """Write the blobs (a blob another message already stored, even one committing right
    now, is kept as it is) and the message's attachment rows."""
    if not attachments:
        return
    blobs = {a.sha256: a.content for a in attachments}
    await session.execute(
        _insert_ignoring_duplicates(session.bind.dialect.name),
        [
            {"sha256": sha, "size": len(content), "content": content, "created_at": utcnow()}
            for sha, content in blobs.items()
        ],
    )
    session.add_all(
        MessageAttachment(
            message_id=message_id,
            filename=a.filename,
            content_type=a.content_type,
            size=len(a.content),
            sha256=a.sha256,
        )
        for a in attachments
    )
    await session.flush()
