"""`agri gateway run`, the farm-side agent, against a real Mosquitto (the shipped settings)
and the real ingester: every reading an agent took is stored exactly once, whatever is
killed in between. Each test accounts by reading: sent, stored, re-sent, lost."""

import json
import re
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bioassets import store as bio_store
from collateral import domains
from telemetry import gateways
from telemetry.gateway_agent import Outbox, read_lines
from tests.support.livestock import (
    GATEWAY_FARMS,
    GATEWAY_PASSWORDS,
    Broker,
    ingesting,
    no_retained_statuses_left,  # noqa: F401 (an autouse fixture)
    wait_for,
)
from tests.support.paths import REPO_ROOT
from tests.support.processes import AGRI

pytestmark = pytest.mark.broker

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


def _tags(engine, gateway: str) -> list[str]:
    return [a["tag_id"] for a in bio_store.farm_animals(engine, GATEWAY_FARMS[gateway])]


def _lines(tags: list[str], rounds: range, start: datetime = T0) -> list[str]:
    """One reading per tag per round, a second apart: (tag, time) is each one's key."""
    return [
        json.dumps(
            {
                "tag_id": tag,
                "observed_at": (start + timedelta(seconds=r, milliseconds=i)).isoformat(),
                "temperature_c": 38.6,
            }
        )
        for r in rounds
        for i, tag in enumerate(tags)
    ]


def _keys(lines: list[str]) -> set[tuple[str, datetime]]:
    return {
        (item["tag_id"], datetime.fromisoformat(item["observed_at"]))
        for item in map(json.loads, lines)
    }


class Agent:
    """`agri gateway run` for one gateway in its own process; its log in ``folder``."""

    def __init__(self, broker, gateway: str, folder: Path, spool: bool, resend_after=2.0):
        self.gateway, self.folder = gateway, folder
        self.spool = folder / "spool"
        self.spool.mkdir(parents=True, exist_ok=True)
        self.outbox = folder / "outbox.db"
        self.log = folder / "agent.log"
        self.command = [
            *AGRI,
            "gateway",
            "run",
            "--farm",
            GATEWAY_FARMS[gateway],
            "--gateway",
            gateway,
            "--mqtt-url",
            broker.url(gateway, GATEWAY_PASSWORDS[gateway]),
            "--outbox",
            str(self.outbox),
            "--resend-after",
            str(resend_after),
            *(["--spool", str(self.spool)] if spool else []),
        ]
        self.process: subprocess.Popen | None = None

    def start(self, stdin: str | None = None) -> "Agent":
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        if stdin is not None:
            threading.Thread(target=self._feed, args=(stdin,), daemon=True).start()
        self.starts = getattr(self, "starts", 0) + 1
        return self

    def wait_connected(self) -> None:
        """Until this run of the agent has said it is connected to the broker."""
        connected = lambda: self.log.read_text().count(" connected to ") >= self.starts  # noqa: E731
        assert wait_for(connected, timeout=30), self.log.read_text()[-2000:]

    def _feed(self, text: str) -> None:
        self.process.stdin.write(text.encode())
        self.process.stdin.close()

    def drop(self, name: str, lines: list[str]) -> None:
        """A spool file as a tag reader writes one: another name, then a rename."""
        part = self.spool / f".{name}.part"
        part.write_text("\n".join(lines) + "\n")
        part.rename(self.spool / f"{name}.jsonl")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:  # say where it hangs: its threads' stacks
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(1)
            self.process.kill()
            raise AssertionError(
                f"{self.gateway} did not stop on SIGTERM:\n{self.log.read_text()[-6000:]}"
            ) from None

    def depth(self) -> int:
        box = Outbox(self.outbox)
        try:
            return box.depth()
        finally:
            box.close()

    def resent(self) -> int:
        """Messages re-sent, from the summary line each run of the agent prints."""
        found = re.findall(r"\((\d+) re-sent\)", self.log.read_text())
        return sum(int(n) for n in found)


def _report(name: str, sent: int, stored: int, agents: list[Agent]) -> None:
    resent = sum(a.resent() for a in agents)
    print(f"{name}: sent {sent}, stored {stored}, messages re-sent {resent}, lost {sent - stored}")


def test_readings_piped_to_agents_are_stored_once_and_the_agents_exit_drained(
    livestock_engine, broker, tmp_path
):
    engine = livestock_engine
    sent: set = set()
    agents = []
    with ingesting(engine, broker, client_id="agent-pipe"):
        for gateway in GATEWAY_PASSWORDS:
            lines = _lines(_tags(engine, gateway)[:50], range(30))
            sent |= _keys(lines)
            agent = Agent(broker, gateway, tmp_path / gateway, spool=False)
            agents.append(agent.start(stdin="\n".join(lines) + "\n"))
        for agent in agents:
            assert agent.process.wait(120) == 0, agent.log.read_text()[-2000:]
    stored = bio_store.reading_keys(engine)
    _report("piped", len(sent), len(stored & sent), agents)
    assert stored == sent and bio_store.count_readings(engine) == len(sent)
    assert all(a.depth() == 0 for a in agents)


def test_a_broker_killed_mid_stream_loses_nothing(livestock_engine, tmp_path):
    """Three agents take spool files; the ingester is frozen (SIGSTOP) so the broker holds
    what they publish, the broker is SIGKILLed (it acknowledged QoS 1 messages it had not
    saved: its autosave is 30 s) and restarted, the ingester thawed. The agents re-send
    what the ingester never acknowledged, and every reading is stored once."""
    from collateral.db import engine_url
    from tests.support.processes import AgriProcess

    engine = livestock_engine
    broker = Broker(tmp_path / "mosquitto")
    env = {"AGRI_DATABASE_URL": engine_url(engine), "AGRI_MQTT_URL": broker.url()}
    ingest = AgriProcess(
        ["ingest", "--session-expiry", "0"],
        env,
        tmp_path / "ingest.log",
    )
    ingest.wait_ready()
    agents = [
        Agent(broker, gateway, tmp_path / gateway, spool=True).start()
        for gateway in GATEWAY_PASSWORDS
    ]
    sent: set = set()
    try:
        for n in range(30):
            for agent in agents:
                lines = _lines(_tags(engine, agent.gateway)[:40], range(n * 3, n * 3 + 3))
                sent |= _keys(lines)
                agent.drop(f"batch-{n:03d}", lines)
            if n == 10:
                assert wait_for(lambda: bio_store.count_readings(engine) > 0, timeout=30)
                ingest.process.send_signal(signal.SIGSTOP)
            if n == 20:
                stored_before_kill = bio_store.count_readings(engine)
                broker.process.send_signal(signal.SIGKILL)
                broker.process.wait(10)
                broker.start()
                ingest.process.send_signal(signal.SIGCONT)
            time.sleep(0.1)
        stored_all = wait_for(lambda: bio_store.count_readings(engine) >= len(sent), timeout=180)
        assert stored_all, (bio_store.count_readings(engine), len(sent))
        assert wait_for(lambda: all(a.depth() == 0 for a in agents), timeout=60)
    finally:
        ingest.process.send_signal(signal.SIGCONT)
        codes = [a.stop() for a in agents]
        ingest.process.terminate()
        ingest.process.wait(30)
        ingest.close()
        broker.stop()
    stored = bio_store.reading_keys(engine)
    _report("broker SIGKILL", len(sent), len(stored & sent), agents)
    assert stored == sent and bio_store.count_readings(engine) == len(sent)
    assert stored_before_kill < len(sent)
    assert sum(a.resent() for a in agents) > 0  # what the broker lost came again
    assert codes == [0, 0, 0]
    assert all(not list(a.spool.glob("*.jsonl")) for a in agents)


def test_an_agent_killed_and_restarted_sends_what_it_had_taken(livestock_engine, broker, tmp_path):
    engine = livestock_engine
    gateway = "GW-FAT-1"
    agent = Agent(broker, gateway, tmp_path / gateway, spool=True)
    sent: set = set()
    for n in range(100):
        lines = _lines(_tags(engine, gateway)[:100], range(n * 2, n * 2 + 2))
        sent |= _keys(lines)
        agent.drop(f"reader-{n:03d}", lines)
    with ingesting(engine, broker, client_id="agent-restart"):
        agent.start()
        assert wait_for(lambda: bio_store.count_readings(engine) > 0, timeout=30, interval=0.01)
        agent.kill()  # mid-stream: files taken, messages sent and not, acks in flight
        left = agent.depth()
        assert left > 0 and bio_store.count_readings(engine) < len(sent)
        agent.start().wait_connected()
        assert wait_for(lambda: bio_store.count_readings(engine) >= len(sent), timeout=120)
        assert wait_for(lambda: agent.depth() == 0, timeout=60)
        assert agent.stop() == 0
    stored = bio_store.reading_keys(engine)
    _report(f"agent SIGKILL ({left} messages in its outbox)", len(sent), len(stored), [agent])
    assert stored == sent and bio_store.count_readings(engine) == len(sent)
    assert not list(agent.spool.glob("*.jsonl"))


def test_a_poison_message_is_rejected_once_and_not_sent_again(livestock_engine, broker, tmp_path):
    """A reading the agent cannot judge (a tag of another farm) is refused by the ingester;
    the refusal counts as handled, so the agent forgets it instead of re-sending it every
    few seconds; an input line the agent can judge is refused on the spot."""
    engine = livestock_engine
    gateway = "GW-SOW-1"
    other_farms_tag = _tags(engine, "GW-FAT-1")[0]
    good = _lines(_tags(engine, gateway)[:5], range(2))
    poison = json.dumps({"tag_id": other_farms_tag, "observed_at": T0.isoformat()})
    broken = '{"tag_id": "12345", "observed_at": "yesterday"}'
    agent = Agent(broker, gateway, tmp_path / gateway, spool=False, resend_after=1.0)
    with ingesting(engine, broker, client_id="agent-poison"):
        agent.start(stdin="\n".join([poison, *good, broken]) + "\n")
        assert agent.process.wait(60) == 0, agent.log.read_text()[-2000:]
        time.sleep(3)  # three re-send periods: nothing more may arrive
    rejects = [r for r in gateways.list_rejects(engine, gateway) if other_farms_tag in r["reason"]]
    assert len(rejects) == 1, rejects
    assert bio_store.reading_keys(engine) == _keys(good)
    log = agent.log.read_text()
    assert "input line 12 refused" in log and "not 15 digits" in log
    assert agent.resent() == 0 and agent.depth() == 0


def test_input_lines_become_checked_numbered_messages(tmp_path):
    """Readings and events apart, at most per_message each; refused lines say why."""
    now = datetime.now(UTC)
    lines = [
        *_lines([f"15610000000{i:04d}" for i in range(1, 6)], range(3)),
        json.dumps({"kind": "birth", "tag_id": "156100000000099", "occurred_at": T0.isoformat()}),
        json.dumps(
            {"tag_id": "156100000000001", "observed_at": (now + timedelta(hours=1)).isoformat()}
        ),
        "not json",
        "[1, 2]",
    ]
    messages, taken = read_lines(lines, now, 4, domains.agent_schemas())
    earlier = Outbox(tmp_path / "lost-disk.db")
    (old,) = earlier.add(messages[:1])
    assert [(kind, len(items)) for kind, items in messages] == [
        ("readings", 4), ("readings", 4), ("readings", 4), ("readings", 3), ("events", 1),
    ]  # fmt: skip
    assert [number for number, _, _ in taken.refused] == [17, 18, 19]
    assert "in the future" in taken.refused[0][1]
    box = Outbox(tmp_path / "outbox.db", max_messages=6)
    seqs = box.add(messages)
    # a new outbox numbers past any earlier one (from the time in ms), never from 1 again
    assert seqs[0] > old and seqs == list(range(seqs[0], seqs[0] + 5))
    assert box.depth() == 5
    assert [row[0] for row in box.due(time.time(), 30, 100)] == seqs
    box.mark_sent(seqs[:3], time.time())
    assert [row[0] for row in box.due(time.time(), 30, 100)] == seqs[3:]
    # an ack covers only what was sent: a stale one for numbers not yet sent deletes nothing
    assert box.acknowledge([(seqs[0], seqs[-1])]) == 3
    from telemetry.gateway_agent import OutboxFull

    with pytest.raises(OutboxFull):
        box.add(messages)  # 2 + 5 > 6: nothing of it is kept
    assert box.depth() == 2
    (again,) = box.add(messages[:1])
    assert again == seqs[-1] + 1  # seqs are never reused


@pytest.mark.slow
@pytest.mark.postgres
def test_chaos_random_kills_of_broker_ingester_and_agent_and_a_postgres_restart(tmp_path):
    """Three agents take spool files for about a minute while, at random moments (seeded),
    the broker is SIGKILLed and restarted, one of two ingesters is SIGKILLed and
    restarted, an agent is SIGKILLed and restarted, and PostgreSQL is restarted. At the
    end every reading is stored once: 0 lost, 0 duplicated. Prints its figures."""
    import random

    from collateral.db import make_engine, upgrade
    from tests.support.livestock import seed_livestock
    from tests.support.private_postgres import PrivatePostgres
    from tests.support.processes import AgriProcess

    rng = random.Random(17)
    pg = PrivatePostgres().start()
    engine = make_engine(pg.url())
    broker = Broker(tmp_path / "mosquitto")
    upgrade(engine)
    seed_livestock(engine)
    env = {"AGRI_DATABASE_URL": pg.url(), "AGRI_MQTT_URL": broker.url()}

    def ingester(k: int) -> AgriProcess:
        process = AgriProcess(["ingest"], env, tmp_path / f"ingest-{k}.log")
        process.wait_ready(60)
        return process

    ingesters = [ingester(0), ingester(1)]
    agents = [
        Agent(broker, gateway, tmp_path / gateway, spool=True).start()
        for gateway in GATEWAY_PASSWORDS
    ]
    faults = ["broker", "ingester", "agent", "postgres"]
    rng.shuffle(faults)
    when = sorted(rng.sample(range(5, 55), len(faults)))  # rounds of about a second
    done: list[str] = []
    sent: set = set()
    tags = {a.gateway: _tags(engine, a.gateway)[:30] for a in agents}
    try:
        for n in range(60):
            for agent in agents:
                lines = _lines(tags[agent.gateway], range(n * 2, n * 2 + 2))
                sent |= _keys(lines)
                agent.drop(f"chaos-{n:03d}", lines)
            if when and n == when[0]:
                when.pop(0)
                fault = faults[len(done)]
                if fault == "broker":
                    broker.process.send_signal(signal.SIGKILL)
                    broker.process.wait(10)
                    broker.start()
                elif fault == "ingester":
                    victim = rng.randrange(2)
                    ingesters[victim].process.send_signal(signal.SIGKILL)
                    ingesters[victim].process.wait(10)
                    ingesters[victim].close()
                    ingesters[victim] = ingester(victim)
                elif fault == "agent":
                    victim = rng.choice(agents)
                    victim.kill()
                    victim.start()
                else:
                    pg.restart(down_s=2.0)
                done.append(f"{fault} at round {n}")
            time.sleep(1.0)
        stored_all = wait_for(lambda: bio_store.count_readings(engine) >= len(sent), timeout=240)
        assert stored_all, (bio_store.count_readings(engine), len(sent), done)
        assert wait_for(lambda: all(a.depth() == 0 for a in agents), timeout=120)
        stored = bio_store.reading_keys(engine)
        count = bio_store.count_readings(engine)
    finally:
        for agent in agents:
            agent.stop()
        for process in ingesters:
            process.process.terminate()
            process.process.wait(30)
            process.close()
        broker.stop()
        engine.dispose()
        pg.destroy()
    _report(f"chaos ({', '.join(done)})", len(sent), len(stored & sent), agents)
    print(f"chaos: duplicated {count - len(stored)}, lost {len(sent - stored)}")
    assert len(done) == 4
    assert stored == sent and count == len(sent)


def test_an_agent_offline_for_hours_delivers_its_backlog_in_order(livestock_engine, tmp_path):
    """The broker is unreachable while a farm's tag reader hands the agent six hours of
    readings (one round every 10 minutes, one animal in a fever for an hour); when the
    broker comes back the backlog arrives, each tag's readings in observation order, and
    the headcount at past times is what the same readings stored directly give."""
    from sqlalchemy import select

    from bioassets import headcount
    from bioassets.tables import readings
    from collateral.db import make_engine, upgrade
    from telemetry.writer import BatchWriter
    from tests.support.livestock import DEFAULT_OFFLINE_AFTER, seed_livestock

    engine = livestock_engine
    gateway, farm = "GW-SOW-1", GATEWAY_FARMS["GW-SOW-1"]
    inside = bio_store.geofence(bio_store.get_farm(engine, farm)).representative_point()
    tags = _tags(engine, gateway)[:30]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=8)
    rounds = []
    for r in range(36):
        at = start + timedelta(minutes=10 * r)
        rounds.append(
            [
                json.dumps(
                    {
                        "tag_id": tag,
                        "observed_at": (at + timedelta(seconds=i)).isoformat(),
                        "lat": inside.y,
                        "lon": inside.x,
                        "temperature_c": 41.2 if i == 0 and 12 <= r < 18 else 38.7,
                    }
                )
                for i, tag in enumerate(tags)
            ]
        )
    broker = Broker(tmp_path / "mosquitto")
    broker.stop()  # the farm's link is down
    agent = Agent(broker, gateway, tmp_path / gateway, spool=True)
    agent.start()
    try:
        for r, lines in enumerate(rounds):
            agent.drop(f"round-{r:03d}", lines)
        assert wait_for(lambda: not list(agent.spool.glob("*.jsonl")), timeout=30)
        assert agent.depth() > 0 and bio_store.count_readings(engine) == 0
        broker.start()
        with ingesting(engine, broker, client_id="agent-offline"):
            sent = set().union(*(_keys(lines) for lines in rounds))
            assert wait_for(lambda: bio_store.count_readings(engine) >= len(sent), timeout=120)
            assert wait_for(lambda: agent.depth() == 0, timeout=60)
        assert agent.stop() == 0
    finally:
        if agent.process.poll() is None:
            agent.kill()
        broker.stop()
    assert bio_store.reading_keys(engine) == sent
    # in order per tag: a tag's readings came in messages numbered as they were observed
    with engine.connect() as c:
        rows = c.execute(
            select(readings.c.tag_id, readings.c.observed_at, readings.c.seq).order_by(
                readings.c.tag_id, readings.c.observed_at
            )
        ).all()
    by_tag: dict[str, list[int]] = {}
    for tag, _at, seq in rows:
        by_tag.setdefault(tag, []).append(seq)
    assert all(seqs == sorted(seqs) for seqs in by_tag.values())
    # the headcount at past times, against the same readings stored straight away
    reference = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    upgrade(reference)
    seed_livestock(reference)
    writer = BatchWriter(reference, domains.INGEST, DEFAULT_OFFLINE_AFTER)
    topic = f"agri/v1/farms/{farm}/gateways/{gateway}/readings"
    for r, lines in enumerate(rounds):
        items = [json.loads(line) for line in lines]
        body = {"schema": "readings/v1", "gateway_id": gateway, "sent_at": str(start), "seq": r}
        writer.store([(topic, json.dumps({**body, "readings": items}).encode())])
    for hours in (-1, 1, 2.5, 4, 7):
        at = start + timedelta(hours=hours)
        ours = headcount.farm_headcount(engine, farm, at)["categories"]
        assert ours == headcount.farm_headcount(reference, farm, at)["categories"], hours
    during_fever = headcount.farm_headcount(engine, farm, start + timedelta(hours=2.5))
    verified = sum(c["verified"] for c in during_fever["categories"].values())
    assert verified == len(tags) - 1  # the one in a fever is not verified then
    reference.dispose()


def test_spool_file_names_are_remembered_for_a_week(tmp_path):
    box = Outbox(tmp_path / "outbox.db")
    box.add([], spool_name="old.jsonl:10:1")
    old = (datetime.now(UTC) - timedelta(days=8)).isoformat()
    box.db.execute("UPDATE spooled SET taken_at = ? WHERE name = 'old.jsonl:10:1'", (old,))
    box.add([], spool_name="new.jsonl:10:2")
    assert not box.was_spooled("old.jsonl:10:1") and box.was_spooled("new.jsonl:10:2")
    box.close()
