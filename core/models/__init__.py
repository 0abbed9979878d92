"""SQLAlchemy 2 typed models, one module per aggregate. Importing this package registers
every table on `Base.metadata` (alembic and the schema test rely on that)."""

from core.models.absence import (
    Absence,
    AbsenceReporter,
    AbsenceSmsNotice,
    EmergencySms,
    Remark,
    RemarkKind,
)
from core.models.access import RoleAssignment, SpecialPermissionAssignment
from core.models.archive import ArchiveEntry, ArchiveFolder, ArchiveFolderKind, ArchiveStatus
from core.models.audit import AuditEvent
from core.models.base import Base
from core.models.document import Delivery, DeliveryStatus, Document, DocumentStatus
from core.models.group import Group, GroupKind, GroupMembership, GroupTeacher
from core.models.message import (
    AttachmentBlob,
    InboundSms,
    Message,
    MessageAnswer,
    MessageAttachment,
    MessageKind,
    MessageQuestion,
    MessageQuestionOption,
    MessageRecipient,
    RecipientRole,
)
from core.models.organisation import Municipality, School, SchoolYear
from core.models.person import Employment, Enrolment, Guardianship, Person
from core.models.session import OidcLoginState, SessionToken

__all__ = [
    "Absence",
    "AbsenceReporter",
    "AbsenceSmsNotice",
    "AttachmentBlob",
    "EmergencySms",
    "InboundSms",
    "MessageAnswer",
    "MessageAttachment",
    "MessageKind",
    "MessageQuestion",
    "MessageQuestionOption",
    "RecipientRole",
    "Remark",
    "RemarkKind",
    "ArchiveEntry",
    "ArchiveFolder",
    "ArchiveFolderKind",
    "ArchiveStatus",
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
