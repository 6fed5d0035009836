"""Per-parcel NDVI statistics from coverage weights: pure array arithmetic, no I/O.

Statistics are coverage-weighted exactly as exactextract defines them (mean, population
standard deviation, and its weighted quantile rule for median, p10 and p90), so figures
computed here and by exactextract on the same pixels agree.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from remote_sensing.coverage import CoverageWeights
from remote_sensing.imagery.indices import CLOUDY, NOT_IMAGED
from remote_sensing.store import STATISTICS

# Parcels are processed in blocks of about this many covered pixels, so temporaries stay
# small and reuse the same memory instead of faulting in fresh pages for every array.
BLOCK_PIXELS = 1 << 17
# Blocks are independent and their NumPy passes (gathers, sorts, sums) leave the GIL, so
# they run one per core: a full tile's 10,000 parcels took 0.11-0.14 s on two cores
# against 0.165-0.185 s on one.
STATISTICS_THREADS = os.cpu_count() or 1


def parcel_statistics(
    weights: CoverageWeights, ndvi: np.ndarray, state: np.ndarray
) -> dict[str, np.ndarray]:
    """Statistics per parcel row of ``weights``.

    ``ndvi`` is the scene's float32 NDVI (NaN where masked) and ``state`` the uint8 pixel
    state of ``indices.pixel_state`` (not imaged, clear, cloudy, unusable), both on the
    weights' grid.

    valid_fraction = valid covered area / parcel area; cloud_fraction = cloudy covered
    area / imaged covered area (0 when nothing of the parcel was imaged); imaged_px =
    imaged covered area in pixels (0: the swath never reached the parcel).
    """
    n = len(weights.parcel_ids)
    flat = (ndvi.reshape(-1), state.reshape(-1))
    out = {name: np.empty(n) for name in (*STATISTICS, "imaged_px")}
    indptr = weights.indptr
    spans = []
    start = 0
    while start < n:
        stop = int(np.searchsorted(indptr, indptr[start] + BLOCK_PIXELS, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        spans.append((start, stop))
        start = stop

    def one(span: tuple[int, int]) -> None:
        start, stop = span
        lo, hi = indptr[start], indptr[stop]
        block = _block_statistics(
            indptr[start : stop + 1] - lo,
            weights.cell_ids[lo:hi],
            weights.coverage[lo:hi],
            *flat,
        )
        for name, values in block.items():
            out[name][start:stop] = values

    with ThreadPoolExecutor(min(STATISTICS_THREADS, len(spans)) or 1, "statistics") as pool:
        list(pool.map(one, spans))  # list: an error in a block is raised here
    out["valid_fraction"] = np.clip(out["valid_fraction"] / weights.parcel_area_px, 0.0, 1.0)
    out["pixel_count"] = np.diff(indptr)
    return out


def _block_statistics(indptr, cells, cov, ndvi, state) -> dict[str, np.ndarray]:
    """Statistics of consecutive parcels; valid_fraction is still the valid area in pixels."""
    n = len(indptr) - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    values = ndvi[cells]  # float32, NaN where masked
    valid = ~np.isnan(values)
    w_valid = cov * valid
    x = np.nan_to_num(values, nan=0.0).astype(np.float64)
    wx = w_valid * x
    sum_w = np.bincount(rows, w_valid, minlength=n)
    sum_wx = np.bincount(rows, wx, minlength=n)
    sum_wxx = np.bincount(rows, wx * x, minlength=n)
    states = state[cells]
    imaged_w = np.bincount(rows, cov * (states != NOT_IMAGED), minlength=n)
    cloudy_w = np.bincount(rows, cov * (states == CLOUDY), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sum_wx / sum_w
        # E[x^2] - E[x]^2 in float64: NDVI is bounded, so cancellation stays below 1e-12
        std = np.sqrt(np.maximum(sum_wxx / sum_w - mean * mean, 0.0))
        cloud_fraction = np.where(imaged_w > 0, cloudy_w / imaged_w, 0.0)
    no_valid = sum_w <= 0
    mean[no_valid] = np.nan
    std[no_valid] = np.nan
    median, p10, p90 = weighted_quantiles(
        rows[valid], values[valid], cov[valid], n, (0.5, 0.1, 0.9)
    )
    return {
        "ndvi_mean": mean,
        "ndvi_median": median,
        "ndvi_p10": p10,
        "ndvi_p90": p90,
        "ndvi_std": std,
        "valid_fraction": sum_w,
        "cloud_fraction": cloud_fraction,
        "imaged_px": imaged_w,
    }


def weighted_quantiles(
    rows: np.ndarray, values: np.ndarray, w: np.ndarray, n: int, qs: tuple[float, ...]
) -> list[np.ndarray]:
    """Coverage-weighted quantiles per row, all rows at once.

    The rule is exactextract's (after https://stats.stackexchange.com/a/13223): equal values
    of a row are merged (their weights summed), then with the k distinct values sorted,
    s_i = i * w_i + (k - 1) * W_{i-1} (W the running weight sum) and quantile q interpolates
    linearly where s crosses q * W_total * (k - 1). Rows without values get NaN.

    ``values`` must be float32: one int64 sort key then orders by (row, value) at once,
    which is several times faster than a two-key lexsort.
    """
    order = np.argsort(_row_value_key(rows, values))
    r, x, wt = rows, values[order], w[order]  # rows are already grouped, so r needs no reorder
    # merge equal values within a row
    new = np.ones(len(r), dtype=bool)
    new[1:] = (r[1:] != r[:-1]) | (x[1:] != x[:-1])
    starts = np.flatnonzero(new)
    r, x = r[starts], x[starts].astype(np.float64)
    wt = np.add.reduceat(wt, starts) if len(starts) else wt[:0]

    k = np.bincount(r, minlength=n)
    first = np.concatenate([[0], np.cumsum(k)[:-1]])
    cum = np.cumsum(wt)
    cum_before = cum - wt - np.concatenate([[0.0], cum])[first][r]
    s = (np.arange(len(r)) - first[r]) * wt + (k[r] - 1) * cum_before
    sn = np.bincount(r, wt, minlength=n) * (k - 1)
    # s / sn rises from 0 to 1 within each row; offset by the row number it rises across
    # the whole array, so one searchsorted finds every row's crossing at once.
    with np.errstate(invalid="ignore", divide="ignore"):
        position = r + np.minimum(np.where(sn[r] > 0, s / sn[r], 0.0), 1.0)
    has = k > 0
    last = first + k - 1
    out = []
    for q in qs:
        right = np.searchsorted(position, np.arange(n) + q, side="right")
        left = np.clip(right - 1, first, None)
        at_end = right > last
        result = np.full(n, np.nan)
        end = has & at_end
        result[end] = x[left[end]]
        mid = has & ~at_end
        lm, rm = left[mid], right[mid]
        target = q * sn[mid]
        result[mid] = x[lm] + (target - s[lm]) * (x[rm] - x[lm]) / (s[rm] - s[lm])
        out.append(result)
    return out


def _row_value_key(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """int64 keys ordering by row, then by float32 value (IEEE bits made sortable)."""
    bits = values.astype(np.float32).view(np.int32).astype(np.int64)
    sortable = np.where(bits < 0, ~bits & 0x7FFFFFFF, bits | 0x80000000)
    return (rows.astype(np.int64) << 32) | sortable
