"""Client JSON that cannot be taken is a 400 (or 413) with a reason, never a server
error: bodies that are not objects, bytes that are not UTF-8, lone surrogates, nesting
that exhausts the stack, NUL characters (also in query literals), oversized bodies.
Found by review: each of these gave an HTTP 500 or INTERNAL_SERVER_ERROR, and a lone
surrogate in a document field made a draft that could never be finalized."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from core import request_json
from core.models import Absence, Document, Message
from core.schema import ids

ME = "{ me { name } }"


async def _post(client: Any, body: bytes, token: str | None = None) -> Any:
    headers = {"content-type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return await client.post("/graphql", content=body, headers=headers)


DEEP = b'{"query": "{ me { name } }", "variables": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"


@pytest.mark.parametrize(
    "body",
    [
        b'"hello"',
        b"42",
        b"null",
        b"true",
        b'{"query": "{ me { name } }"}\xff',
        b'{"query": "{ me { name } }", "variables": {"s": "\\ud800"}}',
        b'{"query": "{ me { name } }", "variables": {"s": "a\\u0000b"}}',
        b'{"query": "{ me { name } }", "variables": {"a\\u0000": 1}}',
        DEEP,
    ],
    ids=lambda b: repr(b[:40]),
)
async def test_bad_body_is_a_400(client: Any, gql: Any, body: bytes):
    response = await _post(client, body, await gql.token("kommuneadmin"))
    assert response.status_code == 400, response.text
    assert "Traceback" not in response.text


async def test_bad_get_variables_are_a_400(client: Any):
    for variables in ("[" * 2_000 + "]" * 2_000, '{"s": "\\ud800"}', '{"s": "\\u0000"}', "7"):
        response = await client.get(
            "/graphql", params={"query": ME, "variables": variables}, headers={"accept": "*/*"}
        )
        assert response.status_code == 400, (variables[:20], response.text)


async def test_oversized_body_is_refused_before_it_is_read(client: Any):
    response = await client.post(
        "/graphql",
        content=b"{}",
        headers={
            "content-type": "application/json",
            "content-length": str(request_json.MAX_REQUEST_BYTES + 1),
        },
    )
    assert response.status_code == 413


def test_oversized_document_is_refused_by_the_reader():
    with pytest.raises(request_json.TooLarge):
        request_json.loads(b" " * (request_json.MAX_REQUEST_BYTES + 1))


async def test_nul_in_a_query_literal_is_bad_input(gql: Any):
    for query in (
        '{ students(filter: {search: "a\\u0000"}) { totalCount } }',
        '{ students(first: 5, after: "x\\u0000") { totalCount } }',
    ):
        body = await gql.query("kommuneadmin", query)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], body


@pytest.mark.parametrize(
    "body",
    [
        b'{"username": "\\ud800"}',
        b'{"username": "kommune\\u0000admin"}',
        b'{"username": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b"\xff\xfe",
    ],
    ids=lambda b: repr(b[:30]),
)
async def test_demo_token_bad_json_is_a_400(client: Any, body: bytes):
    response = await client.post(
        "/auth/demo-token", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"


async def _counts(sessions: Any) -> tuple[int, ...]:
    async with sessions() as session:
        return tuple(
            [
                await session.scalar(select(func.count()).select_from(model))
                for model in (Document, Message, Absence)
            ]
        )


async def test_bad_text_in_mutations_writes_nothing(client: Any, gql: Any, sessions: Any):
    """The same text in variables that reached the database before: now refused at the
    door, whichever mutation it is for."""
    async with sessions() as session:
        from core.models import Person

        emma = (
            await session.execute(
                select(Person.id).where(Person.given_name == "Emma", Person.family_name == "Hansen")
            )
        ).scalar_one()
    student = ids.encode("Student", emma)
    operations = [
        (
            "mutation($i: CreateDocumentInput!) { createDocument(input: $i) { id } }",
            {
                "doctype": "innkalling_til_mote",
                "studentId": student,
                "fields": {"sted": "Rom \ud800 1"},
            },
        ),
        (
            "mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }",
            {"subject": "Hei\x00", "body": "Tekst", "groupNames": ["5A"]},
        ),
        (
            "mutation($i: RegisterAbsenceInput!) { registerAbsence(input: $i) { id } }",
            {"studentId": student, "date": "2026-11-02", "wholeDay": True, "reason": "\x00"},
        ),
    ]
    token = await gql.token("laerer.nordby.5a")
    before = await _counts(sessions)
    for query, values in operations:
        # json.dumps writes a lone surrogate as the escape "\ud800", as a client would.
        body = json.dumps({"query": query, "variables": {"i": values}}).encode()
        response = await _post(client, body, token)
        assert response.status_code == 400, response.text
    assert await _counts(sessions) == before
