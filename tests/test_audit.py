"""Audit: logins, mutations and reads of restricted fields leave events, and only the
municipality administrator can read the log."""

from __future__ import annotations

from sqlalchemy import func, select

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
