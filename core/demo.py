"""The demo municipality "Eksempel kommune": the personas of API.md plus filler data.

Everything is generated from one `random.Random(seed)`, with primary keys assigned here,
so the same seed always gives the same rows (benchmarks and bug reports can rely on it).
Rows are built in plain Python first and then written table by table with Core
`insert()` executemany in chunks: the ORM unit of work would be far too slow for the
`students=50_000` benchmark municipality.

Data conventions worth knowing:

- National ids are synthetic fødselsnummer in the Skatteetaten/Tenor convention: the
  month is given +80, so they can never belong to a real person, yet the two mod-11
  control digits are correct and the individual number follows the birth-year ranges and
  the gender rule (odd ninth digit = male). `Person.birth_date` holds the real date.
- Every student has one or two guardians with parental responsibility; a few families
  also have a step-parent registered without it. About 8 % of guardians have no mobile
  and about 10 % no email, so the contact statistics have something to count.
- Students, classes, subject groups and SFO groups belong to the current school year
  2026/2027; students from grade 2 up also have an enrolment in 2025/2026 (one grade
  lower), so "see all school years" has something to show. Groups exist only for the
  current year.
- Emails use the reserved example.com/.net/.org domains (guardians) and the fictional
  eksempel.kommune.no (staff), so a misconfigured mailer cannot reach real people.
"""

from __future__ import annotations

import asyncio
import operator
import random
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import (
    Employment,
    Enrolment,
    Group,
    GroupKind,
    GroupMembership,
    GroupTeacher,
    Guardianship,
    Municipality,
    Person,
    RoleAssignment,
    School,
    SchoolYear,
    SpecialPermissionAssignment,
)

__all__ = [
    "DEFAULT_STUDENTS",
    "MAX_STUDENTS",
    "MIN_STUDENTS",
    "DemoDataError",
    "DemoSummary",
    "database_is_empty",
    "load_demo",
]

MUNICIPALITY_NAME = "Eksempel kommune"
STAFF_DOMAIN = "eksempel.kommune.no"
# RFC 2606 reserved domains: demo mail can never reach a real inbox.
GUARDIAN_DOMAINS = ("example.com", "example.net", "example.org")

# Fixed timestamps instead of utcnow(), which would break determinism. Accounts were
# activated during the previous school year, so the dates are always in the past.
CREATED_AT = datetime(2025, 8, 1, 6, 0, tzinfo=UTC)
ACTIVATION_WINDOW_START = datetime(2025, 8, 18, 7, 0, tzinfo=UTC)
ACTIVATION_WINDOW_SECONDS = 360 * 24 * 3600

# Default size: three classes per grade at the three named schools.
DEFAULT_STUDENTS = 1560
# Two classes of 15 per grade is the smallest legal layout of the three named schools.
MIN_STUDENTS = 20 * 2 * 15
# Ten times the benchmark's size. Far beyond it the generator runs out of distinct
# synthetic national id numbers (about 200 per birth date and sex).
MAX_STUDENTS = 500_000
CLASS_MIN, CLASS_MAX = 15, 28
# A grade ("slot") holds two or three classes: 32..84 students leaves room for jitter.
SLOT_MIN, SLOT_MAX = 32, 84
# The named schools alone hold up to this many; beyond it extra schools are added until
# a grade averages at most SLOT_TARGET students (~450-650 students per school).
NAMED_ONLY_MAX = 1600
SLOT_TARGET = 64
CHUNK_ROWS = 5000

ROLE_KOMMUNEADMIN = "kommuneadmin"
ROLE_SKOLEADMIN = "skoleadmin"
ROLE_SKOLEADMIN2 = "skoleadmin2"
ROLE_REKTOR = "rektor"
ROLE_LAERER = "laerer"
ROLE_SFO_ADMIN = "sfo_admin"
ROLE_SFO_ANSATT = "sfo_ansatt"
ROLE_HELSESYKEPLEIER = "helsesykepleier"
ROLE_ELEV = "elev"


class DemoDataError(RuntimeError):
    """The demo cannot be loaded (the database already holds a municipality)."""


@dataclass(frozen=True)
class DemoSummary:
    """What `load_demo` created."""

    schools: int
    students: int
    guardians: int
    employees: int
    groups: int


@dataclass(frozen=True)
class _SchoolSpec:
    name: str
    slug: str  # used in usernames: "laerer.<slug>.5a"
    first_grade: int
    last_grade: int
    has_sfo: bool
    town: str
    postal_codes: tuple[str, ...]

    @property
    def grades(self) -> range:
        return range(self.first_grade, self.last_grade + 1)


NAMED_SCHOOLS = (
    _SchoolSpec("Nordby skole", "nordby", 1, 7, True, "Nordby", ("4580", "4581", "4582")),
    _SchoolSpec("Sørby ungdomsskole", "sorby", 8, 10, False, "Sørby", ("4590", "4591", "4592")),
    _SchoolSpec("Vestby skole", "vestby", 1, 10, False, "Vestby", ("4570", "4571", "4572")),
)
EXTRA_SCHOOL_PLACES = (
    "Østby", "Haugen", "Lia", "Bakkely", "Fjellstad", "Granli", "Solbakken", "Elvebakken",
    "Skogly", "Åsen", "Engen", "Furuly", "Strandli", "Nesset", "Bjørkelund", "Holmen",
    "Dalen", "Tangen", "Myra", "Berget",
)  # fmt: skip
# Extra schools alternate between combined (1-10) and primary (1-7) schools, all with SFO.
EXTRA_SCHOOL_GRADES = ((1, 10), (1, 7), (1, 10))

# username -> (given name, family name, male, birth year)
PERSONA_EMPLOYEES: dict[str, tuple[str, str, bool, int]] = {
    "kommuneadmin": ("Kristin", "Lunde", False, 1972),
    "skoleadmin.nordby": ("Tone", "Eide", False, 1979),
    "rektor.nordby": ("Marit", "Aasen", False, 1968),
    "rektor.sorby": ("Geir", "Holm", True, 1966),
    "laerer.nordby.5a": ("Ole", "Nygård", True, 1985),
    "laerer.nordby.6b": ("Ingvild", "Moe", False, 1990),
    "laerer.sorby.9b": ("Anders", "Strand", True, 1981),
    "sfo.nordby": ("Heidi", "Bakke", False, 1977),
    "helsesykepleier.nordby": ("Siri", "Dahl", False, 1983),
    "raadgiver.sorby": ("Trond", "Lie", True, 1974),
}

# Family names of the persona families are kept out of the filler, so "Hansen" and "Berg"
# find exactly the persona children.
FAMILY_NAMES = (
    "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen",
    "Jensen", "Karlsen", "Johnsen", "Pettersen", "Eriksen", "Haugen", "Hagen",
    "Johannessen", "Andreassen", "Jacobsen", "Dahl", "Jørgensen", "Halvorsen", "Henriksen",
    "Lund", "Sørensen", "Jakobsen", "Moen", "Gundersen", "Iversen", "Strand", "Solberg",
    "Svendsen", "Eide", "Knutsen", "Martinsen", "Paulsen", "Bakken", "Kristoffersen",
    "Mathisen", "Lie", "Amundsen", "Nguyen", "Rasmussen", "Ali", "Lunde", "Solheim",
    "Berge", "Moe", "Nygård", "Bakke", "Kristensen", "Fredriksen", "Holm", "Lien", "Hauge",
    "Christensen", "Andresen", "Nielsen", "Knudsen", "Evensen", "Sæther", "Aas", "Myhre",
    "Ahmed", "Haugland", "Thomassen", "Sivertsen", "Simonsen", "Danielsen", "Berntsen",
    "Sandvik", "Rønning", "Arnesen", "Antonsen", "Næss", "Vik", "Haug", "Ellingsen",
    "Thorsen", "Edvardsen", "Birkeland", "Isaksen", "Gulbrandsen", "Ruud", "Aasen", "Strøm",
    "Myklebust", "Tangen", "Ødegård", "Eliassen", "Helland", "Bøe", "Aune", "Mikkelsen",
    "Tveit", "Brekke", "Abrahamsen", "Madsen", "Kowalski", "Nowak", "Hussain", "Khan",
)  # fmt: skip
CHILD_NAMES_MALE = (
    "Jakob", "Emil", "Noah", "Oliver", "Filip", "William", "Lucas", "Liam", "Henrik",
    "Oskar", "Aksel", "Theodor", "Elias", "Kasper", "Magnus", "Johannes", "Isak", "Mathias",
    "Tobias", "Olav", "Sander", "Jonas", "Ludvig", "Benjamin", "Matheo", "Alexander",
    "Adrian", "Markus", "Even", "Sebastian", "Håkon", "Vetle", "Leon", "Mohammad", "Iver",
    "Sindre", "Eirik", "Martin", "Jørgen", "Herman", "Odin", "Ulrik", "Syver", "Storm",
    "Edvard", "Sverre", "Birk", "Mikkel", "Adam", "Yusuf",
)  # fmt: skip
CHILD_NAMES_FEMALE = (
    "Nora", "Emma", "Ella", "Maja", "Olivia", "Emilie", "Sofie", "Leah", "Sofia", "Ingrid",
    "Frida", "Sara", "Hedda", "Ada", "Alma", "Ida", "Tiril", "Amalie", "Selma", "Vilde",
    "Anna", "Astrid", "Aurora", "Thea", "Jenny", "Julie", "Mia", "Ellinor", "Live", "Hanna",
    "Iben", "Eva", "Mathilde", "Linnea", "Signe", "Sigrid", "Oda", "Marie", "Karoline",
    "Mille", "Agnes", "Solveig", "Tuva", "Ronja", "Aisha", "Amina", "Mariam", "Helene",
    "Ylva", "Marthe",
)  # fmt: skip
ADULT_NAMES_MALE = (
    "Lars", "Per", "Jan", "Ole", "Kjetil", "Anders", "Morten", "Thomas", "Espen", "Geir",
    "Tor", "Bjørn", "Knut", "Hans", "Rune", "Stian", "Trond", "Eirik", "Martin", "Kristian",
    "Fredrik", "Andreas", "Jon", "Arne", "Svein", "Terje", "Øyvind", "Kenneth", "Marius",
    "Petter", "Daniel", "Christian", "Magnus", "Vegard", "Ahmed", "Mohamed", "Tomasz",
    "Piotr", "Hassan", "Sindre",
)  # fmt: skip
ADULT_NAMES_FEMALE = (
    "Anne", "Inger", "Kari", "Marit", "Ingrid", "Liv", "Hilde", "Silje", "Ida", "Camilla",
    "Kristin", "Marianne", "Hege", "Lene", "Tone", "Ragnhild", "Maria", "Ingvild", "Linn",
    "Elisabeth", "Nina", "Heidi", "Anette", "Line", "Monica", "Mette", "Siri", "Kristine",
    "Cecilie", "Trine", "Gro", "Astrid", "Karianne", "Tonje", "Vibeke", "Agnieszka",
    "Fatima", "Anna", "Ewa", "Sara",
)  # fmt: skip
STREETS = (
    "Skoleveien", "Storgata", "Kirkeveien", "Bjørkeveien", "Granveien", "Furuveien",
    "Lindeveien", "Solbakken", "Bakkeveien", "Fjellveien", "Elveveien", "Sjøveien",
    "Strandveien", "Haugveien", "Markveien", "Tunveien", "Parkveien", "Løkkeveien",
    "Nyveien", "Gamleveien", "Rognveien", "Eikeveien", "Bekkeveien", "Myrveien", "Åsveien",
    "Lyngveien", "Prestegårdsveien", "Stasjonsveien", "Idrettsveien", "Engveien",
    "Hageveien", "Kløverveien", "Blåbærstien", "Tyttebærveien", "Måkeveien", "Ospeveien",
    "Lerkeveien", "Heggeveien", "Smiebakken", "Møllerveien",
)  # fmt: skip
# (group name suffix, username key of the teacher, share of the grade)
LANGUAGE_GROUPS = (("Spansk", "spansk", 0.40), ("Tysk", "tysk", 0.35))
LANGUAGE_REST = ("Engelsk fordypning", "engelsk")
SFO_GROUPS = (("SFO 1-2", (1, 2), 0.65), ("SFO 3-4", (3, 4), 0.40))

_FOLD = str.maketrans({"æ": "ae", "ø": "o", "å": "a", "Æ": "Ae", "Ø": "O", "Å": "A"})
_FNR_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_FNR_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_ORGNR_W = (3, 2, 7, 6, 5, 4, 3, 2)


def _mod11(digits: str, weights: tuple[int, ...]) -> int | None:
    """The mod-11 control digit, or None where 10 would be needed (an unusable number)."""
    # map() keeps this in C: it runs a few hundred thousand times for a large demo.
    rest = 11 - sum(map(operator.mul, map(int, digits), weights)) % 11
    if rest == 11:
        return 0
    return None if rest == 10 else rest


def _ascii(value: str) -> str:
    """Usernames and email addresses are plain ASCII: æøå folded, accents dropped."""
    folded = unicodedata.normalize("NFKD", value.translate(_FOLD))
    return "".join(c for c in folded if c.isascii()).lower().replace(" ", "")


def _initials(given: str, family: str) -> str:
    return (given[0] + family[0]).upper()


def _extra_school(index: int) -> _SchoolSpec:
    first, last = EXTRA_SCHOOL_GRADES[index % len(EXTRA_SCHOOL_GRADES)]
    if index < len(EXTRA_SCHOOL_PLACES):
        town = EXTRA_SCHOOL_PLACES[index]
        name, slug = f"{town} skole", _ascii(town)
    else:
        number = index + len(NAMED_SCHOOLS) + 1
        town, name, slug = "Eksempelby", f"Skole {number}", f"skole{number}"
    base = 4600 + 3 * index
    codes = tuple(f"{(base + k - 1000) % 9000 + 1000:04d}" for k in range(3))
    return _SchoolSpec(name, slug, first, last, True, town, codes)


def _plan(students: int | None, rng: random.Random) -> list[tuple[_SchoolSpec, dict]]:
    """Schools and, per school, grade -> class sizes, adding up to exactly `students`."""
    total = DEFAULT_STUDENTS if students is None else students
    if not MIN_STUDENTS <= total <= MAX_STUDENTS:  # load_demo checks first; a guard
        raise ValueError(f"students={total} is outside {MIN_STUDENTS}..{MAX_STUDENTS}")
    specs = list(NAMED_SCHOOLS)

    def slot_count() -> int:
        return sum(len(s.grades) for s in specs)

    if total > NAMED_ONLY_MAX:
        while total / slot_count() > SLOT_TARGET:
            specs.append(_extra_school(len(specs) - len(NAMED_SCHOOLS)))
    slots = [(i, grade) for i, spec in enumerate(specs) for grade in spec.grades]
    base, remainder = divmod(total, len(slots))
    counts = [base] * len(slots)
    for i in rng.sample(range(len(slots)), remainder):
        counts[i] += 1
    # Jitter so grades differ in size; each move keeps the total and the bounds.
    for _ in range(len(slots) * 2):
        i, j = rng.randrange(len(slots)), rng.randrange(len(slots))
        step = rng.randint(1, 6)
        if i != j and counts[i] - step >= SLOT_MIN and counts[j] + step <= SLOT_MAX:
            counts[i] -= step
            counts[j] += step
    layout: list[tuple[_SchoolSpec, dict]] = [(spec, {}) for spec in specs]
    for (school_index, grade), count in zip(slots, counts, strict=True):
        layout[school_index][1][grade] = _split_grade(count, rng)
    return layout


def _split_grade(count: int, rng: random.Random) -> list[int]:
    """Two classes up to 52 students, three above; each 15-28, slightly uneven."""
    classes = 2 if count <= 52 else 3
    base, remainder = divmod(count, classes)
    sizes = [base + (1 if k < remainder else 0) for k in range(classes)]
    for _ in range(classes):
        i, j = rng.randrange(classes), rng.randrange(classes)
        step = rng.randint(0, 2)
        if i != j and sizes[i] - step >= CLASS_MIN and sizes[j] + step <= CLASS_MAX:
            sizes[i] -= step
            sizes[j] += step
    return sizes


@dataclass
class _Seat:
    """A place in a class, filled by a student when the families are generated."""

    school_index: int
    school_id: int
    grade: int
    class_id: int


@dataclass
class _Built:
    rows: dict[str, list[dict[str, Any]]]
    summary: DemoSummary


class _Progress:
    """A rich progress bar when asked for, otherwise nothing (tests, the server)."""

    def __init__(self, enabled: bool) -> None:
        self._progress = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )

    @contextmanager
    def running(self) -> Iterator[_Progress]:
        if self._progress is None:
            yield self
            return
        with self._progress:
            yield self

    def task(self, description: str, total: int) -> Any:
        if self._progress is None:
            return None
        return self._progress.add_task(description, total=total)

    def advance(self, task: Any, amount: int = 1) -> None:
        if self._progress is not None and task is not None:
            self._progress.advance(task, amount)


@dataclass
class _Builder:
    """Builds every row of the demo in memory, with ids assigned in creation order."""

    rng: random.Random
    progress: _Progress
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    usernames: dict[str, int] = field(default_factory=dict)
    national_ids: set[str] = field(default_factory=set)
    mobiles: set[str] = field(default_factory=set)
    email_locals: dict[str, int] = field(default_factory=dict)
    employee_ids: list[int] = field(default_factory=list)
    guardian_ids: set[int] = field(default_factory=set)
    student_count: int = 0
    kommuneadmin_id: int | None = None
    year_id: int = 0
    previous_year_id: int = 0

    # -- generic helpers ---------------------------------------------------------------

    def add(self, table: str, row: dict[str, Any]) -> int:
        """Append a row; tables with a serial id get the next one."""
        rows = self.rows.setdefault(table, [])
        if "id" in row:
            row["id"] = len(rows) + 1
        rows.append(row)
        return row.get("id", 0)

    def birth_date(self, year: int) -> date:
        return date(year, 1, 1) + timedelta(days=self.rng.randrange(365))

    def national_id(self, born: date, male: bool) -> str:
        """A synthetic fødselsnummer (month + 80) with valid control digits, unique."""
        low, high = (500, 999) if born.year >= 2000 else (0, 499)
        prefix = f"{born.day:02d}{born.month + 80:02d}{born.year % 100:02d}"
        while True:
            individual = self.rng.randint(low, high)
            if (individual % 2 == 1) != male:
                individual ^= 1  # the ninth digit is odd for men; stays within the range
            digits = f"{prefix}{individual:03d}"
            k1 = _mod11(digits, _FNR_W1)
            if k1 is None:
                continue
            k2 = _mod11(f"{digits}{k1}", _FNR_W2)
            if k2 is None:
                continue
            candidate = f"{digits}{k1}{k2}"
            if candidate not in self.national_ids:
                self.national_ids.add(candidate)
                return candidate

    def organisation_number(self) -> str:
        while True:
            digits = f"9{self.rng.randint(70, 99)}{self.rng.randrange(100000):05d}"
            control = _mod11(digits, _ORGNR_W)
            if control is not None:
                return f"{digits}{control}"

    def mobile(self) -> str:
        """Norwegian mobile numbers: eight digits starting with 4 or 9."""
        while True:
            number = f"{self.rng.choice('49')}{self.rng.randrange(10**7):07d}"
            if number not in self.mobiles:
                self.mobiles.add(number)
                return number

    def email(self, given: str, family: str, domain: str) -> str:
        local = f"{_ascii(given)}.{_ascii(family)}"
        key = f"{local}@{domain}"
        seen = self.email_locals.get(key, 0) + 1
        self.email_locals[key] = seen
        return key if seen == 1 else f"{local}{seen}@{domain}"

    def address(self, spec: _SchoolSpec) -> tuple[str, str, str]:
        street = f"{self.rng.choice(STREETS)} {self.rng.randint(1, 120)}"
        if self.rng.random() < 0.15:
            street += self.rng.choice("ABC")
        return street, self.rng.choice(spec.postal_codes), spec.town

    def activated(self, share: float) -> datetime | None:
        if self.rng.random() >= share:
            return None
        return ACTIVATION_WINDOW_START + timedelta(
            seconds=self.rng.randrange(ACTIVATION_WINDOW_SECONDS)
        )

    def person(
        self,
        given: str,
        family: str,
        male: bool,
        born: date,
        *,
        username: str | None = None,
        feide: bool = False,
        email: str | None = None,
        mobile: str | None = None,
        address: tuple[str, str, str] | None = None,
        activated_at: datetime | None = None,
    ) -> int:
        street, postal_code, town = address or (None, None, None)
        person_id = self.add(
            "person",
            {
                "id": None,
                "username": username,
                "national_id": self.national_id(born, male),
                "feide_id": f"{username}@{STAFF_DOMAIN}" if feide and username else None,
                "given_name": given,
                "family_name": family,
                "birth_date": born,
                "email": email,
                "mobile": mobile,
                "street_address": street,
                "postal_code": postal_code,
                "postal_town": town,
                "activated_at": activated_at,
                "created_at": CREATED_AT,
            },
        )
        if username:
            self.usernames[username] = person_id
        return person_id

    def grant(self, person_id: int, role: str, school_id: int | None) -> None:
        self.add(
            "role_assignment",
            {
                "id": None,
                "person_id": person_id,
                "role": role,
                "school_id": school_id,
                "granted_by_id": self.kommuneadmin_id,
                "granted_at": CREATED_AT,
            },
        )

    def special_permission(self, person_id: int, permission: str, school_id: int | None) -> None:
        self.add(
            "special_permission_assignment",
            {
                "id": None,
                "person_id": person_id,
                "permission": permission,
                "school_id": school_id,
                "granted_by_id": self.kommuneadmin_id,
                "granted_at": CREATED_AT,
            },
        )

    def employee(
        self,
        username: str,
        school_id: int | None,
        spec: _SchoolSpec | None,
        position: str,
        roles: tuple[str, ...],
    ) -> int:
        """A staff member with login, Feide id, contact details, employment and roles."""
        if username in self.usernames:  # e.g. a subject teacher who has several groups
            return self.usernames[username]
        persona = PERSONA_EMPLOYEES.get(username)
        if persona:
            given, family, male, year = persona
            activated_at = None  # personas are activated by their first demo login
        else:
            male = self.rng.random() < 0.35
            given = self.rng.choice(ADULT_NAMES_MALE if male else ADULT_NAMES_FEMALE)
            family = self.rng.choice(FAMILY_NAMES)
            year = self.rng.randint(1962, 1998)
            activated_at = self.activated(0.9)
        person_id = self.person(
            given,
            family,
            male,
            self.birth_date(year),
            username=username,
            feide=True,
            email=self.email(given, family, STAFF_DOMAIN),
            mobile=self.mobile(),
            address=self.address(spec or NAMED_SCHOOLS[0]),
            activated_at=activated_at,
        )
        employment_id = len(self.rows.get("employment", [])) + 1
        self.add(
            "employment",
            {
                "id": None,
                "person_id": person_id,
                "school_id": school_id,
                "position": position,
                "employee_number": f"HR{100000 + employment_id}",
            },
        )
        for role in roles:
            self.grant(person_id, role, school_id)
        self.employee_ids.append(person_id)
        return person_id

    def group(self, school_id: int, year_id: int, name: str, kind: GroupKind, grade: int | None):
        return self.add(
            "student_group",
            {
                "id": None,
                "school_id": school_id,
                "school_year_id": year_id,
                "name": name,
                "kind": kind,
                "grade": grade,
            },
        )

    def teach(self, group_id: int, employee_id: int, contact: bool = False) -> None:
        self.add(
            "group_teacher",
            {"group_id": group_id, "employee_id": employee_id, "is_contact_teacher": contact},
        )

    def member(self, group_id: int, student_id: int) -> None:
        self.add("group_membership", {"group_id": group_id, "student_id": student_id})

    # -- the municipality --------------------------------------------------------------

    def build(self, layout: list[tuple[_SchoolSpec, dict]]) -> _Built:
        for table in (
            "municipality",
            "school_year",
            "school",
            "person",
            "employment",
            "enrolment",
            "guardianship",
            "student_group",
            "group_membership",
            "group_teacher",
            "role_assignment",
            "special_permission_assignment",
        ):
            self.rows[table] = []  # dict order = insert order (foreign keys)
        task = self.progress.task("Lager demodata", sum(_total(layout), 0) or 1)

        self.add(
            "municipality",
            {
                "id": None,
                "name": MUNICIPALITY_NAME,
                "organisation_number": self.organisation_number(),
            },
        )
        self.previous_year_id = self.add(
            "school_year",
            {
                "id": None,
                "name": "2025/2026",
                "starts_on": date(2025, 8, 18),
                "ends_on": date(2026, 6, 19),
                "is_current": False,
            },
        )
        self.year_id = self.add(
            "school_year",
            {
                "id": None,
                "name": "2026/2027",
                "starts_on": date(2026, 8, 17),
                "ends_on": date(2027, 6, 19),
                "is_current": True,
            },
        )
        org_numbers: set[str] = set()
        schools: list[dict[str, Any]] = []
        for spec, _ in layout:
            org_number = self.organisation_number()
            while org_number in org_numbers:
                org_number = self.organisation_number()
            org_numbers.add(org_number)
            row = {
                "id": None,
                "municipality_id": 1,
                "name": spec.name,
                "organisation_number": org_number,
                "first_grade": spec.first_grade,
                "last_grade": spec.last_grade,
                "has_sfo": spec.has_sfo,
                "case_owner_initials": None,
            }
            self.add("school", row)
            schools.append(row)

        self.kommuneadmin_id = self.employee(
            "kommuneadmin", None, None, "Rådgiver oppvekst", (ROLE_KOMMUNEADMIN,)
        )
        seats: list[_Seat] = []
        for index, (spec, grades) in enumerate(layout):
            seats.extend(self.staff_and_classes(index, spec, schools[index], grades))

        students_by_grade = self.families(layout, seats, task)
        for index, (spec, _) in enumerate(layout):
            school_id = schools[index]["id"]
            self.subject_groups(spec, school_id, students_by_grade)
            if spec.has_sfo:
                self.sfo_groups(spec, school_id, students_by_grade)

        summary = DemoSummary(
            schools=len(layout),
            students=self.student_count,
            guardians=len(self.guardian_ids),
            employees=len(self.employee_ids),
            groups=len(self.rows["student_group"]),
        )
        return _Built(self.rows, summary)

    def staff_and_classes(
        self, index: int, spec: _SchoolSpec, school: dict[str, Any], grades: dict
    ) -> list[_Seat]:
        """The school's leadership and office, and its classes with contact teachers."""
        school_id, slug = school["id"], spec.slug
        # At Sørby the principal is only Rektor (API.md); elsewhere also Skoleadmin.
        principal_roles = (ROLE_REKTOR,) if slug == "sorby" else (ROLE_REKTOR, ROLE_SKOLEADMIN)
        principal = self.employee(f"rektor.{slug}", school_id, spec, "Rektor", principal_roles)
        row = self.rows["person"][principal - 1]
        school["case_owner_initials"] = _initials(row["given_name"], row["family_name"])
        office = self.employee(
            f"skoleadmin.{slug}", school_id, spec, "Konsulent", (ROLE_SKOLEADMIN,)
        )
        self.employee(
            f"helsesykepleier.{slug}",
            school_id,
            spec,
            "Helsesykepleier",
            (ROLE_HELSESYKEPLEIER,),
        )
        if spec.last_grade >= 8:
            self.employee(f"raadgiver.{slug}", school_id, spec, "Rådgiver", (ROLE_SKOLEADMIN2,))
        # A few special permissions so that table has data (never on the personas).
        if slug == "sorby":
            self.special_permission(office, "permisjonssoknader", school_id)
        elif slug != "nordby":
            self.special_permission(office, "slett_dokument", school_id)

        seats: list[_Seat] = []
        for grade, sizes in sorted(grades.items()):
            for k, size in enumerate(sizes):
                name = f"{grade}{'ABC'[k]}"
                class_id = self.group(school_id, self.year_id, name, GroupKind.CLASS, grade)
                teacher = self.employee(
                    f"laerer.{slug}.{name.lower()}", school_id, spec, "Lærer", (ROLE_LAERER,)
                )
                self.teach(class_id, teacher, contact=True)
                seats.extend(_Seat(index, school_id, grade, class_id) for _ in range(size))
        if slug == "vestby":
            exam = self.usernames.get("laerer.vestby.10a")
            if exam:
                self.special_permission(exam, "eksamenskoordinator", school_id)
        return seats

    def student(
        self,
        given: str,
        family: str,
        male: bool,
        seat: _Seat,
        address: tuple[str, str, str],
        layout: list[tuple[_SchoolSpec, dict]],
        students_by_grade: dict[tuple[int, int], list[int]],
        username: str | None = None,
    ) -> int:
        grade = seat.grade
        # Grade 1 in autumn 2026 means born in 2020.
        born = self.birth_date(2021 - grade)
        mobile_share = 0.85 if grade >= 8 else 0.3 if grade >= 5 else 0.0
        mobile = self.mobile() if username or self.rng.random() < mobile_share else None
        activated_at = None if username else self.activated(0.5 if grade >= 8 else 0.0)
        student_id = self.person(
            given,
            family,
            male,
            born,
            username=username,
            feide=username is not None,
            mobile=mobile,
            address=address,
            activated_at=activated_at,
        )
        self.add(
            "enrolment",
            {
                "id": None,
                "student_id": student_id,
                "school_id": seat.school_id,
                "school_year_id": self.year_id,
                "grade": grade,
            },
        )
        if grade >= 2:
            spec = layout[seat.school_index][0]
            # Lower-secondary schools get their grade 8 from Nordby (the feeder school).
            previous_school = seat.school_id if spec.first_grade <= grade - 1 else 1
            self.add(
                "enrolment",
                {
                    "id": None,
                    "student_id": student_id,
                    "school_id": previous_school,
                    "school_year_id": self.previous_year_id,
                    "grade": grade - 1,
                },
            )
        self.member(seat.class_id, student_id)
        students_by_grade.setdefault((seat.school_id, grade), []).append(student_id)
        self.student_count += 1
        return student_id

    def guardian(
        self,
        given: str,
        family: str,
        male: bool,
        born: date,
        address: tuple[str, str, str],
        *,
        username: str | None = None,
        persona: bool = False,
    ) -> int:
        has_mobile = persona or self.rng.random() >= 0.08
        has_email = persona or self.rng.random() >= 0.10
        domain = self.rng.choice(GUARDIAN_DOMAINS)
        guardian_id = self.person(
            given,
            family,
            male,
            born,
            username=username,
            email=self.email(given, family, domain) if has_email else None,
            mobile=self.mobile() if has_mobile else None,
            address=address,
            activated_at=None if persona else self.activated(0.65),
        )
        self.guardian_ids.add(guardian_id)
        return guardian_id

    def guardianship(
        self,
        guardian_id: int,
        student_id: int,
        responsibility: bool = True,
        forward: bool | None = None,
    ) -> None:
        person = self.rows["person"][guardian_id - 1]
        if forward is None:
            forward = person["email"] is not None and self.rng.random() < 0.3
        self.add(
            "guardianship",
            {
                "id": None,
                "guardian_id": guardian_id,
                "student_id": student_id,
                "parental_responsibility": responsibility,
                "forward_to_email": forward,
            },
        )

    def families(
        self, layout: list[tuple[_SchoolSpec, dict]], seats: list[_Seat], task: Any
    ) -> dict[tuple[int, int], list[int]]:
        """Fill every seat with a student, grouped into families with their guardians."""
        by_grade: dict[tuple[int, int], list[int]] = {}
        class_names = {
            (row["school_id"], row["name"]): row["id"] for row in self.rows["student_group"]
        }

        def take(school_index: int, class_name: str) -> _Seat:
            # School ids follow the layout order, starting at 1.
            class_id = class_names[(school_index + 1, class_name)]
            for i, seat in enumerate(seats):
                if seat.class_id == class_id:
                    return seats.pop(i)
            raise AssertionError(f"no seat in {class_name}")

        nordby = layout[0][0]
        # The persona families (API.md): Hansen with Emma (5A Nordby) and Noah (9B Sørby),
        # Berg with Ida (6B Nordby).
        emma_seat, ida_seat, noah_seat = take(0, "5A"), take(0, "6B"), take(1, "9B")
        home = ("Kirkeveien 14", nordby.postal_codes[0], nordby.town)
        kari = self.guardian(
            "Kari", "Hansen", False, self.birth_date(1982), home, username="foresatt.hansen"
        )
        lars = self.guardian("Lars", "Hansen", True, self.birth_date(1980), home, persona=True)
        emma = self.student("Emma", "Hansen", False, emma_seat, home, layout, by_grade)
        noah = self.student(
            "Noah", "Hansen", True, noah_seat, home, layout, by_grade, "elev.noah.hansen"
        )
        self.grant(noah, ROLE_ELEV, noah_seat.school_id)
        for child in (emma, noah):
            self.guardianship(kari, child, forward=False)
            self.guardianship(lars, child, forward=False)
        home = ("Granveien 3", nordby.postal_codes[1], nordby.town)
        thomas = self.guardian(
            "Thomas", "Berg", True, self.birth_date(1984), home, username="foresatt.berg"
        )
        silje = self.guardian("Silje", "Berg", False, self.birth_date(1986), home, persona=True)
        ida = self.student("Ida", "Berg", False, ida_seat, home, layout, by_grade)
        self.guardianship(thomas, ida, forward=True)
        self.guardianship(silje, ida, forward=False)
        self.progress.advance(task, 3)

        rng = self.rng
        rng.shuffle(seats)
        position = 0
        while position < len(seats):
            size = rng.choices((1, 2, 3), weights=(62, 30, 8))[0]
            children = seats[position : position + size]
            position += size
            self.family(layout, children, by_grade)
            self.progress.advance(task, len(children))
        return by_grade

    def family(
        self,
        layout: list[tuple[_SchoolSpec, dict]],
        seats: list[_Seat],
        by_grade: dict[tuple[int, int], list[int]],
    ) -> None:
        rng = self.rng
        family = rng.choice(FAMILY_NAMES)
        spec = layout[seats[0].school_index][0]
        home = self.address(spec)
        oldest = 2021 - max(seat.grade for seat in seats)
        guardians: list[int] = []
        if rng.random() < 0.8:
            father = rng.choice(ADULT_NAMES_MALE)
            mother = rng.choice(ADULT_NAMES_FEMALE)
            mother_family = family if rng.random() < 0.6 else rng.choice(FAMILY_NAMES)
            guardians.append(
                self.guardian(
                    father, family, True, self.birth_date(oldest - rng.randint(25, 42)), home
                )
            )
            # Some parents live apart: the second guardian has an address of their own.
            mother_home = self.address(spec) if rng.random() < 0.15 else home
            guardians.append(
                self.guardian(
                    mother,
                    mother_family,
                    False,
                    self.birth_date(oldest - rng.randint(23, 40)),
                    mother_home,
                )
            )
        else:
            male = rng.random() < 0.3
            given = rng.choice(ADULT_NAMES_MALE if male else ADULT_NAMES_FEMALE)
            born = self.birth_date(oldest - rng.randint(23, 42))
            guardians.append(self.guardian(given, family, male, born, home))
        step_parent = None
        if rng.random() < 0.05:
            male = rng.random() < 0.5
            given = rng.choice(ADULT_NAMES_MALE if male else ADULT_NAMES_FEMALE)
            born = self.birth_date(oldest - rng.randint(25, 45))
            step_parent = self.guardian(given, rng.choice(FAMILY_NAMES), male, born, home)
        names: set[str] = set()
        for seat in seats:
            male = rng.random() < 0.5
            pool = CHILD_NAMES_MALE if male else CHILD_NAMES_FEMALE
            given = rng.choice(pool)
            while given in names:
                given = rng.choice(pool)
            names.add(given)
            child = self.student(given, family, male, seat, home, layout, by_grade)
            for guardian in guardians:
                self.guardianship(guardian, child)
            if step_parent is not None:
                self.guardianship(step_parent, child, responsibility=False, forward=False)

    def subject_groups(
        self, spec: _SchoolSpec, school_id: int, by_grade: dict[tuple[int, int], list[int]]
    ) -> None:
        """Grades 8-10: mathematics in two groups and a language choice, across classes."""
        noah = self.usernames["elev.noah.hansen"]
        for grade in spec.grades:
            if grade < 8:
                continue
            students = list(by_grade.get((school_id, grade), []))
            self.rng.shuffle(students)
            half = len(students) // 2
            if noah in students[half:]:
                # API.md: Noah is in "9 Matematikk".
                i = students.index(noah)
                students[0], students[i] = students[i], students[0]
            maths = (
                (f"{grade} Matematikk", students[:half]),
                (f"{grade} Matematikk 2", students[half:]),
            )
            for name, members in maths:
                username = f"laerer.{spec.slug}.matematikk"
                if spec.slug == "sorby" and name == "9 Matematikk":
                    username = "laerer.sorby.9b"
                self.subject_group(spec, school_id, grade, name, username, members)
            chosen: dict[str, list[int]] = {}
            for student in students:
                draw, language = self.rng.random(), LANGUAGE_REST
                cumulative = 0.0
                for suffix, key, share in LANGUAGE_GROUPS:
                    cumulative += share
                    if draw < cumulative:
                        language = (suffix, key)
                        break
                chosen.setdefault(language[0], []).append(student)
            for suffix, key in [(s, k) for s, k, _ in LANGUAGE_GROUPS] + [LANGUAGE_REST]:
                if chosen.get(suffix):
                    username = f"laerer.{spec.slug}.{key}"
                    self.subject_group(
                        spec, school_id, grade, f"{grade} {suffix}", username, chosen[suffix]
                    )

    def subject_group(
        self,
        spec: _SchoolSpec,
        school_id: int,
        grade: int,
        name: str,
        teacher_username: str,
        members: list[int],
    ) -> None:
        group_id = self.group(school_id, self.year_id, name, GroupKind.SUBJECT, grade)
        teacher = self.employee(teacher_username, school_id, spec, "Lærer", (ROLE_LAERER,))
        self.teach(group_id, teacher)
        for student in sorted(members):
            self.member(group_id, student)

    def sfo_groups(
        self, spec: _SchoolSpec, school_id: int, by_grade: dict[tuple[int, int], list[int]]
    ) -> None:
        """About half of grades 1-4 attend SFO: most of 1-2, fewer of 3-4."""
        leader = self.employee(f"sfo.{spec.slug}", school_id, spec, "SFO-leder", (ROLE_SFO_ADMIN,))
        for number, (name, grades, share) in enumerate(SFO_GROUPS):
            group_id = self.group(school_id, self.year_id, name, GroupKind.SFO, None)
            self.teach(group_id, leader)
            for k in (1, 2):
                assistant = self.employee(
                    f"sfoansatt.{spec.slug}.{2 * number + k}",
                    school_id,
                    spec,
                    "SFO-assistent",
                    (ROLE_SFO_ANSATT,),
                )
                self.teach(group_id, assistant)
            for grade in grades:
                for student in by_grade.get((school_id, grade), []):
                    if self.rng.random() < share:
                        self.member(group_id, student)


def _total(layout: list[tuple[_SchoolSpec, dict]]) -> Iterator[int]:
    for _, grades in layout:
        for sizes in grades.values():
            yield sum(sizes)


def _build(students: int | None, seed: int, progress: _Progress) -> _Built:
    rng = random.Random(seed)
    layout = _plan(students, rng)
    return _Builder(rng, progress).build(layout)


_TABLES: dict[str, Table] = {
    model.__table__.name: model.__table__  # type: ignore[attr-defined]
    for model in (
        Municipality,
        SchoolYear,
        School,
        Person,
        Employment,
        Enrolment,
        Guardianship,
        Group,
        GroupMembership,
        GroupTeacher,
        RoleAssignment,
        SpecialPermissionAssignment,
    )
}


async def database_is_empty(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """True when no municipality exists yet (the demo may then be loaded)."""
    async with sessions() as session:
        return await _is_empty(session)


async def _is_empty(session: AsyncSession) -> bool:
    found = await session.scalar(select(Municipality.id).limit(1))
    return found is None


async def load_demo(
    sessions: async_sessionmaker[AsyncSession],
    *,
    students: int | None = None,
    seed: int = 2026,
    progress: bool = False,
) -> DemoSummary:
    """Load the demo municipality into an empty, migrated database, in one transaction.

    `students=None` gives the standard demo (the three named schools, about 1 560
    students); `students=N` gives exactly N students, adding schools as needed.
    Raises DemoDataError if a municipality already exists and ValueError if N is outside
    MIN_STUDENTS..MAX_STUDENTS.
    """
    if students is not None and not MIN_STUDENTS <= students <= MAX_STUDENTS:
        raise ValueError(f"students must be {MIN_STUDENTS}..{MAX_STUDENTS}, got {students}")
    reporter = _Progress(progress)
    with reporter.running():
        async with sessions() as session, session.begin():
            if not await _is_empty(session):
                raise DemoDataError(
                    "the database already holds a municipality; the demo is only loaded "
                    "into an empty database (drop it or use a fresh one)"
                )
            # Generating ~100 000 rows is CPU work: keep it off the event loop.
            built = await asyncio.to_thread(_build, students, seed, reporter)
            connection = await session.connection()
            total_rows = sum(len(rows) for rows in built.rows.values())
            task = reporter.task("Skriver rader", total_rows)
            for name, rows in built.rows.items():
                table = _TABLES[name]
                for start in range(0, len(rows), CHUNK_ROWS):
                    chunk = rows[start : start + CHUNK_ROWS]
                    await connection.execute(insert(table), chunk)
                    reporter.advance(task, len(chunk))
            if connection.dialect.name == "postgresql":
                # Ids were given explicitly, so the serial sequences never moved.
                for name, rows in built.rows.items():
                    if rows and "id" in rows[0]:
                        await connection.execute(
                            text(
                                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                f"(SELECT max(id) FROM {name}))"
                            )
                        )
        # Fresh planner statistics: without them SQLite walks the index of the wrong
        # column (e.g. all groups of the school year instead of a student's memberships)
        # and a page of students with their groups costs 100x more. PostgreSQL's
        # autovacuum would get there eventually; the first requests should not wait.
        # ANALYZE runs in a transaction on both databases (unlike VACUUM).
        async with sessions() as session, session.begin():
            await session.execute(text("ANALYZE"))
    return built.summary
