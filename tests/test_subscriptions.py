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
