"""The one-hop SQLite cursor (core/sqlite_driver.py): the same answers, row counts, ids and
errors as SQLAlchemy's own aiosqlite adapter, with one call to the connection's thread
per statement. Runs on a SQLite file of its own in both CI runs (the driver is SQLite's)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.db import create_engine
from core.sqlite_driver import OneHopCursor

metadata = MetaData()
school = Table(
    "school",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False, unique=True),
)
pupil = Table(
    "pupil",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("school_id", Integer, ForeignKey("school.id"), nullable=False),
    Column("name", String, nullable=False),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(insert(school), [{"name": "Nordby"}, {"name": "Sørby"}])
    yield engine
    await engine.dispose()


def _count_thread_calls(connection: Any) -> list[Any]:
    """Record every function the aiosqlite connection sends to its thread."""
    driver = connection.driver_connection
    calls: list[Any] = []
    original = driver._execute

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn)
        return await original(fn, *args, **kwargs)

    driver._execute = counting
    return calls


async def _raw(connection: AsyncConnection) -> Any:
    return await connection.get_raw_connection()


async def test_the_engine_uses_the_one_hop_cursor_and_one_thread_call_per_statement(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        raw = await _raw(connection)
        assert isinstance(raw.dbapi_connection.cursor(), OneHopCursor)
        calls = _count_thread_calls(raw)
        rows = (await connection.execute(select(school.c.name).order_by(school.c.id))).scalars()
        assert list(rows) == ["Nordby", "Sørby"]
        # SQLAlchemy's adapter made four: open the cursor, execute, fetch, close.
        assert len(calls) == 1


async def test_rows_counts_and_ids_are_those_sqlite_reports(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        result = await connection.execute(insert(pupil).values(school_id=1, name="Emma"))
        assert result.inserted_primary_key == (1,)
        assert result.lastrowid == 1
        many = await connection.execute(
            insert(pupil), [{"school_id": 2, "name": f"Elev {n}"} for n in range(5)]
        )
        assert many.rowcount == 5
        changed = await connection.execute(
            update(pupil).where(pupil.c.school_id == 2).values(name=pupil.c.name + "!")
        )
        assert changed.rowcount == 5
        returned = await connection.execute(
            update(pupil).where(pupil.c.id == 1).values(name="Emma N.").returning(pupil.c.name)
        )
        assert returned.all() == [("Emma N.",)]
        empty = await connection.execute(select(pupil.c.id, pupil.c.name).where(pupil.c.id < 0))
        assert list(empty.keys()) == ["id", "name"]
        assert empty.all() == []
        assert (await connection.execute(select(func.count()).select_from(pupil))).scalar() == 6
        gone = await connection.execute(delete(pupil).where(pupil.c.school_id == 2))
        assert gone.rowcount == 5
        # fetchone / fetchmany over the buffered rows, in order
        partial = await connection.execute(select(school.c.name).order_by(school.c.id))
        assert partial.fetchone() == ("Nordby",)
        assert partial.fetchmany(5) == [("Sørby",)]
        assert partial.fetchone() is None


async def test_errors_are_the_dbapi_errors_and_the_transaction_rolls_back(
    engine: AsyncEngine,
) -> None:
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(insert(pupil).values(school_id=1, name="Før feilen"))
            await connection.execute(insert(school).values(name="Nordby"))  # unique name
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(insert(pupil).values(school_id=99, name="Uten skole"))
    with pytest.raises(OperationalError):
        async with engine.connect() as connection:
            await connection.execute(text("SELECT * FROM finnes_ikke"))
    async with engine.connect() as connection:
        # Nothing of the failed transactions was written, and the pool's connections
        # still work after the errors.
        assert (await connection.execute(select(func.count()).select_from(pupil))).scalar() == 0
        assert (await connection.execute(select(func.count()).select_from(school))).scalar() == 2


async def test_a_failed_statement_leaves_nothing_of_the_previous_one(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        raw = await _raw(connection)
        cursor = raw.dbapi_connection.cursor()

        def run(_sync: Any) -> tuple[Any, Any, list[Any]]:
            cursor.execute("SELECT name FROM school ORDER BY id")
            with pytest.raises(sqlite3.OperationalError):
                cursor.execute("SELECT * FROM finnes_ikke")
            return cursor.description, cursor.rowcount, cursor.fetchall()

        assert await connection.run_sync(run) == (None, -1, [])


async def test_streaming_results_keep_the_server_side_cursor(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            insert(pupil), [{"school_id": 1, "name": f"Elev {n:03}"} for n in range(250)]
        )
    async with engine.connect() as connection:
        streamed = await connection.stream(select(pupil.c.name).order_by(pupil.c.name))
        names = [row.name async for row in streamed]
    assert names == [f"Elev {n:03}" for n in range(250)]


async def test_a_closed_connection_is_an_operational_error(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        raw = await _raw(connection)
        cursor = raw.dbapi_connection.cursor()
        await raw.driver_connection.close()
        with pytest.raises(Exception) as caught:
            await connection.run_sync(lambda _sync: cursor.execute("SELECT 1"))
        assert isinstance(caught.value, engine.dialect.dbapi.OperationalError | OperationalError)
        await connection.invalidate()
