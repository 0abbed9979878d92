"""Absence and remark reports per student and period, and the whole-year absence report
as a document (doctype `fravaersrapport`) that can be archived.

Reads are scoped in SQL by the caller's `absence:read` / `remark:read` grants; a student
outside them is FORBIDDEN, an unknown one NOT_FOUND.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, exists, select

from core.absence.service import OSLO, student_in_scope
from core.access import scopes
from core.access.grants import Principal
from core.access.vocabulary import PERSONAL_SCOPES
from core.documents import service as documents
from core.errors import BadInput, Forbidden, NotFound
from core.models import (
    Absence,
    AbsenceReporter,
    Document,
    Enrolment,
    Remark,
    RemarkKind,
    SchoolYear,
)

YEAR_REPORT_DOCTYPE = "fravaersrapport"
# A report covers at most a little more than one school year: larger ranges are a typo.
MAX_PERIOD = timedelta(days=400)


class Executor(Protocol):
    async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any: ...


@dataclass
class AbsenceTotals:
    whole_days: int = 0
    lessons: int = 0
    valid_whole_days: int = 0
    valid_lessons: int = 0
    reported_by_guardian: int = 0
    registered_by_school: int = 0

    def add(self, absence: Absence) -> None:
        lessons = len(absence.lessons or [])
        if absence.whole_day:
            self.whole_days += 1
            self.valid_whole_days += int(absence.valid_reason)
        else:
            self.lessons += lessons
            self.valid_lessons += lessons if absence.valid_reason else 0
        if absence.reported_by == AbsenceReporter.GUARDIAN:
            self.reported_by_guardian += 1
        else:
            self.registered_by_school += 1


@dataclass
class AbsenceReport:
    student_id: int
    start: date
    end: date
    absences: list[Absence]
    totals: AbsenceTotals = field(default_factory=AbsenceTotals)


@dataclass
class RemarkReport:
    student_id: int
    start: date
    end: date
    remarks: list[Remark]
    order: int = 0
    conduct: int = 0


def readable_absences(principal: Principal) -> ColumnElement[bool]:
    return scopes.students(principal, principal.scopes("absence", "read"), Absence.student_id)


def readable_remarks(principal: Principal) -> ColumnElement[bool]:
    return scopes.students(principal, principal.scopes("remark", "read"), Remark.student_id)


def check_period(start: date, end: date) -> None:
    if end < start:
        raise BadInput("Perioden slutter før den begynner.", field="to")
    if end - start > MAX_PERIOD:
        raise BadInput("Perioden kan være høyst ett skoleår.", field="to")


async def require_student(
    db: Executor, principal: Principal, student_id: int, resource: str
) -> None:
    """FORBIDDEN unless the caller may read `resource` for the student; NOT_FOUND for a
    student that does not exist at all."""
    grants = principal.scopes(resource, "read")
    if not grants:
        raise Forbidden()
    in_scope = (
        await db.execute(
            select(
                exists().where(
                    Enrolment.student_id == student_id,
                    scopes.students(principal, grants, Enrolment.student_id),
                )
            )
        )
    ).scalar()
    if in_scope:
        return
    known = (await db.execute(select(exists().where(Enrolment.student_id == student_id)))).scalar()
    if not known:
        raise NotFound("Eleven finnes ikke.", field="studentId")
    raise Forbidden("Du har ikke tilgang til denne elevens fravær og anmerkninger.")


async def absence_report(
    db: Executor, principal: Principal, student_id: int, start: date, end: date
) -> AbsenceReport:
    check_period(start, end)
    await require_student(db, principal, student_id, "absence")
    rows = (
        await db.execute(
            select(Absence)
            .where(
                Absence.student_id == student_id,
                Absence.date >= start,
                Absence.date <= end,
                readable_absences(principal),
            )
            .order_by(Absence.date, Absence.id)
        )
    ).scalars()
    report = AbsenceReport(student_id, start, end, list(rows))
    for absence in report.absences:
        report.totals.add(absence)
    return report


async def remark_report(
    db: Executor, principal: Principal, student_id: int, start: date, end: date
) -> RemarkReport:
    check_period(start, end)
    await require_student(db, principal, student_id, "remark")
    # Remarks carry a timestamp; the period is in whole Norwegian days: a half-open range.
    since = datetime.combine(start, time.min, OSLO)
    until = datetime.combine(end + timedelta(days=1), time.min, OSLO)
    rows = (
        await db.execute(
            select(Remark)
            .where(
                Remark.student_id == student_id,
                Remark.created_at >= since,
                Remark.created_at < until,
                readable_remarks(principal),
            )
            .order_by(Remark.created_at, Remark.id)
        )
    ).scalars()
    report = RemarkReport(student_id, start, end, list(rows))
    report.order = sum(1 for r in report.remarks if r.kind == RemarkKind.ORDER)
    report.conduct = sum(1 for r in report.remarks if r.kind == RemarkKind.CONDUCT)
    return report


WHOLE_YEAR = "hele skoleåret"


def _extent(absence: Absence) -> str:
    if absence.whole_day:
        return "hele dagen"
    lessons = list(absence.lessons or [])
    return ("time " if len(lessons) == 1 else "timene ") + ", ".join(str(n) for n in lessons)


def _cause(absence: Absence) -> str:
    source = "meldt av foresatt" if absence.reported_by == AbsenceReporter.GUARDIAN else "skolen"
    validity = "gyldig grunn" if absence.valid_reason else "ikke dokumentert gyldig grunn"
    note = f": {absence.note}" if absence.note else ""
    return f"{validity} ({source}){note}"


def year_report_fields(report: AbsenceReport, school_year: SchoolYear) -> dict[str, Any]:
    """The field values of a `fravaersrapport` document for a whole school year; the
    school's follow-up (`oppfolging`) is left for the author to write in the draft."""
    totals = report.totals
    details = [
        f"{a.date:%d.%m.%Y} – {_extent(a)} – {_cause(a)}".replace("\n", " ")
        for a in report.absences
    ]
    return {
        "periode": WHOLE_YEAR,
        "skolear": school_year.name,
        "dager": totals.whole_days,
        "timer": totals.lessons,
        "udokumentert": totals.whole_days - totals.valid_whole_days,
        "detaljer": "\n".join(details),
    }


async def create_year_report(state: Any, principal: Principal, student_id: int) -> Document:
    """The whole-year absence report as a draft `fravaersrapport` document; the document
    life cycle (finalize, archive) takes it from there. Made by the school only: a
    guardian reads the report, but a document for the student's archive folder is the
    school's record."""
    if YEAR_REPORT_DOCTYPE not in state.doctypes:
        raise BadInput(
            f"Dokumenttypen {YEAR_REPORT_DOCTYPE!r} er ikke installert.", field="doctype"
        )
    async with state.sessions() as db:
        year = (
            await db.execute(
                select(SchoolYear).where(SchoolYear.id == principal.current_school_year_id)
            )
        ).scalar_one_or_none()
        if year is None:
            raise BadInput("Det finnes ikke noe gjeldende skoleår.")
        report = await absence_report(db, principal, student_id, year.starts_on, year.ends_on)
        staff = [g for g in principal.scopes("absence", "read") if g.scope not in PERSONAL_SCOPES]
        if not await student_in_scope(db, principal, staff, student_id):
            raise Forbidden("Bare skolen lager fraværsrapport som dokument.")
        fields = year_report_fields(report, year)
    return await documents.create_document(
        state,
        principal,
        doctype_key=YEAR_REPORT_DOCTYPE,
        student_id=student_id,
        fields=fields,
    )
