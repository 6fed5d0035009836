"""Fuzz the ingester's own storing path (not just the parser) on a real database: whatever
a gateway sends, nothing escapes as an exception, and every message leaves a trace: its
valid readings stored, or a reject row with the raw bytes."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bioassets.tables import readings
from collateral import domains
from collateral.db import make_engine, upgrade
from telemetry.tables import rejects
from telemetry.writer import BatchWriter
from tests.support.livestock import DEFAULT_OFFLINE_AFTER, seed_livestock

NOW = datetime.now(UTC).replace(microsecond=0)
TAGS = ["156100000000001", "156100000000002", "156100000000481", "000000000000000", "15610000"]


@pytest.fixture(scope="module")
def writer(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'agri.db'}")
    upgrade(engine)
    seed_livestock(engine)
    yield BatchWriter(engine, domains.INGEST, DEFAULT_OFFLINE_AFTER)
    engine.dispose()


def _count(engine, table) -> int:
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(table)).scalar_one()


reading = st.fixed_dictionaries(
    {"tag_id": st.sampled_from(TAGS) | st.text(max_size=16)},
    optional={
        "observed_at": st.sampled_from(
            [(NOW - timedelta(minutes=m)).isoformat() for m in (0, 5, 600)]
            + [(NOW + timedelta(hours=1)).isoformat(), "2024-05-01T08:00:00", "yesterday"]
        ),
        "temperature_c": st.floats(allow_nan=True) | st.integers() | st.text(max_size=4),
        "lat": st.floats(-100, 100),
        "lon": st.floats(-200, 200),
        "weight_kg": st.floats(-5, 3000),
    },
)
payload = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda gw, seq, items, schema: json.dumps(
            {
                "schema": schema,
                "gateway_id": gw,
                "sent_at": NOW.isoformat(),
                "seq": seq,
                "readings": items,
            }
        ).encode(),
        st.sampled_from(["GW-SOW-1", "GW-CAT-1", "GW-X"]),
        st.integers(-2, 10**6) | st.none(),
        st.lists(reading, max_size=6) | st.text(max_size=5),
        st.sampled_from(["readings/v1", "events/v1", "x"]),
    ),
)
topic = st.sampled_from(
    [
        "agri/v1/farms/FARM-SOW/gateways/GW-SOW-1/readings",
        "agri/v1/farms/FARM-CATTLE/gateways/GW-SOW-1/readings",  # the wrong farm
        "agri/v1/farms/FARM-SOW/gateways/GW-SOW-1/events",
        "agri/v1/farms/FARM-SOW/gateways/GW-SOW-1/status",
        "agri/v1/nonsense",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(topic=topic, body=payload)
def test_whatever_arrives_is_stored_or_rejected_never_raised(writer, topic, body):
    engine = writer.engine
    before = (_count(engine, readings), _count(engine, rejects))
    writer.store([(topic, body)])  # must not raise
    after = (_count(engine, readings), _count(engine, rejects))
    if after == before:
        # nothing new: only a clean message of duplicates, an empty batch or a status
        parsed = json.loads(body) if body.startswith(b"{") else None
        assert topic.endswith("/status") or (
            isinstance(parsed, dict) and isinstance(parsed.get("readings"), list)
        ), (topic, body)
