"""Schema extensions: error codes and masking, the request's session life cycle, and the
audit of restricted-field reads."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    StringValueNode,
    ValidationRule,
    parse,
    validate,
)
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    SchemaExtension,
)
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import validate_document
from strawberry.types.execution import ExecutionResult
from strawberry.types.graphql import OperationType

from core import audit
from core.errors import TavleError
from core.schema.cost import query_cost_rule, query_depth_rule
from core.schema.errors import (
    BAD_USER_INPUT,
    FORBIDDEN,
    INTERNAL_SERVER_ERROR,
    NOT_FOUND,
    PUBLIC_CODES,
)

log = logging.getLogger("tavle.graphql")

# Distinct query texts kept parsed and validated. Bounded, so a client sending ever new
# queries cannot grow the memory; the front end's few dozen queries all fit.
QUERY_CACHE_SIZE = 256


class NoNulInStrings(ValidationRule):
    """A NUL character in a string literal of the query (variables are checked when
    their JSON is read, core/request_json.py): PostgreSQL's text type cannot hold it and
    SQLite's LIKE stops at it, so it is bad input wherever it is written."""

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if "\x00" in node.value:
            self.report_error(GraphQLError("Tekst kan ikke inneholde NUL-tegnet (\\u0000).", node))


def request_limits(
    max_depth: int, max_aliases: int, max_tokens: int, max_cost: int, max_page_size: int
) -> list[Callable[[], Any]]:
    """The depth, alias, token and cost limits, and caches of parsed and validated queries.

    Parsing and validating a query costs more than running a small one, and apps send
    the same few query texts again and again. The validation rules are created once
    here (strawberry's limiters make a new rule class per instance, which would both
    cost time and make every request miss the validation cache). The token limit is a
    parse option, so it is part of the parse cache's key and still holds for every query.
    """
    rules = [
        NoNulInStrings,
        query_depth_rule(max_depth),
        *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
        query_cost_rule(max_cost, max_page_size),
    ]
    return [
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        ParseCache,
        ValidateCache,
    ]


@lru_cache(maxsize=QUERY_CACHE_SIZE)
def _parse(query: str, **options: Any) -> DocumentNode:
    return parse(query, **options)


class ParseCache(SchemaExtension):
    """Reuse the parsed document of a query text seen before.

    Unlike strawberry's ParserCache, a query that does not parse is left to strawberry's
    own parser, which reports the syntax error the ordinary way (with its error code);
    an exception raised from this hook would skip the other extensions' handling."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query:
            try:
                context.graphql_document = _parse(context.query, **context.parse_options)
            except GraphQLError:
                pass
        yield


# Validation results by the identity of schema, document and rules. The document comes
# from the parse cache, so a repeated query is the same object; keying by identity
# spares hashing it, which walks the whole syntax tree (~2 400 nodes for a page of
# students). The objects are kept in the entry, so an id is not reused while cached.
_validated: OrderedDict[tuple[int, ...], tuple[tuple[Any, ...], list[GraphQLError]]] = OrderedDict()


def _validate(schema: Any, document: DocumentNode, rules: tuple[Any, ...]) -> list[GraphQLError]:
    objects = (schema, document, *rules)
    key = tuple(map(id, objects))
    found = _validated.get(key)
    if found is not None and all(a is b for a, b in zip(found[0], objects, strict=True)):
        _validated.move_to_end(key)
        return found[1]
    errors = validate_document(schema, document, rules)
    _validated[key] = (objects, errors)
    if len(_validated) > QUERY_CACHE_SIZE:
        _validated.popitem(last=False)
    return errors


class ValidateCache(SchemaExtension):
    """Reuse the validation result of a document seen before (keyed by the document, the
    schema and the rules, which are the same objects from request to request).

    A limit rule can trip over a document that the standard rules reject (strawberry's
    depth limiter raises KeyError on an unknown fragment); then the standard rules alone
    report what is wrong, so the client gets a validation error, not a server error."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        schema = context.schema._schema
        document = context.graphql_document
        if document is not None:
            try:
                errors = _validate(schema, document, tuple(context.validation_rules))
            except Exception:  # noqa: BLE001 - see the docstring
                errors = validate(schema, document) or [GraphQLError("Ugyldig spørring.")]
            if not errors and _unnamed_choice(context, document):
                # The GraphQL spec makes this a request error; strawberry would run the
                # first operation, which is rarely what a client that sent two meant.
                errors = [
                    GraphQLError(
                        "Spørringen har flere operasjoner: oppgi hvilken med operationName."
                    )
                ]
            if not errors and _subscription_over_http(context):
                # Strawberry would run it as a query and fail on the stream it returns.
                errors = [
                    GraphQLError(
                        "Abonnementer går over websocket (graphql-transport-ws) på /graphql."
                    )
                ]
            context.pre_execution_errors = errors
        yield


def _subscription_over_http(context: Any) -> bool:
    request = getattr(context.context, "request", None)
    if request is None or request.scope["type"] == "websocket":
        return False
    return _operation_type(context) is OperationType.SUBSCRIPTION


def _unnamed_choice(context: Any, document: DocumentNode) -> bool:
    """Several operations in the document and no operationName to choose one."""
    if getattr(context, "_provided_operation_name", None) is not None:
        return False
    operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
    return operations > 1


def _is_client_error(error: GraphQLError) -> bool:
    """An error of the request itself: a syntax or validation error, or a variable value
    that does not fit its type (these come before execution, so they have no path, and
    carry at most the scalar's or enum's own complaint)."""
    original = error.original_error
    if original is None:
        return True
    if isinstance(original, REQUEST_ERRORS):
        return True
    return error.path is None and isinstance(original, GraphQLError | ValueError | TypeError)


def error_code(error: GraphQLError) -> str:
    """The code `ErrorCodes` gives the error."""
    if isinstance(error.original_error, TavleError):
        return error.original_error.code
    code = (error.extensions or {}).get("code")
    if code in PUBLIC_CODES:
        return code
    if code == INTERNAL_SERVER_ERROR and error.original_error is None:
        return INTERNAL_SERVER_ERROR  # masked already (a withheld answer)
    return BAD_USER_INPUT if _is_client_error(error) else INTERNAL_SERVER_ERROR


def is_unexpected(error: GraphQLError) -> bool:
    """A fault of ours (logged with its trace, masked for the client), not an answer:
    neither a Tavle error, nor one with a public code, nor an error of the request."""
    if isinstance(error.original_error, TavleError):
        return False
    if (error.extensions or {}).get("code") in PUBLIC_CODES:
        return False
    return not _is_client_error(error)


class ErrorCodes(SchemaExtension):
    """Every error leaves with an `extensions.code`. Unexpected exceptions are logged with
    their trace on the server and, outside debug, reach the client as a bare message: no
    stack trace, no SQL. The same over HTTP and over a websocket."""

    def __init__(self, *, debug: bool = False):
        self.debug = debug
        self._streamed = False

    def on_stream_result(self, result: Any) -> Iterator[None]:
        # A websocket operation's results are sent one by one while the operation is
        # still open (Schema.stream), before `on_operation` gets back control: each is
        # cleaned as it leaves.
        self._streamed = True
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._cleaned(errors)
        yield

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if self._streamed or not result or not result.errors:
            return
        result.errors = self._cleaned(result.errors)

    def _cleaned(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        cleaned: list[GraphQLError] = []
        for error in errors:
            code = error_code(error)
            original = error.original_error
            if isinstance(original, TavleError):
                extensions = {"code": code}
                if original.field:
                    extensions["field"] = original.field
                cleaned.append(
                    GraphQLError(
                        original.message,
                        nodes=error.nodes,
                        source=error.source,
                        positions=error.positions,
                        path=error.path,
                        extensions=extensions,
                    )
                )
            elif code != INTERNAL_SERVER_ERROR or original is None:
                # Coded in place: the error keeps its class and original, by which the
                # websocket transport closes the connection (4400) on a query that does
                # not parse or names an unknown operation.
                error.extensions = {**(error.extensions or {}), "code": code}
                cleaned.append(error)
            else:
                # Logged (with its trace) by TavleSchema.process_errors, which sees every
                # error of every kind of operation, before this masks it.
                message = error.message if self.debug else "Det oppstod en uventet feil."
                cleaned.append(
                    GraphQLError(
                        message,
                        nodes=error.nodes,
                        path=error.path,
                        extensions={"code": INTERNAL_SERVER_ERROR},
                    )
                )
        return cleaned


# Errors of the request itself that strawberry raises as plain exceptions: no query, an
# unknown operation name, an operation type the transport does not take.
REQUEST_ERRORS = (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError)

# The answers by which a mutation is refused; an unexpected fault is logged instead.
REFUSALS = frozenset({FORBIDDEN, NOT_FOUND, BAD_USER_INPUT})


class RequestSession(SchemaExtension):
    """Writes the request's audit events (restricted-field reads, a refused mutation)
    before its answer leaves, then closes the request's database session."""

    def __init__(self) -> None:
        self._streamed = False

    async def on_execute(self):  # type: ignore[no-untyped-def]
        # Whose token it is, read before any resolver runs. A query reads it on the
        # connection its resolvers then use; a mutation or subscription on a short one of
        # its own, so that a mutation (which writes in a transaction of its own) never
        # holds two connections at once.
        execution = self.execution_context
        await execution.context.authenticate(shared=execution.operation_type is OperationType.QUERY)
        yield

    async def on_stream_result(self, result: Any):  # type: ignore[no-untyped-def]
        # A websocket operation's results (each pushed message of a subscription) are
        # sent as they come, while the operation is still open: each one's audit events
        # are written before it leaves, as an HTTP answer's are.
        self._streamed = True
        if isinstance(result, ExecutionResult):
            await self._finish(result)
        yield

    async def on_operation(self):  # type: ignore[no-untyped-def]
        context = self.execution_context.context
        try:
            yield
            result = self.execution_context.result
            if not self._streamed and result is not None:
                await self._finish(result)
        finally:
            # Also when an exception comes through the operation (then it is thrown in
            # at the yield): the session and its connection never outlive the request.
            context.release()
            await context.db.close()

    async def _finish(self, result: ExecutionResult) -> None:
        context = self.execution_context.context
        self._note_refused_mutation(context, result)
        if not context.pending_audit:
            return
        events, context.pending_audit = context.pending_audit, []
        # Shielded: a client that hangs up as the answer goes out does not cancel the
        # record of what it was given.
        written = await asyncio.shield(self._write_audit(context, events))
        if not written and _operation_type(self.execution_context) is not OperationType.MUTATION:
            # A read of a national id must not leave without its trace. A mutation's
            # answer still goes out: its change is committed, and audited in its own
            # transaction; an error would have the client try it again.
            result.data = None
            result.errors = [
                GraphQLError(
                    "Det oppstod en uventet feil.", extensions={"code": INTERNAL_SERVER_ERROR}
                )
            ]

    async def _write_audit(self, context: Any, events: list[dict[str, Any]]) -> bool:
        session = context.db.session
        try:
            # Reads ran in a read transaction; end it so the audit rows commit alone.
            await session.rollback()
            async with session.begin():
                await audit.record_many(session, events)
        except Exception:  # noqa: BLE001 - the caller withholds the answer
            log.exception("could not write the request's audit events")
            return False
        return True

    def _note_refused_mutation(self, context: Any, result: ExecutionResult) -> None:
        """A logged-in person's mutation that was refused (not allowed, not found, bad
        input) changed nothing, but the attempt is a use of the system like any other:
        an audit event names the mutations (by name, not by the client's alias) and
        why."""
        execution = self.execution_context
        principal = getattr(context, "_principal", None)
        if principal is None or not result.errors:
            return
        if _operation_type(execution) is not OperationType.MUTATION:
            return
        names = _root_field_names(execution)
        refused = [
            {"field": names.get(error.path[0], error.path[0]) if error.path else None, "code": code}
            for error in result.errors
            if (code := error_code(error)) in REFUSALS
        ]
        if refused:
            context.pending_audit.append(
                {
                    "actor_id": principal.person_id,
                    "action": "mutation_refused",
                    "resource_type": None,
                    "resource_id": None,
                    "detail": {"refused": refused},
                }
            )


def _root_field_names(execution: Any) -> dict[str, str]:
    """Response key (alias or name) -> field name, for the operation's root fields."""
    document = execution.graphql_document
    names: dict[str, str] = {}
    if document is None:
        return names
    wanted = execution.operation_name
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if wanted is not None and (definition.name is None or definition.name.value != wanted):
            continue
        for selection in definition.selection_set.selections:
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                names[key] = selection.name.value
    return names


def _operation_type(execution: Any) -> OperationType | None:
    try:
        return execution.operation_type
    except Exception:  # noqa: BLE001 - a document that did not parse has no type
        return None
