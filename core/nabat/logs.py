"""Structured logging: one event per line, as JSON (for shipping) or logfmt (for a terminal).

Code logs an event name plus fields — ``log.info("plugin.state", plugin="x", state="failed")`` —
never a formatted sentence, so lines can be filtered and counted. Secrets never reach a line:
:class:`nabat.config.Secret` renders as ``***`` and URLs lose their passwords (see ``masking``).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from .masking import is_secret_key, mask_value

__all__ = ["StructLogger", "configure_logging", "get_logger", "record_fields"]

_encoder = msgspec.json.Encoder(enc_hook=lambda obj: str(obj))
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class StructLogger(logging.LoggerAdapter):
    """``log.info("event.name", key=value, ...)``: keyword fields become structured fields."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        passthrough = {
            k: kwargs.pop(k) for k in ("exc_info", "stack_info", "stacklevel") if k in kwargs
        }
        fields = dict(self.extra or {})
        fields.update(kwargs)
        passthrough["extra"] = {"fields": fields}
        return msg, passthrough

    def bind(self, **fields: Any) -> StructLogger:
        """A logger that adds ``fields`` to every line it writes."""
        merged = dict(self.extra or {})
        merged.update(fields)
        return StructLogger(self.logger, merged)


def get_logger(name: str, **fields: Any) -> StructLogger:
    return StructLogger(logging.getLogger(name), fields)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record's structured fields, secrets masked (what a line shows)."""
    fields = getattr(record, "fields", None) or {}
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None:
            continue
        kind = type(value)
        # Numbers and plain strings without '@' (no URL password) need masking only under a
        # secret-looking key: decide that here, without a call per field (access-log lines).
        if (kind is int or kind is float or (kind is str and "@" not in value)) and (
            not is_secret_key(key)
        ):
            out[key] = value
        else:
            out[key] = mask_value(key, value)
    return out


def _timestamp(record: logging.LogRecord) -> str:
    return (
        datetime.fromtimestamp(record.created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(record_fields(record))
        if record.exc_info:
            line["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return _encoder.encode(line).decode()


def _logfmt_value(value: Any) -> str:
    if isinstance(value, Mapping | list | tuple | msgspec.Struct):
        text = _encoder.encode(value).decode()
    else:
        text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={_timestamp(record)}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"event={_logfmt_value(record.getMessage())}",
        ]
        parts += [f"{k}={_logfmt_value(v)}" for k, v in record_fields(record).items()]
        if record.exc_info:
            exc = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            parts.append(f"exc={_logfmt_value(exc)}")
        return " ".join(parts)


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Route all logging to ``stream`` (stderr) as JSON lines or logfmt; ``auto`` picks logfmt
    for a terminal and JSON otherwise."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "logfmt" if getattr(stream, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Skip what our formatters never print (the logging HOWTO's "Optimization" section): the
    # caller's file and line (a stack walk per record), thread, process and task names. The
    # access log writes a line per HTTP request, so this is a measurable share of each one.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.logAsyncioTasks = False  # type: ignore[attr-defined]
    # Libraries log sentences; keep them but quieter than our own events.
    for noisy in ("apscheduler", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
