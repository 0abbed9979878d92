"""The `tavle` command: serve, worker, migrate, demo, token, policy check|explain,
doctypes check|route, schema."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from core.config import Settings, SettingsError


class CliError(Exception):
    """A user-facing failure: printed without a trace, exit status 1."""


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse reports the error)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"må være et positivt heltall, ikke {text!r}")
    return value


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"en port er fra 1 til 65535, ikke {text!r}")
    return value


def student_count(text: str) -> int:
    """An argparse type for `demo --students`: what the generator can build."""
    from core.demo import MAX_STUDENTS, MIN_STUDENTS

    value = positive_int(text)
    if value < MIN_STUDENTS:
        raise argparse.ArgumentTypeError(
            f"minst {MIN_STUDENTS} (to klasser på 15 på hvert trinn ved de tre navngitte "
            f"skolene), ikke {text!r}"
        )
    if value > MAX_STUDENTS:
        raise argparse.ArgumentTypeError(f"høyst {MAX_STUDENTS}, ikke {text!r}")
    return value


def database_problem(error: Exception) -> str | None:
    """What an administrator should hear when the database failed: what to do, never
    the SQL statement or its parameters (SQLAlchemy puts both in its message)."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    if not isinstance(error, SQLAlchemyError | OSError):
        return None
    detail = str(error.orig if isinstance(error, DBAPIError) else error).splitlines()[0]
    lowered = detail.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return "databasen er ikke migrert: kjør `tavle migrate` (eller `make run`)."
    if isinstance(error, OSError) or "connect" in lowered or "refused" in lowered:
        return f"får ikke kontakt med databasen (TAVLE_DATABASE_URL): {detail}"
    return f"databasefeil: {detail}"


def _settings() -> Settings:
    return Settings.from_env()


async def _migration_problem(database_url: str) -> str | None:
    from core.db import create_engine
    from core.migrate import migration_problem

    engine = create_engine(database_url)
    try:
        return await migration_problem(engine)
    finally:
        await engine.dispose()


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from core.app import create_app

    settings = _settings()
    # A server on an unmigrated or outdated database would answer every request with
    # an error; it refuses to start instead, saying what to do.
    problem = asyncio.run(_migration_problem(settings.database_url))
    if problem is not None:
        raise CliError(problem)
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level="info",
        proxy_headers=False,
    )


def cmd_migrate(args: argparse.Namespace) -> None:
    from alembic.util import CommandError

    from core.db import create_engine
    from core.migrate import MigrationDataError, current_revision, upgrade

    async def main() -> str | None:
        engine = create_engine(_settings().database_url)
        try:
            await upgrade(engine, args.revision)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    try:
        reached = asyncio.run(main())
    except CommandError as error:
        raise CliError(f"ukjent revisjon {args.revision!r}: {error}") from None
    except MigrationDataError as error:
        raise CliError(str(error)) from None
    if args.revision != "head" and reached != args.revision:
        # alembic's upgrade to an older revision does nothing: say so, not "migrated".
        raise CliError(
            f"databasen er på revisjon {reached}, nyere enn {args.revision}: "
            "`tavle migrate` går bare fremover."
        )
    print(f"Databasen er migrert til {args.revision} ({reached}).")


def cmd_demo(args: argparse.Namespace) -> None:
    from core.db import create_engine, create_sessionmaker
    from core.demo import database_is_empty, load_demo

    async def main() -> None:
        engine = create_engine(_settings().database_url)
        try:
            sessions = create_sessionmaker(engine)
            if not await database_is_empty(sessions):
                if args.if_empty:
                    print("Databasen har allerede data; demodata lastes ikke.")
                    return
                raise CliError("Databasen har allerede data. Bruk en tom database.")
            summary = await load_demo(
                sessions,
                students=args.students,
                seed=args.seed,
                progress=sys.stderr.isatty() or args.progress,
            )
            print(f"Demokommunen er lastet: {summary}")
        finally:
            await engine.dispose()

    asyncio.run(main())


def cmd_token(args: argparse.Namespace) -> None:
    from sqlalchemy import select

    from core.auth.sessions import issue_token
    from core.db import create_engine, create_sessionmaker, transaction
    from core.models import Person

    settings = _settings()
    if not settings.demo:
        # A login without ID-porten or Feide, and without two-factor: demo mode only, and
        # its tokens stop working when the server runs without it.
        raise CliError(
            "`tavle token` gir innlogging uten tofaktor og virker bare med TAVLE_DEMO=1."
        )

    async def main() -> str:
        engine = create_engine(settings.database_url)
        try:
            async with transaction(create_sessionmaker(engine)) as session:
                person = (
                    await session.execute(select(Person).where(Person.username == args.username))
                ).scalar_one_or_none()
                if person is None:
                    raise CliError(f"Ingen bruker heter {args.username!r}.")
                return await issue_token(
                    session, person, method="cli", ttl_seconds=settings.session_ttl_seconds
                )
        finally:
            await engine.dispose()

    print(asyncio.run(main()))


def cmd_policy_check(args: argparse.Namespace) -> None:
    from core.access.check import check_policy

    problems = check_policy(_settings())
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        raise CliError(f"{len(problems)} feil i tilgangspolicyen.")
    print("Tilgangspolicyen er gyldig.")


def cmd_policy_explain(args: argparse.Namespace) -> None:
    from core.access.explain import explain

    allowed, lines = explain(_settings(), args.user, args.action, args.resource_id)
    for line in lines:
        print(line)
    if not allowed:
        sys.exit(3)


def cmd_worker(args: argparse.Namespace) -> None:
    from core.db import create_engine, create_sessionmaker
    from core.outbox import OutboxSettings, drain, poll_statuses, run_forever
    from core.plugins import channels as loaded_channels

    only_channels = args.channel or None
    if only_channels:
        unknown = sorted(set(only_channels) - set(loaded_channels()))
        if unknown:
            raise CliError(f"Ukjent kanal: {', '.join(unknown)}.")

    async def main() -> None:
        engine = create_engine(_settings().database_url)
        sessions = create_sessionmaker(engine)
        try:
            if args.once:
                processed = await drain(sessions, OutboxSettings(), channels=only_channels)
                changed = await poll_statuses(sessions, channels=only_channels)
                print(f"Behandlet {processed} leveranser; {changed} fikk ny status.")
            else:
                from core.archive.batch import run_scheduled

                # Archive batches run on their schedule (TAVLE_ARCHIVE_SCHEDULE) beside
                # the outbox, unless this worker is limited to some channels.
                archive = [] if only_channels else [run_scheduled(sessions, _loaded_doctypes()[0])]
                await asyncio.gather(
                    run_forever(sessions, OutboxSettings(), channels=only_channels), *archive
                )
        finally:
            await engine.dispose()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


def _loaded_doctypes():  # type: ignore[no-untyped-def]
    from core.access.policy import Policy
    from core.app import load_doctypes_and_channels

    settings = _settings()
    return load_doctypes_and_channels(settings, Policy.load(settings.policies_dir))


def cmd_doctypes_check(args: argparse.Namespace) -> None:
    from core.doctypes import DoctypeError

    try:
        doctypes, _ = _loaded_doctypes()
    except DoctypeError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        raise CliError(f"{len(error.problems)} feil i dokumenttypene.") from None
    print(f"{len(doctypes)} dokumenttyper er gyldige.")


def cmd_doctypes_route(args: argparse.Namespace) -> None:
    from core.doctypes import route_description

    doctypes, channels = _loaded_doctypes()
    doctype = doctypes.get(args.key)
    if doctype is None:
        raise CliError(f"Ukjent dokumenttype {args.key!r}.")
    for line in route_description(doctype, channels):
        print(line)


def cmd_schema(args: argparse.Namespace) -> None:
    from core.schema.schema import sdl

    sys.stdout.write(sdl())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tavle", description="Tavle: skoleadministrasjon")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve GraphQL over HTTP")
    serve.add_argument("--host")
    serve.add_argument("--port", type=port_number)
    serve.set_defaults(func=cmd_serve)

    migrate = commands.add_parser("migrate", help="run database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(func=cmd_migrate)

    demo = commands.add_parser("demo", help="load the demo municipality")
    demo.add_argument(
        "--students", type=student_count, help="build a larger municipality of N students"
    )
    demo.add_argument("--seed", type=int, default=2026)
    demo.add_argument("--if-empty", action="store_true", help="do nothing if data exists")
    demo.add_argument("--progress", action="store_true", help="always show the progress bar")
    demo.set_defaults(func=cmd_demo)

    token = commands.add_parser("token", help="print a session token for a user")
    token.add_argument("username")
    token.set_defaults(func=cmd_token)

    policy = commands.add_parser("policy", help="check or explain the access policy")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser("check", help="validate policies/ and role assignments")
    check.set_defaults(func=cmd_policy_check)
    explain = policy_commands.add_parser("explain", help="why a user may or may not act")
    explain.add_argument("user", help="username")
    explain.add_argument("action", help="e.g. read, update, grant")
    explain.add_argument("resource_id", help="a global ID, or Type:number (Student:12)")
    explain.set_defaults(func=cmd_policy_explain)

    worker = commands.add_parser("worker", help="deliver queued documents and messages")
    worker.add_argument("--once", action="store_true", help="drain the queue, then stop")
    worker.add_argument(
        "--channel",
        action="append",
        help="serve only this channel (repeatable), e.g. a worker of its own for SvarUt",
    )
    worker.set_defaults(func=cmd_worker)

    doctypes = commands.add_parser("doctypes", help="check doctypes or show a route")
    doctype_commands = doctypes.add_subparsers(dest="doctypes_command", required=True)
    doctype_check = doctype_commands.add_parser("check", help="validate doctypes/")
    doctype_check.set_defaults(func=cmd_doctypes_check)
    doctype_route = doctype_commands.add_parser("route", help="how a document type travels")
    doctype_route.add_argument("key")
    doctype_route.set_defaults(func=cmd_doctypes_route)

    schema = commands.add_parser("schema", help="print the GraphQL SDL")
    schema.set_defaults(func=cmd_schema)

    from core.archive.cli import add_archive_commands

    add_archive_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        # Ctrl+C: every command writes in one transaction, so nothing is half-written.
        print("tavle: avbrutt; ingenting er endret av det som ikke ble fullført.", file=sys.stderr)
        sys.exit(130)
    except (CliError, SettingsError) as error:
        print(f"tavle: {error}", file=sys.stderr)
        sys.exit(1)
    except Exception as error:  # a CLI never shows a trace to an administrator
        from core.access.policy import PolicyError
        from core.doctypes import DoctypeError

        if isinstance(error, PolicyError | DoctypeError):
            for problem in error.problems:
                print(problem, file=sys.stderr)
            sys.exit(1)
        problem = database_problem(error)
        if problem is not None:
            print(f"tavle: {problem}", file=sys.stderr)
            sys.exit(1)
        print(f"tavle: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
