"""sendMessage and friends over GraphQL against the demo municipality: recipient
resolution per role and group kind, scope leaks, the nurse's reading, replies, read
receipts, questions, attachments and the sensitive-content refusal."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sqlalchemy import func, select

from core.models import (
    AuditEvent,
    Delivery,
    Group,
    GroupMembership,
    Guardianship,
    Message,
    MessageRecipient,
    Person,
    School,
)
from core.schema.ids import decode_pk, encode
from tests.conftest import error_codes

SEND = """
mutation($input: SendMessageInput!) {
  sendMessage(input: $input) {
    id subject body sentAt senderRole recipientCount readReceipt
    sender { id name }
    attachments { id filename contentType size url }
    question { text options { id text answerCount } myAnswer }
  }
}
"""
MESSAGE = """
query($id: ID!) {
  message(id: $id) {
    id subject body readAt received readReceipt senderRole
    sender { name }
    readReceiptCounts { recipients read unread }
    recipients { person { id name } role group readAt }
    question { text options { id text answerCount } myAnswer }
    attachments { id filename url }
    replies { id subject body sender { name } }
  }
}
"""
BOX = """
query($box: MessageBox!) {
  messages(first: 50, box: $box) { totalCount edges { node { id subject } } }
}
"""
MARK = "mutation($id: ID!) { markMessageRead(id: $id) { id readAt } }"
REPLY = """
mutation($input: ReplyToMessageInput!) {
  replyToMessage(input: $input) { id subject threadId replyToId senderRole }
}
"""
ANSWER = """
mutation($input: AnswerMessageQuestionInput!) {
  answerMessageQuestion(input: $input) { id question { myAnswer } readAt }
}
"""

PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


async def person_id(sessions, username: str) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return (
            await session.execute(select(Person.id).where(Person.username == username))
        ).scalar_one()


async def group_id(sessions, school: str, name: str) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return (
            await session.execute(
                select(Group.id)
                .join(School, School.id == Group.school_id)
                .where(School.name == school, Group.name == name)
            )
        ).scalar_one()


async def recipients_of(sessions, gid: str) -> list[MessageRecipient]:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return list(
            (
                await session.execute(
                    select(MessageRecipient).where(
                        MessageRecipient.message_id == decode_pk(gid, "Message")
                    )
                )
            ).scalars()
        )


async def message_count(sessions) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return (await session.execute(select(func.count()).select_from(Message))).scalar_one()


async def guardians_of_group(sessions, gid: int) -> set[int]:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return set(
            (
                await session.execute(
                    select(Guardianship.guardian_id)
                    .join(GroupMembership, GroupMembership.student_id == Guardianship.student_id)
                    .where(
                        GroupMembership.group_id == gid,
                        Guardianship.parental_responsibility.is_(True),
                    )
                )
            ).scalars()
        )


async def students_of_group(sessions, gid: int) -> set[int]:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return set(
            (
                await session.execute(
                    select(GroupMembership.student_id).where(GroupMembership.group_id == gid)
                )
            ).scalars()
        )


async def send(gql, username: str, **fields: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    payload = {"subject": "Hei", "body": "Beskjed fra skolen.", **fields}
    return await gql.query(username, SEND, {"input": payload})


def sent(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("errors"), result["errors"]
    return result["data"]["sendMessage"]


# --- recipient resolution per role and group kind ---------------------------------------


async def test_teacher_sends_to_own_class_guardians_by_name(gql, sessions):
    class_id = await group_id(sessions, "Nordby skole", "5A")
    message = sent(await send(gql, "laerer.nordby.5a", groupNames=["5a"]))
    rows = await recipients_of(sessions, message["id"])
    expected = await guardians_of_group(sessions, class_id)
    assert {r.person_id for r in rows} == expected
    assert all(r.role == "guardian" and r.group_id == class_id for r in rows)
    # Each guardian row names the child that made them a recipient.
    students = await students_of_group(sessions, class_id)
    assert all(r.student_id in students for r in rows)
    assert message["recipientCount"] == len(expected)
    assert message["senderRole"] == "EMPLOYEE"
    # Step-parents without parental responsibility are left out.
    async with sessions() as session:
        step = set(
            (
                await session.execute(
                    select(Guardianship.guardian_id).where(
                        Guardianship.student_id.in_(students),
                        Guardianship.parental_responsibility.is_(False),
                    )
                )
            ).scalars()
        )
    assert not step & {r.person_id for r in rows} or step <= expected


async def test_subject_group_students_and_all(gql, sessions):
    maths = await group_id(sessions, "Sørby ungdomsskole", "9 Matematikk")
    members = await students_of_group(sessions, maths)
    students = sent(
        await send(gql, "laerer.sorby.9b", groupIds=[encode("Group", maths)], audience="STUDENTS")
    )
    rows = await recipients_of(sessions, students["id"])
    assert {r.person_id for r in rows} == members
    assert {r.role for r in rows} == {"student"}

    both = sent(await send(gql, "laerer.sorby.9b", groupNames=["9 Matematikk"], audience="ALL"))
    rows = await recipients_of(sessions, both["id"])
    guardians = await guardians_of_group(sessions, maths)
    assert {r.person_id for r in rows} == members | guardians
    assert {r.role for r in rows} == {"student", "guardian"}


async def test_sfo_leader_reaches_sfo_groups_only(gql, sessions):
    sfo = await group_id(sessions, "Nordby skole", "SFO 1-2")
    message = sent(await send(gql, "sfo.nordby", groupNames=["SFO 1-2"]))
    rows = await recipients_of(sessions, message["id"])
    assert {r.person_id for r in rows} == await guardians_of_group(sessions, sfo)
    refused = await send(gql, "sfo.nordby", groupNames=["5A"])
    assert error_codes(refused) == ["BAD_USER_INPUT"]


async def test_school_admin_whole_school_not_other_schools(gql, sessions):
    sixb = await group_id(sessions, "Nordby skole", "6B")
    ninb = await group_id(sessions, "Sørby ungdomsskole", "9B")
    ok = sent(await send(gql, "skoleadmin.nordby", groupNames=["5A", "6B"], audience="STUDENTS"))
    assert len(await recipients_of(sessions, ok["id"])) == len(
        await students_of_group(sessions, sixb)
    ) + len(await students_of_group(sessions, await group_id(sessions, "Nordby skole", "5A")))
    before = await message_count(sessions)
    refused = await send(gql, "skoleadmin.nordby", groupIds=[encode("Group", ninb)])
    assert error_codes(refused) == ["FORBIDDEN"]
    assert await message_count(sessions) == before


async def test_municipality_admin_reaches_every_school(gql, sessions):
    ninb = await group_id(sessions, "Sørby ungdomsskole", "9B")
    message = sent(
        await send(gql, "kommuneadmin", groupIds=[encode("Group", ninb)], audience="STUDENTS")
    )
    assert len(await recipients_of(sessions, message["id"])) == len(
        await students_of_group(sessions, ninb)
    )


# --- scope leaks --------------------------------------------------------------------------


async def test_teacher_cannot_reach_other_classes(gql, sessions):
    before = await message_count(sessions)
    sixb = await group_id(sessions, "Nordby skole", "6B")
    by_id = await send(gql, "laerer.nordby.5a", groupIds=[encode("Group", sixb)])
    assert error_codes(by_id) == ["FORBIDDEN"]
    by_name = await send(gql, "laerer.nordby.5a", groupNames=["6B"])
    assert error_codes(by_name) == ["BAD_USER_INPUT"]
    ida_student = next(iter(await students_of_group(sessions, sixb)))
    ida_guardian = await person_id(sessions, "foresatt.berg")
    for target in (encode("Student", ida_student), encode("Guardian", ida_guardian)):
        result = await send(gql, "laerer.nordby.5a", recipientIds=[target])
        assert error_codes(result) == ["FORBIDDEN"]
    # One recipient out of scope spoils the whole message: nothing is sent to the rest.
    own = next(
        iter(await guardians_of_group(sessions, await group_id(sessions, "Nordby skole", "5A")))
    )
    mixed = await send(
        gql,
        "laerer.nordby.5a",
        recipientIds=[encode("Guardian", own), encode("Guardian", ida_guardian)],
    )
    assert error_codes(mixed) == ["FORBIDDEN"]
    assert await message_count(sessions) == before


async def test_students_cannot_send(gql):
    result = await send(gql, "elev.noah.hansen", groupNames=["9B"])
    assert error_codes(result) == ["FORBIDDEN"]


async def test_guardian_writes_to_contact_teacher_and_nurse_reads(gql, sessions):
    teacher = await person_id(sessions, "laerer.nordby.5a")
    other = await person_id(sessions, "laerer.nordby.6b")
    message = sent(
        await send(
            gql,
            "foresatt.hansen",
            subject="Emma er syk",
            recipientIds=[encode("Employee", teacher)],
        )
    )
    assert message["senderRole"] == "GUARDIAN"
    [row] = await recipients_of(sessions, message["id"])
    assert (row.person_id, row.role) == (teacher, "employee")
    # Not a teacher who is not their child's contact teacher; no groups; no students.
    assert error_codes(
        await send(gql, "foresatt.hansen", recipientIds=[encode("Employee", other)])
    ) == ["FORBIDDEN"]
    assert error_codes(await send(gql, "foresatt.hansen", groupNames=["5A"])) == ["BAD_USER_INPUT"]

    inbox = await gql.data("laerer.nordby.5a", BOX, {"box": "INBOX"})
    assert message["id"] in [e["node"]["id"] for e in inbox["messages"]["edges"]]
    # The Nordby school nurse reads it; the Sørby nurse and another teacher do not.
    nurse = await gql.data("helsesykepleier.nordby", BOX, {"box": "FROM_GUARDIANS"})
    assert message["id"] in [e["node"]["id"] for e in nurse["messages"]["edges"]]
    read = await gql.data("helsesykepleier.nordby", MESSAGE, {"id": message["id"]})
    assert read["message"]["body"] == "Beskjed fra skolen."
    assert read["message"]["received"] is False
    for outsider in ("helsesykepleier.sorby", "laerer.nordby.6b"):
        result = await gql.query(outsider, MESSAGE, {"id": message["id"]})
        assert error_codes(result) == ["FORBIDDEN"]
    # The nurse does not see what teachers write.
    teacher_message = sent(await send(gql, "laerer.nordby.5a", groupNames=["5A"]))
    assert error_codes(
        await gql.query("helsesykepleier.nordby", MESSAGE, {"id": teacher_message["id"]})
    ) == ["FORBIDDEN"]
    # Not a box the teacher has: a missing permission, not a bad argument.
    assert error_codes(await gql.query("laerer.nordby.5a", BOX, {"box": "FROM_GUARDIANS"})) == [
        "FORBIDDEN"
    ]


async def test_nurse_reads_and_downloads_guardian_messages_and_every_read_is_audited(
    gql, client, sessions
):
    """A guardian's message is health-related for the school nurse: she may read it and
    download its attachment (she could see the attachment but not fetch it, found by
    review), and each such read writes an audit event; the recipient's own reads do not."""
    teacher = await person_id(sessions, "laerer.nordby.5a")
    nurse = await person_id(sessions, "helsesykepleier.nordby")
    message = sent(
        await send(
            gql,
            "foresatt.hansen",
            subject="Emma og astma",
            body="Emma har fått ny medisin.",
            recipientIds=[encode("Employee", teacher)],
            attachments=[attachment("erklæring.pdf", "application/pdf", PDF)],
        )
    )
    pk = decode_pk(message["id"], "Message")

    async def events() -> list[tuple[int, str, dict[str, Any]]]:
        async with sessions() as session:
            rows = await session.execute(
                select(AuditEvent.actor_id, AuditEvent.action, AuditEvent.detail)
                .where(
                    AuditEvent.resource_type == "message",
                    AuditEvent.resource_id == str(pk),
                    AuditEvent.action.like("read%"),
                )
                .order_by(AuditEvent.id)
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]

    async def download(username: str):  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {await gql.token(username)}"}
        return await client.get(message["attachments"][0]["url"], headers=headers)

    read = await gql.data("laerer.nordby.5a", MESSAGE, {"id": message["id"]})
    assert read["message"]["body"] == "Emma har fått ny medisin."
    assert (await download("laerer.nordby.5a")).content == PDF
    assert await events() == []  # the recipient reading their own inbox

    read = await gql.data("helsesykepleier.nordby", MESSAGE, {"id": message["id"]})
    assert read["message"]["body"] == "Emma har fått ny medisin."
    response = await download("helsesykepleier.nordby")
    assert response.status_code == 200 and response.content == PDF
    # Subject, body and the attachments' names (as `MESSAGE` asks for them), then the
    # download.
    assert await events() == [
        (nurse, "read_field", {"field": "subject"}),
        (nurse, "read_field", {"field": "body"}),
        (nurse, "read_field", {"field": "attachments"}),
        (
            nurse,
            "read_attachment",
            {"attachment_id": decode_pk(message["attachments"][0]["id"], "MessageAttachment")},
        ),
    ]
    # The nurse of another school, and a teacher it was not sent to, fetch nothing.
    for outsider in ("helsesykepleier.sorby", "laerer.nordby.6b"):
        assert (await download(outsider)).status_code == 404
    assert len(await events()) == 4


async def test_recipients_are_kept_when_groups_change(gql, sessions):
    class_id = await group_id(sessions, "Nordby skole", "5A")
    message = sent(await send(gql, "laerer.nordby.5a", groupNames=["5A"], audience="STUDENTS"))
    before = {r.person_id for r in await recipients_of(sessions, message["id"])}
    moved = min(before)
    async with sessions() as session, session.begin():
        membership = await session.get(GroupMembership, (class_id, moved))
        await session.delete(membership)
    try:
        after = {r.person_id for r in await recipients_of(sessions, message["id"])}
        assert after == before
    finally:
        async with sessions() as session, session.begin():
            session.add(GroupMembership(group_id=class_id, student_id=moved))


# --- reading, receipts, replies, questions ------------------------------------------------


async def test_read_receipt_reply_and_question(gql, sessions):
    kari = await person_id(sessions, "foresatt.hansen")
    message = sent(
        await send(
            gql,
            "laerer.nordby.5a",
            subject="Tur til skogen",
            groupNames=["5A"],
            readReceipt=True,
            question={"text": "Kan barnet bli med?", "options": ["Ja", "Nei"]},
        )
    )
    gid = message["id"]
    total = message["recipientCount"]
    view = (await gql.data("laerer.nordby.5a", MESSAGE, {"id": gid}))["message"]
    assert view["readReceiptCounts"] == {"recipients": total, "read": 0, "unread": total}

    inbox = await gql.data("foresatt.hansen", BOX, {"box": "INBOX"})
    assert gid in [e["node"]["id"] for e in inbox["messages"]["edges"]]
    mine = (await gql.data("foresatt.hansen", MESSAGE, {"id": gid}))["message"]
    assert mine["readAt"] is None and mine["received"] is True
    assert mine["readReceiptCounts"] is None and mine["recipients"] is None
    marked = (await gql.data("foresatt.hansen", MARK, {"id": gid}))["markMessageRead"]
    assert marked["readAt"] is not None
    again = (await gql.data("foresatt.hansen", MARK, {"id": gid}))["markMessageRead"]
    assert again["readAt"] == marked["readAt"]  # the first read is the one that counts
    async with sessions() as session:
        marks = await session.execute(
            select(AuditEvent.actor_id, AuditEvent.detail)
            .where(
                AuditEvent.action == "mark_message_read",
                AuditEvent.resource_id == str(decode_pk(gid, "Message")),
            )
            .order_by(AuditEvent.id)
        )
        assert [tuple(m) for m in marks] == [
            (kari, {"first_read": True}),
            (kari, {"first_read": False}),
        ]

    view = (await gql.data("laerer.nordby.5a", MESSAGE, {"id": gid}))["message"]
    assert view["readReceiptCounts"]["read"] == 1
    [kari_row] = [r for r in view["recipients"] if r["person"]["id"] == encode("Person", kari)]
    assert kari_row["readAt"] is not None and kari_row["group"] == "5A"

    yes = mine["question"]["options"][0]["id"]
    answered = await gql.data(
        "foresatt.hansen", ANSWER, {"input": {"messageId": gid, "optionId": yes}}
    )
    assert answered["answerMessageQuestion"]["question"]["myAnswer"] == yes
    view = (await gql.data("laerer.nordby.5a", MESSAGE, {"id": gid}))["message"]
    assert [o["answerCount"] for o in view["question"]["options"]] == [1, 0]
    # An option of another message, and a non-recipient's answer, are refused.
    assert error_codes(
        await gql.query(
            "foresatt.hansen",
            ANSWER,
            {"input": {"messageId": gid, "optionId": encode("QuestionOption", 10**6)}},
        )
    ) == ["BAD_USER_INPUT"]
    assert error_codes(
        await gql.query("laerer.nordby.5a", ANSWER, {"input": {"messageId": gid, "optionId": yes}})
    ) == ["FORBIDDEN"]

    reply = (
        await gql.data(
            "foresatt.hansen", REPLY, {"input": {"messageId": gid, "body": "Emma blir med."}}
        )
    )["replyToMessage"]
    assert reply["subject"] == "Sv: Tur til skogen"
    assert reply["threadId"] == gid and reply["senderRole"] == "GUARDIAN"
    [to] = await recipients_of(sessions, reply["id"])
    assert to.person_id == await person_id(sessions, "laerer.nordby.5a")
    answer = (
        await gql.data(
            "laerer.nordby.5a", REPLY, {"input": {"messageId": reply["id"], "body": "Flott!"}}
        )
    )["replyToMessage"]
    assert answer["threadId"] == gid
    assert [r.person_id for r in await recipients_of(sessions, answer["id"])] == [kari]
    thread = (await gql.data("foresatt.hansen", MESSAGE, {"id": gid}))["message"]["replies"]
    assert [r["body"] for r in thread] == ["Emma blir med.", "Flott!"]
    # Another 5A guardian sees the first message but not Kari's private exchange.
    other = next(r.person_id for r in await recipients_of(sessions, gid) if r.person_id != kari)
    assert other  # the class has more guardians than Kari
    # Someone outside the thread cannot reply.
    assert error_codes(
        await gql.query("foresatt.berg", REPLY, {"input": {"messageId": gid, "body": "Hei"}})
    ) == ["FORBIDDEN"]
    sent_box = await gql.data("laerer.nordby.5a", BOX, {"box": "SENT"})
    assert {gid, answer["id"]} <= {e["node"]["id"] for e in sent_box["messages"]["edges"]}


async def test_mark_read_of_a_message_not_received(gql):
    message = sent(await send(gql, "laerer.nordby.6b", groupNames=["6B"]))
    assert error_codes(await gql.query("foresatt.hansen", MARK, {"id": message["id"]})) == [
        "FORBIDDEN"
    ]
    assert error_codes(await gql.query("laerer.nordby.6b", MARK, {"id": message["id"]})) == [
        "BAD_USER_INPUT"
    ]
    assert error_codes(
        await gql.query("foresatt.berg", MARK, {"id": encode("Message", 10**7)})
    ) == ["NOT_FOUND"]


# --- input checks ---------------------------------------------------------------------------


async def test_sensitive_content_about_a_student_is_refused(gql, sessions):
    class_id = await group_id(sessions, "Nordby skole", "5A")
    student = next(iter(await students_of_group(sessions, class_id)))
    before = await message_count(sessions)
    result = await send(
        gql,
        "laerer.nordby.5a",
        groupNames=["5A"],
        aboutStudentId=encode("Student", student),
        sensitive=True,
    )
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert "SvarUt" in result["errors"][0]["message"]
    assert await message_count(sessions) == before
    # The same note without sensitive content may be sent.
    ok = sent(
        await send(
            gql,
            "laerer.nordby.5a",
            recipientIds=[encode("Student", student)],
            aboutStudentId=encode("Student", student),
        )
    )
    assert ok["id"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"subject": " "}, "subject"),
        ({"body": ""}, "body"),
        ({"question": {"text": "Ja?", "options": ["Ja"]}}, "question"),
        ({"question": {"text": "Ja?", "options": ["Ja", "ja"]}}, "question"),
        ({}, "recipientIds"),
    ],
)
async def test_bad_input(gql, fields, field):
    payload = {"groupNames": ["5A"], **fields}
    if field == "recipientIds":
        payload.pop("groupNames")
    result = await send(gql, "laerer.nordby.5a", **payload)
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert result["errors"][0]["extensions"].get("field") == field


# --- attachments ----------------------------------------------------------------------------


def attachment(name: str, content_type: str, content: bytes) -> dict[str, str]:
    return {
        "filename": name,
        "contentType": content_type,
        "contentBase64": base64.b64encode(content).decode(),
    }


async def test_attachments_stored_and_downloadable_by_participants_only(gql, client, sessions):
    message = sent(
        await send(
            gql,
            "laerer.nordby.6b",
            groupNames=["6B"],
            attachments=[
                attachment("../../ukeplan uke 48.pdf", "application/pdf", PDF),
                attachment("bilde.png", "image/png", PNG),
            ],
        )
    )
    pdf, png = message["attachments"]
    # A path in the name never survives: only the last part is a name, and not a hidden one.
    assert "/" not in pdf["filename"] and not pdf["filename"].startswith(".")
    assert pdf["filename"].endswith("ukeplan uke 48.pdf")
    assert (pdf["contentType"], pdf["size"]) == ("application/pdf", len(PDF))

    async def download(username: str | None, url: str):  # type: ignore[no-untyped-def]
        headers = {}
        if username:
            headers["Authorization"] = f"Bearer {await gql.token(username)}"
        return await client.get(url, headers=headers)

    for username in ("foresatt.berg", "laerer.nordby.6b"):
        response = await download(username, pdf["url"])
        assert response.status_code == 200
        assert response.content == PDF
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-disposition"].startswith("attachment;")
        assert response.headers["x-content-type-options"] == "nosniff"
    for username in ("foresatt.hansen", "laerer.nordby.5a", "helsesykepleier.nordby"):
        assert (await download(username, pdf["url"])).status_code == 404
    assert (await download(None, pdf["url"])).status_code == 401
    assert (await download("foresatt.berg", "/messages/attachments/xyz")).status_code == 400

    # The same file sent again is stored once.
    again = sent(
        await send(
            gql,
            "laerer.nordby.6b",
            groupNames=["6B"],
            attachments=[attachment("samme.pdf", "application/pdf", PDF)],
        )
    )
    assert again["attachments"][0]["size"] == len(PDF)
    from core.models import AttachmentBlob

    async with sessions() as session:
        blobs = (
            await session.execute(select(func.count()).select_from(AttachmentBlob))
        ).scalar_one()
        distinct = (
            await session.execute(select(func.count(func.distinct(AttachmentBlob.sha256))))
        ).scalar_one()
    assert blobs == distinct


@pytest.mark.parametrize(
    "item",
    [
        attachment("side.html", "text/html", b"<script>alert(1)</script>"),
        attachment("tegning.svg", "image/svg+xml", b"<svg/>"),
        attachment("brev.pdf", "application/pdf", PNG),  # the content is not a PDF
        attachment("brev.png", "application/pdf", PDF),  # the name says otherwise
        attachment("tom.pdf", "application/pdf", b""),
        {"filename": "x.pdf", "contentType": "application/pdf", "contentBase64": "%%%"},
    ],
)
async def test_attachment_refused(gql, sessions, item):
    before = await message_count(sessions)
    result = await send(gql, "laerer.nordby.6b", groupNames=["6B"], attachments=[item])
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert result["errors"][0]["extensions"]["field"] == "attachments"
    assert await message_count(sessions) == before


async def test_attachment_size_and_count_limits(gql, monkeypatch):
    from core.messages import attachments as limits

    monkeypatch.setattr(limits, "MAX_ATTACHMENT_BYTES", 64)
    big = attachment("stor.pdf", "application/pdf", PDF + b" " * 64)
    result = await send(gql, "laerer.nordby.6b", groupNames=["6B"], attachments=[big])
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert "MB" in result["errors"][0]["message"]
    many = [attachment(f"{i}.txt", "text/plain", b"hei") for i in range(limits.MAX_ATTACHMENTS + 1)]
    result = await send(gql, "laerer.nordby.6b", groupNames=["6B"], attachments=many)
    assert error_codes(result) == ["BAD_USER_INPUT"]


async def test_email_deliveries_only_for_guardians_who_forward(gql, sessions):
    message = sent(await send(gql, "laerer.nordby.6b", groupNames=["6B"]))
    pk = decode_pk(message["id"], "Message")
    async with sessions() as session:
        deliveries = list(
            (await session.execute(select(Delivery).where(Delivery.message_id == pk))).scalars()
        )
        forwarding = set(
            (
                await session.execute(
                    select(Guardianship.guardian_id)
                    .join(Person, Person.id == Guardianship.guardian_id)
                    .join(GroupMembership, GroupMembership.student_id == Guardianship.student_id)
                    .where(
                        GroupMembership.group_id == await group_id(sessions, "Nordby skole", "6B"),
                        Guardianship.forward_to_email.is_(True),
                        Guardianship.parental_responsibility.is_(True),
                        Person.email.is_not(None),
                    )
                )
            ).scalars()
        )
    assert {d.recipient_id for d in deliveries} == forwarding
    assert await person_id(sessions, "foresatt.berg") in forwarding
    assert {d.channel for d in deliveries} == {"email"}
    assert all(d.document_id is None and d.status == "queued" for d in deliveries)


async def test_message_list_statement_count_does_not_grow_with_page_size(gql, app):
    from tests.test_query_cost import count_queries

    for _ in range(5):
        sent(await send(gql, "laerer.nordby.5a", groupNames=["5A"], audience="STUDENTS"))
    newest = sent(
        await send(
            gql,
            "laerer.nordby.5a",
            groupNames=["5A"],
            readReceipt=True,
            question={"text": "Kommer dere?", "options": ["Ja", "Nei"]},
            attachments=[attachment("plan.pdf", "application/pdf", PDF)],
        )
    )
    # Both pages then have every nested level filled (a reply with an attachment).
    reply = {
        "messageId": newest["id"],
        "body": "Vi kommer.",
        "attachments": [attachment("svar.txt", "text/plain", b"ja")],
    }
    await gql.data("foresatt.hansen", REPLY, {"input": reply})
    query = """query($n: Int) { messages(first: $n, box: SENT) { totalCount edges { node {
        id subject sender { name } readAt received recipientCount
        readReceiptCounts { read } recipients { person { name } role group readAt }
        attachments { filename url } question { text options { text answerCount } myAnswer }
        replies { id sender { name } attachments { filename } } } } } }"""
    engine = app.state.tavle.engine
    with count_queries(engine) as one:
        small = await gql.data("laerer.nordby.5a", query, {"n": 1})
    with count_queries(engine) as many:
        large = await gql.data("laerer.nordby.5a", query, {"n": 50})
    assert len(small["messages"]["edges"]) == 1
    assert len(large["messages"]["edges"]) > 5
    assert len(one) == len(many), (one, many)


async def test_colleagues_students_replies_and_about_student_scope(gql, sessions):
    colleague = await person_id(sessions, "laerer.nordby.6b")
    elsewhere = await person_id(sessions, "laerer.sorby.9b")
    ok = sent(await send(gql, "laerer.nordby.5a", recipientIds=[encode("Employee", colleague)]))
    [row] = await recipients_of(sessions, ok["id"])
    assert (row.person_id, row.role) == (colleague, "employee")
    assert error_codes(
        await send(gql, "laerer.nordby.5a", recipientIds=[encode("Employee", elsewhere)])
    ) == ["FORBIDDEN"]
    # A message about a student outside the sender's scope is refused.
    ida = next(
        iter(await students_of_group(sessions, await group_id(sessions, "Nordby skole", "6B")))
    )
    assert error_codes(
        await send(
            gql, "laerer.nordby.5a", groupNames=["5A"], aboutStudentId=encode("Student", ida)
        )
    ) == ["FORBIDDEN"]
    # Students cannot start messages but answer the ones they get, to the sender only.
    to_class = sent(await send(gql, "laerer.sorby.9b", groupNames=["9B"], audience="STUDENTS"))
    reply = (
        await gql.data(
            "elev.noah.hansen", REPLY, {"input": {"messageId": to_class["id"], "body": "OK!"}}
        )
    )["replyToMessage"]
    assert reply["senderRole"] == "STUDENT"
    assert [r.person_id for r in await recipients_of(sessions, reply["id"])] == [elsewhere]
