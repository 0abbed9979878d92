"""A faster path through graphql-core for plain scalar fields.

A page of 100 students with guardians and groups is ~1 800 fields, and most of them are
plain attributes of an object built in advance (`id`, `name`, `email`, ...: see
core/schema/types.py). For each of them graphql-core builds a resolve info, calls
strawberry's wrapper around `getattr`, checks twice whether the result is awaitable and
walks `complete_value` through the non-null wrapper: about two thirds of the request's
CPU time went there. `install_plain_fields` marks those fields once, when the schema is
built, and `PlainFieldExecutor` reads them with one `getattr` and the scalar's own output
coercion.

Only fields strawberry itself treats as "basic" are marked: no resolver, no permission
classes, no field extensions (strawberry turns permission classes into an extension).
Every field whose value is checked or audited (national id, address, children, ...) has a
resolver and keeps the ordinary path. Anything unusual (a null in a non-null field, a
value that is not a plain str/int/float/bool, an exception) also takes the ordinary path,
so errors and their paths are reported exactly as before.

Fields with a resolver that is a plain method `def f(self, info)` (no arguments, not
async, no permission classes or field extensions) get a resolver that calls the method
directly with strawberry's Info, instead of strawberry's generic wrapper, which for every
call parses arguments and chains (here empty) field extensions. The method itself, and so
every check it makes, runs as before; only the wrapper is cheaper.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLID,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLString,
    is_leaf_type,
)
from graphql.pyutils import Path
from strawberry import Schema
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

_MISSING = object()

# Values whose coercion by a built-in or ID scalar cannot need anything but the value.
_PLAIN_VALUES = frozenset({str, int, float, bool})


class PlainField:
    """The resolver of a plain scalar field: the source object's attribute. Callable like
    any resolver, so the ordinary execution path gives the same answer."""

    __slots__ = ("leaf_type", "name", "non_null", "str_as_is")

    def __init__(self, name: str, leaf_type: GraphQLLeafType, non_null: bool) -> None:
        self.name = name
        self.leaf_type = leaf_type
        self.non_null = non_null
        # String and ID put out a str unchanged: no coercion call needed for one.
        self.str_as_is = leaf_type is GraphQLString or leaf_type is GraphQLID

    def __call__(self, source: Any, _info: Any) -> Any:
        return getattr(source, self.name)


def _strawberry_field(field: GraphQLField) -> StrawberryField | None:
    definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    return definition if isinstance(definition, StrawberryField) else None


def _plain_field(field: GraphQLField) -> PlainField | None:
    definition = _strawberry_field(field)
    if definition is None:
        return None
    if definition.base_resolver is not None or definition.extensions or field.args:
        return None
    if not getattr(field.resolve, "_is_default", False):
        return None
    if definition.default_resolver is not getattr:
        return None
    non_null = isinstance(field.type, GraphQLNonNull)
    leaf_type = field.type.of_type if non_null else field.type
    if not is_leaf_type(leaf_type):
        return None
    return PlainField(definition.python_name, leaf_type, non_null)


def _method_resolver(field: GraphQLField, info_class: type) -> Callable[..., Any] | None:
    """A direct resolver for a field resolved by a sync method `(self, info)`, or None."""
    definition = _strawberry_field(field)
    if definition is None or field.args or definition.extensions:
        return None
    resolver = definition.base_resolver
    if resolver is None or resolver.is_async or resolver.arguments:
        return None
    parameters = list(resolver.signature.parameters.values())
    if parameters != [resolver.self_parameter, resolver.info_parameter] or any(
        p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters
    ):
        return None
    method = resolver.wrapped_func

    def resolve(source: Any, info: GraphQLResolveInfo) -> Any:
        return method(source, info_class(_raw_info=info, _field=definition))

    return resolve


def install_fast_resolvers(schema: Schema) -> tuple[int, int]:
    """Give the plain scalar fields of `schema` a `PlainField` resolver and the plain
    method fields a direct resolver; returns how many of each. strawberry's wrapper is
    only bypassed when it would do nothing but call through: not when exception
    handlers are configured, nor for fields with arguments or extensions."""
    if schema.schema_converter._exception_handler_specs:
        return 0, 0
    info_class = schema.config.info_class
    plain_count = method_count = 0
    for named_type in schema._schema.type_map.values():
        if not isinstance(named_type, GraphQLObjectType) or named_type.name.startswith("__"):
            continue
        for field in named_type.fields.values():
            plain = _plain_field(field)
            if plain is not None:
                field.resolve = plain
                plain_count += 1
                continue
            direct = _method_resolver(field, info_class)
            if direct is not None:
                field.resolve = direct
                method_count += 1
    return plain_count, method_count


class PlainFieldExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context, with the short path for `PlainField`s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A middleware (a schema extension with a `resolve` hook) wraps every resolver;
        # then every field takes the ordinary path so the hook sees it. (strawberry
        # always passes a manager, empty when no extension has the hook.)
        manager = self.middleware_manager
        self._short_path = manager is None or not manager.middlewares

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Path,
        position_context: Any,
    ) -> Any:
        field = parent_type.fields.get(field_details_list[0].node.name.value)
        resolve = field.resolve if field is not None else None
        if resolve.__class__ is PlainField and self._short_path:
            value = getattr(source, resolve.name, _MISSING)
            if value is None:
                if not resolve.non_null:
                    return None
            elif value.__class__ is str and resolve.str_as_is:
                return value
            elif value.__class__ in _PLAIN_VALUES:  # (not _MISSING: that takes the long way)
                try:
                    return self.complete_leaf_value(resolve.leaf_type, value)
                except Exception:  # noqa: BLE001, S110 - the ordinary path reports it
                    pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
