"""Gateway payloads: pure parsing and validation (pydantic 2), no network code.

A readings message is validated reading by reading: one bad reading is rejected on its
own and its neighbours are kept. Every rejection carries a reason a farmer can act on.
"""

import json
import re
from dataclasses import dataclass, field
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
from typing_extensions import TypedDict

from telemetry import topics

FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_PAYLOAD_BYTES = 1 << 20
TAG_ID = re.compile(r"^[0-9]{15}$")
# The same rule as check_tag_id, as a pattern pydantic-core checks without calling back
# into Python: tens of thousands of tags a second pass through it. check_tag_id words the
# reason when it fails (see _brief); a test keeps the two in agreement.
TAG_PATTERN = r"^(?:[1-9][0-9]{2}|0[1-9][0-9]|00[1-9])[0-9]{12}$"
# Gateways are machines and send the 15 digits exactly; only the registry's CSV import
# (people's spreadsheets) forgives surrounding blanks.
TagId = Annotated[str, StringConstraints(pattern=TAG_PATTERN)]


def check_tag_id(value: str) -> str:
    """ISO 11784/11785 animal id: 15 digits, a 3-digit country code (ISO 3166 numeric,
    or 900-999 for manufacturer codes) then a 12-digit national id."""
    value = str(value).strip(" \t\r\n")
    if not TAG_ID.match(value):
        raise ValueError(f"tag_id {value!r} is not 15 digits (ISO 11784/11785)")
    if int(value[:3]) == 0:
        raise ValueError(f"tag_id {value!r} has country code 000")
    return value


NAIVE_TIME = "timestamp must carry a timezone (e.g. 2024-05-01T08:00:00Z)"


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


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schema_: str = Field(alias="schema")
    gateway_id: str
    sent_at: AwareDatetime
    seq: int | None = Field(default=None, ge=0)


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


@dataclass
class Rejection:
    reason: str
    item: Any = None  # the offending reading/event as received, when there is one
    index: int | None = None  # its position in the batch


@dataclass
class Parsed:
    """The outcome of one MQTT message: what to store and what to reject."""

    farm_id: str | None
    gateway_id: str | None
    kind: str | None  # readings | events | status
    seq: int | None = None
    readings: list[Reading] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    message_rejected: bool = False  # the whole message was unusable
    status: str | None = None  # a status message: online | offline (e.g. the gateway's Will)


class ReadingsMessage(Envelope):
    """A whole readings message, for the fast path: one validation call in pydantic-core."""

    readings: list[Reading]


def parse_message(topic: str, payload: bytes, now: datetime) -> Parsed:
    """Validate one message. Never raises: every problem becomes a Rejection.

    A clean readings message (the common case) is validated in one call straight from
    the bytes; anything else takes the careful path that judges each reading on its own.
    """
    where = topics.parse(topic)
    if where is None:
        return _whole(
            None, None, None, f"topic {topic!r} is not {topics.topic('F', 'G', 'readings')}|events"
        )
    farm_id, gateway_id, kind = where
    if len(payload) > MAX_PAYLOAD_BYTES:
        return _whole(farm_id, gateway_id, kind, f"payload of {len(payload)} bytes exceeds 1 MiB")
    if kind == "status":
        return _status(farm_id, gateway_id, payload)
    if kind == "readings":
        fast = _clean_readings(payload, gateway_id, now)
        if fast is not None:
            return Parsed(farm_id, gateway_id, kind, seq=fast.seq, readings=fast.readings)
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _whole(farm_id, gateway_id, kind, f"payload is not JSON: {exc}")
    if not isinstance(body, dict):
        return _whole(farm_id, gateway_id, kind, "payload must be a JSON object")
    # a message refused whole still names its seq when it can, so its gateway is told it
    # was handled (acks.py) and does not send it again
    seq = body.get("seq") if type(body.get("seq")) is int and body["seq"] >= 0 else None
    try:
        envelope = Envelope.model_validate(body)
    except ValidationError as exc:
        return _whole(farm_id, gateway_id, kind, f"envelope: {_brief(exc)}", seq)
    expected_schema = f"{kind}/v1"
    if envelope.schema_ != expected_schema:
        return _whole(
            farm_id,
            gateway_id,
            kind,
            f"schema {envelope.schema_!r} on a {kind} topic (expected {expected_schema!r})",
            seq,
        )
    if envelope.gateway_id != gateway_id:
        return _whole(
            farm_id,
            gateway_id,
            kind,
            f"gateway_id {envelope.gateway_id!r} does not match the topic's {gateway_id!r}",
            seq,
        )
    items = body.get(kind)
    if not isinstance(items, list):
        return _whole(farm_id, gateway_id, kind, f"'{kind}' must be a list", seq)
    parsed = Parsed(farm_id, gateway_id, kind, seq=envelope.seq)
    for index, item in enumerate(items):
        try:
            value = check_item(kind, item, now)
        except ValueError as exc:
            parsed.rejections.append(Rejection(f"{kind[:-1]} {index}: {exc}", item, index))
            continue
        (parsed.readings if kind == "readings" else parsed.events).append(value)
    return parsed


def check_item(kind: str, item: Any, now: datetime) -> "Reading | Event":
    """One reading or life event (``kind``: readings | events), validated as the ingester
    stores it; ValueError says why not, worded for a farmer. The gateway agent checks its
    input with this before numbering it, so what it sends is what the ingester takes."""
    validate = READING.validate_python if kind == "readings" else Event.model_validate
    try:
        value = validate(item)
    except ValidationError as exc:
        raise ValueError(_brief(exc)) from None
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    stamp = "observed_at" if kind == "readings" else "occurred_at"
    when = value[stamp] if kind == "readings" else value.occurred_at
    if when > now + FUTURE_TOLERANCE:
        raise ValueError(f"{stamp} is more than 5 minutes in the future")
    return value


def _clean_readings(payload: bytes, gateway_id: str, now: datetime) -> "ReadingsMessage | None":
    """The message if every part of it is valid, else None (the careful path decides)."""
    try:
        whole = ReadingsMessage.model_validate_json(payload)
    except ValueError:
        return None
    limit = now + FUTURE_TOLERANCE
    if whole.schema_ != "readings/v1" or whole.gateway_id != gateway_id:
        return None
    if any(r["observed_at"] > limit for r in whole.readings):
        return None
    return whole


GATEWAY_STATUSES = ("online", "offline")


def _status(farm_id: str, gateway_id: str, payload: bytes) -> Parsed:
    """``{"status": "online"|"offline"}`` or the bare word: what a gateway's MQTT Will says."""
    text = payload.strip()
    try:
        value = json.loads(text).get("status") if text.startswith(b"{") else text.decode()
    except (ValueError, AttributeError, UnicodeDecodeError):
        value = None
    if value not in GATEWAY_STATUSES:
        return _whole(farm_id, gateway_id, "status", "status must be 'online' or 'offline'")
    return Parsed(farm_id, gateway_id, "status", status=value)


def _whole(farm_id, gateway_id, kind, reason: str, seq: int | None = None) -> Parsed:
    return Parsed(
        farm_id, gateway_id, kind, seq=seq, rejections=[Rejection(reason)], message_rejected=True
    )


def _brief(exc: ValidationError) -> str:
    """The first errors, worded for a farmer: tag and timezone errors say what is wrong."""
    parts = []
    for error in exc.errors()[:3]:
        loc = ".".join(str(p) for p in error["loc"]) or "value"
        message = error["msg"]
        if error["type"] == "string_pattern_mismatch":
            try:
                check_tag_id(error["input"])
                message = f"tag_id {error['input']!r} has blanks around its 15 digits"
            except ValueError as reason:
                message = str(reason)
        elif error["type"] == "timezone_aware":
            message = NAIVE_TIME
        parts.append(f"{loc}: {message}")
    return "; ".join(parts)
