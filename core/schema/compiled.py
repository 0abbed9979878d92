"""Compiled field sets: one generated function per selection set reads its plain fields.

`PlainFieldExecutor` (core/schema/execution.py) completes a plain scalar field in about a
microsecond: a loop step, a `getattr`, a class check and a dict store. A page of 100
students with guardians and groups has ~2 400 such fields. For each selection set that
an object type is completed with, `compile_leaves` writes (once per request and shape) a
function that reads every plain field of it in straight-line code, checks each value the
way the loop does, and returns the object's answer as one dict literal, with the other
fields (resolvers, objects) as placeholders in their place, so the answer's key order is
the selection's.

The function returns None as soon as one value is not the plain kind its field expects
(an unexpected class, a null in a non-null field, an attribute that raises, ...). The
executor then completes that object field by field on the ordinary path, which reports
errors and their paths exactly as graphql-core does: reading a plain field has no side
effect, so reading it again there is harmless. The generated source is built only from
field names GraphQL has validated (response names) and Python identifiers of our own
types (attribute names); values are never part of it.
"""

from __future__ import annotations

import functools
import keyword
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLString,
)
from graphql.pyutils import Undefined

# GraphQL's Int is a signed 32-bit integer; graphql-core's serializer rejects the rest.
_INT_MIN = -(2**31)
_INT_MAX = 2**31 - 1
# Classes whose values a leaf serializer may be handed without first ruling out an
# exception value or an awaitable (graphql-core reports or awaits those instead).
_SAFE_CLASSES = frozenset({str, int, float, bool})

Leaves = Callable[[Any], "dict[str, Any] | None"]


@dataclass(frozen=True, slots=True)
class LeafRead:
    """One plain scalar field of a selection: answer key, attribute, type, nullability."""

    response_name: str
    attribute: str
    leaf_type: GraphQLLeafType
    non_null: bool


@dataclass(frozen=True, slots=True)
class Constant:
    """A field whose answer is fixed for the selection (`__typename`)."""

    response_name: str
    value: str


@dataclass(frozen=True, slots=True)
class Placeholder:
    """A field the executor completes itself after the leaves (a resolver, an object)."""

    response_name: str


Entry = LeafRead | Constant | Placeholder


def _leaf_coercer(
    leaf_type: GraphQLLeafType, is_awaitable: Callable[[Any], bool]
) -> Callable[[Any], Any]:
    """What graphql-core's complete_leaf_value does for a value that is neither null nor
    Undefined, returning Undefined instead of raising: the caller then falls back."""
    serialize = leaf_type.serialize

    def coerce(value: Any) -> Any:
        if value.__class__ not in _SAFE_CLASSES and (
            isinstance(value, Exception) or is_awaitable(value)
        ):
            return Undefined
        try:
            result = serialize(value)
        except Exception:  # noqa: BLE001 - the ordinary path serializes again and reports
            return Undefined
        return Undefined if result is None else result

    return coerce


def _enum_names(leaf_type: GraphQLLeafType) -> tuple[type[Enum], dict[str, str]] | None:
    """For a strawberry enum: its Python class and each member's GraphQL name (what its
    serializer answers for the member, asked once per member), by member name."""
    enum_class = getattr(leaf_type, "wrapped_cls", None)
    if not isinstance(leaf_type, GraphQLEnumType) or not (
        isinstance(enum_class, type) and issubclass(enum_class, Enum)
    ):
        return None
    try:
        return enum_class, {m._name_: leaf_type.serialize(m) for m in enum_class}
    except Exception:  # noqa: BLE001 - then every value takes the serializer
        return None


def _read(attribute: str, variable: str) -> str:
    if attribute.isidentifier() and not keyword.iskeyword(attribute):
        return f"    {variable} = source.{attribute}"
    return f"    {variable} = getattr(source, {attribute!r})"


def compile_leaves(entries: Sequence[Entry], is_awaitable: Callable[[Any], bool]) -> Leaves:
    """A function `(source) -> dict | None` for a selection's `entries`, in their order:
    leaf values read and checked, constants in place, placeholders None. Compiled once
    per shape: requests of one query share it (compiling costs ~100 us)."""
    return _compiled(tuple(entries), is_awaitable)


@functools.lru_cache(maxsize=4096)
def _compiled(entries: tuple[Entry, ...], is_awaitable: Callable[[Any], bool]) -> Leaves:
    namespace: dict[str, Any] = {"Undefined": Undefined}
    reads: list[str] = []
    checks: list[str] = []
    items: list[str] = []
    for index, entry in enumerate(entries):
        key = repr(entry.response_name)
        if isinstance(entry, Constant):
            items.append(f"{key}: {entry.value!r}")
            continue
        if isinstance(entry, Placeholder):
            items.append(f"{key}: None")
            continue
        variable = f"v{index}"
        reads.append(_read(entry.attribute, variable))
        items.append(f"{key}: {variable}")
        checks.extend(_checks(entry, variable, index, namespace, is_awaitable))
    guarded_reads = (
        [
            "    try:",
            *(f"    {line}" for line in reads),
            "    except Exception:",
            "        return None",
        ]
        if reads
        else []
    )
    body = [
        "def leaves(source):",
        *guarded_reads,
        *checks,
        "    return {" + ", ".join(items) + "}",
    ]
    exec("\n".join(body), namespace)  # noqa: S102 - source built from names only, see above
    return namespace["leaves"]  # type: ignore[no-any-return]


def _checks(
    entry: LeafRead,
    variable: str,
    index: int,
    namespace: dict[str, Any],
    is_awaitable: Callable[[Any], bool],
) -> list[str]:
    """The lines that check (and where needed convert) one leaf value in place: a null,
    then the value's expected class, then anything else through the serializer."""
    convert = "pass"
    if entry.leaf_type is GraphQLString or entry.leaf_type is GraphQLID:
        expected = f"{variable}.__class__ is str"
    elif entry.leaf_type is GraphQLInt:
        expected = f"{variable}.__class__ is int and {_INT_MIN} <= {variable} <= {_INT_MAX}"
    elif entry.leaf_type is GraphQLBoolean:
        expected = f"{variable}.__class__ is bool"
    elif (names := _enum_names(entry.leaf_type)) is not None:
        # A member of the enum's own class: its GraphQL name, looked up by member name.
        namespace[f"enum{index}"], namespace[f"names{index}"] = names
        expected = f"{variable}.__class__ is enum{index}"
        convert = f"{variable} = names{index}[{variable}._name_]"
    else:
        expected = "False"
    namespace[f"coerce{index}"] = _leaf_coercer(entry.leaf_type, is_awaitable)
    return [
        f"    if {variable} is None:",
        "        return None" if entry.non_null else "        pass",
        f"    elif {expected}:",
        f"        {convert}",
        "    else:",
        f"        if {variable} is Undefined:",
        "            return None",
        f"        {variable} = coerce{index}({variable})",
        f"        if {variable} is Undefined:",
        "            return None",
    ]
