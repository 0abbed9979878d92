"""Archive benchmark: one batch of N queued documents (default 5 000) across the three demo
schools, sent by the elements plugin to the fake archive on loopback, against the fake's
own throughput for the very same messages sent directly.

Builds the demo municipality into a fresh SQLite file (or `--database-url`), inserts N
finalized documents (a ~20 kB PDF each) of doctypes archived "always" into student
folders, with a few school-folder documents, queued through `core.archive.queue`, and
starts two fake archives (tests/fakes/archive_server.py) each in its own process (the
archive is remote in real life: its CPU time must not count as ours). Then:

1. the batch, timed: `core.archive.batch.run_batch` over every queued entry (load, build
   and send the arkivmelding, read the kvittering, record numbers), against fake 1;
2. the baseline, timed: the same arkivmeldinger and files, built beforehand, POSTed
   straight to fake 2 with the same concurrency (what the fake itself can take).

It prints entries per second, the baseline's messages per second and the ratio, and
checks that every entry is archived exactly once (the fake's count). Target (issue 4): a
5 000-entry batch in under 60 s; the exit status is 1 otherwise.

    .venv/bin/python bench/archive.py [--count 5000] [--concurrency 8] [--database-url ...]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.archive import queue  # noqa: E402
from core.archive.batch import load_items, run_batch  # noqa: E402
from core.archive.settings import ArchiveSettings  # noqa: E402
from core.config import Settings, normalise_database_url  # noqa: E402
from core.db import create_engine, create_sessionmaker, transaction  # noqa: E402
from core.demo import load_demo  # noqa: E402
from core.doctypes import sample_fields  # noqa: E402
from core.migrate import upgrade  # noqa: E402
from core.models import (  # noqa: E402
    ArchiveEntry,
    ArchiveStatus,
    Document,
    DocumentStatus,
    Enrolment,
    Person,
    School,
    SchoolYear,
)
from core.models.base import utcnow  # noqa: E402

TARGET_SECONDS = 60.0
STUDENT_DOCTYPES = ("fravaersvarsel", "permisjonssoknad", "sfo_soknad", "skoleskyss_soknad")
SCHOOL_DOCTYPE = "gruppeoversikt"


class FakeProcess:
    """tests/fakes/archive_server.py in a process of its own."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.archive_server"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("PORT "):
            self.process.kill()
            raise RuntimeError(f"the fake archive did not start: {line!r}")
        self.url = f"http://127.0.0.1:{line.split()[1]}"

    def cpu_seconds(self) -> float:
        """CPU time the fake has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/_stats").json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _pdf(index: int) -> bytes:
    # About the size of a one-page letter from WeasyPrint.
    body = random.Random(index).randbytes(20_000)
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + body + b"\n%%EOF\n"


async def _prepare(sessions: Any, doctypes: dict[str, Any], count: int) -> list[int]:
    """N finalized documents across the schools' students, queued; the entry ids."""
    async with transaction(sessions) as s:
        students = (
            await s.execute(
                select(Enrolment.student_id, Enrolment.school_id, Enrolment.school_year_id)
                .join(SchoolYear, SchoolYear.id == Enrolment.school_year_id)
                .where(SchoolYear.is_current.is_(True))
                .order_by(Enrolment.student_id)
            )
        ).all()
        author = (
            await s.execute(select(Person.id).where(Person.username == "kommuneadmin"))
        ).scalar_one()
        now = utcnow()
        rows = []
        for index in range(count):
            student_id, school_id, year_id = students[index % len(students)]
            key = SCHOOL_DOCTYPE if index % 250 == 0 else STUDENT_DOCTYPES[index % 4]
            doctype = doctypes[key]
            pdf = _pdf(index)
            rows.append(
                {
                    "doctype_key": key,
                    "title": f"{doctype.title} – elev {student_id}",
                    "student_id": student_id,
                    "school_id": school_id,
                    "school_year_id": year_id,
                    "fields": sample_fields(doctype),
                    "status": DocumentStatus.FINALIZED,
                    "sensitive": doctype.sensitive,
                    "restricted": doctype.restricted,
                    "restriction_basis": doctype.restriction_basis,
                    "created_by_id": author,
                    "created_at": now,
                    "updated_at": now,
                    "html": "<p>benk</p>",
                    "pdf": pdf,
                    "pdf_sha256": hashlib.sha256(pdf).hexdigest(),
                    "finalized_at": now,
                    "finalized_by_id": author,
                }
            )
        await s.execute(insert(Document), rows)
        documents = (await s.execute(select(Document).order_by(Document.id))).scalars().all()
        # The first document of each folder goes through the queue as the document
        # service queues it (creating the folder); the rest are inserted in one go.
        folders: dict[Any, int] = {}
        owners = dict((await s.execute(select(School.id, School.case_owner_initials))).all())
        entries = []
        for document in documents:
            doctype = doctypes[document.doctype_key]
            where = (
                ("school", document.school_id, document.school_year_id)
                if doctype.folder == "school"
                else ("student", document.student_id)
            )
            if where not in folders:
                entry = await queue.enqueue(s, doctype, document)
                folders[where] = entry.folder_id
                continue
            entries.append(
                {
                    "document_id": document.id,
                    "school_id": document.school_id,
                    "folder_id": folders[where],
                    "status": ArchiveStatus.QUEUED,
                    "attempts": 0,
                    "case_owner": owners[document.school_id],
                    "created_at": now,
                    "updated_at": now,
                }
            )
        if entries:
            await s.execute(insert(ArchiveEntry), entries)
        entry_ids = list(
            (await s.execute(select(ArchiveEntry.id).order_by(ArchiveEntry.id))).scalars()
        )
    return entry_ids


async def _messages(
    sessions: Any, doctypes: dict[str, Any], entry_ids: list[int], settings: ArchiveSettings
) -> list[tuple[bytes, str, bytes]]:
    """The arkivmeldinger the batch will send, built beforehand for the baseline."""
    from plugins.elements.arkivmelding import build_arkivmelding, file_reference

    messages = []
    for start in range(0, len(entry_ids), 200):
        async with sessions() as s:
            items, _ = await load_items(s, entry_ids[start : start + 200], doctypes, settings)
        for item in items:
            xml = build_arkivmelding(
                item, folder_restriction_basis=settings.folder_restriction_basis
            )
            messages.append((xml, file_reference(item), item.pdf))
    return messages


async def _send_directly(url: str, messages: list[Any], concurrency: int) -> float:
    """POST every message to the fake with `concurrency` in flight; the seconds it took."""
    import socket

    from plugins.elements.client import multipart_body

    transport = httpx.AsyncHTTPTransport(
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    )
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:

        async def one(xml: bytes, name: str, pdf: bytes) -> None:
            async with semaphore:
                body, content_type = multipart_body(xml, [(name, pdf)])
                response = await client.post(
                    f"{url}/arkivmelding", content=body, headers={"content-type": content_type}
                )
                assert response.status_code == 200, response.text[:300]

        started = time.perf_counter()
        await asyncio.gather(*(one(*m) for m in messages))
        return time.perf_counter() - started


async def main(args: argparse.Namespace) -> int:
    from core.access.policy import Policy
    from core.app import load_doctypes_and_channels
    from core.plugins import plugin_manager

    with tempfile.TemporaryDirectory() as tmp:
        url = normalise_database_url(args.database_url or f"sqlite:///{tmp}/bench.db")
        engine = create_engine(url)
        await upgrade(engine)
        sessions = create_sessionmaker(engine)
        await load_demo(sessions)
        settings = Settings(database_url=url)
        doctypes, _ = load_doctypes_and_channels(settings, Policy.load(settings.policies_dir))
        archive_settings = ArchiveSettings(chunk_size=args.chunk)
        print(f"Forbereder {args.count} dokumenter i arkivkøen ...", flush=True)
        entry_ids = await _prepare(sessions, doctypes, args.count)
        messages = await _messages(sessions, doctypes, entry_ids, archive_settings)

        batch_fake, direct_fake = FakeProcess(), FakeProcess()
        try:
            os.environ["TAVLE_ELEMENTS_URL"] = batch_fake.url
            os.environ["TAVLE_ELEMENTS_TRANSPORT"] = "http"
            os.environ["TAVLE_ELEMENTS_CONCURRENCY"] = str(args.concurrency)
            cpu_before, fake_before = time.process_time(), batch_fake.cpu_seconds()
            report = await run_batch(sessions, doctypes, archive_settings, plugin_manager())
            batch_cpu = time.process_time() - cpu_before
            fake_cpu = batch_fake.cpu_seconds() - fake_before
            direct_before = direct_fake.cpu_seconds()
            direct_seconds = await _send_directly(direct_fake.url, messages, args.concurrency)
            direct_cpu = direct_fake.cpu_seconds() - direct_before
            stats = batch_fake.stats()
        finally:
            batch_fake.stop()
            direct_fake.stop()
        async with sessions() as s:
            archived = (
                await s.execute(
                    select(ArchiveEntry.id).where(
                        ArchiveEntry.id.in_(entry_ids),
                        ArchiveEntry.status == ArchiveStatus.ARCHIVED,
                    )
                )
            ).all()
        await engine.dispose()

    batch_rate = report.total / report.seconds
    direct_rate = len(messages) / direct_seconds
    print(f"Arkivkjøring: {report.summary()}")
    print(f"  {batch_rate:.0f} arkivposter/s ({report.seconds:.1f} s for {report.total})")
    print(f"  direkte mot falskt arkiv: {direct_rate:.0f} meldinger/s ({direct_seconds:.1f} s)")
    print(f"  forhold kjøring/direkte: {batch_rate / direct_rate:.2f}")
    print(
        f"  CPU-tid: Tavle {batch_cpu:.1f} s ({batch_cpu / max(report.total, 1) * 1000:.1f} ms "
        f"per post), falskt arkiv {fake_cpu:.1f} s under kjøringen og {direct_cpu:.1f} s direkte; "
        f"belastning {os.getloadavg()[0]:.1f} på {os.cpu_count()} kjerner"
    )
    print(
        f"  falskt arkiv: {stats['created']} registrert, {stats['duplicates']} dobbelt, "
        f"{stats['rejected']} avvist; {len(archived)} av {len(entry_ids)} arkivert i Tavle"
    )
    ok = (
        report.seconds < TARGET_SECONDS
        and len(archived) == len(entry_ids)
        and stats["created"] == len(entry_ids)
        and stats["duplicates"] == 0
    )
    print(
        f"Mål: under {TARGET_SECONDS:.0f} s, alle arkivert én gang: {'OK' if ok else 'IKKE NÅDD'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--database-url")
    sys.exit(asyncio.run(main(parser.parse_args())))
