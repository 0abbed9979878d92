"""Relay cursor pagination by keyset: the cursor holds the sort key of the last row, so
a page costs one indexed range scan however deep it is."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Integer, Select, bindparam, func, select, tuple_

from core.schema.database import RequestDatabase
from core.schema.errors import bad_input

DEFAULT_PAGE_SIZE = 50
# Cursors are ours and short (a name or two and an id); anything longer is not one.
MAX_CURSOR_LENGTH = 1000
# The widest integer key a cursor may hold: primary keys are 32-bit on PostgreSQL, and a
# larger number would reach the driver as an overflow instead of a clear error.
MAX_KEY_INT = 2**31 - 1


def encode_cursor(key: Sequence[Any]) -> str:
    # orjson: a page encodes a cursor per edge, and json.dumps was 5 % of a page's CPU.
    # Its compact JSON decodes as before, so cursors handed out earlier stay valid.
    return base64.urlsafe_b64encode(orjson.dumps(list(key), default=str)).decode()


def decode_cursor(cursor: str, types: Sequence[type | None]) -> list[Any]:
    """The sort key in a cursor, checked value by value against the key's column types
    (None: not checked), so that a forged cursor ends as BAD_USER_INPUT, never as a
    driver error."""
    invalid = bad_input("Ugyldig cursor i `after`.", field="after")
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError):
        raise invalid from None
    if not isinstance(key, list) or len(key) != len(types):
        raise invalid
    for value, expected in zip(key, types, strict=True):
        if expected is None:
            continue
        # bool is an int in Python, never a key of ours.
        if type(value) is not expected or (expected is int and abs(value) > MAX_KEY_INT):
            raise invalid
        if expected is str and not _storable(value):
            raise invalid
    return key


def _storable(text: str) -> bool:
    """Text a database can compare: no NUL (PostgreSQL's text cannot hold it) and no lone
    surrogate (not UTF-8: the driver fails to encode it). The request's JSON is checked
    for both (core/request_json.py), but a cursor's JSON hides inside base64."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _python_type(column: ColumnElement[Any]) -> type | None:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return None
    return python_type if python_type in (int, str) else None


def check_first(first: int | None, max_page_size: int) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if first < 0:
        raise bad_input("`first` kan ikke være negativ.", field="first")
    if first > max_page_size:
        raise bad_input(f"`first` kan være høyst {max_page_size}.", field="first")
    return first


@dataclass
class Page:
    rows: list[Any]
    keys: list[Sequence[Any]]
    has_next_page: bool
    count_statement: Select[Any]
    db: RequestDatabase
    _total: int | None = None

    def with_cursors(self) -> list[tuple[str, Any]]:
        """(cursor, row) for each row of the page, for its edges."""
        return [(encode_cursor(k), r) for r, k in zip(self.rows, self.keys, strict=True)]

    @property
    def end_cursor(self) -> str | None:
        return encode_cursor(self.keys[-1]) if self.keys else None

    async def total_count(self) -> int:
        if self._total is None:
            self._total = int((await self.db.rows(self.count_statement)).scalar_one())
        return self._total


def _count_of(statement: Select[Any]) -> Select[Any]:
    """`SELECT count(*)` of the rows `statement` returns. For a plain SELECT ... FROM ...
    WHERE the count replaces the columns (the database can then count from an index
    without reading every row's columns); with DISTINCT, GROUP BY, HAVING, LIMIT or
    OFFSET only a count over the whole statement as a subquery is right."""
    plain = not (
        statement._distinct
        or statement._group_by_clauses
        or statement._having_criteria
        or statement._limit_clause is not None
        or statement._offset_clause is not None
    )
    if plain:
        return statement.order_by(None).with_only_columns(func.count(), maintain_column_froms=True)
    return select(func.count()).select_from(statement.order_by(None).subquery())


@dataclass(frozen=True)
class PageStatements:
    """A listing's statements with the page size and the cursor's key as bound
    parameters (`page_statements`), so that one built for a caller serves every page
    they ask for: building a scoped statement and its cache key cost as much as running
    it."""

    first_page: Select[Any]
    next_page: Select[Any]
    count: Select[Any]
    key_types: tuple[type | None, ...]


_LIMIT = "page_limit"


def _after_key(index: int) -> str:
    return f"page_after_{index}"


def page_statements(
    statement: Select[Any], order: Sequence[ColumnElement[Any]], count: Select[Any] | None = None
) -> PageStatements:
    """The page and count statements of `statement`, ordered by `order` (unique,
    ascending); `count`, when given, is a cheaper statement with the same answer."""
    ordered = statement.order_by(*order).limit(bindparam(_LIMIT, type_=Integer()))
    after = tuple_(*(bindparam(_after_key(i), type_=c.type) for i, c in enumerate(order)))
    return PageStatements(
        first_page=ordered,
        next_page=ordered.where(tuple_(*order) > after),
        count=_count_of(statement) if count is None else count,
        key_types=tuple(_python_type(column) for column in order),
    )


async def paginate(
    db: RequestDatabase,
    statement: Select[Any] | PageStatements,
    order: Sequence[ColumnElement[Any]],
    key_of: Callable[[Any], Sequence[Any]],
    *,
    first: int,
    after: str | None,
    of_columns: bool = False,
) -> Page:
    """One page of `statement`, ordered by `order` (unique, ascending), after a cursor;
    `statement` may be its `page_statements`, built earlier (`order` is then theirs).
    `of_columns`: the statement selects columns only, no ORM entities (RequestDatabase.rows)."""
    statements = (
        statement if isinstance(statement, PageStatements) else page_statements(statement, order)
    )
    parameters: dict[str, Any] = {_LIMIT: first + 1}
    page_statement = statements.first_page
    if after is not None:
        key = decode_cursor(after, statements.key_types)
        parameters.update((_after_key(i), value) for i, value in enumerate(key))
        page_statement = statements.next_page
    run = db.rows if of_columns else db.execute
    rows = list((await run(page_statement, parameters)).all())
    has_next = len(rows) > first
    rows = rows[:first]
    return Page(rows, [key_of(r) for r in rows], has_next, statements.count, db)


async def newest_first(
    db: RequestDatabase,
    statement: Select[Any],
    id_column: Any,
    *,
    first: int,
    after: str | None,
) -> Page:
    """A page of `statement` (an entity first in each row), newest first: ordered by the
    negated id, which is unique and follows insertion order."""
    return await paginate(
        db, statement, (-id_column,), lambda r: [-r[0].id], first=first, after=after
    )
