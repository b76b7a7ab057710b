"""CAP 1.2 XML (OASIS Common Alerting Protocol) to and from :class:`~nabat.interfaces.Alert`.

* :func:`parse_cap` ``(xml) -> Alert`` and :func:`to_cap` ``(alert) -> bytes``, both validated
  against the OASIS schema and the spec's rules; either raises :class:`CapError` (a
  ``ValueError``) whose ``problems`` are :class:`CapProblem` ``(path, line, reason)``.
* :func:`reference_to` ``(alert)`` — the ``sender,identifier,sent`` triple by which another
  message (an Update, a Cancel) refers to this one, exactly as :func:`to_cap` writes it;
  :func:`parse_references` reads a ``<references>`` text back into :class:`Reference`\\s.
* :func:`format_datetime` — a datetime as CAP writes it (whole seconds, ``-00:00`` for UTC).

The details (what is refused, security limits) are in :mod:`nabat.cap`'s documentation.
"""

from __future__ import annotations

from ..cap import (
    CAP_NAMESPACE,
    CapError,
    CapProblem,
    Reference,
    format_datetime,
    parse_cap,
    parse_references,
    reference_to,
    to_cap,
)

__all__ = [
    "CAP_NAMESPACE",
    "CapError",
    "CapProblem",
    "Reference",
    "format_datetime",
    "parse_cap",
    "parse_references",
    "reference_to",
    "to_cap",
]
