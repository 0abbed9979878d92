"""Scope conditions are built once per caller and reused (core/access/memo.py): the reused
condition is the one a fresh build gives, and anything that changes the answer (grants,
school year, columns, options) builds anew."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import sqlite

from core.access import scopes
from core.access.grants import Grant, Principal, ScopedGrant
from core.access.memo import ConditionMemo
from core.access.policy import Policy
from core.config import Settings
from core.models import Person


def _sql(condition: object) -> tuple[str, dict[str, object]]:
    compiled = select(Person.id).where(condition).compile(dialect=sqlite.dialect())  # type: ignore[arg-type]
    return str(compiled), dict(compiled.params)


def _teacher(year: int = 2, grants: tuple[Grant, ...] = (Grant("laerer", 1),)) -> Principal:
    return Principal(
        person_id=42,
        grants=grants,
        policy=Policy.load(Settings().policies_dir),
        current_school_year_id=year,
    )


def test_memo_returns_what_was_built_and_forgets_the_oldest() -> None:
    memo = ConditionMemo(max_entries=2)
    built: list[str] = []

    def build(name: str) -> str:
        built.append(name)
        return name

    column_a, column_b = object(), object()
    assert memo.get_or_build(("x",), (column_a,), lambda: build("a")) == "a"
    assert memo.get_or_build(("x",), (column_a,), lambda: build("again")) == "a"
    # Another object in the same place is another key, even with equal values.
    assert memo.get_or_build(("x",), (column_b,), lambda: build("b")) == "b"
    assert memo.get_or_build(("y",), (column_a,), lambda: build("c")) == "c"
    assert len(memo) == 2  # ("x", a) was the least recently used, and went
    assert memo.get_or_build(("x",), (column_a,), lambda: build("a2")) == "a2"
    assert built == ["a", "b", "c", "a2"]


def test_scope_conditions_are_reused_and_equal_a_fresh_build() -> None:
    teacher = _teacher()
    grants = (ScopedGrant("own_groups", 1, "laerer"),)
    first = scopes.students(teacher, grants, Person.id)
    again = scopes.students(_teacher(), list(grants), Person.id)  # same caller, new objects
    assert again is first
    fresh = scopes.students.__wrapped__(teacher, grants, Person.id)  # type: ignore[attr-defined]
    assert _sql(first) == _sql(fresh)
    assert _sql(first)[1] == {"employee_id_1": 42, "school_year_id_1": 2}


def test_anything_that_changes_the_answer_builds_anew() -> None:
    grants = (ScopedGrant("own_groups", 1, "laerer"),)
    base = scopes.students(_teacher(), grants, Person.id)
    other_year = scopes.students(_teacher(year=3), grants, Person.id)
    assert other_year is not base and _sql(other_year)[1]["school_year_id_1"] == 3
    school = (ScopedGrant("school", 1, "skoleadmin"),)
    assert _sql(scopes.students(_teacher(), school, Person.id)) != _sql(base)
    assert scopes.students(_teacher(), grants, Person.given_name) is not base  # type: ignore[arg-type]
    listing = scopes.guardians(_teacher(), grants, Person.id, listing=True)
    assert scopes.guardians(_teacher(), grants, Person.id, listing=False) is not listing


def test_values_in_place_of_columns_are_not_kept() -> None:
    from sqlalchemy import literal

    grants = (ScopedGrant("own_groups", 1, "laerer"),)
    kept = len(scopes._MEMO)
    first = scopes.students(_teacher(), grants, literal(7))
    assert scopes.students(_teacher(), grants, literal(7)) is not first
    assert len(scopes._MEMO) == kept


def test_document_visibility_follows_the_doctypes() -> None:
    """A changed set of application doctypes (the drafts private to their author) is a
    new condition, even in the same mapping object."""
    from types import SimpleNamespace

    from core.documents.service import visible_documents

    teacher = _teacher()
    doctypes: dict[str, object] = {"notat": SimpleNamespace(permission="document:create")}
    before = visible_documents(teacher, doctypes)
    assert visible_documents(teacher, doctypes) is before
    doctypes["soknad"] = SimpleNamespace(permission="application:submit")
    after = visible_documents(teacher, doctypes)
    assert after is not before
    assert "soknad" in str(after.compile(compile_kwargs={"literal_binds": True}))


def test_per_caller_statements_are_never_shared_between_callers() -> None:
    """`ConditionMemo.for_caller` (the documents' and loaders' statements): one build per
    caller, purpose and extra key; another person, school year, grant set, policy,
    purpose or extra builds anew."""
    memo = ConditionMemo()
    teacher = _teacher()
    built: list[object] = []

    def build() -> object:
        built.append(object())
        return built[-1]

    def again(**changes: object) -> Principal:
        fields = {
            "person_id": teacher.person_id,
            "grants": teacher.grants,
            "policy": teacher.policy,
            "current_school_year_id": teacher.current_school_year_id,
        }
        return Principal(**{**fields, **changes})  # type: ignore[arg-type]

    first = memo.for_caller(teacher, "load", build, ("a",))
    # The same caller in a later request (a new Principal object): reused.
    assert memo.for_caller(again(), "load", build, ("a",)) is first
    others = [
        memo.for_caller(teacher, "send", build, ("a",)),
        memo.for_caller(teacher, "load", build, ("b",)),
        memo.for_caller(again(current_school_year_id=3), "load", build, ("a",)),
        memo.for_caller(again(grants=(Grant("laerer", 2),)), "load", build, ("a",)),
        memo.for_caller(again(person_id=43), "load", build, ("a",)),
        memo.for_caller(_teacher(), "load", build, ("a",)),  # another policy (reloaded)
    ]
    assert len({id(o) for o in [first, *others]}) == 7 and len(built) == 7
