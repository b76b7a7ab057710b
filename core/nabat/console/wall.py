"""The camera wall's layout, kept per person (or token) in the journal's record store.

An operator's live layout (1, 4, 9 or 16 tiles and the camera in each) follows them from one
workstation to the next: it is stored under the caller's identity, never under anything the
client names, so nobody reads or writes another's. A camera the caller may not see (another
municipality's, or none) is refused by the same words either way, and one that became
invisible since is returned as an empty tile.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody

from ..api.problems import FieldError, ProblemError
from ..api.routes.cameras import visible_camera
from ..api.state import ApiState
from ..api.tokens import TokenInfo

__all__ = ["HANDLERS", "WallLayout"]

COLLECTION = "console.wall"

Slot = Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None


class WallLayout(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mode: Literal["grid", "live"] = "grid"
    """``grid``: every camera's snapshot; ``live``: the live tiles below."""
    size: Literal[1, 4, 9, 16] = 4
    cameras: Annotated[list[Slot], msgspec.Meta(max_length=16)] = []
    """A camera id per tile, in reading order; None for an empty tile."""
    follow: bool = False
    """Tiles go live by the hub's triggers (incidents, sirens, hotlist plates, health)."""


_decode = msgspec.json.Decoder(WallLayout)
_OPT = {"scope": "cameras:read"}


def _visible(api: ApiState, info: TokenInfo, camera_id: str) -> bool:
    try:
        visible_camera(api, info, camera_id)
    except ProblemError:
        return False
    return True


@get("/console/api/wall", opt=_OPT, include_in_schema=False)
async def get_wall(
    request: Request[TokenInfo, Any, Any], api: NamedDependency[ApiState]
) -> Response[WallLayout]:
    stored = await api.hub.journal.get_record(COLLECTION, request.user.id)
    layout = _decode.decode(stored.body) if stored is not None else WallLayout()
    info = request.user
    cameras = [c if c is not None and _visible(api, info, c) else None for c in layout.cameras]
    return Response(
        msgspec.structs.replace(layout, cameras=cameras),
        headers={"Cache-Control": "no-store"},
    )


@put("/console/api/wall", opt=_OPT, include_in_schema=False)
async def put_wall(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    data: JSONBody[WallLayout],
) -> Response[WallLayout]:
    errors = []
    if len(data.cameras) > data.size:
        errors.append(
            FieldError(field="cameras", reason=f"{len(data.cameras)} cameras for {data.size} tiles")
        )
    for index, camera in enumerate(data.cameras):
        if camera is not None and not _visible(api, request.user, camera):
            errors.append(FieldError(field="cameras", index=index, reason=f"no camera {camera!r}"))
    if errors:
        raise ProblemError(422, "the layout cannot be kept", errors=errors, kind="invalid-layout")
    await api.hub.journal.put_record(COLLECTION, request.user.id, msgspec.json.encode(data))
    return Response(data, headers={"Cache-Control": "no-store"})


HANDLERS = [get_wall, put_wall]
