"""Commit acknowledgements: what the ingester tells a gateway it has stored for good.

MQTT's PUBACK only says the broker has a message, and Mosquitto says it before the
message is on disk. A gateway that must not lose a reading keeps it until the far end,
the ingester, says it is committed. After each batch commits, the ingester publishes to
each gateway in the batch, on its ``acks`` topic (telemetry.topics) at QoS 1:

    {"schema": "acks/v1", "gateway_id": "GW-1", "ranges": [[1, 40], [43, 43]]}

``ranges`` are the message ``seq`` numbers (inclusive) the batch handled: stored, or
rejected for good (a rejected message is answered on ``.../rejects`` and must not be sent
again). An ack is idempotent and stateless: it names what this batch handled, not a
high-water mark, so acks from several ingesters (partitions, a take-over) or repeated
for a re-sent message all mean the same. A gateway deletes what an ack covers and re-sends
the rest after a timeout with the same ``seq``; each domain's duplicate rule (for a
reading, its source and observation time) stores a re-sent item once.
"""

import json
from collections.abc import Iterable

from telemetry import topics

ACK_SCHEMA = "acks/v1"


def ack_topic(farm_id: str, gateway_id: str) -> str:
    return topics.topic(farm_id, gateway_id, "acks")


def seq_ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted inclusive [first, last] runs of the distinct ``seqs``."""
    ranges: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return ranges


def ack_payload(gateway_id: str, seqs: Iterable[int]) -> bytes:
    return json.dumps(
        {"schema": ACK_SCHEMA, "gateway_id": gateway_id, "ranges": seq_ranges(seqs)}
    ).encode()


def parse_ack(payload: bytes) -> list[tuple[int, int]]:
    """The (first, last) seq ranges an ack covers; ValueError for anything else."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"ack is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("schema") != ACK_SCHEMA:
        raise ValueError(f"ack schema must be {ACK_SCHEMA!r}")
    ranges = body.get("ranges")
    if not isinstance(ranges, list) or not all(
        isinstance(r, list)
        and len(r) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in r)
        and 0 <= r[0] <= r[1]
        for r in ranges
    ):
        raise ValueError("ack ranges must be a list of [first, last] seq pairs")
    return [(first, last) for first, last in ranges]
