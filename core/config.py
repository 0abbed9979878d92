"""Settings read from TAVLE_* environment variables.

One frozen object per process; tests build their own with `Settings.from_env(overrides)`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DATABASE_URL = f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'tavle.db'}"


class SettingsError(ValueError):
    """A TAVLE_* variable with a value that cannot be used; the message names it."""


def _int_setting(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise SettingsError(f"{name} må være et heltall fra {low} til {high} (er {raw!r}).")
    return value


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def normalise_database_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite://` URLs and pick the async driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


@dataclass(frozen=True)
class OidcProviderSettings:
    """One OpenID Connect provider (ID-porten or Feide)."""

    name: str
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    # ID-porten calls two-factor "idporten-loa-substantial"; Feide reports its own values.
    minimum_acr: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    env: str = "development"
    debug: bool = False
    demo: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    policies_dir: Path = PROJECT_ROOT / "policies"
    doctypes_dir: Path = PROJECT_ROOT / "doctypes"
    session_ttl_seconds: int = 8 * 3600
    max_query_depth: int = 10  # levels of fields, the root field counted
    max_aliases: int = 30
    max_tokens: int = 2000
    # Objects an answer may be estimated to hold (core/schema/cost.py).
    max_query_cost: int = 50_000
    max_page_size: int = 200
    oidc_providers: tuple[OidcProviderSettings, ...] = field(default_factory=tuple)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        providers = []
        for name in ("idporten", "feide"):
            prefix = f"TAVLE_OIDC_{name.upper()}_"
            issuer = env.get(prefix + "ISSUER")
            if not issuer:
                continue
            default_acr = (
                "idporten-loa-substantial,idporten-loa-high"
                if name == "idporten"
                else "urn:mace:feide.no:auth:level:fad08:3"
            )
            providers.append(
                OidcProviderSettings(
                    name=name,
                    issuer=issuer,
                    client_id=env.get(prefix + "CLIENT_ID", ""),
                    client_secret=env.get(prefix + "CLIENT_SECRET", ""),
                    redirect_uri=env.get(
                        prefix + "REDIRECT_URI",
                        f"http://127.0.0.1:{env.get('TAVLE_PORT', '8000')}/auth/{name}/callback",
                    ),
                    minimum_acr=tuple(
                        a.strip() for a in env.get(prefix + "ACR", default_acr).split(",") if a
                    ),
                )
            )
        mode = env.get("TAVLE_ENV", "development")
        if mode not in ("development", "production"):
            # A typo ("prod") would quietly serve with introspection and GraphiQL on.
            raise SettingsError(f"TAVLE_ENV er 'development' eller 'production', ikke {mode!r}")
        demo = _flag(env.get("TAVLE_DEMO"))
        if demo and mode == "production":
            raise SettingsError(
                "TAVLE_DEMO=1 gir innlogging uten passord og kan ikke brukes med "
                "TAVLE_ENV=production"
            )
        return cls(
            database_url=normalise_database_url(
                env.get("TAVLE_DATABASE_URL", DEFAULT_DATABASE_URL)
            ),
            env=mode,
            debug=_flag(env.get("TAVLE_DEBUG")),
            demo=demo,
            host=env.get("TAVLE_HOST", "127.0.0.1"),
            port=_int_setting(env, "TAVLE_PORT", 8000, 1, 65535),
            policies_dir=Path(env.get("TAVLE_POLICIES_DIR", str(PROJECT_ROOT / "policies"))),
            doctypes_dir=Path(env.get("TAVLE_DOCTYPES_DIR", str(PROJECT_ROOT / "doctypes"))),
            session_ttl_seconds=_int_setting(env, "TAVLE_SESSION_TTL", 8 * 3600, 60, 366 * 86400),
            oidc_providers=tuple(providers),
        )
