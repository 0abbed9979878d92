"""The plugin manager: built-in and third-party plugins, both found through the entry
point group "tavle" (see pyproject.toml), so the built-ins are examples to copy.

`TAVLE_DISABLED_PLUGINS` (comma-separated entry point names) switches plugins off.
"""

from __future__ import annotations

import os
from functools import cache

import pluggy

from core import hookspecs
from core.channels import ChannelInfo

PROJECT = "tavle"


def disabled_plugins() -> set[str]:
    return {n.strip() for n in os.environ.get("TAVLE_DISABLED_PLUGINS", "").split(",") if n.strip()}


def create_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    for name in disabled_plugins():
        manager.set_blocked(name)
    if load_entry_points:
        manager.load_setuptools_entrypoints(PROJECT)
    return manager


@cache
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager, loaded on first use."""
    return create_plugin_manager()


def reset_plugin_manager() -> None:
    """Forget the loaded plugins (tests that install or disable plugins call this)."""
    plugin_manager.cache_clear()


def channels(manager: pluggy.PluginManager | None = None) -> dict[str, ChannelInfo]:
    """Every channel the loaded plugins provide, by name."""
    manager = manager or plugin_manager()
    found: dict[str, ChannelInfo] = {}
    for info in manager.hook.channel_info():
        if info is None:
            continue
        if info.name in found:
            raise RuntimeError(f"two plugins provide the channel {info.name!r}")
        found[info.name] = info
    return found
