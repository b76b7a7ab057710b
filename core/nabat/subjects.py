"""Subjects: dot-separated names with NATS wildcard semantics.

An event's bus subject is its CloudEvents ``type`` (``camera.health.offline``). Patterns use
``*`` for exactly one token and ``>`` for one or more trailing tokens, exactly as NATS does, so
a NATS JetStream backend maps subscriptions one to one.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["SubjectError", "compile_pattern", "matches", "validate_pattern", "validate_subject"]

# A token is what NATS allows minus whitespace and wildcards; we add no stricter rule so that
# foreign CloudEvents types such as ``com.example.object.deleted.v2`` pass through untouched.
_TOKEN = re.compile(r"[^\s.*>]+")


class SubjectError(ValueError):
    """A subject or pattern is malformed; the message says which and why."""


def validate_subject(subject: str) -> str:
    """Return ``subject`` if it is a concrete subject (no wildcards), else raise SubjectError."""
    if not subject:
        raise SubjectError("must not be empty")
    for token in subject.split("."):
        if not token:
            raise SubjectError(
                f"subject {subject!r} has an empty token (leading, trailing or '..')"
            )
        if token in ("*", ">"):
            raise SubjectError(f"subject {subject!r}: wildcard {token!r} is only for patterns")
        if not _TOKEN.fullmatch(token):
            raise SubjectError(
                f"subject {subject!r}: token {token!r} may not contain whitespace, '*' or '>'"
            )
    return subject


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid subscription pattern, else raise SubjectError."""
    if not pattern:
        raise SubjectError("pattern is empty")
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if token == "*":
            continue
        if token == ">":
            if i != len(tokens) - 1:
                raise SubjectError(f"pattern {pattern!r}: '>' is only allowed as the last token")
            continue
        if not token:
            raise SubjectError(f"pattern {pattern!r} has an empty token")
        if not _TOKEN.fullmatch(token):
            raise SubjectError(
                f"pattern {pattern!r}: token {token!r} may not contain whitespace, or '*' or"
                " '>' beside other characters"
            )
    return pattern


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a NATS pattern to an anchored regular expression (cached)."""
    validate_pattern(pattern)
    parts: list[str] = []
    for token in pattern.split("."):
        if token == "*":
            parts.append(r"[^.]+")
        elif token == ">":
            parts.append(r"[^.]+(?:\.[^.]+)*")
        else:
            parts.append(re.escape(token))
    return re.compile(r"\.".join(parts))


def matches(pattern: str, subject: str) -> bool:
    """True when ``subject`` matches ``pattern`` under NATS rules."""
    if pattern == subject:
        return True
    return compile_pattern(pattern).fullmatch(subject) is not None
