"""A real RTSP server for camera tests (``tests/fixtures/rtsp_server.py``).

The server runs under Debian's ``/usr/bin/python3`` (GStreamer's RTSP server through ``gi``,
which the project venv does not have). Use the ``rtsp_server`` fixture (one server per
session, started again on the same port if it died)::

    def test_probe_sees_black(rtsp_server):
        url = rtsp_server.url("/black")          # rtsp://127.0.0.1:PORT/black
        ...
        rtsp_server.secure_url()                  # rtsp://admin:s3cret@127.0.0.1:PORT/secure

Mounts: /live /black /frozen /dying /stalled /noise /secure /mjpeg (see the script's
docstring). Without the Debian packages the tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).resolve().parent / "fixtures" / "rtsp_server.py"
READY_TIMEOUT = 20.0
PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad"
)


@dataclass(frozen=True)
class RtspServer:
    host: str
    port: int
    user: str
    password: str

    def url(self, mount: str) -> str:
        """``rtsp://127.0.0.1:PORT/mount`` (``mount`` with or without its leading slash)."""
        return f"rtsp://{self.host}:{self.port}/{mount.lstrip('/')}"

    def secure_url(self, user: str | None = None, password: str | None = None) -> str:
        """The /secure mount with credentials in the URL (default: the right ones)."""
        user = self.user if user is None else user
        password = self.password if password is None else password
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"rtsp://{auth}{self.host}:{self.port}/secure"


def _unavailable(reason: str) -> None:
    message = f"RTSP test server unavailable: {reason}. Install: apt-get install {PACKAGES}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _check_installation() -> None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        _unavailable(f"{SYSTEM_PYTHON} not found")
    try:
        done = subprocess.run(
            [SYSTEM_PYTHON, str(SCRIPT), "--check"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        _unavailable(f"{SYSTEM_PYTHON} {SCRIPT.name} --check did not finish within 30 s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        _unavailable(f"{SYSTEM_PYTHON} cannot run the server ({last})")


def _wait_ready(proc: subprocess.Popen[str], stderr: Path) -> int:
    """Return the port from the server's ``READY <port>`` line, or fail with its stderr."""
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    reason = f"was not READY within {READY_TIMEOUT:g} s"
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if selector.select(timeout=min(left, 0.2)):
                line = proc.stdout.readline()
                if line.startswith("READY "):
                    return int(line.split()[1])
                reason = f"printed {line.strip()!r} instead of READY" if line else ""
                break
            if proc.poll() is not None:
                reason = ""
                break
    proc.kill()
    proc.wait()
    reason = reason or f"exited with status {proc.returncode}"
    log = stderr.read_text(errors="replace")[-4000:] or "(empty)"
    pytest.fail(f"RTSP test server {reason}; its stderr:\n{log}", pytrace=False)


class _Supervised:
    """The server process, started again (same port) if it died: GStreamer's RTSP server can
    abort under load, and one crash must not fail every later camera test of the session."""

    def __init__(self, stderr: Path, user: str, password: str) -> None:
        self.stderr, self.user, self.password = stderr, user, password
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.restarts = 0

    def ensure(self) -> RtspServer:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.restarts += 1
                self.close()
            with self.stderr.open("a") as err:
                # --port 0 the first time: the server binds a free port itself (no race).
                cmd = [SYSTEM_PYTHON, str(SCRIPT), "--port", str(self.port)]
                cmd += ["--user", self.user, "--password", self.password]
                self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
            self.port = _wait_ready(self.proc, self.stderr)
        return RtspServer("127.0.0.1", self.port, self.user, self.password)

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="session")
def _rtsp_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Supervised]:
    _check_installation()
    stderr = tmp_path_factory.mktemp("rtsp") / "stderr.txt"
    supervised = _Supervised(stderr, "admin", "s3cret pass")
    try:
        yield supervised
    finally:
        supervised.close()


@pytest.fixture
def rtsp_server(_rtsp_process: _Supervised) -> RtspServer:
    return _rtsp_process.ensure()


PG_DSN = os.environ.get("NABAT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
async def pg_schema():
    """A PostgreSQL schema of the test's own (for hubs' journals), dropped afterwards. Without
    PostgreSQL the test skips locally and fails under ``CI=true``."""
    asyncpg = pytest.importorskip("asyncpg")
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=3)
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL unreachable: {exc!r}")
        pytest.skip(f"PostgreSQL unreachable: {exc!r}")
    schema = f"test_{uuid.uuid4().hex[:10]}"
    yield schema
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


@pytest.fixture
def smtp():
    """A real SMTP server on loopback (``tests/fixtures/smtp_server.py``): ``.port``, the
    messages it took (``.to(address)``), the addresses it refuses (``.refuse``)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
    from smtp_server import smtp_server

    with smtp_server() as mailbox:
        yield mailbox
