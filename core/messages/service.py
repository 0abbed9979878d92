"""Sending, replying, reading and answering messages. Each operation is one transaction
that checks the caller's scope in SQL, and writes an audit event; the recipients of a
message are resolved when it is sent and kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, false, insert, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.access import scopes
from core.access.grants import Principal
from core.db import transaction
from core.errors import BadInput, Forbidden, NotFound
from core.messages import attachments as attachment_store
from core.messages.feed import feed
from core.messages.recipients import (
    Audience,
    ResolvedRecipient,
    find_groups_by_name,
    main_school,
    resolve,
    sender_role,
)
from core.models import (
    Delivery,
    Guardianship,
    Message,
    MessageAnswer,
    MessageKind,
    MessageQuestion,
    MessageQuestionOption,
    MessageRecipient,
    Person,
    RecipientRole,
)
from core.models.base import utcnow

MAX_SUBJECT = 300
MAX_BODY = 20_000
MAX_QUESTION = 500
MAX_OPTION = 200
MAX_OPTIONS = 10
EMAIL_CHANNEL = "email"

SVARUT_HINT = (
    "En melding om én elev kan ikke inneholde sensitive opplysninger. Sensitive "
    "opplysninger sendes som dokument med SvarUt (digital post)."
)


@dataclass(frozen=True)
class QuestionInput:
    text: str
    options: list[str]


@dataclass(frozen=True)
class SendInput:
    subject: str
    body: str
    persons: list[tuple[str, int]] = field(default_factory=list)
    group_ids: list[int] = field(default_factory=list)
    group_names: list[str] = field(default_factory=list)
    audience: str = Audience.GUARDIANS
    read_receipt: bool = False
    about_student_id: int | None = None
    sensitive: bool = False
    question: QuestionInput | None = None
    attachments: list[attachment_store.AttachmentInput] = field(default_factory=list)


def visible_messages(principal: Principal) -> ColumnElement[bool]:
    """SQL condition: messages the caller may read. `self`: sent or received;
    `guardian_messages`: written by guardians at the grant's school (the school nurse)."""
    conditions: list[ColumnElement[bool]] = []
    for grant in principal.scopes("message", "read"):
        match grant.scope:
            case "municipality":
                return true()
            case "school":
                conditions.append(
                    true() if grant.school_id is None else Message.school_id == grant.school_id
                )
            case "guardian_messages":
                from_guardians = Message.sender_role == RecipientRole.GUARDIAN
                if grant.school_id is not None:
                    from_guardians = from_guardians & (Message.school_id == grant.school_id)
                conditions.append(from_guardians)
            case _:
                conditions.append(
                    (Message.sender_id == principal.person_id)
                    | exists().where(
                        MessageRecipient.message_id == Message.id,
                        MessageRecipient.person_id == principal.person_id,
                    )
                )
    if not conditions:
        return false()
    return conditions[0] if len(conditions) == 1 else or_(*conditions)


def is_health_read(principal: Principal, message: Message) -> bool:
    """Whether reading `message` is a read of a health-related message (audited): one a
    guardian wrote at a school where the caller reads guardians' messages in that role
    (the school nurse), whether or not it was addressed to them."""
    if message.sender_role != RecipientRole.GUARDIAN:
        return False
    return any(
        grant.scope == "guardian_messages"
        and (grant.school_id is None or grant.school_id == message.school_id)
        for grant in principal.scopes("message", "read")
    )


def _text(value: str, name: str, limit: int, label: str) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise BadInput(f"{label} kan ikke være tom.", field=name)
    if len(cleaned) > limit:
        raise BadInput(f"{label} kan være høyst {limit} tegn.", field=name)
    return cleaned


def _check_question(question: QuestionInput | None) -> QuestionInput | None:
    if question is None:
        return None
    text = _text(question.text, "question", MAX_QUESTION, "Spørsmålet")
    options = [o.strip() for o in question.options]
    if len(options) < 2 or len(options) > MAX_OPTIONS:
        raise BadInput(
            f"Et spørsmål må ha mellom 2 og {MAX_OPTIONS} svaralternativer.", field="question"
        )
    if any(not o or len(o) > MAX_OPTION for o in options):
        raise BadInput(
            f"Svaralternativene må ha tekst (høyst {MAX_OPTION} tegn).", field="question"
        )
    if len({o.casefold() for o in options}) != len(options):
        raise BadInput("Svaralternativene må være forskjellige.", field="question")
    return QuestionInput(text, options)


async def _forwarding_guardians(
    session: AsyncSession, recipients: list[ResolvedRecipient]
) -> list[ResolvedRecipient]:
    """Guardians who chose "forward to email" (for the child they were reached through,
    or for any child when named directly) and have an email address."""
    guardians = [r for r in recipients if r.role == RecipientRole.GUARDIAN]
    if not guardians:
        return []
    rows = (
        await session.execute(
            select(Guardianship.guardian_id, Guardianship.student_id)
            .join(Person, Person.id == Guardianship.guardian_id)
            .where(
                Guardianship.guardian_id.in_([g.person_id for g in guardians]),
                Guardianship.forward_to_email.is_(True),
                Guardianship.parental_responsibility.is_(True),
                Person.email.is_not(None),
                Person.email != "",
            )
        )
    ).all()
    pairs = {(g, s) for g, s in rows}
    anyone = {g for g, _ in rows}
    return [
        g
        for g in guardians
        if (g.person_id, g.student_id) in pairs or (g.student_id is None and g.person_id in anyone)
    ]


async def _write(
    session: AsyncSession,
    state: Any,
    *,
    message: Message,
    recipients: list[ResolvedRecipient],
    checked: list[attachment_store.CheckedAttachment],
    question: QuestionInput | None,
) -> list[int]:
    """The message, its recipients, attachments, question and email deliveries. Returns
    the delivery ids."""
    session.add(message)
    await session.flush()
    await session.execute(
        insert(MessageRecipient),
        [
            {
                "message_id": message.id,
                "person_id": r.person_id,
                "role": r.role,
                "group_id": r.group_id,
                "student_id": r.student_id,
                "read_at": None,
            }
            for r in recipients
        ],
    )
    await attachment_store.store(session, message.id, checked)
    if question is not None:
        row = MessageQuestion(message_id=message.id, text=question.text)
        session.add(row)
        await session.flush()
        session.add_all(
            MessageQuestionOption(question_id=row.id, position=i, text=text)
            for i, text in enumerate(question.options, start=1)
        )
    deliveries: list[Delivery] = []
    if EMAIL_CHANNEL in state.channels:
        now = message.sent_at
        for recipient in await _forwarding_guardians(session, recipients):
            school_id = recipient.school_id or message.school_id
            if school_id is None:
                continue
            deliveries.append(
                Delivery(
                    message_id=message.id,
                    recipient_id=recipient.person_id,
                    school_id=school_id,
                    channel=EMAIL_CHANNEL,
                    options={"forwarded": True},
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
        session.add_all(deliveries)
    await session.flush()
    return [d.id for d in deliveries]


async def send_message(state: Any, principal: Principal, data: SendInput) -> Message:
    grants = principal.scopes("message", "send")
    if not grants:
        raise Forbidden("Du har ikke tilgang til å sende meldinger.")
    subject = _text(data.subject, "subject", MAX_SUBJECT, "Emnet")
    body = _text(data.body, "body", MAX_BODY, "Meldingsteksten")
    if data.sensitive:
        # Sensitive personal data travels only by SvarUt (DOMAIN.md); a message never.
        raise BadInput(SVARUT_HINT, field="sensitive")
    if data.audience not in (Audience.GUARDIANS, Audience.STUDENTS, Audience.ALL):
        raise BadInput("Ukjent målgruppe.", field="audience")
    if not (data.persons or data.group_ids or data.group_names):
        raise BadInput("Velg minst én mottaker eller gruppe.", field="recipientIds")
    question = _check_question(data.question)
    checked = attachment_store.check(data.attachments)
    async with transaction(state.sessions) as session:
        group_ids = list(dict.fromkeys(data.group_ids))
        if data.group_names:
            group_ids += [
                g
                for g in await find_groups_by_name(session, principal, grants, data.group_names)
                if g not in group_ids
            ]
        recipients = await resolve(
            session,
            principal,
            grants,
            persons=list(dict.fromkeys(data.persons)),
            group_ids=group_ids,
            audience=data.audience,
        )
        if data.about_student_id is not None:
            about_ok = (
                await session.execute(
                    select(
                        exists().where(
                            Person.id == data.about_student_id,
                            scopes.students(principal, grants, Person.id),
                        )
                    )
                )
            ).scalar()
            if not about_ok:
                raise Forbidden("Du har ikke tilgang til eleven meldingen gjelder.")
        message = Message(
            sender_id=principal.person_id,
            school_id=main_school(recipients),
            subject=subject,
            body=body,
            sent_at=utcnow(),
            kind=MessageKind.MESSAGE,
            sender_role=sender_role(principal, grants),
            read_receipt=data.read_receipt,
            about_student_id=data.about_student_id,
            sensitive=False,
        )
        delivery_ids = await _write(
            session,
            state,
            message=message,
            recipients=recipients,
            checked=checked,
            question=question,
        )
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="send_message",
            resource_type="message",
            resource_id=message.id,
            detail={
                "recipients": len(recipients),
                "groups": group_ids,
                "audience": data.audience,
                "attachments": [a.sha256 for a in checked],
                "email_deliveries": delivery_ids,
            },
        )
    feed.publish(r.person_id for r in recipients)
    return message


async def load_visible(session: AsyncSession, principal: Principal, message_id: int) -> Message:
    """The message if the caller may read it, else FORBIDDEN (exists) or NOT_FOUND."""
    row = (
        await session.execute(
            select(Message).where(Message.id == message_id, visible_messages(principal))
        )
    ).scalar_one_or_none()
    if row is not None:
        return row
    if await session.get(Message, message_id) is None:
        raise NotFound("Meldingen finnes ikke.")
    raise Forbidden("Du har ikke tilgang til denne meldingen.")


async def _my_recipient_row(
    session: AsyncSession, principal: Principal, message_id: int
) -> MessageRecipient | None:
    return await session.get(MessageRecipient, (message_id, principal.person_id))


async def reply_to_message(
    state: Any,
    principal: Principal,
    message_id: int,
    body: str,
    attachments: list[attachment_store.AttachmentInput] | None = None,
) -> Message:
    """A reply in the thread. A recipient's reply goes to the sender of the message
    replied to; the sender's reply goes to that message's recipients. Only the two sides
    of a message may reply (the school nurse reads guardians' messages, but does not
    answer in their threads)."""
    text = _text(body, "body", MAX_BODY, "Svaret")
    checked = attachment_store.check(attachments or [])
    async with transaction(state.sessions) as session:
        original = await load_visible(session, principal, message_id)
        mine = await _my_recipient_row(session, principal, message_id)
        if original.sender_id == principal.person_id:
            rows = (
                await session.execute(
                    select(MessageRecipient).where(MessageRecipient.message_id == original.id)
                )
            ).scalars()
            recipients = [
                ResolvedRecipient(
                    r.person_id,
                    r.role or RecipientRole.EMPLOYEE,
                    r.group_id,
                    r.student_id,
                    original.school_id,
                )
                for r in rows
            ]
            role = original.sender_role
        elif mine is not None:
            if original.sender_id is None:
                raise BadInput("Denne meldingen kan ikke besvares.", field="id")
            recipients = [
                ResolvedRecipient(
                    original.sender_id,
                    original.sender_role or RecipientRole.EMPLOYEE,
                    None,
                    mine.student_id if original.sender_role == RecipientRole.GUARDIAN else None,
                    original.school_id,
                )
            ]
            role = mine.role
        else:
            raise Forbidden("Bare avsender og mottakere kan svare på meldingen.")
        if not recipients:
            raise BadInput("Meldingen har ingen mottakere å svare.", field="id")
        thread_id = original.thread_id or original.id
        root = original if original.thread_id is None else await session.get(Message, thread_id)
        subject = root.subject if root is not None else original.subject
        if not subject.lower().startswith("sv:"):
            subject = f"Sv: {subject}"[:MAX_SUBJECT]
        reply = Message(
            sender_id=principal.person_id,
            school_id=original.school_id,
            subject=subject,
            body=text,
            sent_at=utcnow(),
            kind=MessageKind.MESSAGE,
            sender_role=role,
            thread_id=thread_id,
            reply_to_id=original.id,
            read_receipt=False,
            about_student_id=original.about_student_id,
            sensitive=False,
        )
        delivery_ids = await _write(
            session, state, message=reply, recipients=recipients, checked=checked, question=None
        )
        if mine is not None and mine.read_at is None:
            mine.read_at = reply.sent_at
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="reply_to_message",
            resource_type="message",
            resource_id=reply.id,
            detail={"reply_to": original.id, "email_deliveries": delivery_ids},
        )
    feed.publish(r.person_id for r in recipients)
    return reply


async def mark_read(state: Any, principal: Principal, message_id: int) -> Message:
    """Mark the caller's copy read (the first time counts for the read receipt)."""
    async with transaction(state.sessions) as session:
        message = await load_visible(session, principal, message_id)
        result = await session.execute(
            update(MessageRecipient)
            .where(
                MessageRecipient.message_id == message_id,
                MessageRecipient.person_id == principal.person_id,
                MessageRecipient.read_at.is_(None),
            )
            .values(read_at=utcnow())
        )
        if result.rowcount == 0 and await _my_recipient_row(session, principal, message_id) is None:
            raise BadInput("Du er ikke mottaker av denne meldingen.", field="id")
        # Also the read receipt the sender sees: a change like any other mutation's.
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="mark_message_read",
            resource_type="message",
            resource_id=message_id,
            detail={"first_read": result.rowcount > 0},
        )
    return message


async def answer_question(
    state: Any, principal: Principal, message_id: int, option_id: int
) -> Message:
    """Answer (or change the answer to) the message's question; recipients only."""
    async with transaction(state.sessions) as session:
        message = await load_visible(session, principal, message_id)
        mine = await _my_recipient_row(session, principal, message_id)
        if mine is None:
            raise Forbidden("Bare mottakerne kan svare på spørsmålet.")
        option = (
            await session.execute(
                select(MessageQuestionOption)
                .join(MessageQuestion, MessageQuestion.id == MessageQuestionOption.question_id)
                .where(
                    MessageQuestion.message_id == message_id,
                    MessageQuestionOption.id == option_id,
                )
            )
        ).scalar_one_or_none()
        if option is None:
            raise BadInput("Svaralternativet hører ikke til denne meldingen.", field="optionId")
        await session.execute(
            delete(MessageAnswer).where(
                MessageAnswer.question_id == option.question_id,
                MessageAnswer.person_id == principal.person_id,
            )
        )
        now = utcnow()
        session.add(
            MessageAnswer(
                question_id=option.question_id,
                person_id=principal.person_id,
                option_id=option.id,
                answered_at=now,
            )
        )
        if mine.read_at is None:
            mine.read_at = now
        await audit.record(
            session,
            actor_id=principal.person_id,
            action="answer_message_question",
            resource_type="message",
            resource_id=message_id,
            detail={"option_id": option.id},
        )
    return message
