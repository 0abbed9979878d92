"""GraphQL for absence, remarks, their reports and the emergency SMS."""

from __future__ import annotations

import datetime as dt
import enum
from collections import defaultdict
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import strawberry
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import InstrumentedAttribute
from strawberry.dataloader import DataLoader

from core.absence import reports, service
from core.access.grants import Principal
from core.emergency import service as emergency_service
from core.models import Absence as AbsenceModel
from core.models import AbsenceReporter as AbsenceReporterModel
from core.models import AbsenceSmsNotice, Person
from core.models import EmergencySms as EmergencySmsModel
from core.models import Remark as RemarkModel
from core.models import RemarkKind as RemarkKindModel
from core.schema import ids
from core.schema.context import Info
from core.schema.documents import Document, PersonRef, _person_ref
from core.schema.errors import forbidden, not_found
from core.schema.filters import optional_pk
from core.schema.types import School


@strawberry.enum(description="Who the absence came from.")
class AbsenceReporter(enum.Enum):
    GUARDIAN = "guardian"
    SCHOOL = "school"


@strawberry.enum(description="Orden (order) or atferd (conduct).")
class RemarkKind(enum.Enum):
    ORDER = "order"
    CONDUCT = "conduct"


_Row = TypeVar("_Row", AbsenceModel, RemarkModel)


class AbsenceLoaders:
    """Per-request loaders; attached lazily to the context like the document loaders."""

    def __init__(self, info: Info):
        self.ctx = info.context
        self.people = DataLoader(self._people)
        self.sms_sent = DataLoader(self._sms_sent)
        self.absences_of_student = DataLoader(self._absences_of_students)
        self.remarks_of_student = DataLoader(self._remarks_of_students)

    async def _people(self, keys: Sequence[int]) -> list[Any]:
        rows = (await self.ctx.db.execute(select(Person).where(Person.id.in_(keys)))).scalars()
        found = {p.id: p for p in rows}
        return [found.get(k) for k in keys]

    async def _sms_sent(self, keys: Sequence[int]) -> list[bool]:
        rows = await self.ctx.db.execute(
            select(AbsenceSmsNotice.absence_id).where(AbsenceSmsNotice.absence_id.in_(keys))
        )
        sent = set(rows.scalars())
        return [k in sent for k in keys]

    async def _absences_of_students(self, keys: Sequence[int]) -> list[list[AbsenceModel]]:
        return await self._of_students(
            AbsenceModel, reports.readable_absences, (AbsenceModel.date, AbsenceModel.id), keys
        )

    async def _remarks_of_students(self, keys: Sequence[int]) -> list[list[RemarkModel]]:
        return await self._of_students(
            RemarkModel, reports.readable_remarks, (RemarkModel.created_at, RemarkModel.id), keys
        )

    async def _of_students(
        self,
        model: type[_Row],
        readable: Callable[[Principal], ColumnElement[bool]],
        order_by: tuple[InstrumentedAttribute[Any], ...],
        keys: Sequence[int],
    ) -> list[list[_Row]]:
        """This school year's rows of each student in `keys` that the caller may read."""
        principal = self.ctx.principal
        rows = (
            await self.ctx.db.execute(
                select(model)
                .where(
                    model.student_id.in_(keys),
                    model.school_year_id == principal.current_school_year_id,
                    readable(principal),
                )
                .order_by(*order_by)
            )
        ).scalars()
        grouped: dict[int, list[_Row]] = defaultdict(list)
        for row in rows:
            grouped[row.student_id].append(row)
        return [grouped.get(k, []) for k in keys]


def absence_loaders(info: Info) -> AbsenceLoaders:
    loaders = info.context.extra.get("absence")
    if loaders is None:
        loaders = info.context.extra["absence"] = AbsenceLoaders(info)
    return loaders


async def _student(info: Info, student_id: int) -> Any:
    from core.schema.queries import _one_student

    return await _one_student(info, student_id, missing_ok=True)


@strawberry.type(description="Absence (fravær) on one day: the whole day or some lessons.")
class Absence:
    _row: strawberry.Private[AbsenceModel]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(ids.encode("Absence", self._row.id))

    @strawberry.field
    async def student(
        self, info: Info
    ) -> Annotated[Student, strawberry.lazy("core.schema.types")] | None:  # noqa: F821
        return await _student(info, self._row.student_id)

    @strawberry.field
    def date(self) -> dt.date:
        return self._row.date

    @strawberry.field
    def whole_day(self) -> bool:
        return self._row.whole_day

    @strawberry.field(description="Lesson numbers when not the whole day.")
    def lessons(self) -> list[int]:
        return list(self._row.lessons or [])

    @strawberry.field
    def reported_by(self) -> AbsenceReporter:
        return AbsenceReporter(AbsenceReporterModel(self._row.reported_by).value)

    @strawberry.field
    def valid_reason(self) -> bool:
        return self._row.valid_reason

    @strawberry.field(description="The note given with the absence.")
    def reason(self) -> str | None:
        return self._row.note

    @strawberry.field
    async def registered_by(self, info: Info) -> PersonRef | None:
        return _person_ref(await absence_loaders(info).people.load(self._row.reporter_id))

    @strawberry.field
    def created_at(self) -> dt.datetime:
        return self._row.created_at

    @strawberry.field(description="Whether this registration sent the guardians the SMS.")
    async def guardian_sms_sent(self, info: Info) -> bool:
        return await absence_loaders(info).sms_sent.load(self._row.id)


@strawberry.type(description="A remark (anmerkning) on order or conduct.")
class Remark:
    _row: strawberry.Private[RemarkModel]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(ids.encode("Remark", self._row.id))

    @strawberry.field
    async def student(
        self, info: Info
    ) -> Annotated[Student, strawberry.lazy("core.schema.types")] | None:  # noqa: F821
        return await _student(info, self._row.student_id)

    @strawberry.field
    def kind(self) -> RemarkKind:
        return RemarkKind(RemarkKindModel(self._row.kind).value)

    @strawberry.field
    def text(self) -> str:
        return self._row.text

    @strawberry.field
    async def registered_by(self, info: Info) -> PersonRef | None:
        return _person_ref(await absence_loaders(info).people.load(self._row.teacher_id))

    @strawberry.field
    def created_at(self) -> dt.datetime:
        return self._row.created_at


@strawberry.type(description="Absence added up over a period.")
class AbsenceTotals:
    whole_days: int
    lessons: int
    valid_whole_days: int
    valid_lessons: int
    reported_by_guardian: int
    registered_by_school: int


@strawberry.type
class _StudentPeriod:
    """What both period reports start with: whose they are and the period (inclusive).
    Not in the schema itself: only its subclasses are."""

    _report: strawberry.Private[reports.AbsenceReport | reports.RemarkReport]

    @strawberry.field
    async def student(
        self, info: Info
    ) -> Annotated[Student, strawberry.lazy("core.schema.types")] | None:  # noqa: F821
        return await _student(info, self._report.student_id)

    @strawberry.field(name="from")
    def start(self) -> dt.date:
        return self._report.start

    @strawberry.field(name="to")
    def end(self) -> dt.date:
        return self._report.end


@strawberry.type(description="A student's absence in a period.")
class AbsenceReport(_StudentPeriod):
    _report: strawberry.Private[reports.AbsenceReport]

    @strawberry.field
    def absences(self) -> list[Absence]:
        return [Absence(_row=a) for a in self._report.absences]

    @strawberry.field
    def totals(self) -> AbsenceTotals:
        t = self._report.totals
        return AbsenceTotals(
            whole_days=t.whole_days,
            lessons=t.lessons,
            valid_whole_days=t.valid_whole_days,
            valid_lessons=t.valid_lessons,
            reported_by_guardian=t.reported_by_guardian,
            registered_by_school=t.registered_by_school,
        )


@strawberry.type(description="A student's remarks in a period.")
class RemarkReport(_StudentPeriod):
    _report: strawberry.Private[reports.RemarkReport]

    @strawberry.field
    def remarks(self) -> list[Remark]:
        return [Remark(_row=r) for r in self._report.remarks]

    @strawberry.field
    def order_count(self) -> int:
        return self._report.order

    @strawberry.field
    def conduct_count(self) -> int:
        return self._report.conduct


@strawberry.type(description="An emergency SMS to a whole school, with its delivery summary.")
class EmergencySms:
    _row: strawberry.Private[EmergencySmsModel]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(ids.encode("EmergencySms", self._row.id))

    @strawberry.field
    async def school(self, info: Info) -> School | None:
        row = await info.context.loaders.school.load(self._row.school_id)
        return School.of(row) if row else None

    @strawberry.field
    def text(self) -> str:
        return self._row.text

    @strawberry.field
    def sent_at(self) -> dt.datetime:
        return self._row.created_at

    @strawberry.field
    async def sent_by(self, info: Info) -> PersonRef | None:
        return _person_ref(await absence_loaders(info).people.load(self._row.sender_id))

    @strawberry.field(description="Everyone it went to: fixed when sent.")
    def recipient_count(self) -> int:
        return self._row.recipient_count

    @strawberry.field(description="SMS segments per recipient.")
    def segments(self) -> int:
        return self._row.segments

    @strawberry.field(description="Expected cost when sent: segments x recipients x price.")
    def cost(self) -> Decimal:
        return self._row.cost

    @strawberry.field(description="Delivery summary from the gateway's reports so far.")
    async def summary(self, info: Info) -> EmergencySmsSummary:
        s = await emergency_service.summary(info.context.db, self._row)
        return EmergencySmsSummary(
            recipients=s.recipients,
            pending=s.pending,
            sent=s.sent,
            delivered=s.delivered,
            failed=s.failed,
            segments=s.units,
            cost=s.cost,
        )


@strawberry.type(description="How far an emergency SMS has come.")
class EmergencySmsSummary:
    recipients: int
    pending: int = strawberry.field(description="Not yet handed to the gateway.")
    sent: int = strawberry.field(description="Accepted by the gateway, no report yet.")
    delivered: int
    failed: int
    segments: int = strawberry.field(description="Segments the gateway has billed.")
    cost: Decimal = strawberry.field(description="Cost recorded for the school so far.")


async def _emergency(info: Info, pk: int) -> EmergencySmsModel:
    principal = info.context.principal
    row = (
        await info.context.db.execute(
            select(EmergencySmsModel).where(
                EmergencySmsModel.id == pk, emergency_service.readable(principal)
            )
        )
    ).scalar_one_or_none()
    if row is not None:
        return row
    known = await info.context.db.get(EmergencySmsModel, pk)
    raise forbidden() if known is not None else not_found("Beredskapsmeldingen")


@strawberry.type
class AbsenceQuery:
    @strawberry.field(description="A student's absence between two dates (inclusive).")
    async def absence_report(
        self,
        info: Info,
        student_id: strawberry.ID,
        start: Annotated[dt.date, strawberry.argument(name="from")],
        end: Annotated[dt.date, strawberry.argument(name="to")],
    ) -> AbsenceReport:
        report = await reports.absence_report(
            info.context.db,
            info.context.principal,
            ids.decode_pk(student_id, "Student"),
            start,
            end,
        )
        return AbsenceReport(_report=report)

    @strawberry.field(description="A student's remarks between two dates (inclusive).")
    async def remark_report(
        self,
        info: Info,
        student_id: strawberry.ID,
        start: Annotated[dt.date, strawberry.argument(name="from")],
        end: Annotated[dt.date, strawberry.argument(name="to")],
    ) -> RemarkReport:
        report = await reports.remark_report(
            info.context.db,
            info.context.principal,
            ids.decode_pk(student_id, "Student"),
            start,
            end,
        )
        return RemarkReport(_report=report)

    @strawberry.field(description="An emergency SMS and its delivery summary.")
    async def emergency_sms(self, info: Info, id: strawberry.ID) -> EmergencySms:
        return EmergencySms(_row=await _emergency(info, ids.decode_pk(id, "EmergencySms")))

    @strawberry.field(description="Emergency SMS you may see, newest first.")
    async def emergency_sms_list(
        self, info: Info, school_id: strawberry.ID | None = None
    ) -> list[EmergencySms]:
        principal = info.context.require("emergency_sms", "read")
        statement = select(EmergencySmsModel).where(emergency_service.readable(principal))
        school_pk = await optional_pk(info, school_id, "School")
        if school_pk is not None:
            statement = statement.where(EmergencySmsModel.school_id == school_pk)
        rows = await info.context.db.execute(
            statement.order_by(EmergencySmsModel.id.desc()).limit(100)
        )
        return [EmergencySms(_row=r) for r in rows.scalars()]


@strawberry.input
class RegisterAbsenceInput:
    student_id: strawberry.ID
    date: dt.date
    whole_day: bool = True
    lessons: list[int] | None = None
    reported_by: AbsenceReporter | None = strawberry.field(
        default=None,
        description="Staff: SCHOOL (default) or GUARDIAN for a notice from home taken by "
        "phone. Guardians always report as GUARDIAN.",
    )
    valid_reason: bool | None = strawberry.field(
        default=None, description="Whether the reason is valid (decided by the school)."
    )
    reason: str | None = strawberry.field(default=None, description="A short note.")


@strawberry.input
class RegisterRemarkInput:
    student_id: strawberry.ID
    kind: RemarkKind
    text: str


@strawberry.input
class SendEmergencySmsInput:
    school_id: strawberry.ID
    text: str


@strawberry.input
class CreateAbsenceYearReportInput:
    student_id: strawberry.ID


@strawberry.type
class AbsenceMutation:
    @strawberry.mutation(description="Register absence; the guardians get a notice.")
    async def register_absence(self, info: Info, input: RegisterAbsenceInput) -> Absence:
        result = await service.register_absence(
            info.context.state,
            info.context.principal,
            student_id=ids.decode_pk(input.student_id, "Student"),
            day=input.date,
            whole_day=input.whole_day,
            lessons=input.lessons,
            reported_by=(
                AbsenceReporterModel(input.reported_by.value) if input.reported_by else None
            ),
            valid_reason=input.valid_reason,
            note=input.reason,
        )
        return Absence(_row=result.absence)

    @strawberry.mutation(description="Register a remark; the guardians get a notice.")
    async def register_remark(self, info: Info, input: RegisterRemarkInput) -> Remark:
        remark = await service.register_remark(
            info.context.state,
            info.context.principal,
            student_id=ids.decode_pk(input.student_id, "Student"),
            kind=RemarkKindModel(input.kind.value),
            text=input.text,
        )
        return Remark(_row=remark)

    @strawberry.mutation(
        description="SMS to every student, guardian and employee of the school with a mobile "
        "number (principal of the school or the municipality)."
    )
    async def send_emergency_sms(self, info: Info, input: SendEmergencySmsInput) -> EmergencySms:
        row = await emergency_service.send_emergency_sms(
            info.context.state,
            info.context.principal,
            school_id=ids.decode_pk(input.school_id, "School"),
            text=input.text,
        )
        return EmergencySms(_row=row)

    @strawberry.mutation(
        description="The whole school year's absence report as a draft document "
        "(fravaersrapport), which can then be finalized and archived."
    )
    async def create_absence_year_report(
        self, info: Info, input: CreateAbsenceYearReportInput
    ) -> Document:
        document = await reports.create_year_report(
            info.context.state,
            info.context.principal,
            ids.decode_pk(input.student_id, "Student"),
        )
        return Document.of(document)


async def student_absences(info: Info, student_id: int) -> list[Absence]:
    """Student.absences: this school year's absence in the caller's scope."""
    if not info.context.principal.can("absence", "read"):
        return []
    return [
        Absence(_row=r) for r in await absence_loaders(info).absences_of_student.load(student_id)
    ]


async def student_remarks(info: Info, student_id: int) -> list[Remark]:
    """Student.remarks: this school year's remarks in the caller's scope."""
    if not info.context.principal.can("remark", "read"):
        return []
    return [Remark(_row=r) for r in await absence_loaders(info).remarks_of_student.load(student_id)]


__all__ = [
    "Absence",
    "AbsenceMutation",
    "AbsenceQuery",
    "EmergencySms",
    "Remark",
    "student_absences",
    "student_remarks",
]
