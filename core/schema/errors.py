"""GraphQL errors with a machine-readable `extensions.code`."""

from __future__ import annotations

from graphql import GraphQLError

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
NOT_FOUND = "NOT_FOUND"
BAD_USER_INPUT = "BAD_USER_INPUT"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"

PUBLIC_CODES = frozenset({UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, BAD_USER_INPUT})


def coded(code: str, message: str, **extensions: object) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


def unauthenticated(message: str = "Du må logge inn.") -> GraphQLError:
    return coded(UNAUTHENTICATED, message)


def forbidden(message: str = "Du har ikke tilgang til dette.") -> GraphQLError:
    return coded(FORBIDDEN, message)


def not_found(what: str = "Posten") -> GraphQLError:
    return coded(NOT_FOUND, f"{what} finnes ikke.")


def bad_input(message: str, field: str | None = None) -> GraphQLError:
    return coded(BAD_USER_INPUT, message, **({"field": field} if field else {}))
