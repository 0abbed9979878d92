"""Every hook in core/hookspecs.py: its documented contract, through the real plugin
manager (the built-ins loaded from their entry points) or, where no built-in implements
the hook, a small plugin registered on a fresh manager.

Also the rules that keep hooks documented: a docstring per hookspec, a section per hook
in docs/plugins.md headed by its exact signature, and a `test_hook_<name>` here.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pluggy
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from core import hookspecs
from core.app import create_app
from core.archive.types import ArchiveItem, ArchiveResult, FolderRef, ResultKind
from core.channels import (
    ChannelInfo,
    Delivery,
    Receipt,
    Recipient,
    Sender,
    StatusUpdate,
)
from core.config import PROJECT_ROOT, Settings
from core.doctypes import DoctypeError, load_doctypes, plugin_doctype_fields
from core.hookspecs import hookimpl
from core.models import Delivery as DeliveryRow
from core.models import DeliveryStatus, Message, MessageRecipient, Person, School
from core.plugins import PluginError, channels, create_plugin_manager, plugin_manager
from tests.fakes.sms_gateway import FakeSmsGateway

HOOKS = sorted(name for name, value in vars(hookspecs).items() if hasattr(value, "tavle_spec"))
GUIDE = PROJECT_ROOT / "docs" / "plugins.md"
# The channels the built-in plugins provide (DOMAIN.md: sensitive data only by SvarUt).
BUILT_IN_CHANNELS = {"inapp", "email", "sms", "svarut"}


def signature(name: str) -> str:
    """A hook's exact signature as the docs head its section: `deliver(delivery, database)`."""
    return f"{name}({', '.join(inspect.signature(getattr(hookspecs, name)).parameters)})"


def call_each(
    manager: pluggy.PluginManager, hook: str, *, skip: str | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Call every implementation of `hook` (but the plugin `skip`) with the arguments it
    names, by plugin name: what pluggy does, but keeping who answered what."""
    caller = getattr(manager.hook, hook)
    return {
        impl.plugin_name: impl.function(*[kwargs[arg] for arg in impl.argnames])
        for impl in caller.get_hookimpls()
        if impl.plugin_name != skip
    }


async def settle(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@pytest.fixture(scope="module")
def manager() -> pluggy.PluginManager:
    """A manager loaded from the entry points, as the server and the worker load it."""
    return create_plugin_manager()


def owners(manager: pluggy.PluginManager) -> dict[str, str]:
    """Channel name -> the name of the plugin providing it."""
    return {
        info.name: plugin
        for plugin, info in call_each(manager, "channel_info").items()
        if info is not None
    }


def delivery(channel: str, **changes: Any) -> Delivery:
    made = Delivery(
        id=0,
        reference="tavle-delivery-0",
        channel=channel,
        attempt=1,
        subject="Foreldremøte",
        body="Velkommen til foreldremøte tirsdag.",
        recipient=Recipient(
            person_id=0,
            name="Kari Nordmann",
            national_id="01010112345",
            email="kari@example.no",
            mobile="91234567",
            street_address="Storgata 1",
            postal_code="0155",
            postal_town="OSLO",
        ),
        sender=Sender(
            school_id=0,
            school_name="Bøler skole",
            organisation_number=None,
            municipality_name="Tavle kommune",
            municipality_organisation_number="999999999",
            signed_by=None,
        ),
        sensitive=False,
        restricted=False,
    )
    return replace(made, **changes)


# --------------------------------------------------------------------------------------
# Every hook is documented and tested


def test_there_are_hooks_and_each_has_a_docstring() -> None:
    assert {"channel_info", "deliver", "delivery_status", "startup"} <= set(HOOKS)
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        # A contract says what comes back (or that nothing does) and when it is called.
        assert len(doc) > 200 and "Return" in doc and "alled" in doc, name


def test_every_hook_has_a_section_in_the_guide_headed_by_its_signature() -> None:
    headings = set(re.findall(r"^### `([^`]+)`$", GUIDE.read_text(encoding="utf-8"), re.M))
    missing = [signature(name) for name in HOOKS if signature(name) not in headings]
    assert missing == [], f"docs/plugins.md needs a '### `signature`' section for {missing}"
    assert headings <= {signature(name) for name in HOOKS}, "a section for a hook that is gone"


def test_every_hook_has_a_test_here() -> None:
    missing = [name for name in HOOKS if f"test_hook_{name}" not in globals()]
    assert missing == [], f"tests/test_hooks.py needs test_hook_<name> for {missing}"


def test_the_readme_links_the_guide() -> None:
    assert "docs/plugins.md" in (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------
# channel_info


def test_hook_channel_info(manager: pluggy.PluginManager) -> None:
    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"][
        "entry-points"
    ]["tavle"]
    answers = call_each(manager, "channel_info")
    # Built-in channels come through their entry points, and are named like them.
    assert BUILT_IN_CHANNELS <= declared.keys()
    for name in BUILT_IN_CHANNELS:
        info = answers[name]
        assert isinstance(info, ChannelInfo) and info.name == name
    for plugin, info in answers.items():
        if info is None:  # e.g. the archive plugin: no channel
            continue
        assert isinstance(info, ChannelInfo), plugin
        assert re.fullmatch(r"[a-z][a-z0-9_]*", info.name), info
        assert info.title.strip() and info.unit.strip(), info
        assert isinstance(info.cost_per_unit, Decimal) and info.cost_per_unit >= 0, info
        # Routing checks the requirement on the recipient's Person row.
        if info.requires is not None:
            assert hasattr(Person, info.requires), info
    sensitive = {name for name, info in channels(manager).items() if info.may_carry_sensitive}
    assert sensitive & BUILT_IN_CHANNELS == {"svarut"}
    assert channels(manager) == {i.name: i for i in answers.values() if i is not None}

    # The caller's side of the contract: two providers of one name, or a wrong answer.
    class Copy:
        @hookimpl
        def channel_info(self) -> ChannelInfo:
            return replace(answers["email"], title="E-post igjen")

    class Wrong:
        @hookimpl
        def channel_info(self) -> dict[str, str]:
            return {"name": "fax"}

    for plugin, message in ((Copy(), "two plugins provide the channel 'email'"), (Wrong(), "")):
        fresh = create_plugin_manager()
        fresh.register(plugin)
        with pytest.raises(PluginError, match=message or "must return a ChannelInfo"):
            channels(fresh)


# --------------------------------------------------------------------------------------
# deliver


@pytest.fixture
async def inapp_delivery(sessions: async_sessionmaker[AsyncSession]) -> Delivery:
    """A delivery row for the in-app channel (the message refers to it) that no worker
    will pick up: it is already finished."""
    async with sessions() as session, session.begin():
        person = (await session.execute(select(Person).order_by(Person.id))).scalars().first()
        school = (await session.execute(select(School).order_by(School.id))).scalars().first()
        assert person is not None and school is not None
        row = DeliveryRow(
            recipient_id=person.id,
            school_id=school.id,
            channel="inapp",
            status=DeliveryStatus.DELIVERED,
        )
        session.add(row)
        await session.flush()
        made = delivery("inapp", id=row.id, reference=f"tavle-delivery-{row.id}")
        return replace(
            made,
            recipient=replace(made.recipient, person_id=person.id),
            sender=replace(made.sender, school_id=school.id),
        )


async def test_hook_deliver(
    manager: pluggy.PluginManager,
    sessions: async_sessionmaker[AsyncSession],
    inapp_delivery: Delivery,
) -> None:
    # Every implementation is called (not firstresult); the outbox takes the one answer.
    assert not manager.hook.deliver.spec.opts.get("firstresult")
    implementers = {impl.plugin_name for impl in manager.hook.deliver.get_hookimpls()}
    by_channel = owners(manager)
    assert by_channel.keys() >= BUILT_IN_CHANNELS
    for channel, owner in by_channel.items():
        assert owner in implementers, f"nobody delivers the channel {channel!r}"
        # Every plugin but the owner answers None for it, without doing anything.
        others = call_each(
            manager, "deliver", skip=owner, delivery=delivery(channel), database=None
        )
        for plugin, answer in others.items():
            assert await settle(answer) is None, (plugin, channel)
    # Nobody answers for a channel nobody provides (the outbox then fails it for good).
    # (pluggy leaves plain None answers out of the list; coroutines resolve to None.)
    answers = manager.hook.deliver(delivery=delivery("brevdue"), database=None)
    assert [await settle(a) for a in answers] == [None] * len(answers)

    # The owner answers with a Receipt; the in-app channel needs `database`. A repeated
    # attempt (same reference) is the same message: deliver is idempotent.
    receipts = []
    for _ in range(2):
        answers = manager.hook.deliver(delivery=inapp_delivery, database=sessions)
        [receipt] = [r for r in [await settle(a) for a in answers] if r is not None]
        assert isinstance(receipt, Receipt)
        receipts.append(receipt)
    assert receipts[0] == receipts[1]
    assert receipts[0].status == "delivered"
    async with sessions() as session:
        written = await session.scalar(
            select(func.count())
            .select_from(Message)
            .join(MessageRecipient, MessageRecipient.message_id == Message.id)
            .where(
                Message.delivery_id == inapp_delivery.id,
                MessageRecipient.person_id == inapp_delivery.recipient.person_id,
            )
        )
    assert written == 1


# --------------------------------------------------------------------------------------
# delivery_status


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSmsGateway]:
    with FakeSmsGateway(username="tavle", password="hemmelig") as gateway:
        monkeypatch.setenv("TAVLE_SMS_BASE_URL", gateway.base_url)
        monkeypatch.setenv("TAVLE_SMS_USERNAME", "tavle")
        monkeypatch.setenv("TAVLE_SMS_PASSWORD", "hemmelig")
        monkeypatch.setenv("TAVLE_SMS_SENDER", "Tavle")
        monkeypatch.setenv("TAVLE_SMS_TIMEOUT", "2")
        monkeypatch.delenv("TAVLE_SMS_CALLBACK_URL", raising=False)
        yield gateway


async def test_hook_delivery_status(manager: pluggy.PluginManager, gateway: FakeSmsGateway) -> None:
    implementers = {i.plugin_name for i in manager.hook.delivery_status.get_hookimpls()}
    reporting = {n for n, info in channels(manager).items() if info.reports_status}
    assert {"sms", "svarut"} <= reporting
    by_channel = owners(manager)
    for channel in reporting:
        assert by_channel[channel] in implementers, f"{channel} reports status but cannot"
        # Without the peer's id nobody has anything to ask (and asks nobody).
        answers = manager.hook.delivery_status(delivery=delivery(channel))
        assert [await settle(a) for a in answers] == [None] * len(answers)
    # Nobody answers for another plugin's channel, even with an id.
    for channel, owner in by_channel.items():
        others = call_each(
            manager, "delivery_status", skip=owner, delivery=delivery(channel, external_id="x")
        )
        for plugin, answer in others.items():
            assert await settle(answer) is None, (plugin, channel)

    # The owner asks its peer: an SMS the gateway accepted, then delivered to the phone.
    sms = delivery("sms", reference="tavle-delivery-4711")
    [receipt] = [
        r
        for r in [await settle(a) for a in manager.hook.deliver(delivery=sms, database=None)]
        if r is not None
    ]
    assert receipt.status == "sent" and receipt.external_id
    sent = replace(sms, external_id=receipt.external_id)
    gateway.set_status(receipt.external_id, "delivered")
    [update] = [
        u
        for u in [await settle(a) for a in manager.hook.delivery_status(delivery=sent)]
        if u is not None
    ]
    assert isinstance(update, StatusUpdate)
    assert update.status == "delivered"
    # Every status a plugin reports must be one the outbox can record.
    assert update.status in {s.value for s in DeliveryStatus} - {"queued", "sending"}


# --------------------------------------------------------------------------------------
# archive_info and archive_entries


def archive_item(entry_id: int, title: str) -> ArchiveItem:
    return ArchiveItem(
        entry_id=entry_id,
        external_key=f"tavle-archive-{entry_id}",
        document_id=entry_id,
        doctype="vedtak_skoleskyss",
        doctype_title="Vedtak om skoleskyss",
        title=title,
        public_title="Vedtak om skoleskyss",
        document_date=date(2026, 11, 23),
        created_at=datetime(2026, 11, 23, 10, tzinfo=UTC),
        sent_at=None,
        registry_status="J",
        restricted=False,
        restriction_basis=None,
        case_owner="PR",
        school_name="Bøler skole",
        organisation_number=None,
        municipality_name="Tavle kommune",
        folder=FolderRef(
            id=1,
            kind="student",
            title="Elevmappe - Ola Nordmann",
            external_key="tavle-folder-1",
            case_year=2026,
            case_sequence=12,
            case_owner="PR",
        ),
        parties=(),
        filename=f"vedtak-{entry_id}.pdf",
        pdf=b"%PDF-1.7\n%%EOF\n",
        pdf_sha256="0" * 64,
    )


class ArchiveInMemory:
    """A tiny archive plugin: registers what it is given, refuses empty titles."""

    def __init__(self) -> None:
        self.registered: list[str] = []

    @hookimpl
    def archive_info(self) -> dict[str, Any]:
        return {"name": "minne", "title": "Arkiv i minnet", "transport": "ingen"}

    @hookimpl
    async def archive_entries(self, batch: list[ArchiveItem]) -> list[ArchiveResult]:
        results = []
        for item in batch:
            if not item.title.strip():
                results.append(ArchiveResult(kind=ResultKind.PERMANENT, error="Tittel mangler."))
                continue
            self.registered.append(item.external_key)
            results.append(
                ArchiveResult(
                    kind=ResultKind.ARCHIVED,
                    registry_year=2026,
                    registry_sequence=len(self.registered),
                    receipt=f"<kvittering>{item.external_key}</kvittering>",
                )
            )
        return results


class NotConfigured:
    """An archive plugin without configuration: passes (plain None, not a coroutine)."""

    @hookimpl
    def archive_info(self) -> None:
        return None

    @hookimpl
    def archive_entries(self, batch: list[ArchiveItem]) -> None:
        return None


def test_hook_archive_info(manager: pluggy.PluginManager) -> None:
    # The real plugins: at most one archive is active, and it describes itself as a dict.
    answers = [a for a in manager.hook.archive_info() if a is not None]
    assert len(answers) <= 1
    for answer in answers:
        assert isinstance(answer["name"], str) and isinstance(answer["transport"], str)

    fresh = create_plugin_manager(load_entry_points=False)
    fresh.register(ArchiveInMemory())
    fresh.register(NotConfigured())
    assert [a for a in fresh.hook.archive_info() if a is not None] == [
        {"name": "minne", "title": "Arkiv i minnet", "transport": "ingen"}
    ]


async def test_hook_archive_entries(manager: pluggy.PluginManager) -> None:
    assert manager.hook.archive_entries.spec.opts.get("firstresult") is True
    archive = ArchiveInMemory()
    fresh = create_plugin_manager(load_entry_points=False)
    fresh.register(archive)
    fresh.register(NotConfigured())  # asked first (pluggy: last registered), passes
    batch = [archive_item(7, "Vedtak"), archive_item(8, " "), archive_item(9, "Vedtak 2")]

    results = await settle(fresh.hook.archive_entries(batch=batch))

    # One result per entry, in the order of the batch; one failure does not stop the rest.
    assert [r.kind for r in results] == [
        ResultKind.ARCHIVED,
        ResultKind.PERMANENT,
        ResultKind.ARCHIVED,
    ]
    assert [r.registry_sequence for r in results] == [1, None, 2]
    assert archive.registered == ["tavle-archive-7", "tavle-archive-9"]
    # With no archive plugin answering, nobody archives: the caller gets None.
    idle = create_plugin_manager(load_entry_points=False)
    idle.register(NotConfigured())
    assert idle.hook.archive_entries(batch=batch) is None


# --------------------------------------------------------------------------------------
# doctype_fields


DOCTYPE = """\
key: vedtak
title: Vedtak
template: vedtak.html.j2
permission: message:send
sensitive: false
restricted: false
channels: [svarut]
recipients: guardians
archive: never
fields:
  - name: tekst
    label: Tekst
    type: multiline
    required: true
"""


def write_doctype(directory: Path, plugins: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "vedtak.html.j2").write_text("<p>{{ fields.tekst }}</p>\n", encoding="utf-8")
    path = directory / "vedtak.yaml"
    path.write_text(DOCTYPE + plugins, encoding="utf-8")
    return path


def test_hook_doctype_fields(manager: pluggy.PluginManager, tmp_path: Path) -> None:
    merged = plugin_doctype_fields(manager)
    assert {"security_level", "letter_type"} <= merged["svarut"].keys()
    names = set(channels(manager)) | {name for name, _ in manager.list_name_plugin()}
    for plugin, settings in merged.items():
        # Keyed by the channel (the outbox hands `plugins.<channel>` to its deliveries).
        assert plugin in names, plugin
        for setting, description in settings.items():
            assert isinstance(description, str) and description.strip(), (plugin, setting)

    def load(directory: Path):  # type: ignore[no-untyped-def]
        return load_doctypes(directory, channels(manager), plugin_fields=merged)

    write_doctype(tmp_path / "ok", "plugins:\n  svarut:\n    security_level: 4\n")
    assert load(tmp_path / "ok")["vedtak"].plugin_settings("svarut") == {"security_level": 4}

    path = write_doctype(tmp_path / "setting", "plugins:\n  svarut:\n    niva: 4\n")
    with pytest.raises(DoctypeError) as error:
        load(tmp_path / "setting")
    [problem] = error.value.problems
    assert problem.startswith(f"{path}:17: unknown setting 'niva' for plugin 'svarut'")

    path = write_doctype(tmp_path / "plugin", "plugins:\n  telefaks:\n    farge: true\n")
    with pytest.raises(DoctypeError) as error:
        load(tmp_path / "plugin")
    [problem] = error.value.problems
    assert problem.startswith(f"{path}:16: unknown plugin 'telefaks'")


# --------------------------------------------------------------------------------------
# startup


class CallbackPlugin:
    """Adds a callback route when the app is built (idempotent, as the hook asks)."""

    @hookimpl
    def startup(self, app: Starlette) -> None:
        async def ping(request: Any) -> PlainTextResponse:
            return PlainTextResponse("pong")

        if not any(getattr(r, "path", None) == "/callbacks/test" for r in app.router.routes):
            app.router.routes.append(Route("/callbacks/test", ping))


class WarmUpPlugin:
    """A coroutine startup: awaited when the app starts serving."""

    def __init__(self) -> None:
        self.warmed_up = False

    @hookimpl
    async def startup(self, app: Starlette) -> None:
        assert isinstance(app.state.tavle.channels, dict)
        self.warmed_up = True


async def test_hook_startup(database_url: str, tmp_path: Path) -> None:
    write_doctype(tmp_path / "doctypes", "")
    settings = Settings(
        database_url=database_url,
        doctypes_dir=tmp_path / "doctypes",
        policies_dir=PROJECT_ROOT / "policies",
    )
    callback, warm = CallbackPlugin(), WarmUpPlugin()
    manager = plugin_manager()
    manager.register(callback, name="test-callback")
    manager.register(warm, name="test-warmup")
    try:
        apps = [create_app(settings), create_app(settings)]
        for app in apps:
            paths = [getattr(r, "path", None) for r in app.router.routes]
            # The built-in SMS plugin's report route, and ours: once each per app.
            assert paths.count("/callbacks/sms") == 1
            assert paths.count("/callbacks/test") == 1
        # A coroutine startup runs when the app starts serving, not when it is built.
        assert warm.warmed_up is False
        for app in apps:
            async with app.router.lifespan_context(app):
                assert warm.warmed_up is True
    finally:
        manager.unregister(name="test-callback")
        manager.unregister(name="test-warmup")
