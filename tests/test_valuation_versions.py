"""A valuation stays provable for as long as the loan file is kept: stored valuations made
by every earlier rules version (tests/data/valuations) still read as snapshots of the
declared shape (collateral.snapshot) and recompute, with today's code, to their own
figures; `agri valuations verify` says so of each, stored in a real database."""

import gzip
import json
from pathlib import Path

import pytest

from collateral import loans, snapshot
from collateral.db import make_engine, upgrade
from collateral.valuation import value_loan
from tests.support.paths import REPO_ROOT

STORED = sorted((REPO_ROOT / "tests" / "data" / "valuations").glob("*.json.gz"))


def _stored(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        doc = json.load(f)
    assert doc["valuations"] and path.name == f"{doc['rules_version']}.json.gz"
    return doc["valuations"]


def test_every_earlier_rules_version_is_kept():
    assert [p.name.removesuffix(".json.gz") for p in STORED] == [
        "2026.11.1",
        "2026.12.1",
        "2026.12.2",
        "2026.12.3",
    ]


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.name.removesuffix(".json.gz"))
def test_a_stored_valuation_of_each_rules_version_recomputes_to_the_cent(path, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    upgrade(engine)
    for stored in _stored(path):
        inputs, result = stored["inputs"], stored["result"]
        snapshot.checked(inputs)  # the declared shape reads it
        again = value_loan(inputs)
        assert loans.differences(result, again) == []
        assert again["rules_version"] == result["rules_version"]  # the rules it names
        assert again["eligible_value_cny"] == result["eligible_value_cny"]
        kept = loans.store_valuation(engine, inputs, result)  # as it was stored then
        verified = loans.verify(engine, kept["valuation_id"])
        assert verified["identical"] and verified["inputs_sha256_matches"], verified["differences"]
    engine.dispose()


def test_verify_still_finds_a_changed_figure(tmp_path):
    """The comparison that lets later presentation fields pass is not blind to figures."""
    stored = _stored(STORED[0])[0]
    again = value_loan(stored["inputs"])
    tampered = json.loads(json.dumps(stored["result"]))
    tampered["items"][0]["eligible_value_cny"] = "1.00"
    assert [d["field"] for d in loans.differences(tampered, again)] == [
        "items[0].eligible_value_cny"
    ]
    assert loans.differences({**stored["result"], "ltv": "0.0001"}, again)[0]["field"] == "ltv"


def test_a_snapshot_with_a_field_no_version_declared_is_refused():
    stored = _stored(STORED[-1])[0]
    broken = {**stored["inputs"], "loan": {**stored["inputs"]["loan"], "colour": "red"}}
    with pytest.raises(ValueError, match="colour"):
        snapshot.checked(broken)
