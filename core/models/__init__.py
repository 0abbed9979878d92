"""SQLAlchemy 2 typed models, one module per aggregate. Importing this package registers
every table on `Base.metadata` (alembic and the schema test rely on that)."""

from core.models.access import RoleAssignment, SpecialPermissionAssignment
from core.models.audit import AuditEvent
from core.models.base import Base
from core.models.document import Delivery, DeliveryStatus, Document, DocumentStatus
from core.models.group import Group, GroupKind, GroupMembership, GroupTeacher
from core.models.message import Message, MessageRecipient
from core.models.organisation import Municipality, School, SchoolYear
from core.models.person import Employment, Enrolment, Guardianship, Person
from core.models.session import OidcLoginState, SessionToken

__all__ = [
    "AuditEvent",
    "Base",
    "Delivery",
    "DeliveryStatus",
    "Document",
    "DocumentStatus",
    "Message",
    "MessageRecipient",
    "Employment",
    "Enrolment",
    "Group",
    "GroupKind",
    "GroupMembership",
    "GroupTeacher",
    "Guardianship",
    "Municipality",
    "OidcLoginState",
    "Person",
    "RoleAssignment",
    "School",
    "SchoolYear",
    "SessionToken",
    "SpecialPermissionAssignment",
]
