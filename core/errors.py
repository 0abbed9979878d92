"""Domain errors with the code the API reports (`extensions.code` in GraphQL, a message
and exit status on the CLI). Core code raises these; the API layer only translates."""

from __future__ import annotations


class TavleError(Exception):
    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class BadInput(TavleError):
    code = "BAD_USER_INPUT"


class Forbidden(TavleError):
    code = "FORBIDDEN"

    def __init__(self, message: str = "Du har ikke tilgang til dette.", **kwargs: str | None):
        super().__init__(message, **kwargs)


class NotFound(TavleError):
    code = "NOT_FOUND"
