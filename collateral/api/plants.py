"""Rooftop solar plants: the registry, a plant's days (energy, expected, peers, PR, flags),
its alerts and its value today."""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import Engine

from agri_common.rows import jsonable
from collateral import errors, prices, solar_value
from collateral.api import models
from collateral.api.examples import PROBLEMS
from collateral.api.security import ANY_ROLE, EngineDep
from collateral.auth import Principal
from solar import alerts, daily, plants
from solar.record import plant_record
from telemetry import farm_alerts

router = APIRouter(responses=PROBLEMS)
Caller = Annotated[Principal, Depends(ANY_ROLE)]


def _plant(engine: Engine, plant_id: str) -> dict:
    plant = plants.get_plant(engine, plant_id)
    if plant is None:
        raise errors.NotFound(f"plant {plant_id!r} is not registered")
    return plant


@router.get(
    "/plants",
    tags=["solar"],
    summary="Registered rooftop plants",
    response_model=list[plants.Plant],
)
def list_plants(engine: EngineDep, _caller: Caller, farm_id: str | None = None) -> list[dict]:
    return [jsonable(p) for p in plants.list_plants(engine, farm_id)]


@router.get(
    "/plants/{plant_id}",
    tags=["solar"],
    summary="A rooftop plant as registered",
    response_model=plants.Plant,
)
def get_plant(plant_id: str, engine: EngineDep, _caller: Caller) -> dict:
    return jsonable(_plant(engine, plant_id))


@router.get(
    "/plants/{plant_id}/days",
    tags=["solar"],
    summary="A plant's days: energy, expected, peer ratio, PR, availability, flags",
    response_model=list[models.PlantDay],
)
def get_days(
    plant_id: str,
    engine: EngineDep,
    _caller: Caller,
    since: date | None = None,
    until: date | None = None,
    limit: Annotated[int, Query(ge=1, le=3660)] = 366,
) -> list[dict]:
    _plant(engine, plant_id)
    if since and until and since > until:
        raise errors.Invalid("since", "since must not be after until")
    days = [
        d
        for d in daily.plant_days(engine, plant_id)
        if (since is None or d["day"] >= since) and (until is None or d["day"] <= until)
    ]
    return [jsonable(d) for d in days[-limit:]]


@router.get(
    "/plants/{plant_id}/alerts",
    tags=["solar"],
    summary="A plant's alerts, oldest first",
    response_model=list[models.PlantAlert],
)
def get_alerts(plant_id: str, engine: EngineDep, _caller: Caller, open_only: bool = False):
    plant = _plant(engine, plant_id)
    found = farm_alerts.list_alerts(engine, plant["farm_id"], open_only)
    return [jsonable(a) for a in found if a["subject"] == plant_id and a["kind"] in alerts.KINDS]


@router.get(
    "/plants/{plant_id}/value",
    tags=["solar"],
    summary="A plant's value today: its fee receivable (P50, P90) and equipment",
    response_model=models.PlantValue,
)
def get_value(plant_id: str, engine: EngineDep, _caller: Caller) -> dict:
    _plant(engine, plant_id)
    now = datetime.now(UTC)
    table = prices.table_in_force(engine, "solar", now.date())
    if table is None:
        raise errors.Refused("no solar table is in force: import one (agri prices import)")
    record = plant_record(engine, plant_id, now)
    items = solar_value.plant_items({"record": record}, table, {}, now)
    return {
        "plant_id": plant_id,
        "as_of": now,
        "table_version": table["version"],
        "items": items,
        "value_cny": str(sum((Decimal(i["value_cny"]) for i in items), Decimal("0"))),
        "eligible_value_cny": str(
            sum((Decimal(i["eligible_value_cny"]) for i in items), Decimal("0"))
        ),
    }
