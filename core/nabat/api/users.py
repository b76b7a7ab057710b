"""People who sign in to the console: accounts, passwords, lock-out.

Passwords are hashed with Argon2id (argon2-cffi, RFC 9106 low-memory profile); a hash made
with weaker parameters is upgraded at the next successful sign-in. After ``max_failures``
failed sign-ins in a row an account is locked for ``lockout`` seconds: a duty operator's
password cannot be guessed online, and a lock ends by itself (or ``nabat users unlock``). An
unknown login costs the same hashing time as a known one, so timing does not tell which
logins exist.

Roles: an **operator** works in their municipalities (sees and acts on only those); a
**supervisor** sees and acts on the whole region; an **admin** also manages the hub (audit
log, every subscription). In the API a signed-in person acts with the scopes of their role.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..store import Journal
from .tokens import TokenInfo

__all__ = ["ROLES", "SignInError", "User", "UserError", "UserStore"]

COLLECTION = "users"
UNKNOWN = "sign_in_unknown"
"""Failure counts of logins that are no account (or a disabled one), shared by every process."""
Role = Literal["operator", "supervisor", "admin"]
ROLES: dict[str, tuple[str, ...]] = {
    "operator": (
        "events:read",
        "events:write",
        "cameras:read",
        "cameras:control",
        "alerts:activate",
    ),
    "supervisor": (
        "events:read",
        "events:write",
        "cameras:read",
        "cameras:control",
        "alerts:activate",
        "ops:read",
        "cameras:export",
    ),
    "admin": ("admin",),
}
MIN_PASSWORD = 10
_LOGIN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_hasher = PasswordHasher()  # Argon2id, t=3, m=64 MiB, p=4: the RFC 9106 second profile
_DUMMY = _hasher.hash("not a password of anyone")


class UserError(ValueError):
    """An account cannot be created or changed as asked."""


class SignInError(Exception):
    """Sign-in refused. ``locked_until`` is set when the account is locked."""

    def __init__(self, reason: str, locked_until: datetime | None = None) -> None:
        self.reason = reason
        self.locked_until = locked_until
        super().__init__(reason)


class User(msgspec.Struct, frozen=True, kw_only=True):
    login: str
    name: str
    role: Role
    municipalities: tuple[str, ...] = ()
    """An operator's municipalities; empty for supervisors and admins (the whole region)."""
    language: Literal["ru", "en"] = "ru"
    password_hash: str
    created: datetime
    disabled: bool = False
    failures: int = 0
    locked_until: datetime | None = None
    last_sign_in: datetime | None = None

    def identity(self) -> TokenInfo:
        """What the API lets this person do: their role's scopes in their municipalities."""
        return TokenInfo(
            id=f"user:{self.login}",
            name=self.login,
            scopes=ROLES[self.role],
            municipalities=self.municipalities,
            created=self.created,
        )

    def public(self) -> dict[str, object]:
        return {
            "login": self.login,
            "name": self.name,
            "role": self.role,
            "municipalities": list(self.municipalities),
            "language": self.language,
        }


_decoder = msgspec.json.Decoder(User)


class _Unknown(msgspec.Struct, frozen=True, kw_only=True):
    failures: int = 0
    locked_until: datetime | None = None


_unknown_decoder = msgspec.json.Decoder(_Unknown)


class UserStore:
    """Accounts in the journal's record store, keyed by login."""

    def __init__(self, journal: Journal, *, max_failures: int = 5, lockout: float = 900.0) -> None:
        self.journal = journal
        self.max_failures = max_failures
        self.lockout = lockout
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._cache: dict[str, tuple[float, User | None]] = {}

    async def cached(self, login: str, ttl: float = 5.0) -> User | None:
        """:meth:`get` through a few seconds' cache: every console request asks."""
        now = time.monotonic()
        hit = self._cache.get(login)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        user = await self.get(login)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[login] = (now, user)
        return user

    async def get(self, login: str) -> User | None:
        stored = await self.journal.get_record(COLLECTION, login.strip().lower())
        return _decoder.decode(stored.body) if stored is not None else None

    async def list(self) -> list[User]:
        return [_decoder.decode(r.body) async for r in self.journal.all_records(COLLECTION)]

    async def _put(self, user: User) -> None:
        await self.journal.put_record(COLLECTION, user.login, msgspec.json.encode(user))
        self._cache.pop(user.login, None)

    async def create(
        self,
        login: str,
        password: str,
        *,
        role: str,
        name: str | None = None,
        municipalities: Sequence[str] = (),
        known_municipalities: Sequence[str] | None = None,
        language: str = "ru",
    ) -> User:
        login = login.strip().lower()
        if not _LOGIN.fullmatch(login):
            raise UserError("a login is 2–64 characters: latin letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        municipalities = tuple(dict.fromkeys(municipalities))
        if role == "operator" and not municipalities:
            raise UserError("an operator works in a municipality: give --municipality")
        if role != "operator" and municipalities:
            raise UserError(f"a {role} sees the whole region: leave out --municipality")
        if known_municipalities is not None:
            bad = [m for m in municipalities if m not in known_municipalities]
            if bad:
                raise UserError(f"unknown municipality {', '.join(bad)} in this region")
        if language not in ("ru", "en"):
            raise UserError("language is ru or en")
        _check_password(password)
        user = User(
            login=login,
            name=(name or login).strip(),
            role=role,  # type: ignore[arg-type]
            municipalities=municipalities,
            language=language,  # type: ignore[arg-type]
            password_hash=await asyncio.to_thread(_hasher.hash, password),
            created=datetime.now(UTC),
        )
        written = await self.journal.put_record(
            COLLECTION, login, msgspec.json.encode(user), only_new=True
        )
        if not written:
            raise UserError(f"a user {login!r} exists already")
        return user

    def _lock(self, login: str) -> asyncio.Lock:
        lock = self._locks.get(login)
        if lock is None:
            lock = self._locks[login] = asyncio.Lock()
        return lock

    async def sign_in(self, login: str, password: str) -> User:
        """The user, if the password is right and the account usable; else SignInError with
        a reason fit to show. Unknown logins are counted and locked like known ones, so
        neither the answer, its time nor a lock-out tells which logins exist."""
        login = login.strip().lower()[:64]
        async with self._lock(login):
            user = await self.get(login)
            now = datetime.now(UTC)
            known = user is not None and not user.disabled
            locked = (
                user.locked_until
                if known and user is not None
                else await self._unknown_locked(login)
            )
            if locked is not None and locked > now:  # answered at once, known or not
                raise SignInError("account locked after repeated failures", locked)
            if not known:
                await asyncio.to_thread(_verify, _DUMMY, password)  # the same time either way
                await self._count_unknown(login, now)
                raise SignInError("wrong login or password")
            assert user is not None
            ok, rehash = await asyncio.to_thread(_verify, user.password_hash, password)
            # Hashing took a while and `nabat users` runs in another process: apply what
            # this sign-in changes to the account as it is now, not as it was read.
            fresh = await self.get(login)
            if fresh is None or fresh.disabled or fresh.password_hash != user.password_hash:
                raise SignInError("wrong login or password")
            if not ok:
                # Counted by compare-and-swap: two hub processes refusing the same account at
                # once each count their failure, and the lock-out comes after max_failures
                # in all, not per process.
                def failed(body: bytes) -> bytes | None:
                    found = _decoder.decode(body)
                    if found.disabled or found.password_hash != user.password_hash:
                        return None
                    failures = found.failures + 1
                    until = (
                        now + timedelta(seconds=self.lockout)
                        if failures >= self.max_failures
                        else found.locked_until
                    )
                    return msgspec.json.encode(
                        msgspec.structs.replace(
                            found,
                            failures=0 if failures >= self.max_failures else failures,
                            locked_until=until,
                        )
                    )

                written = await self.journal.update_record(COLLECTION, login, failed)
                self._cache.pop(login, None)
                after = _decoder.decode(written) if written is not None else None
                if after is not None and after.locked_until and after.locked_until > now:
                    raise SignInError("account locked after repeated failures", after.locked_until)
                raise SignInError("wrong login or password")
            new_hash = await asyncio.to_thread(_hasher.hash, password) if rehash else None

            def signed(body: bytes) -> bytes | None:
                found = _decoder.decode(body)
                if found.disabled or found.password_hash != user.password_hash:
                    return None
                changes: dict[str, object] = {
                    "failures": 0,
                    "locked_until": None,
                    "last_sign_in": now,
                }
                if new_hash is not None:
                    changes["password_hash"] = new_hash
                return msgspec.json.encode(msgspec.structs.replace(found, **changes))

            written = await self.journal.update_record(COLLECTION, login, signed)
            self._cache.pop(login, None)
            if written is None:
                raise SignInError("wrong login or password")
            return _decoder.decode(written)

    async def _unknown_locked(self, login: str) -> datetime | None:
        stored = await self.journal.get_record(UNKNOWN, login)
        return _unknown_decoder.decode(stored.body).locked_until if stored is not None else None

    async def _count_unknown(self, login: str, now: datetime) -> None:
        """An unknown (or disabled) login's failure, counted in the journal by every process
        alike and answered with the same lock-out as a real account's. The count lives for
        two lock-out periods from its first failure: long enough to hold a lock it leads to,
        and an attacker's spray of made-up logins leaves nothing behind for long."""

        def counted(found: _Unknown) -> _Unknown:
            failures = found.failures + 1
            if failures >= self.max_failures:
                return _Unknown(locked_until=now + timedelta(seconds=self.lockout))
            return _Unknown(failures=failures, locked_until=found.locked_until)

        first = msgspec.json.encode(counted(_Unknown()))
        if await self.journal.put_record(
            UNKNOWN,
            login,
            first,
            expires=now + timedelta(seconds=2 * self.lockout),
            only_new=True,
        ):
            written: bytes | None = first
        else:
            written = await self.journal.update_record(
                UNKNOWN,
                login,
                lambda body: msgspec.json.encode(counted(_unknown_decoder.decode(body))),
            )
        after = _unknown_decoder.decode(written) if written is not None else _Unknown()
        if after.locked_until is not None and after.locked_until > now:
            raise SignInError("account locked after repeated failures", after.locked_until)

    async def update(
        self,
        login: str,
        *,
        password: str | None = None,
        disabled: bool | None = None,
        unlock: bool = False,
        name: str | None = None,
        role: str | None = None,
        municipalities: Sequence[str] | None = None,
        language: str | None = None,
        known_municipalities: Sequence[str] | None = None,
    ) -> User:
        """Change an account. The write is a compare-and-swap of the record, so a sign-in's
        failure count or another process's change made meanwhile is never overwritten."""
        login = login.strip().lower()
        changes: dict[str, object] = {}
        if password is not None:
            _check_password(password)
            changes["password_hash"] = await asyncio.to_thread(_hasher.hash, password)
        if disabled is not None:
            changes["disabled"] = disabled
        if unlock or password is not None:
            changes.update(failures=0, locked_until=None)
        if name is not None:
            if not name.strip() or len(name) > 200:
                raise UserError("a name is 1–200 characters")
            changes["name"] = name.strip()
        if language is not None:
            if language not in ("ru", "en"):
                raise UserError("language is ru or en")
            changes["language"] = language
        if role is not None and role not in ROLES:
            raise UserError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if municipalities is not None and known_municipalities is not None:
            bad = [m for m in municipalities if m not in known_municipalities]
            if bad:
                raise UserError(f"unknown municipality {', '.join(bad)} in this region")
        problem: list[str] = []

        def change(body: bytes) -> bytes | None:
            user = _decoder.decode(body)
            now_role = role or user.role
            places = (
                tuple(dict.fromkeys(municipalities))
                if municipalities is not None
                else (user.municipalities if role is None or role == "operator" else ())
            )
            if now_role == "operator" and not places:
                problem.append("an operator works in a municipality: give municipalities")
                return None
            if now_role != "operator" and places:
                problem.append(f"a {now_role} sees the whole region: no municipalities")
                return None
            extra: dict[str, object] = {"role": now_role, "municipalities": places}
            return msgspec.json.encode(msgspec.structs.replace(user, **changes, **extra))

        async with self._lock(login):
            written = await self.journal.update_record(COLLECTION, login, change)
        if problem:
            raise UserError(problem[-1])
        self._cache.pop(login, None)
        if written is None:
            raise UserError(f"no user {login!r}")
        return _decoder.decode(written)

    async def delete(self, login: str) -> bool:
        return await self.journal.delete_record(COLLECTION, login.strip().lower())


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise UserError("a password has at most 1024 characters")


def _verify(password_hash: str, password: str) -> tuple[bool, bool]:
    """(matches, needs a rehash with today's parameters)."""
    try:
        _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, False
    return True, _hasher.check_needs_rehash(password_hash)
