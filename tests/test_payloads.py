"""Gateway payload parsing (the transport's envelope, livestock's schemas): pure,
per-reading, never raising."""

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bioassets.payloads import SCHEMAS, check_tag_id
from telemetry import payloads

LIVESTOCK = payloads.by_channel(SCHEMAS)


def parse(topic: str, payload: bytes, now: datetime) -> payloads.Parsed:
    return payloads.parse_message(topic, payload, now, LIVESTOCK)


NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
TOPIC = "agri/v1/farms/F1/gateways/GW1/readings"


def _payload(readings, **envelope) -> bytes:
    body = {
        "schema": "readings/v1",
        "gateway_id": "GW1",
        "sent_at": "2024-05-01T08:00:00Z",
        **envelope,
    }
    body["readings"] = readings
    return json.dumps(body).encode()


def test_each_reading_is_judged_on_its_own():
    good = {
        "tag_id": "156000000000001",
        "observed_at": "2024-05-01T07:00:00+08:00",
        "weight_kg": 110.5,
    }
    parsed = parse(
        TOPIC,
        _payload(
            [good, {"tag_id": "156000000000002"}, {**good, "tag_id": "000123456789012"}], seq=9
        ),
        NOW,
    )
    assert [r["tag_id"] for r in parsed.items] == ["156000000000001"]
    assert parsed.items[0]["observed_at"] == datetime(2024, 4, 30, 23, 0, tzinfo=UTC)
    assert parsed.seq == 9 and not parsed.message_rejected
    reasons = [r.reason for r in parsed.rejections]
    assert reasons[0].startswith("reading 1: observed_at: Field required")
    assert "country code 000" in reasons[1]


def test_late_data_is_accepted_and_future_data_is_not():
    late = {"tag_id": "156000000000001", "observed_at": (NOW - timedelta(days=30)).isoformat()}
    soon = {"tag_id": "156000000000002", "observed_at": (NOW + timedelta(minutes=4)).isoformat()}
    future = {"tag_id": "156000000000003", "observed_at": (NOW + timedelta(minutes=6)).isoformat()}
    parsed = parse(TOPIC, _payload([late, soon, future]), NOW)
    assert len(parsed.items) == 2
    assert "more than 5 minutes in the future" in parsed.rejections[0].reason


def test_whole_message_rejections_name_the_problem():
    cases = {
        b"\xff\xfe": "payload is not JSON",
        b"[1, 2]": "must be a JSON object",
        _payload([], gateway_id="GW2"): "does not match the topic",
        _payload([], schema="events/v1"): "schema 'events/v1' on a readings topic",
        json.dumps(
            {"schema": "readings/v1", "gateway_id": "GW1", "sent_at": "2024-05-01T08:00:00"}
        ).encode(): "timezone",
        _payload("not a list"): "'readings' must be a list",
    }
    for payload, reason in cases.items():
        parsed = parse(TOPIC, payload, NOW)
        assert parsed.message_rejected, payload
        assert reason in parsed.rejections[0].reason, (payload, parsed.rejections)
    assert parse("agri/v1/farms/F1/readings", b"{}", NOW).message_rejected


def test_events_are_validated():
    topic = "agri/v1/farms/F1/gateways/GW1/events"
    body = {
        "schema": "events/v1",
        "gateway_id": "GW1",
        "sent_at": "2024-05-01T08:00:00Z",
        "events": [
            {
                "kind": "sale",
                "tag_id": "156000000000001",
                "occurred_at": "2024-05-01T07:00:00Z",
                "buyer": "Co-op",
                "price_cny": 3200,
            },
            {
                "kind": "tag_replaced",
                "tag_id": "156000000000002",
                "occurred_at": "2024-05-01T07:00:00Z",
                "new_tag_id": "156000000000099",
            },
            {
                "kind": "teleport",
                "tag_id": "156000000000003",
                "occurred_at": "2024-05-01T07:00:00Z",
            },
        ],
    }
    parsed = parse(topic, json.dumps(body).encode(), NOW)
    assert [e.kind for e in parsed.items] == ["sale", "tag_replaced"]
    assert "event 2: kind" in parsed.rejections[0].reason


def test_tag_ids():
    assert check_tag_id(" 156000000000001 ") == "156000000000001"
    for bad in ("15600000000001", "1560000000000012", "15600000000000a", "000000000000001"):
        try:
            check_tag_id(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.from_regex(r"\A\s?[0-9]{15}\s?\Z"),
        st.text(alphabet="0123456789 a\u0661\n", min_size=13, max_size=17),
    )
)
def test_the_fast_tag_pattern_agrees_with_check_tag_id(tag):
    """The readings model checks tags with a pattern in pydantic-core (fast); check_tag_id is
    the rule the registry uses and the one that words rejections. They must agree."""
    try:
        expected = check_tag_id(tag)  # forgives blanks around the digits (CSV import)
    except ValueError:
        expected = None
    if expected != tag:
        expected = None  # a gateway must send the 15 digits exactly
    reading = {"tag_id": tag, "observed_at": "2024-05-01T07:00:00Z"}
    parsed = parse(TOPIC, _payload([reading]), NOW)
    assert [r["tag_id"] for r in parsed.items] == ([expected] if expected else [])
    if expected is None:
        assert "tag_id" in parsed.rejections[0].reason


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=12), inner, max_size=5)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_fuzzed_payloads_never_raise(payload):
    parsed = parse(TOPIC, payload, NOW)  # must not raise
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        assert parsed.message_rejected and parsed.rejections[0].reason
    assert all(check_tag_id(r["tag_id"]) == r["tag_id"] for r in parsed.items)


def test_status_messages():
    topic = "agri/v1/farms/F1/gateways/GW1/status"
    assert parse(topic, b'{"status": "offline"}', NOW).status == "offline"
    assert parse(topic, b"online", NOW).status == "online"
    bad = parse(topic, b"sleeping", NOW)
    assert bad.message_rejected and "online' or 'offline" in bad.rejections[0].reason
