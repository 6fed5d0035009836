"""What the loan officer's map needs: NDVI overlays, animals' last positions, headcount
over time."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from agri_common.wording import coded
from bioassets import headcount
from bioassets import store as bio_store
from collateral import errors
from collateral.api import models
from collateral.api.assets import Caller, _farm, _parcel
from collateral.api.examples import PROBLEMS
from collateral.api.security import EngineDep
from remote_sensing import store as rs_store
from remote_sensing.profiles.profiles import MIN_VALID_FRACTION
from remote_sensing.rendering import overlay

router = APIRouter(responses=PROBLEMS)
PNG = {200: {"content": {"image/png": {}}}}


def _overlay_dir(request: Request) -> Path:
    return Path(request.app.state.data_dir) / "overlays"


@router.get(
    "/parcels/{parcel_id}/ndvi-overlay",
    tags=["map"],
    summary="The parcel's latest cloud-free NDVI scene as a map overlay (image and bounds)",
    response_model=models.Overlay,
)
def parcel_overlay(parcel_id: str, request: Request, engine: EngineDep, _caller: Caller) -> dict:
    _parcel(engine, parcel_id)
    paths = rs_store.scene_ndvi_paths(engine)
    clear = [
        o
        for o in rs_store.parcel_observations(engine, parcel_id)
        if o["valid_fraction"] >= MIN_VALID_FRACTION
        and o["scene_id"] in paths
        and Path(paths[o["scene_id"]]).exists()
    ]
    if not clear:
        raise errors.NotFound(f"parcel {parcel_id!r} has no cloud-free scene on file yet")
    latest = clear[-1]
    _, meta = overlay.overlay(
        Path(paths[latest["scene_id"]]), _overlay_dir(request), latest["scene_id"]
    )
    return {
        "parcel_id": parcel_id,
        "scene_id": latest["scene_id"],
        "acquired_at": latest["acquired_at"].isoformat(),
        "bounds": meta["bounds"],
        "image": f"/v1/scenes/{latest['scene_id']}/ndvi.png",
        "legend": "/v1/ndvi-legend.png",
    }


@router.get(
    "/scenes/{scene_id}/ndvi.png",
    tags=["map"],
    summary="A scene's NDVI in Web Mercator, coloured, transparent where not imaged",
    response_class=FileResponse,
    responses=PNG,
)
def scene_overlay(scene_id: str, request: Request, engine: EngineDep, _caller: Caller):
    path = rs_store.scene_ndvi_paths(engine).get(scene_id)
    if path is None or not Path(path).exists():
        raise errors.NotFound(f"scene {scene_id!r} has no NDVI on file")
    png, _ = overlay.overlay(Path(path), _overlay_dir(request), scene_id)
    return FileResponse(
        png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )


@router.get(
    "/ndvi-legend.png",
    tags=["map"],
    summary="The colour scale of the NDVI overlays",
    response_class=FileResponse,
    responses=PNG,
)
def ndvi_legend(request: Request, _caller: Caller):
    return FileResponse(overlay.legend(_overlay_dir(request)), media_type="image/png")


@router.get(
    "/farms/{farm_id}/animals",
    tags=["livestock"],
    summary="The farm's living animals with their last known position and verification",
    response_model=models.FarmAnimals,
)
def farm_animals(
    farm_id: str,
    engine: EngineDep,
    _caller: Caller,
    days: Annotated[int, Query(ge=1, le=365)] = 7,
) -> dict:
    _farm(engine, farm_id)
    now = datetime.now(UTC)
    animals = headcount.herd_animals(engine, farm_id, now)
    where = bio_store.tag_states(
        engine, now - timedelta(days=days), now, [a["tag_id"] for a in animals]
    )
    out = []
    for a in animals:
        state = where.get(a["tag_id"], {})
        position = state.get("position")
        out.append(
            {
                "tag_id": a["tag_id"],
                "category": a["category"],
                "lat": position[0] if position else None,
                "lon": position[1] if position else None,
                "last_seen": state["last_seen"].isoformat() if state.get("last_seen") else None,
                "verified": a["reason"] is None,
                "reason": a["reason"],
                "reason_coded": coded(a["reason"]),
            }
        )
    return {"farm_id": farm_id, "at": now.isoformat(), "animals": out}


@router.get(
    "/farms/{farm_id}/headcount/history",
    tags=["livestock"],
    summary="Verified headcount by category at regular times up to now",
    response_model=models.HeadcountHistory,
)
def headcount_history(
    farm_id: str,
    engine: EngineDep,
    _caller: Caller,
    days: Annotated[int, Query(ge=1, le=90)] = 14,
    points: Annotated[int, Query(ge=2, le=60)] = 15,
) -> dict:
    _farm(engine, farm_id)
    now = datetime.now(UTC)
    step = timedelta(days=days) / (points - 1)
    series = []
    for k in range(points):
        at = now - step * (points - 1 - k)
        counts = headcount.farm_headcount(engine, farm_id, at)["categories"]
        series.append(
            {
                "at": at.isoformat(),
                "verified": {c: v["verified"] for c, v in counts.items() if v["registered"]},
                "registered": {c: v["registered"] for c, v in counts.items() if v["registered"]},
            }
        )
    return {"farm_id": farm_id, "series": series}
