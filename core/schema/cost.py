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
            cost = _Estimate(self.context, max_page_size).of(node.selection_set.selections, root, 1)
            if cost > limit:
                self.report_error(
                    GraphQLError(
                        f"Spørringen kan gi for mange objekter (anslått {_number(cost)}, høyst "
                        f"{_number(limit)}): be om færre nivåer av lister, eller bruk `first`.",
                        node,
                    )
                )

    return QueryCost


class _Estimate:
    def __init__(self, context: Any, max_page_size: int):
        self.context = context
        self.max_page_size = max_page_size
        self.fragments_open: set[str] = set()
        # The page size of each connection field being walked, innermost last.
        self.pages: list[int] = []

    def of(self, selections: Sequence[SelectionNode], parent: GraphQLNamedType, times: int) -> int:
        """Objects below `selections` of `parent`, which occurs `times` times."""
        total = 0
        for selection in selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent, times)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.context.schema.get_type(condition.name.value) if condition else parent
                if inner is not None:
                    total += self.of(selection.selection_set.selections, inner, times)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.context.get_fragment(name)
                # Unknown and cyclic fragments are other rules' errors.
                if fragment is None or name in self.fragments_open:
                    continue
                inner = self.context.schema.get_type(fragment.type_condition.name.value)
                if inner is None:
                    continue
                self.fragments_open.add(name)
                total += self.of(fragment.selection_set.selections, inner, times)
                self.fragments_open.discard(name)
        return total

    def _field(self, node: FieldNode, parent: GraphQLNamedType, times: int) -> int:
        fields = getattr(parent, "fields", None)
        definition = fields.get(node.name.value) if fields else None
        if definition is None:
            return 0  # __typename, or an unknown field (reported by another rule)
        field_type = definition.type
        count = times
        while isinstance(field_type, GraphQLNonNull | GraphQLList):
            if isinstance(field_type, GraphQLList):
                count *= self._list_size(parent, node)
            field_type = field_type.of_type
        if not is_composite_type(field_type) or node.selection_set is None:
            return 0
        if _is_connection(field_type):
            # Its `edges` list is as long as the page this field asks for.
            self.pages.append(self._page_size(node))
            try:
                return count + self.of(node.selection_set.selections, field_type, count)
            finally:
                self.pages.pop()
        return count + self.of(node.selection_set.selections, field_type, count)

    def _list_size(self, parent: GraphQLNamedType, node: FieldNode) -> int:
        if _is_connection(parent) and node.name.value == "edges":
            return self.pages[-1] if self.pages else DEFAULT_PAGE_SIZE
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
