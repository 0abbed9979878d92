"""SQLite through aiosqlite with one thread hop per statement.

aiosqlite runs every call on the connection's own thread and hands the answer back to
the event loop. SQLAlchemy's aiosqlite adapter makes four such calls per statement:
open a cursor, execute, fetch all rows, close the cursor. Each hop costs a queue put, a
thread wake-up and an event-loop wake-up (~40 us on an idle machine, several times that
under load), more than a short indexed statement takes to run. A request of ten
statements paid ~40 hops.

`OneHopCursor` does the four steps in one function on the connection's thread and keeps
what the cursor reported (description, rows, row count, last row id). The sqlite3
connection, its transactions and SQLAlchemy's dialect are the same as before; only how
the calls cross to the thread changes. Server-side cursors (streaming results) keep
SQLAlchemy's own adapter.

`create_engine` in core/db.py passes `one_hop_dbapi()` as the engine's DBAPI module for
`sqlite+aiosqlite` URLs.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

# What the sqlite3 cursor reported: description, rows, row count, last row id.
_Outcome = tuple[Any, list[Any], int, int | None]


def _run_statement(
    connection: aiosqlite.Connection, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """On the connection's thread: execute, fetch every row, close the cursor."""
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose execute is one call on the connection's thread.

    SQLAlchemy reads the rows of a non-streaming cursor from `_rows` (the base class's
    fetchone/fetchmany/fetchall), so only execution and the reported attributes change."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # No cursor is opened here (the base class opens one: a hop).
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1  # sqlite3's default

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:  # type: ignore[override]
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        # The sqlite3 cursor was closed on the thread, right after the fetch.
        return None

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._run(operation, parameters, many=False))
        except Exception as error:  # noqa: BLE001 - mapped to the DBAPI's errors
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        try:
            return await_(self._run(operation, seq_of_parameters, many=True))
        except Exception as error:  # noqa: BLE001 - mapped to the DBAPI's errors
            self._adapt_connection._handle_exception(error)

    async def _run(self, operation: Any, parameters: Any, *, many: bool) -> None:
        # What the previous statement reported is gone, also when this one fails (as on
        # a sqlite3 cursor).
        self._description, self._rowcount, self._lastrowid = None, -1, None
        self._rows.clear()
        async with self._adapt_connection._execute_mutex:
            outcome = await self._connection._execute(
                _run_statement, self._connection, operation, parameters, many
            )
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = deque(rows)

    def nextset(self) -> None:
        raise sqlite3.NotSupportedError("SQLite has one result set per statement.")

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None  # sqlite3 ignores them too


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite DBAPI adapter, handing out `OneHopConnection`s."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        creator = kw.pop("async_creator_fn", None)
        connection = creator(*arg, **kw) if creator else self.aiosqlite.connect(*arg, **kw)
        if not creator:
            # As SQLAlchemy's adapter does: the connection's thread must not keep the
            # interpreter alive at exit.
            connection._thread.daemon = True
        return OneHopConnection(self, await_(connection))


def one_hop_dbapi() -> OneHopDBAPI:
    return OneHopDBAPI(aiosqlite, sqlite3)
