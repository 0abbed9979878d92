"""Communication statistics for school and municipality administrators (seed 003, the
school's development plan): SMS to students, staff and guardians and from guardians per
school and month with their cost; the share of guardians with a mobile number, an email
address and an activated account; messages sent and read.

Everything is counted in SQL, grouped by school and month, over the schools the caller's
`statistics:read` scope covers. Months are calendar months in UTC ("2026-11").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import ColumnElement, String, and_, case, cast, exists, func, literal, select

from core.access import scopes
from core.access.grants import Principal
from core.models import (
    Delivery,
    DeliveryStatus,
    Document,
    Employment,
    Enrolment,
    Guardianship,
    InboundSms,
    Message,
    MessageKind,
    MessageRecipient,
    Person,
    RecipientRole,
    School,
)


class Database(Protocol):
    """A plain AsyncSession (CLI, tests) or a GraphQL request's serialised one."""

    async def execute(self, statement: Any) -> Any: ...


SMS_CHANNEL = "sms"
# An SMS counts once the gateway has it: a queued or refused one cost nothing.
HANDED_OVER = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ)


@dataclass
class SmsMonth:
    school_id: int
    month: str
    to_students: int = 0
    to_staff: int = 0
    to_guardians: int = 0
    from_guardians: int = 0
    failed: int = 0
    segments: int = 0
    cost: Decimal = field(default_factory=lambda: Decimal("0"))


@dataclass(frozen=True)
class GuardianContact:
    school_id: int
    guardians: int
    with_mobile: int
    with_email: int
    activated: int


@dataclass(frozen=True)
class MessageMonth:
    school_id: int
    month: str
    sent: int
    recipients: int
    read: int


def month_of(column: Any, dialect: str) -> ColumnElement[str]:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


def school_ids_in_scope(principal: Principal) -> Any:
    """The schools whose statistics the caller may read, as a subquery."""
    return select(School.id).where(
        scopes.schools(principal, principal.scopes("statistics", "read"), School.id)
    )


def _recipient_role() -> ColumnElement[str]:
    """What an SMS recipient was: the message's recipient row says it; a document goes to
    the student or a guardian; otherwise employment, then enrolment, decide."""
    employed = exists().where(
        Employment.person_id == Delivery.recipient_id, Employment.school_id == Delivery.school_id
    )
    enrolled = exists().where(Enrolment.student_id == Delivery.recipient_id)
    return func.coalesce(
        cast(MessageRecipient.role, String(20)),
        case(
            (Document.student_id == Delivery.recipient_id, literal("student")),
            (Document.id.is_not(None), literal("guardian")),
            (employed, literal("employee")),
            (enrolled, literal("student")),
            else_=literal("guardian"),
        ),
    )


def _since(value: date) -> datetime:
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


async def sms_per_month(
    session: Database, principal: Principal, since: date, school_id: int | None, *, dialect: str
) -> list[SmsMonth]:
    month = month_of(Delivery.created_at, dialect).label("month")
    role = _recipient_role().label("role")
    handed_over = Delivery.status.in_(HANDED_OVER)
    schools = school_ids_in_scope(principal)
    outgoing = (
        select(
            Delivery.school_id,
            month,
            role,
            func.count().filter(handed_over),
            func.count().filter(Delivery.status == DeliveryStatus.FAILED),
            func.coalesce(func.sum(Delivery.units), 0),
            func.coalesce(func.sum(Delivery.cost), 0),
        )
        .outerjoin(
            MessageRecipient,
            and_(
                MessageRecipient.message_id == Delivery.message_id,
                MessageRecipient.person_id == Delivery.recipient_id,
            ),
        )
        .outerjoin(Document, Document.id == Delivery.document_id)
        .where(
            Delivery.channel == SMS_CHANNEL,
            Delivery.created_at >= _since(since),
            Delivery.school_id.in_(schools),
        )
        .group_by(Delivery.school_id, month, role)
    )
    if school_id is not None:
        outgoing = outgoing.where(Delivery.school_id == school_id)
    found: dict[tuple[int, str], SmsMonth] = {}

    def row_for(school: int, when: str) -> SmsMonth:
        key = (school, when)
        if key not in found:
            found[key] = SmsMonth(school_id=school, month=when)
        return found[key]

    for school, when, who, count, failed, units, cost in await session.execute(outgoing):
        item = row_for(school, when)
        if who == RecipientRole.STUDENT.value:
            item.to_students += count
        elif who == RecipientRole.EMPLOYEE.value:
            item.to_staff += count
        else:
            item.to_guardians += count
        item.failed += failed
        item.segments += int(units)
        item.cost += Decimal(cost)

    in_month = month_of(InboundSms.received_at, dialect).label("month")
    incoming = (
        select(InboundSms.school_id, in_month, func.count())
        .where(
            InboundSms.sender_role == RecipientRole.GUARDIAN,
            InboundSms.received_at >= _since(since),
            InboundSms.school_id.in_(schools),
        )
        .group_by(InboundSms.school_id, in_month)
    )
    if school_id is not None:
        incoming = incoming.where(InboundSms.school_id == school_id)
    for school, when, count in await session.execute(incoming):
        row_for(school, when).from_guardians += count
    return sorted(found.values(), key=lambda r: (r.school_id, r.month))


async def guardian_contact(
    session: Database, principal: Principal, school_id: int | None
) -> list[GuardianContact]:
    """Per school: guardians (with parental responsibility) of its current students, and
    how many of them have a mobile number, an email address and an activated account."""
    guardian = Person.id

    def having(condition: ColumnElement[bool]) -> Any:
        return func.count(func.distinct(case((condition, guardian))))

    statement = (
        select(
            Enrolment.school_id,
            func.count(func.distinct(guardian)),
            having(and_(Person.mobile.is_not(None), Person.mobile != "")),
            having(and_(Person.email.is_not(None), Person.email != "")),
            having(Person.activated_at.is_not(None)),
        )
        .join(Guardianship, Guardianship.student_id == Enrolment.student_id)
        .join(Person, Person.id == Guardianship.guardian_id)
        .where(
            Enrolment.school_year_id == principal.current_school_year_id,
            Guardianship.parental_responsibility.is_(True),
            Enrolment.school_id.in_(school_ids_in_scope(principal)),
        )
        .group_by(Enrolment.school_id)
        .order_by(Enrolment.school_id)
    )
    if school_id is not None:
        statement = statement.where(Enrolment.school_id == school_id)
    return [GuardianContact(*row) for row in await session.execute(statement)]


async def messages_per_month(
    session: Database, principal: Principal, since: date, school_id: int | None, *, dialect: str
) -> list[MessageMonth]:
    """Messages written by people (not documents' or notices' copies) per school and
    month: how many, to how many recipients, and how many of those have read them."""
    month = month_of(Message.sent_at, dialect).label("month")
    counts = (
        select(
            MessageRecipient.message_id,
            func.count().label("recipients"),
            func.count(MessageRecipient.read_at).label("read"),
        )
        .group_by(MessageRecipient.message_id)
        .subquery()
    )
    statement = (
        select(
            Message.school_id,
            month,
            func.count(Message.id),
            func.coalesce(func.sum(counts.c.recipients), 0),
            func.coalesce(func.sum(counts.c.read), 0),
        )
        .outerjoin(counts, counts.c.message_id == Message.id)
        .where(
            Message.kind == MessageKind.MESSAGE,
            Message.sent_at >= _since(since),
            Message.school_id.in_(school_ids_in_scope(principal)),
        )
        .group_by(Message.school_id, month)
        .order_by(Message.school_id, month)
    )
    if school_id is not None:
        statement = statement.where(Message.school_id == school_id)
    return [
        MessageMonth(school, when, sent, int(recipients), int(read))
        for school, when, sent, recipients, read in await session.execute(statement)
    ]
