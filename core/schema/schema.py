"""The strawberry schema with its limits: depth, aliases, tokens; introspection off in
production; error codes everywhere."""

from __future__ import annotations

import strawberry
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from core.config import Settings
from core.schema.documents import Document, DocumentMutation, DocumentQuery
from core.schema.extensions import ErrorCodes, RequestSession
from core.schema.mutations import Mutation as AccessMutation
from core.schema.queries import Query as ReadQuery
from core.schema.types import AuditEvent, Employee, Group, Guardian, School, SchoolYear, Student

ALL_TYPES = [Student, Guardian, Employee, Group, School, SchoolYear, AuditEvent, Document]

Query = merge_types("Query", (ReadQuery, DocumentQuery))
Mutation = merge_types("Mutation", (AccessMutation, DocumentMutation))


def build_schema(settings: Settings) -> strawberry.Schema:
    extensions: list = [
        RequestSession,
        lambda: ErrorCodes(debug=settings.debug),
        lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
        lambda: MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
    ]
    if settings.production:
        extensions.append(DisableIntrospection)
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        types=ALL_TYPES,
        extensions=extensions,
        config=StrawberryConfig(auto_camel_case=True),
    )


def sdl() -> str:
    """The schema as SDL, as committed in schema.graphql."""
    return build_schema(Settings()).as_str() + "\n"
