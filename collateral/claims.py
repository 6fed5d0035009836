"""Claims: a borrower's plot, checked against the satellite record before anyone lends.

``submit`` takes a drawn plot (remote_sensing.claims.plots), looks for land already pledged or
claimed under it (collateral.pledges), reads its history from the scenes already
processed (remote_sensing.claims.plot_history; nothing waits for the next scheduled run), and
stores the verification report with the inputs it came from (collateral.claim_report).
``verify`` recomputes a stored report from those inputs. ``accept`` turns a consistent
claim into a parcel, pledged like any imported parcel from then on; a claim itself is
never pledged.
"""

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import mapping, shape
from sqlalchemy import Engine, insert, select, update

from agri_common.wording import Said
from collateral import claim_report, pledges, prices
from collateral.errors import Conflict, NotFound, Refused
from collateral.evidence import CODE_VERSION
from collateral.tables import claims
from remote_sensing import store as rs_store
from remote_sensing.claims import landcover, plot_backfill, plot_history
from remote_sensing.claims.plot_backfill import Catalogue
from remote_sensing.claims.plots import Plot, read_plot
from remote_sensing.imagery import stac_sync
from remote_sensing.parcels import Parcel

CLAIM_KINDS = tuple(landcover.CLAIM_CLASS)
ATTRIBUTES = {  # what a claim may say about its plot, by kind (as parcel files do)
    "tea_garden": ("variety", "planted_year", "county", "claimed_area_ha"),
    "forest": ("species_group", "age_class", "stand_volume_m3_per_ha", "county", "claimed_area_ha"),
}
FEATURE_DIGITS = 5


class ClaimRefused(Refused):
    """A claim that cannot be taken (bad plot, unknown kind), with the reason."""


class NotAcceptable(Conflict):
    """An accept that the claim's state or verdict forbids."""


@dataclass
class Submission:
    kind: str
    crs: str
    owner: str | None = None
    branch: str | None = None
    attributes: dict = field(default_factory=dict)
    as_of: datetime | None = None  # default: now


def submit(
    engine: Engine,
    data: bytes,
    fmt: str,
    submission: Submission,
    max_ha: float,
    catalogue: Catalogue | None = None,
    data_dir: Path | None = None,
) -> dict:
    """Read, check, backfill (from the stored scenes, and from ``catalogue`` when one is
    configured: its scenes over the plot that are not stored, read into ``data_dir``),
    classify and store a claim; returns it with its report."""
    if submission.kind not in CLAIM_KINDS:
        raise ClaimRefused(f"kind {submission.kind!r} is not one of {list(CLAIM_KINDS)}")
    unknown = sorted(set(submission.attributes) - set(ATTRIBUTES[submission.kind]))
    if unknown:
        raise ClaimRefused(
            f"attributes {unknown} are not among {list(ATTRIBUTES[submission.kind])}"
        )
    plot = read_plot(data, fmt, submission.crs, max_ha)  # PlotError is a ValueError
    as_of = submission.as_of or datetime.now(UTC)
    claim_id = f"CL-{as_of:%Y%m%d}-{uuid.uuid4().hex[:8]}"
    inputs = gather_inputs(engine, claim_id, plot, submission, as_of, catalogue, data_dir)
    model = landcover.load()
    result = claim_report.report(inputs, model)
    now = datetime.now(UTC)
    row = {
        "claim_id": claim_id,
        "kind": submission.kind,
        "owner": submission.owner,
        "branch": submission.branch,
        "attributes": submission.attributes,
        "crs": plot.crs,
        "submitted_geometry": plot.submitted,
        "geometry_geojson": json.dumps(mapping(plot.geometry)),
        "area_ha": f"{plot.area_ha:.4f}",
        "state": "open",
        "verdict": result["verdict"],
        "report": result,
        "inputs": inputs,
        "inputs_sha256": sha256(inputs),
        "model_version": model.version,
        "created_at": now,
        "updated_at": now,
    }
    with engine.begin() as conn:
        conn.execute(insert(claims).values(**row))
    return get_claim(engine, claim_id)


def gather_inputs(
    engine: Engine,
    claim_id: str,
    plot: Plot,
    submission: Submission,
    as_of: datetime,
    catalogue: Catalogue | None = None,
    data_dir: Path | None = None,
) -> dict:
    """Everything the report needs, as plain JSON values."""
    start, end = claim_report.window_of(as_of)
    backfill = None
    if catalogue is not None:
        known = {  # stored scenes of the window that hold the plot; the others are read
            s["scene_id"]  # again for it (the search asks for this window only)
            for s in plot_history.stored_scenes(engine, start, end)
            if plot_history.holds_plot(Path(s["ndvi_path"]), plot.geometry)
        }
        backfill = plot_backfill.catalogue_scenes(
            catalogue, plot.geometry, start, end, known, data_dir or Path("./var/data")
        )
    extra = backfill.scenes if backfill else []
    history = plot_history.plot_history(engine, plot.geometry, start, end, extra)
    features = landcover.pixel_features(history.pixels, history.pixel_dates)
    usable = ~np.isnan(features).any(axis=1)
    on = as_of.date()
    found = pledges.parcel_pledge_overlaps(engine, plot.geometry)
    claimed = open_claim_plots(engine)
    found += pledges.overlaps(plot.geometry, claimed) if claimed else []
    centroid = plot.geometry.centroid
    return {
        "claim": {
            "claim_id": claim_id,
            "kind": submission.kind,
            "owner": submission.owner,
            "attributes": submission.attributes,
            "crs": plot.crs,
            "area_ha": round(plot.area_ha, 4),
            "claimed_area_ha": submission.attributes.get("claimed_area_ha"),
            "centroid": [round(centroid.x, 6), round(centroid.y, 6)],
            "repaired": plot.repaired,
        },
        "as_of": as_of.isoformat(),
        "window": {"from": start.date().isoformat(), "to": end.date().isoformat()},
        "observations": [_rounded(o) for o in history.observations],
        "pixels": {
            "dates": len(history.pixel_dates),
            "features": np.round(features[usable], FEATURE_DIGITS).ravel().tolist(),
            "coverage": np.round(history.coverage[usable], FEATURE_DIGITS).tolist(),
            "pixel_area_m2": history.pixel_area_m2,
            "pixels_total": int(len(features)),
        },
        "overlaps": [{**o.as_json(), "sentence": o.sentence()} for o in found],
        "catalogue": None
        if backfill is None
        else {
            "api": catalogue.api_url,
            "collections": list(catalogue.collections),
            "searched": backfill.searched,
            "read": len(backfill.scenes),
            "problems": backfill.problems,
        },
        "prices": prices.table_in_force(engine, "prices", on),
        "policy": prices.table_in_force(engine, "policy", on),
        "code_version": CODE_VERSION,
    }


def _rounded(observation: dict) -> dict:
    mean = observation["ndvi_mean"]
    return {
        **observation,
        "ndvi_mean": None if mean is None else round(mean, 6),
        "valid_fraction": round(observation["valid_fraction"], 6),
    }


def catalogue_of(settings) -> Catalogue | None:
    """The STAC API a claim's missing scenes are read from: the configured one
    (AGRI_STAC_API and AGRI_STAC_COLLECTIONS), signed as a sync would be; None without."""
    if not settings.stac_api or not settings.collections:
        return None
    signer = stac_sync.signer_for(settings.stac_api, settings.stac_sign)
    return Catalogue(
        settings.stac_api.rstrip("/"),
        tuple(settings.collections),
        settings.allowed_hosts,
        stac_sync.signing_modifier(signer) if signer else None,
    )


def sha256(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def open_claim_plots(engine: Engine) -> list[tuple[str, None, str, shapely.Geometry]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(claims.c.claim_id, claims.c.geometry_geojson).where(claims.c.state == "open")
        ).all()
    return [("claim", None, r.claim_id, shape(json.loads(r.geometry_geojson))) for r in rows]


def get_claim(engine: Engine, claim_id: str, with_inputs: bool = False) -> dict:
    columns = [c for c in claims.c if with_inputs or c.name != "inputs"]
    with engine.connect() as conn:
        row = conn.execute(select(*columns).where(claims.c.claim_id == claim_id)).first()
    if row is None:
        raise NotFound(Said("problem.not_found", what="claim", id=repr(claim_id)))
    out = dict(row._mapping)
    out["geometry"] = json.loads(out.pop("geometry_geojson"))
    out["area_ha"] = float(out["area_ha"])
    return out


def list_claims(engine: Engine, branch: str | None = None) -> list[dict]:
    query = select(
        claims.c.claim_id,
        claims.c.kind,
        claims.c.owner,
        claims.c.branch,
        claims.c.state,
        claims.c.verdict,
        claims.c.area_ha,
        claims.c.parcel_id,
        claims.c.created_at,
    ).order_by(claims.c.created_at)
    if branch is not None:
        query = query.where(claims.c.branch == branch)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def verify(engine: Engine, claim_id: str) -> dict:
    """Recompute a stored report from its stored inputs; say whether it matches."""
    stored = get_claim(engine, claim_id, with_inputs=True)
    inputs = stored["inputs"]
    try:  # the model that made it, if this release still ships it
        model = landcover.load_version(stored["model_version"])
    except (FileNotFoundError, ValueError):
        model = landcover.load()
    problems = []
    if sha256(inputs) != stored["inputs_sha256"]:
        problems.append("the stored inputs do not match their checksum")
    if (
        model.version != stored["model_version"]
        or model.sha256 != stored["report"]["model"]["sha256"]
    ):
        problems.append(
            f"the report was made by model {stored['report']['model']['sha256'][:12]}, "
            f"this is {model.sha256[:12]}"
        )
    again = claim_report.report(inputs, model)
    same = json.dumps(again, sort_keys=True) == json.dumps(stored["report"], sort_keys=True)
    if not same:
        problems.append("the recomputed report differs from the stored one")
    return {
        "claim_id": claim_id,
        "matches": not problems,
        "problems": problems,
        "verdict": again["verdict"],
    }


def accept(engine: Engine, claim_id: str, parcel_id: str | None = None) -> dict:
    """Make a consistent, open claim a parcel (id ``parcel_id`` or the claim's own)."""
    claim = get_claim(engine, claim_id)
    if claim["state"] != "open":
        raise NotAcceptable(f"claim {claim_id!r} is {claim['state']}, not open")
    if claim["verdict"] != "consistent":
        raise NotAcceptable(
            f"claim {claim_id!r} is {claim['verdict'].replace('_', ' ')}: only a consistent "
            "claim becomes a parcel"
        )
    parcel_id = parcel_id or claim_id
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", parcel_id):
        raise ClaimRefused(f"parcel id {parcel_id!r} is not a valid id")
    existing = rs_store.get_parcel(engine, parcel_id)
    if existing is not None and existing["attributes"].get("claim_id") != claim_id:
        raise Conflict(f"parcel {parcel_id!r} exists")  # (one this claim made is finished)
    pledged = pledges.parcel_pledge_overlaps(engine, shape(claim["geometry"]))
    if pledged:
        raise pledges.DoublePledge(
            f"claim {claim_id!r} overlaps land already pledged: {pledged[0].sentence()}",
            pledged[0].loan_id,
        )
    attributes = {k: v for k, v in claim["attributes"].items() if k != "claimed_area_ha"}
    attributes["claim_id"] = claim_id
    parcel = Parcel(
        parcel_id,
        claim["kind"],
        claim["owner"],
        attributes,
        shape(claim["geometry"]),
        claim["area_ha"],
    )
    rs_store.upsert_parcels(engine, [parcel])
    with engine.begin() as conn:
        conn.execute(
            update(claims)
            .where(claims.c.claim_id == claim_id)
            .values(state="accepted", parcel_id=parcel_id, updated_at=datetime.now(UTC))
        )
    return get_claim(engine, claim_id)
