"""Loading, validating and querying the Casbin policy files.

`Policy` holds one Casbin enforcer over policies/model.conf and policies/roles.csv. The
enforcer answers role-level questions (may ROLE do ACTION on RESOURCE?) with the role
hierarchy (g2) applied; `scopes()` returns the scopes of every matching line, which
core/access/scopes.py turns into SQL.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import casbin
from casbin.model import Model
from casbin.persist.adapter import Adapter

from core.access.vocabulary import RESOURCES, ROLE_GRANT_ACTION, ROLE_GRANT_PREFIX, SCOPES

ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class PolicyError(Exception):
    """A problem in a policy file, pointing at the file and line."""

    def __init__(self, problems: list[PolicyProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class PolicyProblem:
    file: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True)
class PolicyLine:
    """One `p` or `g2` line of roles.csv, with where it came from (for `policy explain`)."""

    kind: str  # "p" or "g2"
    values: tuple[str, ...]
    file: Path
    line: int

    def __str__(self) -> str:
        return ", ".join((self.kind, *self.values))


def read_policy_lines(path: Path) -> tuple[list[PolicyLine], list[PolicyProblem]]:
    """Parse roles.csv, keeping line numbers and reporting every malformed line."""
    lines: list[PolicyLine] = []
    problems: list[PolicyProblem] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        return [], [PolicyProblem(path, 0, f"cannot read the file: {error.strerror}")]
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [f.strip() for f in next(csv.reader([stripped], skipinitialspace=True))]
        kind, values = fields[0], tuple(fields[1:])
        if kind == "p":
            if len(values) != 4:
                problems.append(
                    PolicyProblem(
                        path,
                        number,
                        f"a p line has 4 values (role, resource, action, "
                        f"scope), this one has {len(values)}",
                    )
                )
                continue
        elif kind == "g2":
            if len(values) != 2:
                problems.append(
                    PolicyProblem(path, number, "a g2 line has 2 values (role, inherited role)")
                )
                continue
        else:
            problems.append(
                PolicyProblem(path, number, f"unknown line type {kind!r} (expected p or g2)")
            )
            continue
        lines.append(PolicyLine(kind, values, path, number))
    return lines, problems


def validate_policy_lines(lines: list[PolicyLine]) -> list[PolicyProblem]:
    """Unknown resources, actions, scopes and roles are errors naming file and line."""
    problems: list[PolicyProblem] = []
    roles = {line.values[0] for line in lines if line.kind == "p"}
    seen: dict[tuple[str, ...], int] = {}
    for line in lines:
        if line.kind == "p":
            role, resource, action, scope = line.values
            if not ROLE_NAME.match(role):
                problems.append(
                    PolicyProblem(
                        line.file,
                        line.line,
                        f"role name {role!r} must be lowercase letters, digits and _",
                    )
                )
            if resource.startswith(ROLE_GRANT_PREFIX):
                granted = resource.removeprefix(ROLE_GRANT_PREFIX)
                if granted not in roles:
                    problems.append(
                        PolicyProblem(
                            line.file,
                            line.line,
                            f"unknown role {granted!r} in {resource!r}: it has no p line "
                            "in the policy",
                        )
                    )
                if action != ROLE_GRANT_ACTION:
                    problems.append(
                        PolicyProblem(
                            line.file,
                            line.line,
                            f"unknown action {action!r} for {resource!r} "
                            f"(allowed: {ROLE_GRANT_ACTION})",
                        )
                    )
            elif resource not in RESOURCES:
                problems.append(
                    PolicyProblem(line.file, line.line, f"unknown resource {resource!r}")
                )
            elif action not in RESOURCES[resource]:
                allowed = ", ".join(sorted(RESOURCES[resource]))
                problems.append(
                    PolicyProblem(
                        line.file,
                        line.line,
                        f"unknown action {action!r} for {resource!r} (allowed: {allowed})",
                    )
                )
            if scope not in SCOPES:
                problems.append(
                    PolicyProblem(
                        line.file,
                        line.line,
                        f"unknown scope {scope!r} (allowed: {', '.join(SCOPES)})",
                    )
                )
            key = line.values
            if key in seen:
                problems.append(
                    PolicyProblem(line.file, line.line, f"duplicate of line {seen[key]}")
                )
            seen[key] = line.line
        else:
            for role in line.values:
                if role not in roles:
                    problems.append(
                        PolicyProblem(
                            line.file,
                            line.line,
                            f"unknown role {role!r}: it has no p line in the policy",
                        )
                    )
    return problems


class _ValidatedLinesAdapter(Adapter):  # type: ignore[misc]
    """A read-only Casbin adapter serving lines already parsed and validated."""

    def __init__(self, lines: list[PolicyLine]):
        self._lines = lines

    def load_policy(self, model: Model) -> None:
        for line in self._lines:
            model.add_policy("p" if line.kind == "p" else "g", line.kind, list(line.values))


@cache
def _model_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


class Policy:
    """The loaded policy. Immutable: reload by building a new one (`Policy.load`)."""

    def __init__(self, model_path: Path, policy_path: Path, lines: list[PolicyLine]):
        self.model_path = model_path
        self.policy_path = policy_path
        self.lines = lines
        model = casbin.Enforcer.new_model(text=_model_text(model_path))
        self._enforcer = casbin.Enforcer(model, _ValidatedLinesAdapter(lines))
        self._scopes: dict[tuple[str, str, str], frozenset[str]] = {}
        self.roles = frozenset(line.values[0] for line in lines if line.kind == "p")

    @classmethod
    def load(cls, directory: Path) -> Policy:
        """Read and validate `directory`/model.conf and roles.csv; raise PolicyError."""
        model_path, policy_path = directory / "model.conf", directory / "roles.csv"
        problems: list[PolicyProblem] = []
        if not model_path.is_file():
            problems.append(PolicyProblem(model_path, 0, "the Casbin model file is missing"))
        lines, read_problems = read_policy_lines(policy_path)
        problems += read_problems + validate_policy_lines(lines)
        if problems:
            raise PolicyError(problems)
        try:
            return cls(model_path, policy_path, lines)
        except Exception as error:  # casbin reports model syntax errors as plain exceptions
            raise PolicyError([PolicyProblem(model_path, 0, f"invalid model: {error}")]) from error

    def allows(self, role: str, resource: str, action: str) -> bool:
        return bool(self._enforcer.enforce(role, resource, action))

    def roles_of(self, role: str) -> list[str]:
        """The role itself and every role it inherits through g2, transitively."""
        found = [role]
        manager = self._enforcer.get_role_manager()
        rm = self._enforcer.rm_map.get("g2", manager)
        queue = [role]
        while queue:
            for parent in rm.get_roles(queue.pop()):
                if parent not in found:
                    found.append(parent)
                    queue.append(parent)
        return found

    def scopes(self, role: str, resource: str, action: str) -> frozenset[str]:
        """Every scope at which `role` may do `action` on `resource` (empty: not at all)."""
        key = (role, resource, action)
        cached = self._scopes.get(key)
        if cached is None:
            cached = frozenset(
                line.values[3] for line in self.matching_lines(role, resource, action)
            )
            self._scopes[key] = cached
        return cached

    def matching_lines(self, role: str, resource: str, action: str) -> list[PolicyLine]:
        """The p lines that let `role` (or a role it inherits) do `action` on `resource`."""
        if not self.allows(role, resource, action):
            return []
        inherited = set(self.roles_of(role))
        return [
            line
            for line in self.lines
            if line.kind == "p"
            and line.values[0] in inherited
            and line.values[1] == resource
            and line.values[2] == action
        ]
