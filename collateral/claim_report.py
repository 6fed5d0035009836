"""A claim's verification report: pure, from its stored inputs and the land-cover model.

Like a valuation, a report is computed from a snapshot of its inputs (the plot's history
from the stored scenes, its pixels' features, the overlaps found, the price and policy
tables in force), and ``claims.verify`` recomputes it from that snapshot alone.

The verdict:
- ``not_enough_evidence`` when the plot was seen clear fewer than MIN_CLEAR_OBSERVATIONS
  times, or over less than MIN_SPAN_DAYS (one season cannot tell tea from shrub);
- ``consistent`` when the model's most likely class for the plot is the claimed kind and
  at least CONSISTENT_SHARE of the plot's area is called that kind;
- ``inconsistent`` otherwise, saying what the plot looks like instead.
An indicative value is given for the part of the plot called the claimed kind only.
"""

from datetime import datetime
from decimal import Decimal

import numpy as np

from agri_common.times import parse_time
from agri_common.wording import text
from collateral import valuation
from collateral.pledges import overlap_sentence
from remote_sensing.claims import landcover

MIN_CLEAR_OBSERVATIONS = 8
MIN_SPAN_DAYS = 270
MIN_VALID_FRACTION = 0.6  # a date the plot was this much seen clear counts as a look
CONSISTENT_SHARE = 0.7
AREA_MISMATCH = 0.15  # measured vs claimed area beyond this share is flagged
VERDICTS = ("consistent", "inconsistent", "not_enough_evidence")


def report(inputs: dict, model: landcover.Model) -> dict:
    """The verification report of a claim from its inputs."""
    claim = inputs["claim"]
    clear = [
        o
        for o in inputs["observations"]
        if o["ndvi_mean"] is not None and o["valid_fraction"] >= MIN_VALID_FRACTION
    ]
    evidence = _evidence(clear, inputs)
    features = np.array(inputs["pixels"]["features"], dtype=float).reshape(
        -1, len(landcover.FEATURES)
    )
    coverage = np.array(inputs["pixels"]["coverage"], dtype=float)
    cover = _land_cover(model, features, coverage)
    claimed_class = landcover.CLAIM_CLASS[claim["kind"]]
    if not evidence["enough"]:
        verdict = "not_enough_evidence"
    elif cover["class"] == claimed_class and cover["shares"][claimed_class] >= CONSISTENT_SHARE:
        verdict = "consistent"
    else:
        verdict = "inconsistent"
    area = _area(claim)
    accepted_ha = round(claim["area_ha"] * (cover["shares"].get(claimed_class) or 0.0), 4)
    report = {
        "claim_id": claim["claim_id"],
        "kind": claim["kind"],
        "verdict": verdict,
        "land_cover": cover,
        "evidence": evidence,
        "area": area,
        "accepted_ha": accepted_ha,
        "indicative_value": _indicative_value(inputs, accepted_ha)
        if verdict == "consistent"
        else None,
        "overlaps": inputs["overlaps"],
        "model": {"version": model.version, "sha256": model.sha256},
    }
    words = claim_words(report, "en")  # stored in English; claim_words serves any language
    report["land_cover"]["decided_by"] = words["decided_by"]
    return {**report, "flags": words["flags"], "summary": words["summary"]}


def claim_words(report: dict, locale: str) -> dict:
    """The report's sentences in ``locale``, from its figures alone (agri_common.wording):
    what decided the land cover, the flags (too little of the claimed kind, an area that
    disagrees, overlaps) and the one-line summary. The stored report keeps them in English;
    the API words them in the language the officer asks for."""
    cover, evidence, kind = report["land_cover"], report["evidence"], report["kind"]
    claimed = landcover.CLAIM_CLASS[kind]

    def say(code: str, **params) -> str:
        return text(code, locale, **params)

    if cover.get("features"):
        decided = say("ui.list_sep").join(
            say(code, **params) for code, params in landcover.describe(cover["features"])
        )
    else:
        decided = say("cover.none")
    flags = []
    share = cover["shares"][claimed]
    if cover["class"] is not None and share < CONSISTENT_SHARE:
        others = sorted(
            ((s, c) for c, s in cover["shares"].items() if c != claimed and s >= 0.1),
            reverse=True,
        )
        rest = say("ui.reason_sep").join(
            say("claim.share_of", share=f"{s:.0%}", cover=c) for s, c in others
        )
        flags.append(
            say(
                "claim.flag_share_rest" if rest else "claim.flag_share",
                share=f"{share:.0%}",
                cover=claimed,
                rest=rest,
            )
        )
    area = report["area"]
    if area.get("difference") is not None and abs(area["difference"]) > AREA_MISMATCH:
        flags.append(
            say(
                "claim.flag_area",
                measured=f"{area['measured_ha']:.2f}",
                claimed=f"{area['claimed_ha']:.2f}",
                difference=f"{area['difference']:+.0%}",
            )
        )
    for o in report["overlaps"]:
        flags.append(overlap_sentence(o, locale))
    if report["verdict"] == "not_enough_evidence":
        summary = say(
            "claim.summary_unseen",
            count=evidence["clear_observations"],
            first=evidence["first_clear"] or "-",
            last=evidence["last_clear"] or "-",
            minimum=MIN_CLEAR_OBSERVATIONS,
            days=MIN_SPAN_DAYS,
        )
    elif report["verdict"] == "consistent":
        summary = say("claim.summary_consistent", share=f"{share:.0%}", cover=claimed, why=decided)
    else:
        summary = say(
            "claim.summary_inconsistent",
            cover=claimed,
            seen=cover["class"] or "unknown",
            why=decided,
            share=f"{share:.0%}",
        )
    return {"decided_by": decided, "flags": flags, "summary": summary}


def _evidence(clear: list[dict], inputs: dict) -> dict:
    dates = [parse_time(o["acquired_at"]) for o in clear]
    span = (max(dates) - min(dates)).days if dates else 0
    enough = len(clear) >= MIN_CLEAR_OBSERVATIONS and span >= MIN_SPAN_DAYS
    means = [o["ndvi_mean"] for o in clear]
    return {
        "window": inputs["window"],
        "scenes_searched": len(inputs["observations"]),
        "clear_observations": len(clear),
        "first_clear": dates[0].date().isoformat() if dates else None,
        "last_clear": dates[-1].date().isoformat() if dates else None,
        "span_days": span,
        "enough": enough,
        "needed": f"at least {MIN_CLEAR_OBSERVATIONS} clear observations over {MIN_SPAN_DAYS} days",
        "ndvi_range": [round(min(means), 3), round(max(means), 3)] if means else None,
        "profile": [[o["acquired_at"][:10], round(o["ndvi_mean"], 4)] for o in clear],
        "from_catalogue": sum(o.get("source") == "catalogue" for o in clear),
        "catalogue_problems": (inputs.get("catalogue") or {}).get("problems", []),
    }


def _land_cover(model: landcover.Model, features: np.ndarray, coverage: np.ndarray) -> dict:
    """Probabilities per class (coverage-weighted over the plot's pixels), the share of the
    plot's area each class wins, and in words what decided it."""
    probabilities = model.probabilities(features) if len(features) else np.empty((0, 6))
    usable = ~np.isnan(probabilities).any(axis=1)
    weight = coverage[usable] if len(coverage) == len(usable) else np.ones(usable.sum())
    unknown = [c for c in landcover.CLASSES if c not in model.classes]
    if not usable.any() or weight.sum() <= 0:
        return {
            "class": None,
            "probabilities": {},
            "shares": {c: 0.0 for c in landcover.CLASSES},
            "pixels_classified": 0,
            "decided_by": None,  # worded by claim_words
            "unknown_to_model": unknown,
        }
    p = probabilities[usable]
    mean = (p * weight[:, None]).sum(axis=0) / weight.sum()
    winners = p.argmax(axis=1)
    shares = {
        c: round(float(weight[winners == i].sum() / weight.sum()), 4)
        for i, c in enumerate(landcover.CLASSES)
    }
    plot_features = dict(
        zip(landcover.FEATURES, np.nanmedian(features[usable], axis=0), strict=True)
    )
    return {
        "class": landcover.CLASSES[int(mean.argmax())],
        "probabilities": {
            c: round(float(v), 4) for c, v in zip(landcover.CLASSES, mean, strict=True)
        },
        "shares": shares,
        "pixels_classified": int(usable.sum()),
        "decided_by": None,  # worded by claim_words
        "features": {k: round(float(v), 4) for k, v in plot_features.items()},
        "unknown_to_model": unknown,
    }


def _area(claim: dict) -> dict:
    measured = claim["area_ha"]
    claimed = claim.get("claimed_area_ha")
    out = {"measured_ha": round(measured, 4), "claimed_ha": claimed}
    if claimed:
        out["difference"] = round((measured - claimed) / claimed, 4)
    return out


def _indicative_value(inputs: dict, accepted_ha: float) -> dict:
    """The item a valuation would give the accepted part, from the tables in force."""
    claim = inputs["claim"]
    as_of = parse_time(inputs["as_of"])
    last = inputs["observations"][-1]["acquired_at"] if inputs["observations"] else None
    parcel = {
        "parcel_id": claim["claim_id"],
        "kind": claim["kind"],
        "attributes": claim["attributes"],
        "area_ha": accepted_ha,
        "centroid": claim["centroid"],
        "county": claim["attributes"].get("county"),
        "health_index": None,
        "open_disturbances": [],
        "latest_clear_at": last,
    }
    item = {"tea_garden": valuation.tea_item, "forest": valuation.forest_item}[claim["kind"]]
    try:
        result = item(parcel, inputs["prices"], inputs["policy"], as_of)
    except (LookupError, ValueError) as exc:
        return {"value_cny": None, "reason": str(exc)}
    return {
        "value_cny": result["value_cny"],
        "eligible_value_cny": result["eligible_value_cny"],
        "formula": result["formula"],
        "accepted_ha": str(Decimal(str(accepted_ha))),
    }


def window_of(as_of: datetime, months: int = 24) -> tuple[datetime, datetime]:
    """The history a claim is judged on: ``months`` before ``as_of``."""
    year, month = divmod(as_of.month - 1 - months, 12)
    start = as_of.replace(year=as_of.year + year, month=month + 1, day=min(as_of.day, 28))
    return start, as_of
