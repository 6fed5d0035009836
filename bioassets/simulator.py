"""A gateway simulator: realistic ear-tag traffic for registered farms, with faults on demand.

Each farm gets one gateway (``GW-<FARM>-1`` unless the credentials say otherwise) played
by the reference gateway agent (``gateway_agent.py``): readings go into the agent's
outbox in messages of 20, numbered there, published at QoS 1 and kept until the
ingester acknowledges them, exactly as a real farm's agent does. Faults are switches:
silent tags, a wandering animal, a fever, duplicate messages (a message published twice),
out-of-order and late batches, malformed payloads (published beside the agent: garbage a
broken gateway sends, which the ingester must refuse).
"""

import dataclasses
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shapely.geometry import shape

from bioassets import payloads, store
from telemetry import gateways
from telemetry.gateway_agent import GatewayAgent, Outbox
from telemetry.mqtt_connection import parse_mqtt_url

BATCH = 20
MALFORMED = b'{"schema": "readings/v1", "readings": ['
DRAIN_S = 30.0  # at the end, how long to wait for the ingester's last acknowledgements
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
    messages: int = 0  # published: numbered ones, their duplicates and malformed ones
    readings: int = 0  # distinct readings sent (each is stored once)
    malformed: int = 0
    duplicate_messages: int = 0
    seq: dict[str, int] = field(default_factory=dict)  # the last seq of each gateway
    first_seq: dict[str, int] = field(default_factory=dict)  # and its first in this run
    resent: int = 0  # numbered messages the agents published again (no ack in time)
    unacknowledged: int = 0  # left in the agents' outboxes when the run ended


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
        gateway_farm = {g["farm_id"]: g["gateway_id"] for g in gateways.all_gateways(engine)}
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
        self._held: dict[str, list[list[dict]]] = {}
        self._batches: dict[str, int] = {}  # per gateway: batches made (late-fault cadence)
        self._messages: dict[str, int] = {}  # per gateway: messages sent (other faults)

    def _inside(self, fence) -> tuple[float, float]:
        minx, miny, maxx, maxy = fence.bounds
        while True:
            lon, lat = self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)
            if fence.contains(shape({"type": "Point", "coordinates": [lon, lat]})):
                return lat, lon

    def _agent(self, farm: dict, folder: Path) -> GatewayAgent:
        address = dataclasses.replace(
            self.address, username=farm["gateway"], password=farm["password"]
        )
        outbox = Outbox(folder / f"{farm['gateway']}.db")
        agent = GatewayAgent(
            outbox,
            address,
            farm["farm_id"],
            farm["gateway"],
            schemas=payloads.SCHEMAS,
            per_message=BATCH,
            ca_file=self.ca_file,
        )
        agent.start()
        return agent

    def round_batches(self, farm: dict, now: datetime) -> list[list[dict]]:
        """One round of reading batches for a farm at ``now`` (pure apart from the random
        state): what the farm's tag reader hands its gateway."""
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
        batches = []
        for start in range(0, len(readings), BATCH):
            batch = readings[start : start + BATCH]
            self._batches[farm["gateway"]] = n = self._batches.get(farm["gateway"], 0) + 1
            if f.late and n % 7 == 0:
                batch = [
                    {**r, "observed_at": (now - timedelta(days=1, milliseconds=i)).isoformat()}
                    for i, r in enumerate(batch)
                ]
            batches.append(batch)
        return batches

    def run(
        self,
        duration_s: float,
        interval_s: float,
        stop: threading.Event | None = None,
        outbox_dir: Path | None = None,
    ) -> SimStats:
        """Play every farm's gateway for ``duration_s``, a round every ``interval_s``, then
        wait (up to DRAIN_S) for the ingester to acknowledge everything. The agents'
        outboxes live in ``outbox_dir`` (a temporary folder if None)."""
        stop = stop or threading.Event()
        with tempfile.TemporaryDirectory(prefix="agri-sim-") as scratch:
            folder = Path(outbox_dir or scratch)
            agents = {farm["gateway"]: self._agent(farm, folder) for farm in self.farms}
            try:
                self._play(agents, duration_s, interval_s, stop)
                for farm in self.farms:  # what out-of-order held back still goes out
                    self._send(agents[farm["gateway"]], self._held.pop(farm["gateway"], []))
                deadline = time.monotonic() + DRAIN_S
                while not all(a.drained() for a in agents.values()):
                    if time.monotonic() > deadline or stop.is_set():
                        break
                    for agent in agents.values():
                        agent.pump()
                    time.sleep(0.02)
            finally:
                for agent in agents.values():
                    self.stats.resent += agent.stats.resent
                    self.stats.unacknowledged += agent.outbox.depth()
                    agent.stop()
                    agent.outbox.close()
        return self.stats

    def _play(self, agents: dict, duration_s: float, interval_s: float, stop) -> None:
        deadline = time.monotonic() + duration_s
        while not stop.is_set():
            started = time.monotonic()
            now = datetime.now(UTC)
            for farm in self.farms:
                agent = agents[farm["gateway"]]
                self._send(agent, self._hold_back(farm["gateway"], self.round_batches(farm, now)))
            if time.monotonic() >= deadline:
                break
            while time.monotonic() - started < interval_s and not stop.is_set():
                for agent in agents.values():
                    agent.pump()
                stop.wait(0.02)

    def _send(self, agent: GatewayAgent, batches: list[list[dict]]) -> None:
        """Hand batches to the agent (malformed ones beside it), publish, play duplicates."""
        f, repeat = self.faults, []
        for batch in batches:
            self._messages[agent.gateway_id] = n = self._messages.get(agent.gateway_id, 0) + 1
            if f.malformed and n % 25 == 0:
                agent.client.publish(agent.topic("readings"), MALFORMED, qos=1)
                self.stats.malformed += 1
                self.stats.messages += 1
                continue
            (seq,) = agent.outbox.add([("readings", batch)])
            self.stats.seq[agent.gateway_id] = seq
            self.stats.first_seq.setdefault(agent.gateway_id, seq)
            self.stats.messages += 1
            self.stats.readings += len(batch)
            if f.duplicates and n % 10 == 0:
                repeat.append(seq)
        agent.wait_connected(10)  # a broker that is not there yet: the outbox keeps them
        agent.pump()
        for seq in repeat:
            if agent.republish(seq):
                self.stats.duplicate_messages += 1
                self.stats.messages += 1

    def _hold_back(self, gateway: str, batches: list[list[dict]]) -> list[list[dict]]:
        """Out-of-order faults: one batch in five waits for the next round."""
        if not self.faults.out_of_order:
            return batches
        previous = self._held.pop(gateway, [])
        keep = [b for i, b in enumerate(batches) if i % 5 != 4]
        self._held[gateway] = [b for i, b in enumerate(batches) if i % 5 == 4]
        return keep + previous
