"""GraphQL for the communication statistics (school and municipality administrators)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import strawberry
from sqlalchemy import select

from core.messages import statistics as stats
from core.models import School as SchoolModel
from core.models import SchoolYear
from core.schema.context import Info
from core.schema.errors import bad_input, forbidden
from core.schema.filters import optional_pk
from core.schema.types import School

# No school used Tavle before this; a date before it is a typo, not a question.
EARLIEST_SINCE = date(2000, 1, 1)


@strawberry.type(
    description="SMS per school and month (UTC), counted once handed to the "
    "gateway; cost as billed per segment."
)
class SmsMonthStatistics:
    school: School
    month: str
    to_students: int
    to_staff: int
    to_guardians: int
    from_guardians: int
    failed: int
    segments: int
    cost: Decimal


@strawberry.type(
    description="Guardians (with parental responsibility) of the school's "
    "current students and how many can be reached how."
)
class GuardianContactStatistics:
    school: School
    guardians: int
    with_mobile: int
    with_email: int
    activated: int

    @strawberry.field
    def share_with_mobile(self) -> float:
        return self.with_mobile / self.guardians if self.guardians else 0.0

    @strawberry.field
    def share_with_email(self) -> float:
        return self.with_email / self.guardians if self.guardians else 0.0

    @strawberry.field
    def share_activated(self) -> float:
        return self.activated / self.guardians if self.guardians else 0.0


@strawberry.type(description="Messages written by people per school and month (UTC).")
class MessageMonthStatistics:
    school: School
    month: str
    sent: int
    recipients: int
    read: int


@strawberry.type
class CommunicationStatistics:
    since: date
    sms: list[SmsMonthStatistics]
    guardian_contact: list[GuardianContactStatistics]
    messages: list[MessageMonthStatistics]


@strawberry.type
class StatisticsQuery:
    @strawberry.field(
        description="SMS, guardian contact details and messages per school; "
        "from `since` (default: the start of the current school year)."
    )
    async def communication_statistics(
        self, info: Info, school_id: strawberry.ID | None = None, since: date | None = None
    ) -> CommunicationStatistics:
        ctx = info.context
        principal = ctx.require("statistics", "read")
        db = ctx.db
        school_pk = await optional_pk(info, school_id, "School")
        if school_pk is not None:
            allowed = (
                await db.execute(
                    select(SchoolModel.id).where(
                        SchoolModel.id == school_pk,
                        SchoolModel.id.in_(stats.school_ids_in_scope(principal)),
                    )
                )
            ).first()
            if allowed is None:
                raise forbidden("Du har ikke tilgang til statistikken for denne skolen.")
        if since is not None and not EARLIEST_SINCE <= since <= date.today():
            raise bad_input(
                f"`since` må være fra {EARLIEST_SINCE.isoformat()} til i dag.", field="since"
            )
        if since is None:
            since = (
                await db.execute(select(SchoolYear.starts_on).where(SchoolYear.is_current))
            ).scalar() or date.today().replace(month=1, day=1)
        dialect = ctx.state.engine.dialect.name
        sms = await stats.sms_per_month(db, principal, since, school_pk, dialect=dialect)
        contact = await stats.guardian_contact(db, principal, school_pk)
        messages = await stats.messages_per_month(db, principal, since, school_pk, dialect=dialect)
        wanted = {r.school_id for r in (*sms, *contact, *messages)}
        schools = {
            s.id: School.of(s)
            for s in (
                await db.execute(select(SchoolModel).where(SchoolModel.id.in_(wanted)))
            ).scalars()
        }
        return CommunicationStatistics(
            since=since,
            sms=[
                SmsMonthStatistics(
                    school=schools[r.school_id],
                    month=r.month,
                    to_students=r.to_students,
                    to_staff=r.to_staff,
                    to_guardians=r.to_guardians,
                    from_guardians=r.from_guardians,
                    failed=r.failed,
                    segments=r.segments,
                    cost=r.cost,
                )
                for r in sms
            ],
            guardian_contact=[
                GuardianContactStatistics(
                    school=schools[r.school_id],
                    guardians=r.guardians,
                    with_mobile=r.with_mobile,
                    with_email=r.with_email,
                    activated=r.activated,
                )
                for r in contact
            ],
            messages=[
                MessageMonthStatistics(
                    school=schools[r.school_id],
                    month=r.month,
                    sent=r.sent,
                    recipients=r.recipients,
                    read=r.read,
                )
                for r in messages
            ],
        )
