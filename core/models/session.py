"""Session tokens: handed out after login, expire, and can be revoked (logout)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, UtcDateTime, utcnow


class SessionToken(Base):
    __tablename__ = "session_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Only the SHA-256 of the token is stored: a database leak gives no live sessions.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(20))  # demo, idporten, feide, cli
    acr: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class OidcLoginState(Base):
    """A login in progress: the state, nonce and PKCE verifier of one authorization request."""

    __tablename__ = "oidc_login_state"

    state: Mapped[str] = mapped_column(String(100), primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    nonce: Mapped[str] = mapped_column(String(100))
    code_verifier: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
