"""Who may write and who may read a document, beyond the staff's scopes:

- a recipient reads what was sent to them (a restricted absence warning to a guardian,
  grades to a student), and nothing else restricted about the child, and no drafts;
- a guardian writes only applications (doctype permission application:submit), only
  for their own children, and submits (finalizes) them themself; the school sees an
  application once it is submitted;
- every doctype's permission is held by the right roles (policy level);
- the outbox worker refuses, at the moment of sending, a deleted document and sensitive
  content on a channel that may not carry it.

Everything goes through GraphQL with the demo personas, against the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, exists, func, select, update

from core import outbox
from core.access.grants import Grant, Principal, load_principal
from core.doctypes import sample_fields
from core.documents import service
from core.errors import Forbidden
from core.models import (
    ArchiveEntry,
    AuditEvent,
    Delivery,
    DeliveryStatus,
    Document,
    Enrolment,
    Guardianship,
    Message,
    Person,
    School,
    SchoolYear,
)
from core.models.base import utcnow
from core.schema.ids import decode_pk, encode
from tests import delivery_e2e as e2e
from tests.conftest import error_codes

TEACHER = "laerer.nordby.5a"  # contact teacher of Emma Hansen (5A, Nordby)
TEACHER_9B = "laerer.sorby.9b"  # contact teacher of Noah Hansen (9B, Sørby)
GUARDIAN = "foresatt.hansen"  # Kari Hansen: guardian of Emma and Noah
OTHER_GUARDIAN = "foresatt.berg"  # guardian of Ida Berg only
STUDENT = "elev.noah.hansen"
SCHOOL_STAFF = ("skoleadmin.nordby", "rektor.nordby", TEACHER)  # Emma's school
ABSENCE_WARNING = "fravaersvarsel"  # restricted, in-app / e-mail to the guardians
TERM_GRADES = "terminkarakterer"  # restricted, in-app to the student and the guardians
LEAVE_APPLICATION = "permisjonssoknad"  # application:submit, archived always on finalize
NOTE = "notat_elev"

DOCUMENT_FIELDS = """
  id title status restricted pdfUrl pdfSha256 finalizedAt
  doctype { key } createdBy { id name } signedBy { id name }
  archive { status }
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
SEND = "mutation($id: ID!) { sendDocument(id: $id) { id status } }"
DELETE = "mutation($input: DeleteDocumentInput!) { deleteDocument(input: $input) { id } }"
DOCUMENT = "query($id: ID!) { document(id: $id) {" + DOCUMENT_FIELDS + "} }"
DOCUMENTS = """
query($filter: DocumentFilter) {
  documents(first: 100, filter: $filter) { totalCount edges { node { id restricted } } }
}"""
STUDENT_DOCUMENTS = "query($id: ID!) { student(id: $id) { documents { id restricted } } }"


# --------------------------------------------------------------------------------------
# Helpers and fixtures


async def _person_id(sessions: Any, username: str) -> int:
    async with sessions() as s:
        return (await s.execute(select(Person.id).where(Person.username == username))).scalar_one()


async def _count(sessions: Any, model: Any, *where: Any) -> int:
    async with sessions() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar()


def _fields(state: Any, doctype: str) -> dict[str, Any]:
    """Valid values for every field of the doctype."""
    return sample_fields(state.doctypes[doctype])


async def _create(gql: Any, state: Any, username: str, doctype: str, student: str) -> Any:
    values = _fields(state, doctype)
    return await gql.query(
        username, CREATE, {"input": {"doctype": doctype, "studentId": student, "fields": values}}
    )


async def _created(
    gql: Any, state: Any, username: str, doctype: str, student: str
) -> dict[str, Any]:
    result = await _create(gql, state, username, doctype, student)
    assert not result.get("errors"), result["errors"]
    return result["data"]["createDocument"]


async def _listed(gql: Any, username: str, filter: dict[str, Any] | None = None) -> set[str]:
    data = await gql.data(username, DOCUMENTS, {"filter": filter})
    return {e["node"]["id"] for e in data["documents"]["edges"]}


async def _on_student(gql: Any, username: str, student: str) -> set[str]:
    data = await gql.data(username, STUDENT_DOCUMENTS, {"id": student})
    return {d["id"] for d in data["student"]["documents"]}


async def _pdf_status(client: Any, gql: Any, url: str, username: str) -> int:
    headers = {"Authorization": f"Bearer {await gql.token(username)}"}
    return (await client.get(url, headers=headers)).status_code


async def _pdf_reads(sessions: Any, gid: str) -> int:
    return await _count(
        sessions,
        AuditEvent,
        AuditEvent.action == "read_document",
        AuditEvent.resource_id == str(decode_pk(gid, "Document")),
    )


async def _visible_to(sessions: Any, state: Any, person_id: int, gid: str) -> bool:
    """Whether the person may read the document: the same condition the API uses, for a
    person without a demo login (logging in would change their account for later tests)."""
    async with sessions() as s:
        principal = await load_principal(s, person_id, state.policy)
        return bool(
            (
                await s.execute(
                    select(
                        exists().where(
                            Document.id == decode_pk(gid, "Document"),
                            service.visible_documents(principal, state.doctypes),
                        )
                    )
                )
            ).scalar()
        )


@pytest.fixture(scope="module")
def state(app: Any) -> Any:
    return app.state.tavle


@pytest.fixture(scope="module")
async def noah(gql: Any) -> str:
    return await e2e.student_id(gql, "Noah Hansen", TEACHER_9B)


@pytest.fixture(scope="module")
async def ida(gql: Any) -> str:
    return await e2e.student_id(gql, "Ida Berg", "laerer.nordby.6b")


@pytest.fixture(scope="module", autouse=True)
async def leave_no_jobs(sessions: Any) -> AsyncIterator[None]:
    """The database is shared by the whole test session: afterwards, remove this
    module's outbox jobs and archive entries so that no later worker picks them up."""
    async with sessions() as s:
        first = (await s.execute(select(func.coalesce(func.max(Document.id), 0)))).scalar()
    yield
    async with sessions() as s, s.begin():
        ours = select(Document.id).where(Document.id > first)
        await s.execute(delete(Delivery).where(Delivery.document_id.in_(ours)))
        await s.execute(delete(ArchiveEntry).where(ArchiveEntry.document_id.in_(ours)))


@pytest.fixture(scope="module")
async def lars(sessions: Any, emma: str) -> AsyncIterator[int]:
    """Lars Hansen, Emma's and Noah's other guardian (no demo login): his account counts
    as activated for this module, so in-app grades reach him too; as before afterwards."""
    kari = await _person_id(sessions, GUARDIAN)
    async with sessions() as s, s.begin():
        person = (
            await s.execute(
                select(Person)
                .join(Guardianship, Guardianship.guardian_id == Person.id)
                .where(
                    Guardianship.student_id == decode_pk(emma, "Student"),
                    Guardianship.parental_responsibility.is_(True),
                    Person.id != kari,
                )
            )
        ).scalar_one()
        assert person.name == "Lars Hansen" and person.username is None
        was_activated, person_id = person.activated_at, person.id
        person.activated_at = utcnow()
    yield person_id
    async with sessions() as s, s.begin():
        await s.execute(
            update(Person).where(Person.id == person_id).values(activated_at=was_activated)
        )


# --------------------------------------------------------------------------------------
# Recipients read what was sent to them


@pytest.fixture(scope="module")
async def absence_warning(gql: Any, state: Any, emma: str) -> dict[str, Any]:
    """A restricted absence warning about Emma, sent to both her guardians."""
    await gql.token(GUARDIAN)  # Kari has logged in: in-app reaches her
    return await e2e.send_new_document(gql, ABSENCE_WARNING, emma, _fields(state, ABSENCE_WARNING))


async def test_guardian_reads_the_restricted_warning_sent_to_them(
    gql: Any,
    client: Any,
    sessions: Any,
    emma: str,
    absence_warning: dict[str, Any],
) -> None:
    gid = absence_warning["id"]
    kari = await _person_id(sessions, GUARDIAN)
    recipients = {
        int(decode_pk(d["recipient"]["id"], "Person")) for d in absence_warning["deliveries"]
    }
    assert kari in recipients
    document = (await gql.data(GUARDIAN, DOCUMENT, {"id": gid}))["document"]
    assert document["restricted"] is True and document["status"] == "SENT"
    assert gid in await _on_student(gql, GUARDIAN, emma)
    assert gid in await _listed(gql, GUARDIAN, {"studentId": emma, "doctype": ABSENCE_WARNING})
    # The PDF too, and each download of a restricted one is audited, as for staff.
    before = await _pdf_reads(sessions, gid)
    assert await _pdf_status(client, gql, document["pdfUrl"], GUARDIAN) == 200
    assert await _pdf_reads(sessions, gid) == before + 1
    # Its content through GraphQL is audited the same way (found by review: it was not).
    content_reads = [AuditEvent.action == "read_field", AuditEvent.resource_type == "document"]
    content_reads.append(AuditEvent.resource_id == str(decode_pk(gid, "Document")))
    before = await _count(sessions, AuditEvent, *content_reads)
    query = "query($id: ID!) { document(id: $id) { fields } }"
    assert (await gql.data(GUARDIAN, query, {"id": gid}))["document"]["fields"]
    assert (await gql.data(TEACHER, query, {"id": gid}))["document"]["fields"]
    assert await _count(sessions, AuditEvent, *content_reads) == before + 2
    # She sees her own deliveries, not Lars's (its channel tells his contact details;
    # found by review); the school sees both.
    assert len(recipients) == 2
    deliveries = "query($id: ID!) { document(id: $id) { deliveries { recipient { id } } } }"
    for username, expected in ((GUARDIAN, {kari}), (TEACHER, recipients)):
        seen = (await gql.data(username, deliveries, {"id": gid}))["document"]["deliveries"]
        assert {int(decode_pk(d["recipient"]["id"], "Person")) for d in seen} == expected
    # Whoever it was not sent to, and who has no access to Emma's restricted documents,
    # still cannot.
    for username in (OTHER_GUARDIAN, STUDENT):
        result = await gql.query(username, DOCUMENT, {"id": gid})
        assert error_codes(result) == ["FORBIDDEN"], username
        assert gid not in await _listed(gql, username), username
        assert await _pdf_status(client, gql, document["pdfUrl"], username) == 404, username


async def test_guardian_sees_no_drafts_and_no_other_restricted_document_about_the_child(
    gql: Any, client: Any, sessions: Any, state: Any, emma: str, absence_warning: dict[str, Any]
) -> None:
    # The teacher's drafts about Emma (restricted or not) stay with the school.
    restricted_draft = await _created(gql, state, TEACHER, ABSENCE_WARNING, emma)
    open_draft = await _created(gql, state, TEACHER, NOTE, emma)
    assert open_draft["restricted"] is False
    for draft in (restricted_draft, open_draft):
        result = await gql.query(GUARDIAN, DOCUMENT, {"id": draft["id"]})
        assert error_codes(result) == ["FORBIDDEN"]
        assert draft["id"] not in await _on_student(gql, GUARDIAN, emma)
        assert draft["id"] not in await _listed(gql, GUARDIAN, {"studentId": emma})
        assert (await gql.data(TEACHER, DOCUMENT, {"id": draft["id"]}))["document"]
    # Finalized but not sent to her: still not hers to read.
    finalized = (await gql.data(TEACHER, FINALIZE, {"id": restricted_draft["id"]}))[
        "finalizeDocument"
    ]
    result = await gql.query(GUARDIAN, DOCUMENT, {"id": finalized["id"]})
    assert error_codes(result) == ["FORBIDDEN"]
    assert await _pdf_status(client, gql, finalized["pdfUrl"], GUARDIAN) == 404
    # Every restricted document she sees about Emma was sent to her (or written by her).
    kari = await _person_id(sessions, GUARDIAN)
    data = await gql.data(GUARDIAN, STUDENT_DOCUMENTS, {"id": emma})
    restricted = {d["id"] for d in data["student"]["documents"] if d["restricted"]}
    assert absence_warning["id"] in restricted
    async with sessions() as s:
        mine = {
            encode("Document", pk)
            for pk in (
                await s.execute(
                    select(Document.id).where(
                        (Document.created_by_id == kari)
                        | Document.id.in_(
                            select(Delivery.document_id).where(Delivery.recipient_id == kari)
                        )
                    )
                )
            ).scalars()
        }
    assert restricted <= mine


async def test_student_reads_the_grades_sent_to_them_and_nothing_else(
    gql: Any, client: Any, sessions: Any, state: Any, noah: str, lars: int
) -> None:
    await gql.token(STUDENT)  # Noah has logged in: in-app reaches him
    await gql.token(GUARDIAN)
    before = await _listed(gql, STUDENT)
    grades = await e2e.send_new_document(
        gql, TERM_GRADES, noah, _fields(state, TERM_GRADES), username=TEACHER_9B
    )
    noah_id = decode_pk(noah, "Student")
    assert noah_id in {int(decode_pk(d["recipient"]["id"], "Person")) for d in grades["deliveries"]}
    gid = grades["id"]
    # An elev has no document:read at all: what was sent to him is all he reads.
    document = (await gql.data(STUDENT, DOCUMENT, {"id": gid}))["document"]
    assert document["restricted"] is True
    assert await _listed(gql, STUDENT) == before | {gid}
    assert gid in await _on_student(gql, STUDENT, noah)
    reads = await _pdf_reads(sessions, gid)
    assert await _pdf_status(client, gql, document["pdfUrl"], STUDENT) == 200
    assert await _pdf_reads(sessions, gid) == reads + 1
    # The teacher's next draft about him, and a finalized one not sent: not his.
    draft = await _created(gql, state, TEACHER_9B, TERM_GRADES, noah)
    result = await gql.query(STUDENT, DOCUMENT, {"id": draft["id"]})
    assert error_codes(result) == ["FORBIDDEN"]
    assert await _listed(gql, STUDENT) == before | {gid}
    # His guardians got it too; the guardian of another child did not.
    assert gid in await _on_student(gql, GUARDIAN, noah)
    assert await _visible_to(sessions, state, lars, gid)
    result = await gql.query(OTHER_GUARDIAN, DOCUMENT, {"id": gid})
    assert error_codes(result) == ["FORBIDDEN"]


async def test_a_deleted_document_is_gone_for_its_recipients_too(
    gql: Any, sessions: Any, state: Any, vestby_family: dict[str, Any]
) -> None:
    sent = await e2e.send_new_document(
        gql, NOTE, vestby_family["student"], _fields(state, NOTE), username=VESTBY_ADMIN
    )
    recipients = {int(decode_pk(d["recipient"]["id"], "Person")) for d in sent["deliveries"]}
    assert recipients
    for recipient in recipients:
        assert await _visible_to(sessions, state, recipient, sent["id"])
    await gql.data(VESTBY_ADMIN, DELETE, {"input": {"id": sent["id"], "reason": "Feil elev"}})
    for recipient in recipients:
        assert not await _visible_to(sessions, state, recipient, sent["id"])


# --------------------------------------------------------------------------------------
# Guardians write applications, and only applications


async def test_guardian_creates_only_applications_and_only_for_their_own_child(
    gql: Any, sessions: Any, state: Any, emma: str, ida: str
) -> None:
    kari = await _person_id(sessions, GUARDIAN)
    documents = await _count(sessions, Document)
    applications = sorted(k for k, d in state.doctypes.items() if service.is_application(d))
    assert applications == [
        "permisjonssoknad",
        "sfo_endring",
        "sfo_oppsigelse",
        "sfo_soknad",
        "skoleskyss_soknad",
    ]
    made = 0
    for key in sorted(state.doctypes):
        result = await _create(gql, state, GUARDIAN, key, emma)
        if key in applications:
            assert not result.get("errors"), (key, result["errors"])
            draft = result["data"]["createDocument"]
            assert draft["status"] == "DRAFT" and draft["doctype"]["key"] == key
            assert draft["createdBy"]["id"] == encode("Person", kari)
            made += 1
        else:
            # The school's documents: absence:create and message:send, which a guardian
            # holds for their children, do not make them the author of an absence
            # warning or a note.
            assert error_codes(result) == ["FORBIDDEN"], key
        # Never for another family's child, never as a student.
        result = await _create(gql, state, GUARDIAN, key, ida)
        assert error_codes(result) == ["FORBIDDEN"], key
        result = await _create(gql, state, STUDENT, key, emma)
        assert error_codes(result) == ["FORBIDDEN"], key
    assert await _count(sessions, Document) == documents + made


def _principal(state: Any, role: str) -> Principal:
    return Principal(1, (Grant(role, 1),), state.policy, 1)


def test_every_doctype_is_written_by_the_right_roles(state: Any) -> None:
    """Policy level, for every role in roles.csv: guardians and students write only
    applications, only guardians write applications, decisions (vedtak) are the
    principal's or a deciding role's, and nothing is written by a role that cannot
    read documents at all."""
    writers: dict[str, set[str]] = {}
    for key, doctype in state.doctypes.items():
        writers[key] = {
            role
            for role in state.policy.roles
            if service.author_grants(_principal(state, role), doctype)
        }
    for key, roles in writers.items():
        assert roles, f"nobody may write {key}"
        if service.is_application(state.doctypes[key]):
            assert roles == {"foresatt"}, key
        else:
            assert not roles & {"foresatt", "elev", "sfo_ansatt", "helsesykepleier"}, (key, roles)
    deciders = {"rektor", "sfo_admin", "permisjonssoknader", "skyssoknader"}
    for key in ("vedtak_skoleplass", "vedtak_spesialundervisning", "permisjonsvedtak"):
        assert writers[key] and writers[key] <= deciders, (key, writers[key])
    for key in ("sfo_vedtak", "sfo_endringsvedtak", "sfo_oppsigelsesvedtak"):
        assert writers[key] == {"sfo_admin"}, key
    # Teachers write their students' notices; SFO staff and the school nurse nothing.
    for key in (ABSENCE_WARNING, "anmerkningsvarsel", NOTE, TERM_GRADES):
        assert "laerer" in writers[key], key
    assert writers[ABSENCE_WARNING] == {"laerer", "skoleadmin"}
    assert "sfo_ansatt" not in writers[NOTE]


# --------------------------------------------------------------------------------------
# A guardian's application: draft, submit, and the school sees it


async def test_guardian_submits_an_application_and_the_school_sees_it(
    gql: Any,
    client: Any,
    sessions: Any,
    state: Any,
    emma: str,
    lars: int,
) -> None:
    kari = encode("Person", await _person_id(sessions, GUARDIAN))
    draft = await _created(gql, state, GUARDIAN, LEAVE_APPLICATION, emma)
    gid = draft["id"]
    assert draft["restricted"] is True and draft["createdBy"]["id"] == kari
    # The guardian reads and edits her own draft (restricted or not)...
    edited = {**_fields(state, LEAVE_APPLICATION), "begrunnelse": "Besteforeldrenes gullbryllup."}
    data = await gql.data(GUARDIAN, UPDATE, {"input": {"id": gid, "fields": edited}})
    assert data["updateDocument"]["status"] == "DRAFT"
    assert gid in await _on_student(gql, GUARDIAN, emma)
    # ... which nobody else sees or touches: not the school before it is submitted...
    for username in SCHOOL_STAFF:
        result = await gql.query(username, DOCUMENT, {"id": gid})
        assert error_codes(result) == ["FORBIDDEN"], username
        assert gid not in await _listed(gql, username, {"studentId": emma}), username
        result = await gql.query(username, FINALIZE, {"id": gid})
        assert error_codes(result) == ["FORBIDDEN"], username
        # The PDF address answers as for a document that does not exist (not "not
        # finalized yet", which would tell that there is a draft).
        headers = {"Authorization": f"Bearer {await gql.token(username)}"}
        answer = await client.get(f"/documents/{gid}/pdf", headers=headers)
        assert (answer.status_code, answer.json()) == (404, {"error": "NOT_FOUND"}), username
    # ... nor Emma's other guardian, who may write applications of his own but may not
    # read, change or submit hers.
    assert not await _visible_to(sessions, state, lars, gid)
    async with sessions() as s:
        other = await load_principal(s, lars, state.policy)
    assert service.author_grants(other, state.doctypes[LEAVE_APPLICATION])
    pk = decode_pk(gid, "Document")
    with pytest.raises(Forbidden):
        await service.finalize_document(state, other, pk)
    with pytest.raises(Forbidden):
        await service.update_document(state, other, pk, fields=edited, restriction_basis=None)

    # She submits it with finalizeDocument.
    submitted = (await gql.data(GUARDIAN, FINALIZE, {"id": gid}))["finalizeDocument"]
    assert submitted["status"] == "FINALIZED" and submitted["finalizedAt"]
    assert submitted["signedBy"]["id"] == kari, "the guardian signs her own application"
    assert submitted["pdfSha256"]
    # Archived "always" on finalize, like any other doctype that says so.
    assert submitted["archive"] == {"status": "QUEUED"}
    async with sessions() as s:
        entry = (
            await s.execute(
                select(ArchiveEntry).where(ArchiveEntry.document_id == decode_pk(gid, "Document"))
            )
        ).scalar_one()
    assert entry.status.value == "queued"
    # Now the school sees it: school admin, principal, contact teacher.
    for username in SCHOOL_STAFF:
        assert gid in await _listed(
            gql, username, {"studentId": emma, "doctype": LEAVE_APPLICATION}
        ), username
        document = (await gql.data(username, DOCUMENT, {"id": gid}))["document"]
        assert document["status"] == "FINALIZED", username
    # The guardian still reads it and its PDF; it is immutable and is not sent anywhere.
    assert await _pdf_status(client, gql, submitted["pdfUrl"], GUARDIAN) == 200
    result = await gql.query(GUARDIAN, UPDATE, {"input": {"id": gid, "fields": edited}})
    assert error_codes(result) == ["BAD_USER_INPUT"]
    result = await gql.query(GUARDIAN, FINALIZE, {"id": gid})
    assert error_codes(result) == ["BAD_USER_INPUT"]
    result = await gql.query(GUARDIAN, SEND, {"id": gid})
    assert error_codes(result) == ["FORBIDDEN"]
    # Another family's guardian never sees it.
    result = await gql.query(OTHER_GUARDIAN, DOCUMENT, {"id": gid})
    assert error_codes(result) == ["FORBIDDEN"]
    events = await _count(
        sessions,
        AuditEvent,
        AuditEvent.action == "finalize_document",
        AuditEvent.resource_id == str(decode_pk(gid, "Document")),
    )
    assert events == 1
    assert await _visible_to(sessions, state, lars, gid) is False


# --------------------------------------------------------------------------------------
# The outbox's last check before sending

VESTBY_ADMIN = "skoleadmin.vestby"  # holds "slett_dokument" at Vestby (demo data)


@pytest.fixture(scope="module")
async def vestby_family(sessions: Any) -> dict[str, Any]:
    """A Vestby student whose guardians with parental responsibility all have an e-mail
    address (so a note reaches every one of them)."""
    async with sessions() as s:
        year = (
            await s.execute(select(SchoolYear.id).where(SchoolYear.is_current.is_(True)))
        ).scalar_one()
        unreachable = (
            select(Guardianship.student_id)
            .join(Person, Person.id == Guardianship.guardian_id)
            .where(Guardianship.parental_responsibility.is_(True), Person.email.is_(None))
        )
        student_id = (
            await s.execute(
                select(Enrolment.student_id)
                .join(School, School.id == Enrolment.school_id)
                .where(
                    School.name == "Vestby skole",
                    Enrolment.school_year_id == year,
                    Enrolment.student_id.in_(select(Guardianship.student_id)),
                    Enrolment.student_id.not_in(unreachable),
                )
                .order_by(Enrolment.student_id)
                .limit(1)
            )
        ).scalar_one()
    return {"student": encode("Student", student_id)}


async def _messages_of(sessions: Any, delivery_ids: list[int]) -> int:
    return await _count(sessions, Message, Message.delivery_id.in_(delivery_ids))


async def test_worker_does_not_send_a_document_deleted_after_it_was_claimed(
    gql: Any, sessions: Any, state: Any, vestby_family: dict[str, Any]
) -> None:
    sent = await e2e.send_new_document(
        gql, NOTE, vestby_family["student"], _fields(state, NOTE), username=VESTBY_ADMIN
    )
    ids = [int(decode_pk(d["id"], "Delivery")) for d in sent["deliveries"]]
    # A worker has claimed the deliveries (status "sending") when the document is
    # deleted: deleting stops only what is still queued.
    jobs = await outbox.claim(sessions, e2e.FAST, only=ids)
    assert sorted(job.id for job in jobs) == sorted(ids)
    await gql.data(VESTBY_ADMIN, DELETE, {"input": {"id": sent["id"], "reason": "Feil elev"}})
    assert {r.status for r in await e2e.delivery_rows(sessions, sent["id"])} == {
        DeliveryStatus.SENDING
    }
    for job in jobs:
        assert await outbox.process(sessions, job, e2e.FAST) == DeliveryStatus.FAILED
    rows = await e2e.delivery_rows(sessions, sent["id"])
    assert {(r.status, r.last_error) for r in rows} == {
        (DeliveryStatus.FAILED, "Dokumentet ble slettet før det ble sendt.")
    }
    assert all(r.external_id is None for r in rows)
    assert await _messages_of(sessions, ids) == 0


async def test_worker_refuses_sensitive_content_on_a_channel_not_fit_for_it(
    gql: Any, sessions: Any, state: Any, emma: str
) -> None:
    """A delivery row that should never exist (the send path plans sensitive documents
    only for SvarUt): a sensitive warning queued for the in-app channel, as a faulty
    plugin or an older version might have written it. The worker fails it for good."""
    draft = await _created(gql, state, TEACHER, "varsel_orden_atferd", emma)
    await gql.data(TEACHER, FINALIZE, {"id": draft["id"]})
    kari = await _person_id(sessions, GUARDIAN)
    now = utcnow()
    async with sessions() as s, s.begin():
        document = await s.get(Document, decode_pk(draft["id"], "Document"))
        assert document is not None and document.sensitive
        row = Delivery(
            document_id=document.id,
            recipient_id=kari,
            school_id=document.school_id,
            channel="inapp",
            options={},
            next_attempt_at=now - timedelta(seconds=1),
            created_at=now,
            updated_at=now,
        )
        s.add(row)
        await s.flush()
        delivery_id = row.id
    assert await outbox.drain(sessions, e2e.FAST, only=[delivery_id]) == 1
    row = await e2e.delivery_row(sessions, delivery_id)
    assert row.status == DeliveryStatus.FAILED and row.attempts == 1
    assert "SvarUt" in (row.last_error or "")
    assert await _messages_of(sessions, [delivery_id]) == 0


# Editing a draft: only within the caller's scope


async def test_nobody_outside_the_students_scope_edits_a_draft(
    gql: Any, sessions: Any, state: Any, emma: str
) -> None:
    draft = await _created(gql, state, TEACHER, NOTE, emma)
    gid = draft["id"]
    pk = decode_pk(gid, "Document")
    async with sessions() as s:
        before = (
            await s.execute(select(Document.fields, Document.updated_at).where(Document.id == pk))
        ).one()
    edited = {**_fields(state, NOTE), "emne": "Endret av en uvedkommende"}
    # Another class's teacher, another school's principal and administrator, a guardian
    # of another child, and a student: none of them may even see the draft.
    outsiders = ("laerer.nordby.6b", "rektor.sorby", VESTBY_ADMIN, OTHER_GUARDIAN, STUDENT)
    for username in outsiders:
        result = await gql.query(username, UPDATE, {"input": {"id": gid, "fields": edited}})
        assert error_codes(result) == ["FORBIDDEN"], (username, result)
    async with sessions() as s:
        after = (
            await s.execute(select(Document.fields, Document.updated_at).where(Document.id == pk))
        ).one()
    assert after == before
