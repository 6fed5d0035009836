"""The reference: a bare paho QoS 1 subscriber that only counts what it receives.

    python bench/bare_subscriber.py HOST PORT USER PASSWORD N

Prints "ready" once subscribed, then {"received", "seconds"} (first to last message).
"""

import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from telemetry import topics


def main() -> None:
    host, port, user, password, n = sys.argv[1:6]
    n = int(n)
    state = {"count": 0, "first": None, "last": None}
    done, ready = threading.Event(), threading.Event()

    def on_message(_client, _userdata, _message) -> None:
        now = time.perf_counter()
        state["first"] = state["first"] or now
        state["last"] = now
        state["count"] += 1
        if state["count"] >= n:
            done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{time.time_ns()}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(user, password)
    client.on_message = on_message
    client.on_subscribe = lambda *args: ready.set()
    client.on_connect = lambda c, *args: c.subscribe(topics.all_filters(("readings",))[0], 1)
    client.connect(host, int(port))
    client.loop_start()
    ready.wait(10)
    print("ready", flush=True)
    done.wait(300)
    seconds = (state["last"] or 0) - (state["first"] or 0)
    print(
        json.dumps({"received": state["count"], "seconds": seconds, "cpu_s": time.process_time()})
    )
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
