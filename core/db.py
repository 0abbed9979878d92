"""Async engine and sessions: SQLite by default, PostgreSQL for scale."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import String

from core.sqlite_driver import one_hop_dbapi

# SQLite's lower() folds ASCII letters only, so a search for "ødegård" never matched
# "Ødegård" (PostgreSQL's lower() folds every letter). On SQLite, `unicode_lower` is
# Python's str.lower, registered on every connection.
_SQLITE_LOWER = "tavle_lower"


class unicode_lower(GenericFunction[str]):  # noqa: N801 - named like SQL functions
    """lower() that folds every letter (Æ, Ø, Å too) on both databases."""

    type = String()
    inherit_cache = True


@compiles(unicode_lower)
def _lower_anywhere(element: unicode_lower, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(unicode_lower, "sqlite")
def _lower_on_sqlite(element: unicode_lower, compiler: Any, **kw: Any) -> str:
    return f"{_SQLITE_LOWER}({compiler.process(element.clauses, **kw)})"


def _python_lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


def create_engine(database_url: str) -> AsyncEngine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        options: dict = {"connect_args": {"timeout": 30}}
        if url.get_driver_name() == "aiosqlite":
            # One thread hop per statement instead of four (see core/sqlite_driver.py).
            options["module"] = one_hop_dbapi()
        engine = create_async_engine(url, **options)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # Foreign keys are off by default in SQLite; WAL lets readers run beside a writer.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            dbapi_connection.create_function(_SQLITE_LOWER, 1, _python_lower, deterministic=True)

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block ends, rolls back on any exception."""
    async with sessions() as session, session.begin():
        yield session
