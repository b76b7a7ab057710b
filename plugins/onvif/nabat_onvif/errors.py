"""What went wrong talking to a camera, as the hub's error classes, in words an operator reads.

* rejected credentials (a SOAP fault ``ter:NotAuthorized``, HTTP 401) → ``AuthError``: the hub
  sets ``needs_auth`` and retries slowly;
* unreachable, refused, timed out, connection dropped → ``TransientError``: ``retrying`` with
  backoff;
* any other SOAP fault → ``TransientError`` naming the operation, the fault's subcode and text
  (``GetStreamUri: ter:InvalidArgVal — no such profile``), or ``NotSupported`` for
  ``ter:ActionNotSupported``;
* an answer the library cannot read (XML that is not namespace-well-formed, a value it cannot
  convert) → :class:`UnreadableAnswer`, a ``TransientError`` the driver may confirm another way
  (a preset is looked up after an unreadable SetPreset answer).
"""

from __future__ import annotations

import asyncio

import aiohttp
import zeep.exceptions
from lxml import etree
from nabat.interfaces import AuthError, DriverError, NotSupported, TransientError
from onvif.exceptions import ONVIFAuthError, ONVIFError, ONVIFTimeoutError
from onvif.util import extract_subcodes_as_strings, is_auth_error

__all__ = ["UnreadableAnswer", "as_driver_error"]


class UnreadableAnswer(TransientError):
    """The camera answered, but the answer could not be read: the request may have been
    carried out."""


def _subcodes(fault: zeep.exceptions.Fault) -> list[str]:
    try:
        return list(extract_subcodes_as_strings(fault.subcodes))
    except Exception:  # a fault without subcodes, or shaped oddly
        return []


def _fault_text(fault: zeep.exceptions.Fault) -> str:
    subcodes = _subcodes(fault)
    code = subcodes[-1] if subcodes else (fault.code or "fault")
    message = " ".join(str(fault.message or "").split())[:300]
    return f"{code} — {message}" if message else code


def as_driver_error(exc: BaseException, operation: str) -> DriverError:
    """``exc`` from an ONVIF call as the DriverError the hub acts on."""
    if isinstance(exc, DriverError):
        return exc
    if isinstance(exc, ONVIFError) and exc.__cause__ is not None:
        exc = exc.__cause__  # safe_func wraps what happened while building the request
    if isinstance(exc, zeep.exceptions.Fault):
        if is_auth_error(exc):
            return AuthError(f"{operation}: the camera rejected the credentials")
        if any("ActionNotSupported" in code for code in _subcodes(exc)):
            return NotSupported(f"{operation} is not supported by this camera")
        return TransientError(
            f"{operation}: the camera answered with a SOAP fault: {_fault_text(exc)}"
        )
    if isinstance(exc, ONVIFAuthError):
        return AuthError(f"{operation}: the camera rejected the credentials")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ONVIFTimeoutError):
        return TransientError(f"{operation}: the camera did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransientError(f"{operation}: cannot connect ({exc.os_error.strerror or exc})")
    if isinstance(exc, aiohttp.ClientResponseError):
        if exc.status == 401:
            return AuthError(f"{operation}: the camera rejected the credentials (HTTP 401)")
        return TransientError(f"{operation}: HTTP {exc.status} {exc.message}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return TransientError(f"{operation}: connection failed ({type(exc).__name__}: {exc})")
    if isinstance(exc, zeep.exceptions.TransportError):
        if exc.status_code == 401:
            return AuthError(f"{operation}: the camera rejected the credentials (HTTP 401)")
        if exc.status_code == 200:  # answered, in XML the library cannot parse
            first = str(exc).split(".\n", 1)[0][:300]
            return UnreadableAnswer(f"{operation}: the camera's answer is unreadable ({first})")
        return TransientError(f"{operation}: HTTP {exc.status_code} from the camera")
    if isinstance(exc, zeep.exceptions.Error | ONVIFError | etree.Error | ValueError):
        # lxml/zeep reading odd XML: "Invalid tag name 'ptz:PresetToken'" for a prefix the
        # answer never declared, OverflowError for a time beyond year 9999.
        text = " ".join(str(exc).split())[:300]
        return UnreadableAnswer(
            f"{operation}: the camera's answer is unreadable ({type(exc).__name__}: {text})"
        )
    if isinstance(exc, ArithmeticError | AttributeError):
        # zeep on a body that is no SOAP at all (an HTTP 401 page: "'NoneType' object has no
        # attribute 'getroottree'"), or a value out of range
        return UnreadableAnswer(
            f"{operation}: the camera's answer is unreadable ({type(exc).__name__}: {exc})"
        )
    return TransientError(f"{operation}: {type(exc).__name__}: {exc}")
