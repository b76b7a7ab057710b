"""Errors a driver raises. The supervisor maps each to an instance state.

| raise                | meaning                                   | instance state          |
| -------------------- | ----------------------------------------- | ----------------------- |
| ``AuthError``        | credentials rejected                      | ``needs_auth``          |
| ``TransientError``   | unreachable, timeout, busy: may pass       | ``retrying`` (backoff)  |
| ``ConfigError``      | settings cannot work (bad URL, bad map)    | ``failed``              |
| ``NotSupported``     | the device lacks this capability          | state unchanged         |
| ``DriverError``      | anything else the driver understood        | ``failed``              |

``OSError`` and ``TimeoutError`` raised from a driver are treated as transient; any other
exception is treated as a bug in the driver and fails the instance with its traceback logged.
"""

from __future__ import annotations

__all__ = ["AuthError", "ConfigError", "DriverError", "NotSupported", "TransientError"]


class DriverError(Exception):
    """Base of the errors drivers raise on purpose. The message is shown to operators."""


class TransientError(DriverError):
    """The device or service is unreachable, timed out or busy; retrying may succeed.

    ``retry_after`` (seconds), when the peer said how long to wait, overrides the backoff.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthError(DriverError):
    """The peer rejected our credentials: an operator must fix them."""


class ConfigError(DriverError):
    """The instance's settings cannot work (beyond what the settings type validates)."""


class NotSupported(DriverError):
    """The device does not offer this capability (PTZ on a fixed camera, audible self-test…)."""
