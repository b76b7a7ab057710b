"""The error :func:`nabat.cap.parse_cap` and :func:`nabat.cap.to_cap` raise for invalid CAP."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

__all__ = ["CapError", "CapProblem"]


class CapProblem(msgspec.Struct, frozen=True):
    """One thing wrong with a CAP document.

    ``path`` locates the element XPath-style, counting from 1, with an index on the elements
    CAP lets repeat (``/alert/info[1]/area[2]/circle[1]``); ``/`` is the document as a whole and
    a path may name a required element that is absent. ``line`` is the line in the document
    (``None`` when the problem has no place in it, e.g. an oversized input).
    """

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path} (line {self.line})"
        return f"{where}: {self.reason}"


class CapError(ValueError):
    """Invalid CAP. ``problems`` lists every problem found, in document order."""

    def __init__(
        self, problems: Iterable[CapProblem], summary: str = "not a valid CAP 1.2 message"
    ) -> None:
        self.problems: list[CapProblem] = list(problems)
        count = len(self.problems)
        listing = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{summary} ({count} problem{'s' if count != 1 else ''}):\n{listing}")
