"""How a scene's digital numbers become reflectance, and whether its metadata told the truth.

Pure functions on item metadata and numpy arrays; the loader (``scenes``) does the I/O.

The offset is decided per scene, in this order:

1. an explicit flag that the offset was already applied (Earth Search's
   ``earthsearch:boa_offset_applied: true``) wins over a declared offset;
2. a declared offset (STAC 1.1 ``raster:offset`` on the asset, else ``raster:bands``)
   wins over the catalogue's fixed encoding and the baseline rule;
3. the processing-baseline rule: from baseline 04.00 (or, with no baseline, from
   acquisitions on or after 2022-01-25) Sentinel-2 L2A numbers carry +1000.

Then the numbers themselves are checked. Surface reflectance of vegetation and water is
never below zero, so when the numbers carry the +1000 offset, the valid red and NIR
numbers of pixels the scene classifies as vegetation or water sit at or above 1000.
Without the offset, a vegetated pixel's red (a few percent reflectance) sits far below
1000, as do both bands over water. A clear share below 1000 where the metadata promised
the offset means it was already removed (a wrong flag, or a declared offset nobody
applied); almost none below 1000 where the metadata promised no offset means it is still
there. The data then decides, and the scene records that its metadata was contradicted.
"""

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import numpy as np

# Sentinel-2 L2A processing baseline 04.00 (from 2022-01-25) adds +1000 to every DN.
BASELINE_04_START = datetime(2022, 1, 25, tzinfo=UTC)
BASELINE_DN_OFFSET = 1000
S2_SCALE = 1e-4

# The data check looks at numbers whose reflectance cannot be negative: red and NIR of
# vegetation, red of water (water's NIR can come out of L2A slightly negative, which is
# why ESA added the offset). It needs this many of them. A share below 1000 of at least
# SHARE_SAYS_REMOVED says the offset is not in the numbers; at most SHARE_SAYS_PRESENT
# (noise) says it is. In between (dry, bright vegetation without the offset has a few
# percent of red below 0.1) the metadata stands: subtracting 0.1 from numbers that do
# not carry it is the worse mistake, so "present" needs the stronger evidence.
VEGETATION, WATER = 4, 6
CHECK_MIN_VALUES = 200
SHARE_SAYS_REMOVED = 0.2
SHARE_SAYS_PRESENT = 0.005

# Cross-sensor adjustment, Landsat 8 OLI -> Sentinel-2 MSI surface reflectance. The HLS
# project (hls.gsfc.nasa.gov/algorithms/bandpass-adjustment, HLS v2.0) publishes
# OLI = slope * MSI + offset for Sentinel-2A; we invert it, MSI = (OLI - offset) / slope,
# so Landsat dates sit on the Sentinel-2 scale the profiles were built on. HLS fits NIR
# against MSI's B8A; we read B08 and use the same line, a difference well inside the
# noise of a parcel mean.
BANDPASS = {
    "hls-oli-to-msi": {"red": (0.9765, 0.0009), "nir": (0.9983, -0.0001)},
}


class RadiometryError(ValueError):
    """Metadata that gives no usable scale or offset."""


@dataclass(frozen=True)
class Encoding:
    """reflectance = DN * scale + offset (after any bandpass line), NaN where DN == nodata.

    ``rule`` says what decided the offset: ``flag``, ``asset`` (STAC 1.1 fields),
    ``raster:bands``, ``catalogue`` (the conventions table), ``baseline`` or ``data``
    (the numbers contradicted the metadata).
    """

    scale: float
    offset: float
    nodata: float | None
    rule: str


@dataclass(frozen=True)
class OffsetCheck:
    """What the numbers said about the offset. ``verdict``: True = they carry +1000,
    False = they do not, None = too few vegetation/water numbers, or no clear answer."""

    checked: int
    share_below: float | None
    verdict: bool | None

    def as_json(self) -> dict:
        return asdict(self)


def baseline_scale_offset(
    acquired_at: datetime, baseline: str | None = None
) -> tuple[float, float]:
    """Scale and offset that turn L2A digital numbers into reflectance by the baseline
    rule: (DN - 1000) / 10000 from baseline 04.00, DN / 10000 before it."""
    if baseline is not None:
        try:
            shifted = float(baseline) >= 4.0
        except ValueError as exc:
            raise RadiometryError(
                f"processing baseline {baseline!r} is not a number like '05.10'"
            ) from exc
    else:
        shifted = acquired_at >= BASELINE_04_START
    return (S2_SCALE, -BASELINE_DN_OFFSET * S2_SCALE) if shifted else (S2_SCALE, 0.0)


def declared(asset: dict) -> tuple[float | None, float | None, float | None, str | None]:
    """(scale, offset, nodata, where) as the asset declares them: STAC 1.1 fields on the
    asset first, then the first ``raster:bands`` entry; Nones where it declares nothing."""
    if "raster:scale" in asset or "raster:offset" in asset:
        return (
            _number(asset.get("raster:scale", 1.0)),
            _number(asset.get("raster:offset", 0.0)),
            asset.get("nodata"),
            "asset",
        )
    bands = asset.get("raster:bands") or asset.get("bands") or [{}]
    band = bands[0] if isinstance(bands[0], dict) else {}
    nodata = band.get("nodata", asset.get("nodata"))
    if "scale" in band or "offset" in band:
        return (
            _number(band.get("scale", 1.0)),
            _number(band.get("offset", 0.0)),
            nodata,
            ("raster:bands"),
        )
    return None, None, nodata, None


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise RadiometryError(f"scale/offset {value!r} is not a number") from exc


def metadata_encoding(
    asset: dict,
    properties: dict,
    acquired_at: datetime,
    catalogue_default: tuple[float | None, float | None, float | None],
    offset_applied_flag: str | None,
    baseline_rule: bool,
) -> Encoding:
    """The encoding the metadata gives one reflectance asset, by the rule order above."""
    scale, offset, nodata, where = declared(asset)
    default_scale, default_offset, default_nodata = catalogue_default
    if nodata is None:
        nodata = default_nodata
    if scale is None and default_scale is not None:
        scale, offset, where = default_scale, default_offset, "catalogue"
    if scale is None:
        if not baseline_rule:
            raise RadiometryError("the item declares no scale and offset for its bands")
        baseline = properties.get("s2:processing_baseline") or properties.get("processing:version")
        scale, offset = baseline_scale_offset(acquired_at, baseline)
        where = "baseline"
    if offset_applied_flag and properties.get(offset_applied_flag) is True:
        return Encoding(scale, 0.0, nodata, "flag")
    return Encoding(scale, offset, nodata, where)


def carries_offset(encoding: Encoding) -> bool:
    """Whether an encoding says the numbers carry the +1000 baseline offset."""
    return encoding.offset < 0 and round(-encoding.offset / encoding.scale) == BASELINE_DN_OFFSET


def check_offset(red_dn: np.ndarray, nir_dn: np.ndarray, scl: np.ndarray, nodata) -> OffsetCheck:
    """What the numbers say: the share of vegetation and water numbers below 1000."""
    vegetation = scl == VEGETATION
    values = np.concatenate(
        [red_dn[vegetation | (scl == WATER)].ravel(), nir_dn[vegetation].ravel()]
    )
    if nodata is not None:
        values = values[values != nodata]
    if values.size < CHECK_MIN_VALUES:
        return OffsetCheck(int(values.size), None, None)
    share = float(np.mean(values < BASELINE_DN_OFFSET))
    verdict = None
    if share >= SHARE_SAYS_REMOVED:
        verdict = False
    elif share <= SHARE_SAYS_PRESENT:
        verdict = True
    return OffsetCheck(int(values.size), round(share, 4), verdict)


def decide(encoding: Encoding, check: OffsetCheck | None) -> tuple[Encoding, bool]:
    """The encoding to use and whether the numbers contradicted the metadata."""
    if check is None or check.verdict is None or check.verdict == carries_offset(encoding):
        return encoding, False
    offset = -BASELINE_DN_OFFSET * encoding.scale if check.verdict else 0.0
    return replace(encoding, offset=offset, rule="data"), True


def with_bandpass(encoding: Encoding, bandpass: str | None, band: str) -> Encoding:
    """The encoding with a cross-sensor line folded in: (DN*s + o - b) / a is linear too."""
    if bandpass is None:
        return encoding
    slope, intercept = BANDPASS[bandpass][band]
    return replace(
        encoding,
        scale=encoding.scale / slope,
        offset=(encoding.offset - intercept) / slope,
    )
