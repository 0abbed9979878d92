"""IDs given as filters: a filter naming a record that does not exist is NOT_FOUND (a
typo should not look like an empty result); one that exists but lies outside the
caller's scope filters everything out, as the scope conditions do."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select

from core.models import Group, Person, School
from core.schema import ids
from core.schema.context import Info
from core.schema.errors import not_found

_NAMES = {"School": (School, "Skolen"), "Group": (Group, "Gruppen"), "Student": (Person, "Eleven")}


async def existing_pk(info: Info, global_id: str, type_name: str) -> int:
    """The primary key of a filter's ID of `type_name` (School, Group or Student):
    BAD_USER_INPUT when malformed or of another type, NOT_FOUND when no such record."""
    model, name = _NAMES[type_name]
    pk = ids.decode_pk(global_id, type_name)
    if not (await info.context.db.execute(select(exists().where(model.id == pk)))).scalar():
        raise not_found(name)
    return pk


async def optional_pk(info: Info, global_id: Any, type_name: str) -> int | None:
    """`existing_pk` for an optional filter: None when it is not given."""
    return None if global_id is None else await existing_pk(info, global_id, type_name)
