"""Inverter telemetry on the farm gateway protocol: ``solar/v1``, one item per inverter
reading, named after SunSpec (model 1 ``SN``; model 103/701 ``W``; lifetime energy ``WH``
or ``TotWhInj``; operating state ``St``; event bits ``Evt1``; per MPPT input ``DCV`` and
``DCA``), and what the ingester's writer does with it (``Solar``): a plant registered to
another farm is refused, the reading is stored with the item as the logger sent it.

A vendor portal's export (``solar.vendor_export``) becomes the same items and is stored
by the same ``store_readings``: live and imported history are one record.
"""

import time
from datetime import datetime, timedelta
from typing import Annotated, Any, NotRequired

import orjson
from pydantic import AwareDatetime, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from sqlalchemy import Connection, Engine
from typing_extensions import TypedDict

from agri_common.sql import bulk_insert_ignoring_duplicates
from solar import plants
from solar.tables import solar_readings
from telemetry.payloads import FUTURE_TOLERANCE, Counts, Message, Parsed, Rejection
from telemetry.payloads import brief as brief_errors

REGISTRY_TTL_S = 5.0
MAX_MPPT = 12
# SunSpec St (models 101-103): 1 off, 2 sleeping, 3 starting, 4 MPPT, 5 throttled,
# 6 shutting down, 7 fault, 8 standby.
STATES = range(1, 9)


@with_config(ConfigDict(extra="ignore"))
class SolarReading(TypedDict):
    """One inverter reading as checked (optional fields may be absent)."""

    plant_id: Annotated[str, Field(min_length=1, max_length=64)]
    SN: Annotated[str, Field(min_length=1, max_length=64)]
    observed_at: AwareDatetime
    W: NotRequired[Annotated[float | None, Field(ge=-1000, le=1_000_000)]]
    WH: NotRequired[Annotated[float | None, Field(ge=0)]]
    TotWhInj: NotRequired[Annotated[float | None, Field(ge=0)]]
    St: NotRequired[Annotated[int | None, Field(ge=1, le=8)]]
    Evt1: NotRequired[Annotated[int | None, Field(ge=0, lt=1 << 32)]]
    DCV: NotRequired[Annotated[list[float], Field(max_length=MAX_MPPT)]]
    DCA: NotRequired[Annotated[list[float], Field(max_length=MAX_MPPT)]]


READING = TypeAdapter(SolarReading)


class Readings:
    """``solar/v1``: a line naming an inverter (``SN``) or a plant is an inverter reading."""

    channel, name = "solar", "solar/v1"

    def takes(self, line: dict) -> bool:
        return "SN" in line or "plant_id" in line

    def check(self, item: Any, now: datetime) -> SolarReading:
        try:
            value = READING.validate_python(item)
        except ValidationError as exc:
            raise ValueError(brief_errors(exc)) from None
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        if value.get("WH") is None and value.get("TotWhInj") is None and value.get("W") is None:
            raise ValueError("a reading needs the lifetime energy (WH or TotWhInj) or power (W)")
        if len(value.get("DCV") or []) != len(value.get("DCA") or []):
            raise ValueError("DCV and DCA must name the same MPPT inputs")
        if value["observed_at"] > now + FUTURE_TOLERANCE:
            raise ValueError("observed_at is more than 5 minutes in the future")
        return value

    def dump(self, value: SolarReading) -> dict:
        return READING.dump_python(value, mode="json", exclude_none=True)

    def whole(self, payload: bytes, gateway_id: str, now: datetime) -> Message | None:
        return None


READINGS = Readings()
SCHEMAS = (READINGS,)


def lifetime_wh(value: SolarReading) -> float | None:
    """The lifetime counter, whichever SunSpec model named it (701's TotWhInj first)."""
    for name in ("TotWhInj", "WH"):
        if value.get(name) is not None:
            return float(value[name])
    return None


ROW_COLUMNS = (
    "plant_id",
    "observed_at",
    "serial",
    "lifetime_wh",
    "power_w",
    "status",
    "events",
    "mppt",
    "dcv_min",
    "dcv_max",
    "farm_id",
    "gateway_id",
    "source",
    "received_at",
    "seq",
    "raw",
)
assert ROW_COLUMNS == tuple(c.name for c in solar_readings.columns), "solar_readings moved"


def reading_row(
    value: SolarReading, farm_id: str, gateway_id: str, source: str, now: datetime, seq=None
) -> tuple:
    """One solar_readings row, a tuple in ROW_COLUMNS order (what store_readings takes)."""
    dcv, dca = value.get("DCV") or [], value.get("DCA") or []
    return (
        value["plant_id"],
        value["observed_at"],
        value["SN"],
        lifetime_wh(value),
        value.get("W"),
        value.get("St"),
        value.get("Evt1"),
        [{"DCV": v, "DCA": a} for v, a in zip(dcv, dca, strict=True)] or None,
        min(dcv) if len(dcv) >= 2 else None,
        max(dcv) if len(dcv) >= 2 else None,
        farm_id,
        gateway_id,
        source,
        now,
        seq,
        # the item as checked: READINGS.dump's JSON, at a tenth of its cost
        orjson.dumps(
            {k: v for k, v in value.items() if v is not None}, option=orjson.OPT_SORT_KEYS
        ).decode(),
    )


def store_readings(conn: Connection, rows: list[tuple]) -> int:
    """Within the caller's transaction; a reading already stored (plant and time) is kept
    as it was. Returns the readings inserted."""
    return bulk_insert_ignoring_duplicates(conn, solar_readings, rows)


class Solar:
    """Rooftop plants in the ingester's writer."""

    schemas = SCHEMAS

    def __init__(self, engine: Engine):
        self.engine = engine
        self._plant_farm: dict[str, str] = {}
        self._loaded = -REGISTRY_TTL_S

    def authorise(self, message: Parsed) -> None:
        """A plant must be registered, to the message's farm."""
        if time.monotonic() - self._loaded > REGISTRY_TTL_S:
            self._plant_farm, self._loaded = plants.plant_farms(self.engine), time.monotonic()
        kept = []
        for item in message.items:
            owner = self._plant_farm.get(item["plant_id"])
            if owner is None:
                self._plant_farm = plants.plant_farms(self.engine)  # registered just now?
                owner = self._plant_farm.get(item["plant_id"])
            if owner == message.farm_id:
                kept.append(item)
                continue
            reason = (
                f"plant {item['plant_id']!r} is not registered"
                if owner is None
                else f"plant {item['plant_id']!r} is registered to farm {owner!r}, "
                f"not {message.farm_id!r}"
            )
            message.rejections.append(Rejection(reason, READINGS.dump(item)))
        message.items = kept

    def store(self, conn: Connection, messages: list[Parsed], now: datetime) -> Counts:
        rows = [
            reading_row(r, m.farm_id, m.gateway_id, "gateway", now, m.seq)
            for m in messages
            for r in m.items
        ]
        inserted = store_readings(conn, rows)
        return Counts(inserted, len(rows) - inserted)

    def after_commit(self, farms: set[str], now: datetime, gateway_offline_after: timedelta):
        """Solar's findings come from the daily job (a day's energy is known once the day
        is over), not from each batch."""
