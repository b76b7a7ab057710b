"""The ``apprise`` plugin: the ``apprise.notifier`` driver."""

from __future__ import annotations

from nabat.hookspecs import hookimpl

from .notifier import AppriseNotifier


@hookimpl
def register_drivers() -> list[type]:
    return [AppriseNotifier]
