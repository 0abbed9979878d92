"""Run alembic migrations from code (the CLI and the tests use this)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from core.config import PROJECT_ROOT


class MigrationDataError(Exception):
    """A migration found data it cannot carry forward; the message says what to mend.
    Nothing of the migration is applied."""


def alembic_config(database_url: str | None = None) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    if database_url:
        config.attributes["database_url"] = database_url
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database behind `engine` to `revision`."""

    def _upgrade(connection) -> None:  # type: ignore[no-untyped-def]
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    await migrating(engine, _upgrade)


async def migrating(engine: AsyncEngine, work: Callable[[Connection], None]) -> None:
    """Run alembic's `work` on a connection of `engine` and commit it; on a failure roll
    it back. On SQLite, migrations/env.py turns foreign keys off for its table copies:
    they are turned on again here, when no transaction is open, whether the migration
    went through or not, before the connection serves anyone else."""
    async with engine.connect() as connection:
        try:
            await connection.run_sync(work)
            await connection.commit()
        except BaseException:
            await connection.rollback()
            raise
        finally:
            if connection.dialect.name == "sqlite":
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()


def upgrade_sync(database_url: str, revision: str = "head") -> None:
    from core.db import create_engine

    async def _main() -> None:
        engine = create_engine(database_url)
        try:
            await upgrade(engine, revision)
        finally:
            await engine.dispose()

    asyncio.run(_main())


@cache
def head_revision() -> str:
    """The newest migration this code ships (alembic's head)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/ has no revisions"
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None when it was never migrated (no
    alembic_version table). Other database failures are raised."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def migration_problem(engine: AsyncEngine) -> str | None:
    """Why the database cannot serve this code (never migrated, or at another revision
    than the code's head), in words for an administrator; None when it can."""
    current, head = await current_revision(engine), head_revision()
    if current == head:
        return None
    if current is None:
        return "databasen er ikke migrert: kjør `tavle migrate` (eller `make run`)."
    return f"databasen er på revisjon {current}, koden trenger {head}: kjør `tavle migrate`."
