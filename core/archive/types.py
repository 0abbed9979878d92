"""What an archive plugin is given and gives back (`archive_entries` hook): one
`ArchiveItem` per queued entry with everything the registry entry needs, and one
`ArchiveResult` per item. Plain dataclasses, so a plugin needs nothing from the database
layer."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class Party:
    """A sender or recipient of the registry entry (korrespondansepart)."""

    role: str  # "sender" or "recipient"
    name: str
    person_id: str | None = None  # national identity number, only for restricted entries
    organisation_number: str | None = None
    street_address: str | None = None
    postal_code: str | None = None
    postal_town: str | None = None
    case_handler: str | None = None  # initials, for our own side


@dataclass(frozen=True)
class FolderRef:
    """The archive case (saksmappe) the entry is filed in.

    `external_key` identifies the folder from our side; when `case_year` and
    `case_sequence` are known (mapped by the administrator or created earlier) the
    plugin files into that case, otherwise it creates the case (or finds the one it
    created before by `external_key`)."""

    id: int
    kind: str  # "student" or "school"
    title: str
    external_key: str
    case_year: int | None
    case_sequence: int | None
    case_owner: str | None
    # Mapped by the administrator to a case made in the archive by hand: the archive does
    # not know our key for it, only its case year and sequence number.
    mapped: bool = False
    archive_part: str = "SAK"
    access_code: str = "EL"
    classes: tuple[str, ...] = ("B34", "B31")
    # The student of a student folder (name and national id number), for the case party.
    student_name: str | None = None
    student_national_id: str | None = None


@dataclass(frozen=True)
class ArchiveItem:
    """One queued archive entry, ready to be registered."""

    entry_id: int
    external_key: str  # stable for the entry: a resend finds the earlier registration
    document_id: int
    doctype: str
    doctype_title: str
    title: str
    public_title: str
    document_date: date
    created_at: datetime
    sent_at: datetime | None
    registry_status: str  # J, R, F, E, A
    restricted: bool
    restriction_basis: str | None
    case_owner: str | None
    school_name: str
    organisation_number: str | None
    municipality_name: str
    folder: FolderRef
    parties: tuple[Party, ...]
    filename: str
    pdf: bytes
    pdf_sha256: str
    author: str | None = None
    attempt: int = 1


class ResultKind(enum.StrEnum):
    ARCHIVED = "archived"
    # Worth trying again at the next batch: connection refused, timeout, HTTP 5xx.
    TRANSIENT = "transient"
    # Will never succeed as sent: validation rejected; a person has to fix the cause.
    PERMANENT = "permanent"


@dataclass(frozen=True)
class ArchiveResult:
    """What became of one item. `receipt` is the archive's answer as text (the
    kvittering XML, or its error message) and is kept on the entry."""

    kind: ResultKind
    receipt: str | None = None
    error: str | None = None
    registry_year: int | None = None
    registry_sequence: int | None = None
    case_year: int | None = None
    case_sequence: int | None = None
    # True when the archive already had the registration (a resend after an unclear end).
    existing: bool = False
    # True when the archive could not be reached at all (refused, timeout): the batch
    # stops early, the remaining entries wait for the next batch.
    unreachable: bool = False
    # Free-form; "not_tried" set means the item was not sent at all (attempts unchanged).
    detail: dict[str, str] = field(default_factory=dict)
