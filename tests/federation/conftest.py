"""Fixtures for federation tests: real ``nats-server`` processes (``tests/fixtures/
nats_cluster.py``) — a region and site leaf nodes, each leaf behind a proxy a test can cut.
Without ``nats-server`` the tests skip locally and fail under ``CI=true``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

from nats_cluster import (
    NATS_SERVER_ENV,
    Federation,
    LinkProxy,
    NatsServer,
    NatsServerError,
    Site,
    find_nats_server,
    free_port,
)

__all__ = [
    "Federation",
    "LinkProxy",
    "NatsServer",
    "NatsServerError",
    "Site",
    "free_port",
]


def _unavailable(reason: str) -> None:
    message = f"nats-server unavailable: {reason}. Install: apt-get install nats-server"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def nats_server_binary() -> str:
    binary = find_nats_server()
    if binary is None:
        where = os.environ.get(NATS_SERVER_ENV) or "on PATH or in /usr/sbin"
        _unavailable(f"no executable nats-server {where}")
    assert binary is not None
    return binary


@pytest.fixture
def nats_federation(nats_server_binary: str, tmp_path: Path) -> Iterator[Federation]:
    """A running region; ``.site(name)`` adds a linked site. Everything stops at teardown."""
    federation = Federation(nats_server_binary, tmp_path / "nats")
    try:
        federation.start()
        yield federation
    finally:
        federation.close()
