"""``/api/v1/reports/recording``: each district's archive depth against ``[recording]
depth_days`` (:mod:`nabat.recording.depth`)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from ...recording.depth import DepthReport, depth_report
from ...regions import load_region
from ..problems import documented
from ..state import ApiState
from ..tokens import TokenInfo
from .cameras import report_municipalities

__all__ = ["HANDLERS"]


@get(
    "/api/v1/reports/recording",
    opt={"scope": "cameras:read"},
    summary="Archive depth per district",
    description="For every camera a continuous `[[recording.policy]]` records: how far back "
    "its footage goes, the share of the target window (`[recording] depth_days`) it covers, "
    "the days without footage, whether its hash chain holds; per district the cameras meeting "
    "the depth and whether it lags (and why). A district token's report is its own.",
    responses=documented(400, 403),
    tags=["cameras"],
)
async def recording_report(
    request: Request[TokenInfo, Any, Any],
    api: NamedDependency[ApiState],
    municipality: Annotated[
        list[str] | None, QueryParameter(name="municipality", max_items=100)
    ] = None,
) -> DepthReport:
    wanted = report_municipalities(api, request.user, municipality)
    hub = api.hub
    return await depth_report(
        hub.footage,
        hub.recorder.recorded(),
        load_region(hub.config.hub.region),
        target_days=hub.config.recording.depth_days,
        language=hub.config.hub.language,
        municipalities=wanted,
        slack=2 * hub.config.recording.segment_seconds,
    )


HANDLERS = [recording_report]
