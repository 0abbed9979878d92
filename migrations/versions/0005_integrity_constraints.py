"""integrity: municipality-wide grants and employments unique, grades within 1-10

A unique index treats NULLs as distinct, so (person, role, school) let a municipality-wide
role (school null) be held twice; partial indexes close that for role and special
permission assignments and employments. Grades are checked where they are stored.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 14:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.migrate import MigrationDataError

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MUNICIPALITY_WIDE = sa.text("school_id IS NULL")
PARTIAL_UNIQUE = {
    "uq_role_assignment_municipality": ("role_assignment", ["person_id", "role"]),
    "uq_special_permission_assignment_municipality": (
        "special_permission_assignment",
        ["person_id", "permission"],
    ),
    "uq_employment_municipality": ("employment", ["person_id"]),
}
CHECKS = {
    "enrolment": ("grade", "grade BETWEEN 1 AND 10"),
    "school": ("grades", "first_grade BETWEEN 1 AND last_grade AND last_grade <= 10"),
    "student_group": ("grade", "grade IS NULL OR grade BETWEEN 1 AND 10"),
}


# Rows the new constraints refuse, each with what an administrator should look for.
REFUSED_ROWS = {
    "skoler der trinnene ikke er 1-10 med første <= siste": (
        "SELECT count(*) FROM school WHERE NOT "
        "(first_grade BETWEEN 1 AND last_grade AND last_grade <= 10)"
    ),
    "elever innskrevet på et trinn utenfor 1-10": (
        "SELECT count(*) FROM enrolment WHERE grade NOT BETWEEN 1 AND 10"
    ),
    "grupper med et trinn utenfor 1-10": (
        "SELECT count(*) FROM student_group WHERE grade IS NOT NULL "
        "AND grade NOT BETWEEN 1 AND 10"
    ),
    "kommunedekkende roller gitt samme person mer enn én gang": (
        "SELECT count(*) FROM (SELECT person_id, role FROM role_assignment "
        "WHERE school_id IS NULL GROUP BY person_id, role HAVING count(*) > 1) AS twice"
    ),
    "kommunedekkende særtilganger gitt samme person mer enn én gang": (
        "SELECT count(*) FROM (SELECT person_id, permission FROM special_permission_assignment "
        "WHERE school_id IS NULL GROUP BY person_id, permission HAVING count(*) > 1) AS twice"
    ),
    "kommuneansettelser registrert mer enn én gang for samme person": (
        "SELECT count(*) FROM (SELECT person_id FROM employment WHERE school_id IS NULL "
        "GROUP BY person_id HAVING count(*) > 1) AS twice"
    ),
}


def _refuse_data_the_constraints_would() -> None:
    """Say what to mend, rather than fail on the first constraint with SQL."""
    bind = op.get_bind()
    found = [
        f"{count} {what}"
        for what, statement in REFUSED_ROWS.items()
        if (count := bind.execute(sa.text(statement)).scalar())
    ]
    if found:
        raise MigrationDataError(
            "Migrering 0005 kan ikke gjennomføres før dataene er rettet: " + "; ".join(found)
        )


def upgrade() -> None:
    _refuse_data_the_constraints_would()
    for name, (table, columns) in PARTIAL_UNIQUE.items():
        op.create_index(
            name,
            table,
            columns,
            unique=True,
            sqlite_where=MUNICIPALITY_WIDE,
            postgresql_where=MUNICIPALITY_WIDE,
        )
    for table, (name, condition) in CHECKS.items():
        # SQLite adds a check by copying the table (batch mode); PostgreSQL alters it.
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_check_constraint(op.f(f"ck_{table}_{name}"), condition)


def downgrade() -> None:
    for table, (name, _condition) in CHECKS.items():
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
    for name, (table, _columns) in PARTIAL_UNIQUE.items():
        op.drop_index(name, table_name=table)
