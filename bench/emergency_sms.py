"""Emergency SMS benchmark: one `sendEmergencySms` to a school of 3 000 people with a
mobile number, against the fake SMS gateway on loopback (tests/fakes/sms_gateway.py).

Builds the demo municipality (by default into a fresh SQLite file in a temporary
directory), adds students with a guardian each to Vestby skole until exactly `--people`
people there have a mobile number, and times:

1. accept: the GraphQL mutation over the ASGI app, as the municipality administrator,
   until the answer (target under 1 s);
2. hand-over: one outbox worker (`core.outbox.drain`, what `tavle worker --once` runs)
   from start until every SMS has been accepted by the gateway (target under 10 s);
3. baseline: the same number of send requests straight from a loop with one httpx
   client, and the ratio hand-over / baseline.

    .venv/bin/python bench/emergency_sms.py [--people 3000] [--database-url postgresql://...]

The exit status is 1 when a target is missed, so `make bench` fails visibly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import outbox  # noqa: E402
from core.app import create_app  # noqa: E402
from core.config import Settings, normalise_database_url  # noqa: E402
from core.db import create_engine, create_sessionmaker  # noqa: E402
from core.demo import load_demo  # noqa: E402
from core.emergency.service import choose_recipients  # noqa: E402
from core.migrate import upgrade  # noqa: E402
from core.models import (  # noqa: E402
    Delivery,
    EmergencySms,
    Enrolment,
    Guardianship,
    Person,
    School,
    SchoolYear,
)
from core.schema.ids import decode_pk, encode  # noqa: E402
from plugins.sms.plugin import normalise_mobile  # noqa: E402
from tests.fakes.sms_gateway import FakeSmsGateway  # noqa: E402

SCHOOL = "Vestby skole"
TEXT = "Beredskap: skolen stenges kl. 12 i dag på grunn av uvær. Hent barna eller følg SMS."
USERNAME, PASSWORD = "tavle", "hemmelig"
TARGET_ACCEPT_S = 1.0
TARGET_HANDOVER_S = 10.0
MUTATION = """
mutation($input: SendEmergencySmsInput!) {
  sendEmergencySms(input: $input) { id recipientCount segments cost }
}"""


async def recipients_at(sessions: Any, school_id: int) -> int:
    from core.emergency.service import _recipient_rows

    async with sessions() as session:
        year = (
            await session.execute(select(SchoolYear.id).where(SchoolYear.is_current))
        ).scalar_one()
        rows = [tuple(r) for r in await session.execute(_recipient_rows(school_id, year))]
    return len(choose_recipients(rows))


async def grow_school(sessions: Any, school_id: int, people: int) -> None:
    """Add grade-8 students, each with one guardian, both with a mobile number, until the
    school has `people` recipients."""
    have = await recipients_at(sessions, school_id)
    missing = people - have
    if missing < 0:
        raise SystemExit(f"{SCHOOL} already has {have} people with a mobile (> {people})")
    rng = random.Random(3000)
    async with sessions() as session, session.begin():
        year = (
            await session.execute(select(SchoolYear.id).where(SchoolYear.is_current))
        ).scalar_one()
        used = set((await session.execute(select(Person.mobile))).scalars())
        next_id = (await session.execute(select(func.max(Person.id)))).scalar_one() + 1

        def mobile() -> str:
            while True:
                number = f"9{rng.randrange(10**7):07d}"
                if number not in used:
                    used.add(number)
                    return number

        persons, enrolments, guardianships = [], [], []
        while missing > 0:
            student = next_id
            next_id += 1
            persons.append(
                {
                    "id": student,
                    "given_name": "Bench",
                    "family_name": f"Elev{student}",
                    "mobile": mobile(),
                }
            )
            enrolments.append(
                {"student_id": student, "school_id": school_id, "school_year_id": year, "grade": 8}
            )
            missing -= 1
            if missing > 0:
                guardian = next_id
                next_id += 1
                persons.append(
                    {
                        "id": guardian,
                        "given_name": "Bench",
                        "family_name": f"Foresatt{guardian}",
                        "mobile": mobile(),
                    }
                )
                guardianships.append(
                    {
                        "guardian_id": guardian,
                        "student_id": student,
                        "parental_responsibility": True,
                        "forward_to_email": False,
                    }
                )
                missing -= 1
        await session.execute(insert(Person), persons)
        await session.execute(insert(Enrolment), enrolments)
        await session.execute(insert(Guardianship), guardianships)
        if session.bind.dialect.name == "postgresql":
            await session.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('person', 'id'),"
                    " (SELECT max(id) FROM person))"
                )
            )
    assert await recipients_at(sessions, school_id) == people


def serve_gateway() -> None:
    """`--serve-gateway`: run the fake gateway in this process (a separate process from
    the worker, as a real gateway is) until standard input closes; print its base URL
    first and, at the end, how many distinct messages it accepted and their texts."""
    with FakeSmsGateway(username=USERNAME, password=PASSWORD, id_prefix="bench") as gateway:
        print(gateway.base_url, flush=True)
        sys.stdin.read()
        messages = gateway.messages
        print(
            json.dumps(
                {
                    "accepted": len(messages),
                    "references": len({m.reference for m in messages}),
                    "texts": sorted({m.text for m in messages}),
                }
            ),
            flush=True,
        )


class GatewayProcess:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-gateway"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise SystemExit("the fake SMS gateway did not start")

    def finish(self) -> dict[str, Any]:
        """Stop the gateway; what it accepted."""
        out, _ = self.process.communicate("", timeout=60)
        return json.loads(out.strip().splitlines()[-1])


async def baseline(base_url: str, payloads: list[dict[str, Any]]) -> float:
    """The same requests straight from a loop with one httpx client."""
    auth = httpx.BasicAuth(USERNAME, PASSWORD)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base_url, auth=auth, timeout=10) as client:
        for payload in payloads:
            response = await client.post("/v1/messages", json=payload)
            response.raise_for_status()
    return time.perf_counter() - started


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=3000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="tavle-bench-sms-")
    url = (
        normalise_database_url(args.database_url)
        if args.database_url
        else (f"sqlite+aiosqlite:///{Path(tmp.name) / 'bench.db'}")
    )
    engine = create_engine(url)
    if engine.dialect.name == "postgresql":
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    await upgrade(engine)
    sessions = create_sessionmaker(engine)
    await load_demo(sessions)
    async with sessions() as session:
        school_id = (
            await session.execute(select(School.id).where(School.name == SCHOOL))
        ).scalar_one()
    await grow_school(sessions, school_id, args.people)
    print(f"database: {engine.dialect.name}; {SCHOOL}: {args.people} people with a mobile")

    gateway = GatewayProcess()
    os.environ.update(
        {
            "TAVLE_SMS_BASE_URL": gateway.base_url,
            "TAVLE_SMS_USERNAME": USERNAME,
            "TAVLE_SMS_PASSWORD": PASSWORD,
            "TAVLE_SMS_SENDER": "Vestby",
        }
    )
    app = create_app(Settings(database_url=url, demo=True, policies_dir=ROOT / "policies"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tavle.bench") as http:
        answer = await http.post("/auth/demo-token", json={"username": "kommuneadmin"})
        headers = {"Authorization": f"Bearer {answer.json()['token']}"}
        # One warm-up request, so first-request costs (schema, pools) are not timed.
        await http.post("/graphql", json={"query": "{ me { id } }"}, headers=headers)
        variables = {"input": {"schoolId": encode("School", school_id), "text": TEXT}}
        started = time.perf_counter()
        response = await http.post(
            "/graphql", json={"query": MUTATION, "variables": variables}, headers=headers
        )
        accept = time.perf_counter() - started
    await app.state.tavle.engine.dispose()
    body = response.json()
    if body.get("errors"):
        print(body["errors"], file=sys.stderr)
        gateway.finish()
        return 1
    sent = body["data"]["sendEmergencySms"]
    count = sent["recipientCount"]
    print(
        f"accept:    {accept * 1000:8.1f} ms  ({count} recipients, {sent['segments']} "
        f"segment(s), {sent['cost']} NOK)  target < {TARGET_ACCEPT_S:.0f} s"
    )

    async with sessions() as session:
        message_id = (
            await session.execute(
                select(EmergencySms.message_id).where(
                    EmergencySms.id == decode_pk(sent["id"], "EmergencySms")
                )
            )
        ).scalar_one()
        rows = (
            await session.execute(
                select(Delivery.id, Person.mobile)
                .join(Person, Person.id == Delivery.recipient_id)
                .where(Delivery.message_id == message_id)
            )
        ).all()
    ids = [delivery_id for delivery_id, _ in rows]
    settings = outbox.OutboxSettings()
    started = time.perf_counter()
    # The whole outbox, as `tavle worker` works it: nothing else is queued in this database.
    await outbox.drain(sessions, settings)
    handover = time.perf_counter() - started
    async with sessions() as session:
        statuses = {
            status.value: n
            for status, n in (
                await session.execute(
                    select(Delivery.status, func.count())
                    .where(Delivery.id.in_(ids))
                    .group_by(Delivery.status)
                )
            ).all()
        }
    print(
        f"hand-over: {handover * 1000:8.1f} ms  (one worker: batch {settings.batch_size}, "
        f"{settings.concurrency} in flight; statuses {statuses})  "
        f"target < {TARGET_HANDOVER_S:.0f} s"
    )
    payloads = [
        {"to": normalise_mobile(mobile), "from": "Vestby", "text": TEXT, "reference": f"b-{i}"}
        for i, (_, mobile) in enumerate(rows)
    ]
    loop_time = await baseline(gateway.base_url, payloads)
    print(
        f"baseline:  {loop_time * 1000:8.1f} ms  (the same {len(payloads)} requests from one "
        f"httpx client in a loop); hand-over / baseline = {handover / loop_time:.2f}"
    )
    seen = gateway.finish()
    await engine.dispose()
    tmp.cleanup()
    # The gateway saw every SMS once from the worker and once from the baseline loop.
    handed = seen["accepted"] - len(payloads)
    print(f"gateway:   {handed} SMS from the worker, {seen['references']} distinct references")
    ok = (
        accept < TARGET_ACCEPT_S
        and handover < TARGET_HANDOVER_S
        and handed == count
        and seen["references"] == 2 * count
        and seen["texts"] == [TEXT]
        and statuses == {"sent": count}
    )
    print("OK" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve-gateway"]:
        serve_gateway()
    else:
        sys.exit(asyncio.run(main()))
