"""The per-request GraphQL context: who is asking, the database session, the loaders,
and the restricted-field reads to audit when the request ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection
from strawberry.dataloader import DataLoader
from strawberry.types import Info as StrawberryInfo

from core.access.grants import Principal, principal_for_token
from core.schema.database import RequestDatabase
from core.schema.errors import forbidden, unauthenticated
from core.schema.loaders import Loaders
from core.state import AppState


@dataclass
class Context:
    request: HTTPConnection
    state: AppState
    db: RequestDatabase
    auth_problem: str | None = None
    # The bearer token, until `authenticate` has read whose it is.
    token: str | None = None
    # The same token, kept for an operation that outlives a request (a subscription),
    # which reads it again to stop once the session is logged out or expires.
    session_token: str | None = None
    _authentication_error: Exception | None = None
    _principal: Principal | None = None
    _loaders: Loaders | None = None
    # Audit events of the request (restricted-field reads, a refused mutation), written
    # in one insert when it ends.
    pending_audit: list[dict[str, Any]] = field(default_factory=list)
    # Loaders of other packages (documents, messages), created on first use.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def principal(self) -> Principal:
        """The caller; raises UNAUTHENTICATED when there is no valid session token."""
        if self._principal is None:
            if self._authentication_error is not None:
                raise RuntimeError("the caller could not be read") from self._authentication_error
            raise unauthenticated(self.auth_problem or "Du må logge inn.")
        return self._principal

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            self._loaders = Loaders(self.db, self.principal)
        return self._loaders

    async def authenticate(self, *, shared: bool) -> None:
        """The bearer token's person and grants, read fresh for every operation (no
        cache, so a revocation or a role change holds from the next request), in one
        statement: on the request's database connection when `shared`, else on a short
        connection of its own."""
        token, self.token = self.token, None
        if token is None:
            return
        self.session_token = token
        policy = self.state.policy
        demo_mode = self.state.settings.demo
        try:
            if shared:
                connection = await self.db.session.connection()
                principal = await principal_for_token(
                    connection, token, policy, demo_mode=demo_mode
                )
            else:
                async with self.state.engine.connect() as connection:
                    principal = await principal_for_token(
                        connection, token, policy, demo_mode=demo_mode
                    )
        except Exception as error:  # noqa: BLE001 - kept for the fields that need the caller
            # The database failed (locked, restarted, timed out). Raised here, it would
            # pass by the error masking (an extension hook, not a field); instead every
            # field that needs the caller fails with it, masked as any unexpected error,
            # and the connection goes back to the pool now.
            self._authentication_error = error
            await self.db.close()
            return
        if principal is None:
            self.auth_problem = "Ugyldig eller utløpt innloggingstoken."
        else:
            self._principal = principal

    def release(self) -> None:
        """Empty the request's loaders once its answer is made. A loader holds its batch
        function, a method of the object that holds the loader: a reference cycle, so
        the rows, objects and futures in its cache (~900 for a page of students) were
        left for the garbage collector instead of being freed when the request ends."""
        holders = [self._loaders, *self.extra.values()]
        for holder in holders:
            for value in vars(holder).values() if holder is not None else ():
                loaders = value.values() if isinstance(value, dict) else (value,)
                for loader in loaders:
                    if isinstance(loader, DataLoader):
                        loader.clear_all()
        if self._loaders is not None:
            self._loaders.release()

    def require(self, resource: str, action: str) -> Principal:
        """The caller, if some role lets them do `action` on `resource` at any scope."""
        principal = self.principal
        if not principal.can(resource, action):
            raise forbidden()
        return principal

    def audit_read(self, resource_type: str, resource_id: int, field_name: str) -> None:
        """Note a read of a restricted field; written in one insert after the request."""
        self.pending_audit.append(
            {
                "actor_id": self._principal.person_id if self._principal else None,
                "action": "read_field",
                "resource_type": resource_type,
                "resource_id": resource_id,
                "detail": {"field": field_name},
            }
        )


Info = StrawberryInfo[Context, None]


@dataclass
class SocketContext(Context):
    """The context of a websocket connection: strawberry puts the connection_init payload
    in `connection_params`, and `authenticate_socket` checks its token. Operations do not
    run in it: each gets a context of its own (`for_operation`)."""

    connection_params: dict[str, Any] | None = None

    def for_operation(self) -> Context:
        """A context for one operation on this connection. Strawberry hands every
        operation of a connection the same context, but they run concurrently and must
        not share a database session, loaders or audited reads; and the connection's
        token is read again when the operation starts (RequestSession), so a logout, an
        expiry or a revoked role holds from the next operation, as over HTTP."""
        return Context(
            request=self.request,
            state=self.state,
            db=RequestDatabase(self.state.sessions()),
            token=self.session_token,
        )


def _socket_token(params: dict[str, Any] | None) -> str | None:
    params = params or {}
    token = params.get("token")
    if isinstance(token, str) and token.strip():
        return token.strip()
    header = params.get("Authorization") or params.get("authorization")
    if isinstance(header, str):
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


async def authenticate_socket(context: SocketContext) -> bool:
    """Log the connection in with the payload's token ({"token": "..."} or
    {"Authorization": "Bearer ..."}); False when it is missing or invalid."""
    token = _socket_token(context.connection_params)
    if token is None:
        return False
    state = context.state
    async with state.sessions() as session:
        principal = await principal_for_token(
            session, token, state.policy, demo_mode=state.settings.demo
        )
    if principal is None:
        return False
    context.session_token = token
    return True
