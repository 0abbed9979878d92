"""Alembic environment: runs migrations over the async engine of TAVLE_DATABASE_URL
(or the URL given by `core.migrate`)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from core.config import Settings
from core.db import create_engine
from core.migrate import migrating
from core.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    return config.attributes.get("database_url") or Settings.from_env().database_url


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite changes a table's constraints by copying it (batch mode) and dropping the
        # old one. With foreign keys on, dropping a table others refer to fails, or
        # cascades into them: off while migrating (it only takes effect outside a
        # transaction, so before the migration's), and every key checked afterwards.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        # One transaction for the whole migration: the driver opens none before DDL, so a
        # failing step left the earlier ones applied (found by review).
        connection.exec_driver_sql("BEGIN")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"foreign keys do not hold after the migration: {broken[:5]}")
    # Whoever holds the connection commits and turns foreign keys back on
    # (core.migrate.migrating): inside the transaction it would not take effect.


async def _run_async() -> None:
    engine = create_engine(_database_url())
    try:
        await migrating(engine, _run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
