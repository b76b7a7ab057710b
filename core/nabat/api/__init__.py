"""The HTTP API (Litestar on uvicorn): ingest, query, live stream, webhooks, access control.

See ``docs/api.md``. :class:`nabat.api.server.ApiServer` serves it for a running hub. The
package itself imports nothing, so the console's routes may use the API's parts
(``problems``, ``sessions``, ``state``) without a cycle through the server.
"""
