"""The `newMessages` subscription over graphql-transport-ws, with a real websocket client
(the `websockets` library) against the app served by uvicorn on a free port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets
from sqlalchemy import select

from core.messages.feed import feed
from core.models import Message, MessageKind, MessageRecipient, Person
from core.models.base import utcnow
from core.schema import messages as message_schema

SUBSCRIBE = "subscription { newMessages { id subject body kind sender { name } readAt } }"
SEND = "mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }"


@pytest.fixture(scope="module")
async def ws_url(app: Any) -> AsyncIterator[str]:
    # lifespan off: the app is shared with the other tests and must outlive this server.
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"ws://127.0.0.1:{port}/graphql"
    server.should_exit = True
    await task


async def _person(sessions: Any, username: str) -> int:
    async with sessions() as session:
        return (
            await session.execute(select(Person.id).where(Person.username == username))
        ).scalar_one()


async def _receive(socket: Any, wait: float = 5.0) -> dict[str, Any]:
    frame = await asyncio.wait_for(socket.recv(), wait)
    # graphql-transport-ws messages are text frames: browser clients ignore binary ones.
    assert isinstance(frame, str), frame
    return json.loads(frame)


async def _subscribed(url: str, token: str, person_id: int) -> Any:
    socket = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
    await socket.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    assert (await _receive(socket))["type"] == "connection_ack"
    before = feed.subscriber_count(person_id)
    await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
    # Subscribed once the resolver listens: only then does "from now on" begin.
    for _ in range(500):
        if feed.subscriber_count(person_id) > before:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the subscription never started")
    return socket


async def test_new_message_is_pushed_to_its_recipient_only(gql: Any, sessions: Any, ws_url: str):
    berg = await _person(sessions, "foresatt.berg")
    kari = await _person(sessions, "foresatt.hansen")
    berg_socket = await _subscribed(ws_url, await gql.token("foresatt.berg"), berg)
    kari_socket = await _subscribed(ws_url, await gql.token("foresatt.hansen"), kari)
    try:
        # A message to 5A (Kari, not Thomas Berg), then one to 6B (Thomas Berg).
        for group, subject in (("5A", "Til 5A"), ("6B", "Til 6B")):
            await gql.data(
                "skoleadmin.nordby",
                SEND,
                {"input": {"subject": subject, "body": "Hei!", "groupNames": [group]}},
            )
        pushed = await _receive(berg_socket)
        assert pushed["type"] == "next" and pushed["id"] == "1"
        assert "errors" not in pushed["payload"], pushed
        message = pushed["payload"]["data"]["newMessages"]
        assert (message["subject"], message["kind"], message["readAt"]) == (
            "Til 6B",
            "MESSAGE",
            None,
        )
        assert message["sender"]["name"]
        kari_pushed = await _receive(kari_socket)
        assert kari_pushed["payload"]["data"]["newMessages"]["subject"] == "Til 5A"
        # Nothing else is on its way to either of them.
        for socket in (berg_socket, kari_socket):
            with pytest.raises(TimeoutError):
                await _receive(socket, wait=0.3)
    finally:
        await berg_socket.close()
        await kari_socket.close()
    for _ in range(200):
        if feed.subscriber_count(berg) == 0:
            break
        await asyncio.sleep(0.01)
    assert feed.subscriber_count(berg) == 0  # closing the socket ends the subscription


async def test_message_written_by_another_process_is_found(
    gql: Any, sessions: Any, ws_url: str, monkeypatch: pytest.MonkeyPatch
):
    """The worker (another process) writes in-app messages without waking this process's
    subscribers: the subscriber's periodic look finds them."""
    monkeypatch.setattr(message_schema, "POLL_SECONDS", 0.2)
    berg = await _person(sessions, "foresatt.berg")
    socket = await _subscribed(ws_url, await gql.token("foresatt.berg"), berg)
    try:
        async with sessions() as session, session.begin():
            row = Message(
                subject="Dokument fra skolen",
                body="Du har fått et dokument.",
                sent_at=utcnow(),
                kind=MessageKind.DOCUMENT,
            )
            session.add(row)
            await session.flush()
            session.add(MessageRecipient(message_id=row.id, person_id=berg))
        pushed = await _receive(socket)
        assert pushed["payload"]["data"]["newMessages"]["subject"] == "Dokument fra skolen"
        assert pushed["payload"]["data"]["newMessages"]["kind"] == "DOCUMENT"
    finally:
        await socket.close()


@pytest.mark.parametrize("payload", [{}, {"token": "not-a-token"}, {"Authorization": "Basic x"}])
async def test_connection_without_valid_token_is_refused(ws_url: str, payload: dict[str, Any]):
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await _receive(socket)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_bearer_header_form_in_payload_works(gql: Any, ws_url: str):
    token = await gql.token("laerer.nordby.5a")
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as socket:
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert (await _receive(socket))["type"] == "connection_ack"


async def test_stream_ends_when_its_session_is_logged_out(
    gql: Any, sessions: Any, ws_url: str, monkeypatch: pytest.MonkeyPatch
):
    """Logging out ends the session everywhere: a stream opened with the token stops with
    UNAUTHENTICATED and pushes nothing sent afterwards (found by review: it went on)."""
    monkeypatch.setattr(message_schema, "POLL_SECONDS", 0.2)
    berg = await _person(sessions, "foresatt.berg")
    token = (await gql.http.post("/auth/demo-token", json={"username": "foresatt.berg"})).json()[
        "token"
    ]
    socket = await _subscribed(ws_url, token, berg)
    try:
        logout = await gql.http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert logout.status_code == 204
        await gql.data(
            "skoleadmin.nordby",
            SEND,
            {"input": {"subject": "Etter utlogging", "body": "Hemmelig", "groupNames": ["6B"]}},
        )
        frame = await _receive(socket)
        assert "Hemmelig" not in json.dumps(frame), frame
        assert frame["type"] == "next" and frame["payload"]["data"] is None, frame
        assert [e["extensions"]["code"] for e in frame["payload"]["errors"]] == ["UNAUTHENTICATED"]
        assert (await _receive(socket))["type"] == "complete"  # and the stream is over
    finally:
        await socket.close()


@pytest.mark.parametrize("frame", ["[1]", "42", '"hei"', '{"type": "ping", "payload": "\\u0000"}'])
async def test_message_that_is_not_a_json_object_closes_with_4400(
    gql: Any, ws_url: str, frame: str
):
    """A frame strawberry's handler cannot take (found by review: `[1]` made it fail and
    drop the connection without a close code) is malformed, like bad JSON."""
    token = await gql.token("foresatt.berg")
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        assert (await _receive(socket))["type"] == "connection_ack"
        await socket.send(frame)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await _receive(socket)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


async def _connected(url: str, token: str) -> Any:
    socket = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
    await socket.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    assert (await _receive(socket))["type"] == "connection_ack"
    return socket


async def _answer(socket: Any, op_id: str) -> dict[str, Any]:
    """The result of operation `op_id` as a response body: a `next` then `complete`, or an
    `error` message (a request error) as {"errors": [...]}."""
    frame = await _receive(socket)
    assert frame.get("id") == op_id, frame
    if frame["type"] == "error":
        return {"data": None, "errors": frame["payload"]}
    assert frame["type"] == "next", frame
    assert (await _receive(socket)) == {"id": op_id, "type": "complete"}
    return frame["payload"]


async def _operation(
    socket: Any, op_id: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    payload = {"query": query, "variables": variables or {}}
    await socket.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
    return await _answer(socket, op_id)


def _codes(body: dict[str, Any]) -> list[str]:
    return [error.get("extensions", {}).get("code") for error in body.get("errors") or []]


async def test_logout_holds_for_the_next_operation_on_an_open_socket(
    gql: Any, sessions: Any, ws_url: str
):
    """Every operation on a socket reads the connection's token again, as every HTTP
    request does (found by review: the caller was read once, at connection_init, so
    queries and mutations went on working after logout)."""
    token = (
        await gql.http.post("/auth/demo-token", json={"username": "skoleadmin.nordby"})
    ).json()["token"]
    socket = await _connected(ws_url, token)
    try:
        before = await _operation(socket, "1", "{ me { name } students { totalCount } }")
        assert "errors" not in before and before["data"]["students"]["totalCount"] > 0
        logout = await gql.http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert logout.status_code == 204
        after = await _operation(socket, "2", "{ me { name } students { totalCount } }")
        assert after["data"] is None and set(_codes(after)) == {"UNAUTHENTICATED"}, after
        subject = "Sendt etter utlogging"
        sent = await _operation(
            socket,
            "3",
            SEND,
            {"input": {"subject": subject, "body": "x", "groupNames": ["6B"]}},
        )
        assert sent["data"] is None and _codes(sent) == ["UNAUTHENTICATED"], sent
    finally:
        await socket.close()
    async with sessions() as session:
        written = await session.execute(select(Message.id).where(Message.subject == subject))
        assert written.all() == []


async def test_operations_on_one_socket_run_side_by_side(gql: Any, ws_url: str):
    """Operations of one connection run concurrently, each with its own database session
    and loaders: neither closes the other's session nor sees its rows."""
    socket = await _connected(ws_url, await gql.token("laerer.nordby.5a"))
    queries = {
        str(n): "{ students(first: 30) { totalCount edges { node { name guardians { name } } } } }"
        if n % 2
        else "{ groups { name students { name } } }"
        for n in range(1, 7)
    }
    try:
        for op_id, query in queries.items():
            payload = {"query": query}
            await socket.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
        answers: dict[str, dict[str, Any]] = {}
        while len(answers) < len(queries):
            frame = await _receive(socket)
            if frame["type"] == "next":
                answers[frame["id"]] = frame["payload"]
    finally:
        await socket.close()
    expected_students = await gql.data("laerer.nordby.5a", queries["1"])
    expected_groups = await gql.data("laerer.nordby.5a", queries["2"])
    for op_id, body in answers.items():
        assert "errors" not in body, body
        assert body["data"] == (expected_students if int(op_id) % 2 else expected_groups)


async def test_errors_over_a_socket_carry_codes_and_are_masked(
    gql: Any, ws_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    """The same error codes and masking as over HTTP (found by review: a socket's errors
    went out before ErrorCodes saw them, with no code and with the raw exception text)."""
    from sqlalchemy import text

    import core.access.grants as grants

    socket = await _connected(ws_url, await gql.token("laerer.nordby.5a"))
    try:
        bad_id = await _operation(socket, "1", '{ student(id: "ikke-en-id") { name } }')
        assert _codes(bad_id) == ["BAD_USER_INPUT"], bad_id
        forbidden = await _operation(socket, "2", "{ auditLog { totalCount } }")
        assert _codes(forbidden) == ["FORBIDDEN"], forbidden
        invalid = await _operation(socket, "3", "{ students { shoeSize } }")
        assert _codes(invalid) == ["BAD_USER_INPUT"], invalid
        service = await _operation(
            socket, "4", 'mutation { sendMessage(input: {subject: " ", body: "x"}) { id } }'
        )
        assert _codes(service) == ["BAD_USER_INPUT"], service
        # A fault of ours: the token's grants cannot be read.
        monkeypatch.setattr(
            grants, "_token_grant_rows", lambda: text("SELECT * FROM no_such_table WHERE 1 = 0")
        )
        fault = await _operation(socket, "5", "{ me { name } }")
        assert _codes(fault) == ["INTERNAL_SERVER_ERROR"], fault
        assert "no_such_table" not in json.dumps(fault)
        assert fault["errors"][0]["message"] == "Det oppstod en uventet feil."
        # A query that does not parse still closes the connection, as the protocol says.
        await socket.send(json.dumps({"id": "6", "type": "subscribe", "payload": {"query": "{"}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await _receive(socket)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    finally:
        await socket.close()


async def _read_field_events(sessions: Any) -> int:
    from sqlalchemy import func

    from core.models import AuditEvent

    async with sessions() as session:
        return (
            await session.execute(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "read_field")
            )
        ).scalar_one()


async def test_a_socket_answer_leaves_after_its_audit_events(gql: Any, sessions: Any, ws_url: str):
    """Over the websocket the answer went out before its audit events were written (and
    a client hanging up at once could cancel them), and one whose events could not be
    written still went out (found by review). Now: written before it leaves, or withheld."""
    from tests.test_audit import NATIONAL_IDS, audit_refused

    socket = await _connected(ws_url, await gql.token("kommuneadmin"))
    try:
        before = await _read_field_events(sessions)
        body = await _operation(socket, "1", NATIONAL_IDS)
        assert all(e["node"]["nationalId"] for e in body["data"]["students"]["edges"])
        # Read the moment the answer arrived: its two events are already there.
        assert await _read_field_events(sessions) == before + 2
        async with audit_refused(sessions):
            withheld = await _operation(socket, "2", NATIONAL_IDS)
        assert withheld["data"] is None and _codes(withheld) == ["INTERNAL_SERVER_ERROR"]
        assert "disk full" not in json.dumps(withheld)
    finally:
        await socket.close()


async def test_an_unknown_operation_name_on_a_socket_is_the_clients_error(gql: Any, ws_url: str):
    """Strawberry's own request errors (no such operation) close the connection with 4400,
    as the protocol says; they were masked as INTERNAL_SERVER_ERROR (found by review)."""
    socket = await _connected(ws_url, await gql.token("laerer.nordby.5a"))
    try:
        payload = {"query": "query A { me { name } }", "operationName": "B"}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await _receive(socket)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    finally:
        await socket.close()


async def test_a_stream_holds_no_connection_between_messages(
    gql: Any, sessions: Any, ws_url: str, app: Any
):
    """Once a pushed message is sent, its session's connection goes back to the pool (it
    stayed checked out, in a read transaction, until the next message: twenty listeners
    emptied PostgreSQL's pool; found by review)."""
    pool = app.state.tavle.engine.pool
    berg = await _person(sessions, "foresatt.berg")
    socket = await _subscribed(ws_url, await gql.token("foresatt.berg"), berg)
    try:
        idle = pool.checkedout()
        await gql.data(
            "skoleadmin.nordby",
            SEND,
            {"input": {"subject": "Til 6B igjen", "body": "Hei!", "groupNames": ["6B"]}},
        )
        pushed = await _receive(socket)
        assert pushed["payload"]["data"]["newMessages"]["subject"] == "Til 6B igjen"
        for _ in range(200):
            if pool.checkedout() <= idle:
                break
            await asyncio.sleep(0.01)
        assert pool.checkedout() <= idle
    finally:
        await socket.close()
