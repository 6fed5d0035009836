"""Migrations that cannot drift: an empty database upgraded to head has exactly the
tables the code defines, on SQLite and PostgreSQL, and a database holding data at the
previous head upgrades without losing a row."""

import contextlib
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, select

from bioassets.tables import readings
from collateral.db import (
    HEAD_REVISION,
    alembic_config,
    all_metadata,
    make_engine,
    schema_revision,
    upgrade,
)
from collateral.tables import loans, valuations
from remote_sensing.tables import observations, parcels
from telemetry.tables import farms
from tests.support.databases import fresh_postgres_database


@contextlib.contextmanager
def empty_database(kind: str, tmp_path):
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        with fresh_postgres_database("agri_migrations") as url:
            yield url


def _drift(engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), all_metadata())


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_empty_database_upgraded_to_head_matches_the_table_definitions(kind, tmp_path):
    with empty_database(kind, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        tables = set(inspect(engine).get_table_names())
        defined = {name for meta in all_metadata() for name in meta.tables}
        assert tables == defined | {"alembic_version"}
        assert _drift(engine) == []
        engine.dispose()


def test_the_drift_test_sees_a_table_changed_without_a_revision(tmp_path):
    """The comparison is not vacuous: a column the code has and no revision made shows."""
    from sqlalchemy import Column, MetaData, String, Table

    engine = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    upgrade(engine)
    changed = MetaData()
    parcels.to_metadata(changed)
    Table("parcels", changed, Column("variety", String(64)), extend_existing=True)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), changed)
    assert [d[0] for d in diff if d[0] == "add_column"] == ["add_column"]
    engine.dispose()


def test_the_head_revision_the_code_names_is_alembics_head(tmp_path):
    """upgrade skips Alembic for a database at HEAD_REVISION: a new revision must move it,
    and a database at the previous head is still migrated."""
    script = ScriptDirectory.from_config(alembic_config(None))
    assert HEAD_REVISION == script.get_current_head()
    engine = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    assert schema_revision(engine) is None
    command.upgrade(alembic_config(engine), _previous_head())
    assert schema_revision(engine) == _previous_head()
    upgrade(engine)
    assert schema_revision(engine) == HEAD_REVISION
    engine.dispose()


def _previous_head() -> str:
    script = ScriptDirectory.from_config(alembic_config(None))
    head = script.get_revision(script.get_current_head())
    return head.down_revision


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_holding_data_at_an_earlier_head_upgrades_without_loss(kind, tmp_path):
    """From 0015 (before the valuations' figures) through every later revision."""
    now = datetime(2024, 6, 1, 8, 30, tzinfo=UTC)
    with empty_database(kind, tmp_path) as url:
        engine = make_engine(url)
        command.upgrade(alembic_config(engine), "0015")
        with engine.begin() as conn:
            conn.execute(
                insert(parcels).values(
                    parcel_id="T-1",
                    kind="tea_garden",
                    owner="Lin",
                    attributes={"variety": "tieguanyin"},
                    geometry_geojson='{"type": "Point", "coordinates": [118.0, 25.0]}',
                    area_ha=1.5,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(observations).values(
                    parcel_id="T-1",
                    scene_id="S2A_1",
                    acquired_at=now,
                    ndvi_mean=0.71,
                    pixel_count=150,
                    valid_fraction=1.0,
                    cloud_fraction=0.0,
                )
            )
            conn.execute(insert(farms).values(farm_id="F", geofence_geojson="{}", updated_at=now))
            conn.execute(
                insert(readings).values(
                    tag_id="156100000000001",
                    observed_at=now,
                    farm_id="F",
                    gateway_id="G",
                    received_at=now,
                    temperature_c=38.6,
                )
            )
            conn.execute(
                insert(loans).values(
                    loan_id="L-1",
                    borrower="Lin",
                    branch="ANXI-01",
                    principal_cny="100000.00",
                    parcel_ids=["T-1"],
                    herds=[],
                    state="active",
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(insert(valuations).values(**_valuation_before_figures(now)))
        upgrade(engine)
        assert _drift(engine) == []
        with engine.connect() as conn:
            # revision 0016 gave the stored valuation its figures, from its own document
            assert conn.execute(select(valuations.c.figures)).scalar_one() == {
                "collateral_value_cny": "250000.00",
                "carbon_t_co2e": "12.5",
                "ha": {"forest": "2.25", "tea_garden": "1.5"},
                "headcount": {"breeding_sow": 41},
            }
            assert conn.execute(select(parcels.c.attributes)).scalar_one() == {
                "variety": "tieguanyin"
            }
            assert conn.execute(select(observations.c.acquired_at)).scalar_one() == now
            assert conn.execute(select(readings.c.temperature_c)).scalar_one() == 38.6
            assert conn.execute(select(loans.c.principal_cny)).scalar_one() == "100000.00"
        engine.dispose()


def _valuation_before_figures(now: datetime) -> dict:
    items = [
        {"kind": "tea_garden", "ref": "T-1", "evidence": {"area_ha": "1.5"}},
        {"kind": "forest", "ref": "F-1", "evidence": {"area_ha": "2.25"}},
        {"kind": "carbon_sink", "ref": "F-1", "evidence": {"quantity_t_co2e": "12.5"}},
        {"kind": "herd", "ref": "FARM/breeding_sow", "evidence": {"verified": 41}},
    ]
    return {
        "valuation_id": "VAL-1",
        "loan_id": "L-1",
        "as_of": now,
        "created_at": now,
        "prices_version": "p",
        "policy_version": "q",
        "code_version": "c",
        "inputs_sha256": "0" * 64,
        "inputs": {},
        "result": {"items": items, "collateral_value_cny": "250000.00"},
        "eligible_value_cny": "200000.00",
        "ltv": "0.5000",
        "status": "ok",
    }


def test_every_revision_is_explicit_steps_not_the_live_definitions():
    """A revision that builds tables from the code's definitions would change what an
    old revision creates whenever a table is edited."""
    from collateral.db import MIGRATIONS_DIR

    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        text = path.read_text()
        assert "create_all" not in text and ".tables import" not in text, path.name
