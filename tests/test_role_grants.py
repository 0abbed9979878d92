"""grantRole / revokeRole: who may grant which role (roles.csv's `role:<name>, grant`
lines, after DOMAIN.md's "granted by"), to whom (an employee of the school, or for the
student role a student enrolled there), and that a grant holds from the next request.

Found by review: a school administrator could make a guardian principal of their school
(who then saw every student of it), but could not grant the school administrator role
that DOMAIN.md says they grant."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from core.models import Employment, Enrolment, Person, RoleAssignment, School, SchoolYear
from core.schema import ids
from tests.conftest import error_codes

GRANT = """mutation($input: GrantRoleInput!) {
    grantRole(input: $input) { id role personName school { name } } }"""
REVOKE = "mutation($id: ID!) { revokeRole(id: $id) { id role } }"
STUDENT_COUNT = "{ students { totalCount } }"


async def _school(sessions: Any, name: str) -> int:
    async with sessions() as s:
        return (await s.execute(select(School.id).where(School.name == name))).scalar_one()


async def _person(sessions: Any, username: str) -> int:
    async with sessions() as s:
        return (await s.execute(select(Person.id).where(Person.username == username))).scalar_one()


async def _plain_employee(sessions: Any, school: int) -> int:
    """An employee of `school` with no administrative role (a filler teacher): whatever
    more they see comes from the grant."""
    admin_roles = ("kommuneadmin", "skoleadmin", "skoleadmin2", "rektor")
    async with sessions() as s:
        return (
            await s.execute(
                select(Employment.person_id)
                .join(Person, Person.id == Employment.person_id)
                .where(
                    Employment.school_id == school,
                    Person.username.is_not(None),
                    ~Employment.person_id.in_(
                        select(RoleAssignment.person_id).where(RoleAssignment.role.in_(admin_roles))
                    ),
                )
                .order_by(Employment.person_id.desc())
                .limit(1)
            )
        ).scalar_one()


async def _students_at(sessions: Any, school: int) -> int:
    async with sessions() as s:
        year = (await s.execute(select(SchoolYear.id).where(SchoolYear.is_current))).scalar_one()
        return await s.scalar(
            select(func.count()).where(
                Enrolment.school_id == school, Enrolment.school_year_id == year
            )
        )


async def _assignments(sessions: Any) -> int:
    async with sessions() as s:
        return await s.scalar(select(func.count()).select_from(RoleAssignment))


async def _grant(
    gql: Any, granter: str, person: int, role: str, school: int | None
) -> dict[str, Any]:
    """`granter` grants `role` to `person` at `school` (None: municipality-wide); the raw
    GraphQL result, errors included."""
    values: dict[str, Any] = {"personId": ids.encode("Person", person), "role": role}
    if school is not None:
        values["schoolId"] = ids.encode("School", school)
    return await gql.query(granter, GRANT, {"input": values})


def _granted(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("errors"), result["errors"]
    return result["data"]["grantRole"]


async def _token_for(gql: Any, sessions: Any, pk: int) -> str:
    async with sessions() as s:
        username = (await s.execute(select(Person.username).where(Person.id == pk))).scalar_one()
    # A fresh token: the grantee logs in after being granted, as they would.
    response = await gql.http.post("/auth/demo-token", json={"username": username})
    assert response.status_code == 200, response.text
    return response.json()["token"]


async def test_school_administrator_grants_school_administrator_and_it_holds_at_once(
    gql: Any, sessions: Any
):
    nordby = await _school(sessions, "Nordby skole")
    person = await _plain_employee(sessions, nordby)
    token = await _token_for(gql, sessions, person)
    before = (await gql.raw(STUDENT_COUNT, token=token))["data"]["students"]["totalCount"]
    assert before < await _students_at(sessions, nordby)
    granted = _granted(await _grant(gql, "skoleadmin.nordby", person, "skoleadmin", nordby))
    assert (granted["role"], granted["school"]["name"]) == ("skoleadmin", "Nordby skole")
    body = await gql.raw(STUDENT_COUNT, token=token)
    assert body["data"]["students"]["totalCount"] == await _students_at(sessions, nordby)
    revoked = await gql.query("skoleadmin.nordby", REVOKE, {"id": granted["id"]})
    assert not revoked.get("errors"), revoked
    body = await gql.raw(STUDENT_COUNT, token=token)
    assert body["data"]["students"]["totalCount"] == before


@pytest.mark.parametrize("role", ["rektor", "skoleadmin2", "helsesykepleier", "kommuneadmin"])
async def test_school_administrator_cannot_grant_roles_the_municipality_grants(
    gql: Any, sessions: Any, role: str
):
    nordby = await _school(sessions, "Nordby skole")
    person = await _plain_employee(sessions, nordby)
    before = await _assignments(sessions)
    result = await _grant(gql, "skoleadmin.nordby", person, role, nordby)
    assert error_codes(result) == ["FORBIDDEN"]
    assert await _assignments(sessions) == before


async def test_school_administrator_cannot_revoke_the_principal(gql: Any, sessions: Any):
    principal = await _person(sessions, "rektor.nordby")
    async with sessions() as s:
        assignment = (
            await s.execute(
                select(RoleAssignment.id).where(
                    RoleAssignment.person_id == principal, RoleAssignment.role == "rektor"
                )
            )
        ).scalar_one()
    before = await _assignments(sessions)
    result = await gql.query(
        "skoleadmin.nordby", REVOKE, {"id": ids.encode("RoleAssignment", assignment)}
    )
    assert error_codes(result) == ["FORBIDDEN"]
    assert await _assignments(sessions) == before


@pytest.mark.parametrize(
    ("granter", "username", "role", "school"),
    [
        # A guardian, a student and another school's teacher are not Nordby's staff.
        ("skoleadmin.nordby", "foresatt.berg", "laerer", "Nordby skole"),
        ("skoleadmin.nordby", "elev.noah.hansen", "laerer", "Nordby skole"),
        ("skoleadmin.nordby", "laerer.sorby.9b", "laerer", "Nordby skole"),
        ("kommuneadmin", "foresatt.berg", "rektor", "Nordby skole"),
        # Municipality-wide: only for someone employed somewhere in the municipality.
        ("kommuneadmin", "foresatt.berg", "kommuneadmin", None),
        # The student role: only for a student enrolled at that school this year.
        ("skoleadmin.nordby", "elev.noah.hansen", "elev", "Nordby skole"),
        ("skoleadmin.nordby", "laerer.nordby.5a", "elev", "Nordby skole"),
    ],
)
async def test_role_goes_only_to_someone_with_a_place_at_the_school(
    gql: Any, sessions: Any, granter: str, username: str, role: str, school: str | None
):
    before = await _assignments(sessions)
    person = await _person(sessions, username)
    school_pk = await _school(sessions, school) if school else None
    result = await _grant(gql, granter, person, role, school_pk)
    assert error_codes(result) == ["BAD_USER_INPUT"], result
    assert result["errors"][0]["extensions"]["field"] == "personId"
    assert await _assignments(sessions) == before


async def test_student_role_for_an_enrolled_student(gql: Any, sessions: Any):
    nordby = await _school(sessions, "Nordby skole")
    async with sessions() as s:
        year = (await s.execute(select(SchoolYear.id).where(SchoolYear.is_current))).scalar_one()
        student = (
            await s.execute(
                select(Enrolment.student_id)
                .where(
                    Enrolment.school_id == nordby,
                    Enrolment.school_year_id == year,
                    ~Enrolment.student_id.in_(select(RoleAssignment.person_id)),
                )
                .order_by(Enrolment.student_id)
                .limit(1)
            )
        ).scalar_one()
    async with sessions() as s, s.begin():
        # Filler students have no login; this one is given one, as an account would be.
        (await s.get(Person, student)).username = "elev.test.tilgang"  # type: ignore[union-attr]
    granted = _granted(await _grant(gql, "skoleadmin.nordby", student, "elev", nordby))
    try:
        token = await _token_for(gql, sessions, student)
        body = await gql.raw("{ students { edges { node { id } } } }", token=token)
        assert [ids.decode(e["node"]["id"])[1] for e in body["data"]["students"]["edges"]] == [
            student
        ]
    finally:
        assert not (await gql.query("skoleadmin.nordby", REVOKE, {"id": granted["id"]})).get(
            "errors"
        )
        async with sessions() as s, s.begin():
            (await s.get(Person, student)).username = None  # type: ignore[union-attr]


async def test_municipality_administrator_grants_a_principal(gql: Any, sessions: Any):
    vestby = await _school(sessions, "Vestby skole")
    person = await _plain_employee(sessions, vestby)
    granted = _granted(await _grant(gql, "kommuneadmin", person, "rektor", vestby))
    try:
        token = await _token_for(gql, sessions, person)
        body = await gql.raw(STUDENT_COUNT, token=token)
        assert body["data"]["students"]["totalCount"] == await _students_at(sessions, vestby)
    finally:
        assert not (await gql.query("kommuneadmin", REVOKE, {"id": granted["id"]})).get("errors")
