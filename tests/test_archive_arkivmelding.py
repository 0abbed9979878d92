"""The arkivmelding of every archived doctype validates against the official Fiks Arkiv V1
schema (no.ks.fiks.arkiv.v1.arkivering.arkivmelding.opprett.xsd, read from
TAVLE_FIKS_ARKIV_XSD_DIR) and carries what the archive needs: title, document date,
registry status from the doctype, restriction with its legal basis, sender and
recipients, the PDF/A with its SHA-256, and the entry's external key; folders carry
archive part SAK, access code EL and the K-codes B34 and B31 with the case owner."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from lxml import etree

from core.archive.batch import load_items
from core.archive.queue import entry_key, folder_key
from core.archive.settings import ArchiveSettings
from plugins.elements.arkivmelding import MDK_NS, NS, OPPRETT_XSD, build_arkivmelding
from plugins.elements.xsd import validation_errors, xsd_dir
from tests.test_archive_batches import make_entries

pytestmark = pytest.mark.skipif(
    xsd_dir() is None,
    reason="the Fiks Arkiv XSDs are not there (set TAVLE_FIKS_ARKIV_XSD_DIR to the folder "
    "with no.ks.fiks.arkiv.v1.arkivering.arkivmelding.opprett.xsd)",
)

SETTINGS = ArchiveSettings()
NSMAP = {"a": NS, "m": MDK_NS}


@pytest.fixture(scope="module")
async def items(sessions: Any, app: Any) -> dict[str, Any]:
    """One queued entry per archived doctype, as the batch hands it to the plugin."""
    doctypes = app.state.tavle.doctypes
    archived = sorted(k for k, d in doctypes.items() if d.archive != "never")
    assert len(archived) >= 10
    entry_ids = []
    for index, key in enumerate(archived):
        entry_ids += await make_entries(sessions, doctypes, 1, key, offset=40 + index)
    async with sessions() as s:
        loaded, refused = await load_items(s, entry_ids, doctypes, SETTINGS)
    assert refused == {}
    return {item.doctype: item for item in loaded}


def _xml(item: Any, **kwargs: Any) -> etree._Element:
    xml = build_arkivmelding(
        item, folder_restriction_basis=SETTINGS.folder_restriction_basis, **kwargs
    )
    assert validation_errors(xml, OPPRETT_XSD) == [], item.doctype
    return etree.fromstring(xml)


def _text(root: etree._Element, path: str) -> str | None:
    return root.findtext(path, namespaces=NSMAP)


async def test_every_archived_doctype_validates(items: dict[str, Any], app: Any) -> None:
    doctypes = app.state.tavle.doctypes
    for key, item in items.items():
        doctype = doctypes[key]
        for folder in (
            item.folder,  # no case number yet: the saksmappe goes along
            dataclasses.replace(item.folder, case_year=2026, case_sequence=77),
            dataclasses.replace(item.folder, case_year=2026, case_sequence=78, mapped=True),
        ):
            root = _xml(dataclasses.replace(item, folder=folder))
            post = root.find("a:registrering", NSMAP)
            assert post.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "journalpost"
            assert _text(post, "a:tittel") == item.title
            assert _text(post, "a:dokumentetsDato") == item.document_date.isoformat()
            assert _text(post, "a:journalstatus/m:kode") == doctype.registry_status
            assert _text(post, "a:referanseEksternNoekkel/m:noekkel") == entry_key(item.entry_id)
            assert _text(post, "a:referanseEksternNoekkel/m:fagsystem") == "Tavle"
            obj = post.find("a:dokumentbeskrivelse/a:dokumentobjekt", NSMAP)
            assert _text(obj, "a:sjekksum") == item.pdf_sha256
            assert _text(obj, "a:sjekksumAlgoritme") == "SHA256"
            assert int(_text(obj, "a:filstoerrelse")) == len(item.pdf)
            assert _text(obj, "a:format/m:kode") == "RA-PDF"
            basis = _text(post, "a:skjerming/a:skjermingshjemmel")
            assert basis == (doctype.restriction_basis if doctype.restricted else None)
            parties = post.findall("a:korrespondansepart", NSMAP)
            kinds = [_text(p, "a:korrespondanseparttype/m:kode") for p in parties]
            assert kinds[0] == "IA" and _text(parties[0], "a:korrespondansepartNavn")
            if doctype.recipients == "none":
                assert kinds == ["IA"] and _text(post, "a:journalposttype/m:kode") == "X"
            else:
                assert "EM" in kinds and _text(post, "a:journalposttype/m:kode") == "U"
            parent = post.find("a:referanseForelderMappe", NSMAP)
            mappe = root.find("a:mappe", NSMAP)
            if folder.case_year is None:
                assert mappe is not None
                assert _text(parent, "m:referanseEksternNoekkel/m:noekkel") == folder_key(folder.id)
            else:
                assert mappe is None
                assert _text(parent, "m:saksnummer/m:sakssekvensnummer") == str(
                    folder.case_sequence
                )
                # A case made by hand is known to the archive by its number only.
                has_key = parent.find("m:referanseEksternNoekkel", NSMAP) is not None
                assert has_key is not folder.mapped


async def test_folders_carry_the_archive_plan(items: dict[str, Any]) -> None:
    school_item = items["gruppeoversikt"]
    assert school_item.folder.kind == "school"
    assert school_item.folder.title.startswith("Skolemappe - Nordby skole ")
    student_item = items["fravaersvarsel"]
    for item in (school_item, student_item):
        # As on first use, before the archive has given the case a number.
        folder = dataclasses.replace(item.folder, case_year=None, case_sequence=None)
        item = dataclasses.replace(item, folder=folder)
        mappe = _xml(item).find("a:mappe", NSMAP)
        assert mappe.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "saksmappe"
        assert _text(mappe, "a:tittel") == item.folder.title
        assert _text(mappe, "a:arkivdel/m:kode") == "SAK"
        assert _text(mappe, "a:skjerming/a:tilgangsrestriksjon/m:kode") == "EL"
        assert _text(mappe, "a:saksansvarlig/m:initialer") == item.case_owner
        classes = [
            (_text(c, "a:klassifikasjonssystemID"), _text(c, "a:klasseID"))
            for c in mappe.findall("a:klassifikasjon", NSMAP)
        ]
        assert ("K-kode", "B34") in classes and ("K-kode", "B31") in classes
    assert _text(mappe, "a:offentligTittel") == "Elevmappe - *****"  # the student's


async def test_moving_notice_is_registered_with_status_r(items: dict[str, Any]) -> None:
    root = _xml(items["flyttemelding"])
    assert _text(root, "a:registrering/a:journalstatus/m:kode") == "R"


async def test_restricted_entries_mask_the_student_in_the_public_title(items) -> None:
    item = items["varsel_orden_atferd"]
    root = _xml(item)
    public = _text(root, "a:registrering/a:offentligTittel")
    assert "*****" in public and item.folder.student_name not in public
    recipients = [
        p
        for p in root.findall("a:registrering/a:korrespondansepart", NSMAP)
        if _text(p, "a:korrespondanseparttype/m:kode") == "EM"
    ]
    assert recipients and all(_text(p, "a:erSkjermet") == "true" for p in recipients)


async def test_a_bad_message_is_rejected_by_the_schema(items: dict[str, Any]) -> None:
    xml = build_arkivmelding(
        items["fravaersvarsel"], folder_restriction_basis=SETTINGS.folder_restriction_basis
    )
    broken = xml.replace(b"<system>Tavle</system>", b"")
    assert validation_errors(broken, OPPRETT_XSD)
