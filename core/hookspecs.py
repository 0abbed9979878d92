"""Every hook a Tavle plugin may implement.

Plugins implement any subset of these, with any subset of each hook's arguments (pluggy
passes only the arguments a hook implementation names). Implementations are marked with
`hookimpl` from this module and found through the entry point group "tavle"
(core/plugins.py). Each hook has a section in docs/plugins.md headed by its exact
signature, and a `test_hook_<name>` test in tests/test_hooks.py; a test fails when either
is missing.

Apart from `archive_entries`, every hook is called on every plugin and the caller collects
the answers, skipping None: a plugin answers only for what is its own (its channel) and
returns None otherwise.
"""

from __future__ import annotations

from typing import Any

import pluggy

from core.archive.types import ArchiveItem, ArchiveResult
from core.channels import ChannelInfo, Delivery, Receipt, StatusUpdate

hookspec = pluggy.HookspecMarker("tavle")
hookimpl = pluggy.HookimplMarker("tavle")


@hookspec
def channel_info() -> ChannelInfo | None:
    """Describe the delivery channel this plugin provides, or return None if it provides
    none (an archive plugin, say).

    Return a `ChannelInfo`:
    - `name`: the key doctypes list under `channels:` (lowercase, unique across plugins;
      two plugins with the same name stop the start);
    - `title`: Norwegian, shown to users (`tavle doctypes route`, the GraphQL API);
    - `cost_per_unit` (a Decimal, NOK) and `unit` (Norwegian, e.g. "brev", "segment");
    - `may_carry_sensitive`: True only when the channel is fit for sensitive personal data
      (only SvarUt among the built-ins); a sensitive doctype listing a channel without it
      is refused when doctypes are loaded, and the send is refused again in code;
    - `requires`: the recipient's attribute (of `core.models.Person`) that must be set
      for the channel to reach them: "national_id" (SvarUt), "email", "mobile",
      "street_address", "activated_at" (in-app: has logged in once) or None. A recipient
      without it is routed to the doctype's next channel, or the send fails before
      anything is written;
    - `reports_status`: True when the worker should poll `delivery_status` for
      deliveries in status "sent".

    Synchronous. Called whenever channels are listed: when doctypes are validated (server
    start, `tavle doctypes check|route`) and by the worker before each status poll; so it
    must be cheap and must not do I/O, though it may read the environment (e.g. a
    configured price). Raise nothing: a plugin that is not configured still describes its
    channel and fails its deliveries temporarily.
    """


@hookspec
def deliver(delivery: Delivery, database: Any) -> Receipt | None:
    """Carry out one delivery over this plugin's channel.

    Called by the outbox worker (`core.outbox.process`), once per attempt, outside any
    database transaction, for every plugin: return None (plainly, or from a coroutine)
    unless `delivery.channel` is this plugin's channel name. Exactly one plugin answers
    for a channel; when none does, the delivery fails for good.

    `delivery` (`core.channels.Delivery`) holds the subject and body, the PDF among
    `attachments`, the recipient with their addresses, the sending school, `sensitive` and
    `restricted`, `attempt` (1 on the first try), and `options`: the doctype's settings
    under `plugins.<channel name>` (see `doctype_fields`) plus "sender_id" (the person who
    finalized the document, or None). `database` is Tavle's
    async_sessionmaker, for channels that live inside Tavle (the in-app channel); external
    channels never need it and leave it out of their signature.

    May be a coroutine function (the worker awaits whatever is awaitable); an answer for
    another channel is best returned as a plain None, without the cost of a coroutine.

    Return a `Receipt`: status "delivered" (in the recipient's hands) or "sent" (accepted
    by the peer; the final status comes later through `delivery_status` or a callback),
    `external_id` (the peer's id, used by `delivery_status` and callbacks), `units` and
    `cost` (what this delivery costs, recorded on it), and `detail` (JSON, kept as the
    receipt).

    Raise `TemporaryDeliveryError` when a later attempt may succeed (connection refused,
    timeout, 5xx, 408/429, the channel not configured yet): the delivery goes back to the
    queue with exponential backoff and fails after the worker's maximum attempts. Raise
    `PermanentDeliveryError` when it never will (the recipient's address is invalid, the
    peer rejected the content with a 4xx, sensitive content offered to a channel that may
    not carry it): the delivery fails at once. Both take a Norwegian message (shown to
    users) and `detail` (JSON, recorded). Any other exception is treated as temporary and
    logged as a plugin bug.

    Must be idempotent for the same `delivery.reference` ("tavle-delivery-<id>", stable
    across attempts): an attempt may be repeated after an unclear result (a timeout after
    the peer accepted, a worker that died), so pass the reference to the peer as its
    external reference and let the peer, or a lookup before sending, recognise it.
    """


@hookspec
def delivery_status(delivery: Delivery) -> StatusUpdate | None:
    """Ask the peer for the current status of an earlier delivery.

    Called by the worker (`core.outbox.poll_statuses`, about once a minute) for the
    deliveries of channels whose `ChannelInfo.reports_status` is true: those in status
    "sent", and for two weeks after their last change those "delivered" or "printed"
    (a delivered letter may still be read). Called for every plugin: return None unless
    `delivery.channel` is this plugin's channel. Also return None when
    `delivery.external_id` (the `Receipt.external_id` of `deliver`) is missing or the peer
    knows nothing new.

    May be a coroutine function. Return a `StatusUpdate` whose `status` is one of "sent",
    "delivered", "read", "printed" or "failed" (map the peer's own statuses onto these and
    keep the peer's word in `detail`). The delivery only moves forward (sent ->
    delivered/printed -> read; "failed" only from "sent"); an answer that would move it
    back is ignored.

    A peer that cannot be reached never fails the delivery: log and return None, or raise
    `TemporaryDeliveryError`/`PermanentDeliveryError` (logged; the next poll asks again).
    Channels whose peer calls back instead add a route in `startup` and record the report
    with `core.outbox.record_status_update`.
    """


@hookspec
def archive_info() -> dict[str, Any] | None:
    """Describe the archive this plugin transfers documents to, or return None if it is
    not an archive plugin.

    Return a JSON-able dict of text: "name" (the plugin's short name, e.g. "elements"),
    "title" (Norwegian, e.g. "Sikri Elements (Noark 5, Fiks Arkiv V1)"), "transport"
    (how it travels, e.g. "Fiks IO") and "endpoint" (where to), for administrators and
    the logs.

    Synchronous and cheap (no I/O; read the configuration only). Called whenever the
    archive is described. One archive is active at a time: install or enable only one
    archive plugin (switch the others off with TAVLE_DISABLED_PLUGINS).
    """


@hookspec(firstresult=True)
def archive_entries(batch: list[ArchiveItem]) -> list[ArchiveResult] | None:
    """Register a chunk of queued archive entries in the archive.

    Called by the archive batch (`core.archive.batch`; on the schedule in
    TAVLE_ARCHIVE_SCHEDULE, normally 15:00 and 02:00) with up to TAVLE_ARCHIVE_CHUNK (50)
    queued entries at a time, oldest first, as `core.archive.types.ArchiveItem`: the PDF
    and its SHA-256, title and public title, registry status (J, R, ...), restriction and
    its basis, case owner, the folder (`FolderRef`: student or school folder, its case
    year and sequence number when known) and the parties.

    firstresult: plugins are asked in turn and the first answer that is not None is used.
    An archive plugin that is not configured returns None from a plain function (an
    `async def` implementation always answers: its coroutine is not None); when nobody
    answers, the batch stops with "no archive plugin is installed and configured".

    May be a coroutine function. Return a list with exactly one
    `core.archive.types.ArchiveResult` per item, in the order of `batch` (another length
    is an error and the whole chunk is retried): kind ARCHIVED with `registry_year`,
    `registry_sequence` and the archive's `receipt` (and `case_year`/`case_sequence` for a
    folder the archive created); TRANSIENT (refused, timeout, 5xx: the entry stays queued
    for the next batch; set `unreachable=True` when the archive could not be reached at
    all, and after TAVLE_ARCHIVE_MAX_UNREACHABLE of those in a row the batch stops); or
    PERMANENT (rejected as sent: failed, with the receipt and a Norwegian `error`, until a
    person fixes the cause and queues it again). One entry failing must not fail the
    others; an exception is logged and the whole chunk counts as transient.

    Send `item.external_key` as the registry entry's external system key and look it up
    before creating: a resend after an unclear result must find the earlier registration
    (`existing=True`) instead of registering the document twice.
    """


@hookspec
def doctype_fields() -> dict[str, dict[str, Any]] | None:
    """Declare the plugin-specific settings a doctype may carry under `plugins.<name>`.

    Return {name: {setting: description}}, where name is this plugin's channel name (the
    outbox copies a doctype's `plugins.<channel>` settings into `Delivery.options` for
    deliveries over that channel) and each description is a short Norwegian text saying
    what the setting does and which values it takes. Return None when there are none.

    Synchronous, no I/O. Called when doctypes are loaded (server and worker start,
    `tavle doctypes check`): a doctype naming a plugin nobody declared, or a setting the
    plugin did not declare, is refused with its file and line, and the server does not
    start. The values themselves are the plugin's to check when it delivers (raise
    `PermanentDeliveryError` for a value it cannot use).
    """


@hookspec
def startup(app: Any) -> None:
    """Called once when the web application is built, with the Starlette app.

    Use it to add routes for callbacks from a peer (e.g. delivery reports:
    `app.router.routes.append(Route("/callbacks/<channel>", handler, methods=["POST"]))`);
    `app.state.tavle` holds the application's state (settings, sessions, doctypes,
    channels). Make it idempotent: tests build several applications in one process, so add
    a route only if its path is not there yet. Callback routes are public: authenticate
    the peer (a shared token compared with `hmac.compare_digest`, a signature) and fail
    closed when that is not configured.

    May be a coroutine function: the coroutine is then awaited when the application
    starts serving (its lifespan), before the first request. Not called by `tavle worker`
    or the CLI. An exception stops the application from starting. Return nothing.
    """
