"""The strawberry schema with its limits: depth, aliases, tokens; introspection off in
production; error codes everywhere."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from strawberry.extensions import DisableIntrospection
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from core.config import Settings
from core.schema.absence import AbsenceMutation, AbsenceQuery
from core.schema.archive import ArchiveEntry, ArchiveFolder, ArchiveMutation, ArchiveQuery
from core.schema.context import SocketContext
from core.schema.documents import Document, DocumentMutation, DocumentQuery
from core.schema.execution import PlainFieldExecutor, install_fast_resolvers
from core.schema.extensions import ErrorCodes, RequestSession, is_unexpected, request_limits
from core.schema.messages import Message, MessageMutation, MessageQuery, MessageSubscription
from core.schema.mutations import Mutation as AccessMutation
from core.schema.queries import Query as ReadQuery
from core.schema.statistics import StatisticsQuery
from core.schema.types import AuditEvent, Employee, Group, Guardian, School, SchoolYear, Student

ALL_TYPES = [
    Student,
    Guardian,
    Employee,
    Group,
    School,
    SchoolYear,
    AuditEvent,
    Document,
    Message,
    ArchiveEntry,
    ArchiveFolder,
]

Query = merge_types(
    "Query",
    (ReadQuery, DocumentQuery, AbsenceQuery, MessageQuery, StatisticsQuery, ArchiveQuery),
)
Mutation = merge_types(
    "Mutation",
    (AccessMutation, DocumentMutation, AbsenceMutation, MessageMutation, ArchiveMutation),
)
Subscription = merge_types("Subscription", (MessageSubscription,))


log = logging.getLogger(__name__)


class TavleSchema(strawberry.Schema):
    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        # Strawberry logs every error at ERROR level with the query excerpt, so a client's
        # typo looked like a server fault in the log. Client errors (bad input, forbidden,
        # not found) are answers: they go to DEBUG. Only our own faults are logged as
        # errors, with their traceback. Strawberry calls this for every operation (also
        # subscriptions and failures before execution) with the errors as raised, before
        # the ErrorCodes extension gives them their codes.
        for error in errors:
            if is_unexpected(error):
                log.error("unexpected error in %s", error.path, exc_info=error.original_error)
            else:
                log.debug("GraphQL error answered: %s", error.message)

    async def stream(  # type: ignore[override]
        self,
        query: str | None,
        variable_values: Any = None,
        context_value: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        # The websocket transport runs every operation of a connection with the
        # connection's one context; each gets its own (SocketContext.for_operation).
        if isinstance(context_value, SocketContext):
            context_value = context_value.for_operation()
        return await super().stream(query, variable_values, context_value, *args, **kwargs)


def build_schema(settings: Settings) -> strawberry.Schema:
    extensions: list = [
        RequestSession,
        lambda: ErrorCodes(debug=settings.debug),
        *request_limits(
            settings.max_query_depth,
            settings.max_aliases,
            settings.max_tokens,
            settings.max_query_cost,
            settings.max_page_size,
        ),
    ]
    if settings.production:
        extensions.append(DisableIntrospection)
    schema = TavleSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=ALL_TYPES,
        extensions=extensions,
        config=StrawberryConfig(auto_camel_case=True),
        execution_context_class=PlainFieldExecutor,
    )
    # Plain scalar fields (no resolver, no permission, no extension) are read with one
    # getattr instead of graphql-core's and strawberry's per-field machinery, and sync
    # `(self, info)` resolvers are called without strawberry's generic wrapper: most of a
    # list page's fields are such, and that machinery was most of its CPU time. Resolvers
    # (and so every permission check in them) still run; see core/schema/execution.py.
    # The SDL is unchanged.
    install_fast_resolvers(schema)
    return schema


def sdl() -> str:
    """The schema as SDL, as committed in schema.graphql."""
    return build_schema(Settings()).as_str() + "\n"
