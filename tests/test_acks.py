"""Commit acknowledgements as data: ranges, payloads and what a gateway refuses."""

import pytest

from telemetry import acks


def test_ranges_are_sorted_runs_of_distinct_seqs():
    assert acks.seq_ranges([5, 3, 4, 9, 1, 4]) == [[1, 1], [3, 5], [9, 9]]
    assert acks.seq_ranges([]) == []
    payload = acks.ack_payload("GW-1", [7, 8, 10])
    assert acks.parse_ack(payload) == [(7, 8), (10, 10)]
    assert acks.ack_topic("FARM-A", "GW-1") == "agri/v1/farms/FARM-A/gateways/GW-1/acks"


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b'{"schema": "rejects/v1", "ranges": []}',
        b'{"schema": "acks/v1", "ranges": [[3, 1]]}',
        b'{"schema": "acks/v1", "ranges": [[1, true]]}',
        b'{"schema": "acks/v1", "ranges": [[-1, 2]]}',
        b'{"schema": "acks/v1"}',
    ],
)
def test_anything_but_an_ack_is_refused(payload):
    with pytest.raises(ValueError):
        acks.parse_ack(payload)
