"""GraphQL for messages: the Message type, `messages`/`message`, `sendMessage`,
`replyToMessage`, `markMessageRead`, `answerMessageQuestion` and the `newMessages`
subscription (graphql-transport-ws; the token travels in the connection_init payload)."""

from __future__ import annotations

import asyncio
import enum
from collections import defaultdict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy import func, select
from strawberry.dataloader import DataLoader

from core.access.grants import principal_for_token
from core.messages import service
from core.messages.attachments import AttachmentInput as AttachmentData
from core.messages.feed import feed
from core.messages.recipients import Audience as AudienceValue
from core.models import Group as GroupModel
from core.models import Message as MessageModel
from core.models import (
    MessageAnswer,
    MessageAttachment,
    MessageQuestion,
    MessageQuestionOption,
    MessageRecipient,
    Person,
)
from core.models import MessageKind as MessageKindModel
from core.models import RecipientRole as RecipientRoleModel
from core.schema import ids
from core.schema.context import Context, Info
from core.schema.documents import PersonRef
from core.schema.errors import bad_input, forbidden, unauthenticated
from core.schema.pagination import check_first, newest_first
from core.schema.types import Node, PageInfo

# How often a subscriber looks for messages written by other processes (the worker).
POLL_SECONDS = 3.0
MAX_LIST_INPUT = 500


@strawberry.enum
class MessageBox(enum.Enum):
    INBOX = "inbox"
    SENT = "sent"
    FROM_GUARDIANS = "from_guardians"


@strawberry.enum
class Audience(enum.Enum):
    GUARDIANS = AudienceValue.GUARDIANS
    STUDENTS = AudienceValue.STUDENTS
    ALL = AudienceValue.ALL


@strawberry.enum
class RecipientRole(enum.Enum):
    GUARDIAN = "guardian"
    STUDENT = "student"
    EMPLOYEE = "employee"


@strawberry.enum
class MessageKind(enum.Enum):
    MESSAGE = "message"
    DOCUMENT = "document"
    NOTICE = "notice"
    EMERGENCY = "emergency"


def _role(value: Any) -> RecipientRole | None:
    return RecipientRole(RecipientRoleModel(value).value) if value is not None else None


@strawberry.type(description="A file attached to a message; download it at `url` with the token.")
class MessageAttachmentType:
    id: strawberry.ID
    filename: str
    content_type: str
    size: int
    url: str


@strawberry.type(description="An answer option, with how many chose it (sender only).")
class QuestionOption:
    id: strawberry.ID
    text: str
    answer_count: int | None


@strawberry.type
class Question:
    text: str
    options: list[QuestionOption]
    my_answer: strawberry.ID | None


@strawberry.type(description="A recipient as resolved when the message was sent.")
class MessageRecipientType:
    person: PersonRef
    role: RecipientRole | None
    group: str | None
    read_at: datetime | None


@strawberry.type(description="Read-receipt counts for the sender.")
class ReadReceipt:
    recipients: int
    read: int
    unread: int


@dataclass
class _Stats:
    recipients: int
    read: int


class MessageLoaders:
    """Per-request loaders; in a subscription replaced for every pushed message."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.me = ctx.principal.person_id
        self.people = DataLoader(self._people)
        self.my_read_at = DataLoader(self._my_read_at)
        self.stats = DataLoader(self._stats)
        self.attachments = DataLoader(self._attachments)
        self.questions = DataLoader(self._questions)
        self.recipients = DataLoader(self._recipients)
        self.threads = DataLoader(self._threads)

    async def _people(self, keys: Sequence[int]) -> list[Any]:
        rows = await self.ctx.db.execute(
            select(Person.id, Person.given_name, Person.family_name).where(Person.id.in_(keys))
        )
        found = {r.id: f"{r.given_name} {r.family_name}" for r in rows}
        return [found.get(k) for k in keys]

    async def _my_read_at(self, keys: Sequence[int]) -> list[Any]:
        rows = await self.ctx.db.execute(
            select(MessageRecipient.message_id, MessageRecipient.read_at).where(
                MessageRecipient.message_id.in_(keys), MessageRecipient.person_id == self.me
            )
        )
        found = {m: (True, r) for m, r in rows}
        return [found.get(k, (False, None)) for k in keys]

    async def _stats(self, keys: Sequence[int]) -> list[_Stats]:
        rows = await self.ctx.db.execute(
            select(
                MessageRecipient.message_id,
                func.count(),
                func.count(MessageRecipient.read_at),
            )
            .where(MessageRecipient.message_id.in_(keys))
            .group_by(MessageRecipient.message_id)
        )
        found = {m: _Stats(total, read) for m, total, read in rows}
        return [found.get(k, _Stats(0, 0)) for k in keys]

    async def _attachments(self, keys: Sequence[int]) -> list[list[Any]]:
        rows = (
            await self.ctx.db.execute(
                select(MessageAttachment)
                .where(MessageAttachment.message_id.in_(keys))
                .order_by(MessageAttachment.id)
            )
        ).scalars()
        grouped: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            grouped[row.message_id].append(row)
        return [grouped.get(k, []) for k in keys]

    async def _questions(self, keys: Sequence[int]) -> list[Any]:
        questions = {
            q.message_id: q
            for q in (
                await self.ctx.db.execute(
                    select(MessageQuestion).where(MessageQuestion.message_id.in_(keys))
                )
            ).scalars()
        }
        if not questions:
            return [None for _ in keys]
        question_ids = [q.id for q in questions.values()]
        options: dict[int, list[Any]] = defaultdict(list)
        for option in (
            await self.ctx.db.execute(
                select(MessageQuestionOption)
                .where(MessageQuestionOption.question_id.in_(question_ids))
                .order_by(MessageQuestionOption.position)
            )
        ).scalars():
            options[option.question_id].append(option)
        counts = dict(
            (
                await self.ctx.db.execute(
                    select(MessageAnswer.option_id, func.count())
                    .where(MessageAnswer.question_id.in_(question_ids))
                    .group_by(MessageAnswer.option_id)
                )
            ).all()
        )
        mine = dict(
            (
                await self.ctx.db.execute(
                    select(MessageAnswer.question_id, MessageAnswer.option_id).where(
                        MessageAnswer.question_id.in_(question_ids),
                        MessageAnswer.person_id == self.me,
                    )
                )
            ).all()
        )
        result = []
        for key in keys:
            question = questions.get(key)
            if question is None:
                result.append(None)
                continue
            result.append((question, options[question.id], counts, mine.get(question.id)))
        return result

    async def _recipients(self, keys: Sequence[int]) -> list[list[Any]]:
        rows = await self.ctx.db.execute(
            select(
                MessageRecipient,
                Person.given_name,
                Person.family_name,
                GroupModel.name,
            )
            .join(Person, Person.id == MessageRecipient.person_id)
            .outerjoin(GroupModel, GroupModel.id == MessageRecipient.group_id)
            .where(MessageRecipient.message_id.in_(keys))
            .order_by(Person.family_name, Person.given_name, Person.id)
        )
        grouped: dict[int, list[Any]] = defaultdict(list)
        for recipient, given, family, group in rows:
            grouped[recipient.message_id].append((recipient, f"{given} {family}", group))
        return [grouped.get(k, []) for k in keys]

    async def _threads(self, keys: Sequence[int]) -> list[list[Any]]:
        rows = (
            await self.ctx.db.execute(
                select(MessageModel)
                .where(
                    MessageModel.thread_id.in_(keys),
                    service.visible_messages(self.ctx.principal),
                )
                .order_by(MessageModel.sent_at, MessageModel.id)
            )
        ).scalars()
        grouped: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            grouped[row.thread_id].append(row)
        return [grouped.get(k, []) for k in keys]


def message_loaders(info: Info) -> MessageLoaders:
    ctx = info.context
    loaders = ctx.extra.get("messages")
    if loaders is None:
        loaders = ctx.extra["messages"] = MessageLoaders(ctx)
    return loaders


def _person(pk: int, name: str | None) -> PersonRef:
    return PersonRef(id=strawberry.ID(ids.encode("Person", pk)), name=name or "")


def attachment_url(attachment_id: int) -> str:
    return f"/messages/attachments/{ids.encode('MessageAttachment', attachment_id)}"


@strawberry.type(
    description="A message: in your inbox, sent by you, or (school nurse) "
    "written by a guardian at your school."
)
class Message(Node):
    _row: strawberry.Private[MessageModel]

    @classmethod
    def of(cls, row: MessageModel) -> Message:
        return cls(id=strawberry.ID(ids.encode("Message", row.id)), _row=row)

    def _mine(self, info: Info) -> bool:
        return self._row.sender_id == info.context.principal.person_id

    def _audit_health_read(self, info: Info, field: str) -> None:
        """Note the school nurse's read of a guardian's message (see `body`): its subject
        and its attachments' names say as much as its text."""
        if service.is_health_read(info.context.principal, self._row):
            info.context.audit_read("message", self._row.id, field)

    @strawberry.field(description="The subject. Audited like `body`.")
    def subject(self, info: Info) -> str:
        self._audit_health_read(info, "subject")
        return self._row.subject

    @strawberry.field(
        description="The text. A guardian's message read by the school nurse's role is "
        "health-related: every such read is audited."
    )
    def body(self, info: Info) -> str:
        self._audit_health_read(info, "body")
        return self._row.body

    @strawberry.field
    def kind(self) -> MessageKind:
        return MessageKind(MessageKindModel(self._row.kind).value)

    @strawberry.field
    async def sender(self, info: Info) -> PersonRef | None:
        if self._row.sender_id is None:
            return None
        name = await message_loaders(info).people.load(self._row.sender_id)
        return _person(self._row.sender_id, name)

    @strawberry.field(description="What the sender wrote as: guardian, student or employee.")
    def sender_role(self) -> RecipientRole | None:
        return _role(self._row.sender_role)

    @strawberry.field
    def sent_at(self) -> datetime:
        return self._row.sent_at

    @strawberry.field(description="When you read it; null when unread or not addressed to you.")
    async def read_at(self, info: Info) -> datetime | None:
        _, read_at = await message_loaders(info).my_read_at.load(self._row.id)
        return read_at

    @strawberry.field(description="Whether the message was addressed to you.")
    async def received(self, info: Info) -> bool:
        addressed, _ = await message_loaders(info).my_read_at.load(self._row.id)
        return addressed

    @strawberry.field(description="The sender asked for a read receipt.")
    def read_receipt(self) -> bool:
        return self._row.read_receipt

    @strawberry.field(description="Read-receipt counts; for the sender, when asked for.")
    async def read_receipt_counts(self, info: Info) -> ReadReceipt | None:
        if not (self._mine(info) and self._row.read_receipt):
            return None
        stats = await message_loaders(info).stats.load(self._row.id)
        return ReadReceipt(
            recipients=stats.recipients, read=stats.read, unread=stats.recipients - stats.read
        )

    @strawberry.field(description="How many it was sent to (sender only).")
    async def recipient_count(self, info: Info) -> int | None:
        if not self._mine(info):
            return None
        return (await message_loaders(info).stats.load(self._row.id)).recipients

    @strawberry.field(
        description="The recipients as resolved when sent (sender only); "
        "`readAt` only when a read receipt was asked for."
    )
    async def recipients(self, info: Info) -> list[MessageRecipientType] | None:
        if not self._mine(info):
            return None
        rows = await message_loaders(info).recipients.load(self._row.id)
        return [
            MessageRecipientType(
                person=_person(r.person_id, name),
                role=_role(r.role),
                group=group,
                read_at=r.read_at if self._row.read_receipt else None,
            )
            for r, name, group in rows
        ]

    @strawberry.field(description="The student the message is about, if it is about one.")
    async def about_student(self, info: Info) -> PersonRef | None:
        if self._row.about_student_id is None:
            return None
        name = await message_loaders(info).people.load(self._row.about_student_id)
        return _person(self._row.about_student_id, name)

    @strawberry.field(description="Attachments; their names are audited like `body`.")
    async def attachments(self, info: Info) -> list[MessageAttachmentType]:
        rows = await message_loaders(info).attachments.load(self._row.id)
        if rows:
            self._audit_health_read(info, "attachments")
        return [
            MessageAttachmentType(
                id=strawberry.ID(ids.encode("MessageAttachment", a.id)),
                filename=a.filename,
                content_type=a.content_type,
                size=a.size,
                url=attachment_url(a.id),
            )
            for a in rows
        ]

    @strawberry.field
    async def question(self, info: Info) -> Question | None:
        found = await message_loaders(info).questions.load(self._row.id)
        if found is None:
            return None
        question, options, counts, mine = found
        show_counts = self._mine(info)
        return Question(
            text=question.text,
            options=[
                QuestionOption(
                    id=strawberry.ID(ids.encode("QuestionOption", o.id)),
                    text=o.text,
                    answer_count=counts.get(o.id, 0) if show_counts else None,
                )
                for o in options
            ],
            my_answer=strawberry.ID(ids.encode("QuestionOption", mine)) if mine else None,
        )

    @strawberry.field(description="The first message of the thread this one belongs to.")
    def thread_id(self) -> strawberry.ID:
        return strawberry.ID(ids.encode("Message", self._row.thread_id or self._row.id))

    @strawberry.field(description="The message this one answers.")
    def reply_to_id(self) -> strawberry.ID | None:
        if self._row.reply_to_id is None:
            return None
        return strawberry.ID(ids.encode("Message", self._row.reply_to_id))

    @strawberry.field(
        description="The replies in this message's thread you may read, oldest "
        "first (on the thread's first message)."
    )
    async def replies(self, info: Info) -> list[Message]:
        if self._row.thread_id is not None:
            return []
        return [Message.of(r) for r in await message_loaders(info).threads.load(self._row.id)]


@strawberry.type
class MessageEdge:
    cursor: str
    node: Message


@strawberry.type
class MessageConnection:
    edges: list[MessageEdge]
    page_info: PageInfo
    _total: strawberry.Private[object]

    @strawberry.field
    async def total_count(self) -> int:
        return await self._total.total_count()  # type: ignore[attr-defined]


@strawberry.input
class AttachmentInput:
    filename: str
    content_type: str
    content_base64: str = strawberry.field(description="The file, base64-encoded.")


@strawberry.input
class QuestionInput:
    text: str
    options: list[str]


@strawberry.input
class SendMessageInput:
    subject: str
    body: str
    recipient_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Students, guardians or employees."
    )
    group_ids: list[strawberry.ID] | None = None
    group_names: list[str] | None = strawberry.field(
        default=None, description='Groups by name, e.g. "5A", "9 Matematikk", "SFO 1-2".'
    )
    audience: Audience = strawberry.field(
        default=Audience.GUARDIANS, description="Who in the groups gets it."
    )
    read_receipt: bool = False
    about_student_id: strawberry.ID | None = None
    sensitive: bool = strawberry.field(
        default=False, description="Sensitive content: refused, such content goes by SvarUt."
    )
    question: QuestionInput | None = None
    attachments: list[AttachmentInput] | None = None


@strawberry.input
class ReplyToMessageInput:
    message_id: strawberry.ID
    body: str
    attachments: list[AttachmentInput] | None = None


@strawberry.input
class AnswerMessageQuestionInput:
    message_id: strawberry.ID
    option_id: strawberry.ID


def _capped(values: list[Any] | None, name: str) -> list[Any]:
    values = values or []
    if len(values) > MAX_LIST_INPUT:
        raise bad_input(f"Høyst {MAX_LIST_INPUT} verdier i `{name}`.", field=name)
    return values


def _attachments(values: list[AttachmentInput] | None) -> list[AttachmentData]:
    return [AttachmentData(a.filename, a.content_type, a.content_base64) for a in values or []]


async def _reload(info: Info, pk: int) -> Message:
    row = await info.context.db.get(MessageModel, pk)
    assert row is not None
    return Message.of(row)


async def message_node(info: Info, pk: int) -> Message:
    """A message the caller sent or received (`message(id)` and `node(id)`)."""
    principal = info.context.principal
    return Message.of(await service.load_visible(info.context.db, principal, pk))  # type: ignore[arg-type]


@strawberry.type
class MessageQuery:
    @strawberry.field(description="Your messages, newest first.")
    async def messages(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        box: MessageBox = MessageBox.INBOX,
    ) -> MessageConnection:
        ctx = info.context
        principal = ctx.require("message", "read")
        size = check_first(first, ctx.state.settings.max_page_size)
        statement = select(MessageModel)
        if box == MessageBox.INBOX:
            statement = statement.join(
                MessageRecipient,
                (MessageRecipient.message_id == MessageModel.id)
                & (MessageRecipient.person_id == principal.person_id),
            )
        elif box == MessageBox.SENT:
            statement = statement.where(MessageModel.sender_id == principal.person_id)
        else:
            guardian_grants = [
                g for g in principal.scopes("message", "read") if g.scope == "guardian_messages"
            ]
            if not guardian_grants:
                raise forbidden("Du har ikke tilgang til meldinger fra foresatte.")
            statement = statement.where(
                MessageModel.sender_role == RecipientRoleModel.GUARDIAN,
                service.visible_messages(principal),
            )
        page = await newest_first(ctx.db, statement, MessageModel.id, first=size, after=after)
        return MessageConnection(
            edges=[MessageEdge(cursor=c, node=Message.of(r[0])) for c, r in page.with_cursors()],
            page_info=PageInfo.of(page),
            _total=page,
        )

    @strawberry.field
    async def message(self, info: Info, id: strawberry.ID) -> Message | None:
        return await message_node(info, ids.decode_pk(id, "Message"))


@strawberry.type
class MessageMutation:
    @strawberry.mutation(
        description="Send a message to persons and/or groups; recipients are "
        "resolved now and kept. Guardians who chose it also get it by email."
    )
    async def send_message(self, info: Info, input: SendMessageInput) -> Message:
        persons = [
            ids.decode(i, ("Student", "Guardian", "Employee", "Person"))
            for i in _capped(input.recipient_ids, "recipientIds")
        ]
        data = service.SendInput(
            subject=input.subject,
            body=input.body,
            persons=persons,
            group_ids=[ids.decode_pk(g, "Group") for g in _capped(input.group_ids, "groupIds")],
            group_names=_capped(input.group_names, "groupNames"),
            audience=input.audience.value,
            read_receipt=input.read_receipt,
            about_student_id=(
                ids.decode_pk(input.about_student_id, ("Student", "Person"))
                if input.about_student_id
                else None
            ),
            sensitive=input.sensitive,
            question=(
                service.QuestionInput(
                    input.question.text, _capped(input.question.options, "options")
                )
                if input.question
                else None
            ),
            attachments=_attachments(input.attachments),
        )
        message = await service.send_message(info.context.state, info.context.principal, data)
        return await _reload(info, message.id)

    @strawberry.mutation(description="Reply in the message's thread.")
    async def reply_to_message(self, info: Info, input: ReplyToMessageInput) -> Message:
        reply = await service.reply_to_message(
            info.context.state,
            info.context.principal,
            ids.decode_pk(input.message_id, "Message"),
            input.body,
            _attachments(input.attachments),
        )
        return await _reload(info, reply.id)

    @strawberry.mutation(description="Mark a message you received as read.")
    async def mark_message_read(self, info: Info, id: strawberry.ID) -> Message:
        pk = ids.decode_pk(id, "Message")
        await service.mark_read(info.context.state, info.context.principal, pk)
        return await _reload(info, pk)

    @strawberry.mutation(description="Answer the question in a message you received.")
    async def answer_message_question(
        self, info: Info, input: AnswerMessageQuestionInput
    ) -> Message:
        pk = ids.decode_pk(input.message_id, "Message")
        await service.answer_question(
            info.context.state,
            info.context.principal,
            pk,
            ids.decode_pk(input.option_id, "QuestionOption"),
        )
        return await _reload(info, pk)


async def _last_received(ctx: Context, person_id: int) -> int:
    async with ctx.state.sessions() as session:
        found = (
            await session.execute(
                select(func.max(MessageRecipient.message_id)).where(
                    MessageRecipient.person_id == person_id
                )
            )
        ).scalar()
    return int(found or 0)


async def _received_after(ctx: Context, person_id: int, last: int) -> list[MessageModel]:
    async with ctx.state.sessions() as session:
        return list(
            (
                await session.execute(
                    select(MessageModel)
                    .join(MessageRecipient, MessageRecipient.message_id == MessageModel.id)
                    .where(MessageRecipient.person_id == person_id, MessageModel.id > last)
                    .order_by(MessageModel.id)
                )
            ).scalars()
        )


async def _still_logged_in(ctx: Context) -> None:
    """Read the connection's session token again: a stream ends with UNAUTHENTICATED
    once its session is logged out or has expired, as the next HTTP request would, and
    a changed role holds from the next pushed message."""
    if ctx.session_token is None:
        return
    async with ctx.state.engine.connect() as connection:
        principal = await principal_for_token(
            connection, ctx.session_token, ctx.state.policy, demo_mode=ctx.state.settings.demo
        )
    if principal is None:
        raise unauthenticated("Innloggingen er avsluttet eller utløpt.")
    ctx._principal = principal


@strawberry.type
class MessageSubscription:
    @strawberry.subscription(description="Messages sent to you from now on, as they arrive.")
    async def new_messages(self, info: Info) -> AsyncGenerator[Message, None]:
        ctx = info.context
        person_id = ctx.principal.person_id
        # "From now on": everything after the newest message the person has now. Taken
        # before listening, so a message committed in between is found by the first look.
        last = await _last_received(ctx, person_id)
        try:
            with feed.subscribe(person_id) as wake:
                while True:
                    await _still_logged_in(ctx)
                    for row in await _received_after(ctx, person_id, last):
                        last = row.id
                        # Fresh loaders and a fresh read snapshot for every pushed message.
                        ctx.extra.pop("messages", None)
                        await ctx.db.close()
                        # Its fields are read (and their audit events written, by
                        # RequestSession) before it leaves; then the session's connection
                        # goes back to the pool until the next one (found by review: it
                        # stayed checked out, in a read transaction, for hours).
                        yield Message.of(row)
                        ctx.extra.pop("messages", None)
                        await ctx.db.close()
                    try:
                        await asyncio.wait_for(wake.wait(), timeout=POLL_SECONDS)
                    except TimeoutError:
                        pass
                    wake.clear()
        finally:
            # The connection's session served the pushed messages' fields; give it back.
            ctx.extra.pop("messages", None)
            await ctx.db.close()
