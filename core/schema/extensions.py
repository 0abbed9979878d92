"""Schema extensions: error codes and masking, the request's session life cycle, and the
audit of restricted-field reads."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from core import audit
from core.errors import TavleError
from core.schema.errors import BAD_USER_INPUT, INTERNAL_SERVER_ERROR, PUBLIC_CODES

log = logging.getLogger("tavle.graphql")


def _is_client_error(error: GraphQLError) -> bool:
    """Parse, validation and variable errors have no original exception: the query is wrong."""
    return error.original_error is None


class ErrorCodes(SchemaExtension):
    """Every error leaves with an `extensions.code`. Unexpected exceptions are logged with
    their trace on the server and, outside debug, reach the client as a bare message: no
    stack trace, no SQL."""

    def __init__(self, *, debug: bool = False):
        self.debug = debug

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if not result or not result.errors:
            return
        cleaned: list[GraphQLError] = []
        for error in result.errors:
            code = (error.extensions or {}).get("code")
            original = error.original_error
            if isinstance(original, TavleError):
                extensions = {"code": original.code}
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
            elif code in PUBLIC_CODES:
                cleaned.append(error)
            elif _is_client_error(error):
                cleaned.append(
                    GraphQLError(
                        error.message,
                        nodes=error.nodes,
                        source=error.source,
                        positions=error.positions,
                        path=error.path,
                        extensions={**(error.extensions or {}), "code": BAD_USER_INPUT},
                    )
                )
            else:
                log.error("unexpected error in %s", error.path, exc_info=error.original_error)
                message = error.message if self.debug else "Det oppstod en uventet feil."
                cleaned.append(
                    GraphQLError(
                        message,
                        nodes=error.nodes,
                        path=error.path,
                        extensions={"code": INTERNAL_SERVER_ERROR},
                    )
                )
        result.errors = cleaned


class RequestSession(SchemaExtension):
    """Writes the request's restricted-field reads to the audit log, then closes the
    request's database session."""

    async def on_operation(self):  # type: ignore[no-untyped-def]
        yield
        context = self.execution_context.context
        try:
            if context.audited_reads:
                # Reads ran in a read transaction; end it so the audit rows commit alone.
                session = context.db.session
                await session.rollback()
                async with session.begin():
                    await audit.record_many(session, context.audited_reads)
        finally:
            await context.db.close()
