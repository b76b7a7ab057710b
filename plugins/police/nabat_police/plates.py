"""Russian licence plates: one spelling for matching, and the hotlist file.

Plates are written with the 12 Cyrillic letters that look like Latin ones (А В Е К М Н О Р С
Т У Х); recognition systems and lists mix the two alphabets. :func:`normalize` maps both to
one form (Latin), upper case, without spaces, dashes or dots, so ``а 123 вс 23`` and
``A123BC23`` match.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import msgspec

__all__ = ["Hotlist", "HotlistEntry", "HotlistError", "normalize"]

_LOOKALIKE = str.maketrans("АВЕКМНОРСТУХ", "ABEKMHOPCTYX")
_DROP = str.maketrans("", "", " -._\t")


def normalize(plate: str) -> str:
    return plate.upper().translate(_LOOKALIKE).translate(_DROP)


class HotlistEntry(msgspec.Struct, frozen=True, kw_only=True):
    plate: str
    """As written in the list."""
    reason: str
    priority: str = "normal"


class HotlistError(ValueError):
    """Problems of a hotlist file, each ``file:line: reason``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:10]) + (" …" if len(problems) > 10 else ""))
        self.problems = problems


class Hotlist:
    """Plates wanted, by their normalized spelling. CSV columns ``plate;reason;priority``
    (priority ``normal`` or ``high``; ``;`` or ``,``; a header line)."""

    def __init__(self, entries: dict[str, HotlistEntry]) -> None:
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def match(self, plate: str) -> HotlistEntry | None:
        return self.entries.get(normalize(plate))

    @classmethod
    def load(cls, path: str | Path) -> Hotlist:
        text = Path(path).read_text(encoding="utf-8-sig")
        name = Path(path).name
        delimiter = (
            ";" if text.split("\n", 1)[0].count(";") >= text.split("\n", 1)[0].count(",") else ","
        )
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
        problems: list[str] = []
        if not rows or [c.strip().lower() for c in rows[0]][:2] != ["plate", "reason"]:
            raise HotlistError([f"{name}:1: the header must be plate;reason[;priority]"])
        entries: dict[str, HotlistEntry] = {}
        for line, row in enumerate(rows[1:], start=2):
            if not any(c.strip() for c in row):
                continue
            plate = row[0].strip() if row else ""
            reason = row[1].strip() if len(row) > 1 else ""
            priority = (row[2].strip().lower() if len(row) > 2 else "") or "normal"
            key = normalize(plate)
            if not key or not key.isalnum() or len(key) > 12:
                problems.append(f"{name}:{line}: plate {plate!r} is not a licence plate")
            elif not reason:
                problems.append(f"{name}:{line}: reason is empty")
            elif priority not in ("normal", "high"):
                problems.append(f"{name}:{line}: priority must be normal or high")
            else:
                entries[key] = HotlistEntry(plate=plate, reason=reason, priority=priority)
        if problems:
            raise HotlistError(problems)
        return cls(entries)
