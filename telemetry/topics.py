"""The topic contract of the farm gateway protocol, in one place: every topic a gateway
or an ingester publishes to, every subscription filter, the parse of a topic, and the
Mosquitto ACL that lets each party use exactly those.

    agri/v1/farms/{farm}/gateways/{gateway}/{channel}

A gateway writes ``readings``, ``events``, ``solar`` and ``status`` (its Will) and reads ``acks``
(what the ingester has committed) and ``rejects`` (what it refused); the ingester reads
what gateways write, directly or as the shared group ``agri-ingest``, and writes what
gateways read.
"""

import re
from typing import NamedTuple

ROOT = "agri/v1/farms"
SHARE_GROUP = "agri-ingest"  # the older single-session mode's shared subscription
FROM_GATEWAY = ("readings", "events", "solar", "status")  # a gateway writes, an ingester reads
TO_GATEWAY = ("acks", "rejects")  # an ingester writes, its gateway reads
DATA = ("readings", "events", "solar")  # what a domain's payload schemas carry
CHANNELS = FROM_GATEWAY + TO_GATEWAY
ANY = "+"

_TOPIC = re.compile(
    rf"^{re.escape(ROOT)}/(?P<farm>[^/+#]+)/gateways/(?P<gateway>[^/+#]+)/(?P<channel>[^/]+)$"
)


class Address(NamedTuple):
    """Where a message came from or goes to."""

    farm_id: str
    gateway_id: str
    channel: str


def topic(farm_id: str, gateway_id: str, channel: str) -> str:
    """The topic of one gateway's ``channel`` (``ANY`` for a farm or gateway: a filter)."""
    if channel not in CHANNELS:
        raise ValueError(f"channel {channel!r} is not one of {CHANNELS}")
    return f"{ROOT}/{farm_id}/gateways/{gateway_id}/{channel}"


def parse(name: str) -> Address | None:
    """The address of a topic a gateway writes; None for anything else."""
    match = _TOPIC.match(name)
    if match is None or match["channel"] not in FROM_GATEWAY:
        return None
    return Address(match["farm"], match["gateway"], match["channel"])


def farm_filters(farm_id: str) -> list[str]:
    """What an ingester subscribes to for one farm (every gateway of it)."""
    return [topic(farm_id, ANY, channel) for channel in FROM_GATEWAY]


def all_filters(channels: tuple[str, ...] = FROM_GATEWAY) -> list[str]:
    """Every farm's and gateway's ``channels``."""
    return [topic(ANY, ANY, channel) for channel in channels]


def shared(name: str) -> str:
    """A filter as the shared subscription of the ingest group."""
    return f"$share/{SHARE_GROUP}/{name}"


def ingester_acl(user: str) -> list[str]:
    """The ACL lines of the ingester's account: it reads what every gateway writes (also
    as the shared group) and writes what every gateway reads."""
    return [
        f"user {user}",
        *(f"topic read {shared(f)}" for f in all_filters(DATA)),
        *(f"topic read {f}" for f in all_filters(FROM_GATEWAY)),
        *(f"topic write {f}" for f in all_filters(TO_GATEWAY)),
    ]


def gateway_acl(farm_id: str, gateway_id: str) -> list[str]:
    """The ACL lines of one gateway: it writes under its own farm and id only, and reads
    only its own acks and rejects."""
    return [
        f"user {gateway_id}",
        *(f"topic write {topic(farm_id, gateway_id, c)}" for c in FROM_GATEWAY),
        *(f"topic read {topic(farm_id, gateway_id, c)}" for c in TO_GATEWAY),
    ]
