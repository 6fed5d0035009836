"""Train and test the land-cover model on the sample area's planted truth (reproducible).

The sample area (sample_tiles/) ships its land-cover truth (``landcover.tif``, written by
generate.py with the scenes) and its parcels. The scenes are read and masked by the same
code as the imagery job. The model learns from plots, as it is used: every pixel with its
plot's context (``landcover.with_plot_context``). Training plots are the parcels not held
out and square windows of the training half of the background, each pixel labelled by its
own truth (a window may be mixed, as a drawn plot may be). Half of the sample parcels
(every second by id) are held out:
their pixels, and a margin round them, never reach training, and the model is scored on
them as whole plots, as a claim would be, together with plots cut from the half of the
background (a checkerboard of 400 m blocks) that training did not see. F-08, the forest
clear-cut during the period, is neither taught nor scored: its truth changed.
"""

import json
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.features import rasterize
from scipy.ndimage import binary_dilation

from remote_sensing.claims import landcover
from remote_sensing.imagery.band_reads import scene_arrays
from remote_sensing.imagery.scenes import scene_layout, scene_meta

# sample_tiles/generate.py's land-cover codes -> the model's classes
TRUTH_CLASSES = {
    1: "forest",
    2: "tea_garden",
    3: "grass_shrub",
    4: "bare_built",
    5: "water",
    6: "cropland",
}
CHANGED_DURING_PERIOD = ("F-08",)  # clear-cut in 2024: not one class over the period
BLOCK_PX = 40  # background checkerboard: 400 m blocks at 10 m (the village spans two)
TRAIN_WINDOW_PX = 6  # background training plots: 60 m squares, like the test plots
WINDOWS_PER_CLASS = 70  # ~2,500 pixels of each background class
PIXELS_PER_PLOT = 40  # sampled per training plot (its context comes from all its pixels)
TEST_PLOT_PX = 6  # background test plots: 60 m squares (0.36 ha)
TEST_PLOTS_PER_CLASS = 15
MIN_PURITY = 0.9


def sample_stack(scenes_dir: Path) -> tuple[np.ndarray, list[datetime], rasterio.Affine, str]:
    """Masked NDVI of every sample scene [date, row, col], the dates, transform and CRS."""
    layers, dates, transform, crs = [], [], None, None
    for item in sorted(Path(scenes_dir).glob("*/item.json")):
        meta = scene_meta(item)
        layout = scene_layout(meta)
        ndvi, _state = scene_arrays(meta, layout, meta.encoding, threads=1)
        layers.append(ndvi)
        dates.append(meta.acquired_at)
        transform, crs = layout.grid.transform, layout.grid.crs.to_string()
    return np.stack(layers), dates, transform, crs


def train_on_sample(sample_dir: Path) -> tuple[landcover.Model, dict]:
    """The model trained on the sample area, and its scores on what it did not see."""
    sample_dir = Path(sample_dir)
    stack, dates, transform, crs = sample_stack(sample_dir / "scenes")
    with rasterio.open(sample_dir / "landcover.tif") as src:
        truth = src.read(1)
    shape = truth.shape
    parcels = gpd.read_file(sample_dir / "parcels.geojson").to_crs(crs)
    parcels = parcels.sort_values("parcel_id").reset_index(drop=True)
    ids = list(parcels["parcel_id"])
    held_out = {pid for i, pid in enumerate(ids) if i % 2 == 1} - set(CHANGED_DURING_PERIOD)
    burn = lambda geoms: rasterize(geoms, shape, transform=transform) > 0  # noqa: E731
    excluded = binary_dilation(
        burn(
            [
                g
                for pid, g in zip(ids, parcels.geometry, strict=True)
                if pid in held_out or pid in CHANGED_DURING_PERIOD
            ]
        ),
        iterations=2,
    )
    in_parcels = burn(list(parcels.geometry))
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    train_block = ((rows // BLOCK_PX + cols // BLOCK_PX) % 2) == 0
    trainable = (train_block | in_parcels) & ~excluded & (truth > 0)

    rng = np.random.default_rng(landcover.SEED)
    training_plots = [  # the parcels taught, less any margin of a held-out one
        np.flatnonzero((burn([g]) & trainable).ravel())
        for pid, g in zip(ids, parcels.geometry, strict=True)
        if pid not in held_out and pid not in CHANGED_DURING_PERIOD
    ]
    training_plots = [pixels for pixels in training_plots if len(pixels)]
    training_plots += _training_windows(truth, trainable & ~in_parcels, rng)
    flat = stack.reshape(len(dates), -1)
    features, labels = [], []
    for pixels in training_plots:
        seen = landcover.with_plot_context(landcover.pixel_features(flat[:, pixels], dates))
        take = _spread(len(pixels), PIXELS_PER_PLOT)
        features.append(seen[take])
        labels += [TRUTH_CLASSES[c] for c in truth.ravel()[pixels[take]]]
    features = np.vstack(features)
    trained_on = {
        "area": "sample_tiles (synthetic, Anxi, Fujian)",
        "scenes": len(dates),
        "first": dates[0].date().isoformat() if dates else None,
        "last": dates[-1].date().isoformat() if dates else None,
        "plots": len(training_plots),
        "pixels": int((~np.isnan(features).any(axis=1)).sum()),
        "held_out_parcels": sorted(held_out),
    }
    model = landcover.train(features, np.array(labels), trained_on)

    plots = [
        (pid, TRUTH_CLASSES[2] if kind == "tea_garden" else TRUTH_CLASSES[1], burn([g]))
        for pid, kind, g in zip(ids, parcels["kind"], parcels.geometry, strict=True)
        if pid in held_out
    ]
    plots += _background_plots(
        truth, ~train_block & ~binary_dilation(in_parcels, iterations=2), rng
    )
    scores = score(model, stack.reshape(len(dates), -1), dates, plots)
    model.trained_on["held_out"] = scores
    return model, scores


def _spread(n: int, most: int) -> np.ndarray:
    """Up to ``most`` indices of ``n`` pixels, evenly spread (reproducible)."""
    return np.arange(n)[:: max(1, n // most)][:most]


def _training_windows(truth: np.ndarray, allowed: np.ndarray, rng) -> list[np.ndarray]:
    """Square windows (TRAIN_WINDOW_PX) inside ``allowed``, WINDOWS_PER_CLASS of each
    background class by the class most of their pixels have: flat pixel indices each."""
    size = TRAIN_WINDOW_PX
    rows, cols = truth.shape[0] // size, truth.shape[1] // size
    windows: dict[int, list[np.ndarray]] = {code: [] for code in TRUTH_CLASSES}
    for r, c in np.ndindex(rows, cols):
        window = (slice(r * size, (r + 1) * size), slice(c * size, (c + 1) * size))
        if not allowed[window].all():
            continue
        codes, counts = np.unique(truth[window], return_counts=True)
        majority = int(codes[counts.argmax()])
        if majority in windows:
            rows_in, cols_in = np.mgrid[window]
            windows[majority].append(np.sort((rows_in * truth.shape[1] + cols_in).ravel()))
    chosen = []
    for found in windows.values():
        order = rng.permutation(len(found))[:WINDOWS_PER_CLASS]
        chosen += [found[i] for i in sorted(order)]
    return chosen


def _background_plots(truth: np.ndarray, allowed: np.ndarray, rng) -> list:
    """Square test plots of one class (MIN_PURITY) inside the held-out background."""
    plots = []
    size = TEST_PLOT_PX
    for code, name in TRUTH_CLASSES.items():
        if name == "tea_garden":
            continue  # tea grows only in the parcels
        found = []
        corners = np.argwhere(allowed[:-size, :-size] & (truth[:-size, :-size] == code))
        for r, c in corners[rng.permutation(len(corners))]:
            window = (slice(r, r + size), slice(c, c + size))
            if allowed[window].all() and (truth[window] == code).mean() >= MIN_PURITY:
                mask = np.zeros(truth.shape, bool)
                mask[window] = True
                found.append((f"{name}@{r},{c}", name, mask))
            if len(found) == TEST_PLOTS_PER_CLASS:
                break
        plots += found
    return plots


def score(model: landcover.Model, series: np.ndarray, dates: list[datetime], plots: list) -> dict:
    """Plot-level accuracy (all classes, and tea vs forest vs other) and confusion matrix."""
    confusion = {t: {p: 0 for p in landcover.CLASSES} for t in landcover.CLASSES}
    wrong = []
    for plot_id, truth_class, mask in plots:
        probabilities = model.probabilities(
            landcover.pixel_features(series[:, mask.ravel()], dates)
        )
        predicted = landcover.CLASSES[int(np.nanargmax(np.nanmean(probabilities, axis=0)))]
        confusion[truth_class][predicted] += 1
        if predicted != truth_class:
            wrong.append({"plot": plot_id, "truth": truth_class, "predicted": predicted})
    n = len(plots)
    correct = sum(confusion[c][c] for c in landcover.CLASSES)
    group = lambda c: c if c in ("tea_garden", "forest") else "other"  # noqa: E731
    grouped = sum(
        count for t, row in confusion.items() for p, count in row.items() if group(t) == group(p)
    )
    return {
        "plots": n,
        "accuracy": round(correct / n, 4) if n else None,
        "tea_forest_other_accuracy": round(grouped / n, 4) if n else None,
        "confusion": {
            t: {p: c for p, c in row.items() if c}
            for t, row in confusion.items()
            if any(row.values())
        },
        "wrong": wrong,
    }


def summary_json(scores: dict) -> str:
    return json.dumps(scores, indent=2)


def cross_validate(
    series: np.ndarray,
    dates: list[datetime],
    plots: list[tuple[str, str, np.ndarray]],
    folds: int = 5,
    pixels_per_plot: int = PIXELS_PER_PLOT,
    seed: int = landcover.SEED,
) -> dict:
    """Plot-level accuracy of the model's recipe on labelled plots ((id, class, pixel
    indices into ``series`` [date, pixel])), by k folds of whole plots: no plot is scored
    by a model that saw any of its pixels. Each training plot gives at most
    ``pixels_per_plot`` pixels (each with its plot's context), so one large forest does not
    drown fifty small meadows. ``seed`` draws the folds."""
    features = landcover.pixel_features(series, dates)
    order = np.random.default_rng(seed).permutation(len(plots))
    confusion = {t: {p: 0 for p in landcover.CLASSES} for t in landcover.CLASSES}
    in_context = [landcover.with_plot_context(features[pixels]) for _p, _n, pixels in plots]
    for fold in range(folds):
        held = set(order[fold::folds].tolist())
        rows, labels = [], []
        for j, (_pid, name, pixels) in enumerate(plots):
            if j not in held:
                chosen = _spread(len(pixels), pixels_per_plot)
                rows.append(in_context[j][chosen])
                labels += [name] * len(chosen)
        model = landcover.train(np.vstack(rows), np.array(labels), {})
        for j in held:
            _pid, name, pixels = plots[j]
            probabilities = model.probabilities(features[pixels])
            if np.isnan(probabilities).all():
                continue  # never seen clear often enough: not scored (counted below)
            predicted = landcover.CLASSES[int(np.nanargmax(np.nanmean(probabilities, axis=0)))]
            confusion[name][predicted] += 1
    scored = sum(sum(row.values()) for row in confusion.values())
    correct = sum(confusion[c][c] for c in landcover.CLASSES)
    return {
        "plots": len(plots),
        "scored": scored,
        "accuracy": round(correct / scored, 4) if scored else None,
        "confusion": {
            t: {p: c for p, c in row.items() if c}
            for t, row in confusion.items()
            if any(row.values())
        },
    }
