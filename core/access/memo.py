"""A bounded memo for SQL conditions built from a caller's grants.

Building a scope condition is SQLAlchemy expression construction: for a teacher's
documents it took ~1 ms, for every statement of every request, while the answer depends
only on who asks (person, school year, grants) and on which columns it is built over. Core
expressions are immutable and may be shared between statements, so the condition built
once for that key serves the caller's next requests.

Columns (and other objects that are keys by identity, such as the doctype mapping) are
kept with the entry, so their `id()` cannot be reused by another object while the entry
lives; a hit also checks identity, never `==` (which on a column builds an expression).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from core.access.grants import Principal

T = TypeVar("T")

# Enough for every active user of a municipality's busiest hour several times over; an
# entry is a small expression tree.
MAX_ENTRIES = 4096


class ConditionMemo:
    """Least-recently-used memo: `get_or_build(values, objects, build)`."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[tuple[Any, ...], Any]] = OrderedDict()

    def get_or_build(self, values: Hashable, objects: Sequence[Any], build: Callable[[], T]) -> T:
        """`build()`, or what it returned before for the same `values` (hashable: ids,
        grants) and the same `objects` (compared by identity)."""
        objects = tuple(objects)
        key = (values, tuple(map(id, objects)))
        found = self._entries.get(key)
        if found is not None and all(a is b for a, b in zip(found[0], objects, strict=True)):
            self._entries.move_to_end(key)
            return found[1]  # type: ignore[no-any-return]
        value = build()
        self._entries[key] = (objects, value)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def for_caller(
        self,
        principal: Principal,
        purpose: str,
        build: Callable[[], T],
        extra: Hashable = (),
    ) -> T:
        """`build()` for what depends on the caller alone: remembered per `purpose`, the
        caller (person, school year, grants, policy by identity) and `extra` (what else
        it is built from, hashable: grant sets, doctype permissions)."""
        values = (
            purpose,
            principal.person_id,
            principal.current_school_year_id,
            principal.grants,
            extra,
        )
        return self.get_or_build(values, (principal.policy,), build)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
