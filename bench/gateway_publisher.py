"""Benchmark publisher: N messages of PER readings at QoS 1 as fast as the broker takes them.

    python bench/gateway_publisher.py HOST PORT USER PASSWORD FARM N PER START_MS [HERD]

HERD k (default 0) names the tags the stream reads: the sample sows' ids for 0, the same
180 animals under other ids (``tags(k)``) for the benchmark's other farms.

Prints {"publish_s", "sent_at": [epoch seconds per seq]} for loss and latency accounting.
"""

import functools
import json
import sys
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from telemetry import topics


@functools.cache
def tags(herd: int = 0) -> list[str]:
    """The 180 tag ids of herd ``herd``: 0 is the sample's sows (FARM-SOW)."""
    base = 100000000000 if herd == 0 else 300000000000 + herd * 1000
    return [f"156{base + i:012d}" for i in range(1, 181)]


def reading_key(start_ms: int, per: int, seq: int, k: int, herd: int = 0) -> tuple[str, datetime]:
    """(tag_id, observed_at) of reading k of message seq: what the stream holds."""
    herd_tags = tags(herd)
    at = _stream_start(start_ms) + timedelta(milliseconds=seq * per + k)
    return herd_tags[k % len(herd_tags)], at


@functools.cache
def _stream_start(start_ms: int) -> datetime:
    return datetime.fromtimestamp(start_ms / 1000, UTC)


def main() -> None:
    host, port, user, password, farm, n, per, start_ms = sys.argv[1:9]
    n, per, start_ms = int(n), int(per), int(start_ms)
    herd = int(sys.argv[9]) if len(sys.argv) > 9 else 0
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{time.time_ns()}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(1000)
    client.connect(host, int(port))
    client.loop_start()
    topic = topics.topic(farm, user, "readings")
    started, infos, sent = time.perf_counter(), [], []
    for seq in range(n):
        keys = [reading_key(start_ms, per, seq, k, herd) for k in range(per)]
        items = [
            {
                "tag_id": tag,
                "observed_at": at.isoformat(),
                "temperature_c": 38.9,
                "activity": 97.0,
                "lat": 25.0391,
                "lon": 118.222,
            }
            for tag, at in keys
        ]
        now = datetime.now(UTC)
        sent.append(now.timestamp())
        body = {"schema": "readings/v1", "gateway_id": user, "sent_at": now.isoformat(), "seq": seq}
        infos.append(client.publish(topic, json.dumps({**body, "readings": items}), qos=1))
    for info in infos:
        info.wait_for_publish(120)
    print(json.dumps({"publish_s": time.perf_counter() - started, "sent_at": sent}))
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
