"""`node(id)` finds every type that has an id of its own, with the same access rules as
the type's own query: the object for those allowed, FORBIDDEN outside their scope,
NOT_FOUND for an id that names nothing."""

from __future__ import annotations

from typing import Any

from core.doctypes import sample_fields
from core.schema import ids
from tests.conftest import error_codes

NODE = """query($id: ID!) { node(id: $id) { id __typename
  ... on Message { subject }
  ... on ArchiveEntry { status }
  ... on ArchiveFolder { title kind }
  ... on AuditEvent { action } } }"""

TEACHER = "laerer.nordby.5a"


async def _node(gql: Any, username: str, gid: str) -> dict[str, Any]:
    return await gql.query(username, NODE, {"id": gid})


async def test_message_node_for_its_recipients_only(gql: Any) -> None:
    sent = await gql.data(
        TEACHER,
        "mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }",
        {"input": {"subject": "Node-test", "body": "Hei.", "groupNames": ["5a"]}},
    )
    gid = sent["sendMessage"]["id"]
    for username in (TEACHER, "foresatt.hansen"):  # the sender, a recipient
        data = (await _node(gql, username, gid))["data"]["node"]
        assert data == {"id": gid, "__typename": "Message", "subject": "Node-test"}, username
    outside = await _node(gql, "foresatt.berg", gid)
    assert outside["data"]["node"] is None
    assert error_codes(outside) == ["FORBIDDEN"]
    missing = await _node(gql, "foresatt.hansen", ids.encode("Message", 10_000_000))
    assert error_codes(missing) == ["NOT_FOUND"]


async def test_archive_entry_node_within_the_archive_log_scope(gql: Any, app: Any, emma: str):
    doctype = "fravaersvarsel"  # archived "always", queued when finalized
    fields = sample_fields(app.state.tavle.doctypes[doctype])
    created = await gql.data(
        TEACHER,
        "mutation($input: CreateDocumentInput!) { createDocument(input: $input) { id } }",
        {"input": {"doctype": doctype, "studentId": emma, "fields": fields}},
    )
    finalized = await gql.data(
        TEACHER,
        "mutation($id: ID!) { finalizeDocument(id: $id) { archive { id status } } }",
        {"id": created["createDocument"]["id"]},
    )
    entry = finalized["finalizeDocument"]["archive"]
    for username in ("skoleadmin.nordby", "kommuneadmin"):
        data = (await _node(gql, username, entry["id"]))["data"]["node"]
        assert data == {"id": entry["id"], "__typename": "ArchiveEntry", "status": "QUEUED"}
    for username in ("rektor.sorby", TEACHER):  # another school; no archive_log:read
        assert error_codes(await _node(gql, username, entry["id"])) == ["FORBIDDEN"], username
    missing = await _node(gql, "kommuneadmin", ids.encode("ArchiveEntry", 10_000_000))
    assert error_codes(missing) == ["NOT_FOUND"]


async def test_archive_folder_node_within_the_folder_scope(gql: Any) -> None:
    # A student no other test archives for, so that mapping their folder changes nothing
    # another test expects: the last of the first page at Vestby.
    schools = (await gql.data("kommuneadmin", "{ schools { id name } }"))["schools"]
    vestby = next(s["id"] for s in schools if s["name"] == "Vestby skole")
    page = await gql.data(
        "kommuneadmin",
        "query($s: ID!) { students(first: 50, filter: {schoolId: $s}) { edges { node { id } } } }",
        {"s": vestby},
    )
    student = page["students"]["edges"][-1]["node"]["id"]
    mapped = await gql.data(
        "kommuneadmin",
        """mutation($input: MapStudentFolderInput!) {
          mapStudentFolder(input: $input) { id title } }""",
        {"input": {"studentId": student, "caseYear": 2026, "caseSequence": 4711}},
    )
    folder = mapped["mapStudentFolder"]
    data = (await _node(gql, "kommuneadmin", folder["id"]))["data"]["node"]
    assert data == {
        "id": folder["id"],
        "__typename": "ArchiveFolder",
        "title": folder["title"],
        "kind": "STUDENT",
    }
    assert error_codes(await _node(gql, TEACHER, folder["id"])) == ["FORBIDDEN"]
    missing = await _node(gql, "kommuneadmin", ids.encode("ArchiveFolder", 10_000_000))
    assert error_codes(missing) == ["NOT_FOUND"]


async def test_audit_event_node_for_the_municipality_administrator_only(gql: Any) -> None:
    log = await gql.data("kommuneadmin", "{ auditLog(first: 1) { edges { node { id action } } } }")
    (event,) = [e["node"] for e in log["auditLog"]["edges"]]
    data = (await _node(gql, "kommuneadmin", event["id"]))["data"]["node"]
    assert data == {"id": event["id"], "__typename": "AuditEvent", "action": event["action"]}
    assert error_codes(await _node(gql, "skoleadmin.nordby", event["id"])) == ["FORBIDDEN"]
    missing = await _node(gql, "kommuneadmin", ids.encode("AuditEvent", 10_000_000))
    assert error_codes(missing) == ["NOT_FOUND"]
