"""The short execution path for plain fields (core/schema/execution.py) answers exactly
as strawberry and graphql-core do, and never bypasses a field with a check."""

from __future__ import annotations

import enum
from datetime import date
from typing import Any, NewType

import strawberry
from graphql import GraphQLObjectType
from graphql.pyutils import Undefined
from strawberry.extensions import SchemaExtension
from strawberry.permission import BasePermission
from strawberry.scalars import JSON

from core.config import Settings
from core.schema.execution import PlainField, PlainFieldExecutor, install_fast_resolvers
from core.schema.schema import build_schema


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"


class Never(BasePermission):
    message = "Nei."

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Thing:
    id: strawberry.ID
    name: str
    count: int
    ratio: float
    flag: bool
    colour: Colour
    born: date | None
    nickname: str | None
    required: str
    secret: str | None = strawberry.field(default="hemmelig", permission_classes=[Never])
    _hidden: strawberry.Private[str] = "skjult"

    @strawberry.field
    def shout(self, info: strawberry.Info) -> str:
        assert info.field_name == "shout"
        return self.name.upper()

    @strawberry.field
    def greeting(self, info: strawberry.Info, to: str = "deg") -> str:
        return f"Hei, {to}"

    @strawberry.field
    def broken(self, info: strawberry.Info) -> str | None:
        raise ValueError("Feil i resolveren.")


def _things() -> list[Thing]:
    good = Thing(
        id=strawberry.ID("VGhpbmc6MQ"),
        name="Ola",
        count=3,
        ratio=0.5,
        flag=True,
        colour=Colour.RED,
        born=date(2015, 3, 1),
        nickname=None,
        required="ja",
    )
    bad = Thing(
        id=strawberry.ID("VGhpbmc6Mg"),
        name="Kari",
        count=2**40,  # out of Int range: a field error
        ratio=1.0,
        flag=False,
        colour=Colour.RED,
        born=None,
        nickname="K",
        required="ja",
    )
    null = Thing(
        id=strawberry.ID("VGhpbmc6Mw"),
        name="Per",
        count=1,
        ratio=1.0,
        flag=False,
        colour=Colour.RED,
        born=None,
        nickname=None,
        required=None,  # type: ignore[arg-type] # null in a non-null field: an error
    )
    return [good, bad, null]


@strawberry.type
class Query:
    @strawberry.field
    def things(self) -> list[Thing | None]:
        return _things()  # type: ignore[return-value]


QUERY = """{ things { id name count ratio flag colour born nickname required secret
  shout greeting(to: "Per") broken alias: name __typename } }"""


def _run(schema: strawberry.Schema) -> dict[str, Any]:
    result = schema.execute_sync(QUERY)
    errors = sorted((e.message, tuple(e.path or ())) for e in result.errors or [])
    return {"data": result.data, "errors": errors}


def test_same_answers_and_errors_as_strawberry() -> None:
    stock = strawberry.Schema(query=Query)
    fast = strawberry.Schema(query=Query, execution_context_class=PlainFieldExecutor)
    plain, methods = install_fast_resolvers(fast)
    # Thing's plain fields; `shout` and `broken` (sync `(self, info)` methods). Not
    # `secret` (a permission class), `greeting` (an argument), `things` (no info).
    assert (plain, methods) == (9, 2)
    thing = fast._schema.type_map["Thing"]
    assert isinstance(thing, GraphQLObjectType)
    marked = {n for n, f in thing.fields.items() if isinstance(f.resolve, PlainField)}
    assert marked == {
        "id",
        "name",
        "count",
        "ratio",
        "flag",
        "colour",
        "born",
        "nickname",
        "required",
    }
    expected = _run(stock)
    assert _run(fast) == expected
    # The checks really ran: the permission, the nulled non-null, the range, the raise.
    messages = {m for m, _ in expected["errors"]}
    assert "Nei." in messages
    assert "Feil i resolveren." in messages
    assert any("non-nullable" in m for m in messages)
    assert any("Int cannot represent" in m for m in messages)
    assert expected["data"]["things"][0]["shout"] == "OLA"


def test_resolve_hooks_still_see_every_field() -> None:
    seen: list[str] = []

    class Spy(SchemaExtension):
        def resolve(self, _next, root, info, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(info.field_name)
            return _next(root, info, *args, **kwargs)

    fast = strawberry.Schema(
        query=Query, extensions=[Spy], execution_context_class=PlainFieldExecutor
    )
    install_fast_resolvers(fast)
    fast.execute_sync("{ things { name count } }")
    assert seen.count("name") == 3 and seen.count("count") == 3


def test_checked_fields_of_the_api_keep_their_resolvers() -> None:
    schema = build_schema(Settings())
    type_map = schema._schema.type_map
    checked = {
        "Student": ["email", "phone", "address", "nationalId", "guardians", "groups"],
        "Guardian": ["address", "nationalId", "children"],
        "Employee": ["nationalId"],
    }
    for type_name, fields in checked.items():
        graphql_type = type_map[type_name]
        assert isinstance(graphql_type, GraphQLObjectType)
        for name in fields:
            resolve = graphql_type.fields[name].resolve
            assert not isinstance(resolve, PlainField), f"{type_name}.{name}"
    # Guardian and employee contact details are decided when the object is built
    # (Guardian.many / Employee.many) and are plain fields by design.
    guardian = type_map["Guardian"]
    assert isinstance(guardian, GraphQLObjectType)
    assert isinstance(guardian.fields["email"].resolve, PlainField)


# -- objects and lists of objects ----------------------------------------------------------
# The short paths for objects and lists of objects (PlainFieldExecutor.complete_value)
# must answer exactly as graphql-core does, including where errors go and how a null in
# a non-null place propagates upwards.


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Leaf(Named):  # an interface: graphql-core then checks each object's type
    required: str

    @strawberry.field
    async def later(self) -> str:
        return self.name + " (senere)"

    @strawberry.field
    def fails(self, info: strawberry.Info) -> str:
        raise ValueError(f"Feil i {self.name}.")


class NotALeaf:
    """An object of the wrong type where a Leaf is expected."""

    name = "feil type"
    required = "ja"


@strawberry.type
class Branch:
    name: str
    leaves: list[Leaf]
    maybe_leaves: list[Leaf | None]
    optional_leaves: list[Leaf] | None
    leaf: Leaf
    optional_leaf: Leaf | None

    @strawberry.field
    async def async_leaves(self) -> list[Leaf]:
        return self.leaves


def _leaf(name: str, required: str | None = "ja") -> Leaf:
    return Leaf(name=name, required=required)  # type: ignore[arg-type]


def _branches() -> list[Branch]:
    good = _leaf("god")
    broken = _leaf("ødelagt", required=None)
    return [
        Branch(
            name="hel",
            leaves=[good, _leaf("to")],
            maybe_leaves=[good, None],
            optional_leaves=None,
            leaf=good,
            optional_leaf=None,
        ),
        Branch(
            name="knekt",
            leaves=[good, broken],  # a null in a non-null field of a non-null item
            maybe_leaves=[broken, good],
            optional_leaves=[good, broken],
            leaf=broken,
            optional_leaf=broken,
        ),
        Branch(
            name="feil type",
            leaves=[NotALeaf()],  # type: ignore[list-item]
            maybe_leaves=[NotALeaf(), good],  # type: ignore[list-item]
            optional_leaves=[good],
            leaf=NotALeaf(),  # type: ignore[arg-type]
            optional_leaf=good,
        ),
    ]


@strawberry.type
class TreeQuery:
    @strawberry.field
    def branches(self) -> list[Branch | None]:
        return _branches()  # type: ignore[return-value]

    @strawberry.field
    def branch(self) -> Branch:
        return _branches()[0]


TREE_QUERIES = [
    "{ branches { name leaves { name required } } }",
    "{ branches { name maybeLeaves { name required } } }",
    "{ branches { name optionalLeaves { name required } } }",
    "{ branches { name leaf { name required } optionalLeaf { name required } } }",
    "{ branches { name leaves { name later } asyncLeaves { name required later } } }",
    "{ branches { maybeLeaves { name fails } optionalLeaf { fails } } }",
    "{ branch { leaves { n: name ...F } leaf { ... on Leaf { required } } } }"
    " fragment F on Leaf { required later }",
    "{ branch { __typename leaves { __typename name } } }",
]


async def _run_tree(schema: strawberry.Schema, query: str) -> dict[str, Any]:
    result = await schema.execute(query)
    errors = sorted((e.message, tuple(e.path or ())) for e in result.errors or [])
    return {"data": result.data, "errors": errors}


async def test_objects_and_lists_answer_as_graphql_core() -> None:
    stock = strawberry.Schema(query=TreeQuery)
    fast = strawberry.Schema(query=TreeQuery, execution_context_class=PlainFieldExecutor)
    install_fast_resolvers(fast)
    for query in TREE_QUERIES:
        expected = await _run_tree(stock, query)
        assert await _run_tree(fast, query) == expected, query
    # The cases were really there: a propagated null, a wrong type, a raising resolver.
    everything = [await _run_tree(stock, q) for q in TREE_QUERIES]
    messages = {m for answer in everything for m, _ in answer["errors"]}
    assert any("non-nullable field Leaf.required" in m for m in messages)
    assert any("Expected value of type 'Leaf'" in m for m in messages)
    assert "Feil i god." in messages
    assert everything[0]["data"]["branches"][1] is None  # the null went up to the branch
    assert everything[4]["data"]["branches"][0]["leaves"][0]["later"] == "god (senere)"


def test_objects_and_lists_answer_as_graphql_core_when_sync() -> None:
    stock = strawberry.Schema(query=TreeQuery)
    fast = strawberry.Schema(query=TreeQuery, execution_context_class=PlainFieldExecutor)
    install_fast_resolvers(fast)
    for query in TREE_QUERIES:
        if "later" in query or "asyncLeaves" in query:
            continue
        got = fast.execute_sync(query)
        want = stock.execute_sync(query)
        assert got.data == want.data, query
        assert sorted((e.message, tuple(e.path or ())) for e in got.errors or []) == sorted(
            (e.message, tuple(e.path or ())) for e in want.errors or []
        ), query


# -- what a review found: reads that raise, is_type_of that raises, Undefined, @defer ------


class _Broken(Exception):
    pass


@strawberry.type
class Pupil:
    id: strawberry.ID
    name: str | None


class LazyPupil:
    """Stands in for a Pupil whose attribute read raises (a property, or an ORM attribute
    that cannot load): the error belongs to the field, not to the object."""

    id = strawberry.ID("1")

    @property
    def name(self) -> str:
        raise _Broken("Lesingen feilet.")


@strawberry.type
class Picky:
    name: str

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        if getattr(obj, "name", "") == "dårlig":
            raise _Broken("is_type_of feilet.")
        return isinstance(obj, Picky)


@strawberry.type
class EdgeQuery:
    @strawberry.field
    def pupil(self) -> Pupil:
        return LazyPupil()  # type: ignore[return-value]

    @strawberry.field
    def pupils(self) -> list[Pupil]:
        return [LazyPupil()]  # type: ignore[list-item]

    @strawberry.field
    def pickies(self) -> list[Picky | None]:
        return [Picky(name="ok"), Picky(name="dårlig"), Picky(name="ok2")]

    @strawberry.field
    def undefined_pupil(self) -> Pupil | None:
        from graphql.pyutils import Undefined

        return Undefined  # type: ignore[return-value]

    @strawberry.field
    def undefined_pupils(self) -> list[Pupil | None]:
        from graphql.pyutils import Undefined

        return [Undefined]  # type: ignore[list-item]


EDGE_QUERIES = [
    "{ pupil { id name } }",
    "{ pupils { id name } }",
    "{ pickies { name } }",
    "{ undefinedPupil { name } undefinedPupils { name } }",
]


def test_edge_cases_answer_as_graphql_core() -> None:
    stock = strawberry.Schema(query=EdgeQuery)
    fast = strawberry.Schema(query=EdgeQuery, execution_context_class=PlainFieldExecutor)
    install_fast_resolvers(fast)
    answers = []
    for query in EDGE_QUERIES:
        want, got = stock.execute_sync(query), fast.execute_sync(query)
        errors = [
            sorted((e.message, tuple(e.path or ())) for e in r.errors or []) for r in (want, got)
        ]
        assert (got.data, errors[1]) == (want.data, errors[0]), query
        answers.append((want.data, errors[0]))
    assert answers[0] == (
        {"pupil": {"id": "1", "name": None}},
        [("Lesingen feilet.", ("pupil", "name"))],
    )
    assert answers[2][0] == {"pickies": [{"name": "ok"}, None, {"name": "ok2"}]}
    assert answers[3] == ({"undefinedPupil": None, "undefinedPupils": [None]}, [])


@strawberry.type
class DeferLeaf:
    a: str
    b: str


@strawberry.type
class DeferBranch:
    name: str
    leaf: DeferLeaf
    leaves: list[DeferLeaf]


@strawberry.type
class DeferQuery:
    @strawberry.field
    async def branch(self) -> DeferBranch:
        leaf = DeferLeaf(a="A", b="B")
        return DeferBranch(name="n", leaf=leaf, leaves=[leaf])


async def _deferred(schema: strawberry.Schema) -> list[Any]:
    query = "{ branch { leaf { a } leaves { a } ... @defer { name leaf { a b } leaves { a b } } } }"
    result = await schema.execute(query)
    parts: list[Any] = [result.initial_result.data]  # type: ignore[union-attr]
    async for later in result.subsequent_results:  # type: ignore[union-attr]
        parts.append(later.formatted)
    return parts


async def test_deferred_fields_stay_deferred() -> None:
    from strawberry.schema.config import StrawberryConfig

    config = StrawberryConfig(enable_experimental_incremental_execution=True)
    stock = strawberry.Schema(query=DeferQuery, config=config)
    fast = strawberry.Schema(
        query=DeferQuery, config=config, execution_context_class=PlainFieldExecutor
    )
    install_fast_resolvers(fast)
    want = await _deferred(stock)
    assert await _deferred(fast) == want
    assert want[0] == {"branch": {"leaf": {"a": "A"}, "leaves": [{"a": "A"}]}}


async def _streamed(schema: strawberry.Schema, streamed: bool) -> list[Any]:
    query = (
        "query($s: Boolean!) { branch { leaves @stream(if: $s, initialCount: 1) { a } "
        "again: leaves { b } } }"
    )
    result = await schema.execute(query, variable_values={"s": streamed})
    if not hasattr(result, "initial_result"):
        return [result.data]
    parts: list[Any] = [result.initial_result.data]  # type: ignore[union-attr]
    async for later in result.subsequent_results:  # type: ignore[union-attr]
        parts.append(later.formatted)
    return parts


async def test_streamed_lists_stay_streamed() -> None:
    """A list with @stream goes graphql-core's way (the first items now, the rest later),
    and whether it streams is decided per request: the same query text with
    @stream(if: false) answers at once."""
    from strawberry.schema.config import StrawberryConfig

    config = StrawberryConfig(enable_experimental_incremental_execution=True)
    stock = strawberry.Schema(query=DeferQuery, config=config)
    fast = strawberry.Schema(
        query=DeferQuery, config=config, execution_context_class=PlainFieldExecutor
    )
    install_fast_resolvers(fast)
    for streamed in (True, False, True):
        want = await _streamed(stock, streamed)
        assert await _streamed(fast, streamed) == want, streamed
        assert len(want) > 1 if streamed else len(want) == 1


async def test_load_all_replaces_a_cancelled_future() -> None:
    """A cached future cancelled while its batch was in flight (graphql-core cancels a
    sibling field's task when one fails) is loaded again, as DataLoader.load does."""
    import asyncio

    from strawberry.dataloader import DataLoader

    from core.schema.loaders import load_all

    async def batch(keys: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        return [k * 10 for k in keys]

    loader = DataLoader(batch)
    pending = loader.load(1)
    await asyncio.sleep(0.001)
    pending.cancel()
    await asyncio.sleep(0.05)
    assert await load_all(loader, [1, 2]) == [10, 20]


# -- leaf values that are not plain str/int/float/bool ---------------------------------
# Enum members and dates are coerced on the short path; anything graphql-core treats
# otherwise (an exception as the value is raised, an awaitable is awaited, a value the
# enum or scalar rejects is a field error) takes the ordinary path.


@strawberry.enum
class Shade(enum.Enum):
    DARK = "dark"


# A scalar that puts out anything (as its repr): graphql-core still answers null for
# Undefined, which never reaches the scalar.
Loose = NewType("Loose", object)
LOOSE_SCALARS = {
    Loose: strawberry.scalar(name="Loose", serialize=repr, parse_value=lambda value: value)
}


@strawberry.type
class Odd:
    label: str
    colour: Colour
    maybe_colour: Colour | None
    day: date | None
    blob: JSON | None = None  # a scalar that coerces anything, an exception too
    loose: Loose | None = None


async def _eventually(value: str) -> str:
    return value


def _odd_values() -> list[Odd]:
    return [
        Odd(
            label="vanlig",
            colour=Colour.RED,
            maybe_colour=None,
            day=date(2026, 11, 23),
            loose=3,
        ),
        Odd(
            label=ValueError("Feil som verdi."),  # type: ignore[arg-type]
            colour=Shade.DARK,  # type: ignore[arg-type] # a member of another enum
            maybe_colour="RED",  # type: ignore[arg-type] # a name, not a member
            day="i morgen",  # type: ignore[arg-type]
        ),
        Odd(
            label=_eventually("senere"),  # type: ignore[arg-type]
            colour=Colour.RED,
            maybe_colour=Colour.RED,
            day=None,
        ),
        Odd(
            label="JSON",
            colour=Colour.RED,
            maybe_colour=None,
            day=None,
            blob=KeyError("Feil i JSON-verdien."),
            loose=Undefined,
        ),
    ]


@strawberry.type
class OddQuery:
    @strawberry.field
    def odd(self) -> list[Odd | None]:
        return _odd_values()  # type: ignore[return-value]


async def test_unusual_leaf_values_answer_as_graphql_core() -> None:
    query = "{ odd { label colour maybeColour day blob loose } }"
    from strawberry.schema.config import StrawberryConfig

    config = StrawberryConfig(scalar_map=LOOSE_SCALARS)
    stock = strawberry.Schema(query=OddQuery, config=config)
    fast = strawberry.Schema(
        query=OddQuery, config=config, execution_context_class=PlainFieldExecutor
    )
    install_fast_resolvers(fast)
    expected = await _run_tree(stock, query)
    assert await _run_tree(fast, query) == expected
    # The cases were really there: the raised value, the rejected enum member, the
    # awaited value, a coerced member and date.
    messages = {m for m, _ in expected["errors"]}
    assert "Feil som verdi." in messages
    assert "'Feil i JSON-verdien.'" in messages
    assert expected["data"]["odd"][0] == {
        "label": "vanlig",
        "colour": "RED",
        "maybeColour": None,
        "day": "2026-11-23",
        "blob": None,
        "loose": "3",  # the scalar's own answer
    }
    assert expected["data"]["odd"][1] is None
    assert expected["data"]["odd"][2]["label"] == "senere"
    assert expected["data"]["odd"][3] == {
        "label": "JSON",
        "colour": "RED",
        "maybeColour": None,
        "day": None,
        "blob": None,
        "loose": None,
    }


# -- compiled field sets (core/schema/compiled.py) -----------------------------------------


@strawberry.type
class Reading:
    id: strawberry.ID
    count: int
    ratio: float
    flag: bool
    note: str | None
    colour: Colour

    @strawberry.field
    def shout(self, info: strawberry.Info) -> str:
        return str(self.note).upper()

    @strawberry.field
    def where(self, info: strawberry.Info) -> str:
        """What a method resolver sees of its Info (a LazyInfo on the short path)."""
        selected = [f.name for f in info.selected_fields]
        return f"{info.path.as_list()} {info.field_name} {info.python_name} {selected}"

    @strawberry.field
    def parts(self, info: strawberry.Info) -> list[Part]:
        if self.ratio == 3:  # a list the short path leaves to the general one
            return [SpecialPart(label="særskilt"), Part(label="vanlig")]
        return [Part(label=f"del {i}") for i in range(2)]


@strawberry.type
class Part:
    label: str


@strawberry.type
class SpecialPart(Part):
    """A subclass: not the type's own class, so its type is checked the general way."""


@strawberry.type
class Faulty:
    """A plain field whose attribute raises when read: a field error on both paths."""

    label: str

    def __getattribute__(self, name: str) -> Any:
        if name == "label":
            raise RuntimeError("Kan ikke lese label.")
        return super().__getattribute__(name)


def _readings() -> list[Reading]:
    def reading(**changes: Any) -> Reading:
        values: dict[str, Any] = {
            "id": strawberry.ID("UmVhZGluZzox"),
            "count": 1,
            "ratio": 0.25,
            "flag": True,
            "note": "ok",
            "colour": Colour.RED,
        }
        values.update(changes)
        return Reading(**values)

    return [
        reading(),
        reading(count=2**31 - 1, note=None),  # the largest Int
        reading(count=-(2**31)),  # the smallest Int
        reading(count=2**31),  # one past: a field error
        reading(count=True, flag=1),  # graphql-core coerces a bool to Int, not 1 to Boolean
        reading(count="5", ratio=3),  # a numeric string for Int, an int for Float
        reading(ratio=float("nan")),  # not a Float: a field error
        reading(id=7, note=8),  # an int for ID (coerced), an int for String
        reading(colour="RED"),  # a name, not a member
    ]


@strawberry.type
class ReadingQuery:
    @strawberry.field
    def readings(self) -> list[Reading | None]:
        return _readings()  # type: ignore[return-value]

    @strawberry.field
    def faulty(self) -> list[Faulty | None]:
        return [Faulty(label="a"), Faulty(label="b")]


def test_compiled_field_sets_answer_as_graphql_core() -> None:
    """Every value that a compiled reader does not take as it is falls back to the
    field-by-field path: the same answers, the same errors, the same key order."""
    import json

    from core.schema import compiled

    query = """{ readings { __typename id count ratio flag note colour kind: __typename
      shout again: count id2: id ...on Reading { note ratio } where parts { label } }
      faulty { label __typename } }"""

    def answer(schema: strawberry.Schema) -> tuple[str, list[tuple[str, tuple[Any, ...]]]]:
        result = schema.execute_sync(query)
        errors = sorted((e.message, tuple(e.path or ())) for e in result.errors or [])
        return json.dumps(result.data), errors  # key order included

    stock = strawberry.Schema(query=ReadingQuery)
    fast = strawberry.Schema(query=ReadingQuery, execution_context_class=PlainFieldExecutor)
    install_fast_resolvers(fast)
    compiled._compiled.cache_clear()
    expected = answer(stock)
    assert answer(fast) == expected
    data = json.loads(expected[0])
    messages = {m for m, _ in expected[1]}
    assert any("Int cannot represent non 32-bit" in m for m in messages)
    assert any("Float cannot represent" in m for m in messages)
    assert any("Enum 'Colour' cannot represent" in m for m in messages)
    assert "Kan ikke lese label." in messages
    assert data["readings"][1]["count"] == 2**31 - 1 and data["readings"][1]["note"] is None
    assert data["readings"][4]["count"] == 1
    assert data["readings"][5]["count"] == 5 and data["readings"][5]["ratio"] == 3.0
    assert data["readings"][7]["id"] == "7" and data["readings"][7]["note"] == "8"
    assert list(data["readings"][0]) == [
        "__typename", "id", "count", "ratio", "flag", "note", "colour", "kind", "shout",
        "again", "id2", "where", "parts",
    ]  # fmt: skip
    assert data["readings"][1]["where"] == "['readings', 1, 'where'] where where ['where']"
    assert data["readings"][5]["parts"] == [{"label": "særskilt"}, {"label": "vanlig"}]
    # One reader per selection shape, shared by later requests of the same query.
    compiled_once = compiled._compiled.cache_info().misses
    assert compiled_once >= 2
    assert answer(fast) == expected
    assert compiled._compiled.cache_info().misses == compiled_once
