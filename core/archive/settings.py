"""Archive settings from TAVLE_ARCHIVE_* environment variables, and the batch schedule.

- TAVLE_ARCHIVE_SCHEDULE: cron expressions separated by ";" (default
  "0 15 * * *;0 2 * * *": 15:00 and 02:00), in TAVLE_ARCHIVE_TIMEZONE (Europe/Oslo).
- TAVLE_ARCHIVE_CHUNK: entries handed to the archive plugin per hook call (50).
- TAVLE_ARCHIVE_MAX_UNREACHABLE: consecutive "archive unreachable" results (refused,
  timeout) after which a batch stops and leaves the rest queued for the next one (5).
- TAVLE_ARCHIVE_FOLDER_BASIS: legal basis of the folders' access code EL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

DEFAULT_SCHEDULE = ("0 15 * * *", "0 2 * * *")
DEFAULT_FOLDER_BASIS = "Offl. § 13 jf. fvl. § 13 første ledd nr. 1"


class ScheduleError(ValueError):
    """A cron expression in TAVLE_ARCHIVE_SCHEDULE is not valid."""


@dataclass(frozen=True)
class ArchiveSettings:
    schedule: tuple[str, ...] = DEFAULT_SCHEDULE
    timezone: str = "Europe/Oslo"
    chunk_size: int = 50
    max_unreachable: int = 5
    folder_restriction_basis: str = DEFAULT_FOLDER_BASIS

    def __post_init__(self) -> None:
        if not self.schedule:
            raise ScheduleError("arkivplanen må ha minst ett cron-uttrykk")
        for expression in self.schedule:
            if not croniter.is_valid(expression):
                raise ScheduleError(f"ugyldig cron-uttrykk for arkivering: {expression!r}")
        ZoneInfo(self.timezone)
        if self.chunk_size < 1 or self.max_unreachable < 1:
            raise ValueError("TAVLE_ARCHIVE_CHUNK and TAVLE_ARCHIVE_MAX_UNREACHABLE must be > 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ArchiveSettings:
        env = os.environ if environ is None else environ
        raw = env.get("TAVLE_ARCHIVE_SCHEDULE")
        schedule = (
            tuple(part.strip() for part in raw.split(";") if part.strip())
            if raw
            else DEFAULT_SCHEDULE
        )
        return cls(
            schedule=schedule,
            timezone=env.get("TAVLE_ARCHIVE_TIMEZONE", "Europe/Oslo"),
            chunk_size=int(env.get("TAVLE_ARCHIVE_CHUNK", "50")),
            max_unreachable=int(env.get("TAVLE_ARCHIVE_MAX_UNREACHABLE", "5")),
            folder_restriction_basis=env.get("TAVLE_ARCHIVE_FOLDER_BASIS", DEFAULT_FOLDER_BASIS),
        )

    def next_run(self, after: datetime) -> datetime:
        """The first scheduled batch strictly after `after` (aware), as an aware datetime.
        Cron is read in local time, so 15:00 stays 15:00 across daylight saving changes."""
        if after.tzinfo is None:
            raise ValueError("naive datetime")
        local = after.astimezone(ZoneInfo(self.timezone))
        return min(croniter(expr, local).get_next(datetime) for expr in self.schedule)
