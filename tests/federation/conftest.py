"""Real ``nats-server`` processes for federation tests: a region and site leaf nodes.

The set-up is the one in ``docs/federation.md`` (nats-server 2.9): the region is a JetStream
server of domain ``region`` with a leafnode port; each site is a leaf node with a JetStream
domain of its own (its name), dialling the region through a :class:`LinkProxy` — the WAN
link, which a test cuts with both servers still running::

    async def test_up_path(nats_federation):
        region = nats_federation.region                  # NatsServer, domain "region"
        site = nats_federation.site("site-a")             # leaf up and listed in /leafz
        nc = await nats.connect(site.url)                 # a client of the site's server
        site.link.cut()                                   # the WAN is down
        site.link.restore(); site.wait_linked()           # and back

Every server runs on free loopback ports, with its config file and store under the test's
``tmp_path``; teardown stops them all, also when the test failed. Without ``nats-server``
the tests skip locally and fail under ``CI=true`` (as the RTSP fixture does).

The helpers are synchronous (a server starts in a fraction of a second): call them from
async tests too; the proxy runs on threads of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

NATS_SERVER_ENV = "NATS_SERVER"  # the binary to use (else nats-server on PATH or in /usr/sbin)
START_TIMEOUT = 15.0
LINK_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
LOG_TAIL = 4000


class NatsServerError(RuntimeError):
    """A server that did not start or become healthy; the message carries its log tail."""


def find_nats_server() -> str | None:
    """``$NATS_SERVER`` if set (and only it), else ``nats-server`` on PATH or in /usr/sbin."""
    if explicit := os.environ.get(NATS_SERVER_ENV):
        return explicit if os.access(explicit, os.X_OK) else None
    for path in (shutil.which("nats-server"), "/usr/sbin/nats-server"):
        if path and os.access(path, os.X_OK):
            return path
    return None


def free_port() -> int:
    """A loopback port free right now (the kernel's pick; a small race, fine on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http_get(url: str, timeout: float = 1.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class NatsServer:
    """One ``nats-server`` process: JetStream of its own ``domain``, loopback ports.

    ``leaf_port`` (the region) opens a leafnode listener; ``remote_port`` (a site) makes the
    server a leaf node dialling ``nats-leaf://127.0.0.1:<remote_port>``. Ports, config file and
    store stay the same across :meth:`restart`.
    """

    def __init__(
        self,
        binary: str,
        name: str,
        domain: str,
        workdir: Path,
        *,
        leaf_port: int | None = None,
        remote_port: int | None = None,
    ) -> None:
        self.binary = binary
        self.name = name
        self.domain = domain
        self.workdir = workdir
        self.port = free_port()
        self.monitor_port = free_port()
        self.leaf_port = leaf_port
        self.remote_port = remote_port
        self.store_dir = workdir / "store"
        self.config_path = workdir / f"{name}.conf"
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def config(self) -> str:
        lines = [
            f"server_name: {json.dumps(self.name)}",
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            "jetstream {",
            f"  domain: {json.dumps(self.domain)}",
            f"  store_dir: {json.dumps(str(self.store_dir))}",
            "  max_mem: 64MB",
            "  max_file: 1GB",
            "}",
        ]
        if self.leaf_port is not None:
            # The region sends its leafnode URL to the leaves, which add it to their reconnect
            # list (no_advertise does not stop it in 2.9): advertise an address that refuses,
            # or a leaf bypasses its cut proxy (docs/federation.md, pitfall 3).
            lines += [
                "leafnodes {",
                f"  listen: 127.0.0.1:{self.leaf_port}",
                '  advertise: "127.0.0.1:1"',
                "}",
            ]
        if self.remote_port is not None:
            lines += [
                "leafnodes {",
                "  reconnect: 1",
                f'  remotes: [ {{ url: "nats-leaf://127.0.0.1:{self.remote_port}" }} ]',
                "}",
            ]
        return "\n".join(lines) + "\n"

    def log_tail(self, size: int = LOG_TAIL) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:] or "(empty)"
        except FileNotFoundError:
            return "(no log)"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the process and wait until JetStream answers ``/healthz`` with 200."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        health = f"{self.monitor_url}/healthz?js-enabled-only=true"
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                last = f"exited with status {self.proc.returncode}"
                break
            try:
                status, body = _http_get(health, timeout=0.5)
            except OSError as error:
                last = f"{type(error).__name__}: {error}"
            else:
                if status == 200:
                    return
                last = f"HTTP {status} {body[:200]!r}"
            time.sleep(0.02)
        else:
            last = f"not healthy within {timeout:g} s ({last})"
        self.kill()
        raise NatsServerError(f"nats-server {self.name!r} {last}; its log:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash (the store stays as the process left it)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self.proc = None

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop (if running) and start again: same ports, config and store."""
        self.stop()
        self.start(timeout)

    def monitor(self, endpoint: str) -> dict:
        """A monitoring endpoint's JSON, e.g. ``monitor("leafz")``."""
        status, body = _http_get(f"{self.monitor_url}/{endpoint.lstrip('/')}")
        if status != 200:
            raise NatsServerError(f"{self.name} /{endpoint}: HTTP {status}")
        return json.loads(body)

    def leaf_names(self) -> set[str]:
        """The leaf nodes linked to this server right now (``/leafz``), by ``server_name``.

        nats-server 2.9 does not report a leaf's name in ``/leafz`` (2.10 does): there a leaf is
        known by the JetStream domain whose API it imports (``$JS.<domain>.API.INFO``) — the
        same thing here, where every site's domain is its ``server_name``.
        """
        names = set()
        for leaf in self.monitor("leafz?subs=1").get("leafs") or []:
            if leaf.get("name"):
                names.add(leaf["name"])
                continue
            for subject in leaf.get("subscriptions_list") or []:
                parts = subject.split(".")
                if len(parts) == 4 and parts[0] == "$JS" and parts[2:] == ["API", "INFO"]:
                    names.add(parts[1])
        return names

    def __repr__(self) -> str:
        return f"NatsServer({self.name!r}, domain={self.domain!r}, url={self.url!r})"


class LinkProxy:
    """A TCP forwarder on loopback (threads): ``127.0.0.1:<port>`` → ``127.0.0.1:<target>``.

    :meth:`cut` closes every connection and closes new ones at once (the listener stays bound,
    so the port cannot be taken meanwhile); :meth:`restore` forwards again.
    """

    def __init__(self, target_port: int, name: str = "link") -> None:
        self.target_port = target_port
        self.name = name
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket, list[threading.Thread]]] = []
        self._cut = False
        self._closed = False
        self.accepted = 0
        self._acceptor = threading.Thread(target=self._accept, name=f"proxy-{name}", daemon=True)
        self._acceptor.start()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut or self._closed:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            pumps = [
                threading.Thread(target=self._pump, args=(client, upstream), daemon=True),
                threading.Thread(target=self._pump, args=(upstream, client), daemon=True),
            ]
            with self._lock:
                if self._cut or self._closed:
                    client.close()
                    upstream.close()
                    continue
                self._pairs.append((client, upstream, pumps))
                self.accepted += 1
            for pump in pumps:
                pump.start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        # One side ended: end both (wakes the other pump's recv).
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _drop_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream, pumps in pairs:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            for pump in pumps:
                pump.join(timeout=2)
            client.close()
            upstream.close()

    def cut(self) -> None:
        """The WAN is down: every connection closed, new ones closed as they come."""
        self._cut = True
        self._drop_all()

    def restore(self) -> None:
        """The WAN is back (the leaf reconnects within its ``reconnect`` interval)."""
        self._cut = False

    def close(self) -> None:
        self._closed = True
        self._cut = True
        self._drop_all()
        self._acceptor.join(timeout=2)
        self._listener.close()

    def __repr__(self) -> str:
        state = "cut" if self._cut else "up"
        return f"LinkProxy({self.name!r}, :{self.port} -> :{self.target_port}, {state})"


class Site:
    """A site: its leaf ``server`` (domain = ``name``) and its ``link`` to the region."""

    def __init__(self, federation: Federation, name: str, server: NatsServer, link: LinkProxy):
        self.federation = federation
        self.name = name
        self.server = server
        self.link = link

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def domain(self) -> str:
        return self.server.domain

    def linked(self) -> bool:
        """The region lists this site's leaf in ``/leafz``."""
        return self.server.name in self.federation.region.leaf_names()

    def wait_linked(self, timeout: float = LINK_TIMEOUT) -> None:
        self.federation.wait_leaf(self.server.name, present=True, timeout=timeout)

    def wait_unlinked(self, timeout: float = LINK_TIMEOUT) -> None:
        self.federation.wait_leaf(self.server.name, present=False, timeout=timeout)

    def __repr__(self) -> str:
        return f"Site({self.name!r}, {self.server!r}, {self.link!r})"


class Federation:
    """The region (``.region``, domain ``region``) and the sites started by :meth:`site`."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.sites: dict[str, Site] = {}
        self.region = NatsServer(
            binary, "region", "region", workdir / "region", leaf_port=free_port()
        )

    def start(self) -> None:
        self.region.start()

    def site(self, name: str, *, wait: bool = True) -> Site:
        """Start the leaf of site ``name`` (``server_name`` and domain ``name``) behind its own
        :class:`LinkProxy`, and (``wait``) wait until the region lists it in ``/leafz``."""
        if name in self.sites:
            raise ValueError(f"site {name!r} already started")
        assert self.region.leaf_port is not None
        link = LinkProxy(self.region.leaf_port, name)
        server = NatsServer(self.binary, name, name, self.workdir / name, remote_port=link.port)
        site = Site(self, name, server, link)
        self.sites[name] = site
        server.start()
        if wait:
            site.wait_linked()
        return site

    def wait_leaf(self, name: str, *, present: bool = True, timeout: float = LINK_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        names: set[str] = set()
        while True:
            try:
                names = self.region.leaf_names()
            except (OSError, NatsServerError):
                names = set()
            if (name in names) == present:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        state = "linked" if present else "unlinked"
        site = self.sites.get(name)
        log = site.server.log_tail() if site else "(no such site)"
        raise NatsServerError(
            f"leaf {name!r} not {state} within {timeout:g} s (region lists {sorted(names)});"
            f" region log:\n{self.region.log_tail()}\n{name} log:\n{log}"
        )

    def close(self) -> None:
        for site in self.sites.values():
            site.link.close()
        for server in [s.server for s in self.sites.values()] + [self.region]:
            try:
                server.stop()
            except Exception:
                server.kill()


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
