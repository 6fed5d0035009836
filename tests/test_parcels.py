"""Parcel import: any CRS, equal-area hectares, repair or rejection per feature, updates."""

import json

import geopandas as gpd
import pytest
import shapely
from pyproj import Geod
from sqlalchemy import inspect

from collateral.db import make_engine, upgrade
from remote_sensing import store
from remote_sensing.parcels import read_parcel_file, repair_geometry
from tests.support.paths import SAMPLE_TILES

TRUTH = json.loads((SAMPLE_TILES / "truth.json").read_text())


def _write(tmp_path, features, crs="EPSG:4326", name="p.geojson"):
    frame = gpd.GeoDataFrame([f[0] for f in features], geometry=[f[1] for f in features], crs=crs)
    path = tmp_path / name
    frame.to_file(path, driver="GPKG" if name.endswith(".gpkg") else "GeoJSON")
    return path


def test_sample_parcels_import_with_the_special_cases():
    result = read_parcel_file(SAMPLE_TILES / "parcels.geojson")
    assert result.rejected == []
    by_id = {p.parcel_id: p for p in result.parcels}
    assert len(by_id) == 31
    special = TRUTH["special_parcels"]
    assert by_id[special["multipolygon"]].geometry.geom_type == "MultiPolygon"
    assert len(by_id[special["with_hole"]].geometry.interiors) == 1
    assert by_id[special["tiny"]].area_ha < 0.01  # smaller than one 10 m pixel
    forest = by_id[TRUTH["clear_cut"]["parcel_id"]]
    assert forest.area_ha == pytest.approx(TRUTH["clear_cut"]["parcel_ha"], rel=2e-3)
    assert forest.attributes["stand_volume_m3_per_ha"] > 0
    tea = by_id["T-01"].attributes
    assert isinstance(tea["planted_year"], int) and "stand_volume_m3_per_ha" not in tea


def test_area_in_hectares_does_not_depend_on_the_file_crs(tmp_path):
    wgs84 = gpd.read_file(SAMPLE_TILES / "parcels.geojson")
    utm = wgs84.to_crs(32650)
    utm.to_file(tmp_path / "utm.gpkg", driver="GPKG")
    a = {p.parcel_id: p for p in read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels}
    b = {p.parcel_id: p for p in read_parcel_file(tmp_path / "utm.gpkg").parcels}
    assert a.keys() == b.keys()
    for pid in a:
        assert b[pid].area_ha == pytest.approx(a[pid].area_ha, rel=1e-6)
        assert b[pid].geometry.symmetric_difference(a[pid].geometry).area < 1e-12
        assert b[pid].attributes == a[pid].attributes


def test_area_matches_the_geodesic_area_on_the_ellipsoid(tmp_path):
    # A 100 m UTM square is not exactly 1 ha on the ground (UTM scale factor ~0.9998 here).
    square = shapely.box(620_000, 2_772_000, 620_100, 2_772_100)
    path = _write(tmp_path, [({"parcel_id": "SQ", "kind": "forest"}, square)], crs="EPSG:32650")
    (parcel,) = read_parcel_file(path).parcels
    geodesic_m2, _ = Geod(ellps="WGS84").geometry_area_perimeter(
        shapely.orient_polygons(parcel.geometry)
    )
    assert parcel.area_ha == pytest.approx(abs(geodesic_m2) / 10_000, rel=1e-5)
    assert parcel.area_ha == pytest.approx(1.0, rel=1e-3)


def test_bad_features_are_rejected_by_index_and_the_rest_imported(tmp_path):
    ok = shapely.box(118.19, 25.06, 118.191, 25.061)
    bowtie = shapely.Polygon([(118.2, 25.06), (118.201, 25.061), (118.201, 25.06), (118.2, 25.061)])
    collapsed = shapely.Polygon([(118.21, 25.06), (118.211, 25.06), (118.212, 25.06)])
    features = [
        ({"parcel_id": "A", "kind": "tea_garden", "owner": "Chen Wei"}, ok),
        ({"parcel_id": None, "kind": "forest"}, ok),
        ({"parcel_id": "C", "kind": "rice_paddy"}, ok),
        ({"parcel_id": "D", "kind": "forest"}, bowtie),
        ({"parcel_id": "E", "kind": "forest"}, collapsed),
    ]
    result = read_parcel_file(_write(tmp_path, features))
    assert [p.parcel_id for p in result.parcels] == ["A", "D"]
    repaired = result.parcels[1]
    assert repaired.geometry.is_valid and repaired.geometry.geom_type == "MultiPolygon"
    assert repaired.area_ha > 0
    reasons = "\n".join(result.rejected)
    assert "feature 1: missing parcel_id" in reasons
    assert "feature 2 (parcel_id 'C'): kind 'rice_paddy'" in reasons
    assert "feature 4 (parcel_id 'E')" in reasons and "cannot be repaired" in reasons


def test_repair_rejects_points_and_lines():
    assert (
        repair_geometry(shapely.Point(0, 0))[1] == "geometry is a Point, parcels must be polygons"
    )
    assert repair_geometry(None)[1] == "empty or missing geometry"


def test_cli_import_reports_rejections_and_reimport_updates(tmp_path, sqlite_env, agri):
    first = _write(
        tmp_path,
        [
            (
                {"parcel_id": "A", "kind": "tea_garden", "variety": "Tieguanyin"},
                shapely.box(118.19, 25.06, 118.191, 25.061),
            ),
            ({"kind": "forest"}, shapely.box(118.2, 25.06, 118.201, 25.061)),
        ],
    )
    result = agri("parcels", "import", first)
    assert result.exit_code == 1
    assert "imported 1 new and updated 0" in result.stdout
    assert "feature 1: missing parcel_id" in result.stderr
    bigger = _write(
        tmp_path,
        [
            (
                {"parcel_id": "A", "kind": "tea_garden", "variety": "Benshan"},
                shapely.box(118.19, 25.06, 118.192, 25.061),
            )
        ],
        name="q.geojson",
    )
    result = agri("parcels", "import", bigger)
    assert result.exit_code == 0 and "imported 0 new and updated 1" in result.stdout
    parcel = store.get_parcel(make_engine(sqlite_env["AGRI_DATABASE_URL"]), "A")
    assert parcel["attributes"] == {"variety": "Benshan"}
    assert parcel["area_ha"] == pytest.approx(
        2 * read_parcel_file(first).parcels[0].area_ha, rel=1e-3
    )


def test_cli_import_of_a_missing_or_unreadable_file_is_a_clear_error(tmp_path, sqlite_env, agri):
    assert "no such file" in agri("parcels", "import", tmp_path / "nope.geojson").output
    junk = tmp_path / "junk.geojson"
    junk.write_text("{not json")
    result = agri("parcels", "import", junk)
    assert result.exit_code == 1 and "not a readable GeoJSON/GeoPackage" in result.output


def test_upsert_and_schema_on_both_databases(engine):
    created, updated = store.upsert_parcels(
        engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels
    )
    assert (created, updated) == (31, 0)
    assert store.upsert_parcels(
        engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels
    ) == (0, 31)
    frame = store.load_parcels_frame(engine)
    assert len(frame) == 31 and frame.crs.to_epsg() == 4326
    assert {"parcels", "scenes", "observations", "alembic_version"} <= set(
        inspect(engine).get_table_names()
    )
    upgrade(engine)  # idempotent
