"""The emergency SMS (beredskapsmelding): one text to every student, guardian and employee
of one school who has a mobile number.

The recipient set is computed here and cannot be edited: the caller names only the school
and the text. Each person gets it once, even when they are both guardian and employee
(and two people sharing one phone get one SMS). Sending writes, in one transaction, the
`EmergencySms` record, one in-app message with every recipient, and one outbox SMS
delivery per recipient, all with bulk inserts so a school of thousands is accepted in
well under a second; the worker hands them to the gateway afterwards, and the gateway's
delivery reports update each delivery. The summary (delivered, failed, pending, cost) is
read from those deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.absence.notices import DELIVERY_INSERT, SMS_CHANNEL
from core.access import scopes
from core.access.grants import Principal
from core.channels import PermanentDeliveryError
from core.db import transaction
from core.errors import BadInput, Forbidden, NotFound
from core.models import (
    Delivery,
    DeliveryStatus,
    EmergencySms,
    Employment,
    Enrolment,
    Guardianship,
    Message,
    MessageKind,
    MessageRecipient,
    Person,
    RecipientRole,
    School,
)
from core.models.base import utcnow
from plugins.sms.plugin import max_segments, normalise_mobile
from plugins.sms.segments import count_segments

# A person who is several things at the school is counted once, as the first of these
# (the statistics count SMS to staff, guardians and students).
ROLE_ORDER = (RecipientRole.EMPLOYEE, RecipientRole.GUARDIAN, RecipientRole.STUDENT)
PENDING = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)


@dataclass(frozen=True)
class Recipient:
    person_id: int
    role: RecipientRole


@dataclass(frozen=True)
class Summary:
    recipients: int
    pending: int
    sent: int
    delivered: int
    failed: int
    units: int
    cost: Decimal


def _recipient_rows(school_id: int, school_year_id: int | None) -> Any:
    """(person_id, role, mobile) of everyone at the school with a mobile number."""
    enrolled = select(Enrolment.student_id).where(
        Enrolment.school_id == school_id, Enrolment.school_year_id == school_year_id
    )
    people = union_all(
        select(Enrolment.student_id.label("person_id"), literal("student").label("role")).where(
            Enrolment.school_id == school_id, Enrolment.school_year_id == school_year_id
        ),
        select(Guardianship.guardian_id, literal("guardian")).where(
            Guardianship.student_id.in_(enrolled),
            Guardianship.parental_responsibility.is_(True),
        ),
        select(Employment.person_id, literal("employee")).where(Employment.school_id == school_id),
    ).subquery()
    return (
        select(people.c.person_id, people.c.role, Person.mobile)
        .join(Person, Person.id == people.c.person_id)
        .where(Person.mobile.is_not(None), func.trim(Person.mobile) != "")
        .order_by(people.c.person_id)
    )


def choose_recipients(rows: list[tuple[int, str, str]]) -> list[Recipient]:
    """One entry per person (its highest role in ROLE_ORDER) and per phone number."""
    roles: dict[int, RecipientRole] = {}
    mobiles: dict[int, str] = {}
    for person_id, role, mobile in rows:
        candidate = RecipientRole(role)
        current = roles.get(person_id)
        if current is None or ROLE_ORDER.index(candidate) < ROLE_ORDER.index(current):
            roles[person_id] = candidate
        mobiles[person_id] = mobile
    chosen: list[Recipient] = []
    numbers: set[str] = set()
    for person_id in sorted(roles):
        try:
            number = normalise_mobile(mobiles[person_id])
        except PermanentDeliveryError:
            # Kept: the worker records the failure, so the summary shows it.
            number = None
        if number is not None:
            if number in numbers:
                continue
            numbers.add(number)
        chosen.append(Recipient(person_id, roles[person_id]))
    return chosen


async def _authorised_school(session: AsyncSession, principal: Principal, school_id: int) -> School:
    school = await session.get(School, school_id)
    if school is None:
        raise NotFound("Skolen finnes ikke.", field="schoolId")
    grants = principal.scopes("emergency_sms", "send")
    allowed = (
        grants
        and (
            await session.execute(
                select(School.id).where(
                    School.id == school_id, scopes.schools(principal, grants, School.id)
                )
            )
        ).first()
    )
    if not allowed:
        raise Forbidden("Bare rektor ved skolen eller skoleeier kan sende beredskapsmelding.")
    return school


def check_text(text: str) -> tuple[str, int]:
    """The stripped text and its segment count; BAD_USER_INPUT when empty or too long."""
    text = (text or "").strip()
    if not text:
        raise BadInput("Skriv meldingsteksten.", field="text")
    segments = count_segments(text).segments
    limit = max_segments()
    if segments > limit:
        raise BadInput(
            f"Meldingen er for lang: {segments} SMS-segmenter (høyst {limit}).", field="text"
        )
    return text, segments


async def send_emergency_sms(
    state: Any, principal: Principal, *, school_id: int, text: str
) -> EmergencySms:
    """Send `text` to everyone at the school with a mobile number: FORBIDDEN unless the
    caller is the school's principal or the municipality (emergency_sms:send). One
    transaction; the SMS themselves are outbox rows the worker sends."""
    text, segments = check_text(text)
    channel = state.channels.get(SMS_CHANNEL)
    if channel is None:
        raise BadInput("SMS-kanalen er ikke installert.", field="schoolId")
    async with transaction(state.sessions) as session:
        school = await _authorised_school(session, principal, school_id)
        result = await session.execute(_recipient_rows(school.id, principal.current_school_year_id))
        rows = [(person_id, role, mobile) for person_id, role, mobile in result]
        recipients = choose_recipients(rows)
        if not recipients:
            raise BadInput("Ingen ved skolen har mobilnummer.", field="schoolId")
        now = utcnow()
        message = Message(
            sender_id=principal.person_id,
            school_id=school.id,
            subject=f"Beredskapsmelding fra {school.name}",
            body=text,
            sent_at=now,
            kind=MessageKind.EMERGENCY,
            sender_role=RecipientRole.EMPLOYEE,
            sensitive=False,
            read_receipt=False,
        )
        session.add(message)
        await session.flush()
        emergency = EmergencySms(
            school_id=school.id,
            text=text,
            sender_id=principal.person_id,
            message_id=message.id,
            recipient_count=len(recipients),
            segments=segments,
            cost=Decimal(segments * len(recipients)) * channel.cost_per_unit,
            created_at=now,
        )
        session.add(emergency)
        await session.flush()
        await session.execute(
            MessageRecipient.__table__.insert(),
            [
                {"message_id": message.id, "person_id": r.person_id, "role": r.role}
                for r in recipients
            ],
        )
        options = {"emergency_sms_id": emergency.id}
        await session.execute(
            DELIVERY_INSERT,
            [
                {
                    "message_id": message.id,
                    "recipient_id": r.person_id,
                    "school_id": school.id,
                    "channel": SMS_CHANNEL,
                    "status": DeliveryStatus.QUEUED,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "receipt": {},
                    "options": options,
                    "units": 0,
                    "cost": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for r in recipients
            ],
        )
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="send_emergency_sms",
            resource_type="emergency_sms",
            resource_id=emergency.id,
            detail={
                "school_id": school.id,
                "recipients": len(recipients),
                "by_role": {
                    role.value: sum(1 for r in recipients if r.role == role) for role in ROLE_ORDER
                },
                "segments": segments,
            },
        )
    return emergency


def readable(principal: Principal) -> Any:
    """SQL condition: emergency SMS the caller may see (their school's, or all)."""
    return scopes.schools(
        principal, principal.scopes("emergency_sms", "read"), EmergencySms.school_id
    )


async def summary(db: Any, emergency: EmergencySms) -> Summary:
    """Counts of the SMS deliveries by status, with the units and cost recorded so far."""
    rows = (
        await db.execute(
            select(
                Delivery.status,
                func.count(),
                func.coalesce(func.sum(Delivery.units), 0),
                func.coalesce(func.sum(Delivery.cost), 0),
            )
            .where(
                and_(Delivery.message_id == emergency.message_id, Delivery.channel == SMS_CHANNEL)
            )
            .group_by(Delivery.status)
        )
    ).all()
    counts = {DeliveryStatus(status): count for status, count, _, _ in rows}
    return Summary(
        recipients=emergency.recipient_count,
        pending=sum(counts.get(s, 0) for s in PENDING),
        sent=counts.get(DeliveryStatus.SENT, 0),
        delivered=counts.get(DeliveryStatus.DELIVERED, 0) + counts.get(DeliveryStatus.READ, 0),
        failed=counts.get(DeliveryStatus.FAILED, 0),
        units=sum(int(units) for _, _, units, _ in rows),
        cost=sum((Decimal(str(cost)) for _, _, _, cost in rows), Decimal("0")),
    )
