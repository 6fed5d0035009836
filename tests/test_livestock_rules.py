"""Alerts fire and clear on scripted scenarios; verified headcount at past times."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from bioassets import rules
from bioassets import store as bio_store
from bioassets.headcount import animal_state, farm_headcount
from bioassets.payloads import Reading
from telemetry import accounts, farm_alerts
from tests.support.paths import SAMPLE_TILES

T = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
OFFLINE_AFTER = timedelta(minutes=30)  # the shipped default of AGRI_GATEWAY_OFFLINE_MINUTES
SOW = "FARM-SOW"
INSIDE = (25.0391, 118.2220)  # the sow farm's geofence spans 25.0380-25.0402, 118.2205-118.2235
OUTSIDE = (25.0500, 118.2400)


def _tags(engine, category: str) -> list[str]:
    return [a["tag_id"] for a in bio_store.farm_animals(engine, SOW) if a["category"] == category]


def _readings(engine, rows: list[dict]) -> None:
    full = []
    for r in rows:
        lat, lon = r.pop("position", INSIDE)
        reading = Reading(lat=lat, lon=lon, **r)
        full.append(bio_store.reading_row(reading, SOW, "GW-SOW-1", r["observed_at"], None))
    with engine.begin() as conn:
        bio_store.write_batch(conn, full, [])


def _everyone_seen(engine, at: datetime) -> None:
    _readings(
        engine,
        [
            {"tag_id": t, "observed_at": at, "temperature_c": 38.6, "activity": 100}
            for t in _tags(engine, "breeding_sow")
        ],
    )


def _open(engine, kind: str) -> set[str]:
    return {
        a["subject"]
        for a in farm_alerts.list_alerts(engine, SOW, open_only=True)
        if a["kind"] == kind
    }


@pytest.fixture
def farm(livestock_engine):
    # registered long before the scenario, so "never seen" counts from then
    from sqlalchemy import update

    from bioassets.tables import animals

    with livestock_engine.begin() as conn:
        conn.execute(update(animals).values(registered_at=T - timedelta(days=30)))
    return livestock_engine


def test_silent_tag_opens_after_six_hours_and_closes_when_heard(farm):
    tag = _tags(farm, "breeding_sow")[0]
    _everyone_seen(farm, T)
    rules.evaluate_farm(farm, SOW, T + timedelta(hours=5), OFFLINE_AFTER)
    assert tag not in _open(farm, "silent_tag")
    rules.evaluate_farm(farm, SOW, T + timedelta(hours=7), OFFLINE_AFTER)
    assert tag in _open(farm, "silent_tag")
    _readings(farm, [{"tag_id": tag, "observed_at": T + timedelta(hours=8)}])
    rules.evaluate_farm(farm, SOW, T + timedelta(hours=8, minutes=5), OFFLINE_AFTER)
    assert tag not in _open(farm, "silent_tag")
    closed = [
        a
        for a in farm_alerts.list_alerts(farm, SOW)
        if a["subject"] == tag and a["kind"] == "silent_tag"
    ]
    assert len(closed) == 1 and closed[0]["state"] == "closed"


def test_geofence_fever_and_inactivity_fire_and_clear(farm):
    wanderer, sick, idle = _tags(farm, "breeding_sow")[1:4]
    for hour in range(8):  # a normal day: activity ~100
        _readings(
            farm,
            [
                {
                    "tag_id": idle,
                    "observed_at": T - timedelta(hours=8 - hour),
                    "activity": 100.0 + hour,
                }
            ],
        )
    _readings(
        farm,
        [
            {"tag_id": wanderer, "observed_at": T, "position": OUTSIDE},
            {"tag_id": sick, "observed_at": T, "temperature_c": 41.2},
            {"tag_id": idle, "observed_at": T, "activity": 12.0},
        ],
    )
    rules.evaluate_farm(farm, SOW, T + timedelta(minutes=1), OFFLINE_AFTER)
    assert wanderer in _open(farm, "out_of_geofence")
    assert sick in _open(farm, "fever")
    assert idle in _open(farm, "inactivity")
    rules.evaluate_farm(
        farm, SOW, T + timedelta(minutes=2), OFFLINE_AFTER
    )  # still true: still one alert each
    assert len([a for a in farm_alerts.list_alerts(farm, SOW) if a["kind"] == "fever"]) == 1
    _readings(
        farm,
        [
            {"tag_id": wanderer, "observed_at": T + timedelta(hours=1)},
            {"tag_id": sick, "observed_at": T + timedelta(hours=1), "temperature_c": 38.8},
            {"tag_id": idle, "observed_at": T + timedelta(hours=1), "activity": 95.0},
        ],
    )
    rules.evaluate_farm(farm, SOW, T + timedelta(hours=1, minutes=1), OFFLINE_AFTER)
    assert not (_open(farm, "out_of_geofence") | _open(farm, "fever") | _open(farm, "inactivity"))
    state = animal_state(farm, idle, T + timedelta(hours=1, minutes=1))
    assert state["last_activity"] == 95.0 and 0.9 < state["activity_trend"] < 1.2
    assert state["inside_geofence"] is True and state["readings_stored"] == 10


def test_unknown_tag_death_and_gateway_silence(farm):
    _everyone_seen(farm, T)
    _readings(farm, [{"tag_id": "156999999999999", "observed_at": T}])
    with farm.begin() as conn:  # what the ingester does when it stores an unregistered tag
        bio_store.note_unknown_tags(conn, {(SOW, "156999999999999"): "seen by GW-SOW-1"}, T)
    dead = _tags(farm, "breeding_sow")[10]
    event = {
        "tag_id": dead,
        "kind": "death",
        "occurred_at": T,
        "farm_id": SOW,
        "gateway_id": "GW-SOW-1",
        "details": {},
        "received_at": T,
    }
    with farm.begin() as conn:
        bio_store.write_batch(conn, [], [event])
    rules.evaluate_farm(farm, SOW, T + timedelta(minutes=5), OFFLINE_AFTER)
    assert "156999999999999" in _open(farm, "unknown_tag")
    assert dead in _open(farm, "death")
    assert not _open(farm, "gateway_offline")
    rules.evaluate_farm(farm, SOW, T + timedelta(hours=1), OFFLINE_AFTER)
    assert "GW-SOW-1" in _open(farm, "gateway_offline")
    assert "156999999999999" in _open(farm, "unknown_tag")
    rules.evaluate_farm(
        farm, SOW, T + timedelta(hours=25), OFFLINE_AFTER
    )  # not seen for a day: closes
    assert "156999999999999" not in _open(farm, "unknown_tag")
    assert bio_store.get_animal(farm, dead)["status"] == "dead"


def test_verified_headcount_at_past_times_and_headcount_drop(farm):
    sows = _tags(farm, "breeding_sow")
    _everyone_seen(farm, T - timedelta(days=7))
    _readings(farm, [{"tag_id": t, "observed_at": T} for t in sows[:150]])  # 30 not seen now
    _readings(
        farm, [{"tag_id": sows[0], "observed_at": T + timedelta(minutes=1), "temperature_c": 41.0}]
    )
    _readings(
        farm, [{"tag_id": sows[1], "observed_at": T + timedelta(minutes=1), "position": OUTSIDE}]
    )
    past = farm_headcount(farm, SOW, T - timedelta(days=7) + timedelta(hours=1))
    now = farm_headcount(farm, SOW, T + timedelta(minutes=2))
    assert past["categories"]["breeding_sow"] == {
        "registered": 180,
        "verified": 180,
        "unverified": [],
    }
    assert now["categories"]["breeding_sow"]["registered"] == 180
    assert now["categories"]["breeding_sow"]["verified"] == 148
    reasons = {u["tag_id"]: u["reason"] for u in now["categories"]["breeding_sow"]["unverified"]}
    assert reasons[sows[0]].startswith("fever") and "outside the farm geofence" in reasons[sows[1]]
    assert reasons[sows[170]].startswith("not seen in the 24 h")
    rules.evaluate_farm(farm, SOW, T + timedelta(minutes=3), OFFLINE_AFTER)
    assert SOW in _open(farm, "headcount_drop")


def test_cli_imports_report_bad_rows_and_headcount_json(tmp_path, sqlite_env, agri):
    result = agri("farms", "import", SAMPLE_TILES / "farms.geojson")
    assert result.exit_code == 0 and "imported 3 new" in result.stdout
    csv = tmp_path / "animals.csv"
    csv.write_text(
        "tag_id,farm_id,species,category,sex,birth_date,parity,lactation\n"
        "156000000000001,FARM-SOW,pig,breeding_sow,female,2022-01-01,2,\n"
        "15600000000000X,FARM-SOW,pig,breeding_sow,female,2022-01-01,2,\n"
        "156000000000003,FARM-NONE,pig,breeding_sow,female,2022-01-01,2,\n"
        "156000000000004,FARM-SOW,cattle,breeding_sow,female,2022-01-01,2,\n"
        "156000000000005,FARM-CATTLE,cattle,dairy_cow,female,2021-01-01,,3\n"
        "156000000000006,FARM-CATTLE,cattle,dairy_cow,male,2021-01-01,,3\n"
    )
    result = agri("animals", "import", csv)
    assert result.exit_code == 1
    assert "imported 2 new" in result.stdout
    assert "line 3: tag_id" in result.stderr and "line 4: farm_id 'FARM-NONE'" in result.stderr
    assert (
        "line 5: species 'cattle' does not fit" in result.stderr
        and "line 7: a dairy_cow must be female" in result.stderr
    )
    result = agri(
        "gateways", "add", "GW-X", "--farm", "FARM-SOW", "--mosquitto-dir", tmp_path / "mq"
    )
    assert result.exit_code == 0 and "MQTT password:" in result.stdout
    password = result.stdout.split("MQTT password: ")[1].split()[0]
    passwd = (tmp_path / "mq" / "passwd").read_text()
    salt_hash = passwd.split("GW-X:")[1].strip()
    salt = __import__("base64").b64decode(salt_hash.split("$")[3])
    assert accounts.mosquitto_hash(password, salt) == salt_hash
    assert (
        "topic write agri/v1/farms/FARM-SOW/gateways/GW-X/readings"
        in (tmp_path / "mq" / "acl").read_text()
    )
    assert agri("gateways", "add", "GW-Y", "--farm", "NOPE").exit_code == 1
    doc = json.loads(
        agri("farms", "headcount", "FARM-CATTLE", "--at", "2024-06-01T00:00:00Z", "--json").stdout
    )
    assert doc["farm_id"] == "FARM-CATTLE" and doc["at"].startswith("2024-06-01T00:00:00")
    assert doc["categories"]["dairy_cow"]["registered"] == 1
    assert doc["categories"]["dairy_cow"]["unverified"][0]["reason"].startswith("not seen")
    shown = json.loads(agri("animals", "show", "156000000000005", "--json").stdout)
    assert shown["lactation"] == 3 and shown["readings_stored"] == 0 and shown["last_seen"] is None
    assert json.loads(agri("alerts", "list", "--farm", "FARM-SOW", "--open", "--json").stdout) == []
    assert json.loads(agri("rejects", "list", "--json").stdout) == []
