"""The duty roster: who is on shift at which post of which municipality, from when to when.

Posts come from ``[[duty.posts]]`` (by default an ЕДДС duty officer and a 112 operator in
every municipality of the region). Shifts are journal records (collection ``roster``), kept
``KEEP_DAYS`` after they end so the staffing report can look back over a year.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgspec

from ..config.model import PostSettings
from ..ids import uuid7
from ..regions import Region
from ..store import Journal

__all__ = ["ROSTER", "Post", "Roster", "RosterError", "Shift"]

ROSTER = "roster"
USERS = "users"
KEEP_DAYS = 400
MAX_SHIFT = timedelta(days=7)


class RosterError(ValueError):
    """A shift that cannot be put on the roster: ``status`` 404 or 409/422 and why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class Shift(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    municipality: str
    post: str
    login: str
    start: datetime
    end: datetime
    created_by: str = ""
    created_at: datetime

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


_decoder = msgspec.json.Decoder(Shift)


class Post(msgspec.Struct, frozen=True, kw_only=True):
    """A post of one municipality."""

    id: str
    name: str
    municipality: str
    seats: int = 1


class Roster:
    def __init__(self, journal: Journal, posts: list[PostSettings], region: Region) -> None:
        self.journal = journal
        self.region = region
        self.settings = posts

    # -- posts -----------------------------------------------------------------------------
    def posts(self, municipalities: Iterable[str] | None = None) -> list[Post]:
        """Every post of every (or of these) municipalities, in municipality order."""
        wanted = None if municipalities is None else set(municipalities)
        found = []
        for slug in sorted(self.region.municipalities):
            if wanted is not None and slug not in wanted:
                continue
            for post in self.settings:
                if post.municipalities and slug not in post.municipalities:
                    continue
                found.append(Post(id=post.id, name=post.name, municipality=slug, seats=post.seats))
        return found

    def post(self, municipality: str, post_id: str) -> Post | None:
        return next((p for p in self.posts([municipality]) if p.id == post_id), None)

    # -- shifts ----------------------------------------------------------------------------
    async def add(
        self,
        *,
        municipality: str,
        post: str,
        login: str,
        start: datetime,
        end: datetime,
        by: str,
    ) -> Shift:
        login = login.strip().lower()
        if municipality not in self.region.municipalities:
            raise RosterError(422, f"{municipality!r} is not a municipality of {self.region.id}")
        if self.post(municipality, post) is None:
            known = ", ".join(p.id for p in self.posts([municipality])) or "none"
            raise RosterError(422, f"{municipality} has no post {post!r} (posts: {known})")
        if start.tzinfo is None or end.tzinfo is None:
            raise RosterError(422, "start and end need a UTC offset")
        if end <= start:
            raise RosterError(422, "the shift ends before it starts")
        if end - start > MAX_SHIFT:
            raise RosterError(422, "a shift is at most 7 days long")
        account = await self.journal.get_record(USERS, login)
        if account is None:
            raise RosterError(422, f"no account {login!r}")
        person = msgspec.json.decode(account.body)
        if person.get("disabled"):
            raise RosterError(422, f"the account {login!r} is disabled")
        places = person.get("municipalities") or []
        if person.get("role") == "operator" and municipality not in places:
            raise RosterError(
                422,
                f"{login} is an operator of {', '.join(places) or 'no municipality'}, "
                f"not of {municipality}",
            )
        for other in await self.shifts(logins=[login], since=start, until=end):
            raise RosterError(
                409,
                f"{login} is on shift already then: {other.post} of {other.municipality}, "
                f"{other.start.isoformat()} – {other.end.isoformat()}",
            )
        shift = Shift(
            id=uuid7(),
            municipality=municipality,
            post=post,
            login=login,
            start=start.astimezone(UTC),
            end=end.astimezone(UTC),
            created_by=by,
            created_at=datetime.now(UTC),
        )
        await self.journal.put_record(
            ROSTER,
            shift.id,
            msgspec.json.encode(shift),
            expires=shift.end + timedelta(days=KEEP_DAYS),
        )
        return shift

    async def remove(self, shift_id: str) -> Shift | None:
        found = await self.get(shift_id)
        if found is not None:
            await self.journal.delete_record(ROSTER, shift_id)
        return found

    async def get(self, shift_id: str) -> Shift | None:
        stored = await self.journal.get_record(ROSTER, shift_id)
        return None if stored is None else _decoder.decode(stored.body)

    async def shifts(
        self,
        *,
        municipalities: Iterable[str] | None = None,
        logins: Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Shift]:
        """Shifts overlapping [since, until), in start order."""
        wanted = None if municipalities is None else set(municipalities)
        people = None if logins is None else set(logins)
        found = []
        async for stored in self.journal.all_records(ROSTER):
            shift = _decoder.decode(stored.body)
            if wanted is not None and shift.municipality not in wanted:
                continue
            if people is not None and shift.login not in people:
                continue
            if since is not None and shift.end <= since:
                continue
            if until is not None and shift.start >= until:
                continue
            found.append(shift)
        return sorted(found, key=lambda s: (s.start, s.municipality, s.post, s.login))

    async def on_duty(
        self, now: datetime, municipalities: Iterable[str] | None = None
    ) -> list[Shift]:
        """The shifts under way at ``now``."""
        return [s for s in await self.shifts(municipalities=municipalities) if s.covers(now)]

    async def current(self, login: str, now: datetime | None = None) -> Shift | None:
        """The shift ``login`` is on now, if any."""
        now = now or datetime.now(UTC)
        return next(
            (s for s in await self.shifts(logins=[login.strip().lower()]) if s.covers(now)), None
        )
