"""Serving the API: uvicorn in the hub's own event loop, started and stopped with the hub.

uvicorn is a production ASGI server (httptools parser, keep-alive, flow control). It runs in
the hub's loop rather than in its own process so the API shares the hub's bus, journal and
pulse without any IPC; `nabat run` owns the signals, so uvicorn's signal capture is bypassed.
Graceful shutdown: stop accepting, end live streams, let requests in flight finish (up to
``[hub] shutdown_timeout``), flush the audit log.

One gap of uvicorn is closed here: it has no timeout for a client that connects and then sends
its request line and headers slowly (or never). :class:`_HeaderDeadline` closes such
connections after ``_HEADER_TIMEOUT`` seconds; slow bodies are the Gate's job (408).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config.model import parse_listen
from ..logs import get_logger
from .app import create_app
from .outbound import OutboundWebhooks
from .routes.plugins import plugin_routers
from .state import ApiState

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["ApiServer"]

log = get_logger("nabat.api")
_HEADER_TIMEOUT = 10.0


class _HeaderDeadline(HttpToolsProtocol):
    """uvicorn's protocol plus a deadline for the request line and headers."""

    _timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.loop.call_later(_HEADER_TIMEOUT, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            client = self.client[0] if self.client else None
            log.warning("http.header_timeout", client=client, seconds=_HEADER_TIMEOUT)
            self.transport.close()

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class ApiServer:
    """The HTTP API of one hub."""

    def __init__(self, hub: Hub, *, listen: str | None = None) -> None:
        self.hub = hub
        self.listen = listen or hub.config.api.listen
        if self.listen is None:
            raise ValueError("no [api] listen address is configured")
        self.state = ApiState.for_hub(hub)
        self._server: uvicorn.Server | None = None
        self._main: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.port: int | None = None
        self.host: str | None = None

    @property
    def url(self) -> str:
        host = self.host or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def _bind(self) -> socket.socket:
        host, port = parse_listen(self.listen)  # type: ignore[arg-type]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when
        # the listening socket says TCP; without it a response written in two parts waits for
        # a delayed ACK (~40 ms per request on a keep-alive connection).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot listen on {self.listen}: {exc.strerror}") from None
        sock.listen(2048)
        sock.setblocking(False)
        self.host, self.port = sock.getsockname()[:2]
        return sock

    async def start(self) -> None:
        """Bind, build the app (with the plugins' routes) and start serving."""
        self._socket = self._bind()
        state = self.state
        state.audit.start()
        state.outbound = OutboundWebhooks(self.hub)
        await state.outbound.start()
        app = create_app(state, await plugin_routers(self.hub))
        config = uvicorn.Config(
            app,
            http=_HeaderDeadline,
            lifespan="off",
            log_config=None,
            access_log=False,  # the Gate writes our own structured line per request
            server_header=False,
            timeout_keep_alive=30,
            # No permessage-deflate: the WebSockets carry live video (H.264 in fMP4), which
            # zlib cannot shrink; compressing every fragment for every viewer was half the
            # event loop's CPU under live video (bench/live_video.py).
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=self.hub.config.hub.shutdown_timeout,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[self._socket])
        if server.should_exit:  # startup failed and has logged why
            raise OSError(f"cannot serve on {self.listen}")
        self._server = server
        self._main = asyncio.get_running_loop().create_task(server.main_loop(), name="api:main")
        log.info("api.listening", url=self.url)

    async def stop(self) -> None:
        server, self._server = self._server, None
        self.state.closing.set()  # live streams end; their clients reconnect elsewhere
        if server is not None:
            server.should_exit = True
            if self._main is not None:
                with contextlib.suppress(Exception):
                    await self._main
            await server.shutdown(sockets=[self._socket] if self._socket else None)
        if self.state.outbound is not None:
            await self.state.outbound.stop()
        await self.state.audit.stop()
        log.info("api.stopped")
