"""What a gateway message is, apart from what it carries: the envelope every payload
schema shares, the parse of a whole message into items and rejections, the gateway's
status (its Will), and the interface through which a domain plugs its payload schemas
into the transport.

A domain (livestock today) gives, per channel it owns, a ``Schema``: how one item is
checked (the same rule for the agent that numbers it and the writer that stores it), how
a checked item is written back as JSON, and optionally a fast path for a whole clean
message. It gives the writer a ``Domain``: what it does with checked items inside the
writer's transaction (so a commit ack still means "stored") and, now and then, after it.
The transport names no tag, animal or plant; a message's meaning is the domain's.
"""

import importlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, Engine

from telemetry import topics

FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_PAYLOAD_BYTES = 1 << 20
GATEWAY_STATUSES = ("online", "offline")
NAIVE_TIME = "timestamp must carry a timezone (e.g. 2024-05-01T08:00:00Z)"


class Schema(Protocol):
    """One payload schema of a domain, on its own channel (``readings/v1`` on
    ``.../readings``)."""

    channel: str  # the topic's last part and the payload's list of items
    name: str  # "readings/v1": the envelope's schema on that channel

    def takes(self, line: dict) -> bool:
        """Whether an input line handed to the gateway agent is one of this schema's items."""

    def check(self, item: Any, now: datetime) -> Any:
        """One item validated as it is stored; ValueError says why not, worded for a farmer."""

    def dump(self, value: Any) -> dict:
        """A checked item as JSON (what the agent sends, what a reject keeps)."""

    def whole(self, payload: bytes, gateway_id: str, now: datetime) -> "Message | None":
        """A whole message in one validation when every part of it is clean, else None (the
        careful path then judges item by item)."""


class Domain(Protocol):
    """What a domain does with the messages of its schemas, in the ingester's writer.

    It is built in the writer process with the writer's engine (``load_domains``) and
    kept for the writer's life, so it may cache what it needs to decide (a registry)."""

    schemas: tuple[Schema, ...]

    def authorise(self, message: "Parsed") -> None:
        """Move the items the message's farm may not send (an item registered to another
        farm) from ``message.items`` to ``message.rejections``."""

    def store(self, conn: Connection, messages: list["Parsed"], now: datetime) -> "Counts":
        """Store the checked items of ``messages`` inside the writer's transaction."""

    def after_commit(self, farms: set[str], now: datetime, gateway_offline_after: timedelta):
        """What follows storing, for the farms that sent data, at most every alert interval
        (the alert rules); outside the transaction, its failures logged, never raised."""


@dataclass
class Counts:
    stored: int = 0  # items inserted
    duplicates: int = 0  # items already stored (a re-send, a repeat)


@dataclass
class Rejection:
    reason: str
    item: Any = None  # the offending item as received, when there is one
    index: int | None = None  # its position in the message


@dataclass
class Message:
    """A message's number and its checked items (a schema's fast path answers this)."""

    seq: int | None
    items: list


@dataclass
class Parsed:
    """The outcome of one MQTT message: what to store and what to reject."""

    farm_id: str | None
    gateway_id: str | None
    channel: str | None  # a data channel, or status
    seq: int | None = None
    items: list = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    message_rejected: bool = False  # the whole message was unusable
    status: str | None = None  # a status message: online | offline (e.g. the gateway's Will)
    schema: Schema | None = None  # the schema its items were checked by


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schema_: str = Field(alias="schema")
    gateway_id: str
    sent_at: AwareDatetime
    seq: int | None = Field(default=None, ge=0)


def by_channel(schemas: Iterable[Schema]) -> dict[str, Schema]:
    """channel -> schema; every channel must be a data channel of the topic contract."""
    table: dict[str, Schema] = {}
    for schema in schemas:
        if schema.channel not in topics.DATA:
            raise ValueError(f"channel {schema.channel!r} is not in telemetry.topics.DATA")
        if schema.channel in table:
            raise ValueError(f"two schemas for channel {schema.channel!r}")
        table[schema.channel] = schema
    return table


def load_domains(paths: Iterable[str], engine: Engine) -> list[Domain]:
    """The domains named ``module:Class`` (the ingester's writer is a process of its own,
    started by spawn: it is told names, not handed objects), each built on ``engine``."""
    domains = []
    for path in paths:
        module, _, name = path.partition(":")
        domains.append(getattr(importlib.import_module(module), name)(engine))
    return domains


def parse_message(
    topic: str, payload: bytes, now: datetime, schemas: Mapping[str, Schema]
) -> Parsed:
    """Validate one message against the schema of its channel. Never raises: every problem
    becomes a Rejection. A clean message (the common case) is validated in one call when
    its schema has a fast path; anything else takes the careful path that judges each
    item on its own, so one bad item is rejected and its neighbours kept."""
    where = topics.parse(topic)
    if where is None:
        expected = topics.topic("F", "G", topics.FROM_GATEWAY[0])
        return _whole(None, None, None, f"topic {topic!r} is not {expected}|...")
    farm_id, gateway_id, channel = where
    if len(payload) > MAX_PAYLOAD_BYTES:
        return _whole(
            farm_id, gateway_id, channel, f"payload of {len(payload)} bytes exceeds 1 MiB"
        )
    if channel == "status":
        return _status(farm_id, gateway_id, payload)
    schema = schemas.get(channel)
    if schema is None:
        return _whole(farm_id, gateway_id, channel, f"no payload schema is served on {channel!r}")
    fast = schema.whole(payload, gateway_id, now)
    if fast is not None:
        return Parsed(farm_id, gateway_id, channel, seq=fast.seq, items=fast.items, schema=schema)
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _whole(farm_id, gateway_id, channel, f"payload is not JSON: {exc}")
    if not isinstance(body, dict):
        return _whole(farm_id, gateway_id, channel, "payload must be a JSON object")
    # a message refused whole still names its seq when it can, so its gateway is told it
    # was handled (acks.py) and does not send it again
    seq = body.get("seq") if type(body.get("seq")) is int and body["seq"] >= 0 else None
    try:
        envelope = Envelope.model_validate(body)
    except ValidationError as exc:
        return _whole(farm_id, gateway_id, channel, f"envelope: {brief(exc)}", seq)
    if envelope.schema_ != schema.name:
        return _whole(
            farm_id,
            gateway_id,
            channel,
            f"schema {envelope.schema_!r} on a {channel} topic (expected {schema.name!r})",
            seq,
        )
    if envelope.gateway_id != gateway_id:
        return _whole(
            farm_id,
            gateway_id,
            channel,
            f"gateway_id {envelope.gateway_id!r} does not match the topic's {gateway_id!r}",
            seq,
        )
    items = body.get(channel)
    if not isinstance(items, list):
        return _whole(farm_id, gateway_id, channel, f"'{channel}' must be a list", seq)
    parsed = Parsed(farm_id, gateway_id, channel, seq=envelope.seq, schema=schema)
    for index, item in enumerate(items):
        try:
            parsed.items.append(schema.check(item, now))
        except ValueError as exc:
            parsed.rejections.append(Rejection(f"{channel[:-1]} {index}: {exc}", item, index))
    return parsed


def envelope(gateway_id: str, seq: int, schema: str, channel: str, items: str, sent_at: str):
    """A message as a gateway sends it, around ``items`` already serialised (JSON list)."""
    return (
        f'{{"schema": "{schema}", "gateway_id": {json.dumps(gateway_id)}, '
        f'"sent_at": "{sent_at}", "seq": {seq}, "{channel}": {items}}}'
    ).encode()


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


def _whole(farm_id, gateway_id, channel, reason: str, seq: int | None = None) -> Parsed:
    return Parsed(
        farm_id, gateway_id, channel, seq=seq, rejections=[Rejection(reason)], message_rejected=True
    )


Worder = Callable[[dict], str | None]


def brief(exc: ValidationError, word: Worder = lambda error: None) -> str:
    """The first errors, worded for a farmer: ``word`` (a domain's) may say an error
    better (a tag id's digits); a naive timestamp says it needs a zone."""
    parts = []
    for error in exc.errors()[:3]:
        loc = ".".join(str(p) for p in error["loc"]) or "value"
        message = word(error) or error["msg"]
        if error["type"] == "timezone_aware":
            message = NAIVE_TIME
        parts.append(f"{loc}: {message}")
    return "; ".join(parts)
