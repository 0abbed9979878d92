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
value the scalar or enum does not coerce, an exception or an awaitable as the value) also
takes the ordinary path, so errors and their paths are reported exactly as before.

Objects and lists of objects that a resolver has already returned (not awaitables) are
completed by `PlainFieldExecutor.complete_value` in one step: graphql-core takes eight
nested calls per object (list value, iterable, list item, non-null, value, object value,
collect, execute) and a stream check per list. Anything else (an awaitable, a null, an
object of the wrong type, a list that is not a `list`, @stream or @defer) goes the
general way; an error in a list item is handled by graphql-core's `handle_field_error`
with the item's type, as `complete_list_item_value` does. tests/test_fast_resolvers.py
compares both executors on nulls, wrong types, raising and async resolvers.

Fields with a resolver that is a plain method `def f(self, info)` (no arguments, not
async, no permission classes or field extensions) get a resolver that calls the method
directly with strawberry's Info, instead of strawberry's generic wrapper, which for every
call parses arguments and chains (here empty) field extensions. The method itself, and so
every check it makes, runs as before; only the wrapper is cheaper.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLID,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLString,
    is_leaf_type,
)
from graphql.execution.executor import to_nodes
from graphql.pyutils import Path, Undefined, gather_with_cancel
from strawberry import Schema
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE
from strawberry.types.field import StrawberryField

from core.schema.compiled import Constant, Entry, LeafRead, Leaves, Placeholder, compile_leaves

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


class PlainObjectField:
    """The resolver of a plain field whose value is an object or a list of objects (an
    edge's `node`, a connection's `edges`): the source object's attribute, read by the
    executor itself (see `_execute_direct`)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, source: Any, _info: Any) -> Any:
        return getattr(source, self.name)


def _plain_field(field: GraphQLField) -> PlainField | PlainObjectField | None:
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
        if _object_shape(field.type) is not None:
            return PlainObjectField(definition.python_name)
        return None
    return PlainField(definition.python_name, leaf_type, non_null)


class MethodResolver:
    """The resolver of a field resolved by a sync method `(self, info)`: calls the method
    with strawberry's Info. Callable like any resolver; `PlainFieldExecutor` also calls
    `method` itself with a `LazyInfo` (see `_execute_direct`)."""

    __slots__ = ("definition", "info_class", "lazy_info_class", "method")

    def __init__(self, method: Callable[..., Any], definition: StrawberryField, info_class: type):
        self.method = method
        self.definition = definition
        self.info_class = info_class
        self.lazy_info_class = _lazy_info_class(info_class)

    def __call__(self, source: Any, info: GraphQLResolveInfo) -> Any:
        return self.method(source, self.info_class(_raw_info=info, _field=self.definition))


@functools.cache
def _lazy_info_class(info_class: type) -> type:
    """`info_class` (strawberry's Info or the schema's own) whose GraphQL resolve info is
    built when first asked for: a resolver that reads only `info.context` (most of
    ours) then costs no resolve info. Every property answers as on the eager Info."""

    class LazyInfo(info_class):  # type: ignore[misc, valid-type]
        def __init__(self, executor: PlainFieldExecutor, direct: _DirectField, path: Path) -> None:
            # Not the dataclass __init__: `_raw_info` is the property below.
            self._executor = executor
            self._direct = direct
            self._path = path
            self._field = direct.resolve.definition

        @property
        def context(self) -> Any:
            return self._executor.context_value

        @functools.cached_property
        def _raw_info(self) -> GraphQLResolveInfo:  # type: ignore[override]
            direct = self._direct
            return self._executor.build_resolve_info(
                direct.field, direct.nodes, direct.parent_type, self._path
            )

    # Named as the class it stands for, so that even an error message about it (a
    # missing attribute) reads as it would with the eager Info.
    LazyInfo.__name__ = info_class.__name__
    LazyInfo.__qualname__ = info_class.__qualname__
    return LazyInfo


def _method_resolver(field: GraphQLField, info_class: type) -> MethodResolver | None:
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
    return MethodResolver(resolver.wrapped_func, definition, info_class)


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


def _leaf_candidate(value: Any, is_awaitable: Callable[[Any], bool]) -> bool:
    """Whether graphql-core would coerce `value` as it is (an enum member, a date, ...):
    not an exception (raised as the field's error) nor an awaitable (awaited first)."""
    return not isinstance(value, Exception) and not is_awaitable(value)


@functools.cache
def _exact_class(object_type: GraphQLObjectType) -> type | None:
    """The class whose instances (when not cast to another type with strawberry.cast)
    are certainly objects of `object_type`: strawberry's own type check answers yes for
    them, so it need not be asked per object. None when the type has a check of its
    own."""
    definition = (object_type.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if not isinstance(definition, StrawberryObjectDefinition) or definition.is_type_of:
        return None
    return definition.origin


@functools.cache
def _is_async(function: Callable[..., Any]) -> bool:
    # Asked for every object completed: inspect's answer, once per is_type_of.
    return inspect.iscoroutinefunction(function)


@dataclass(frozen=True, slots=True)
class _ObjectShape:
    """A field type that completes to objects of one object type: `object_type` itself
    (`is_list` False) or a list of them; `item_type` is the type of one value (with its
    non-null wrapper, if any), as graphql-core's error handling needs it."""

    object_type: GraphQLObjectType
    item_type: GraphQLOutputType
    is_list: bool


def _object_shape(return_type: GraphQLOutputType) -> _ObjectShape | None:
    inner = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
    if isinstance(inner, GraphQLObjectType):
        return _ObjectShape(inner, inner, is_list=False)
    if isinstance(inner, GraphQLList):
        item_type = inner.of_type
        item = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
        if isinstance(item, GraphQLObjectType):
            return _ObjectShape(item, item_type, is_list=True)
    return None


@dataclass(frozen=True, slots=True)
class _DirectField:
    """A field without arguments, as execute_field looks it up on every call; `shape`
    when it completes to objects (see _object_shape)."""

    field: GraphQLField
    resolve: Callable[..., Any]
    nodes: list[Any]
    parent_type: GraphQLObjectType
    shape: _ObjectShape | None


@dataclass(slots=True)
class _FieldsPlan:
    """How the executor completes one collected selection set of `parent_type`:
    `entries` for the field-by-field loop; on the short path also `leaves`, the
    generated reader of its plain fields, and `others`, the remaining fields with their
    direct execution (None: graphql-core's execute_field). The grouped field set is
    kept alive with its plan, so its id (the plan's key) cannot be reused."""

    parent_type: GraphQLObjectType
    grouped_field_set: Any
    entries: list[tuple[str, Any, PlainField | None]]
    leaves: Leaves | None = None
    others: list[tuple[str, Any, _DirectField | None]] = dataclasses.field(default_factory=list)


class PlainFieldExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context, with short paths for `PlainField`s and for
    objects and lists of objects that are already there (not awaitable).

    The short paths do what graphql-core's general ones do for those cases, in fewer
    calls; every other case (an awaitable, a null, an object of the wrong type, a list
    that is not a `list`, @stream/@defer) goes the general way, and errors are handled
    by graphql-core's own `handle_field_error`, so answers and error paths are the same.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A middleware (a schema extension with a `resolve` hook) wraps every resolver;
        # then every field takes the ordinary path so the hook sees it. (strawberry
        # always passes a manager, empty when no extension has the hook.)
        manager = self.middleware_manager
        self._short_path = manager is None or not manager.middlewares
        # Per request: the fields of each collected selection set, looked up once. The
        # grouped field set is kept alive with its plan so its id cannot be reused.
        self._field_plans: dict[tuple[GraphQLObjectType, int], _FieldsPlan] = {}
        self._shapes: dict[GraphQLOutputType, _ObjectShape | None] = {}
        # Field groups known to carry no @stream (kept alive here, so an id is not
        # reused): graphql-core reads the directive again for every list it completes.
        self._unstreamed: dict[int, Any] = {}

    def _field_plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> _FieldsPlan:
        key = (parent_type, id(grouped_field_set))
        plan = self._field_plans.get(key)
        if plan is not None:
            return plan
        entries = []
        for response_name, field_details_list in grouped_field_set.items():
            field = parent_type.fields.get(field_details_list[0].node.name.value)
            resolve = field.resolve if field is not None else None
            plain = resolve if resolve.__class__ is PlainField else None
            entries.append((response_name, field_details_list, plain))
        plan = _FieldsPlan(parent_type, grouped_field_set, entries)
        if self._short_path:
            self._compile(plan, parent_type)
        self._field_plans[key] = plan
        return plan

    def _compile(self, plan: _FieldsPlan, parent_type: GraphQLObjectType) -> None:
        """The generated leaf reader of `plan` (core/schema/compiled.py) and, for each
        other field, how to execute it: directly when it has no arguments."""
        compiled: list[Entry] = []
        for response_name, field_details_list, plain in plan.entries:
            node = field_details_list[0].node
            if plain is not None:
                compiled.append(
                    LeafRead(response_name, plain.name, plain.leaf_type, plain.non_null)
                )
                continue
            if node.name.value == "__typename":
                compiled.append(Constant(response_name, parent_type.name))
                continue
            compiled.append(Placeholder(response_name))
            field = parent_type.fields.get(node.name.value)
            direct = None
            if field is not None and not field.args and not node.arguments:
                direct = _DirectField(
                    field,
                    field.resolve or self.field_resolver,
                    to_nodes(field_details_list),
                    parent_type,
                    _object_shape(field.type),
                )
            plan.others.append((response_name, field_details_list, direct))
        plan.leaves = compile_leaves(compiled, self.is_awaitable)

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        if not self._short_path:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        plan = self._field_plan(parent_type, grouped_field_set)
        if plan.leaves is not None:
            results = plan.leaves(source_value)
            if results is not None:
                return self._complete_others(plan, source_value, path, results, position_context)
        results = {}
        awaitable_fields: list[str] = []
        is_awaitable = self.is_awaitable
        try:
            for response_name, field_details_list, plain in plan.entries:
                if plain is not None:
                    try:
                        value = getattr(source_value, plain.name, _MISSING)
                    except Exception:  # noqa: BLE001 - the ordinary path reads it again and reports
                        value = _MISSING
                    if value is None:
                        if not plain.non_null:
                            results[response_name] = None
                            continue
                    elif value.__class__ is str and plain.str_as_is:
                        results[response_name] = value
                        continue
                    elif value is not _MISSING and value is not Undefined:
                        try:
                            if value.__class__ in _PLAIN_VALUES or _leaf_candidate(
                                value, is_awaitable
                            ):
                                results[response_name] = self.complete_leaf_value(
                                    plain.leaf_type, value
                                )
                                continue
                        except Exception:  # noqa: BLE001, S110 - the ordinary path reports it
                            pass
                # Everything else (and a plain field with an unusual value) takes
                # graphql-core's path, which also reports the errors.
                result = self.execute_field(
                    parent_type,
                    source_value,
                    field_details_list,
                    Path(path, response_name, parent_type.name),
                    position_context,
                )
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[name] for name in awaitable_fields])
            raise
        return self._filled(results, awaitable_fields)

    def _complete_others(
        self,
        plan: _FieldsPlan,
        source_value: Any,
        path: Path | None,
        results: dict[str, Any],
        position_context: Any,
    ) -> Any:
        """Fill in the fields of `results` that are not plain leaves (the leaves are
        there already), as execute_fields does; `results` keeps the selection's order."""
        awaitable_fields: list[str] = []
        is_awaitable = self.is_awaitable
        try:
            for response_name, field_details_list, direct in plan.others:
                if direct is None:
                    result = self.execute_field(
                        plan.parent_type,
                        source_value,
                        field_details_list,
                        Path(path, response_name, plan.parent_type.name),
                        position_context,
                    )
                else:
                    result = self._execute_direct(
                        direct,
                        source_value,
                        field_details_list,
                        Path(path, response_name, direct.parent_type.name),
                        position_context,
                    )
                if result is Undefined:
                    del results[response_name]
                    continue
                results[response_name] = result
                if is_awaitable(result):
                    awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[name] for name in awaitable_fields])
            raise
        return self._filled(results, awaitable_fields)

    def _execute_direct(
        self,
        direct: _DirectField,
        source: Any,
        field_details_list: Any,
        path: Path,
        position_context: Any,
    ) -> Any:
        """graphql-core's execute_field for a field without arguments, with what it
        looks up on every call (field definition, node list, middleware) looked up once;
        the resolver, completion and error handling are the same calls. A method
        resolver gets a `LazyInfo` and a plain object field is read directly; objects
        they give are completed without a resolve info unless one is needed
        (`_complete_known`)."""
        return_type = direct.field.type
        resolve = direct.resolve
        try:
            kind = resolve.__class__
            if kind is MethodResolver or kind is PlainObjectField:
                lazy = None
                if kind is MethodResolver:
                    lazy = resolve.lazy_info_class(self, direct, path)
                    result = resolve.method(source, lazy)
                else:
                    result = getattr(source, resolve.name)
                if position_context is None:
                    completed = self._complete_known(direct, field_details_list, path, result)
                    if completed is not _MISSING:
                        if self.is_awaitable(completed):
                            return self._await_completed(
                                completed, return_type, field_details_list, path
                            )
                        return completed
                info = (
                    lazy._raw_info
                    if lazy is not None
                    else self.build_resolve_info(
                        direct.field, direct.nodes, direct.parent_type, path
                    )
                )
            else:
                info = self.build_resolve_info(direct.field, direct.nodes, direct.parent_type, path)
                result = resolve(source, info)
            if self.is_awaitable(result):
                return self.complete_awaitable_value(
                    return_type, field_details_list, info, path, result, position_context
                )
            completed = self.complete_value(
                return_type, field_details_list, info, path, result, position_context
            )
            if self.is_awaitable(completed):
                return self._await_completed(completed, return_type, field_details_list, path)
        except Exception as raw_error:  # noqa: BLE001 - handled as graphql-core does
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        return completed

    def _complete_known(
        self, direct: _DirectField, field_details_list: Any, path: Path, result: Any
    ) -> Any:
        """complete_value without a resolve info, for what needs none: a list of
        objects of the type's own class, or one such object; `_MISSING` for anything
        else (then the general way, with an info)."""
        shape = direct.shape
        if shape is None or result is None:
            return _MISSING
        if shape.is_list:
            if result.__class__ is not list:
                return _MISSING
            return self._complete_object_list(shape, field_details_list, None, path, result)
        object_type = shape.object_type
        if (
            result.__class__ is not _exact_class(object_type)
            or getattr(result, TYPE_CAST_ATTRIBUTE, None) is not None
        ):
            return _MISSING
        grouped, defer_usages, _forbidden = self.collect_subfields(object_type, field_details_list)
        if defer_usages:
            return _MISSING
        # What complete_object_value does once the type check has said yes.
        return self.execute_fields(object_type, result, path, grouped, None)

    async def _await_completed(
        self, completed: Any, return_type: GraphQLOutputType, field_details_list: Any, path: Path
    ) -> Any:
        try:
            return await completed
        except Exception as raw_error:  # noqa: BLE001 - handled as graphql-core does
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None

    def _filled(self, container: Any, awaitable_keys: list[Any]) -> Any:
        """`container` as it is when none of its values is awaitable, else an awaitable
        of it with those values awaited (`_await_in_place`)."""
        if not awaitable_keys:
            return container
        return self._await_in_place(container, awaitable_keys)

    @staticmethod
    async def _await_in_place(container: Any, keys: list[Any]) -> Any:
        """Replace `container[key]` (a dict of fields or a list of items) for each of
        `keys` by its awaited value, concurrently, as graphql-core's execute_fields and
        complete_iterable_value do; one awaitable is awaited without a gather."""
        if len(keys) == 1:
            container[keys[0]] = await container[keys[0]]
            return container
        awaited = await gather_with_cancel(*(container[key] for key in keys))
        for key, value in zip(keys, awaited, strict=True):
            container[key] = value
        return container

    def complete_value(
        self,
        return_type: GraphQLOutputType,
        field_details_list: Any,
        info: GraphQLResolveInfo,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        shape = self._shapes.get(return_type, _MISSING)
        if shape is _MISSING:
            shape = self._shapes[return_type] = _object_shape(return_type)
        # Not inside a deferred fragment (position_context), where graphql-core's
        # incremental executor keeps its own books; not for a null or Undefined result.
        if (
            shape is not None
            and self._short_path
            and position_context is None
            and result is not None
            and result is not Undefined
        ):
            if shape.is_list:
                if result.__class__ is list:
                    completed = self._complete_object_list(
                        shape, field_details_list, info, path, result
                    )
                    if completed is not _MISSING:
                        return completed
            elif self._is_object_of(shape.object_type, result, info):
                grouped, defer_usages, _forbidden = self.collect_subfields(
                    shape.object_type, field_details_list
                )
                if not defer_usages:
                    # What complete_object_value does once is_type_of has said yes.
                    return self.execute_collected_subfields(
                        shape.object_type, result, path, grouped, defer_usages, None
                    )
        return super().complete_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _is_object_of(
        self, object_type: GraphQLObjectType, value: Any, info: GraphQLResolveInfo
    ) -> bool:
        """True when `value` is certainly an object of `object_type` (False also when the
        answer is not known now: the general path then decides, and reports)."""
        if (
            value is None
            or value is Undefined
            or self.is_awaitable(value)
            or isinstance(value, Exception)
        ):
            return False
        is_type_of = object_type.is_type_of
        if is_type_of is None:
            return True
        if _is_async(is_type_of):
            return False  # only the general path awaits it
        try:
            answer = is_type_of(value, info)
        except Exception:  # noqa: BLE001 - the general path asks again and reports it
            return False
        if self.is_awaitable(answer):
            if inspect.iscoroutine(answer):
                answer.close()  # never started: the general path asks again
            return False
        return answer is True

    def _is_unstreamed(self, field_details_list: Any, path: Path) -> bool:
        """`get_stream_usage(...) is None`, remembered per field group. The answer
        depends on the field nodes and the request's variables, both fixed for this
        executor; an inner list of a list (an int path key) is never streamed."""
        if isinstance(path.key, int):
            return True
        known = self._unstreamed.get(id(field_details_list))
        if known is field_details_list:
            return True
        if self.get_stream_usage(field_details_list, path) is not None:
            return False
        self._unstreamed[id(field_details_list)] = field_details_list
        return True

    def _complete_object_list(
        self,
        shape: _ObjectShape,
        field_details_list: Any,
        info: GraphQLResolveInfo | None,
        path: Path,
        items: list[Any],
    ) -> Any:
        """complete_iterable_value for a list whose items are all objects of the type;
        `_MISSING` (nothing done yet) when one is not, so the general path takes it.
        Without `info` (not built yet) only instances of the type's own class are
        known to be objects of it; anything else goes the general way."""
        object_type = shape.object_type
        exact = _exact_class(object_type)
        if not all(
            (item.__class__ is exact and getattr(item, TYPE_CAST_ATTRIBUTE, None) is None)
            or (info is not None and self._is_object_of(object_type, item, info))
            for item in items
        ):
            return _MISSING
        if not self._is_unstreamed(field_details_list, path):
            return _MISSING
        grouped, defer_usages, _forbidden = self.collect_subfields(object_type, field_details_list)
        if defer_usages:
            return _MISSING
        plan = self._field_plan(object_type, grouped)
        leaves = plan.leaves
        if leaves is not None and not plan.others:
            # Objects of plain fields only (guardians, groups): each is its reader's dict,
            # with no path or field loop unless a value is unusual (None: redone below).
            ready = [leaves(item) for item in items]
            if not any(value is None for value in ready):
                return ready
        else:
            ready = None
        is_awaitable = self.is_awaitable
        completed: list[Any] = []
        awaitable_indices: list[int] = []
        try:
            for index, item in enumerate(items):
                if ready is not None and ready[index] is not None:
                    completed.append(ready[index])
                    continue
                item_path = path.add_key(index, None)
                # As complete_list_item_value: an error in an item is that item's field
                # error (null, or raised on when the item type is non-null).
                try:
                    value = self.execute_collected_subfields(
                        object_type, item, item_path, grouped, defer_usages, None
                    )
                except Exception as raw_error:  # noqa: BLE001 - handled as graphql-core does
                    self.handle_field_error(
                        raw_error, shape.item_type, field_details_list, item_path
                    )
                    value = None
                if is_awaitable(value):
                    value = self._await_item(value, shape.item_type, field_details_list, item_path)
                    awaitable_indices.append(index)
                completed.append(value)
        except Exception:
            if awaitable_indices:
                self.settle_in_background([completed[i] for i in awaitable_indices])
            raise
        return self._filled(completed, awaitable_indices)

    async def _await_item(
        self, value: Any, item_type: GraphQLOutputType, field_details_list: Any, path: Path
    ) -> Any:
        try:
            return await value
        except Exception as raw_error:  # noqa: BLE001 - handled as graphql-core does
            self.handle_field_error(raw_error, item_type, field_details_list, path)
            return None
