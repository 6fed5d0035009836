"""A gateway simulator: realistic ear-tag traffic for registered farms, with faults on demand.

Each farm gets one gateway (``GW-<FARM>-1`` unless the credentials say otherwise) that
publishes batches of 20 readings at QoS 1, numbered with a per-gateway ``seq`` so a test
or a benchmark can account for every message. Faults are switches: silent tags, a
wandering animal, a fever, duplicate messages, out-of-order and late batches, malformed
payloads.
"""

import json
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
from shapely.geometry import shape

from bioassets import store
from bioassets.mqtt_connection import new_client, parse_mqtt_url

BATCH = 20
TEMPERATURE_C = {"cattle": 38.6, "pig": 39.0}
# Growing animals cross walk-over scales: start weight, daily gain and finishing weight (kg).
GROWTH = {"fattening_pig": (1.5, 0.75, 130.0), "beef_cattle": (40.0, 0.95, 680.0)}


def growing_weight_kg(animal: dict, at: datetime) -> float | None:
    """A believable live weight from the animal's age; None for animals not sold by weight."""
    if animal["category"] not in GROWTH or animal.get("birth_date") is None:
        return None
    start, gain, finish = GROWTH[animal["category"]]
    return min(finish, start + gain * max(0, (at.date() - animal["birth_date"]).days))


@dataclass
class Faults:
    silent_tags: int = 0  # this many animals per farm never report
    wanderer: bool = False  # one animal per farm walks out of the geofence
    fever: bool = False  # one animal per farm runs a fever
    duplicates: bool = False  # every 10th message is sent twice
    out_of_order: bool = False  # readings shuffled, every 5th batch held back one round
    late: bool = False  # every 7th batch is stamped a day old
    malformed: bool = False  # every 25th message is garbage


@dataclass
class SimStats:
    messages: int = 0
    readings: int = 0
    malformed: int = 0
    duplicate_messages: int = 0
    seq: dict[str, int] = field(default_factory=dict)


def default_gateway(farm_id: str) -> str:
    return f"GW-{farm_id.removeprefix('FARM-')}-1"


class Simulator:
    def __init__(
        self,
        engine,
        broker_url: str,
        credentials: dict[str, str],
        farm_ids: list[str] | None = None,
        animals_per_farm: int | None = None,
        faults: Faults | None = None,
        seed: int = 7,
        ca_file: str | None = None,
    ):
        self.address = parse_mqtt_url(broker_url)
        self.ca_file = ca_file
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.stats = SimStats()
        self.farms = []
        gateway_farm = {g["farm_id"]: g["gateway_id"] for g in store.all_gateways(engine)}
        for farm_id in farm_ids or sorted(store.farm_ids(engine)):
            farm = store.get_farm(engine, farm_id)
            animals = [a for a in store.farm_animals(engine, farm_id) if a["status"] == "alive"]
            animals = animals[:animals_per_farm] if animals_per_farm else animals
            gateway = gateway_farm.get(farm_id, default_gateway(farm_id))
            if gateway not in credentials:
                raise ValueError(f"no password for gateway {gateway} of farm {farm_id}")
            fence = store.geofence(farm)
            self.farms.append(
                {
                    "farm_id": farm_id,
                    "gateway": gateway,
                    "password": credentials[gateway],
                    "fence": fence,
                    "animals": animals,
                    "positions": {a["tag_id"]: self._inside(fence) for a in animals},
                }
            )
        self._held: dict[str, list[bytes]] = {}

    def _inside(self, fence) -> tuple[float, float]:
        minx, miny, maxx, maxy = fence.bounds
        while True:
            lon, lat = self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)
            if fence.contains(shape({"type": "Point", "coordinates": [lon, lat]})):
                return lat, lon

    def _client(self, farm: dict) -> mqtt.Client:
        client = new_client(
            self.address,
            f"sim-{farm['gateway']}-{self.rng.randrange(1 << 30)}",
            ca_file=self.ca_file,
            username=farm["gateway"],
            password=farm["password"],
        )
        client.max_inflight_messages_set(100)
        status = f"agri/v1/farms/{farm['farm_id']}/gateways/{farm['gateway']}/status"
        # a real gateway's last will: if it loses power the broker says so for it
        client.will_set(status, b'{"status": "offline"}', qos=1, retain=True)
        client.connect(self.address.host, self.address.port)
        client.loop_start()
        client.publish(status, b'{"status": "online"}', qos=1, retain=True)
        return client

    def round_messages(self, farm: dict, now: datetime) -> list[bytes]:
        """One round of messages for a farm at ``now`` (pure apart from the random state)."""
        f, readings = self.faults, []
        for index, animal in enumerate(farm["animals"]):
            if index < f.silent_tags:
                continue
            lat, lon = farm["positions"][animal["tag_id"]]
            lat += self.rng.gauss(0, 0.00002)
            lon += self.rng.gauss(0, 0.00002)
            if farm["fence"].contains(shape({"type": "Point", "coordinates": [lon, lat]})):
                farm["positions"][animal["tag_id"]] = (lat, lon)
            else:
                lat, lon = farm["positions"][animal["tag_id"]]
            temperature = TEMPERATURE_C[animal["species"]] + self.rng.gauss(0, 0.25)
            if f.wanderer and index == f.silent_tags:
                lat, lon = farm["fence"].bounds[3] + 0.003, farm["fence"].bounds[2] + 0.003
            if f.fever and index == f.silent_tags + 1:
                temperature = 41.3
            reading = {
                "tag_id": animal["tag_id"],
                "observed_at": (now - timedelta(milliseconds=index)).isoformat(),
                "lat": round(lat, 7),
                "lon": round(lon, 7),
                "temperature_c": round(temperature, 2),
                "activity": round(max(0.0, self.rng.gauss(100, 15)), 1),
                "battery_pct": round(self.rng.uniform(40, 100), 1),
            }
            weight = growing_weight_kg(animal, now)
            if weight is not None:
                reading["weight_kg"] = round(weight * (1 + self.rng.gauss(0, 0.01)), 1)
            readings.append(reading)
        if f.out_of_order:
            self.rng.shuffle(readings)
        messages = []
        for start in range(0, len(readings), BATCH):
            seq = self.stats.seq.get(farm["gateway"], 0) + 1
            self.stats.seq[farm["gateway"]] = seq
            batch = readings[start : start + BATCH]
            if f.late and seq % 7 == 0:
                batch = [
                    {**r, "observed_at": (now - timedelta(days=1, milliseconds=i)).isoformat()}
                    for i, r in enumerate(batch)
                ]
            if f.malformed and seq % 25 == 0:
                messages.append(b'{"schema": "readings/v1", "readings": [')
                continue
            body = {
                "schema": "readings/v1",
                "gateway_id": farm["gateway"],
                "sent_at": now.isoformat(),
                "seq": seq,
                "readings": batch,
            }
            messages.append(json.dumps(body).encode())
            if f.duplicates and seq % 10 == 0:
                messages.append(messages[-1])
        return messages

    def run(
        self, duration_s: float, interval_s: float, stop: threading.Event | None = None
    ) -> SimStats:
        stop = stop or threading.Event()
        clients = {farm["gateway"]: self._client(farm) for farm in self.farms}
        seen: set[bytes] = set()  # payloads carry their seq: a repeat is a resend
        deadline = time.monotonic() + duration_s
        try:
            while not stop.is_set():
                started = time.monotonic()
                now = datetime.now(UTC)
                for farm in self.farms:
                    topic = f"agri/v1/farms/{farm['farm_id']}/gateways/{farm['gateway']}/readings"
                    messages = self._hold_back(farm["gateway"], self.round_messages(farm, now))
                    infos = [clients[farm["gateway"]].publish(topic, m, qos=1) for m in messages]
                    for info, payload in zip(infos, messages, strict=True):
                        info.wait_for_publish(30)
                        self._count(payload, seen)
                if time.monotonic() >= deadline:
                    break
                stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
            for farm in self.farms:  # what out-of-order held back still goes out
                topic = f"agri/v1/farms/{farm['farm_id']}/gateways/{farm['gateway']}/readings"
                for payload in self._held.pop(farm["gateway"], []):
                    clients[farm["gateway"]].publish(topic, payload, qos=1).wait_for_publish(30)
                    self._count(payload, seen)
        finally:
            for client in clients.values():
                client.disconnect()
                client.loop_stop()
        return self.stats

    def _count(self, payload: bytes, seen: set[bytes]) -> None:
        """Account for a published message; payloads carry their seq, so a repeat is a resend."""
        self.stats.messages += 1
        if payload.endswith(b"["):
            self.stats.malformed += 1
        elif payload in seen:
            self.stats.duplicate_messages += 1
        else:
            self.stats.readings += payload.count(b'"tag_id"')
        seen.add(payload)

    def _hold_back(self, gateway: str, messages: list[bytes]) -> list[bytes]:
        """Out-of-order faults: one batch in five waits for the next round."""
        if not self.faults.out_of_order:
            return messages
        previous = self._held.pop(gateway, [])
        keep = [m for i, m in enumerate(messages) if i % 5 != 4]
        self._held[gateway] = [m for i, m in enumerate(messages) if i % 5 == 4]
        return keep + previous
