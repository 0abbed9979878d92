"""Automatic notices: the message Tavle itself writes when absence or a remark is
registered, and the outbox deliveries that carry it beyond the inbox.

A notice is one `Message` (kind "notice") whose recipients are written at once, so it is
in every inbox when the registering transaction commits. Guardians who chose "forward to
email" also get an email delivery, and the same-day SMS for unannounced absence is an SMS
delivery of the same message: the worker sends both later, and they survive a peer that
is down because they are rows in the same transaction as the registration.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import (
    Delivery,
    DeliveryStatus,
    Group,
    GroupKind,
    GroupMembership,
    GroupTeacher,
    Guardianship,
    Message,
    MessageKind,
    MessageRecipient,
    Person,
    RecipientRole,
)
from core.models.base import utcnow

# Core inserts, not the ORM's bulk path: thousands of rows (an emergency SMS) are written
# in a fraction of the time, and no ORM object is wanted for them.
DELIVERY_INSERT = Delivery.__table__.insert()
EMAIL_CHANNEL = "email"
SMS_CHANNEL = "sms"


@dataclass(frozen=True)
class Guardian:
    person_id: int
    email: str | None
    mobile: str | None
    forward_to_email: bool


@dataclass(frozen=True)
class NoticeRecipient:
    person_id: int
    role: RecipientRole


@dataclass(frozen=True)
class Notice:
    message_id: int
    recipients: tuple[NoticeRecipient, ...]
    email_deliveries: int


async def guardians_of(session: AsyncSession, student_id: int) -> list[Guardian]:
    """Guardians with parental responsibility: the ones the school informs."""
    rows = await session.execute(
        select(Person.id, Person.email, Person.mobile, Guardianship.forward_to_email)
        .join(Guardianship, Guardianship.guardian_id == Person.id)
        .where(
            Guardianship.student_id == student_id,
            Guardianship.parental_responsibility.is_(True),
        )
        .order_by(Person.id)
    )
    return [Guardian(r.id, r.email, r.mobile, bool(r.forward_to_email)) for r in rows]


async def contact_teachers_of(
    session: AsyncSession, student_id: int, school_year_id: int
) -> list[int]:
    """Contact teachers of the student's class this school year."""
    rows = await session.execute(
        select(GroupTeacher.employee_id)
        .join(Group, Group.id == GroupTeacher.group_id)
        .join(GroupMembership, GroupMembership.group_id == Group.id)
        .where(
            GroupMembership.student_id == student_id,
            Group.school_year_id == school_year_id,
            Group.kind == GroupKind.CLASS,
            GroupTeacher.is_contact_teacher.is_(True),
        )
        .order_by(GroupTeacher.employee_id)
    )
    return list(rows.scalars())


def _deliveries(
    message_id: int, school_id: int, recipient_ids: Iterable[int], channel: str
) -> list[dict[str, object]]:
    now = utcnow()
    return [
        {
            "message_id": message_id,
            "document_id": None,
            "recipient_id": person_id,
            "school_id": school_id,
            "channel": channel,
            "status": DeliveryStatus.QUEUED,
            "attempts": 0,
            "next_attempt_at": now,
            "receipt": {},
            "options": {},
            "units": 0,
            "cost": 0,
            "created_at": now,
            "updated_at": now,
        }
        for person_id in recipient_ids
    ]


async def queue_deliveries(
    session: AsyncSession,
    message_id: int,
    school_id: int,
    recipient_ids: Sequence[int],
    channel: str,
) -> int:
    """Outbox rows for one message over one channel, written in one statement."""
    rows = _deliveries(message_id, school_id, recipient_ids, channel)
    if rows:
        await session.execute(DELIVERY_INSERT, rows)
    return len(rows)


async def write_notice(
    session: AsyncSession,
    *,
    sender_id: int,
    sender_role: RecipientRole,
    school_id: int,
    student_id: int,
    subject: str,
    body: str,
    guardians: Sequence[Guardian],
    extra: Sequence[NoticeRecipient] = (),
    channels: Iterable[str] = (),
) -> Notice:
    """Write the notice to the guardians (and `extra` recipients, e.g. the contact
    teacher), plus email deliveries for guardians who forward to email when the email
    channel is installed (`channels` are the installed channel names)."""
    now = utcnow()
    message = Message(
        sender_id=sender_id,
        school_id=school_id,
        subject=subject,
        body=body,
        sent_at=now,
        kind=MessageKind.NOTICE,
        sender_role=sender_role,
        about_student_id=student_id,
        sensitive=False,
        read_receipt=False,
    )
    session.add(message)
    await session.flush()
    seen: set[int] = set()
    recipients: list[NoticeRecipient] = []
    for recipient in [NoticeRecipient(g.person_id, RecipientRole.GUARDIAN) for g in guardians]:
        if recipient.person_id not in seen:
            seen.add(recipient.person_id)
            recipients.append(recipient)
    for recipient in extra:
        if recipient.person_id not in seen:
            seen.add(recipient.person_id)
            recipients.append(recipient)
    if recipients:
        await session.execute(
            MessageRecipient.__table__.insert(),
            [
                {
                    "message_id": message.id,
                    "person_id": r.person_id,
                    "role": r.role,
                    "student_id": student_id if r.role == RecipientRole.GUARDIAN else None,
                }
                for r in recipients
            ],
        )
    emails = 0
    if EMAIL_CHANNEL in set(channels):
        emails = await queue_deliveries(
            session,
            message.id,
            school_id,
            [g.person_id for g in guardians if g.forward_to_email and g.email],
            EMAIL_CHANNEL,
        )
    return Notice(message.id, tuple(recipients), emails)
