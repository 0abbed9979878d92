"""Every hook a Tavle plugin may implement.

Plugins implement any subset of these, with any subset of each hook's arguments (pluggy
passes only the arguments a hook implementation names). Each hook has a section in
docs/plugins.md headed by its exact signature, and a `test_hook_<name>` test; a test fails
when either is missing.
"""

from __future__ import annotations

from typing import Any

import pluggy

from core.channels import ChannelInfo, Delivery, Receipt, StatusUpdate

hookspec = pluggy.HookspecMarker("tavle")
hookimpl = pluggy.HookimplMarker("tavle")


@hookspec
def channel_info() -> ChannelInfo | None:
    """Describe the delivery channel this plugin provides.

    Return a `ChannelInfo` (name used in doctypes' `channels`, Norwegian title, cost per
    unit in NOK, the unit, whether sensitive content may travel by it, which recipient
    attribute it requires, and whether it reports status later), or None if the plugin
    provides no channel. Called once at start-up.
    """


@hookspec
def deliver(delivery: Delivery, database: Any) -> Receipt | None:
    """Carry out one delivery over this plugin's channel.

    May be a coroutine function (the worker awaits it). Return None unless
    `delivery.channel` is this plugin's channel name: every implementation is called and
    exactly one must answer. `database` is Tavle's async_sessionmaker, for channels that
    live inside Tavle (the in-app channel); external channels never need it. Return a
    `Receipt` when the peer accepted it; raise `TemporaryDeliveryError` when it should be
    retried later (connection refused, timeout, 5xx) and `PermanentDeliveryError` when it
    never will succeed. Must be idempotent for the same `delivery.reference`.
    """


@hookspec
def delivery_status(delivery: Delivery) -> StatusUpdate | None:
    """Ask the peer for the current status of an earlier delivery (`delivery.external_id`).

    May be a coroutine function. Return None unless `delivery.channel` is this plugin's
    channel, or when nothing is
    known yet. Called by the worker for deliveries in status "sent" of channels whose
    `ChannelInfo.reports_status` is true.
    """


@hookspec
def archive_info() -> dict[str, Any] | None:
    """Describe the archive this plugin transfers to (name, transport), or None."""


@hookspec(firstresult=True)
def archive_entries(batch: list[Any]) -> list[Any] | None:
    """Transfer a batch of queued archive entries; return one result per entry, in order."""


@hookspec
def doctype_fields() -> dict[str, dict[str, Any]] | None:
    """Plugin-specific settings a doctype may carry under `plugins.<name>`.

    Return {plugin name: {setting: description}}; the doctype loader rejects unknown
    settings under a plugin's key, naming the file and line.
    """


@hookspec
def startup(app: Any) -> None:
    """Called once when the web application is built (the Starlette app is given), e.g. to
    append routes for delivery-report callbacks to `app.router.routes`. May be a coroutine
    function: it is then awaited when the application starts serving."""
