"""Documents end to end through GraphQL against the database: create (validated against
the doctype), edit while draft, finalize to PDF/A-2b with a recorded SHA-256 and a
signature, send into the outbox, the PDF at its URL, restriction, deletion, and the rules
that hold even when a doctype object is misconfigured.

Finalizing renders a real PDF with WeasyPrint (~0.2 s), so the file finalizes only a few
documents and shares them between the checks that read them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
from typing import Any

import pikepdf
import pytest
from sqlalchemy import delete, func, select, update

from core.models import (
    ArchiveEntry,
    AuditEvent,
    Delivery,
    Document,
    Enrolment,
    Guardianship,
    Person,
    School,
    SchoolYear,
)
from core.schema.ids import decode_pk, encode
from tests.conftest import error_codes

LETTER = "brev_personopplysninger"  # not sensitive, SvarUt, basis may be set by the author
NOTE = "notat_elev"  # in-app / email, the basis may not be set
WARNING = "varsel_orden_atferd"  # sensitive and restricted, SvarUt only
TEACHER = "laerer.nordby.5a"  # contact teacher of Emma Hansen's class
GUARDIAN = "foresatt.hansen"  # Emma's guardian: reads her documents, not restricted ones
BASIS = "Offl. § 13 jf. fvl. § 13 første ledd nr. 1"

LETTER_FIELDS = {"overskrift": "Utviklingssamtale", "tekst": "Velkommen til samtale.\n\nHilsen"}
WARNING_FIELDS = {
    "karakter": "orden",
    "termin": "1. termin",
    "grunnlag": "Gjentatte brudd på ordensreglementet.",
    "samtale_tilbud": True,
}
DECISION = "permisjonsvedtak"  # needs leave_application:decide (the principal)
DECISION_FIELDS = {
    "soknadsdato": "2026-11-02",
    "fra_dato": "2026-12-14",
    "til_dato": "2026-12-18",
    "resultat": "innvilget",
    "begrunnelse": "Familiereise.",
}

DOCUMENT_FIELDS = """
  id title status fields restricted restrictionBasis finalizedAt pdfSha256 pdfUrl sentAt
  doctype { key title } createdBy { name } signedBy { name }
  student { id name }
  deliveries { channel status recipient { id name } }
"""
CREATE = (
    "mutation($input: CreateDocumentInput!) { createDocument(input: $input) {"
    + DOCUMENT_FIELDS
    + "} }"
)
UPDATE = (
    "mutation($input: UpdateDocumentInput!) { updateDocument(input: $input) {"
    + DOCUMENT_FIELDS
    + "} }"
)
FINALIZE = "mutation($id: ID!) { finalizeDocument(id: $id) {" + DOCUMENT_FIELDS + "} }"
SEND = "mutation($id: ID!) { sendDocument(id: $id) {" + DOCUMENT_FIELDS + "} }"
DELETE = "mutation($input: DeleteDocumentInput!) { deleteDocument(input: $input) { id } }"
DOCUMENT = "query($id: ID!) { document(id: $id) {" + DOCUMENT_FIELDS + "} }"
DOCUMENTS = """
query($filter: DocumentFilter) {
  documents(first: 100, filter: $filter) { totalCount edges { node { id status doctype { key } } } }
}"""
STUDENT_DOCUMENTS = "query($id: ID!) { student(id: $id) { documents { id restricted } } }"


# --------------------------------------------------------------------------------------
# Helpers


async def _person_id(sessions: Any, username: str) -> int:
    async with sessions() as s:
        return (await s.execute(select(Person.id).where(Person.username == username))).scalar_one()


async def _count(sessions: Any, model: Any, *where: Any) -> int:
    async with sessions() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar()


async def _deliveries(sessions: Any, document_gid: str) -> list[tuple[int, str, str]]:
    async with sessions() as s:
        rows = await s.execute(
            select(Delivery.recipient_id, Delivery.channel, Delivery.status)
            .where(Delivery.document_id == decode_pk(document_gid, "Document"))
            .order_by(Delivery.recipient_id, Delivery.channel)
        )
        return [(r, c, str(st)) for r, c, st in rows]


async def _responsible_guardians(sessions: Any, student_gid: str) -> list[int]:
    async with sessions() as s:
        return sorted(
            (
                await s.execute(
                    select(Guardianship.guardian_id).where(
                        Guardianship.student_id == decode_pk(student_gid, "Student"),
                        Guardianship.parental_responsibility.is_(True),
                    )
                )
            ).scalars()
        )


async def _create(gql: Any, username: str, **input: Any) -> dict[str, Any]:
    return await gql.query(username, CREATE, {"input": input})


async def _created(gql: Any, username: str, **input: Any) -> dict[str, Any]:
    result = await _create(gql, username, **input)
    assert not result.get("errors"), result["errors"]
    return result["data"]["createDocument"]


async def _mutate(gql: Any, username: str, query: str, gid: str, key: str) -> dict[str, Any]:
    data = await gql.data(username, query, {"id": gid})
    return data[key]


async def _pdf(client: Any, gql: Any, url: str, username: str | None) -> Any:
    headers = {"Authorization": f"Bearer {await gql.token(username)}"} if username else {}
    return await client.get(url, headers=headers)


def _code_and_field(result: dict[str, Any]) -> tuple[str | None, str | None]:
    assert result.get("errors"), result
    extensions = result["errors"][0].get("extensions") or {}
    return extensions.get("code"), extensions.get("field")


@pytest.fixture(scope="module")
def state(app: Any) -> Any:
    return app.state.tavle


@pytest.fixture(scope="module", autouse=True)
async def leave_no_jobs(sessions: Any) -> Any:
    """The database is shared by the whole test session: afterwards, remove the outbox
    jobs and archive entries of this module's documents so that no later worker test
    picks them up."""
    async with sessions() as s:
        first = (await s.execute(select(func.coalesce(func.max(Document.id), 0)))).scalar()
    yield
    async with sessions() as s, s.begin():
        ours = select(Document.id).where(Document.id > first)
        await s.execute(delete(Delivery).where(Delivery.document_id.in_(ours)))
        await s.execute(delete(ArchiveEntry).where(ArchiveEntry.document_id.in_(ours)))


# --------------------------------------------------------------------------------------
# Doctypes


async def test_doctypes_are_listed_with_their_rules(gql: Any) -> None:
    data = await gql.data(
        TEACHER,
        "{ doctypes { key title sensitive restricted restrictionBasisEditable channels archive"
        " folder fields { name type required } } }",
    )
    by_key = {d["key"]: d for d in data["doctypes"]}
    warning = by_key[WARNING]
    assert warning["sensitive"] and warning["restricted"]
    assert warning["channels"] == ["svarut"]
    assert warning["archive"] == "ALWAYS" and warning["folder"] == "student"
    assert {"name": "grunnlag", "type": "multiline", "required": True} in warning["fields"]
    assert by_key[NOTE]["restrictionBasisEditable"] is False
    result = await gql.query(None, "{ doctypes { key } }")
    assert error_codes(result) == ["UNAUTHENTICATED"]


# --------------------------------------------------------------------------------------
# createDocument validation: a clear code, nothing written


BAD = "BAD_USER_INPUT"


@pytest.mark.parametrize(
    ("username", "doctype", "fields", "code", "field"),
    [
        (TEACHER, "finnes_ikke", LETTER_FIELDS, BAD, "doctype"),
        (TEACHER, LETTER, {**LETTER_FIELDS, "farge": "blå"}, BAD, "fields.farge"),
        (TEACHER, LETTER, {"overskrift": "Bare overskrift"}, BAD, "fields.tekst"),
        (TEACHER, LETTER, {**LETTER_FIELDS, "tekst": "  "}, BAD, "fields.tekst"),
        (TEACHER, LETTER, {**LETTER_FIELDS, "overskrift": 5}, BAD, "fields.overskrift"),
        (TEACHER, LETTER, ["ikke", "et", "objekt"], BAD, "fields"),
        (TEACHER, WARNING, {**WARNING_FIELDS, "karakter": "sang"}, BAD, "fields.karakter"),
        (
            TEACHER,
            WARNING,
            {**WARNING_FIELDS, "samtale_tilbud": "ja"},
            BAD,
            "fields.samtale_tilbud",
        ),
        (
            "rektor.nordby",
            DECISION,
            {**DECISION_FIELDS, "fra_dato": "14. desember"},
            BAD,
            "fields.fra_dato",
        ),
        # Another class's teacher: Emma is outside the caller's scope.
        ("laerer.nordby.6b", LETTER, LETTER_FIELDS, "FORBIDDEN", None),
        # A guardian reads documents but has no document:create (the doctype's permission)...
        (GUARDIAN, LETTER, LETTER_FIELDS, "FORBIDDEN", None),
        # ... and is refused before the input is looked at.
        (GUARDIAN, LETTER, {"farge": 1}, "FORBIDDEN", None),
        (None, LETTER, LETTER_FIELDS, "UNAUTHENTICATED", None),
    ],
)
async def test_create_is_validated_against_the_doctype(
    gql: Any,
    sessions: Any,
    emma: str,
    username: str | None,
    doctype: str,
    fields: Any,
    code: str,
    field: str | None,
) -> None:
    documents = await _count(sessions, Document)
    events = await _count(sessions, AuditEvent, AuditEvent.action == "create_document")
    result = await _create(gql, username, doctype=doctype, studentId=emma, fields=fields)
    assert _code_and_field(result) == (code, field), result["errors"]
    assert result["data"] is None
    assert await _count(sessions, Document) == documents
    assert await _count(sessions, AuditEvent, AuditEvent.action == "create_document") == events


async def test_unknown_student_is_not_found(gql: Any, sessions: Any) -> None:
    documents = await _count(sessions, Document)
    result = await _create(
        gql, TEACHER, doctype=LETTER, studentId=encode("Student", 999_999), fields=LETTER_FIELDS
    )
    assert error_codes(result) == ["NOT_FOUND"]
    assert await _count(sessions, Document) == documents


# --------------------------------------------------------------------------------------
# The life cycle of one letter: draft, edit, finalize, PDF, send


@pytest.fixture(scope="module")
async def letter(gql: Any, emma: str) -> dict[str, Any]:
    """A letter about Emma, created and edited as a draft, then finalized (one render)."""
    draft = await _created(gql, TEACHER, doctype=LETTER, studentId=emma, fields=LETTER_FIELDS)
    assert draft["status"] == "DRAFT" and draft["finalizedAt"] is None
    assert draft["pdfUrl"] is None and draft["signedBy"] is None
    assert draft["restricted"] is False and draft["restrictionBasis"] is None
    edited = {**LETTER_FIELDS, "overskrift": "Invitasjon til utviklingssamtale"}
    data = await gql.data(TEACHER, UPDATE, {"input": {"id": draft["id"], "fields": edited}})
    assert data["updateDocument"]["fields"] == edited
    finalized = await _mutate(gql, TEACHER, FINALIZE, draft["id"], "finalizeDocument")
    return {"draft": draft, "fields": edited, "finalized": finalized}


async def test_create_makes_an_audited_draft_on_the_student(
    gql: Any, sessions: Any, emma: str, letter: dict[str, Any]
) -> None:
    draft = letter["draft"]
    assert draft["doctype"]["key"] == LETTER
    assert draft["student"]["id"] == emma
    assert draft["createdBy"]["name"]
    assert draft["title"].startswith("Brev til foresatte")
    pk = str(decode_pk(draft["id"], "Document"))
    for action in ("create_document", "update_document", "finalize_document"):
        assert await _count(
            sessions, AuditEvent, AuditEvent.action == action, AuditEvent.resource_id == pk
        ), action


async def test_finalize_signs_hashes_and_renders_pdfa(
    gql: Any, client: Any, sessions: Any, letter: dict[str, Any]
) -> None:
    finalized = letter["finalized"]
    assert finalized["status"] == "FINALIZED"
    assert finalized["fields"] == letter["fields"]
    assert finalized["finalizedAt"] is not None
    teacher = await _person_id(sessions, TEACHER)
    async with sessions() as s:
        row = (
            await s.execute(
                select(Document.finalized_by_id, Document.finalized_at, Document.created_at).where(
                    Document.id == decode_pk(finalized["id"], "Document")
                )
            )
        ).one()
    assert row.finalized_by_id == teacher
    assert row.finalized_at >= row.created_at
    async with sessions() as s:
        teacher_name = (await s.get(Person, teacher)).name
    assert finalized["signedBy"]["name"] == teacher_name

    response = await _pdf(client, gql, finalized["pdfUrl"], TEACHER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert hashlib.sha256(response.content).hexdigest() == finalized["pdfSha256"]
    with pikepdf.open(io.BytesIO(response.content)) as pdf:
        assert pdf.open_metadata().pdfa_status == "2B"
        assert len(pdf.pages) >= 1
    assert "Invitasjon til utviklingssamtale" in (await _html(sessions, finalized["id"])), (
        "the edited field value is what was rendered"
    )


async def _html(sessions: Any, gid: str) -> str:
    async with sessions() as s:
        return (
            await s.execute(select(Document.html).where(Document.id == decode_pk(gid, "Document")))
        ).scalar_one()


async def test_a_finalized_document_is_immutable(
    gql: Any, sessions: Any, letter: dict[str, Any]
) -> None:
    gid = letter["finalized"]["id"]
    changed = {**LETTER_FIELDS, "tekst": "Endret etter signering"}
    for variables in (
        {"input": {"id": gid, "fields": changed}},
        {"input": {"id": gid, "restrictionBasis": BASIS}},
    ):
        result = await gql.query(TEACHER, UPDATE, variables)
        assert error_codes(result) == ["BAD_USER_INPUT"], result
    result = await gql.query(TEACHER, FINALIZE, {"id": gid})
    assert error_codes(result) == ["BAD_USER_INPUT"]
    data = await gql.data(TEACHER, DOCUMENT, {"id": gid})
    assert data["document"]["fields"] == letter["fields"]
    assert data["document"]["pdfSha256"] == letter["finalized"]["pdfSha256"]
    assert data["document"]["restricted"] is False


async def test_an_edit_racing_a_finalize_is_never_signed_over(
    gql: Any, sessions: Any, emma: str
) -> None:
    draft = await _created(gql, TEACHER, doctype=NOTE, studentId=emma, fields=_note_fields())
    edited = {**_note_fields(), "emne": "Endret tur"}
    finalize, edit = await asyncio.gather(
        gql.query(TEACHER, FINALIZE, {"id": draft["id"]}),
        gql.query(TEACHER, UPDATE, {"input": {"id": draft["id"], "fields": edited}}),
    )
    document = (await gql.data(TEACHER, DOCUMENT, {"id": draft["id"]}))["document"]
    if edit.get("errors"):
        # The finalize came first: the edit was refused and the letter is as signed.
        assert error_codes(edit) == ["BAD_USER_INPUT"]
        assert document["status"] == "FINALIZED" and document["fields"] == _note_fields()
    else:
        # The edit was saved: it is in the signed letter, or the finalize was refused.
        assert document["fields"] == edited
        if document["status"] == "FINALIZED":
            assert "Endret tur" in await _html(sessions, draft["id"])
        else:
            assert error_codes(finalize) == ["BAD_USER_INPUT"]


async def test_pdf_only_for_those_who_may_read_it(
    gql: Any, client: Any, letter: dict[str, Any], emma: str
) -> None:
    url = letter["finalized"]["pdfUrl"]
    # Emma's guardian may read her (unrestricted) letter; the principal reads the school's.
    for username in (GUARDIAN, "rektor.nordby"):
        response = await _pdf(client, gql, url, username)
        assert response.status_code == 200, username
        assert hashlib.sha256(response.content).hexdigest() == letter["finalized"]["pdfSha256"]
    for username in ("foresatt.berg", "laerer.nordby.6b", "rektor.sorby", "elev.noah.hansen"):
        response = await _pdf(client, gql, url, username)
        assert response.status_code == 404, username
        assert response.headers["content-type"] != "application/pdf"
    assert (await _pdf(client, gql, url, None)).status_code == 401
    bad = await client.get(url, headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401
    # A document's URL with another type's id is refused, not looked up.
    assert (await _pdf(client, gql, f"/documents/{emma}/pdf", TEACHER)).status_code == 400


async def test_a_draft_has_no_pdf(gql: Any, client: Any, emma: str) -> None:
    draft = await _created(gql, TEACHER, doctype=NOTE, studentId=emma, fields=_note_fields())
    assert draft["pdfUrl"] is None
    response = await _pdf(client, gql, f"/documents/{draft['id']}/pdf", TEACHER)
    assert response.status_code == 404


def _note_fields() -> dict[str, str]:
    return {"emne": "Tur i morgen", "tekst": "Husk matpakke."}


async def test_documents_appear_on_the_student_and_in_the_list(
    gql: Any, emma: str, letter: dict[str, Any]
) -> None:
    gid = letter["finalized"]["id"]
    for username in (TEACHER, GUARDIAN, "rektor.nordby"):
        data = await gql.data(username, STUDENT_DOCUMENTS, {"id": emma})
        assert gid in [d["id"] for d in data["student"]["documents"]], username
        data = await gql.data(username, DOCUMENTS, {"filter": {"studentId": emma}})
        assert gid in [e["node"]["id"] for e in data["documents"]["edges"]], username
    data = await gql.data(
        TEACHER, DOCUMENTS, {"filter": {"doctype": LETTER, "status": "FINALIZED"}}
    )
    nodes = [e["node"] for e in data["documents"]["edges"]]
    assert gid in [n["id"] for n in nodes]
    assert {(n["doctype"]["key"], n["status"]) for n in nodes} == {(LETTER, "FINALIZED")}
    assert data["documents"]["totalCount"] >= len(nodes)
    data = await gql.data(TEACHER, DOCUMENTS, {"filter": {"studentId": emma, "status": "SENT"}})
    assert gid not in [e["node"]["id"] for e in data["documents"]["edges"]]
    # Out of scope: left out of lists, refused one by one.
    for username in ("foresatt.berg", "laerer.nordby.6b"):
        data = await gql.data(username, DOCUMENTS, {"filter": {"doctype": LETTER}})
        assert gid not in [e["node"]["id"] for e in data["documents"]["edges"]], username
        result = await gql.query(username, DOCUMENT, {"id": gid})
        assert error_codes(result) == ["FORBIDDEN"], username
    result = await gql.query(TEACHER, DOCUMENTS, {"filter": {"doctype": "finnes_ikke"}})
    assert error_codes(result) == ["BAD_USER_INPUT"]


async def test_send_writes_one_delivery_per_guardian_and_channel(
    gql: Any, sessions: Any, emma: str, letter: dict[str, Any]
) -> None:
    gid = letter["finalized"]["id"]
    # Sending needs document:send for the student: another class's teacher cannot.
    result = await gql.query("laerer.nordby.6b", SEND, {"id": gid})
    assert error_codes(result) == ["FORBIDDEN"]
    assert await _deliveries(sessions, gid) == []

    # Two sends at once (a double click): one sends, the other is told it was sent.
    results = await asyncio.gather(
        gql.query(TEACHER, SEND, {"id": gid}), gql.query(TEACHER, SEND, {"id": gid})
    )
    assert sorted(tuple(error_codes(r)) for r in results) == [(), ("BAD_USER_INPUT",)], results
    (sent,) = [r["data"]["sendDocument"] for r in results if not r.get("errors")]
    assert sent["status"] == "SENT" and sent["sentAt"] is not None
    guardians = await _responsible_guardians(sessions, emma)
    assert guardians and await _person_id(sessions, GUARDIAN) in guardians
    assert await _deliveries(sessions, gid) == [(g, "svarut", "queued") for g in guardians]
    assert [(d["channel"], d["status"]) for d in sent["deliveries"]] == [
        ("svarut", "QUEUED")
    ] * len(guardians)
    assert await _count(
        sessions,
        AuditEvent,
        AuditEvent.action == "send_document",
        AuditEvent.resource_id == str(decode_pk(gid, "Document")),
    )
    # Sending twice writes nothing more.
    result = await gql.query(TEACHER, SEND, {"id": gid})
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert len(await _deliveries(sessions, gid)) == len(guardians)


async def test_a_draft_cannot_be_sent(gql: Any, sessions: Any, emma: str) -> None:
    draft = await _created(gql, TEACHER, doctype=NOTE, studentId=emma, fields=_note_fields())
    result = await gql.query(TEACHER, SEND, {"id": draft["id"]})
    assert _code_and_field(result) == ("BAD_USER_INPUT", "id")
    assert await _deliveries(sessions, draft["id"]) == []


async def test_finalize_and_send_need_their_own_permission_and_the_doctypes(
    gql: Any, sessions: Any, emma: str
) -> None:
    # A leave decision needs leave_application:decide (the principal has it). The school
    # administrator may finalize documents in general, the teacher too, but not this one.
    decision = await _created(
        gql, "rektor.nordby", doctype=DECISION, studentId=emma, fields=DECISION_FIELDS
    )
    for username in ("skoleadmin.nordby", TEACHER):
        result = await gql.query(username, FINALIZE, {"id": decision["id"]})
        assert error_codes(result) == ["FORBIDDEN"], username
    data = await gql.data("rektor.nordby", DOCUMENT, {"id": decision["id"]})
    assert data["document"]["status"] == "DRAFT"

    # A guardian may read the teacher's note about their child, but finalizing and
    # sending need document:finalize and document:send, held as staff.
    note = await _created(gql, TEACHER, doctype=NOTE, studentId=emma, fields=_note_fields())
    result = await gql.query(GUARDIAN, FINALIZE, {"id": note["id"]})
    assert error_codes(result) == ["FORBIDDEN"]
    await _mutate(gql, TEACHER, FINALIZE, note["id"], "finalizeDocument")
    result = await gql.query(GUARDIAN, SEND, {"id": note["id"]})
    assert error_codes(result) == ["FORBIDDEN"]
    assert await _deliveries(sessions, note["id"]) == []
    # The first of its channels that reaches each guardian: in-app for those who have
    # activated their account, e-mail for the others.
    await _mutate(gql, TEACHER, SEND, note["id"], "sendDocument")
    guardians = await _responsible_guardians(sessions, emma)
    async with sessions() as s:
        people = (
            await s.execute(select(Person).where(Person.id.in_(guardians)).order_by(Person.id))
        ).scalars()
        expected = [(p.id, "inapp" if p.activated_at else "email", "queued") for p in people]
    assert await _deliveries(sessions, note["id"]) == expected


# --------------------------------------------------------------------------------------
# A restricted, sensitive warning: SvarUt only, needs national ids, hidden from guardians


@pytest.fixture
async def hansen_without_national_id(sessions: Any) -> Any:
    """Emma's guardian without a national id for one test, restored afterwards."""
    async with sessions() as s, s.begin():
        person = (await s.execute(select(Person).where(Person.username == GUARDIAN))).scalar_one()
        saved = person.national_id
        person.national_id = None
    try:
        yield
    finally:
        async with sessions() as s, s.begin():
            await s.execute(
                update(Person).where(Person.username == GUARDIAN).values(national_id=saved)
            )


@pytest.fixture(scope="module")
async def warning(gql: Any, emma: str) -> dict[str, Any]:
    draft = await _created(gql, TEACHER, doctype=WARNING, studentId=emma, fields=WARNING_FIELDS)
    assert draft["restricted"] is True and draft["restrictionBasis"] == BASIS
    # The principal signs the teacher's draft: the signer is who finalizes, not the author.
    return await _mutate(gql, "rektor.nordby", FINALIZE, draft["id"], "finalizeDocument")


@pytest.fixture(scope="module")
async def unsent_warning(gql: Any, emma: str) -> dict[str, Any]:
    """A second warning about Emma, finalized but never sent to anyone."""
    draft = await _created(gql, TEACHER, doctype=WARNING, studentId=emma, fields=WARNING_FIELDS)
    return await _mutate(gql, TEACHER, FINALIZE, draft["id"], "finalizeDocument")


async def test_guardian_without_national_id_stops_the_send_before_anything_is_written(
    gql: Any, sessions: Any, warning: dict[str, Any], hansen_without_national_id: Any
) -> None:
    gid = warning["id"]
    events = await _count(sessions, AuditEvent, AuditEvent.action == "send_document")
    result = await gql.query(TEACHER, SEND, {"id": gid})
    assert _code_and_field(result) == ("BAD_USER_INPUT", "recipients")
    message = result["errors"][0]["message"]
    assert "fødselsnummer" in message and "Hansen" in message, message
    assert await _deliveries(sessions, gid) == []
    assert await _count(sessions, AuditEvent, AuditEvent.action == "send_document") == events
    data = await gql.data(TEACHER, DOCUMENT, {"id": gid})
    assert data["document"]["status"] == "FINALIZED" and data["document"]["sentAt"] is None


async def test_sensitive_warning_is_sent_by_svarut_once_the_national_id_is_back(
    gql: Any, sessions: Any, emma: str, warning: dict[str, Any]
) -> None:
    sent = await _mutate(gql, TEACHER, SEND, warning["id"], "sendDocument")
    assert sent["status"] == "SENT"
    guardians = await _responsible_guardians(sessions, emma)
    assert await _deliveries(sessions, warning["id"]) == [
        (g, "svarut", "queued") for g in guardians
    ]


async def test_restricted_document_is_hidden_from_roles_without_restricted_access(
    gql: Any,
    client: Any,
    sessions: Any,
    emma: str,
    warning: dict[str, Any],
    unsent_warning: dict[str, Any],
    letter: dict[str, Any],
) -> None:
    gid = unsent_warning["id"]
    async with sessions() as s:
        people = (
            await s.execute(select(Person).where(Person.username.in_([TEACHER, "rektor.nordby"])))
        ).scalars()
        names = {p.username: p.name for p in people}
    assert warning["createdBy"]["name"] == names[TEACHER]
    assert warning["signedBy"]["name"] == names["rektor.nordby"]
    # The teacher and the principal have document_restricted read at Emma's school;
    # each download of a restricted PDF is audited.
    pk = str(decode_pk(gid, "Document"))
    for username in (TEACHER, "rektor.nordby"):
        data = await gql.data(username, DOCUMENT, {"id": gid})
        assert data["document"]["restricted"] is True, username
        reads = (AuditEvent.action == "read_document", AuditEvent.resource_id == pk)
        before = await _count(sessions, AuditEvent, *reads)
        assert (await _pdf(client, gql, unsent_warning["pdfUrl"], username)).status_code == 200
        assert await _count(sessions, AuditEvent, *reads) == before + 1
    # Emma's guardian may read her documents, but not restricted ones that were not sent
    # to them (see tests/test_document_access.py for those that were): not one by one,
    # not on the student, not in the list, not as a PDF.
    result = await gql.query(GUARDIAN, DOCUMENT, {"id": gid})
    assert error_codes(result) == ["FORBIDDEN"]
    node = "query($id: ID!) { node(id: $id) { id ... on Document { restricted } } }"
    result = await gql.query(GUARDIAN, node, {"id": gid})
    assert error_codes(result) == ["FORBIDDEN"] and result["data"]["node"] is None
    data = await gql.data(TEACHER, node, {"id": gid})
    assert data["node"] == {"id": gid, "restricted": True}
    data = await gql.data(GUARDIAN, STUDENT_DOCUMENTS, {"id": emma})
    documents = data["student"]["documents"]
    assert documents and gid not in [d["id"] for d in documents]
    # The only restricted documents the guardian sees are those sent to them (and their
    # own applications).
    theirs = await _sent_to_or_written_by(sessions, GUARDIAN)
    assert {d["id"] for d in documents if d["restricted"]} <= theirs
    assert warning["id"] in theirs
    data = await gql.data(GUARDIAN, DOCUMENTS, {"filter": {"studentId": emma}})
    assert gid not in [e["node"]["id"] for e in data["documents"]["edges"]]
    assert (await _pdf(client, gql, unsent_warning["pdfUrl"], GUARDIAN)).status_code == 404


async def _sent_to_or_written_by(sessions: Any, username: str) -> set[str]:
    """Global ids of the documents with a delivery to the person, or written by them."""
    person = await _person_id(sessions, username)
    async with sessions() as s:
        rows = await s.execute(
            select(Document.id).where(
                Document.id.in_(select(Delivery.document_id).where(Delivery.recipient_id == person))
                | (Document.created_by_id == person)
            )
        )
        return {encode("Document", pk) for pk in rows.scalars()}


# --------------------------------------------------------------------------------------
# Restriction basis: the author may set it where the doctype allows


async def test_author_sets_the_restriction_basis_where_the_doctype_allows(
    gql: Any, sessions: Any, emma: str
) -> None:
    restricted = await _created(
        gql, TEACHER, doctype=LETTER, studentId=emma, fields=LETTER_FIELDS, restrictionBasis=BASIS
    )
    assert restricted["restricted"] is True and restricted["restrictionBasis"] == BASIS
    result = await gql.query(GUARDIAN, DOCUMENT, {"id": restricted["id"]})
    assert error_codes(result) == ["FORBIDDEN"]

    draft = await _created(gql, TEACHER, doctype=LETTER, studentId=emma, fields=LETTER_FIELDS)
    other = "Offl. § 13 jf. fvl. § 13 første ledd nr. 2"
    # Someone else with access to the draft may edit fields, not the basis.
    result = await gql.query(
        "rektor.nordby", UPDATE, {"input": {"id": draft["id"], "restrictionBasis": other}}
    )
    assert error_codes(result) == ["FORBIDDEN"]
    data = await gql.data(
        TEACHER, UPDATE, {"input": {"id": draft["id"], "restrictionBasis": other}}
    )
    assert data["updateDocument"]["restricted"] is True
    assert data["updateDocument"]["restrictionBasis"] == other
    # An empty basis lifts the restriction of a doctype that is not restricted itself.
    data = await gql.data(TEACHER, UPDATE, {"input": {"id": draft["id"], "restrictionBasis": ""}})
    assert (data["updateDocument"]["restricted"], data["updateDocument"]["restrictionBasis"]) == (
        False,
        None,
    )

    # A doctype that does not allow it: refused on create and on edit, nothing written.
    documents = await _count(sessions, Document)
    result = await _create(
        gql, TEACHER, doctype=NOTE, studentId=emma, fields=_note_fields(), restrictionBasis=BASIS
    )
    assert _code_and_field(result) == ("BAD_USER_INPUT", "restrictionBasis")
    assert await _count(sessions, Document) == documents
    note = await _created(gql, TEACHER, doctype=NOTE, studentId=emma, fields=_note_fields())
    result = await gql.query(
        TEACHER, UPDATE, {"input": {"id": note["id"], "restrictionBasis": BASIS}}
    )
    assert _code_and_field(result) == ("BAD_USER_INPUT", "restrictionBasis")
    # A restricted doctype cannot lose its basis.
    result = await _create(
        gql, TEACHER, doctype=WARNING, studentId=emma, fields=WARNING_FIELDS, restrictionBasis=""
    )
    assert _code_and_field(result) == ("BAD_USER_INPUT", "restrictionBasis")


# --------------------------------------------------------------------------------------
# Deleting: the special permission "slett dokument", and an audit event


async def test_delete_needs_the_special_permission_and_is_audited(
    gql: Any, sessions: Any, emma: str
) -> None:
    # Nordby has nobody with "slett_dokument": the principal and the school admin may
    # read the document but not delete it.
    nordby = await _created(gql, TEACHER, doctype=NOTE, studentId=emma, fields=_note_fields())
    for username in (TEACHER, "rektor.nordby", "skoleadmin.nordby"):
        result = await gql.query(
            username, DELETE, {"input": {"id": nordby["id"], "reason": "Feil elev"}}
        )
        assert error_codes(result) == ["FORBIDDEN"], username
    await gql.data(TEACHER, DOCUMENT, {"id": nordby["id"]})

    # Vestby's school administrator holds "slett_dokument" at Vestby (demo data).
    admin = "skoleadmin.vestby"
    data = await gql.data(admin, "{ students(first: 1) { edges { node { id } } } }")
    student = data["students"]["edges"][0]["node"]["id"]
    document = await _created(gql, admin, doctype=LETTER, studentId=student, fields=LETTER_FIELDS)
    await _mutate(gql, admin, FINALIZE, document["id"], "finalizeDocument")
    await _mutate(gql, admin, SEND, document["id"], "sendDocument")
    queued = await _deliveries(sessions, document["id"])
    assert queued and {status for _, _, status in queued} == {"queued"}
    result = await gql.query(admin, DELETE, {"input": {"id": document["id"], "reason": " "}})
    assert _code_and_field(result) == ("BAD_USER_INPUT", "reason")
    await gql.data(admin, DELETE, {"input": {"id": document["id"], "reason": "Sendt til feil"}})
    # What had not gone out yet never will: the worker only claims queued deliveries.
    assert await _deliveries(sessions, document["id"]) == [
        (recipient, channel, "failed") for recipient, channel, _ in queued
    ]

    pk = decode_pk(document["id"], "Document")
    async with sessions() as s:
        event = (
            await s.execute(
                select(AuditEvent).where(
                    AuditEvent.action == "delete_document", AuditEvent.resource_id == str(pk)
                )
            )
        ).scalar_one()
    assert event.actor_id == await _person_id(sessions, admin)
    assert event.detail["reason"] == "Sendt til feil"
    assert event.detail["stopped_deliveries"] == len(queued)
    assert event.resource_type == "document"
    # Gone everywhere, and cannot be deleted twice.
    result = await gql.query(admin, DOCUMENT, {"id": document["id"]})
    assert error_codes(result) == ["NOT_FOUND"]
    data = await gql.data(admin, DOCUMENTS, {"filter": {"studentId": student}})
    assert document["id"] not in [e["node"]["id"] for e in data["documents"]["edges"]]
    data = await gql.data(admin, STUDENT_DOCUMENTS, {"id": student})
    assert document["id"] not in [d["id"] for d in data["student"]["documents"]]
    result = await gql.query(admin, DELETE, {"input": {"id": document["id"], "reason": "Igjen"}})
    assert error_codes(result) == ["NOT_FOUND"]


# --------------------------------------------------------------------------------------
# Rules enforced in code, whatever a doctype object says


def _misconfigured(state: Any, key: str, base: str, **changes: Any) -> Any:
    """A doctype built in code from a real one (same template), bypassing the loader;
    never archived, so no archive entry points at a doctype that exists only here."""
    never = {"archive": "never", "archive_on": None, "folder": None, "registry_status": None}
    return dataclasses.replace(state.doctypes[base], key=key, **{**never, **changes})


def _with_sensitive_field(doctype: Any, name: str) -> tuple[Any, ...]:
    return tuple(
        dataclasses.replace(f, sensitive=True) if f.name == name else f for f in doctype.fields
    )


@pytest.fixture(scope="module")
async def stepchild(sessions: Any) -> tuple[str, int]:
    """A Nordby student (the principal's scope) with a guardian who lives with them but
    has no parental responsibility: (student id, that guardian's person id)."""
    async with sessions() as s:
        row = (
            await s.execute(
                select(Guardianship.student_id, Guardianship.guardian_id)
                .join(Enrolment, Enrolment.student_id == Guardianship.student_id)
                .join(SchoolYear, SchoolYear.id == Enrolment.school_year_id)
                .join(School, School.id == Enrolment.school_id)
                .where(
                    Guardianship.parental_responsibility.is_(False),
                    SchoolYear.is_current.is_(True),
                    School.name == "Nordby skole",
                )
                .order_by(Guardianship.student_id)
                .limit(1)
            )
        ).one()
    return encode("Student", row.student_id), row.guardian_id


async def test_sensitive_content_leaves_only_by_svarut_even_if_misconfigured(
    gql: Any,
    sessions: Any,
    state: Any,
    stepchild: tuple[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    student, step_parent = stepchild
    principal = "rektor.nordby"
    key = "test_feilkonfigurert_sensitiv"
    base = state.doctypes[LETTER]
    # Not marked sensitive, but one field is: the document counts as sensitive.
    wrong = _misconfigured(
        state,
        key,
        LETTER,
        sensitive=False,
        fields=_with_sensitive_field(base, "tekst"),
        channels=("inapp", "email", "sms"),
        delivery="all",
    )
    monkeypatch.setitem(state.doctypes, key, wrong)
    draft = await _created(gql, principal, doctype=key, studentId=student, fields=LETTER_FIELDS)
    async with sessions() as s:
        marked = (
            await s.execute(
                select(Document.sensitive).where(Document.id == decode_pk(draft["id"], "Document"))
            )
        ).scalar_one()
    assert marked is True
    await _mutate(gql, principal, FINALIZE, draft["id"], "finalizeDocument")

    result = await gql.query(principal, SEND, {"id": draft["id"]})
    assert _code_and_field(result) == ("BAD_USER_INPUT", "channels")
    assert "SvarUt" in result["errors"][0]["message"]
    assert await _deliveries(sessions, draft["id"]) == []

    # With SvarUt among the channels and "all" of them asked for, only SvarUt is used.
    # This doctype also names the student as a recipient besides the guardians.
    fixed = dataclasses.replace(
        wrong, channels=("inapp", "email", "svarut"), recipients="student_and_guardians"
    )
    monkeypatch.setitem(state.doctypes, key, fixed)
    await _mutate(gql, principal, SEND, draft["id"], "sendDocument")
    # Guardians with parental responsibility get it, the step-parent does not.
    guardians = await _responsible_guardians(sessions, student)
    assert guardians and step_parent not in guardians
    recipients = sorted([decode_pk(student, "Student"), *guardians])
    assert await _deliveries(sessions, draft["id"]) == [(r, "svarut", "queued") for r in recipients]


async def test_a_form_never_carries_a_sensitive_field(
    gql: Any, sessions: Any, state: Any, emma: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = state.doctypes[LETTER]
    cases = {
        "test_skjema_sensitivt_felt": _misconfigured(
            state, "x", LETTER, form=True, fields=_with_sensitive_field(base, "tekst")
        ),
        "test_skjema_sensitiv_type": _misconfigured(state, "x", LETTER, form=True, sensitive=True),
    }
    documents = await _count(sessions, Document)
    for key, doctype in cases.items():
        monkeypatch.setitem(state.doctypes, key, dataclasses.replace(doctype, key=key))
        result = await _create(gql, TEACHER, doctype=key, studentId=emma, fields=LETTER_FIELDS)
        assert _code_and_field(result) == ("BAD_USER_INPUT", "doctype"), key
        assert "skjema" in result["errors"][0]["message"]
    assert await _count(sessions, Document) == documents
    # The same doctype as a form without sensitive data is fine.
    key = "test_skjema_uten_sensitivt"
    monkeypatch.setitem(state.doctypes, key, _misconfigured(state, key, LETTER, form=True))
    draft = await _created(gql, TEACHER, doctype=key, studentId=emma, fields=LETTER_FIELDS)
    assert draft["status"] == "DRAFT"


async def test_start_up_starts_a_warm_renderer_process(settings: Any) -> None:
    """The app's start-up starts the renderer process and waits until it is warm (fonts
    loaded, its heap frozen), so the first letter does not pay for it; and the server's
    own start-up heap is frozen (and young collections rarer) while it serves, also with
    two apps overlapping; both are undone when the last app stops."""
    import gc
    import os

    import core.app as app_module
    from core.app import create_app
    from core.documents import render

    # The renderer is shared by the whole test process: start from none.
    render.stop_renderer()
    assert render._renderer_pool is None
    thresholds = gc.get_threshold()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[0] == app_module.YOUNG_COLLECTION_AFTER
        assert render._renderer_pool is not None
        assert await render.in_renderer(render.renderer_is_warm)
        renderer_pid = await render.in_renderer(os.getpid)
        assert renderer_pid != os.getpid()  # a process of its own
        assert gc.get_freeze_count() > 0
        other = create_app(settings)
        async with other.router.lifespan_context(other):
            pass
        assert gc.get_freeze_count() > 0  # still frozen: the first app still serves
        assert gc.get_threshold()[0] == app_module.YOUNG_COLLECTION_AFTER
        # A renderer that dies is replaced, and the letter is rendered all the same.
        os.kill(renderer_pid, 9)
        pdf, seconds = await render.in_renderer(render.render_timed, render._WARM_UP_HTML)
        assert pdf.startswith(b"%PDF-") and seconds > 0
        assert await render.in_renderer(os.getpid) != renderer_pid
    if app_module._serving_apps == 0:  # (another test's server may still be serving)
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == thresholds
        assert render._renderer_pool is None  # stopped with the last serving app


def test_renderer_process_ends_when_the_server_is_killed(tmp_path: Any) -> None:
    """A server killed outright (no shutdown) leaves no renderer process behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import asyncio, os, sys, time\n"
        "from core.documents import render\n"
        "pid = asyncio.run(render.in_renderer(os.getpid))\n"
        "print(pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        renderer = int(server.stdout.readline())  # type: ignore[union-attr]
        os.kill(renderer, 0)  # it runs
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(renderer, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(renderer, signal.SIGKILL)
            raise AssertionError("the renderer process outlived the server")
    finally:
        if server.poll() is None:
            server.kill()
