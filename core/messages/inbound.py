"""SMS from phones (seed 003: "Kontaktlærer mottar SMS fra foresatte ved fravær").

The gateway POSTs a received SMS to `/callbacks/sms/inbound?token=...`. A guardian's SMS
becomes an in-app message from the guardian to the contact teachers of their children
(so the school nurse can read it like any message from a guardian), and every received
SMS is kept for the statistics ("SMS from guardians"). The gateway's id makes a repeated
callback harmless.
"""

from __future__ import annotations

import hmac
import os
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.db import transaction
from core.messages.feed import feed
from core.models import (
    Enrolment,
    Group,
    GroupMembership,
    GroupTeacher,
    Guardianship,
    InboundSms,
    Message,
    MessageKind,
    MessageRecipient,
    Person,
    RecipientRole,
    SchoolYear,
)
from core.models.base import utcnow

MAX_TEXT = 2000
_NON_DIGITS = re.compile(r"\D")


def mobile_variants(number: str) -> list[str]:
    """The ways a Norwegian mobile number may be stored ("91234567", "+4791234567", ...)."""
    digits = _NON_DIGITS.sub("", number)
    for prefix in ("0047", "47"):
        if len(digits) == len(prefix) + 8 and digits.startswith(prefix):
            digits = digits[len(prefix) :]
    if len(digits) != 8:
        return [number.strip()]
    return [
        digits,
        f"+47{digits}",
        f"0047{digits}",
        f"47{digits}",
        f"{digits[:3]} {digits[3:5]} {digits[5:]}",
        f"+47 {digits[:3]} {digits[3:5]} {digits[5:]}",
    ]


async def receive_sms(
    state: Any, *, from_number: str, text: str, external_id: str | None
) -> InboundSms:
    """Record an SMS; a guardian's becomes a message to their children's contact
    teachers. A repeated gateway id returns the SMS recorded before."""
    text = text.strip()[:MAX_TEXT]
    try:
        async with transaction(state.sessions) as session:
            if external_id is not None:
                seen = (
                    await session.execute(
                        select(InboundSms).where(InboundSms.external_id == external_id)
                    )
                ).scalar_one_or_none()
                if seen is not None:
                    return seen
            year = select(SchoolYear.id).where(SchoolYear.is_current.is_(True)).scalar_subquery()
            # The guardian owning the number, with their children enrolled this year.
            found = (
                await session.execute(
                    select(
                        Person.id,
                        Person.given_name,
                        Person.family_name,
                        Enrolment.school_id,
                        Guardianship.student_id,
                    )
                    .join(Guardianship, Guardianship.guardian_id == Person.id)
                    .join(Enrolment, Enrolment.student_id == Guardianship.student_id)
                    .where(
                        Person.mobile.in_(mobile_variants(from_number)),
                        Guardianship.parental_responsibility.is_(True),
                        Enrolment.school_year_id == year,
                    )
                    .order_by(Person.id, Guardianship.student_id)
                )
            ).all()
            now = utcnow()
            row = InboundSms(
                from_number=from_number.strip()[:20],
                text=text,
                external_id=external_id,
                received_at=now,
            )
            teachers: list[tuple[int, int]] = []
            if found:
                guardian_id, given, family, school_id, _ = found[0]
                rows_of_guardian = [f for f in found if f[0] == guardian_id]
                row.sender_id, row.sender_role, row.school_id = (
                    guardian_id,
                    RecipientRole.GUARDIAN,
                    school_id,
                )
                teachers = list(
                    (
                        await session.execute(
                            select(GroupTeacher.employee_id, GroupMembership.student_id)
                            .join(Group, Group.id == GroupTeacher.group_id)
                            .join(GroupMembership, GroupMembership.group_id == Group.id)
                            .where(
                                GroupTeacher.is_contact_teacher.is_(True),
                                Group.school_year_id == year,
                                GroupMembership.student_id.in_([f[4] for f in rows_of_guardian]),
                            )
                            .order_by(GroupTeacher.employee_id)
                        )
                    ).all()
                )
                if teachers:
                    message = Message(
                        sender_id=guardian_id,
                        school_id=school_id,
                        subject=f"SMS fra {given} {family}",
                        body=text or "(tom SMS)",
                        sent_at=now,
                        kind=MessageKind.MESSAGE,
                        sender_role=RecipientRole.GUARDIAN,
                    )
                    session.add(message)
                    await session.flush()
                    recipients: dict[int, int] = {}
                    for teacher, student in teachers:
                        recipients.setdefault(teacher, student)
                    session.add_all(
                        MessageRecipient(
                            message_id=message.id,
                            person_id=teacher,
                            role=RecipientRole.EMPLOYEE,
                            student_id=student,
                        )
                        for teacher, student in recipients.items()
                    )
                    row.message_id = message.id
            session.add(row)
            await session.flush()
    except IntegrityError:
        # The same gateway id arrived twice at once; the other request recorded it.
        async with state.sessions() as session:
            return (
                await session.execute(
                    select(InboundSms).where(InboundSms.external_id == external_id)
                )
            ).scalar_one()
    feed.publish(teacher for teacher, _ in teachers)
    return row


async def inbound_sms_callback(request: Request) -> Response:
    """POST /callbacks/sms/inbound?token=...: {"id", "from", "text"} from the gateway;
    the token is TAVLE_SMS_CALLBACK_TOKEN, as for delivery reports."""
    expected = os.environ.get("TAVLE_SMS_CALLBACK_TOKEN", "")
    given = request.query_params.get("token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return JSONResponse({"error": "Ugyldig eller manglende token."}, status_code=403)
    try:
        payload = await request.json()
    except ValueError:
        payload = None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("from"), str)
        or not payload["from"].strip()
        or not isinstance(payload.get("text"), str)
        or not isinstance(payload.get("id", ""), str)
    ):
        return JSONResponse(
            {"error": "Forventet et objekt med «from» og «text» (og gjerne «id»)."},
            status_code=400,
        )
    row = await receive_sms(
        request.app.state.tavle,
        from_number=payload["from"],
        text=payload["text"],
        external_id=payload.get("id") or None,
    )
    return JSONResponse({"ok": True, "forwarded": row.message_id is not None})
