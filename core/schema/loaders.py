"""DataLoaders, created per request: every nested list is fetched for a whole batch of
parents in one scoped SQL statement, so a request costs a bounded number of statements
whatever the number of rows."""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from operator import attrgetter
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Row, Select, and_, bindparam, func, select
from strawberry.dataloader import DataLoader
from strawberry.types.nodes import SelectedField

from core.access import scopes
from core.access.grants import Principal
from core.access.memo import ConditionMemo
from core.models import (
    Employment,
    Enrolment,
    Group,
    GroupKind,
    GroupMembership,
    GroupTeacher,
    Guardianship,
    Person,
    School,
    SchoolYear,
)
from core.schema.database import RequestDatabase
from core.schema.rows import (
    GROUP_COLUMNS,
    PERSON_COLUMNS,
    STUDENT_COLUMNS,
    GroupRow,
    PersonRow,
    StudentRow,
)

# The batch statements, built once per caller (person, school year, grants, policy) and
# run with the batch's keys as an expanding parameter: building them (and their cache
# keys, over the scope conditions) was a millisecond of every list request.
_STATEMENTS = ConditionMemo(max_entries=2048)
_KEYS = "batch_keys"

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")


def _grouped(keys: Sequence[K], pairs: Iterable[tuple[K, V]]) -> list[list[V]]:
    found: dict[K, list[V]] = defaultdict(list)
    for key, value in pairs:
        found[key].append(value)
    return [found.get(key, []) for key in keys]


def cached(loader: DataLoader[K, V], key: K) -> V | Awaitable[V]:
    """The value when the loader already holds it (prefetched), else the pending load.

    Resolvers return what this gives through `then`: a prefetched tree resolves
    synchronously, which spares GraphQL a coroutine and a task per field; anything not
    prefetched still loads in batches as before."""
    future = loader.cache_map.get(key)
    if (
        future is not None
        and future.done()
        and not future.cancelled()
        and future.exception() is None
    ):
        return future.result()
    return loader.load(key)


# What a loader or a permission check answers when it answers at once (rows, flags):
# never awaitable, so `then` need not ask inspect (an ABC check, ~1 us; a page of
# students asks ~500 times).
_PLAIN_ANSWERS = frozenset({list, tuple, bool, type(None)})


def then(value: V | Awaitable[V], build: Callable[[V], R | Awaitable[R]]) -> R | Awaitable[R]:
    """`build(value)`, now if the value is there, else once it has loaded."""
    if value.__class__ not in _PLAIN_ANSWERS and inspect.isawaitable(value):
        return _chain(value, build)
    return build(value)


async def _chain(value: Awaitable[V], build: Callable[[V], R | Awaitable[R]]) -> R:
    result = build(await value)
    if inspect.isawaitable(result):
        return await result
    return result


async def load_all(loader: DataLoader[K, V], keys: Sequence[K]) -> list[V]:
    """`loader.load_many(keys)` for look-ahead: the keys not yet in the loader's cache go to
    its batch function in one call, and the answers are put in the cache (`prime_many`).

    Same statement, same answers as `load_many`; what it saves is DataLoader's machinery
    for a batch that is already complete: a future, a gather callback and an event-loop
    turn per key (for a page of 100 students, ~400 loop callbacks a request)."""
    cache = loader.cache_map
    missing = [key for key in keys if (found := cache.get(key)) is None or found.cancelled()]
    loaded: dict[K, V] = {}
    if missing:
        values = await loader.load_fn(missing)
        loaded = dict(zip(missing, values, strict=True))
        batch = loader.batch
        if not loader.cache or (batch is not None and not batch.dispatched):
            # force: a cancelled future (a sibling field's task cancelled while it
            # waited) is replaced, as DataLoader.load would replace it; prime_many also
            # settles the keys of a batch that has not run yet.
            loader.prime_many(loaded, force=True)
        else:
            # What prime_many(force=True) does when no batch is pending, without its
            # per-key look-ups: a done future per key.
            loop = loader.loop
            for key, value in loaded.items():
                future = loop.create_future()
                future.set_result(value)
                cache.set(key, future)
    results: list[V] = []
    for key in keys:
        if key in loaded:
            results.append(loaded[key])
            continue
        future = cache.get(key)
        if future is None:  # (primed above, or cached: never absent)
            raise RuntimeError(f"no value loaded for {key!r}")
        results.append(future.result() if future.done() else await future)
    return results


async def settled(value: V | Awaitable[V]) -> V:
    """Await `value` if it is awaitable (for callers that are async anyway)."""
    if inspect.isawaitable(value):
        return await value
    return value


# Look-ahead for prefetching: per GraphQL type, the fields that load related rows, as
# (loader attribute, the key of a row, GraphQL type of the loaded rows or None) ...
RELATIONS: dict[str, dict[str, tuple[str, Callable[[Any], Any], str | None]]] = {
    "Student": {
        "school": ("school", attrgetter("school_id"), None),
        "groups": ("groups_of_student", attrgetter("id"), "Group"),
        "guardians": ("guardians_of_student", attrgetter("id"), "Guardian"),
        "contactTeacher": ("contact_teacher_of_student", attrgetter("id"), "Employee"),
    },
    "Group": {
        "school": ("school", attrgetter("school_id"), None),
        "schoolYear": ("school_year", attrgetter("school_year_id"), None),
        "students": ("students_of_group", attrgetter("id"), "Student"),
        "teachers": ("teachers_of_group", attrgetter("id"), "Employee"),
    },
    "Guardian": {"children": ("children_of_guardian", attrgetter("id"), "Student")},
    "Employee": {},
}
# ... and the fields with a permission of their own, by the permission's resource.
FIELD_RESOURCES: dict[str, dict[str, str]] = {
    "Student": {
        "email": "student_contact",
        "phone": "student_contact",
        "address": "student_address",
        "nationalId": "student_national_id",
    },
    "Guardian": {
        "email": "guardian_contact",
        "phone": "guardian_contact",
        "address": "guardian_address",
        "nationalId": "guardian_national_id",
    },
    "Employee": {
        "email": "employee_contact",
        "phone": "employee_contact",
        "nationalId": "employee_national_id",
    },
}


def selected(selections: Iterable[Any], *path: str) -> list[Any]:
    """The sub-selections at `path` (e.g. "edges", "node") below `selections`, with
    fragments flattened and aliases of the same field merged."""
    found = list(selections)
    for name in path:
        found = [s for field in _fields(found) if field.name == name for s in field.selections]
    return found


def _fields(selections: Iterable[Any]) -> Iterator[SelectedField]:
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        else:  # FragmentSpread or InlineFragment
            yield from _fields(selection.selections)


class Loaders:
    """Every loader of one request; each applies the caller's scope in SQL."""

    def __init__(self, db: RequestDatabase, principal: Principal):
        self.db = db
        self.principal = principal
        year = principal.current_school_year_id
        self._year = year
        self.school = DataLoader(self._load_schools)
        self.school_year = DataLoader(self._load_school_years)
        self.group = DataLoader(self._load_groups)
        self.groups_of_student = DataLoader(self._load_groups_of_students)
        self.students_of_group = DataLoader(self._load_students_of_groups)
        self.teachers_of_group = DataLoader(self._load_teachers_of_groups)
        self.guardians_of_student = DataLoader(self._load_guardians_of_students)
        self.children_of_guardian = DataLoader(self._load_children_of_guardians)
        self.contact_teacher_of_student = DataLoader(self._load_contact_teachers)
        self._field_loaders: dict[str, DataLoader[int, bool]] = {}
        self._implied: dict[str, bool | None] = {}
        self._built: dict[int, tuple[Any, Any]] = {}

    def release(self) -> None:
        """Forget the objects built for this request (see Context.release)."""
        self._built.clear()

    def built(self, row: R, build: Callable[[R], V]) -> V:
        """`build(row)`, made once per row object in this request: a group shared by a
        page's students is one row (see `_load_groups_of_students`) and so one GraphQL
        object. Keyed by the row's identity, so only the very same row is shared."""
        known = self._built.get(id(row))
        if known is not None and known[0] is row:
            return known[1]  # type: ignore[no-any-return]
        value = build(row)
        self._built[id(row)] = (row, value)
        return value

    # -- look-ahead ---------------------------------------------------------------------
    async def prefetch(self, type_name: str, rows: Sequence[Any], selections: list[Any]) -> None:
        """Load, for all `rows` at once, every relation and field permission the query
        selects below them, level by level. The resolvers then find everything in the
        loaders' caches and resolve without awaiting. The same loaders (and so the same
        scoped SQL) run as without look-ahead: this changes when, never what."""
        if not rows or not selections:
            return
        relations = RELATIONS.get(type_name, {})
        resources = FIELD_RESOURCES.get(type_name, {})
        nested: dict[str, list[Any]] = defaultdict(list)
        permissions: set[str] = set()
        for field in _fields(selections):
            if field.name in relations:
                nested[field.name].extend(field.selections)
            elif field.name in resources:
                permissions.add(resources[field.name])
        for resource in sorted(permissions):
            if self.field_implied(resource) is None:
                await load_all(self.field_allowed(resource), sorted({r.id for r in rows}))
        for name, sub in nested.items():
            attribute, key_of, child_type = relations[name]
            loader: DataLoader[Any, Any] = getattr(self, attribute)
            keys = list(dict.fromkeys(k for k in map(key_of, rows) if k is not None))
            loaded = await load_all(loader, keys)
            if child_type is None or not sub:
                continue
            children = [
                child
                for value in loaded
                for child in (value if isinstance(value, list) else [value])
                if child is not None
            ]
            await self.prefetch(child_type, children, sub)

    # -- field permissions ------------------------------------------------------------
    def field_allowed(self, resource: str) -> DataLoader[int, bool]:
        """Whether the caller may read the `resource` field (e.g. student_national_id) of
        each person id, answered for a whole batch in one statement."""
        loader = self._field_loaders.get(resource)
        if loader is None:
            loader = DataLoader(lambda ids: self._load_field_allowed(resource, ids))
            self._field_loaders[resource] = loader
        return loader

    def field_implied(self, resource: str) -> bool | None:
        """Whether the field permission `resource` (e.g. guardian_contact) holds for every
        person row of its kind the caller may read: True, False, or None when it depends
        on the row and SQL must decide.

        Every query that returns persons filters them by the kind's own read scope
        (`person_condition(kind, kind, ...)`, `student_condition()`), so when each scope
        of that read permission is also a scope of the field permission, the field's
        condition is implied and no statement is needed. For most roles the two are the
        same (skoleadmin: school and school, laerer: own_groups and own_groups)."""
        cached = self._implied.get(resource, ...)
        if cached is not ...:
            return cached
        field_grants = self.principal.scopes(resource, "read")
        result: bool | None
        if not field_grants:
            result = False
        elif any(
            g.scope == "municipality" or (g.scope == "school" and g.school_id is None)
            for g in field_grants
        ):
            result = True
        else:
            held = {(g.scope, g.school_id) for g in field_grants}
            base = self.principal.scopes(resource.split("_", 1)[0], "read")
            result = True if all((g.scope, g.school_id) in held for g in base) else None
        self._implied[resource] = result
        return result

    def fields_allowed(
        self, resource: str, ids: Sequence[int]
    ) -> list[bool] | Awaitable[list[bool]]:
        """`field_allowed` for many rows at once: at once when the answer is implied or
        prefetched, else an awaitable (one batched statement)."""
        implied = self.field_implied(resource)
        if implied is not None:
            return [implied] * len(ids)
        loader = self.field_allowed(resource)
        answers = [cached(loader, i) for i in ids]
        if any(inspect.isawaitable(a) for a in answers):
            return loader.load_many(ids)
        return answers  # type: ignore[return-value]

    async def _load_field_allowed(self, resource: str, ids: Sequence[int]) -> list[bool]:
        grants = self.principal.scopes(resource, "read")
        if not grants:
            return [False] * len(ids)
        kind = resource.split("_", 1)[0]
        condition = self.person_condition(kind, resource, Person.id)
        rows = await self.db.rows(select(Person.id).where(Person.id.in_(ids), condition))
        allowed = {r[0] for r in rows}
        return [i in allowed for i in ids]

    def person_condition(
        self, kind: str, resource: str, column: ColumnElement[int], *, listing: bool = False
    ) -> ColumnElement[bool]:
        """Persons of `kind` for which the caller holds `resource` read. `listing` when
        the query scans many persons rather than checking given ids."""
        grants = self.principal.scopes(resource, "read")
        match kind:
            case "student":
                return scopes.students(self.principal, grants, column)
            case "guardian":
                return scopes.guardians(self.principal, grants, column, listing=listing)
            case "employee":
                return scopes.employees(self.principal, grants, column)
        raise ValueError(f"no person filter for {kind!r}")

    # -- scoped conditions shared with the root queries ---------------------------------
    def student_condition(
        self,
        school_column: ColumnElement[int] | None = Enrolment.school_id,
        id_column: ColumnElement[int] = Person.id,
    ) -> ColumnElement[bool]:
        return scopes.students(
            self.principal, self.principal.scopes("student", "read"), id_column, school_column
        )

    def group_condition(self) -> ColumnElement[bool]:
        return scopes.groups(self.principal, self.principal.scopes("group", "read"))

    def current_enrolment(self) -> ColumnElement[bool]:
        return and_(Enrolment.student_id == Person.id, Enrolment.school_year_id == self._year)

    def enrolment_count(self) -> Select[Any]:
        """How many students the caller may read this school year, from the enrolments
        alone: what `count(*)` over person JOIN enrolment (current_enrolment) WHERE
        student_condition() answers, since every enrolment names an existing person (a
        foreign key) and the scope is a condition on the student's id and school. On
        SQLite the join cost a person lookup per student, 7x the time."""
        return (
            select(func.count())
            .select_from(Enrolment)
            .where(
                Enrolment.school_year_id == self._year,
                self.student_condition(id_column=Enrolment.student_id),
            )
        )

    # -- batch functions ---------------------------------------------------------------
    async def _run(
        self, name: str, build: Callable[[], Select[Any]], keys: Sequence[Any]
    ) -> Sequence[Row[Any]]:
        """The rows of the batch statement `build()` (over the bound keys `_KEYS`), built
        once per caller, run for `keys`. Fetched in one call (iterating the result
        fetched them one by one)."""
        statement = _STATEMENTS.for_caller(self.principal, name, build)
        return (await self.db.rows(statement, {_KEYS: list(keys)})).all()

    async def _load_schools(self, ids: Sequence[int]) -> list[School | None]:
        rows = (await self.db.execute(select(School).where(School.id.in_(ids)))).scalars()
        by_id = {s.id: s for s in rows}
        return [by_id.get(i) for i in ids]

    async def _load_school_years(self, ids: Sequence[int]) -> list[SchoolYear | None]:
        rows = (await self.db.execute(select(SchoolYear).where(SchoolYear.id.in_(ids)))).scalars()
        by_id = {s.id: s for s in rows}
        return [by_id.get(i) for i in ids]

    async def _load_groups(self, ids: Sequence[int]) -> list[Group | None]:
        rows = (
            await self.db.execute(select(Group).where(Group.id.in_(ids), self.group_condition()))
        ).scalars()
        by_id = {g.id: g for g in rows}
        return [by_id.get(i) for i in ids]

    async def _load_groups_of_students(self, ids: Sequence[int]) -> list[list[GroupRow]]:
        rows = await self._run(
            "groups_of_students",
            lambda: (
                select(GroupMembership.student_id, *GROUP_COLUMNS)
                .join(Group, Group.id == GroupMembership.group_id)
                .where(
                    GroupMembership.student_id.in_(bindparam(_KEYS, expanding=True)),
                    Group.school_year_id == self._year,
                    self.group_condition(),
                )
                .order_by(Group.kind, Group.name)
            ),
            ids,
        )
        # One row per group, however many of the batch's students are in it.
        shared: dict[int, GroupRow] = {}
        pairs = []
        for r in rows:
            group = shared.get(r[1])
            if group is None:
                group = shared[r[1]] = GroupRow(*r[1:])
            pairs.append((r[0], group))
        return _grouped(ids, pairs)

    async def _load_students_of_groups(self, ids: Sequence[int]) -> list[list[StudentRow]]:
        rows = await self._run(
            "students_of_groups",
            lambda: (
                select(GroupMembership.group_id, *STUDENT_COLUMNS)
                .join(Person, Person.id == GroupMembership.student_id)
                .join(Enrolment, self.current_enrolment())
                .where(
                    GroupMembership.group_id.in_(bindparam(_KEYS, expanding=True)),
                    self.student_condition(),
                )
                .order_by(Person.family_name, Person.given_name, Person.id)
            ),
            ids,
        )
        return _grouped(ids, ((r[0], StudentRow.of(r[1:])) for r in rows))

    async def _load_teachers_of_groups(self, ids: Sequence[int]) -> list[list[PersonRow]]:
        rows = await self._run(
            "teachers_of_groups",
            lambda: (
                select(GroupTeacher.group_id, *PERSON_COLUMNS)
                .join(Person, Person.id == GroupTeacher.employee_id)
                .where(
                    GroupTeacher.group_id.in_(bindparam(_KEYS, expanding=True)),
                    self.person_condition("employee", "employee", Person.id),
                )
                .order_by(GroupTeacher.is_contact_teacher.desc(), Person.family_name, Person.id)
            ),
            ids,
        )
        return _grouped(ids, ((r[0], PersonRow.of(r[1:])) for r in rows))

    async def _load_guardians_of_students(self, ids: Sequence[int]) -> list[list[PersonRow]]:
        rows = await self._run(
            "guardians_of_students",
            lambda: (
                select(Guardianship.student_id, *PERSON_COLUMNS)
                .join(Person, Person.id == Guardianship.guardian_id)
                .where(
                    Guardianship.student_id.in_(bindparam(_KEYS, expanding=True)),
                    Guardianship.parental_responsibility.is_(True),
                    self.person_condition("guardian", "guardian", Person.id),
                )
                .order_by(Person.family_name, Person.given_name, Person.id)
            ),
            ids,
        )
        return _grouped(ids, ((r[0], PersonRow.of(r[1:])) for r in rows))

    async def _load_children_of_guardians(self, ids: Sequence[int]) -> list[list[StudentRow]]:
        rows = await self._run(
            "children_of_guardians",
            lambda: (
                select(Guardianship.guardian_id, *STUDENT_COLUMNS)
                .join(Person, Person.id == Guardianship.student_id)
                .join(Enrolment, self.current_enrolment())
                .where(
                    Guardianship.guardian_id.in_(bindparam(_KEYS, expanding=True)),
                    Guardianship.parental_responsibility.is_(True),
                    self.student_condition(),
                )
                .order_by(Person.birth_date, Person.id)
            ),
            ids,
        )
        return _grouped(ids, ((r[0], StudentRow.of(r[1:])) for r in rows))

    async def _load_contact_teachers(self, ids: Sequence[int]) -> list[PersonRow | None]:
        rows = await self._run(
            "contact_teachers",
            lambda: (
                select(GroupMembership.student_id, *PERSON_COLUMNS)
                .join(Group, Group.id == GroupMembership.group_id)
                .join(GroupTeacher, GroupTeacher.group_id == Group.id)
                .join(Person, Person.id == GroupTeacher.employee_id)
                .where(
                    GroupMembership.student_id.in_(bindparam(_KEYS, expanding=True)),
                    Group.school_year_id == self._year,
                    Group.kind == GroupKind.CLASS,
                    GroupTeacher.is_contact_teacher.is_(True),
                    self.person_condition("employee", "employee", Person.id),
                )
                .order_by(Person.id)
            ),
            ids,
        )
        first: dict[int, PersonRow] = {}
        for r in rows:
            first.setdefault(r[0], PersonRow.of(r[1:]))
        return [first.get(i) for i in ids]


def employment_exists() -> Callable[[ColumnElement[int]], ColumnElement[bool]]:
    """A condition: the person is an employee somewhere (used by the employees list)."""
    return lambda column: column.in_(select(Employment.person_id))


__all__ = [
    "Loaders",
    "cached",
    "employment_exists",
    "load_all",
    "selected",
    "settled",
    "then",
]
