"""A borrower's plot: every accepted format, every declared coordinate system against
published point pairs, every refusal with its reason."""

import io
import json
import math
import zipfile
from pathlib import Path

import geopandas as gpd
import prcoords
import pytest
import shapely

from remote_sensing.claims.plots import MIN_PLOT_HA, PlotError, format_of, read_plot

# Published WGS84 -> GCJ-02 pairs (lat, lon): the test table of googollee/eviltransform
# (MIT), python/test.py; and the WGS84/GCJ-02/BD-09 example of wandergis/coordtransform
# (MIT), test/app.js, for the point 116.404, 39.915.
WGS_GCJ = [
    ((31.1774276, 121.5272106), (31.17530398364597, 121.531541859215)),  # Shanghai
    ((22.543847, 113.912316), (22.540796131694766, 113.9171764808363)),  # Shenzhen
    ((39.911954, 116.377817), (39.91334545536069, 116.38404722455657)),  # Beijing
]
BD_GCJ = [((39.915, 116.404), (39.90865673957631, 116.39762729119315))]  # BD-09 -> GCJ-02

# A tea garden near Anxi, Fujian, in WGS84 (lon, lat): about 4.5 ha
ANXI = shapely.Polygon([(118.170, 25.080), (118.172, 25.080), (118.172, 25.082), (118.170, 25.082)])


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance between two (lon, lat) points, spherical: fine for a few metres."""
    dlat = math.radians(a[1] - b[1])
    dlon = math.radians(a[0] - b[0]) * math.cos(math.radians(a[1]))
    return 6_371_000 * math.hypot(dlat, dlon)


def square_at(lon: float, lat: float, side: float = 0.003) -> shapely.Polygon:
    """A square plot whose first vertex is the given point."""
    return shapely.Polygon(
        [(lon, lat), (lon + side, lat), (lon + side, lat + side), (lon, lat + side)]
    )


def geojson(geom) -> bytes:
    return json.dumps({"type": "Feature", "geometry": shapely.geometry.mapping(geom)}).encode()


@pytest.mark.parametrize(("wgs", "gcj"), WGS_GCJ)
def test_a_gcj02_plot_lands_on_the_published_wgs84_point(wgs, gcj):
    plot = read_plot(geojson(square_at(gcj[1], gcj[0])), "geojson", "gcj02", max_ha=500)
    corner = shapely.get_coordinates(plot.geometry)
    nearest = min(metres(tuple(c), (wgs[1], wgs[0])) for c in corner)
    assert nearest < 0.5
    # taken as WGS84 the same numbers land hundreds of metres away: why the system matters
    assert metres((gcj[1], gcj[0]), (wgs[1], wgs[0])) > 300


@pytest.mark.parametrize(("bd", "gcj"), BD_GCJ)
def test_a_bd09_plot_lands_where_its_gcj02_twin_does(bd, gcj):
    from_bd = read_plot(geojson(square_at(bd[1], bd[0])), "geojson", "bd09", max_ha=500)
    from_gcj = read_plot(
        b"%f,%f\n%f,%f\n%f,%f" % (gcj[1], gcj[0], gcj[1] + 0.003, gcj[0], gcj[1], gcj[0] + 0.003),
        "coordinates",
        "gcj02",
        max_ha=500,
    )
    first = lambda p: tuple(shapely.get_coordinates(p.geometry)[0])  # noqa: E731
    assert (
        min(metres(tuple(c), first(from_gcj)) for c in shapely.get_coordinates(from_bd.geometry))
        < 0.5
    )


def test_a_round_trip_through_every_chinese_system_returns_the_plot():
    forward = {"gcj02": prcoords.wgs_gcj, "bd09": prcoords.wgs_bd}
    for crs, convert in forward.items():
        drawn = shapely.transform(
            ANXI,
            lambda xy, convert=convert: [
                (p.lon, p.lat) for p in (convert(prcoords.Coords(y, x)) for x, y in xy)
            ],
        )
        plot = read_plot(geojson(drawn), "geojson", crs, max_ha=500)
        assert plot.crs == crs
        assert shapely.hausdorff_distance(plot.geometry, ANXI) < 1e-6  # ~0.1 m
        assert plot.area_ha == pytest.approx(4.47, abs=0.01)
    cgcs = read_plot(geojson(ANXI), "geojson", "cgcs2000", max_ha=500)
    assert shapely.hausdorff_distance(cgcs.geometry, ANXI) < 1e-6


def _shapefile_zip(frame: gpd.GeoDataFrame, folder: Path) -> bytes:
    frame.to_file(folder / "plot.shp")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for part in folder.glob("plot.*"):
            archive.write(part, part.name)
    return buffer.getvalue()


def test_every_file_format_written_by_the_field_libraries_reads_the_same_plot(tmp_path):
    frame = gpd.GeoDataFrame({"name": ["tea"]}, geometry=[ANXI], crs="EPSG:4326")
    frame.to_file(tmp_path / "plot.kml", driver="KML")
    frame.to_file(tmp_path / "plot.kmz", driver="LIBKML")
    frame.to_file(tmp_path / "plot.geojson", driver="GeoJSON")
    shp = tmp_path / "shp"
    shp.mkdir()
    files = {
        "plot.kml": (tmp_path / "plot.kml").read_bytes(),
        "plot.kmz": (tmp_path / "plot.kmz").read_bytes(),
        "plot.geojson": (tmp_path / "plot.geojson").read_bytes(),
        "plot.zip": _shapefile_zip(frame, shp),
        "plot.txt": b"118.170,25.080\n118.172 25.080; 118.172,25.082\n118.170,25.082\n",
    }
    for name, data in files.items():
        plot = read_plot(data, format_of(name), "wgs84", max_ha=500)
        assert shapely.hausdorff_distance(plot.geometry, ANXI) < 1e-7, name
        assert plot.area_ha == pytest.approx(4.47, abs=0.01), name
    assert {format_of(n) for n in files} == {"kml", "kmz", "geojson", "shapefile", "coordinates"}


def test_a_bow_tie_is_repaired_and_a_collapsed_ring_refused():
    bow = shapely.Polygon(
        [(118.170, 25.080), (118.172, 25.082), (118.172, 25.080), (118.170, 25.082)]
    )
    plot = read_plot(geojson(bow), "geojson", "wgs84", max_ha=500)
    assert plot.repaired and plot.geometry.is_valid
    flat = {
        "type": "Polygon",
        "coordinates": [[[118.17, 25.08], [118.172, 25.08], [118.171, 25.08], [118.17, 25.08]]],
    }
    with pytest.raises(PlotError, match="cannot be repaired unambiguously"):
        read_plot(json.dumps(flat).encode(), "geojson", "wgs84", max_ha=500)


@pytest.mark.parametrize(
    ("data", "fmt", "crs", "reason"),
    [
        (
            geojson(square_at(118.17, 25.08, 0.0001)),
            "geojson",
            "wgs84",
            f"at least {MIN_PLOT_HA} ha",
        ),
        (geojson(square_at(118.0, 25.0, 0.2)), "geojson", "wgs84", "at most 500 ha"),
        (geojson(square_at(2.35, 48.85)), "geojson", "gcj02", "outside mainland China"),
        (geojson(square_at(2.35, 48.85)), "geojson", "bd09", "outside mainland China"),
        (geojson(square_at(121.5, 25.03)), "geojson", "gcj02", "outside mainland China"),  # Taipei
        (geojson(shapely.Point(118.17, 25.08)), "geojson", "wgs84", "Point"),
        (
            geojson(shapely.LineString([(118.17, 25.08), (118.18, 25.09)])),
            "geojson",
            "wgs84",
            "LineString",
        ),
        (b"25.08,118.17\n25.08,118.172\n25.082,118.172", "coordinates", "wgs84", "longitude first"),
        (b"118.17,25.08\n118.172,25.08", "coordinates", "wgs84", "at least three"),
        (b"118.17,25.08\nnorth,east\n118.172,25.082", "coordinates", "wgs84", "not two numbers"),
        (b"{not json", "geojson", "wgs84", "not JSON"),
        (b'{"type": "Polygon", "coordinates": 5}', "geojson", "wgs84", "not a GeoJSON geometry"),
        (geojson(square_at(618000, 2775000, 100)), "geojson", "wgs84", "not longitude/latitude"),
        (b"PK\x03\x04garbage", "shapefile", "wgs84", "not a zip file"),
        (b"<kml>half", "kml", "wgs84", "not a readable KML"),
        (geojson(ANXI), "geojson", "utm50", "not one of"),
    ],
)
def test_every_refusal_says_why(data, fmt, crs, reason):
    with pytest.raises(PlotError, match=reason):
        read_plot(data, fmt, crs, max_ha=500)


def test_an_unknown_file_type_is_named():
    with pytest.raises(PlotError, match="unknown file type"):
        format_of("plot.docx")


def test_a_kml_with_several_folders_is_one_plot_of_all_their_polygons(tmp_path):
    east = shapely.transform(ANXI, lambda xy: xy + [0.002, 0.0])  # the next field, touching
    path = tmp_path / "two.kml"
    gpd.GeoDataFrame(geometry=[ANXI], crs="EPSG:4326").to_file(path, driver="KML", layer="west")
    gpd.GeoDataFrame(geometry=[east], crs="EPSG:4326").to_file(
        path, driver="KML", layer="east", append=True
    )
    plot = read_plot(path.read_bytes(), "kml", "wgs84", max_ha=500)
    assert plot.area_ha == pytest.approx(2 * 4.47, abs=0.02)
