"""Signed webhooks (Standard Webhooks), for connectors that talk to agencies over HTTP.

* :func:`signed_headers` ``(secrets, msg_id, body)`` — the ``webhook-id``,
  ``webhook-timestamp`` and ``webhook-signature`` headers for a request you send; one
  signature per secret, so a receiver can rotate. Use the event id as ``msg_id``: the
  receiver then drops a retry as a duplicate.
* :class:`WebhookVerifier` ``(secrets, tolerance=300).verify(headers, body)`` — check a
  request you received; returns the webhook id or raises :class:`WebhookVerificationError`
  with a loggable ``reason``. (Routes from ``register_routes`` can instead declare
  ``opt={"webhook_secrets": ...}`` and the hub verifies before the handler runs.)
* :class:`WebhookSender` ``(url, secrets)`` — POSTs one event as signed CloudEvents JSON and
  returns a :class:`~nabat.interfaces.DeliveryResult` (``await sender(event)``), for a
  connector's ``handle``.
* :func:`generate_secret` (``whsec_`` + base64 of 32 random bytes) and :func:`sign`.
"""

from __future__ import annotations

from ..webhooks import (
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    WebhookSender,
    WebhookVerificationError,
    WebhookVerifier,
    generate_secret,
    sign,
    signed_headers,
)

__all__ = [
    "HEADER_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "WebhookSender",
    "WebhookVerificationError",
    "WebhookVerifier",
    "generate_secret",
    "sign",
    "signed_headers",
]
