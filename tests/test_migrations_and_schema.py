"""The migrated database equals the models, and schema.graphql equals the code."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.models import Base
from core.schema.schema import sdl

ROOT = Path(__file__).resolve().parent.parent


async def test_migrated_schema_equals_models(engine):
    def diff(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == [], f"models and migrations differ; add a migration: {differences}"


def test_schema_graphql_is_up_to_date():
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == sdl(), "schema.graphql is stale: run `make schema` and commit it"
