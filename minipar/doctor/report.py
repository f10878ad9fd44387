"""What the doctor prints: one line per check, then the verdict that decides the exit code."""
from __future__ import annotations

OK, WARN, FAIL = "OK", "WARN", "FAIL"

CAN_REGISTER = "engines can register"
CANNOT_REGISTER = "engines cannot register"
NO_VERDICT = "no verdict"
"""The verdict lines' openings: a submitted doctor's output is read back by them."""


class Finding:
    """One check's outcome: its status, what was seen, and (on FAIL or WARN) what to change."""

    __slots__ = ("status", "check", "seen", "fix")

    def __init__(self, status: str, check: str, seen: str, fix: str = ""):
        self.status = status
        self.check = check
        self.seen = seen
        self.fix = fix

    def line(self) -> str:
        text = "%s %s: %s" % (self.status, self.check, self.seen)
        if self.fix and self.status != OK:
            text += " -- fix: " + self.fix
        return text

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def __repr__(self) -> str:
        return "Finding(%r)" % self.line()


def verdict(findings, route: str = "") -> str:
    """The last line: engines can register (``route`` says how, e.g. through a tunnel), or the
    first failure, which is the one to fix first (later ones often follow from it)."""
    for finding in findings:
        if finding.failed:
            return "%s: %s: %s" % (CANNOT_REGISTER, finding.check, finding.seen)
    return CAN_REGISTER + (" (%s)" % route if route else "")


def exit_code(verdict_line: str) -> int:
    """0 when engines can register, 1 otherwise (also when no verdict could be reached)."""
    return 0 if verdict_line.startswith(CAN_REGISTER) else 1


def verdict_in(text: str) -> str:
    """The verdict line in a doctor's output (a batch job's), or "" when it has none."""
    for line in reversed(text.splitlines()):
        if line.startswith((CAN_REGISTER, CANNOT_REGISTER)):
            return line
    return ""
