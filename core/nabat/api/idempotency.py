"""Idempotent POSTs: a retried request with the same key gets the first answer again.

The key is the client's ``Idempotency-Key`` header (IETF draft
``draft-ietf-httpapi-idempotency-key-header``) or, for Standard Webhooks senders, the
``webhook-id``. Keys are scoped per token and remembered for ``[api] idempotency_ttl`` with a
hash of the request body and the response given:

* the same key and body again: the stored response, with ``Idempotent-Replayed: true``;
* the same key with another body: 422, the client reused a key by mistake;
* the same key while the first request is still being processed: 409, retry later.

A request that failed (4xx/5xx) forgets its key, so the corrected request can reuse it. Events
are also idempotent on their own by ``(source, id)``; the key additionally makes the *answer*
repeatable and covers requests whose events carry no ids of their own.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import msgspec

from ..store import Journal

__all__ = ["Claim", "IdempotencyStore", "Stored"]

COLLECTION = "idempotency"
_PROCESSING_TTL = 120.0  # a crashed request must not block its key for a whole day


class Stored(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    body_hash: str
    status: int | None = None
    """None while the first request is still being processed."""
    content_type: str | None = None
    response: str | None = None


class Claim(msgspec.Struct, frozen=True):
    """The outcome of :meth:`IdempotencyStore.claim`."""

    record_key: str
    body_hash: str
    previous: Stored | None
    """None: the key is ours now, go on. Otherwise what was stored for it."""


class IdempotencyStore:
    def __init__(self, journal: Journal, ttl: float) -> None:
        self.journal = journal
        self.ttl = ttl

    @staticmethod
    def valid_key(key: str) -> bool:
        return 1 <= len(key) <= 255 and key.isprintable()

    async def claim(self, scope: str, key: str, body: bytes) -> Claim:
        record_key = f"{scope}:{key}"
        body_hash = hashlib.sha256(body).hexdigest()
        processing = Stored(body_hash=body_hash)
        until = datetime.now(UTC) + timedelta(seconds=_PROCESSING_TTL)
        if await self.journal.put_record(
            COLLECTION, record_key, msgspec.json.encode(processing), expires=until, only_new=True
        ):
            return Claim(record_key, body_hash, None)
        record = await self.journal.get_record(COLLECTION, record_key)
        if record is None:  # expired between the two calls: try once more
            return await self.claim(scope, key, body)
        return Claim(record_key, body_hash, msgspec.json.decode(record.body, type=Stored))

    async def complete(self, claim: Claim, status: int, content_type: str, response: bytes) -> None:
        stored = Stored(
            body_hash=claim.body_hash,
            status=status,
            content_type=content_type,
            response=response.decode("utf-8"),
        )
        until = datetime.now(UTC) + timedelta(seconds=self.ttl)
        await self.journal.put_record(
            COLLECTION, claim.record_key, msgspec.json.encode(stored), expires=until
        )

    async def release(self, claim: Claim) -> None:
        await self.journal.delete_record(COLLECTION, claim.record_key)
