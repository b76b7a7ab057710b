"""The HTTP API (Litestar on uvicorn): ingest, query, live stream, webhooks, access control.

See ``docs/api.md``. :class:`ApiServer` serves it for a running :class:`~nabat.hub.Hub`.
"""

from .server import ApiServer

__all__ = ["ApiServer"]
