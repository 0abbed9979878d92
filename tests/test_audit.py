"""Audit: logins, mutations and reads of restricted fields leave events, and only the
municipality administrator can read the log."""

from __future__ import annotations

from contextlib import asynccontextmanager

from sqlalchemy import func, select, text

from core.models import AuditEvent, Person
from tests.conftest import error_codes


async def _count(sessions, **where) -> int:
    async with sessions() as s:
        q = select(func.count()).select_from(AuditEvent)
        for column, value in where.items():
            q = q.where(getattr(AuditEvent, column) == value)
        return (await s.execute(q)).scalar_one()


async def test_reading_national_ids_is_audited_per_record(gql, sessions):
    admin = await gql.token("skoleadmin.nordby")
    async with sessions() as s:
        actor = (
            await s.execute(select(Person.id).where(Person.username == "skoleadmin.nordby"))
        ).scalar_one()
    before = await _count(sessions, action="read_field", actor_id=actor)
    data = await gql.data(
        "skoleadmin.nordby", "{ students(first: 7) { edges { node { nationalId } } } }"
    )
    assert all(e["node"]["nationalId"] for e in data["students"]["edges"])
    assert await _count(sessions, action="read_field", actor_id=actor) == before + 7
    # Reading names only is not a restricted read.
    await gql.data("skoleadmin.nordby", "{ students(first: 7) { edges { node { name } } } }")
    assert await _count(sessions, action="read_field", actor_id=actor) == before + 7
    assert admin


async def test_denied_restricted_field_is_not_audited_as_read(gql, sessions):
    async with sessions() as s:
        actor = (
            await s.execute(select(Person.id).where(Person.username == "laerer.nordby.5a"))
        ).scalar_one()
    before = await _count(sessions, action="read_field", actor_id=actor)
    data = await gql.data(
        "laerer.nordby.5a", "{ students(first: 5) { edges { node { nationalId } } } }"
    )
    assert all(e["node"]["nationalId"] is None for e in data["students"]["edges"])
    assert await _count(sessions, action="read_field", actor_id=actor) == before


async def test_audit_log_is_for_the_municipality_administrator_only(gql):
    query = (
        '{ auditLog(first: 5, filter: {action: "login"}) '
        "{ totalCount edges { node { action actorName occurredAt } } } }"
    )
    data = await gql.data("kommuneadmin", query)
    assert data["auditLog"]["totalCount"] >= 1
    assert {e["node"]["action"] for e in data["auditLog"]["edges"]} == {"login"}
    for username in ("skoleadmin.nordby", "laerer.nordby.5a", "foresatt.hansen"):
        result = await gql.query(username, query)
        assert error_codes(result) == ["FORBIDDEN"], username
        assert result["data"] is None


async def test_audit_log_pages_newest_first(gql):
    first = await gql.data(
        "kommuneadmin",
        "{ auditLog(first: 3) { pageInfo { endCursor } edges { node { id occurredAt } } } }",
    )
    cursor = first["auditLog"]["pageInfo"]["endCursor"]
    second = await gql.data(
        "kommuneadmin",
        "query($a: String) { auditLog(first: 3, after: $a) { edges { node { id occurredAt } } } }",
        {"a": cursor},
    )
    page1 = [e["node"] for e in first["auditLog"]["edges"]]
    page2 = [e["node"] for e in second["auditLog"]["edges"]]
    assert not {n["id"] for n in page1} & {n["id"] for n in page2}
    stamps = [n["occurredAt"] for n in page1 + page2]
    assert stamps == sorted(stamps, reverse=True)


async def test_answers_are_utf8_json_and_any_json_value_still_encodes(gql, sessions):
    """The GraphQL answer is encoded by orjson (UTF-8, not \\u escapes); a value orjson
    refuses (an integer beyond 64 bits in an event's detail) is still answered, by the
    standard encoder."""
    async with sessions() as s, s.begin():
        s.add_all(
            [
                AuditEvent(action="json_utf8", detail={"sted": "Æsøy skole"}),
                AuditEvent(action="json_stort_tall", detail={"tall": 2**70, "sted": "Å"}),
            ]
        )
    query = (
        "query($a: String!) { auditLog(first: 1, filter: {action: $a}) "
        "{ edges { node { action detail } } } }"
    )
    token = await gql.token("kommuneadmin")
    headers = {"Authorization": f"Bearer {token}"}
    answers = {}
    for action in ("json_utf8", "json_stort_tall"):
        response = await gql.http.post(
            "/graphql", json={"query": query, "variables": {"a": action}}, headers=headers
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        answers[action] = response
    utf8 = answers["json_utf8"]
    assert "Æsøy skole".encode() in utf8.content
    assert utf8.json()["data"]["auditLog"]["edges"][0]["node"]["detail"] == {"sted": "Æsøy skole"}
    big = answers["json_stort_tall"].json()
    assert not big.get("errors")
    assert big["data"]["auditLog"]["edges"][0]["node"]["detail"] == {"tall": 2**70, "sted": "Å"}


async def test_a_refused_mutation_is_audited_as_an_attempt(gql, sessions):
    """The attempt is a use like any other (DOMAIN.md: every use is logged), though it
    changed nothing: who, which mutation, and why it was refused. A caller who is not
    logged in is no one to name."""
    from core.schema import ids

    async with sessions() as s:
        actor = (
            await s.execute(select(Person.id).where(Person.username == "foresatt.berg"))
        ).scalar_one()

    async def attempts() -> list[dict]:
        async with sessions() as s:
            rows = await s.execute(
                select(AuditEvent.detail)
                .where(AuditEvent.action == "mutation_refused", AuditEvent.actor_id == actor)
                .order_by(AuditEvent.id)
            )
            return [row[0] for row in rows]

    before = await attempts()
    revoke = "mutation($id: ID!) { revokeRole(id: $id) { id } }"
    refused = await gql.query("foresatt.berg", revoke, {"id": ids.encode("RoleAssignment", 1)})
    assert error_codes(refused) == ["FORBIDDEN"]
    blank = 'mutation { sendMessage(input: {subject: " ", body: "x"}) { id } }'
    assert error_codes(await gql.query("foresatt.berg", blank)) == ["BAD_USER_INPUT"]
    # Named by the mutation, not the alias the client chose (found by review).
    disguised = "mutation($id: ID!) { markMessageRead: revokeRole(id: $id) { id } }"
    refused = await gql.query("foresatt.berg", disguised, {"id": ids.encode("RoleAssignment", 1)})
    assert error_codes(refused) == ["FORBIDDEN"]
    assert (await attempts())[len(before) :] == [
        {"refused": [{"field": "revokeRole", "code": "FORBIDDEN"}]},
        {"refused": [{"field": "sendMessage", "code": "BAD_USER_INPUT"}]},
        {"refused": [{"field": "revokeRole", "code": "FORBIDDEN"}]},
    ]
    # Nor is a query an attempt to change anything.
    assert error_codes(await gql.query("foresatt.berg", "{ auditLog { totalCount } }"))
    assert len(await attempts()) == len(before) + 3
    everyone_before = await _count(sessions, action="mutation_refused")
    anonymous = await gql.query(None, revoke, {"id": ids.encode("RoleAssignment", 1)})
    assert error_codes(anonymous) == ["UNAUTHENTICATED"]
    assert await _count(sessions, action="mutation_refused") == everyone_before


@asynccontextmanager
async def audit_refused(sessions):
    """The audit table refuses every insert while the block runs: a trigger stands in for
    a full disk or a lost connection, on either database."""
    async with sessions() as s:
        dialect = s.bind.dialect.name
    if dialect == "sqlite":
        create = [
            "CREATE TRIGGER audit_full BEFORE INSERT ON audit_event "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        ]
        drop = ["DROP TRIGGER audit_full"]
    else:
        create = [
            "CREATE FUNCTION audit_full() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
            "CREATE TRIGGER audit_full BEFORE INSERT ON audit_event "
            "FOR EACH ROW EXECUTE FUNCTION audit_full()",
        ]
        drop = ["DROP TRIGGER audit_full ON audit_event", "DROP FUNCTION audit_full()"]
    async with sessions() as s, s.begin():
        for statement in create:
            await s.execute(text(statement))
    try:
        yield
    finally:
        async with sessions() as s, s.begin():
            for statement in drop:
                await s.execute(text(statement))


NATIONAL_IDS = "{ students(first: 2) { edges { node { name nationalId } } } }"


async def test_an_answer_whose_audit_cannot_be_written_is_withheld_and_masked(gql, sessions):
    """National ids read, but the audit insert fails: the answer is withheld, and the
    client gets a masked INTERNAL_SERVER_ERROR, not the SQL and its parameters (found by
    review)."""
    async with audit_refused(sessions):
        body = await gql.query("kommuneadmin", NATIONAL_IDS)
    assert body["data"] is None, body
    assert error_codes(body) == ["INTERNAL_SERVER_ERROR"]
    assert "audit_event" not in str(body) and "disk full" not in str(body)
    # And with the table writable again, the same query answers.
    assert (await gql.data("kommuneadmin", NATIONAL_IDS))["students"]["edges"]
