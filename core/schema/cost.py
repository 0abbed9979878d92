"""The cost limit: how many objects an operation's answer could hold, estimated before it
runs, and refused above a limit.

The depth, alias and token limits leave fan-out open: groups -> students -> groups ->
students ... multiplies at every list, and a school administrator's six-level query
made a 122 MB answer and took the server to 1.6 GB. The estimate multiplies down each
path: a connection by its `first` (the largest page when it is a variable, the default
page when absent), any other list by the size such a list typically has at most (a
class holds up to 28 students, a student has one or two guardians). It counts objects
(not scalars), and it does not know the caller's scope: the same query costs the same
for everyone, as with GitHub's and Shopify's node limits, so a client learns the limit
once, not per user.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionNode,
    ValidationRule,
    is_composite_type,
)

from core.schema.pagination import DEFAULT_PAGE_SIZE

# How long a list of each kind is, at most, in a real municipality (rounded up). A list
# not named here counts as DEFAULT_LIST_SIZE.
LIST_SIZES: dict[tuple[str, str], int] = {
    ("Query", "groups"): 100,  # the groups of a school; the municipality's run to thousands
    ("Query", "schools"): 50,
    ("Group", "students"): 30,
    ("Group", "teachers"): 5,
    ("Student", "groups"): 15,
    ("Student", "guardians"): 4,
    ("Guardian", "children"): 6,
    ("Me", "children"): 6,
    ("Me", "roles"): 5,
    ("Document", "deliveries"): 6,
    ("Message", "attachments"): 5,
    ("Message", "recipients"): 60,  # a class's students and their guardians
    ("Message", "replies"): 10,
    ("Question", "options"): 10,
}
DEFAULT_LIST_SIZE = 30


def query_cost_rule(limit: int, max_page_size: int) -> type[ValidationRule]:
    """A validation rule refusing operations estimated above `limit` objects."""

    class QueryCost(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
            root = self.context.schema.get_root_type(node.operation)
            if root is None:
                return
            estimate = _Estimate(self.context, max_page_size, cap=limit + 1)
            cost = estimate.unit(node.selection_set.selections, root, None)
            if cost > limit:
                shown = f"over {_number(limit)}" if cost >= limit + 1 else _number(cost)
                self.report_error(
                    GraphQLError(
                        f"Spørringen kan gi for mange objekter (anslått {shown}, høyst "
                        f"{_number(limit)}): be om færre nivåer av lister, eller bruk `first`.",
                        node,
                    )
                )

    return QueryCost


def query_depth_rule(max_depth: int) -> type[ValidationRule]:
    """A validation rule refusing operations more than `max_depth` levels of fields deep
    (the root field is level 1; introspection, bounded by graphql-core's own rule, is
    not counted). Each fragment's depth is computed once: strawberry's limiter walked a
    fragment again at every spread, and a 3 KB query of spreads took it seconds."""

    class QueryDepth(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
            depth = _Depth(self.context).of(node.selection_set.selections)
            if depth > max_depth:
                name = node.name.value if node.name else "Spørringen"
                self.report_error(
                    GraphQLError(
                        f"{name} er {depth} nivåer dyp (depth), høyst {max_depth} er tillatt.",
                        node,
                    )
                )

    return QueryDepth


class _Depth:
    def __init__(self, context: Any):
        self.context = context
        self.fragments: dict[str, int] = {}
        self.open: set[str] = set()

    def of(self, selections: Sequence[SelectionNode]) -> int:
        deepest = 0
        for selection in selections:
            if isinstance(selection, FieldNode):
                if selection.name.value.startswith("__"):
                    continue
                below = (
                    self.of(selection.selection_set.selections) if selection.selection_set else 0
                )
                deepest = max(deepest, 1 + below)
            elif isinstance(selection, InlineFragmentNode):
                deepest = max(deepest, self.of(selection.selection_set.selections))
            elif isinstance(selection, FragmentSpreadNode):
                deepest = max(deepest, self._fragment(selection.name.value))
        return deepest

    def _fragment(self, name: str) -> int:
        found = self.fragments.get(name)
        if found is not None:
            return found
        fragment = self.context.get_fragment(name)
        # Unknown and cyclic fragments are other rules' errors.
        if fragment is None or name in self.open:
            return 0
        self.open.add(name)
        depth = self.of(fragment.selection_set.selections)
        self.open.discard(name)
        self.fragments[name] = depth
        return depth


class _Estimate:
    """Objects per occurrence of a selection set. Every count is capped at `cap` (one
    more than the limit): past it the exact figure does not matter, and the numbers
    stay small. A fragment's count is computed once per type and page it is spread at,
    so a document of repeated spreads costs its own length, not its expansion."""

    def __init__(self, context: Any, max_page_size: int, cap: int):
        self.context = context
        self.max_page_size = max_page_size
        self.cap = cap
        self.fragments: dict[tuple[str, str, int | None], int] = {}
        self.open: set[str] = set()

    def unit(
        self, selections: Sequence[SelectionNode], parent: GraphQLNamedType, page: int | None
    ) -> int:
        """Objects below one `parent`; `page` is the page size when `parent` is a
        connection (its edges are that many)."""
        total = 0
        for selection in selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.context.schema.get_type(condition.name.value) if condition else parent
                if inner is not None:
                    total += self.unit(selection.selection_set.selections, inner, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment(selection.name.value, page)
            if total >= self.cap:
                return self.cap
        return total

    def _fragment(self, name: str, page: int | None) -> int:
        fragment = self.context.get_fragment(name)
        # Unknown and cyclic fragments are other rules' errors.
        if fragment is None or name in self.open:
            return 0
        inner = self.context.schema.get_type(fragment.type_condition.name.value)
        if inner is None:
            return 0
        key = (name, inner.name, page)
        found = self.fragments.get(key)
        if found is None:
            self.open.add(name)
            found = self.unit(fragment.selection_set.selections, inner, page)
            self.open.discard(name)
            self.fragments[key] = found
        return found

    def _field(self, node: FieldNode, parent: GraphQLNamedType, page: int | None) -> int:
        fields = getattr(parent, "fields", None)
        definition = fields.get(node.name.value) if fields else None
        if definition is None:
            return 0  # __typename, or an unknown field (reported by another rule)
        field_type = definition.type
        count = 1
        while isinstance(field_type, GraphQLNonNull | GraphQLList):
            if isinstance(field_type, GraphQLList):
                count = min(count * self._list_size(parent, node, page), self.cap)
            field_type = field_type.of_type
        if not is_composite_type(field_type) or node.selection_set is None or count == 0:
            return 0
        inner_page = self._page_size(node) if _is_connection(field_type) else None
        below = self.unit(node.selection_set.selections, field_type, inner_page)
        return min(count + count * below, self.cap)

    def _list_size(self, parent: GraphQLNamedType, node: FieldNode, page: int | None) -> int:
        if _is_connection(parent) and node.name.value == "edges":
            return DEFAULT_PAGE_SIZE if page is None else page
        return LIST_SIZES.get((parent.name, node.name.value), DEFAULT_LIST_SIZE)

    def _page_size(self, node: FieldNode) -> int:
        for argument in node.arguments or ():
            if argument.name.value == "first":
                if isinstance(argument.value, IntValueNode):
                    return max(0, int(argument.value.value))
                # A variable: any page the limit on `first` admits.
                return self.max_page_size
        return DEFAULT_PAGE_SIZE


def _is_connection(graphql_type: Any) -> bool:
    return (
        isinstance(graphql_type, GraphQLObjectType)
        and graphql_type.name.endswith("Connection")
        and "edges" in graphql_type.fields
    )


def _number(value: int) -> str:
    """Thousands apart, as Norwegian writes them: 50 000."""
    return f"{value:,}".replace(",", "\u00a0")
