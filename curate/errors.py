"""Exception types with the places users need to see: file, line, step, field."""

from __future__ import annotations

from dataclasses import dataclass


class CurateError(Exception):
    """Base class for errors curate reports to users as one line."""


class UsageError(CurateError, ValueError):
    """Bad user input (a recipe, a path, a config value, unreadable data): CLI exit 2."""


@dataclass(frozen=True)
class Problem:
    """One validation problem, located as precisely as we know."""

    message: str
    file: str | None = None
    line: int | None = None
    step: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        subject = ""
        if self.step:
            subject = f"step '{self.step}' "
        if self.field:
            subject += f"{self.field}: "
        elif subject:
            subject = subject.rstrip() + ": "
        line = f"{where}{subject}{self.message}"
        return line.replace("\r", "\\r").replace("\n", "\\n")  # one problem, one line, even with user text


class RecipeError(UsageError):
    """One or more problems in a recipe, all reported together."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StepFailed(CurateError):
    """A step raised while running: CLI exit 1."""

    def __init__(self, step: str, cause: BaseException):
        self.step = step
        self.cause = cause
        super().__init__(f"step '{step}' failed: {type(cause).__name__}: {cause}")


class UnknownName(UsageError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0])


class RunLocked(UsageError):
    """Another process holds the run directory's lock."""
