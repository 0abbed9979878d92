"""What a running application holds: settings, the database, the loaded policy, the
doctypes and the channels the plugins provide."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.access.policy import Policy
from core.channels import ChannelInfo
from core.config import Settings


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    policy: Policy
    doctypes: dict[str, Any] = field(default_factory=dict)
    channels: dict[str, ChannelInfo] = field(default_factory=dict)
