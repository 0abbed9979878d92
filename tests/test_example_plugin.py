"""The example third-party plugin in tests/example_plugin, installed through the entry
point group "tavle" exactly as `pip install ./tests/example_plugin` would: a
`*.dist-info` directory with METADATA and entry_points.txt on sys.path, found by
importlib.metadata, loaded by core.plugins. Then a doctype names its channel and a
delivery goes through core.outbox to a real local print service (fake_printshop.py).

Also the plugin manager's own contract: TAVLE_DISABLED_PLUGINS, and the errors for a
plugin that cannot be imported, a misspelt hook and two plugins with one name.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import outbox
from core.doctypes import DoctypeError, load_doctypes, plugin_doctype_fields
from core.documents.routing import plan_deliveries
from core.models import (
    Delivery,
    DeliveryStatus,
    Document,
    DocumentStatus,
    Guardianship,
    Person,
    School,
    SchoolYear,
)
from core.models.base import utcnow
from core.plugins import (
    PluginError,
    channels,
    create_plugin_manager,
    plugin_manager,
    plugin_names,
    reset_plugin_manager,
)
from tests.example_plugin.fake_printshop import FakePrintshop

EXAMPLE = Path(__file__).parent / "example_plugin"
PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
TOKEN = "hemmelig-trykk"


def write_dist_info(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """What pip writes into site-packages for a distribution declaring entry points."""
    dist_info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n", encoding="utf-8"
    )
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[tavle]\n{lines}", encoding="utf-8")


def forget_modules(prefix: str) -> None:
    for module in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[module]


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Path]:
    """tavle-printmail installed through its entry point; uninstalled afterwards, and the
    process-wide plugin manager back to the built-ins for the tests that follow."""
    site = tmp_path / "site-packages"
    write_dist_info(site, "tavle-printmail", {"printmail": "tavle_printmail.plugin"})
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TAVLE_DISABLED_PLUGINS", raising=False)
        patch.syspath_prepend(str(site))
        patch.syspath_prepend(str(EXAMPLE))  # where pip would have put the package
        forget_modules("tavle_printmail")
        reset_plugin_manager()
        yield site
    forget_modules("tavle_printmail")
    reset_plugin_manager()
    assert "printmail" not in plugin_names()


@pytest.fixture(scope="module")
def printshop() -> Iterator[FakePrintshop]:
    with FakePrintshop(token=TOKEN) as shop:
        yield shop


@pytest.fixture
def shop(printshop: FakePrintshop, monkeypatch: pytest.MonkeyPatch) -> FakePrintshop:
    if printshop._server is None:  # a test that stopped it failed before restarting it
        printshop.start()
    printshop.reset()
    monkeypatch.setenv("TAVLE_PRINTMAIL_URL", printshop.base_url)
    monkeypatch.setenv("TAVLE_PRINTMAIL_TOKEN", TOKEN)
    monkeypatch.setenv("TAVLE_PRINTMAIL_PRICE", "14.50")
    monkeypatch.setenv("TAVLE_PRINTMAIL_TIMEOUT", "2")
    return printshop


def write_doctype(directory: Path, channel_list: str, plugins: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "papirbrev.html.j2").write_text("<p>{{ fields.tekst }}</p>\n", encoding="utf-8")
    path = directory / "papirbrev.yaml"
    path.write_text(
        "key: papirbrev\n"
        "title: Brev i posten\n"
        "template: papirbrev.html.j2\n"
        "permission: message:send\n"
        "sensitive: false\n"
        "restricted: false\n"
        f"channels: {channel_list}\n"
        "recipients: guardians\n"
        "archive: never\n"
        "fields:\n"
        "  - name: tekst\n"
        "    label: Tekst\n"
        "    type: multiline\n"
        "    required: true\n" + plugins,
        encoding="utf-8",
    )
    return path


def load(directory: Path):  # type: ignore[no-untyped-def]
    return load_doctypes(directory, channels(), plugin_fields=plugin_doctype_fields())


# --------------------------------------------------------------------------------------
# Installing


def test_the_entry_point_is_a_real_installed_distribution(installed: Path) -> None:
    [entry_point] = [
        ep for ep in importlib.metadata.entry_points(group="tavle") if ep.name == "printmail"
    ]
    assert entry_point.value == "tavle_printmail.plugin"
    assert importlib.metadata.version("tavle-printmail") == "0.1.0"
    assert (EXAMPLE / "pyproject.toml").read_text().count('printmail = "tavle_printmail.plugin"')


def test_installed_plugin_provides_its_channel(installed: Path) -> None:
    assert {"printmail", "inapp", "email", "sms", "svarut"} <= set(plugin_names())
    info = channels()["printmail"]
    assert info.title == "Papirbrev (trykk og post)"
    assert info.cost_per_unit == Decimal("14.50")
    assert info.unit == "brev"
    assert info.requires == "street_address"
    assert info.may_carry_sensitive is False
    assert info.reports_status is True
    assert plugin_doctype_fields()["printmail"].keys() == {"color", "duplex"}


def test_a_doctype_can_name_the_channel_and_its_settings(installed: Path, tmp_path: Path) -> None:
    good = tmp_path / "good"
    write_doctype(good, "[printmail, inapp]", "plugins:\n  printmail:\n    color: true\n")
    doctype = load(good)["papirbrev"]
    assert doctype.channels == ("printmail", "inapp")
    assert doctype.plugin_settings("printmail") == {"color": True}

    unknown = tmp_path / "unknown"
    path = write_doctype(unknown, "[telefaks, inapp]")
    with pytest.raises(DoctypeError) as error:
        load(unknown)
    known = ", ".join(sorted(channels()))
    assert "printmail" in known
    assert error.value.problems == [f"{path}:7: unknown channel 'telefaks' (known: {known})"]

    bad_setting = tmp_path / "bad_setting"
    path = write_doctype(bad_setting, "[printmail]", "plugins:\n  printmail:\n    stiftet: ja\n")
    with pytest.raises(DoctypeError) as error:
        load(bad_setting)
    [problem] = error.value.problems
    assert problem.startswith(f"{path}:17: unknown setting 'stiftet' for plugin 'printmail'")


# --------------------------------------------------------------------------------------
# Delivering through the outbox


async def _recipient_and_student(session: AsyncSession) -> tuple[Person, int]:
    row = (
        await session.execute(
            select(Person, Guardianship.student_id)
            .join(Guardianship, Guardianship.guardian_id == Person.id)
            .where(
                Guardianship.parental_responsibility.is_(True),
                Person.street_address.is_not(None),
                Person.postal_code.is_not(None),
                Person.postal_town.is_not(None),
            )
            .order_by(Person.id)
            .limit(1)
        )
    ).one()
    return row[0], row[1]


async def queue_letter(
    sessions: async_sessionmaker[AsyncSession], doctypes_dir: Path
) -> tuple[int, Person]:
    """A finalized document of the tmp doctype and its queued delivery, written the way
    `send_document` writes them (channel chosen by the doctype's routing)."""
    write_doctype(doctypes_dir, "[printmail, inapp]", "plugins:\n  printmail:\n    color: true\n")
    doctype = load(doctypes_dir)["papirbrev"]
    async with sessions() as session, session.begin():
        guardian, student_id = await _recipient_and_student(session)
        school = (await session.execute(select(School).order_by(School.id))).scalars().first()
        year = (await session.execute(select(SchoolYear).order_by(SchoolYear.id))).scalars().first()
        assert school is not None and year is not None
        [planned] = plan_deliveries(doctype, channels(), [guardian], sensitive=False)
        assert planned.channel == "printmail"  # first in the doctype's list, and reachable
        now = utcnow()
        document = Document(
            doctype_key=doctype.key,
            title=doctype.title,
            student_id=student_id,
            school_id=school.id,
            school_year_id=year.id,
            fields={"tekst": "Hei"},
            status=DocumentStatus.SENT,
            created_by_id=guardian.id,
            pdf=PDF,
            finalized_at=now,
            sent_at=now,
        )
        session.add(document)
        await session.flush()
        delivery = Delivery(
            document_id=document.id,
            recipient_id=guardian.id,
            school_id=school.id,
            channel=planned.channel,
            options=dict(doctype.plugins.get(planned.channel, {})),
            next_attempt_at=now,
        )
        session.add(delivery)
        await session.flush()
        return delivery.id, guardian


async def make_due(
    sessions: async_sessionmaker[AsyncSession], delivery_id: int, status: DeliveryStatus
) -> None:
    """Time travel: the backoff is over, or (status "sending") the lease ran out."""
    past = utcnow() - timedelta(seconds=1)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status=status, next_attempt_at=past, lease_expires_at=past)
        )


async def row(sessions: async_sessionmaker[AsyncSession], delivery_id: int) -> Delivery:
    async with sessions() as session:
        found = await session.get(Delivery, delivery_id)
        assert found is not None
        return found


async def work(sessions: async_sessionmaker[AsyncSession], delivery_id: int) -> DeliveryStatus:
    """What `tavle worker --once` does, for this test's delivery only (the database is
    shared with other tests' deliveries)."""
    assert await outbox.drain(sessions, only=[delivery_id]) == 1
    return (await row(sessions, delivery_id)).status


async def test_a_delivery_through_the_outbox_reaches_the_print_service(
    installed: Path,
    shop: FakePrintshop,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    delivery_id, guardian = await queue_letter(sessions, tmp_path / "doctypes")

    assert await work(sessions, delivery_id) == DeliveryStatus.SENT

    [letter] = shop.letters
    assert letter.reference == f"tavle-delivery-{delivery_id}"
    assert letter.recipient == {
        "name": guardian.name,
        "street_address": guardian.street_address,
        "postal_code": guardian.postal_code,
        "postal_town": guardian.postal_town,
    }
    assert letter.pdf == PDF
    assert letter.color is True  # the doctype's plugins.printmail setting travelled along
    assert letter.duplex is True
    saved = await row(sessions, delivery_id)
    assert (saved.external_id, saved.units, saved.cost) == (letter.id, 1, Decimal("14.50"))

    # A worker died before recording the result: the lease runs out, another worker
    # claims it again, and the print service recognises the reference: still one letter.
    await make_due(sessions, delivery_id, DeliveryStatus.SENDING)
    assert await work(sessions, delivery_id) == DeliveryStatus.SENT
    assert len(shop.letters) == 1
    assert (await row(sessions, delivery_id)).receipt["receipt"]["repeated"] is True

    # The worker's status poll asks the plugin (`delivery_status`).
    assert await outbox.poll_statuses(sessions, only=[delivery_id]) == 0  # no news
    shop.set_status(letter.id, "posted")
    assert await outbox.poll_statuses(sessions, only=[delivery_id]) == 1
    assert (await row(sessions, delivery_id)).status == DeliveryStatus.PRINTED


async def test_print_service_down_then_back_and_a_rejection(
    installed: Path,
    shop: FakePrintshop,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    delivery_id, _ = await queue_letter(sessions, tmp_path / "doctypes")
    shop.stop()
    try:
        status = await work(sessions, delivery_id)
    finally:
        shop.start()
    assert status == DeliveryStatus.QUEUED  # TemporaryDeliveryError: retried with backoff
    queued = await row(sessions, delivery_id)
    assert queued.last_error is not None and "svarer ikke" in queued.last_error
    assert queued.next_attempt_at > utcnow()
    assert shop.letters == []

    await make_due(sessions, delivery_id, DeliveryStatus.QUEUED)
    assert await work(sessions, delivery_id) == DeliveryStatus.SENT
    assert len(shop.letters) == 1

    rejected_id, _ = await queue_letter(sessions, tmp_path / "doctypes2")
    shop.fail_next(422)  # PermanentDeliveryError: failed at once, not retried
    assert await work(sessions, rejected_id) == DeliveryStatus.FAILED
    assert "avviste brevet (422)" in ((await row(sessions, rejected_id)).last_error or "")
    assert len(shop.letters) == 1


# --------------------------------------------------------------------------------------
# Switching plugins off


def test_disabled_plugins_are_not_imported_and_their_channels_are_gone(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAVLE_DISABLED_PLUGINS", " printmail , sms ")
    reset_plugin_manager()

    assert "printmail" not in plugin_names() and "sms" not in plugin_names()
    assert {"inapp", "email", "svarut"} <= set(plugin_names())
    assert "tavle_printmail.plugin" not in sys.modules  # blocked before import
    assert channels().keys() == {"inapp", "email", "svarut"}
    # A doctype still naming a switched-off channel stops the start, naming the line.
    path = write_doctype(tmp_path / "doctypes", "[printmail, inapp]")
    with pytest.raises(DoctypeError) as error:
        load(tmp_path / "doctypes")
    known = ", ".join(sorted(channels()))
    assert error.value.problems == [f"{path}:7: unknown channel 'printmail' (known: {known})"]

    monkeypatch.setenv("TAVLE_DISABLED_PLUGINS", "")
    reset_plugin_manager()
    assert "printmail" in channels() and "sms" in channels()


def test_disabling_a_plugin_that_is_not_installed_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TAVLE_DISABLED_PLUGINS", "telefaks,sms")
    manager = create_plugin_manager()
    assert "sms" not in plugin_names(manager)
    assert "not installed: telefaks" in caplog.text


# --------------------------------------------------------------------------------------
# Plugins that cannot be loaded: the error names the plugin and where it came from


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    site = tmp_path / "site-packages"
    site.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TAVLE_DISABLED_PLUGINS", raising=False)
        patch.syspath_prepend(str(site))
        yield site
    forget_modules("tavle_broken")


def test_a_plugin_that_cannot_be_imported(site: Path) -> None:
    (site / "tavle_broken.py").write_text("import no_such_module_anywhere\n")
    write_dist_info(site, "tavle-broken", {"broken": "tavle_broken"})
    with pytest.raises(PluginError, match=r"'broken' \(tavle_broken, from tavle-broken\) could"):
        create_plugin_manager()


def test_a_misspelt_hook_is_refused(site: Path) -> None:
    (site / "tavle_broken.py").write_text(
        "from core.hookspecs import hookimpl\n\n@hookimpl\ndef channel_infos():\n    return None\n"
    )
    write_dist_info(site, "tavle-broken", {"broken": "tavle_broken"})
    with pytest.raises(PluginError, match=r"(?s)'broken' .* is invalid: .*channel_infos"):
        create_plugin_manager()


def test_a_hook_argument_that_does_not_exist_is_refused(site: Path) -> None:
    (site / "tavle_broken.py").write_text(
        "from core.hookspecs import hookimpl\n\n@hookimpl\ndef deliver(delivery, letter):\n"
        "    return None\n"
    )
    write_dist_info(site, "tavle-broken", {"broken": "tavle_broken"})
    with pytest.raises(PluginError, match=r"(?s)'broken' .* is invalid: .*'letter'"):
        create_plugin_manager()


def test_two_distributions_with_one_plugin_name(site: Path) -> None:
    write_dist_info(site, "tavle-other-email", {"email": "tavle_broken"})
    with pytest.raises(PluginError, match="two plugins are named 'email'"):
        create_plugin_manager()


def test_installing_and_disabling_left_no_trace() -> None:
    # Runs after the tests above in this module: the process-wide manager is back to the
    # built-ins, for the test modules that follow.
    assert {"inapp", "email", "sms", "svarut"} <= set(plugin_names(plugin_manager()))
    assert "printmail" not in channels()
    assert not any(name.startswith("tavle_printmail") for name in sys.modules)
