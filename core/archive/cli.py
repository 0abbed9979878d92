"""`tavle archive run|status`: one archive batch now, and the queue at a glance."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from core.cli import positive_int


def _error(message: str) -> Exception:
    from core.cli import CliError

    return CliError(message)


def cmd_archive_run(args: argparse.Namespace) -> None:
    from core.archive.batch import ArchiveNotConfigured, BatchAlreadyRunning, run_batch
    from core.archive.settings import ArchiveSettings, ScheduleError
    from core.cli import _loaded_doctypes, _settings
    from core.db import create_engine, create_sessionmaker

    try:
        archive_settings = ArchiveSettings.from_env()
    except (ScheduleError, ValueError) as error:
        raise _error(f"Ugyldig arkivoppsett: {error}") from None
    doctypes, _ = _loaded_doctypes()

    async def main() -> Any:
        engine = create_engine(_settings().database_url)
        try:
            return await run_batch(
                create_sessionmaker(engine), doctypes, archive_settings, limit=args.limit
            )
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(main())
    except (ArchiveNotConfigured, BatchAlreadyRunning) as error:
        raise _error(str(error)) from None
    print(f"Arkivkjøring ferdig: {report.summary()}")
    for line in report.errors[:20]:
        print(f"  feilet: {line}")
    if report.failed or report.retry:
        print("Se arkivloggen (archiveLog) for kvitteringene.")


def cmd_archive_status(args: argparse.Namespace) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from core.archive.settings import ArchiveSettings, ScheduleError
    from core.cli import _settings
    from core.db import create_engine, create_sessionmaker
    from core.models import ArchiveEntry, School
    from core.plugins import plugin_manager

    try:
        archive_settings = ArchiveSettings.from_env()
    except (ScheduleError, ValueError) as error:
        raise _error(f"Ugyldig arkivoppsett: {error}") from None
    infos = [i for i in plugin_manager().hook.archive_info() if i]
    if not infos:
        print("Arkiv: ingen arkivutvidelse er installert.")
    for info in infos:
        print(f"Arkiv: {info.get('title', info.get('name'))} via {info.get('transport')}")

    async def main() -> list[Any]:
        engine = create_engine(_settings().database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                return list(
                    (
                        await session.execute(
                            select(School.name, ArchiveEntry.status, func.count())
                            .join(School, School.id == ArchiveEntry.school_id)
                            .group_by(School.name, ArchiveEntry.status)
                            .order_by(School.name)
                        )
                    ).all()
                )
        finally:
            await engine.dispose()

    names = {"queued": "klar", "archived": "arkivert", "failed": "feilet", "dismissed": "avskrevet"}
    for school, status, count in asyncio.run(main()):
        print(f"  {school}: {count} {names[status.value]}")
    upcoming = archive_settings.next_run(datetime.now(UTC))
    print(
        f"Neste arkivkjøring: {upcoming.strftime('%d.%m.%Y kl. %H.%M')} "
        f"({archive_settings.timezone})"
    )


def add_archive_commands(commands: Any) -> None:
    """Register `tavle archive ...` on the main parser's subcommands."""
    archive = commands.add_parser("archive", help="archive batches and the archive queue")
    archive_commands = archive.add_subparsers(dest="archive_command", required=True)
    run = archive_commands.add_parser("run", help="send queued documents to the archive now")
    run.add_argument("--limit", type=positive_int, help="at most this many entries")
    run.set_defaults(func=cmd_archive_run)
    status = archive_commands.add_parser("status", help="the queue per school and next batch")
    status.set_defaults(func=cmd_archive_status)
