"""Read-API benchmark: GraphQL over HTTP against uvicorn versus hand-written SQL.

Builds a demo municipality of 20 000 students (by default into a fresh SQLite file in a
temporary directory), serves it with uvicorn in a subprocess on a free local port, and
times two read paths:

(a) the school administrator (`skoleadmin.nordby`): `students(first: 100)` with
    guardians and groups;
(b) a teacher (`laerer.nordby.5a`): groups -> students -> guardians.

The same answers are then produced by hand-written SQL (SQLAlchemy Core `text()` on the
same driver) and turned into the same JSON; the benchmark checks both answers are equal
before it times anything, so the baseline cannot drift from what the API returns. The two
are timed in one loop, alternately, so that both see the same (shared, noisy) machine.

    .venv/bin/python bench/read_api.py [--students N] [--requests N]
        [--database-url postgresql://...] [--reuse]

Target (issue 2): p50 of (a) under 25 ms on SQLite and under 3x the SQL baseline. The
exit status is 1 when the target is missed, so `make bench` fails visibly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import normalise_database_url  # noqa: E402
from core.db import create_engine, create_sessionmaker  # noqa: E402
from core.demo import database_is_empty, load_demo  # noqa: E402
from core.migrate import upgrade  # noqa: E402
from core.schema.ids import encode  # noqa: E402

ADMIN = "skoleadmin.nordby"
TEACHER = "laerer.nordby.5a"
PAGE = 100
TARGET_P50_MS = 25.0
TARGET_RATIO = 3.0

QUERY_A = """query AdminStudents($first: Int!) {
  students(first: $first) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node {
      id name grade
      guardians { id name email phone }
      groups { id name kind }
    } }
  }
}"""

QUERY_B = """query TeacherGroups {
  groups {
    id name kind
    students { id name guardians { id name email phone } }
  }
}"""

# -- hand-written SQL ---------------------------------------------------------------------
# What the API must answer for these two personas, written directly against the tables:
# the scope is known in advance (the admin's school, the teacher's groups), so there is no
# policy evaluation, no GraphQL and no per-field work; only the rows and the JSON.

SQL_PERSONA = "SELECT id FROM person WHERE username = :username"
SQL_CURRENT_YEAR = "SELECT id FROM school_year WHERE is_current"
SQL_ADMIN_SCHOOL = """SELECT school_id FROM role_assignment
 WHERE person_id = :person AND role = 'skoleadmin' AND school_id IS NOT NULL"""
SQL_A_PAGE = """SELECT p.id, p.given_name, p.family_name, e.grade
  FROM person p JOIN enrolment e ON e.student_id = p.id
 WHERE e.school_id = :school AND e.school_year_id = :year
 ORDER BY p.family_name, p.given_name, p.id
 LIMIT :limit"""
SQL_A_COUNT = """SELECT count(*) FROM enrolment
 WHERE school_id = :school AND school_year_id = :year"""
SQL_GUARDIANS = """SELECT gs.student_id, p.id, p.given_name, p.family_name, p.email, p.mobile
  FROM guardianship gs JOIN person p ON p.id = gs.guardian_id
 WHERE gs.student_id IN ({ids}) AND gs.parental_responsibility
 ORDER BY p.family_name, p.given_name, p.id"""
SQL_A_GROUPS = """SELECT m.student_id, g.id, g.name, g.kind
  FROM group_membership m JOIN student_group g ON g.id = m.group_id
 WHERE m.student_id IN ({ids}) AND g.school_year_id = :year
 ORDER BY g.kind, g.name"""
SQL_B_GROUPS = """SELECT g.id, g.name, g.kind
  FROM student_group g JOIN group_teacher t ON t.group_id = g.id
 WHERE t.employee_id = :person AND g.school_year_id = :year
 ORDER BY g.school_id, g.grade, g.name"""
SQL_B_STUDENTS = """SELECT m.group_id, p.id, p.given_name, p.family_name
  FROM group_membership m JOIN person p ON p.id = m.student_id
  JOIN enrolment e ON e.student_id = p.id AND e.school_year_id = :year
 WHERE m.group_id IN ({ids})
 ORDER BY p.family_name, p.given_name, p.id"""


def _in_list(ids: list[int]) -> str:
    # Integers from our own query, never user input: inlining them is safe and keeps the
    # statement one round trip on every driver.
    return ",".join(str(int(i)) for i in ids) or "NULL"


@dataclass(frozen=True)
class Known:
    """Ids the hand-written SQL needs, looked up once (the API resolves them per request
    from the token; that cost is part of what the benchmark measures)."""

    admin_id: int
    admin_school_id: int
    teacher_id: int
    year_id: int


async def lookup(connection: AsyncConnection) -> Known:
    admin = (await connection.execute(text(SQL_PERSONA), {"username": ADMIN})).scalar_one()
    teacher = (await connection.execute(text(SQL_PERSONA), {"username": TEACHER})).scalar_one()
    school = (await connection.execute(text(SQL_ADMIN_SCHOOL), {"person": admin})).scalar_one()
    year = (await connection.execute(text(SQL_CURRENT_YEAR))).scalar_one()
    return Known(admin, school, teacher, year)


def _guardian(row: Any) -> dict[str, Any]:
    return {
        "id": encode("Guardian", row[1]),
        "name": f"{row[2]} {row[3]}",
        "email": row[4],
        "phone": row[5],
    }


def _cursor(key: list[Any]) -> str:
    import base64

    compact = json.dumps(key, default=str, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(compact.encode()).decode()


async def sql_answer_a(connection: AsyncConnection, known: Known) -> str:
    params = {"school": known.admin_school_id, "year": known.year_id}
    rows = (await connection.execute(text(SQL_A_PAGE), {**params, "limit": PAGE + 1})).all()
    has_next, rows = len(rows) > PAGE, rows[:PAGE]
    total = (await connection.execute(text(SQL_A_COUNT), params)).scalar_one()
    ids = _in_list([r[0] for r in rows])
    guardians: dict[int, list[dict[str, Any]]] = {}
    for r in await connection.execute(text(SQL_GUARDIANS.format(ids=ids))):
        guardians.setdefault(r[0], []).append(_guardian(r))
    groups: dict[int, list[dict[str, Any]]] = {}
    query = text(SQL_A_GROUPS.format(ids=ids))
    for r in await connection.execute(query, {"year": known.year_id}):
        kind = r[3].value if hasattr(r[3], "value") else r[3]
        groups.setdefault(r[0], []).append(
            {"id": encode("Group", r[1]), "name": r[2], "kind": str(kind).upper()}
        )
    last = rows[-1] if rows else None
    answer = {
        "students": {
            "totalCount": total,
            "pageInfo": {
                "hasNextPage": has_next,
                "endCursor": _cursor([last[2], last[1], last[0]]) if last else None,
            },
            "edges": [
                {
                    "node": {
                        "id": encode("Student", r[0]),
                        "name": f"{r[1]} {r[2]}",
                        "grade": r[3],
                        "guardians": guardians.get(r[0], []),
                        "groups": groups.get(r[0], []),
                    }
                }
                for r in rows
            ],
        }
    }
    return json.dumps({"data": answer})


async def sql_answer_b(connection: AsyncConnection, known: Known) -> str:
    year = known.year_id
    groups = (
        await connection.execute(text(SQL_B_GROUPS), {"person": known.teacher_id, "year": year})
    ).all()
    students: dict[int, list[Any]] = {}
    query = text(SQL_B_STUDENTS.format(ids=_in_list([g[0] for g in groups])))
    for r in await connection.execute(query, {"year": year}):
        students.setdefault(r[0], []).append(r)
    student_ids = sorted({r[1] for rows in students.values() for r in rows})
    guardians: dict[int, list[dict[str, Any]]] = {}
    for r in await connection.execute(text(SQL_GUARDIANS.format(ids=_in_list(student_ids)))):
        guardians.setdefault(r[0], []).append(_guardian(r))
    answer = {
        "groups": [
            {
                "id": encode("Group", g[0]),
                "name": g[1],
                "kind": str(g[2].value if hasattr(g[2], "value") else g[2]).upper(),
                "students": [
                    {
                        "id": encode("Student", s[1]),
                        "name": f"{s[2]} {s[3]}",
                        "guardians": guardians.get(s[1], []),
                    }
                    for s in students.get(g[0], [])
                ],
            }
            for g in groups
        ]
    }
    return json.dumps({"data": answer})


# -- the server ---------------------------------------------------------------------------


def free_port() -> int:
    """A port the kernel just gave out and nobody holds. (Not `uvicorn --fd`: uvicorn
    takes a passed socket for a Unix socket, so asyncio leaves Nagle's algorithm on and
    every response waits ~40 ms for a delayed ACK, which would swamp the measurement.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """uvicorn in a subprocess: its own interpreter, so the client does not compete with
    it for the GIL."""
    port = free_port()
    env = {
        **os.environ,
        "TAVLE_DATABASE_URL": database_url,
        "TAVLE_DEMO": "1",
        "TAVLE_ENV": "development",
    }
    env.pop("TAVLE_DEBUG", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "core.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
    )
    return process, f"http://127.0.0.1:{port}"


async def wait_ready(http: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"uvicorn stopped with status {process.returncode}")
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("uvicorn did not answer /healthz within 60 s")


async def demo_token(http: httpx.AsyncClient, username: str) -> str:
    response = await http.post("/auth/demo-token", json={"username": username})
    response.raise_for_status()
    return response.json()["token"]


# -- timing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    latencies_ms: list[float]
    per_second: float

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p95(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def timed_pair(
    api: Callable[[], Awaitable[Any]],
    sql: Callable[[], Awaitable[Any]],
    requests: int,
    warmup: int,
) -> tuple[Timing, Timing]:
    """Sequential calls of both, interleaved (API, SQL, SQL, API, ...): on a shared
    machine whose speed drifts from second to second, both sides of the ratio then see
    the same machine. Latency per call, and calls per second of each side's own time."""
    for _ in range(warmup):
        await api()
        await sql()
    latencies: dict[str, list[float]] = {"api": [], "sql": []}
    calls = {"api": api, "sql": sql}
    for number in range(requests):
        order = ("api", "sql") if number % 2 == 0 else ("sql", "api")
        for side in order:
            t0 = time.perf_counter()
            await calls[side]()
            latencies[side].append((time.perf_counter() - t0) * 1000)
    return tuple(  # type: ignore[return-value]
        Timing(values, requests / (sum(values) / 1000))
        for values in (latencies["api"], latencies["sql"])
    )


def graphql_call(
    http: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any]
) -> Callable[[], Awaitable[bytes]]:
    """A timed call: the answer's JSON text, as the SQL baseline ends with its JSON text
    (decoding it is the client's work, not the server's; the answers are compared,
    decoded, before anything is timed). A top-level "errors" member fails the run."""
    body = {"query": query, "variables": variables}
    headers = {"Authorization": f"Bearer {token}"}

    async def call() -> bytes:
        response = await http.post("/graphql", json=body, headers=headers)
        content = response.content
        if response.status_code != 200 or not content.startswith(b'{"data":{'):
            raise SystemExit(f"GraphQL failed: {response.status_code} {content[:500]!r}")
        # The data holds no "errors" member (no field has that name), so the text has one
        # only when the answer has errors.
        if b'"errors":' in content:
            raise SystemExit(f"GraphQL failed: {content[:500]!r}")
        return content

    return call


# -- setup --------------------------------------------------------------------------------


async def prepare(engine: AsyncEngine, students: int, reuse: bool) -> None:
    sessions = create_sessionmaker(engine)
    await upgrade(engine)
    if not await database_is_empty(sessions):
        if reuse:
            print("Bruker eksisterende data i databasen (--reuse).")
            return
        raise SystemExit(
            "The database already holds data. Use an empty database, or --reuse to "
            "benchmark what is there."
        )
    started = time.perf_counter()
    summary = await load_demo(sessions, students=students, progress=sys.stderr.isatty())
    print(f"Demo lastet på {time.perf_counter() - started:.1f} s: {summary}")


def report(name: str, api: Timing, sql: Timing) -> float:
    ratio = api.p50 / sql.p50
    print(
        f"{name}\n"
        f"  GraphQL/HTTP  p50 {api.p50:7.2f} ms  p95 {api.p95:7.2f} ms  "
        f"{api.per_second:7.1f} req/s (én klient)\n"
        f"  SQL baseline  p50 {sql.p50:7.2f} ms  p95 {sql.p95:7.2f} ms  "
        f"{sql.per_second:7.1f} req/s (én klient)\n"
        f"  ratio (p50)   {ratio:.2f}x"
    )
    return ratio


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="tavle-bench-") as tmp:
        if args.database_url:
            database_url = normalise_database_url(args.database_url)
        else:
            database_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        sqlite = database_url.startswith("sqlite")
        engine = create_engine(database_url)
        try:
            await prepare(engine, args.students, args.reuse)
            process, base_url = start_server(database_url)
            try:
                async with (
                    httpx.AsyncClient(base_url=base_url, timeout=60) as http,
                    engine.connect() as connection,
                ):
                    await wait_ready(http, process)
                    known = await lookup(connection)
                    admin = graphql_call(
                        http, await demo_token(http, ADMIN), QUERY_A, {"first": PAGE}
                    )
                    teacher = graphql_call(http, await demo_token(http, TEACHER), QUERY_B, {})

                    def sql_a() -> Awaitable[str]:
                        return sql_answer_a(connection, known)

                    def sql_b() -> Awaitable[str]:
                        return sql_answer_b(connection, known)

                    # Same answers, or the comparison means nothing.
                    for name, api_call, sql_call in (("a", admin, sql_a), ("b", teacher, sql_b)):
                        if json.loads(await api_call()) != json.loads(await sql_call()):
                            raise SystemExit(f"({name}): the API and the SQL answers differ")
                        await connection.rollback()
                    a_api, a_sql = await timed_pair(admin, sql_a, args.requests, args.warmup)
                    b_api, b_sql = await timed_pair(teacher, sql_b, args.requests, args.warmup)
            finally:
                process.terminate()
                process.wait(timeout=10)
        finally:
            await engine.dispose()

    backend = "SQLite" if sqlite else "PostgreSQL"
    print(f"\n{backend}, {args.students} elever, {args.requests} forespørsler per måling")
    ratio_a = report(f"(a) {ADMIN}: students(first: {PAGE}) + guardians + groups", a_api, a_sql)
    report(f"(b) {TEACHER}: groups -> students -> guardians", b_api, b_sql)
    checks = [(f"(a) p50 < {TARGET_RATIO:g}x SQL", ratio_a < TARGET_RATIO)]
    if sqlite:
        checks.insert(0, (f"(a) p50 < {TARGET_P50_MS:g} ms", a_api.p50 < TARGET_P50_MS))
    print("\nMål: " + ", ".join(f"{label}: {'OK' if ok else 'IKKE NÅDD'}" for label, ok in checks))
    return 0 if all(ok for _, ok in checks) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--database-url",
        help="benchmark on this (empty) database instead of a temporary SQLite file",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="use the data already in --database-url"
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
