"""Parcels, farms, animals and alerts: the evidence behind every value."""

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import shapely
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import Engine

from agri_common.rows import jsonable
from agri_common.wording import Said
from bioassets import headcount, registry
from bioassets import store as bio_store
from collateral import alerts, errors, loans, prices
from collateral.api import models
from collateral.api.examples import PROBLEMS
from collateral.api.limits import bounded_body
from collateral.api.security import ANY_ROLE, OPERATOR, EngineDep, request_locale
from collateral.auth import Principal
from collateral.carbon import CarbonError
from collateral.evidence import parcel_carbon
from remote_sensing import store as rs_store
from remote_sensing.profiles.profile_update import parcel_profile
from remote_sensing.rendering.profile_chart import render_profile_png

router = APIRouter(responses=PROBLEMS)
Caller = Annotated[Principal, Depends(ANY_ROLE)]
Operator = Annotated[Principal, Depends(OPERATOR)]


def _bbox(text: str | None) -> shapely.Geometry | None:
    if text is None:
        return None
    try:
        return shapely.box(*prices.wgs84_box(text))
    except ValueError as exc:
        raise errors.Invalid("bbox", str(exc)) from None


def _time(value: datetime | None, field: str) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if value.tzinfo is None:
        raise errors.Invalid(field, f"{field} needs a timezone, e.g. 2024-06-30T00:00:00Z")
    return value


@router.get(
    "/parcels",
    tags=["parcels"],
    summary="Parcels as a GeoJSON FeatureCollection",
    response_model=models.ParcelCollection,
)
def list_parcels(
    engine: EngineDep,
    _caller: Caller,
    kind: Literal["tea_garden", "forest"] | None = None,
    owner: Annotated[str | None, Query(max_length=200)] = None,
    bbox: Annotated[
        str | None,
        Query(description="minlon,minlat,maxlon,maxlat (WGS84)", examples=["118,25,119,26"]),
    ] = None,
    ids: Annotated[
        str | None, Query(max_length=20000, description="comma-separated parcel ids")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,  # beyond any database's integer: 422
) -> dict:
    """Filters and the page in SQL, geometry in memory only when a bbox asks: the cost
    follows the page and the filters, not the number of parcels stored."""
    box = _bbox(bbox)
    wanted = sorted({i.strip() for i in ids.split(",") if i.strip()}) if ids is not None else None
    if box is None:
        matched = rs_store.count_parcels(engine, kind, owner, wanted)
        page = rs_store.list_parcels(engine, kind, owner, wanted, limit, offset)
    else:
        inside = [
            p
            for p in rs_store.list_parcels(engine, kind, owner, wanted)
            if box.intersects(shapely.geometry.shape(json.loads(p["geometry_geojson"])))
        ]
        matched, page = len(inside), inside[offset : offset + limit]
    overview = rs_store.profile_overview(engine, [p["parcel_id"] for p in page])
    features = [
        _feature(p, json.loads(p["geometry_geojson"]), overview.get(p["parcel_id"], {}))
        for p in page
    ]
    return {
        "type": "FeatureCollection",
        "features": features,
        "numberMatched": matched,
        "numberReturned": len(features),
        "next_offset": offset + limit if offset + limit < matched else None,
    }


def _feature(parcel: dict, geometry: dict, overview: dict) -> dict:
    return {
        "type": "Feature",
        "id": parcel["parcel_id"],
        "geometry": geometry,
        "properties": {
            "parcel_id": parcel["parcel_id"],
            "kind": parcel["kind"],
            "owner": parcel["owner"],
            "area_ha": round(parcel["area_ha"], 4),
            "attributes": parcel["attributes"],
            "health_index": overview.get("health_index"),
            "clear_dates_60d": overview.get("clear_dates_60d"),
            "largest_gap_days": overview.get("largest_gap_days"),
            "disturbance": overview.get("disturbance"),
            "suspected": overview.get("suspected"),
        },
    }


def _parcel(engine: Engine, parcel_id: str) -> dict:
    parcel = rs_store.get_parcel(engine, parcel_id)
    if parcel is None:
        raise errors.NotFound(Said("problem.not_found", what="parcel", id=repr(parcel_id)))
    return parcel


@router.get(
    "/parcels/{parcel_id}",
    tags=["parcels"],
    summary="One parcel as a GeoJSON Feature",
    response_model=models.ParcelFeature,
)
def get_parcel(parcel_id: str, engine: EngineDep, _caller: Caller) -> dict:
    parcel = _parcel(engine, parcel_id)
    overview = rs_store.profile_overview(engine, [parcel_id]).get(parcel_id, {})
    return _feature(parcel, json.loads(parcel["geometry_geojson"]), overview)


@router.get(
    "/parcels/{parcel_id}/profile",
    tags=["parcels"],
    summary="NDVI profile: observations, smoothed curve, baseline, seasons, events",
    response_model=models.Profile,
)
def get_profile(
    parcel_id: str,
    request: Request,
    engine: EngineDep,
    _caller: Caller,
    as_of: datetime | None = None,
) -> Response:
    """Cached per (parcel, as_of, imagery ledger state): recomputed once a scene lands."""
    _parcel(engine, parcel_id)
    when = _time(as_of, "as_of") if as_of else None
    key = (parcel_id, when.isoformat() if when else None, rs_store.imagery_version(engine))
    return request.app.state.profiles.response(key, lambda: parcel_profile(engine, parcel_id, when))


@router.get(
    "/parcels/{parcel_id}/carbon",
    tags=["parcels"],
    summary="A forest's carbon: stock, annual sequestration, increment since a date, factors",
    response_model=models.CarbonAccount,
)
def get_carbon(
    parcel_id: str,
    engine: EngineDep,
    _caller: Caller,
    as_of: datetime | None = None,
    since: datetime | None = None,
) -> dict:
    _parcel(engine, parcel_id)
    when = _time(as_of, "as_of") if as_of else datetime.now(UTC)
    start = _time(since, "since") if since else None
    try:
        return parcel_carbon(engine, parcel_id, when, start)
    except CarbonError as exc:
        raise errors.Invalid("parcel_id", str(exc)) from exc


@router.get(
    "/parcels/{parcel_id}/profile.png",
    tags=["parcels"],
    summary="The profile as a chart",
    responses={200: {"content": {"image/png": {}}}},
    response_class=Response,
)
def get_profile_png(
    parcel_id: str,
    request: Request,
    engine: EngineDep,
    _caller: Caller,
    as_of: datetime | None = None,
) -> Response:
    """Worded in the request's language (Accept-Language)."""
    _parcel(engine, parcel_id)
    profile = parcel_profile(engine, parcel_id, _time(as_of, "as_of") if as_of else None)
    locale = request_locale(request)
    with tempfile.TemporaryDirectory() as folder:
        path = render_profile_png(profile, Path(folder) / "profile.png", locale)
        return Response(
            path.read_bytes(), media_type="image/png", headers={"Content-Language": locale}
        )


@router.get(
    "/farms",
    tags=["livestock"],
    summary="Farms with their geofences, as a GeoJSON FeatureCollection",
    response_model=models.FarmCollection,
)
def list_farms(engine: EngineDep, _caller: Caller) -> dict:
    features = []
    for farm_id in sorted(bio_store.farm_ids(engine)):
        farm = bio_store.get_farm(engine, farm_id)
        features.append(
            {
                "type": "Feature",
                "id": farm_id,
                "geometry": json.loads(farm["geofence_geojson"]),
                "properties": {"farm_id": farm_id, "name": farm["name"], "owner": farm["owner"]},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _farm(engine: Engine, farm_id: str) -> dict:
    farm = bio_store.get_farm(engine, farm_id)
    if farm is None:
        raise errors.NotFound(Said("problem.not_found", what="farm", id=repr(farm_id)))
    return farm


@router.get(
    "/farms/{farm_id}/headcount",
    tags=["livestock"],
    summary="Registered and verified animals by category, now or at a past time",
    response_model=models.Headcount,
)
def get_headcount(
    farm_id: str,
    request: Request,
    engine: EngineDep,
    _caller: Caller,
    at: datetime | None = None,
) -> Response:
    """Without ``at``: the headcount now, cached per process: recomputed after
    HEADCOUNT_TTL_S, never more than HEADCOUNT_STALE_S old (its ``at`` says when)."""
    _farm(engine, farm_id)
    if at is not None:
        counts = headcount.farm_headcount(engine, farm_id, _time(at, "at"))
        return Response(json.dumps(counts), media_type="application/json")
    return request.app.state.headcounts.response(
        ("now", farm_id), lambda: headcount.farm_headcount(engine, farm_id, datetime.now(UTC))
    )


@router.get(
    "/animals/{tag_id}",
    tags=["livestock"],
    summary="An animal's registry and state",
    response_model=models.AnimalState,
)
def get_animal(tag_id: str, engine: EngineDep, _caller: Caller) -> dict:
    state = headcount.animal_state(engine, tag_id, datetime.now(UTC))
    if state is None:
        raise errors.NotFound(f"animal {tag_id!r} is not registered")
    return jsonable(state)


@router.get(
    "/animals/{tag_id}/track",
    tags=["livestock"],
    summary="An animal's positions",
    response_model=models.Track,
)
def get_track(
    tag_id: str,
    engine: EngineDep,
    _caller: Caller,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> dict:
    if bio_store.get_animal(engine, tag_id) is None:
        raise errors.NotFound(f"animal {tag_id!r} is not registered")
    end = _time(until, "until")
    start = _time(since, "since") if since else end - timedelta(days=7)
    if start > end:
        raise errors.Invalid("since", "since must not be after until")
    points = bio_store.tag_track(engine, tag_id, start, end, limit)
    return {
        "tag_id": tag_id,
        "since": start.isoformat(),
        "until": end.isoformat(),
        "points": [
            {
                "observed_at": p["observed_at"].isoformat(),
                "lat": p["lat"],
                "lon": p["lon"],
                "gateway_id": p["gateway_id"],
            }
            for p in points
        ],
    }


@router.get(
    "/alerts",
    tags=["alerts"],
    summary="Livestock, parcel and loan alerts",
    response_model=list[models.Alert],
)
def list_alerts(
    engine: EngineDep,
    principal: Caller,
    farm_id: str | None = None,
    parcel_id: str | None = None,
    loan_id: str | None = None,
    state: Literal["open", "closed", "all"] = "open",
) -> list[dict]:
    """Livestock alerts (by farm), parcel disturbances (by parcel) and loan status alerts.
    ``loan_id`` narrows to what concerns that loan's pledges. A read: the rules run in the
    ingester and in cron (`agri alerts evaluate`), not here."""
    scope: alerts.Scope = {
        "farms": None,
        "parcels": None,
        "loan_ids": None,
        "branch": principal.branch if principal.role == "loan_officer" else None,
    }
    if loan_id is not None:
        loan = loans.get_loan(engine, loan_id)
        if not principal.sees_branch(loan["branch"]):
            raise errors.NotFound(Said("problem.not_found", what="loan", id=repr(loan_id)))
        scope["farms"] = {h["farm_id"] for h in loan["herds"]}
        scope["parcels"], scope["loan_ids"] = set(loan["parcel_ids"]), {loan_id}
    if farm_id is not None or parcel_id is not None:
        if farm_id is not None:
            _farm(engine, farm_id)
        if parcel_id is not None:
            _parcel(engine, parcel_id)
        scope["farms"] = _narrow(scope["farms"], farm_id)
        scope["parcels"] = _narrow(scope["parcels"], parcel_id)
        scope["loan_ids"] = scope["loan_ids"] or set()
    return alerts.alert_list(engine, scope, state)


def _narrow(scope: set[str] | None, wanted: str | None) -> set[str]:
    """An asset filter: only ``wanted`` (if it is in scope); nothing of this kind if absent."""
    if wanted is None:
        return set()
    return {wanted} if scope is None or wanted in scope else set()


def _parse_upload(body: bytes, suffix: str, parse):
    """Run a registry file parser on a request body (parsers read files)."""
    handle = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    path = Path(handle.name)
    try:
        handle.write(body)
        handle.close()
        return parse(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.Invalid("body", str(exc).replace(str(path), "the request body")) from exc
    finally:
        path.unlink(missing_ok=True)


@router.post(
    "/registry/farms",
    tags=["registry"],
    summary="Import farms (GeoJSON FeatureCollection: farm_id, name, owner, geofence)",
    response_model=models.Imported,
    openapi_extra={
        "requestBody": {"content": {"application/geo+json": {"schema": {"type": "object"}}}}
    },
)
async def import_farms(request: Request, engine: EngineDep, _op: Operator) -> dict:
    result = _parse_upload(await bounded_body(request), ".geojson", registry.parse_farms)
    if result.errors:
        raise errors.Invalid("body", "; ".join(result.errors[:20]))
    added, updated = bio_store.upsert_farms(engine, result.records)
    return {"added": added, "updated": updated}


@router.post(
    "/registry/animals",
    tags=["registry"],
    summary="Import animals (CSV: tag_id,farm_id,species,category,sex,birth_date,parity,lactation)",
    response_model=models.AnimalsImported,
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def import_animals(request: Request, engine: EngineDep, _op: Operator) -> dict:
    """Good rows are imported; bad rows come back with their line numbers and reasons."""
    farms = bio_store.farm_ids(engine)
    result = _parse_upload(
        await bounded_body(request), ".csv", lambda path: registry.parse_animals(path, farms)
    )
    added, updated = bio_store.upsert_animals(engine, result.records) if result.records else (0, 0)
    return {"added": added, "updated": updated, "rejected": result.errors}
