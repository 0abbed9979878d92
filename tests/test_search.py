"""Name search folds Norwegian letters on both databases: SQLite's own lower() folds
ASCII only, so "ødegård" never found "Ødegård" there (found by review)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from core.models import Employment, Enrolment, Person

KOMMUNEADMIN = "kommuneadmin"


async def _someone(sessions: Any, person_column: Any) -> Person:
    """A person of the table (students or employees) whose family name begins with a
    letter outside ASCII."""
    async with sessions() as session:
        people = (
            await session.execute(
                select(Person).join(person_column.table, person_column == Person.id).distinct()
            )
        ).scalars()
        for person in people:
            if person.family_name[0] in "ÆØÅ":
                return person
    raise AssertionError("the demo has no such name")


@pytest.mark.parametrize(
    ("listing", "column"),
    [("students", Enrolment.student_id), ("employees", Employment.person_id)],
)
async def test_search_folds_norwegian_letters(gql: Any, sessions: Any, listing: str, column: Any):
    person = await _someone(sessions, column)
    operation = (
        f"query($s: String) {{ {listing}(first: 100, filter: {{search: $s}}) "
        "{ totalCount edges { node { name } } } }"
    )
    full_name = f"{person.given_name} {person.family_name}"
    for term in (full_name, full_name.lower(), full_name.upper(), person.family_name.lower()):
        found = (await gql.data(KOMMUNEADMIN, operation, {"s": term}))[listing]
        names = [edge["node"]["name"] for edge in found["edges"]]
        assert full_name in names, (term, names)
        assert all(term.lower() in name.lower() for name in names), (term, names)
