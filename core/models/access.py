"""Who holds which role, or special permission, where.

The policy files say what a role may do; these rows say who has it and at which school
(school_id null = the whole municipality). Guardians need no row: the Foresatt role
follows from guardianship with parental responsibility.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, UtcDateTime, utcnow


class RoleAssignment(Base):
    __tablename__ = "role_assignment"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(100))
    school_id: Mapped[int | None] = mapped_column(ForeignKey("school.id"))
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


Index(
    "uq_role_assignment",
    RoleAssignment.person_id,
    RoleAssignment.role,
    RoleAssignment.school_id,
    unique=True,
)
# A unique index treats NULLs as distinct, so the one above lets a municipality-wide role
# (school_id null) be held twice; this one does not.
Index(
    "uq_role_assignment_municipality",
    RoleAssignment.person_id,
    RoleAssignment.role,
    unique=True,
    sqlite_where=text("school_id IS NULL"),
    postgresql_where=text("school_id IS NULL"),
)


class SpecialPermissionAssignment(Base):
    __tablename__ = "special_permission_assignment"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    permission: Mapped[str] = mapped_column(String(100))
    school_id: Mapped[int | None] = mapped_column(ForeignKey("school.id"))
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


Index(
    "uq_special_permission_assignment",
    SpecialPermissionAssignment.person_id,
    SpecialPermissionAssignment.permission,
    SpecialPermissionAssignment.school_id,
    unique=True,
)
Index(
    "uq_special_permission_assignment_municipality",
    SpecialPermissionAssignment.person_id,
    SpecialPermissionAssignment.permission,
    unique=True,
    sqlite_where=text("school_id IS NULL"),
    postgresql_where=text("school_id IS NULL"),
)
