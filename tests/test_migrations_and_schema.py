"""The migrated database equals the models, and schema.graphql equals the code."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.models import Base
from core.schema.schema import sdl

ROOT = Path(__file__).resolve().parent.parent


async def test_migrated_schema_equals_models(engine):
    def diff(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == [], f"models and migrations differ; add a migration: {differences}"


def test_schema_graphql_is_up_to_date():
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == sdl(), "schema.graphql is stale: run `make schema` and commit it"


async def test_constraints_migration_keeps_an_sqlite_database_with_data(tmp_path):
    """0005 adds constraints, which SQLite does by copying tables: with a municipality's
    data in it, every row and foreign key survives (with foreign keys on, dropping the
    old `school` failed, found when the migration was written)."""
    from sqlalchemy import text

    from core.db import create_engine, create_sessionmaker
    from core.demo import load_demo
    from core.migrate import current_revision, head_revision, upgrade

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'tavle.db'}")
    tables = ("school", "person", "enrolment", "student_group", "role_assignment", "employment")

    async def counts() -> dict[str, int]:
        async with engine.connect() as connection:
            return {
                table: (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
                for table in tables
            }

    try:
        await upgrade(engine, "0004")
        await load_demo(create_sessionmaker(engine))
        before = await counts()
        await upgrade(engine, "head")
        assert await current_revision(engine) == head_revision()
        assert await counts() == before and all(before.values())
        async with engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA foreign_key_check"))).all() == []
            assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_database_refuses_what_the_domain_forbids(sessions):
    """A municipality-wide grant or employment once per person (a unique index lets NULL
    school ids repeat), and grades within 1-10, on both databases."""
    from sqlalchemy import select, update
    from sqlalchemy.exc import IntegrityError

    from core.models import (
        Employment,
        Enrolment,
        Group,
        Person,
        RoleAssignment,
        School,
        SpecialPermissionAssignment,
    )

    async with sessions() as session:
        admin = (
            await session.execute(select(Person.id).where(Person.username == "kommuneadmin"))
        ).scalar_one()
    factories = [
        lambda: RoleAssignment(person_id=admin, role="kommuneadmin", school_id=None),
        lambda: SpecialPermissionAssignment(
            person_id=admin, permission="eksamenskoordinator", school_id=None
        ),
        lambda: Employment(person_id=admin, school_id=None, position="Rådgiver"),
    ]
    for make in factories:
        async with sessions() as session:
            session.add_all([make(), make()])
            with pytest.raises(IntegrityError):
                await session.commit()
    first_enrolment = select(Enrolment.id).limit(1).scalar_subquery()
    first_group = select(Group.id).limit(1).scalar_subquery()
    for statement in (
        update(Enrolment).where(Enrolment.id == first_enrolment).values(grade=11),
        update(School).where(School.name == "Sørby ungdomsskole").values(first_grade=11),
        update(Group).where(Group.id == first_group).values(grade=0),
    ):
        async with sessions() as session:
            with pytest.raises(IntegrityError):
                await session.execute(statement)
                await session.commit()


async def test_a_migration_that_fails_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    """On SQLite the driver opens no transaction before DDL, so a failing migration left
    its first steps applied and could not be run again (found by review). Data the new
    constraints refuse stops it with what to mend; nothing of it is applied, foreign
    keys are on again, and once the data is mended it goes through."""
    from sqlalchemy import text

    from core.cli import main
    from core.db import create_engine, create_sessionmaker
    from core.demo import load_demo
    from core.migrate import current_revision, head_revision, upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'tavle.db'}"
    engine = create_engine(url)
    try:
        await upgrade(engine, "0004")
        await load_demo(create_sessionmaker(engine))
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE school SET last_grade = 13 WHERE name = 'Vestby skole'")
            )

        async def schema() -> list[tuple[str, str]]:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text("SELECT type, name FROM sqlite_master ORDER BY type, name")
                )
                return [tuple(row) for row in rows]

        before = await schema()
        monkeypatch.setenv("TAVLE_DATABASE_URL", url)
        with pytest.raises(SystemExit) as failed:
            # The command runs an event loop of its own: in a thread here.
            await asyncio.get_running_loop().run_in_executor(None, main, ["migrate"])
        assert failed.value.code == 1
        err = capsys.readouterr().err
        assert "1 skoler der trinnene ikke er 1-10" in err and "Traceback" not in err
        assert await schema() == before  # no index, no half-copied table
        assert await current_revision(engine) == "0004"
        # The same failure in this process: the pooled connection has its keys on.
        with pytest.raises(Exception, match="skoler"):
            await upgrade(engine, "head")
        async with engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE school SET last_grade = 10 WHERE name = 'Vestby skole'")
            )
        # A failure after every step has run (a key that does not hold, found by the
        # check at the end): all of it is rolled back.
        with sqlite3.connect(tmp_path / "tavle.db") as raw:
            raw.execute("PRAGMA foreign_keys=OFF")
            raw.execute("UPDATE enrolment SET school_id = 9999 WHERE id = 1")
        with pytest.raises(RuntimeError, match="foreign keys"):
            await upgrade(engine, "head")
        assert await schema() == before
        with sqlite3.connect(tmp_path / "tavle.db") as raw:
            raw.execute(
                "UPDATE enrolment SET school_id = (SELECT min(id) FROM school) WHERE id = 1"
            )
        await upgrade(engine, "head")
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()
