"""The plugin manager: built-in and third-party plugins, both found through the entry point
group "tavle" (see pyproject.toml), so the built-ins are examples to copy.

A plugin is any module (or object) with `@hookimpl` functions named after the hooks in
core/hookspecs.py; a distribution makes it known by declaring an entry point in the group
"tavle", e.g. `fax = "tavle_fax.plugin"`. The entry point's name is the plugin's name.

`TAVLE_DISABLED_PLUGINS` (comma-separated entry point names, e.g. "sms,svarut") switches
plugins off: they are never imported. The guide for plugin authors is docs/plugins.md.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
from functools import cache

import pluggy

from core import hookspecs
from core.channels import ChannelInfo

PROJECT = "tavle"

log = logging.getLogger("tavle.plugins")


class PluginError(RuntimeError):
    """A plugin could not be loaded or breaks the hook contract; the message names it."""


def disabled_plugins() -> set[str]:
    """The entry point names in TAVLE_DISABLED_PLUGINS."""
    return {n.strip() for n in os.environ.get("TAVLE_DISABLED_PLUGINS", "").split(",") if n.strip()}


def _entry_points() -> list[tuple[importlib.metadata.EntryPoint, str]]:
    """Every entry point in the group with the distribution declaring it, once per name.

    The same distribution can be visible twice (an editable install and the source tree's
    egg-info both on sys.path, one perhaps stale); the first on sys.path counts, as it is
    the one Python imports. Two different distributions claiming one name is an error:
    which one won would depend on the order of sys.path.
    """
    found: dict[str, tuple[importlib.metadata.EntryPoint, str]] = {}
    for dist in importlib.metadata.distributions():
        # PEP 503 normalisation: "tavle_printmail" and "Tavle-Printmail" are one project.
        dist_name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "?").lower()
        for entry_point in dist.entry_points:
            if entry_point.group != PROJECT:
                continue
            earlier = found.get(entry_point.name)
            if earlier is None:
                found[entry_point.name] = (entry_point, dist_name)
            elif earlier[1] != dist_name:
                raise PluginError(
                    f"two plugins are named {entry_point.name!r}: {earlier[0].value} "
                    f"(from {earlier[1]}) and {entry_point.value} (from {dist_name})"
                )
    return list(found.values())


def create_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A new manager with Tavle's hookspecs; with `load_entry_points` every plugin in the
    entry point group "tavle" that is not disabled is imported and registered.

    Raises `PluginError` naming the plugin when one cannot be imported, when its hook
    implementations do not match the hookspecs (an argument the hook does not have), or
    when it implements a hook that does not exist (a misspelt name would otherwise never
    be called, silently).
    """
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    disabled = disabled_plugins()
    # Blocked names are skipped before import, so a disabled plugin's module never runs.
    for name in disabled:
        manager.set_blocked(name)
    if not load_entry_points:
        return manager
    entry_points = _entry_points()
    unknown = disabled - {entry_point.name for entry_point, _ in entry_points}
    if unknown:
        log.warning(
            "TAVLE_DISABLED_PLUGINS names plugins that are not installed: %s",
            ", ".join(sorted(unknown)),
        )
    for entry_point, dist_name in entry_points:
        if manager.is_blocked(entry_point.name):
            continue
        where = f"{entry_point.name!r} ({entry_point.value}, from {dist_name})"
        try:
            plugin = entry_point.load()
        except Exception as error:
            raise PluginError(f"the plugin {where} could not be imported: {error}") from error
        try:
            manager.register(plugin, name=entry_point.name)
            manager.check_pending()
        except (pluggy.PluginValidationError, ValueError) as error:
            raise PluginError(f"the plugin {where} is invalid: {error}") from error
    return manager


@cache
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager, loaded on first use."""
    return create_plugin_manager()


def reset_plugin_manager() -> None:
    """Forget the loaded plugins, so the next `plugin_manager()` looks for entry points
    and reads TAVLE_DISABLED_PLUGINS again (tests that install or disable plugins)."""
    plugin_manager.cache_clear()


def plugin_names(manager: pluggy.PluginManager | None = None) -> list[str]:
    """The names of the registered plugins (entry point names), sorted."""
    manager = manager or plugin_manager()
    return sorted(name for name, plugin in manager.list_name_plugin() if plugin is not None)


def channels(manager: pluggy.PluginManager | None = None) -> dict[str, ChannelInfo]:
    """Every channel the loaded plugins provide, by name.

    Raises `PluginError` when an answer is not a `ChannelInfo` or two plugins provide the
    same channel name (a doctype naming it could not say which one it means).
    """
    manager = manager or plugin_manager()
    found: dict[str, ChannelInfo] = {}
    for info in manager.hook.channel_info():
        if info is None:
            continue
        if not isinstance(info, ChannelInfo):
            raise PluginError(f"channel_info() must return a ChannelInfo or None, not {info!r}")
        if info.name in found:
            raise PluginError(f"two plugins provide the channel {info.name!r}")
        found[info.name] = info
    return found
