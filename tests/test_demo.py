"""The demo municipality: deterministic, exactly the personas and relations of API.md, and
filler data that keeps the domain's rules (class sizes, guardians, valid national ids).

The demo is built here into fresh SQLite files (a few tenths of a second each): the
session database is shared with tests that log in and grant roles, so it no longer holds
the demo exactly as loaded.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import create_engine, create_sessionmaker
from core.demo import MIN_STUDENTS, DemoDataError, load_demo
from core.migrate import upgrade
from core.models import (
    Employment,
    Enrolment,
    Group,
    GroupKind,
    GroupMembership,
    GroupTeacher,
    Guardianship,
    Municipality,
    Person,
    RoleAssignment,
    School,
    SchoolYear,
    SpecialPermissionAssignment,
)

DEMO_TABLES = (
    Municipality,
    SchoolYear,
    School,
    Person,
    Employment,
    Enrolment,
    Guardianship,
    Group,
    GroupMembership,
    GroupTeacher,
    RoleAssignment,
    SpecialPermissionAssignment,
)

NORDBY, SORBY, VESTBY = "Nordby skole", "Sørby ungdomsskole", "Vestby skole"

# API.md, "Demo personas": username -> the role assignments it has (role, school name).
PERSONA_ROLES: dict[str, set[tuple[str, str | None]]] = {
    "kommuneadmin": {("kommuneadmin", None)},
    "skoleadmin.nordby": {("skoleadmin", NORDBY)},
    "rektor.nordby": {("rektor", NORDBY), ("skoleadmin", NORDBY)},
    "rektor.sorby": {("rektor", SORBY)},
    "laerer.nordby.5a": {("laerer", NORDBY)},
    "laerer.nordby.6b": {("laerer", NORDBY)},
    "laerer.sorby.9b": {("laerer", SORBY)},
    "sfo.nordby": {("sfo_admin", NORDBY)},
    "helsesykepleier.nordby": {("helsesykepleier", NORDBY)},
    "raadgiver.sorby": {("skoleadmin2", SORBY)},
    "foresatt.hansen": set(),
    "foresatt.berg": set(),
    "elev.noah.hansen": {("elev", SORBY)},
}
# Teacher personas: the groups they are responsible for, (school, group, contact teacher).
PERSONA_GROUPS = {
    "laerer.nordby.5a": {(NORDBY, "5A", True)},
    "laerer.nordby.6b": {(NORDBY, "6B", True)},
    "laerer.sorby.9b": {(SORBY, "9B", True), (SORBY, "9 Matematikk", False)},
}
# Guardian personas: their children as (name, school, class, grade).
PERSONA_CHILDREN = {
    "foresatt.hansen": {
        ("Emma Hansen", NORDBY, "5A", 5),
        ("Noah Hansen", SORBY, "9B", 9),
    },
    "foresatt.berg": {("Ida Berg", NORDBY, "6B", 6)},
}

_FNR_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_FNR_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def _control_digit(digits: str, weights: tuple[int, ...]) -> int | None:
    rest = 11 - sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11
    return 0 if rest == 11 else None if rest == 10 else rest


def national_id_problem(nid: str | None, born: date | None) -> str | None:
    """Why `nid` is not a valid synthetic fødselsnummer for `born`, or None."""
    if nid is None or len(nid) != 11 or not nid.isdigit():
        return "not eleven digits"
    if _control_digit(nid[:9], _FNR_W1) != int(nid[9]):
        return "first control digit"
    if _control_digit(nid[:10], _FNR_W2) != int(nid[10]):
        return "second control digit"
    if born is None:
        return "no birth date"
    # Synthetic numbers (Skatteetaten/Tenor) add 80 to the month.
    if nid[:6] != f"{born.day:02d}{born.month + 80:02d}{born.year % 100:02d}":
        return "date part does not match the birth date"
    individual = int(nid[6:9])
    if (individual >= 500) != (born.year >= 2000):
        return "individual number outside the range of the birth century"
    return None


async def build(path: Path, *, students: int | None = None, seed: int = 2026) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    try:
        await upgrade(engine)
        await load_demo(create_sessionmaker(engine), students=students, seed=seed)
    finally:
        await engine.dispose()
    return url


def digest(url: str) -> str:
    """SHA-256 over every row of every demo table, in primary-key order. Both files are
    SQLite, so the raw stored values are compared (read with sqlite3: fast and exact)."""
    sha = hashlib.sha256()
    with closing(sqlite3.connect(url.split("///", 1)[1])) as connection:
        for model in DEMO_TABLES:
            table = model.__table__
            keys = ", ".join(c.name for c in table.primary_key.columns)  # type: ignore[attr-defined]
            sha.update(table.name.encode())  # type: ignore[attr-defined]
            for row in connection.execute(f"SELECT * FROM {table.name} ORDER BY {keys}"):  # type: ignore[attr-defined]
                sha.update(repr(row).encode())
    return sha.hexdigest()


@pytest.fixture(scope="module")
async def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return await build(tmp_path_factory.mktemp("demo") / "a.db")


@pytest.fixture(scope="module")
async def demo(demo_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(demo_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def test_same_seed_same_data_other_seed_other_data(demo_url: str, tmp_path: Path):
    again = await build(tmp_path / "b.db")
    other = await build(tmp_path / "c.db", seed=7)
    first = digest(demo_url)
    assert digest(again) == first
    assert digest(other) != first


async def test_municipality_schools_and_school_years(demo):
    async with demo() as session:
        assert (await session.scalars(select(Municipality.name))).all() == ["Eksempel kommune"]
        schools = {
            s.name: (s.first_grade, s.last_grade, s.has_sfo)
            for s in (await session.scalars(select(School))).all()
        }
        years = (await session.execute(select(SchoolYear.name, SchoolYear.is_current))).all()
    assert schools[NORDBY] == (1, 7, True)
    assert schools[SORBY][:2] == (8, 10)
    assert schools[VESTBY][:2] == (1, 10)
    assert [name for name, current in years if current] == ["2026/2027"]


async def _roles_of(session: AsyncSession) -> dict[str, set[tuple[str, str | None]]]:
    rows = await session.execute(
        select(Person.username, RoleAssignment.role, School.name)
        .join(RoleAssignment, RoleAssignment.person_id == Person.id)
        .outerjoin(School, School.id == RoleAssignment.school_id)
        .where(Person.username.in_(PERSONA_ROLES))
    )
    found: dict[str, set[tuple[str, str | None]]] = {u: set() for u in PERSONA_ROLES}
    for username, role, school in rows:
        found[username].add((role, school))
    return found


async def test_personas_have_exactly_the_roles_of_api_md(demo):
    async with demo() as session:
        usernames = set(
            await session.scalars(select(Person.username).where(Person.username.isnot(None)))
        )
        assert set(PERSONA_ROLES) <= usernames
        assert await _roles_of(session) == PERSONA_ROLES
        special = await session.scalar(
            select(func.count())
            .select_from(SpecialPermissionAssignment)
            .join(Person, Person.id == SpecialPermissionAssignment.person_id)
            .where(Person.username.in_(PERSONA_ROLES))
        )
    assert special == 0


async def test_teacher_personas_are_responsible_for_exactly_their_groups(demo):
    async with demo() as session:
        rows = await session.execute(
            select(Person.username, School.name, Group.name, GroupTeacher.is_contact_teacher)
            .join(GroupTeacher, GroupTeacher.employee_id == Person.id)
            .join(Group, Group.id == GroupTeacher.group_id)
            .join(School, School.id == Group.school_id)
            .where(Person.username.in_([*PERSONA_GROUPS, "sfo.nordby"]))
        )
        taught: dict[str, set[tuple[str, str, bool]]] = defaultdict(set)
        for username, school, group, contact in rows:
            taught[username].add((school, group, contact))
        nordby_sfo = set(
            await session.scalars(
                select(Group.name)
                .join(School, School.id == Group.school_id)
                .where(School.name == NORDBY, Group.kind == GroupKind.SFO)
            )
        )
    sfo = taught.pop("sfo.nordby")
    assert taught == PERSONA_GROUPS
    assert nordby_sfo and {group for _, group, _ in sfo} == nordby_sfo
    assert {school for school, _, _ in sfo} == {NORDBY}


async def test_guardian_and_student_personas(demo):
    async with demo() as session:
        guardian = Person.__table__.alias("guardian")
        rows = await session.execute(
            select(
                guardian.c.username,
                Person.given_name + " " + Person.family_name,
                School.name,
                Group.name,
                Enrolment.grade,
            )
            .select_from(guardian)
            .join(Guardianship, Guardianship.guardian_id == guardian.c.id)
            .join(Person, Person.id == Guardianship.student_id)
            .join(SchoolYear, SchoolYear.is_current.is_(True))
            .join(
                Enrolment,
                (Enrolment.student_id == Person.id) & (Enrolment.school_year_id == SchoolYear.id),
            )
            .join(School, School.id == Enrolment.school_id)
            .join(GroupMembership, GroupMembership.student_id == Person.id)
            .join(
                Group,
                (Group.id == GroupMembership.group_id)
                & (Group.kind == GroupKind.CLASS)
                & (Group.school_year_id == SchoolYear.id),
            )
            .where(
                guardian.c.username.in_(PERSONA_CHILDREN),
                Guardianship.parental_responsibility.is_(True),
            )
        )
        children: dict[str, set[tuple[str, str, str, int]]] = defaultdict(set)
        for username, *child in rows:
            children[username].add(tuple(child))  # type: ignore[arg-type]
        noah = await session.scalar(select(Person).where(Person.username == "elev.noah.hansen"))
        noah_groups = set(
            await session.scalars(
                select(Group.name)
                .join(GroupMembership, GroupMembership.group_id == Group.id)
                .where(GroupMembership.student_id == noah.id)
            )
        )
        # The persona family names are kept out of the filler: searching finds only them.
        named = set(
            await session.scalars(
                select(Person.given_name + " " + Person.family_name)
                .join(Enrolment, Enrolment.student_id == Person.id)
                .where(Person.family_name.in_(["Hansen", "Berg"]))
            )
        )
    assert children == PERSONA_CHILDREN
    assert noah.name == "Noah Hansen"
    assert {"9B", "9 Matematikk"} <= noah_groups
    assert named == {"Emma Hansen", "Noah Hansen", "Ida Berg"}


async def _check_structure(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Domain rules of the filler; returns the number of current students."""
    async with sessions() as session:
        year = await session.scalar(select(SchoolYear.id).where(SchoolYear.is_current))
        class_sizes = (
            await session.execute(
                select(Group.id, func.count(GroupMembership.student_id))
                .outerjoin(GroupMembership, GroupMembership.group_id == Group.id)
                .where(Group.kind == GroupKind.CLASS, Group.school_year_id == year)
                .group_by(Group.id)
            )
        ).all()
        contact_teachers = Counter(
            await session.scalars(
                select(GroupTeacher.group_id)
                .join(Group, Group.id == GroupTeacher.group_id)
                .where(Group.kind == GroupKind.CLASS, GroupTeacher.is_contact_teacher.is_(True))
            )
        )
        students = dict(
            (
                await session.execute(
                    select(Enrolment.student_id, Enrolment.grade).where(
                        Enrolment.school_year_id == year
                    )
                )
            ).all()
        )
        guardians = Counter(
            await session.scalars(
                select(Guardianship.student_id).where(
                    Guardianship.parental_responsibility.is_(True)
                )
            )
        )
        # Every current student sits in exactly one class, of their own school and grade.
        placements = (
            await session.execute(
                select(GroupMembership.student_id)
                .join(Group, Group.id == GroupMembership.group_id)
                .join(
                    Enrolment,
                    (Enrolment.student_id == GroupMembership.student_id)
                    & (Enrolment.school_year_id == year),
                )
                .where(
                    Group.kind == GroupKind.CLASS,
                    Group.school_year_id == year,
                    Group.school_id == Enrolment.school_id,
                    Group.grade == Enrolment.grade,
                )
            )
        ).scalars()
        people = (
            await session.execute(select(Person.id, Person.national_id, Person.birth_date))
        ).all()
        emails = (
            await session.execute(
                select(Person.email, Employment.id)
                .outerjoin(Employment, Employment.person_id == Person.id)
                .where(Person.email.isnot(None))
            )
        ).all()
    sizes = [n for _, n in class_sizes]
    assert sizes and min(sizes) >= 15 and max(sizes) <= 28, (min(sizes), max(sizes))
    assert set(contact_teachers) == {g for g, _ in class_sizes}
    assert set(contact_teachers.values()) == {1}
    assert all(1 <= grade <= 10 for grade in students.values())
    assert {guardians.get(s, 0) for s in students} <= {1, 2}
    assert Counter(placements) == Counter(dict.fromkeys(students, 1))
    problems = {pid: national_id_problem(nid, born) for pid, nid, born in people}
    assert [p for p in problems.items() if p[1]] == []
    assert len({nid for _, nid, _ in people}) == len(people)
    # Reserved example domains for families, the fictional municipality domain for staff.
    for email, employment in emails:
        domain = email.rsplit("@", 1)[1]
        staff = {"eksempel.kommune.no"}
        assert domain in (staff if employment else {"example.com", "example.net", "example.org"})
    return len(students)


async def test_filler_keeps_the_domain_rules(demo):
    assert await _check_structure(demo) > 1000


async def test_larger_municipality_has_exactly_n_students(tmp_path: Path):
    url = await build(tmp_path / "large.db", students=2345)
    engine = create_engine(url)
    try:
        sessions = create_sessionmaker(engine)
        assert await _check_structure(sessions) == 2345
        async with sessions() as session:
            schools = await session.scalar(select(func.count()).select_from(School))
            assert schools > 3  # beyond the named schools' capacity, schools are added
            assert await _roles_of(session) == PERSONA_ROLES
        with pytest.raises(DemoDataError):
            await load_demo(sessions)
    finally:
        await engine.dispose()


async def test_too_few_students_is_refused(demo):
    with pytest.raises(ValueError, match=str(MIN_STUDENTS)):
        await load_demo(demo, students=MIN_STUDENTS - 1)


def test_cli_refuses_a_database_that_has_data(demo_url: str):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "tavle"), "demo"],
        env={"TAVLE_DATABASE_URL": demo_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "allerede data" in result.stderr
    assert "Traceback" not in result.stderr
