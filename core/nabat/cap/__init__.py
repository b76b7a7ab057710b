"""CAP 1.2: read and write OASIS Common Alerting Protocol XML as the core :class:`Alert`.

* :func:`parse_cap` (``bytes``/``str`` → :class:`~nabat.interfaces.alerting.Alert`) and
  :func:`to_cap` (``Alert`` → UTF-8 ``bytes``) for namespace
  ``urn:oasis:names:tc:emergency:cap:1.2``, every element of CAP 1.2 except XML signatures
  (dropped on reading with a ``cap.unmapped`` warning: one cannot survive re-serialization).
  CAP 1.0/1.1 are refused by name.
* Both directions validate against the OASIS schema (``CAP-v1.2.xsd``, shipped here, loaded
  once) and against the spec's rules the schema cannot express: ``identifier``/``sender``
  without spaces, commas, ``<`` or ``&``; ``references`` as ``sender,identifier,sent`` triples;
  ``restriction`` for Restricted and ``addresses`` for Private alerts; real calendar dates;
  polygons of ≥ 4 WGS 84 pairs, closed; circles ``lat,lon radius_km`` in range; ``ceiling``
  only with ``altitude`` and not below it; ``size`` ≥ 0.
* Datetimes are written ``2003-04-02T14:39:01-05:00``: whole seconds (fractions are dropped),
  offset with a colon, UTC as ``-00:00``, never ``Z`` (CAP 1.2 §3.3.2). An absent ``language``
  reads as ``en-US`` (the CAP default) and is always written out.

References: :func:`reference_to` writes the ``sender,identifier,sent`` triple of a message as
:func:`to_cap` wrote it (byte for byte: receivers match references as text);
:func:`parse_references` reads a ``<references>`` text into :class:`Reference` triples.

Security: input over ``max_bytes`` (1 MiB by default) is refused before parsing; lxml parses
with DTD loading, entity expansion and network access off and libxml2's size/depth limits on;
any ``<!DOCTYPE>`` is refused outright, so nothing it names is read or fetched.

Errors: :class:`CapError` (a ``ValueError``) carries ``problems``, a list of
:class:`CapProblem` ``(path, line, reason)`` in document order, one per element, e.g.
``/alert/info[1]/area[2]/circle[1] (line 41): latitude 91.5 is outside -90…90``. Paths count
from 1 and index every element CAP lets repeat; a missing element gets the path it should have
had. Schema messages are reworded for operators where the case is common (wrong enumeration
value, malformed date, missing or misplaced element) and kept as libxml2 wrote them otherwise.
"""

from __future__ import annotations

from .codec import Reference, format_datetime, parse_cap, parse_references, reference_to, to_cap
from .errors import CapError, CapProblem
from .validation import CAP_NAMESPACE, DEFAULT_MAX_BYTES

__all__ = [
    "CAP_NAMESPACE",
    "DEFAULT_MAX_BYTES",
    "CapError",
    "CapProblem",
    "Reference",
    "format_datetime",
    "parse_cap",
    "parse_references",
    "reference_to",
    "to_cap",
]
