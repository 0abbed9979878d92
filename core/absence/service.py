"""Registering absence and remarks, with their automatic notices.

Each registration is one transaction: the row, the audit event, the notice in every
guardian's inbox, the email deliveries for guardians who forward to email and, for
unannounced absence, the same-day SMS deliveries. Scope is checked in SQL first: a
teacher registers for students in their own groups, a school administrator for the
school, a guardian reports absence for their own children.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.absence import notices
from core.access import scopes
from core.access.grants import Principal, ScopedGrant
from core.db import transaction
from core.errors import BadInput, Forbidden, NotFound
from core.models import (
    Absence,
    AbsenceReporter,
    AbsenceSmsNotice,
    Enrolment,
    Person,
    RecipientRole,
    Remark,
    RemarkKind,
    School,
    SchoolYear,
)
from core.models.base import utcnow

# School days and "the same day" are Norwegian days, whatever the server's zone.
OSLO = ZoneInfo("Europe/Oslo")
MAX_LESSONS = 12
MAX_NOTE_LENGTH = 500
MAX_REMARK_LENGTH = 2000
GUARDIAN_SCOPE = "own_children"

_KIND_TEXT = {RemarkKind.ORDER: "orden", RemarkKind.CONDUCT: "atferd"}


def today() -> date:
    return datetime.now(OSLO).date()


@dataclass(frozen=True)
class Enrolled:
    student: Person
    school: School
    school_year: SchoolYear


@dataclass(frozen=True)
class AbsenceResult:
    absence: Absence
    notice_message_id: int
    sms_deliveries: int


def _split(grants: tuple[ScopedGrant, ...]) -> tuple[list[ScopedGrant], list[ScopedGrant]]:
    """(as school staff, as guardian): the scope decides in which capacity one acts."""
    staff = [g for g in grants if g.scope != GUARDIAN_SCOPE]
    guardian = [g for g in grants if g.scope == GUARDIAN_SCOPE]
    return staff, guardian


async def student_in_scope(
    session: Any, principal: Principal, grants: list[ScopedGrant], student_id: int
) -> bool:
    """Whether one of `grants` covers the student, enrolled this school year (in SQL)."""
    if not grants:
        return False
    condition = scopes.students(principal, grants, Enrolment.student_id, Enrolment.school_id)
    return bool(
        (
            await session.execute(
                select(
                    exists().where(
                        Enrolment.student_id == student_id,
                        Enrolment.school_year_id == principal.current_school_year_id,
                        condition,
                    )
                )
            )
        ).scalar()
    )


async def _enrolled(session: AsyncSession, principal: Principal, student_id: int) -> Enrolled:
    row = (
        await session.execute(
            select(Person, School, SchoolYear)
            .join(Enrolment, Enrolment.student_id == Person.id)
            .join(School, School.id == Enrolment.school_id)
            .join(SchoolYear, SchoolYear.id == Enrolment.school_year_id)
            .where(
                Person.id == student_id,
                Enrolment.school_year_id == principal.current_school_year_id,
            )
        )
    ).first()
    if row is None:
        raise NotFound("Eleven finnes ikke.", field="studentId")
    return Enrolled(*row)


def _lessons(whole_day: bool, lessons: list[int] | None) -> list[int]:
    given = list(lessons or [])
    if whole_day:
        if given:
            raise BadInput("Oppgi enten hele dagen eller enkelttimer, ikke begge.", field="lessons")
        return []
    if not given:
        raise BadInput("Oppgi hvilke timer eleven var borte, eller hele dagen.", field="lessons")
    if any(not 1 <= n <= MAX_LESSONS for n in given):
        raise BadInput(f"Timene nummereres fra 1 til {MAX_LESSONS}.", field="lessons")
    if len(set(given)) != len(given):
        raise BadInput("Samme time er oppgitt flere ganger.", field="lessons")
    return sorted(given)


def _when(day: date, whole_day: bool, lessons: list[int]) -> str:
    text = day.strftime("%d.%m.%Y")
    if whole_day:
        return f"{text} (hele dagen)"
    numbers = [str(n) for n in lessons]
    listed = numbers[0] if len(numbers) == 1 else ", ".join(numbers[:-1]) + " og " + numbers[-1]
    return f"{text} ({'time' if len(numbers) == 1 else 'timene'} {listed})"


def _absence_texts(
    enrolled: Enrolled,
    absence: Absence,
    *,
    unannounced: bool,
) -> tuple[str, str]:
    name = enrolled.student.name
    when = _when(absence.date, absence.whole_day, list(absence.lessons))
    if unannounced:
        # Also the SMS text: short, no reason, nothing sensitive.
        subject = f"Uanmeldt fravær: {name}"
        body = (
            f"{name} er registrert borte fra skolen {when}, og skolen har ikke fått "
            f"melding hjemmefra. Gi beskjed til skolen snarest. Hilsen {enrolled.school.name}"
        )
        return subject, body
    subject = f"Fravær registrert: {name}"
    source = (
        "meldt av foresatt"
        if absence.reported_by == AbsenceReporter.GUARDIAN
        else "registrert av skolen"
    )
    validity = "med gyldig grunn" if absence.valid_reason else "uten dokumentert gyldig grunn"
    body = f"{name} er registrert med fravær {when}, {source}, {validity}."
    if absence.note:
        body += f"\nMerknad: {absence.note}"
    body += f"\n\nHilsen {enrolled.school.name}"
    return subject, body


async def _claim_same_day_sms(session: AsyncSession, absence: Absence) -> bool:
    """Record that today's SMS for this student is being sent. The unique constraint on
    (student, date) makes this safe under concurrency: a second registration, in this or
    a concurrent transaction, inserts nothing (PostgreSQL waits for the first to commit
    and then skips; SQLite serialises writers)."""
    dialect = session.bind.dialect.name
    values = {
        "student_id": absence.student_id,
        "date": absence.date,
        "absence_id": absence.id,
        "created_at": utcnow(),
    }
    table = AbsenceSmsNotice.__table__
    statement: Any
    if dialect == "postgresql":
        statement = postgresql.insert(table).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).values(values).on_conflict_do_nothing()
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"unsupported database {dialect}")
    result = await session.execute(statement)
    return result.rowcount == 1  # type: ignore[attr-defined]


async def _notice_from_home(session: AsyncSession, student_id: int, day: date) -> bool:
    return bool(
        (
            await session.execute(
                select(
                    exists().where(
                        Absence.student_id == student_id,
                        Absence.date == day,
                        Absence.reported_by == AbsenceReporter.GUARDIAN,
                    )
                )
            )
        ).scalar()
    )


async def register_absence(
    state: Any,
    principal: Principal,
    *,
    student_id: int,
    day: date,
    whole_day: bool,
    lessons: list[int] | None = None,
    reported_by: AbsenceReporter | None = None,
    valid_reason: bool | None = None,
    note: str | None = None,
) -> AbsenceResult:
    """Register absence. Staff register for students in scope ("registered by the
    school", or a notice from home they took by phone: `reported_by=GUARDIAN`); a
    guardian reports for their own children, always as a notice from home, and cannot
    decide whether the reason is valid."""
    lesson_list = _lessons(whole_day, lessons)
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE_LENGTH:
        raise BadInput(f"Merknaden kan være høyst {MAX_NOTE_LENGTH} tegn.", field="reason")
    grants = principal.scopes("absence", "create")
    if not grants:
        raise Forbidden()
    staff_grants, guardian_grants = _split(grants)
    async with transaction(state.sessions) as session:
        enrolled = await _enrolled(session, principal, student_id)
        as_staff = await student_in_scope(session, principal, staff_grants, student_id)
        if not as_staff and not await student_in_scope(
            session, principal, guardian_grants, student_id
        ):
            raise Forbidden("Du har ikke tilgang til å registrere fravær for denne eleven.")
        year = enrolled.school_year
        if not year.starts_on <= day <= year.ends_on:
            raise BadInput(
                f"Datoen må være i skoleåret {year.name} "
                f"({year.starts_on:%d.%m.%Y}–{year.ends_on:%d.%m.%Y}).",
                field="date",
            )
        now_day = today()
        if as_staff:
            source = reported_by or AbsenceReporter.SCHOOL
            if source == AbsenceReporter.SCHOOL and day > now_day:
                raise BadInput(
                    "Skolen kan ikke registrere fravær fram i tid; foresatte kan melde det.",
                    field="date",
                )
            valid = bool(valid_reason)
            role = RecipientRole.EMPLOYEE
        else:
            if reported_by == AbsenceReporter.SCHOOL:
                raise BadInput("Foresatte melder fravær hjemmefra.", field="reportedBy")
            if valid_reason is not None:
                raise BadInput("Skolen avgjør om fraværet har gyldig grunn.", field="validReason")
            source, valid, role = AbsenceReporter.GUARDIAN, False, RecipientRole.GUARDIAN
        absence = Absence(
            student_id=student_id,
            school_id=enrolled.school.id,
            school_year_id=year.id,
            date=day,
            whole_day=whole_day,
            lessons=lesson_list,
            reported_by=source,
            reporter_id=principal.person_id,
            valid_reason=valid,
            note=note,
            created_at=utcnow(),
        )
        session.add(absence)
        await session.flush()
        unannounced = (
            source == AbsenceReporter.SCHOOL
            and day == now_day
            and not await _notice_from_home(session, student_id, day)
        )
        guardians = await notices.guardians_of(session, student_id)
        extra: list[notices.NoticeRecipient] = []
        if source == AbsenceReporter.GUARDIAN:
            # "Kontaktlærer mottar melding fra foresatte ved fravær" (seed 003).
            extra = [
                notices.NoticeRecipient(teacher, RecipientRole.EMPLOYEE)
                for teacher in await notices.contact_teachers_of(session, student_id, year.id)
            ]
        subject, body = _absence_texts(enrolled, absence, unannounced=unannounced)
        notice = await notices.write_notice(
            session,
            sender_id=principal.person_id,
            sender_role=role,
            school_id=enrolled.school.id,
            student_id=student_id,
            subject=subject,
            body=body,
            guardians=guardians,
            extra=extra,
            channels=state.channels,
        )
        sms = 0
        if (
            unannounced
            and notices.SMS_CHANNEL in state.channels
            and await _claim_same_day_sms(session, absence)
        ):
            sms = await notices.queue_deliveries(
                session,
                notice.message_id,
                enrolled.school.id,
                [g.person_id for g in guardians if g.mobile],
                notices.SMS_CHANNEL,
            )
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="register_absence",
            resource_type="absence",
            resource_id=absence.id,
            detail={
                "student_id": student_id,
                "date": day.isoformat(),
                "reported_by": source.value,
                "notice_message_id": notice.message_id,
                "sms": sms,
            },
        )
    return AbsenceResult(absence, notice.message_id, sms)


async def register_remark(
    state: Any, principal: Principal, *, student_id: int, kind: RemarkKind, text: str
) -> Remark:
    """A remark on order or conduct by a teacher (own students) or the school
    administration; the guardians get a notice."""
    text = (text or "").strip()
    if not text:
        raise BadInput("Skriv hva anmerkningen gjelder.", field="text")
    if len(text) > MAX_REMARK_LENGTH:
        raise BadInput(f"Anmerkningen kan være høyst {MAX_REMARK_LENGTH} tegn.", field="text")
    grants = list(principal.scopes("remark", "create"))
    if not grants:
        raise Forbidden()
    async with transaction(state.sessions) as session:
        enrolled = await _enrolled(session, principal, student_id)
        if not await student_in_scope(session, principal, grants, student_id):
            raise Forbidden("Du har ikke tilgang til å registrere anmerkning for denne eleven.")
        remark = Remark(
            student_id=student_id,
            school_id=enrolled.school.id,
            school_year_id=enrolled.school_year.id,
            kind=kind,
            text=text,
            teacher_id=principal.person_id,
            created_at=utcnow(),
        )
        session.add(remark)
        await session.flush()
        author = await session.get(Person, principal.person_id)
        name = enrolled.student.name
        kind_text = _KIND_TEXT[kind]
        notice = await notices.write_notice(
            session,
            sender_id=principal.person_id,
            sender_role=RecipientRole.EMPLOYEE,
            school_id=enrolled.school.id,
            student_id=student_id,
            subject=f"Anmerkning i {kind_text}: {name}",
            body=(
                f"{name} har fått en anmerkning i {kind_text}:\n\n{text}\n\n"
                f"Registrert av {author.name if author else 'skolen'}. "
                f"Hilsen {enrolled.school.name}"
            ),
            guardians=await notices.guardians_of(session, student_id),
            channels=state.channels,
        )
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="register_remark",
            resource_type="remark",
            resource_id=remark.id,
            detail={
                "student_id": student_id,
                "kind": kind.value,
                "notice_message_id": notice.message_id,
            },
        )
    return remark
