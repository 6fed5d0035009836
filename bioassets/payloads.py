"""Livestock's payload schemas on the farm gateway protocol: ``readings/v1`` (ear-tag
readings) and ``events/v1`` (life events), and what the ingester's writer does with them
(``Livestock``): tags registered to another farm refused, readings and events stored in
the writer's transaction, unknown tags noted, the farm's alert rules run after it.

Pure parsing and validation (pydantic 2) above, storing below; the envelope, the topic
and the transport around them are ``telemetry``'s. A readings message is validated
reading by reading: one bad reading is rejected on its own and its neighbours are kept.
Every rejection carries a reason a farmer can act on.
"""

import logging
import re
import time
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
    with_config,
)
from sqlalchemy import Connection, Engine
from typing_extensions import TypedDict

from agri_common.wording import Said
from bioassets import rules, store
from telemetry.payloads import FUTURE_TOLERANCE, Counts, Envelope, Message, Parsed, Rejection
from telemetry.payloads import brief as brief_errors

log = logging.getLogger("agri.ingest")

TAG_ID = re.compile(r"^[0-9]{15}$")
# The same rule as check_tag_id, as a pattern pydantic-core checks without calling back
# into Python: tens of thousands of tags a second pass through it. check_tag_id words the
# reason when it fails (see _word); a test keeps the two in agreement.
TAG_PATTERN = r"^(?:[1-9][0-9]{2}|0[1-9][0-9]|00[1-9])[0-9]{12}$"
# Gateways are machines and send the 15 digits exactly; only the registry's CSV import
# (people's spreadsheets) forgives surrounding blanks.
TagId = Annotated[str, StringConstraints(pattern=TAG_PATTERN)]
REGISTRY_TTL_S = 5.0  # how long the writer trusts its copy of which tag is whose


def check_tag_id(value: str) -> str:
    """ISO 11784/11785 animal id: 15 digits, a 3-digit country code (ISO 3166 numeric,
    or 900-999 for manufacturer codes) then a 12-digit national id."""
    value = str(value).strip(" \t\r\n")
    if not TAG_ID.match(value):
        raise ValueError(f"tag_id {value!r} is not 15 digits (ISO 11784/11785)")
    if int(value[:3]) == 0:
        raise ValueError(f"tag_id {value!r} has country code 000")
    return value


@with_config(ConfigDict(extra="ignore"))
class Reading(TypedDict):
    """One ear-tag reading, validated, as a plain dict (optional fields may be absent).

    A dict rather than a model: the ingester validates tens of thousands a second, and
    building a model instance per reading was ~45 % of the validation time.
    """

    tag_id: TagId
    observed_at: AwareDatetime
    lat: NotRequired[Annotated[float | None, Field(ge=-90, le=90)]]
    lon: NotRequired[Annotated[float | None, Field(ge=-180, le=180)]]
    temperature_c: NotRequired[Annotated[float | None, Field(ge=25, le=50)]]
    activity: NotRequired[Annotated[float | None, Field(ge=0)]]
    weight_kg: NotRequired[Annotated[float | None, Field(gt=0, le=2000)]]
    battery_pct: NotRequired[Annotated[float | None, Field(ge=0, le=100)]]
    rssi: NotRequired[Annotated[float | None, Field(ge=-200, le=0)]]


READING = TypeAdapter(Reading)

EVENT_KINDS = ("birth", "death", "sale", "purchase", "vaccination", "tag_replaced")


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: Literal["birth", "death", "sale", "purchase", "vaccination", "tag_replaced"]
    tag_id: TagId
    occurred_at: AwareDatetime
    new_tag_id: TagId | None = None  # tag_replaced: the tag that replaces tag_id
    mother_tag_id: TagId | None = None  # birth
    buyer: str | None = None  # sale
    seller: str | None = None  # purchase
    price_cny: float | None = Field(default=None, ge=0)
    cause: str | None = None  # death
    vaccine: str | None = None  # vaccination

    @model_validator(mode="after")
    def _replacement(self) -> "Event":
        if self.kind == "tag_replaced" and not self.new_tag_id:
            raise ValueError("tag_replaced needs new_tag_id")
        return self


class ReadingsMessage(Envelope):
    """A whole readings message, for the fast path: one validation call in pydantic-core."""

    readings: list[Reading]


def _word(error: dict) -> str | None:
    """A tag id that fails the pattern, said as check_tag_id says it."""
    if error["type"] != "string_pattern_mismatch":
        return None
    try:
        check_tag_id(error["input"])
    except ValueError as reason:
        return str(reason)
    return f"tag_id {error['input']!r} has blanks around its 15 digits"


def brief(exc: ValidationError) -> str:
    return brief_errors(exc, _word)


def _not_future(when: datetime, stamp: str, now: datetime) -> None:
    if when > now + FUTURE_TOLERANCE:
        raise ValueError(f"{stamp} is more than 5 minutes in the future")


class Readings:
    """``readings/v1``: a line without a ``kind`` is an ear-tag reading."""

    channel, name = "readings", "readings/v1"

    def takes(self, line: dict) -> bool:
        return "kind" not in line

    def check(self, item: Any, now: datetime) -> Reading:
        try:
            value = READING.validate_python(item)
        except ValidationError as exc:
            raise ValueError(brief(exc)) from None
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        _not_future(value["observed_at"], "observed_at", now)
        return value

    def dump(self, value: Reading) -> dict:
        return READING.dump_python(value, mode="json", exclude_none=True)

    def whole(self, payload: bytes, gateway_id: str, now: datetime) -> Message | None:
        try:
            whole = ReadingsMessage.model_validate_json(payload)
        except ValueError:
            return None
        limit = now + FUTURE_TOLERANCE
        if whole.schema_ != self.name or whole.gateway_id != gateway_id:
            return None
        if any(r["observed_at"] > limit for r in whole.readings):
            return None
        return Message(whole.seq, whole.readings)


class Events:
    """``events/v1``: a line with a ``kind`` is a life event (birth, death, sale...)."""

    channel, name = "events", "events/v1"

    def takes(self, line: dict) -> bool:
        return "kind" in line

    def check(self, item: Any, now: datetime) -> Event:
        try:
            value = Event.model_validate(item)
        except ValidationError as exc:
            raise ValueError(brief(exc)) from None
        _not_future(value.occurred_at, "occurred_at", now)
        return value

    def dump(self, value: Event) -> dict:
        return value.model_dump(mode="json", exclude_none=True)

    def whole(self, payload: bytes, gateway_id: str, now: datetime) -> Message | None:
        return None


READINGS, EVENTS = Readings(), Events()
SCHEMAS = (EVENTS, READINGS)  # the agent asks in this order: a line with a kind is an event


def tag_of(item: "Reading | Event") -> str:
    return item["tag_id"] if isinstance(item, dict) else item.tag_id


class Livestock:
    """Livestock in the ingester's writer: which farm a tag is registered to, the storing
    of readings and events, the farm's alert rules after."""

    schemas = SCHEMAS

    def __init__(self, engine: Engine):
        self.engine = engine
        self._tag_farm: dict[str, str] = {}
        self._loaded = -REGISTRY_TTL_S

    def authorise(self, message: Parsed) -> None:
        """A tag registered to another farm is refused; an unregistered one is stored (and
        noted, see ``store``)."""
        if time.monotonic() - self._loaded > REGISTRY_TTL_S:
            self._tag_farm, self._loaded = store.tag_farms(self.engine), time.monotonic()
        kept = []
        for item in message.items:
            tag = tag_of(item)
            owner = self._tag_farm.get(tag)
            if owner is not None and owner != message.farm_id:
                reason = f"tag {tag} is registered to farm {owner!r}, not {message.farm_id!r}"
                message.rejections.append(Rejection(reason, message.schema.dump(item)))
            else:
                kept.append(item)
        message.items = kept

    def store(self, conn: Connection, messages: list[Parsed], now: datetime) -> Counts:
        reading_rows: list[tuple] = []  # duplicates are left to the insert to skip
        event_rows: list[dict] = []
        unknown: dict[tuple[str, str], str] = {}  # (farm, tag) -> detail
        for m in messages:
            if m.channel == READINGS.channel:
                for r in m.items:
                    reading_rows.append(store.reading_row(r, m.farm_id, m.gateway_id, now, m.seq))
                    if r["tag_id"] not in self._tag_farm:
                        unknown[m.farm_id, r["tag_id"]] = Said(
                            "alert.unknown_tag", gateway=m.gateway_id
                        )
            else:
                event_rows += [store.event_row(e, m.farm_id, m.gateway_id, now) for e in m.items]
        inserted = store.write_batch(conn, reading_rows, event_rows)
        store.note_unknown_tags(conn, unknown, now)
        return Counts(inserted, len(reading_rows) - inserted)

    def after_commit(self, farms: set[str], now: datetime, gateway_offline_after: timedelta):
        for farm_id in sorted(farms):
            try:
                rules.evaluate_farm(self.engine, farm_id, now, gateway_offline_after)
            except Exception:  # alerting must never stop ingestion
                log.exception("alert rules failed for farm %s", farm_id)
