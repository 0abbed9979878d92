"""The words the policy files may use: resources with their actions, and scopes.

A municipality adding a role uses these words; a new resource or scope needs code (a
filter in core/access/scopes.py), which is why they are listed here and checked.
"""

from __future__ import annotations

SCOPES: dict[str, str] = {
    "municipality": "everything in the municipality",
    "school": "rows belonging to the school the role is held at (all schools when held "
    "municipality-wide)",
    "own_groups": "students of groups the person is responsible for, and what hangs on them",
    "own_sfo_groups": "like own_groups, limited to SFO groups",
    "own_children": "the children the person has parental responsibility for",
    "self": "the person's own record (for a student also their teachers and groups)",
    "guardian_messages": "messages written by guardians at the school the role is held at",
}

# The scopes a person holds as guardian or student (over their own children, or
# themselves), not as school staff: what is written for the school's records, such as
# documents other than applications, is never done through them.
PERSONAL_SCOPES: frozenset[str] = frozenset({"own_children", "self"})

RESOURCES: dict[str, frozenset[str]] = {
    "school": frozenset({"read", "update"}),
    "school_year": frozenset({"read", "read_all"}),
    "student": frozenset({"read", "update"}),
    "student_national_id": frozenset({"read"}),
    "student_address": frozenset({"read"}),
    "student_contact": frozenset({"read"}),
    "guardian": frozenset({"read"}),
    "guardian_contact": frozenset({"read"}),
    "guardian_address": frozenset({"read"}),
    "guardian_national_id": frozenset({"read"}),
    "employee": frozenset({"read"}),
    "employee_contact": frozenset({"read"}),
    "employee_national_id": frozenset({"read"}),
    "group": frozenset({"read", "update"}),
    "enrolment": frozenset({"delete"}),
    "role_assignment": frozenset({"read", "grant"}),
    "special_permission": frozenset({"grant"}),
    "audit_log": frozenset({"read"}),
    "doctype": frozenset({"manage"}),
    "register": frozenset({"manage"}),
    "invoicing": frozenset({"manage"}),
    "statistics": frozenset({"read"}),
    "document": frozenset({"read", "create", "finalize", "send", "delete"}),
    "document_restricted": frozenset({"read"}),
    "archive_log": frozenset({"read", "requeue", "dismiss"}),
    "archive_folder": frozenset({"read", "manage"}),
    "absence": frozenset({"read", "create"}),
    "remark": frozenset({"read", "create"}),
    "assessment": frozenset({"read", "create"}),
    "message": frozenset({"read", "send"}),
    "guardian_message": frozenset({"read"}),
    "bulk_message": frozenset({"send"}),
    "emergency_sms": frozenset({"send", "read"}),
    "form": frozenset({"create"}),
    "consent": frozenset({"create"}),
    "application": frozenset({"submit"}),
    "decision": frozenset({"create"}),
    "leave_application": frozenset({"decide"}),
    "sfo_application": frozenset({"decide"}),
    "transport_application": frozenset({"decide"}),
    "reduced_payment_application": frozenset({"decide"}),
    "variable_pay": frozenset({"approve"}),
    "exam": frozenset({"coordinate"}),
    "person_search": frozenset({"advanced"}),
    "guardian_information": frozenset({"toggle"}),
}

# `role:<name>` with action `grant` is the right to grant (and revoke) that one role, at
# the line's scope: DOMAIN.md says who grants which role ("granted by"), and a school
# administrator may hand out teacher roles at their school but not a principal's. The
# resource `role_assignment` with action `grant` is the right to grant every role.
ROLE_GRANT_PREFIX = "role:"
ROLE_GRANT_ACTION = "grant"

# The guardian role is never assigned by hand: parental responsibility in the population
# register makes a person a guardian (DOMAIN.md: "automatic via ID-porten").
GUARDIAN_ROLE = "foresatt"

# The student role goes to a student enrolled at the school (lower-secondary students
# are given access by the school or municipality); every other role to an employee.
STUDENT_ROLE = "elev"

# The nine special permissions of the archive plan (seed 000); each is a policy subject
# of its own and is granted per school or municipality-wide like a role.
SPECIAL_PERMISSIONS: frozenset[str] = frozenset(
    {
        "avansert_personsok",
        "eksamenskoordinator",
        "foresatt_motta_informasjon",
        "se_alle_skolear",
        "skyssoknader",
        "slett_dokument",
        "redusert_foreldrebetaling",
        "permisjonssoknader",
        "slett_elev_fra_skolear",
    }
)
