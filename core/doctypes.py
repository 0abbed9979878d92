"""Document types: one YAML file per type in `doctypes/`, plus its jinja2 template.

A doctype says what a document of that type holds (its fields), who may create it, how
it travels (channels in order of preference), whether and where it is archived, and
whether it is restricted from public access. The files are loaded and validated when the
server starts; every problem is reported as "file:line: message" and a single bad file
stops the start (`DoctypeError`). `tavle doctypes check` runs the same validation.

Line numbers come from PyYAML's composed node tree, so a problem points at the key or
list item it is about, not only at the file.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import nodes
from markupsafe import Markup, escape

from core.access.vocabulary import RESOURCES
from core.channels import ChannelInfo
from core.config import PROJECT_ROOT

DOCTYPES_DIR = PROJECT_ROOT / "doctypes"
BASE_TEMPLATE = "_base.html.j2"

FIELD_TYPES: frozenset[str] = frozenset(
    {"text", "multiline", "date", "time", "datetime", "number", "boolean", "choice", "email"}
)
ARCHIVE_MODES: tuple[str, ...] = ("always", "optional", "never")
ARCHIVE_ON: tuple[str, ...] = ("finalize", "send")
FOLDERS: tuple[str, ...] = ("student", "school")
DELIVERY_MODES: tuple[str, ...] = ("first", "all")
RECIPIENTS: tuple[str, ...] = ("guardians", "student", "student_and_guardians", "none")
# Noark 5 journal statuses a document may be archived with (seed 000: moving notices R).
REGISTRY_STATUSES: dict[str, str] = {
    "J": "journalført",
    "R": "reservert dokument (videre saksbehandling i arkivet)",
    "F": "ferdigstilt fra saksbehandler",
    "E": "ekspedert",
    "A": "arkivert",
}
# Conditions an optional archiving waits for (seed 000, Vedlegg 2).
ARCHIVE_PRECONDITIONS: dict[str, str] = {
    "whole_school_year": "perioden må være «hele skoleåret»",
    "all_assessments_closed": "alle vurderinger må ha status «Avsluttet»",
    "grades_checked": "karakterene må være kontrollert og kvalitetssikret",
    "conduct_mark_lowered": "orden- eller atferdskarakteren er satt ned",
}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_DEADLINE = re.compile(r"^(\d{2})\.(\d{2})$")

MONTHS = (
    "januar",
    "februar",
    "mars",
    "april",
    "mai",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "desember",
)

_RECIPIENT_TEXT = {
    "guardians": "foresatte til eleven",
    "student": "eleven",
    "student_and_guardians": "eleven og foresatte",
    "none": "ingen (dokumentet sendes ikke ut)",
}
_FOLDER_TEXT = {"student": "elevmappe", "school": "skolemappe for skoleåret"}
# What a channel's `requires` (the recipient attribute it needs) means to an administrator;
# a third-party plugin's attribute not listed here is shown by its name.
_REQUIRES_TEXT = {
    "email": "e-postadresse",
    "mobile": "mobilnummer",
    "national_id": "fødselsnummer",
    "activated_at": "aktivert brukerkonto i Tavle",
    "street_address": "postadresse",
}


class DoctypeError(Exception):
    """One or more doctype files are invalid; `problems` holds "file:line: message"."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class DocField:
    """One field a document of the type carries."""

    name: str
    label: str
    type: str
    required: bool
    options: tuple[str, ...] = ()
    sensitive: bool = False
    line: int = 0


@dataclass(frozen=True)
class DocType:
    """A validated document type."""

    key: str
    title: str
    description: str
    template: str
    permission: str
    sensitive: bool
    restricted: bool
    restriction_basis: str | None
    restriction_basis_editable: bool
    channels: tuple[str, ...]
    delivery: str
    recipients: str
    archive: str
    archive_on: str | None
    folder: str | None
    registry_status: str | None
    archive_roles: tuple[str, ...]
    archive_preconditions: tuple[str, ...]
    archive_deadlines: tuple[str, ...]
    form: bool
    fields: tuple[DocField, ...]
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False)
    source: Path = field(default=Path(), compare=False)

    @property
    def permission_resource(self) -> str:
        return self.permission.split(":", 1)[0]

    @property
    def permission_action(self) -> str:
        return self.permission.split(":", 1)[1]

    @property
    def archived(self) -> bool:
        """Whether documents of this type can end up in the archive at all."""
        return self.archive != "never"

    @property
    def directory(self) -> Path:
        return self.source.parent

    def field(self, name: str) -> DocField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    def plugin_settings(self, plugin: str) -> Mapping[str, Any]:
        return self.plugins.get(plugin, {})


# --------------------------------------------------------------------------------------
# YAML with line numbers


class _Located:
    """A YAML document converted to plain Python, with the line of every key and item.

    `lines[path]` is the 1-based line of the mapping key or list item at `path`, a tuple
    like ("fields", 2, "type").
    """

    def __init__(self, value: Any, lines: dict[tuple[Any, ...], int]):
        self.value = value
        self.lines = lines

    def line(self, *path: Any) -> int:
        for end in range(len(path), -1, -1):
            found = self.lines.get(tuple(path[:end]))
            if found is not None:
                return found
        return 1


# libyaml's parser when PyYAML was built with it (several times faster; same nodes and
# marks), else the pure-Python one.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str, problems: list[tuple[int, str]]) -> _Located | None:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            problems.append((1, "the file is empty"))
            return None
        lines: dict[tuple[Any, ...], int] = {(): node.start_mark.line + 1}
        value = _convert(loader, node, (), lines, problems)
        return _Located(value, lines)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        problems.append((line, f"YAML syntax error: {error.problem or error}"))
        return None
    finally:
        loader.dispose()


def _convert(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    problems: list[tuple[int, str]],
) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = _convert(loader, key_node, path, lines, problems)
            if not isinstance(key, str):
                problems.append((line, f"keys must be text, not {key!r}"))
                continue
            if key in result:
                problems.append((line, f"duplicate key {key!r}"))
                continue
            lines[(*path, key)] = line
            result[key] = _convert(loader, value_node, (*path, key), lines, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            items.append(_convert(loader, item, (*path, index), lines, problems))
        return items
    return loader.construct_object(node, deep=True)


# --------------------------------------------------------------------------------------
# Templates


def _date_value(value: Any) -> dt.date | dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    try:
        if "T" in text or " " in text:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def format_date(value: Any) -> str:
    """ISO date (or date/datetime) -> "23. november 2026"; None -> ""; other text as is."""
    parsed = _date_value(value)
    if parsed is None:
        return "" if value is None else str(value)
    return f"{parsed.day}. {MONTHS[parsed.month - 1]} {parsed.year}"


def format_time(value: Any) -> str:
    """ "08:30" (or a time/datetime) -> "kl. 08.30"; None -> ""."""
    if value is None or value == "":
        return ""
    if isinstance(value, dt.datetime | dt.time):
        return f"kl. {value.hour:02d}.{value.minute:02d}"
    text = str(value).strip()
    match = re.match(r"^(\d{1,2})[:.](\d{2})", text)
    if not match:
        return text
    return f"kl. {int(match.group(1)):02d}.{match.group(2)}"


def format_datetime(value: Any) -> str:
    """ISO datetime -> "23. november 2026 kl. 08.30"; a bare date gives only the date."""
    parsed = _date_value(value)
    if isinstance(parsed, dt.datetime):
        return f"{format_date(parsed)} {format_time(parsed)}"
    return format_date(value)


def format_yes_no(value: Any) -> str:
    if value is None or value == "":
        return ""
    return "Ja" if value else "Nei"


def format_paragraphs(value: Any) -> Markup:
    """Multiline text -> HTML paragraphs (blank line) and line breaks, escaped."""
    if value is None or value == "":
        return Markup("")
    blocks = re.split(r"\n\s*\n", str(value).strip())
    html = []
    for block in blocks:
        lines = [escape(line) for line in block.splitlines()]
        html.append(Markup("<p>") + Markup("<br>").join(lines) + Markup("</p>"))
    return Markup("\n").join(html)


def format_lines(value: Any) -> list[str]:
    """Multiline text -> its non-empty lines (for lists in templates)."""
    if value is None:
        return []
    return [line.strip() for line in str(value).splitlines() if line.strip()]


def template_environment(directory: Path) -> jinja2.Environment:
    """A jinja2 environment for the templates in `directory`.

    HTML is autoescaped; undefined variables are errors (render_html passes every
    declared field, None when not given). Filters: `dato`, `klokkeslett`, `datotid`,
    `ja_nei`, `avsnitt` (multiline text as paragraphs) and `linjer` (list of lines).
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        autoescape=jinja2.select_autoescape(["html", "html.j2"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # An optional field left empty is None; print nothing rather than "None" in a letter.
        finalize=lambda value: "" if value is None else value,
    )
    env.filters["dato"] = format_date
    env.filters["klokkeslett"] = format_time
    env.filters["datotid"] = format_datetime
    env.filters["ja_nei"] = format_yes_no
    env.filters["avsnitt"] = format_paragraphs
    env.filters["linjer"] = format_lines
    return env


@cache
def _environment(directory: str) -> jinja2.Environment:
    return template_environment(Path(directory))


def _template_problems(
    env: jinja2.Environment, directory: Path, name: str, declared: set[str] | None
) -> list[str]:
    """Syntax errors, and (when `declared` is given) `fields.x` not declared."""
    problems, _ = _template_check(env, directory, name, declared)
    return problems


def _template_check(
    env: jinja2.Environment, directory: Path, name: str, declared: set[str] | None
) -> tuple[list[str], set[str] | None]:
    """(problems, field names the template uses). The names are None when the template
    does not parse, or reads `fields` in a way that cannot be followed statically (a loop
    over it, a computed key), so the caller cannot tell which fields go unused."""
    path = directory / name
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as error:
        return [f"{path}:1: cannot read the template: {error.strerror}"], None
    try:
        tree = env.parse(source, name, str(path))
        # Compiling finds what parsing alone does not (e.g. a misplaced {% break %}).
        env.compile(tree, name, str(path))
    except jinja2.TemplateSyntaxError as error:
        return [f"{path}:{error.lineno}: template syntax error: {error.message}"], None
    problems: list[str] = []
    # {% extends %}, {% include %} and {% import %} of a file that is not there would only
    # fail when a document is finalized.
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        target = node.template
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            if not (directory / target.value).is_file():
                problems.append(
                    f"{path}:{node.lineno}: the template refers to {target.value!r}, "
                    f"which is not in {directory}"
                )
    used: set[str] = set()
    static_targets: set[int] = set()
    # fields.items(), fields.get(...): a method of the mapping, not a field.
    methods = {
        id(call.node)
        for call in tree.find_all(nodes.Call)
        if isinstance(call.node, nodes.Getattr)
        and isinstance(call.node.node, nodes.Name)
        and call.node.node.name == "fields"
    }
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "fields"):
            continue
        if id(node) in methods:
            continue
        if isinstance(node, nodes.Getattr):
            field_name = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            field_name = node.arg.value
        else:
            continue
        static_targets.add(id(target))
        used.add(field_name)
        if declared is not None and field_name not in declared:
            problems.append(
                f"{path}:{node.lineno}: the template uses fields.{field_name}, "
                "which the doctype does not declare"
            )
    dynamic = any(
        node.name == "fields" and id(node) not in static_targets
        for node in tree.find_all(nodes.Name)
    )
    return problems, None if dynamic else used


# --------------------------------------------------------------------------------------
# Validation

_TOP_LEVEL: dict[str, tuple[type | tuple[type, ...], bool]] = {
    # key: (expected type, required)
    "key": (str, True),
    "title": (str, True),
    "description": (str, False),
    "template": (str, True),
    "permission": (str, True),
    "sensitive": (bool, True),
    "restricted": (bool, True),
    "restriction_basis": ((str, type(None)), False),
    "restriction_basis_editable": (bool, False),
    "channels": (list, True),
    "delivery": (str, False),
    "recipients": (str, True),
    "archive": (str, True),
    "archive_on": ((str, type(None)), False),
    "folder": ((str, type(None)), False),
    "registry_status": ((str, type(None)), False),
    "archive_roles": (list, False),
    "archive_preconditions": (list, False),
    "archive_deadlines": (list, False),
    "form": (bool, False),
    "fields": (list, True),
    "plugins": ((dict, type(None)), False),
}

_FIELD_KEYS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "name": (str, True),
    "label": (str, True),
    "type": (str, True),
    "required": (bool, True),
    "options": (list, False),
    "sensitive": (bool, False),
}

_TYPE_NAMES = {
    str: "text",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
    type(None): "null",
}


def _type_name(expected: type | tuple[type, ...]) -> str:
    if isinstance(expected, tuple):
        return " or ".join(_TYPE_NAMES[t] for t in expected)
    return _TYPE_NAMES[expected]


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


class _Checker:
    """Collects the problems of one doctype file."""

    def __init__(self, path: Path, doc: _Located):
        self.path = path
        self.doc = doc
        self.problems: list[str] = []

    def error(self, path: tuple[Any, ...], message: str) -> None:
        self.problems.append(f"{self.path}:{self.doc.line(*path)}: {message}")

    def check_keys(
        self,
        data: dict[str, Any],
        spec: dict[str, tuple[type | tuple[type, ...], bool]],
        at: tuple[Any, ...],
        what: str,
    ) -> None:
        for key in data:
            if key not in spec:
                self.error((*at, key), f"unknown key {key!r} in {what}")
        for key, (expected, required) in spec.items():
            if key not in data:
                if required:
                    self.error(at, f"{what} is missing the required key {key!r}")
                continue
            value = data[key]
            # bool is an int subclass; YAML gives real bools, so isinstance is enough here.
            if not isinstance(value, expected):
                self.error(
                    (*at, key), f"{key} must be {_type_name(expected)}, not {_describe(value)}"
                )

    def string_list(self, data: dict[str, Any], key: str) -> list[str]:
        """The list under `key` if every item is non-empty text; reports the others."""
        value = data.get(key)
        if not isinstance(value, list):
            return []
        good: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, str) and item.strip():
                good.append(item)
            else:
                self.error((key, index), f"{key} items must be non-empty text, not {item!r}")
        return good


def _check_doctype(
    path: Path,
    doc: _Located,
    channels: Mapping[str, ChannelInfo],
    plugin_fields: Mapping[str, Mapping[str, Any]] | None,
    roles: set[str] | None,
    env: jinja2.Environment,
) -> tuple[DocType | None, list[str]]:
    check = _Checker(path, doc)
    data = doc.value
    if not isinstance(data, dict):
        check.error((), "a doctype file must be a mapping of keys to values")
        return None, check.problems
    check.check_keys(data, _TOP_LEVEL, (), "the doctype")

    def get(key: str, default: Any = None) -> Any:
        expected = _TOP_LEVEL[key][0]
        value = data.get(key, default)
        return value if isinstance(value, expected) else default

    key = get("key")
    if key is not None:
        if key != path.stem:
            check.error(("key",), f"key {key!r} must equal the file name {path.stem!r}")
        elif not _NAME.match(key):
            check.error(("key",), f"key {key!r} must be lowercase ASCII snake_case")
    for text_key in ("title", "template", "permission"):
        if isinstance(data.get(text_key), str) and not data[text_key].strip():
            check.error((text_key,), f"{text_key} must not be empty")

    # Permission: resource:action from the policy vocabulary.
    permission = get("permission")
    if isinstance(permission, str) and permission.strip():
        resource, sep, action = permission.partition(":")
        if not sep:
            check.error(("permission",), f"permission {permission!r} must be 'resource:action'")
        elif resource not in RESOURCES:
            check.error(("permission",), f"unknown resource {resource!r} in permission")
        elif action not in RESOURCES[resource]:
            known = ", ".join(sorted(RESOURCES[resource]))
            check.error(
                ("permission",),
                f"unknown action {action!r} for resource {resource!r} (known: {known})",
            )

    sensitive = get("sensitive", False)
    restricted = get("restricted", False)
    form = get("form", False)
    basis = get("restriction_basis")
    if restricted and not (isinstance(basis, str) and basis.strip()):
        check.error(
            ("restriction_basis",) if "restriction_basis" in data else ("restricted",),
            "a restricted doctype needs a restriction_basis (e.g. "
            "'Offl. § 13 jf. fvl. § 13 første ledd nr. 1')",
        )
    if not restricted and isinstance(basis, str):
        check.error(
            ("restriction_basis",), "restriction_basis is only given when restricted is true"
        )
    if sensitive and form:
        check.error(("form",), "a form must not carry sensitive data (sensitive is true)")

    # Recipients and channels.
    recipients = get("recipients")
    if isinstance(recipients, str) and recipients not in RECIPIENTS:
        check.error(
            ("recipients",),
            f"unknown recipients {recipients!r} (one of: {', '.join(RECIPIENTS)})",
        )
    delivery = get("delivery", "first")
    if delivery not in DELIVERY_MODES:
        check.error(
            ("delivery",), f"unknown delivery {delivery!r} (one of: {', '.join(DELIVERY_MODES)})"
        )
    channel_names = check.string_list(data, "channels")
    seen: set[str] = set()
    for index, name in enumerate(data.get("channels") or []):
        if not isinstance(name, str) or not name.strip():
            continue
        if name in seen:
            check.error(("channels", index), f"channel {name!r} is listed twice")
        seen.add(name)
        info = channels.get(name)
        if info is None:
            known = ", ".join(sorted(channels)) or "none"
            check.error(("channels", index), f"unknown channel {name!r} (known: {known})")
        elif sensitive and not info.may_carry_sensitive:
            check.error(
                ("channels", index),
                f"a sensitive doctype must not be sent by {name!r}, which may not carry "
                "sensitive personal data",
            )
    if isinstance(data.get("channels"), list):
        if recipients == "none" and channel_names:
            check.error(("channels",), "channels must be [] when recipients is none")
        if recipients in RECIPIENTS and recipients != "none" and not data["channels"]:
            check.error(("channels",), "channels may be [] only when recipients is none")

    # Archive rule.
    archive = get("archive")
    if isinstance(archive, str) and archive not in ARCHIVE_MODES:
        check.error(
            ("archive",), f"unknown archive {archive!r} (one of: {', '.join(ARCHIVE_MODES)})"
        )
        archive = None
    archive_on = get("archive_on")
    if archive_on is not None:
        if archive_on not in ARCHIVE_ON:
            check.error(
                ("archive_on",),
                f"unknown archive_on {archive_on!r} (one of: {', '.join(ARCHIVE_ON)})",
            )
        elif archive is not None and archive != "always":
            check.error(("archive_on",), "archive_on is only given when archive is always")
        elif archive_on == "send" and not channel_names:
            check.error(("archive_on",), "archive_on: send needs at least one channel")
    elif archive == "always":
        archive_on = "finalize"
    folder = get("folder")
    if folder is not None and folder not in FOLDERS:
        check.error(("folder",), f"unknown folder {folder!r} (one of: {', '.join(FOLDERS)})")
    status = get("registry_status")
    if status is not None and status not in REGISTRY_STATUSES:
        check.error(
            ("registry_status",),
            f"unknown registry_status {status!r} (one of: {', '.join(REGISTRY_STATUSES)})",
        )
    if archive == "never":
        for name, value in (("folder", folder), ("registry_status", status)):
            if value is not None:
                check.error((name,), f"{name} must be null when archive is never")
    elif archive is not None:
        for name, value in (("folder", folder), ("registry_status", status)):
            if value is None:
                where = (name,) if name in data else ("archive",)
                check.error(where, f"{name} is required when archive is {archive}")
    archive_roles = check.string_list(data, "archive_roles")
    if archive_roles and archive is not None and archive != "optional":
        check.error(("archive_roles",), "archive_roles is only given when archive is optional")
    for index, role in enumerate(data.get("archive_roles") or []):
        if roles is not None and isinstance(role, str) and role not in roles:
            check.error(("archive_roles", index), f"unknown role {role!r} in archive_roles")
    preconditions = check.string_list(data, "archive_preconditions")
    for index, name in enumerate(data.get("archive_preconditions") or []):
        if isinstance(name, str) and name not in ARCHIVE_PRECONDITIONS:
            known = ", ".join(ARCHIVE_PRECONDITIONS)
            check.error(
                ("archive_preconditions", index),
                f"unknown archive precondition {name!r} (one of: {known})",
            )
    if preconditions and archive == "never":
        check.error(("archive_preconditions",), "a doctype never archived has no preconditions")
    deadlines = check.string_list(data, "archive_deadlines")
    if deadlines and archive is not None and archive != "optional":
        check.error(
            ("archive_deadlines",), "archive_deadlines is only given when archive is optional"
        )
    for index, deadline in enumerate(data.get("archive_deadlines") or []):
        if not isinstance(deadline, str):
            continue
        match = _DEADLINE.match(deadline)
        valid = False
        if match:
            try:
                dt.date(2024, int(match.group(2)), int(match.group(1)))
                valid = True
            except ValueError:
                pass
        if not valid:
            check.error(
                ("archive_deadlines", index),
                f"archive deadline {deadline!r} must be a day and month 'DD.MM' (quote it)",
            )

    # Fields.
    fields: list[DocField] = []
    names: set[str] = set()
    for index, raw in enumerate(
        data.get("fields") or [] if isinstance(data.get("fields"), list) else []
    ):
        at = ("fields", index)
        if not isinstance(raw, dict):
            check.error(at, "a field must be a mapping with name, label, type and required")
            continue
        check.check_keys(raw, _FIELD_KEYS, at, "the field")
        name = raw.get("name")
        if isinstance(name, str):
            if not _NAME.match(name):
                check.error((*at, "name"), f"field name {name!r} must be lowercase snake_case")
            elif name in names:
                check.error((*at, "name"), f"duplicate field name {name!r}")
            names.add(name)
        if isinstance(raw.get("label"), str) and not raw["label"].strip():
            check.error((*at, "label"), "label must not be empty")
        ftype = raw.get("type")
        if isinstance(ftype, str) and ftype not in FIELD_TYPES:
            known = ", ".join(sorted(FIELD_TYPES))
            check.error((*at, "type"), f"unknown field type {ftype!r} (one of: {known})")
        options = raw.get("options")
        if ftype == "choice":
            if not options:
                check.error(at, "a choice field needs a non-empty list of options")
            elif isinstance(options, list):
                for i, option in enumerate(options):
                    if not isinstance(option, str) or not option.strip():
                        check.error(
                            (*at, "options", i),
                            f"options must be text (quote yes/no/on/off), not {option!r}",
                        )
                if len(set(map(str, options))) != len(options):
                    check.error((*at, "options"), "options must be unique")
        elif "options" in raw:
            check.error((*at, "options"), "options are only given for choice fields")
        field_sensitive = raw.get("sensitive", False)
        if field_sensitive is True and form:
            check.error((*at, "sensitive"), "a form must not have sensitive fields")
        elif field_sensitive is True and not sensitive:
            check.error(
                (*at, "sensitive"), "a sensitive field needs the doctype to be sensitive too"
            )
        if (
            isinstance(name, str)
            and isinstance(raw.get("label"), str)
            and isinstance(ftype, str)
            and isinstance(raw.get("required"), bool)
        ):
            fields.append(
                DocField(
                    name=name,
                    label=raw["label"],
                    type=ftype,
                    required=raw["required"],
                    options=tuple(str(o) for o in options) if isinstance(options, list) else (),
                    sensitive=field_sensitive is True,
                    line=doc.line(*at),
                )
            )

    # Plugin settings.
    plugins: dict[str, dict[str, Any]] = {}
    for name, settings in (get("plugins") or {}).items():
        if not isinstance(settings, dict):
            check.error(("plugins", name), f"settings for plugin {name!r} must be a mapping")
            continue
        if plugin_fields is not None:
            if name not in plugin_fields:
                known = ", ".join(sorted(plugin_fields)) or "none"
                check.error(
                    ("plugins", name),
                    f"unknown plugin {name!r} (plugins with doctype settings: {known})",
                )
                continue
            for setting in settings:
                if setting not in plugin_fields[name]:
                    known = ", ".join(sorted(plugin_fields[name])) or "none"
                    check.error(
                        ("plugins", name, setting),
                        f"unknown setting {setting!r} for plugin {name!r} (known: {known})",
                    )
        plugins[name] = dict(settings)

    # Template: exists, compiles, and uses only declared fields.
    template = get("template")
    if isinstance(template, str) and template.strip():
        template_path = path.parent / template
        if "/" in template or "\\" in template or template.startswith("."):
            check.error(
                ("template",), f"template {template!r} must be a file name in {path.parent}"
            )
        elif not template_path.is_file():
            check.error(("template",), f"template file {template!r} not found in {path.parent}")
        else:
            template_problems, used = _template_check(env, path.parent, template, names)
            check.problems.extend(template_problems)
            # A required field the letter never prints is almost always a template that
            # drifted from its doctype (a renamed field): the author must fill in a value
            # that nobody will ever see.
            if used is not None and not template_problems:
                for f in fields:
                    if f.required and f.name not in used:
                        check.problems.append(
                            f"{path}:{f.line}: required field {f.name!r} is never used by "
                            f"the template {template!r}"
                        )

    if check.problems:
        return None, check.problems
    return (
        DocType(
            key=key,
            title=data["title"],
            description=get("description", "") or "",
            template=template,
            permission=permission,
            sensitive=sensitive,
            restricted=restricted,
            restriction_basis=basis,
            restriction_basis_editable=get("restriction_basis_editable", True),
            channels=tuple(channel_names),
            delivery=delivery,
            recipients=recipients,
            archive=archive,
            archive_on=archive_on,
            folder=folder,
            registry_status=status,
            archive_roles=tuple(archive_roles),
            archive_preconditions=tuple(preconditions),
            archive_deadlines=tuple(deadlines),
            form=form,
            fields=tuple(fields),
            plugins=plugins,
            source=path,
        ),
        [],
    )


def load_doctypes(
    directory: Path,
    channels: Mapping[str, ChannelInfo],
    plugin_fields: Mapping[str, Mapping[str, Any]] | None = None,
    roles: set[str] | None = None,
) -> dict[str, DocType]:
    """Load and validate every `*.yaml` in `directory`; the doctypes by key.

    `channels` are the channels the loaded plugins provide (`core.plugins.channels()`).
    `plugin_fields` is the merged `doctype_fields()` hook result ({plugin: {setting:
    description}}); None skips checking plugin settings. `roles` are the role names of the
    policy; None skips checking `archive_roles`. Raises `DoctypeError` with every problem
    found, each "file:line: message".
    """
    directory = Path(directory)
    problems: list[str] = []
    doctypes: dict[str, DocType] = {}
    env = template_environment(directory)
    files = sorted(p for p in directory.glob("*.yaml") if p.is_file()) if directory.is_dir() else []
    if not files:
        raise DoctypeError([f"{directory}:0: no doctype files (*.yaml) found"])
    # The shared templates (the base letter, macro files): "_*.html.j2". A syntax error
    # there would otherwise only show when a document is finalized.
    for shared in sorted(directory.glob("_*.j2")):
        problems.extend(_template_problems(env, directory, shared.name, None))
    for path in files:
        yaml_problems: list[tuple[int, str]] = []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"{path}:0: cannot read the file: {error}")
            continue
        doc = _compose(text, yaml_problems)
        problems.extend(f"{path}:{line}: {message}" for line, message in yaml_problems)
        if doc is None or yaml_problems:
            continue
        doctype, found = _check_doctype(path, doc, channels, plugin_fields, roles, env)
        problems.extend(found)
        if doctype is not None:
            doctypes[doctype.key] = doctype
    if problems:
        raise DoctypeError(problems)
    return doctypes


def plugin_doctype_fields(manager: Any = None) -> dict[str, dict[str, Any]]:
    """Merge every plugin's `doctype_fields()` answer into {plugin: {setting: text}}."""
    if manager is None:
        from core.plugins import plugin_manager

        manager = plugin_manager()
    merged: dict[str, dict[str, Any]] = {}
    for answer in manager.hook.doctype_fields():
        for plugin, settings in (answer or {}).items():
            merged.setdefault(plugin, {}).update(settings or {})
    return merged


def policy_roles(path: Path) -> set[str]:
    """The role names the `p` lines of a policy file (roles.csv) give permissions to."""
    from core.access.policy import read_policy_lines

    lines, _ = read_policy_lines(path)
    return {line.values[0] for line in lines if line.kind == "p"}


# --------------------------------------------------------------------------------------
# Rendering


def render_html(doctype: DocType, context: Mapping[str, Any]) -> str:
    """Render a document of `doctype` to HTML with its template.

    `context` holds `document` (title, created_at), `fields` (values by name), `student`
    (name, birth_date, grade, class_name), `school` (name), `municipality` (name),
    `author` (name), `signer` (name, signed_at; None for drafts) and `restriction_basis`
    (None or text). Every declared field not given is None; `student`, `author`, `signer`
    default to None, `restriction_basis` to the doctype's default when restricted.
    """
    values: dict[str, Any] = {f.name: None for f in doctype.fields}
    values.update(context.get("fields") or {})
    full: dict[str, Any] = {
        "document": {"title": doctype.title, "created_at": None},
        "student": None,
        "school": None,
        "municipality": None,
        "author": None,
        "signer": None,
        "restriction_basis": doctype.restriction_basis if doctype.restricted else None,
    }
    full.update(context)
    full["fields"] = values
    full["doctype"] = doctype
    env = _environment(str(doctype.directory.resolve()))
    return env.get_template(doctype.template).render(full)


_SAMPLE_DATE = dt.date(2026, 11, 23)


def sample_fields(doctype: DocType) -> dict[str, Any]:
    """Deterministic sample values for every field (tests, `doctypes check --render`)."""
    values: dict[str, Any] = {}
    for index, f in enumerate(doctype.fields):
        if f.type == "text":
            values[f.name] = f"Eksempel: {f.label.lower()}"
        elif f.type == "multiline":
            values[f.name] = f"Første linje om {f.label.lower()}.\nAndre linje."
        elif f.type == "date":
            values[f.name] = (_SAMPLE_DATE + dt.timedelta(days=index)).isoformat()
        elif f.type == "time":
            values[f.name] = "08:30"
        elif f.type == "datetime":
            values[f.name] = f"{(_SAMPLE_DATE + dt.timedelta(days=index)).isoformat()}T08:30"
        elif f.type == "number":
            values[f.name] = 3
        elif f.type == "boolean":
            values[f.name] = True
        elif f.type == "choice":
            values[f.name] = f.options[0] if f.options else None
        elif f.type == "email":
            values[f.name] = "foresatt@example.no"
    return values


def sample_context(doctype: DocType, *, signed: bool = True) -> dict[str, Any]:
    """A complete rendering context with sample values (student, school, signer...)."""
    return {
        "document": {"title": doctype.title, "created_at": "2026-11-20T10:15:00"},
        "fields": sample_fields(doctype),
        "student": {
            "name": "Ola Nordmann",
            "birth_date": "2016-03-14",
            "grade": 5,
            "class_name": "5A",
        },
        "school": {"name": "Eksempel skole"},
        "municipality": {"name": "Eksempel kommune"},
        "author": {"name": "Kari Lærer"},
        "signer": {"name": "Per Rektor", "signed_at": "2026-11-20T11:00:00"} if signed else None,
        "restriction_basis": doctype.restriction_basis if doctype.restricted else None,
    }


# --------------------------------------------------------------------------------------
# Routing description


def _money(amount: Decimal) -> str:
    return f"{amount:.2f}".replace(".", ",")


def route_description(doctype: DocType, channels: Mapping[str, ChannelInfo]) -> list[str]:
    """Norwegian lines describing how a document of this type travels and is archived."""
    lines = [f"{doctype.title} ({doctype.key})"]
    lines.append(f"Opprettes av: den som har {doctype.permission} for eleven")
    lines.append(f"Mottakere: {_RECIPIENT_TEXT[doctype.recipients]}")
    if doctype.channels:
        if doctype.delivery == "first":
            lines.append(
                "Sendes via den første kanalen i listen som når hver mottaker, i denne rekkefølgen:"
            )
        else:
            lines.append("Sendes via alle kanalene i listen som når mottakeren:")
        for number, name in enumerate(doctype.channels, start=1):
            info = channels.get(name)
            if info is None:
                lines.append(f"  {number}. {name} (ukjent kanal)")
                continue
            cost = (
                "gratis"
                if info.cost_per_unit == 0
                else f"{_money(info.cost_per_unit)} kr per {info.unit}"
            )
            needs = (
                f", krever {_REQUIRES_TEXT.get(info.requires, info.requires)}"
                if info.requires
                else ""
            )
            lines.append(f"  {number}. {info.title} ({name}): {cost}{needs}")
    else:
        lines.append("Sendes ikke ut: dokumentet blir liggende på eleven i Tavle")
    if doctype.sensitive:
        lines.append(
            "Inneholder sensitive personopplysninger: sendes bare via kanaler som tåler det"
        )
    if doctype.form:
        lines.append("Skjema: kan ikke inneholde sensitive opplysninger")
    if doctype.restricted:
        lines.append(f"Unntatt offentlighet: ja, {doctype.restriction_basis}")
    else:
        lines.append("Unntatt offentlighet: nei")
    if doctype.restriction_basis_editable:
        lines.append("Den som oppretter dokumentet kan endre unntakshjemmelen")
    if doctype.archive == "never":
        lines.append("Arkivering: aldri")
    else:
        if doctype.archive == "always":
            when = "ferdigstilles" if doctype.archive_on == "finalize" else "sendes"
            lines.append(f"Arkivering: alltid, automatisk når dokumentet {when}")
        else:
            who = ", ".join(doctype.archive_roles) or "den som har tilgang til dokumentet"
            lines.append(f"Arkivering: kan velges («send til arkiv» hakes av av {who})")
            if doctype.archive_deadlines:
                lines.append(
                    "Frist for arkivering: "
                    + ", ".join(_deadline_text(d) for d in doctype.archive_deadlines)
                )
        for name in doctype.archive_preconditions:
            lines.append(f"Forutsetning for arkivering: {ARCHIVE_PRECONDITIONS[name]}")
        assert doctype.folder is not None and doctype.registry_status is not None
        lines.append(f"Arkivmappe: {_FOLDER_TEXT[doctype.folder]}")
        lines.append(
            f"Journalstatus: {doctype.registry_status} "
            f"({REGISTRY_STATUSES[doctype.registry_status]})"
        )
    for plugin, settings in doctype.plugins.items():
        text = ", ".join(f"{k}={v}" for k, v in settings.items())
        lines.append(f"Innstillinger for {plugin}: {text}")
    return lines


def _deadline_text(deadline: str) -> str:
    day, month = deadline.split(".")
    return f"{int(day)}. {MONTHS[int(month) - 1]}"


def iter_problems(error: DoctypeError) -> Iterable[str]:
    """The problems of a DoctypeError (for CLIs printing one per line)."""
    return iter(error.problems)
