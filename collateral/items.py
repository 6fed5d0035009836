"""What every valuation item is made of: exact money, figures from the data as Decimals,
the item's shape (value, haircut, eligible value, confidence, evidence, formula), the
area open disturbances take, a parcel's evidence summary and why its imagery is weak
evidence. Shared by the valuation
rules (valuation.py) and their carbon half (carbon.py)."""

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from agri_common.times import parse_time
from agri_common.wording import Said, coded
from collateral import prices
from collateral.prices import Where
from remote_sensing.profiles.disturbances import CONFIRM_EVIDENCE

CENT = Decimal("0.01")
HA = Decimal("0.0001")
RATIO = Decimal("0.0001")


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def dec(value, places: Decimal = HA) -> Decimal:
    """A float from the data as a Decimal of fixed places: the same float, the same figure."""
    return Decimal(str(value)).quantize(places, rounding=ROUND_HALF_UP)


def fmt(value: Decimal) -> str:
    return f"{value:,}"


def make_item(kind, ref, value, haircut, base, extra, stale, evidence, formula) -> dict:
    """``formula``: the steps (wording.Said, or plain text) that give the value; the item
    says them joined in English (``formula``) and as codes the page words (``formula_coded``)."""
    value = money(value)
    eligible = money(value * (1 - haircut))
    steps = [*(formula if isinstance(formula, list) else [formula])]
    steps.append(Said("formula.eligible", haircut=haircut, eligible=fmt(eligible)))
    return {
        "kind": kind,
        "ref": ref,
        "value_cny": str(value),
        "eligible_value_cny": str(eligible),
        "haircut": str(haircut),
        "confidence": "reduced" if stale else "high",
        "evidence": {
            **evidence,
            "haircut": {
                "base": str(base),
                "stale_evidence": str(extra),
                "reasons": [str(r) for r in stale],
                "reasons_coded": [coded(r) for r in stale],  # the page words them
            },
        },
        "formula": "; ".join(steps),
        "formula_coded": [coded(s) for s in steps],
    }


def disturbed_area(parcel: dict, area: Decimal) -> tuple[Decimal, list[str]]:
    """Area of the disturbances open at as_of; one whose extent is unknown takes it all."""
    notes, total = [], Decimal("0")
    for event in parcel["open_disturbances"]:
        if event.get("affected_ha") is None:
            notes.append(f"disturbance since {event['start']} of unknown extent: whole parcel")
            total = area
        else:
            total += dec(event["affected_ha"])
    return min(area, total), notes


def parcel_summary(parcel: dict) -> dict:
    return {
        "area_ha": str(dec(parcel["area_ha"])),
        "latest_clear_image": parcel.get("latest_clear_at"),
        "latest_clear_scene": parcel.get("latest_clear_scene"),
        "clear_images_used": parcel.get("clear_images", 0),
        "anomaly_z": parcel.get("anomaly_z"),
        "open_disturbances": parcel["open_disturbances"],
    }


def where_of(asset: dict) -> Where:
    lon, lat = asset.get("centroid") or (None, None)
    return Where(county=asset.get("county"), lon=lon, lat=lat)


def imagery_staleness(parcel: dict, policy: dict, as_of: datetime, where: Where) -> list[str]:
    """Why the parcel's imagery is weak evidence at ``as_of`` (empty: it is not).

    Fewer than CONFIRM_EVIDENCE clear images in the policy's window is stale however
    recent the last one: a profile cannot confirm or rule out damage on one date (under
    Fujian's clouds, the usual case). A drop the profile could not confirm for want of
    clear images in the window is named too. Snapshots from before these figures were
    gathered (no ``sampling``) keep the age-of-the-last-image rule they were valued with.
    """
    days = int(prices.value(policy, "stale_after_days", "imagery", where))
    latest = parcel.get("latest_clear_at")
    if latest is None:
        return [Said("stale.no_clear_image")]
    sampling = parcel.get("sampling")
    if sampling is None:
        age = as_of - parse_time(latest)
        if age > timedelta(days=days):
            return [Said("stale.old_image", date=latest[:10], days=age.days, limit=days)]
        return []
    reasons = []
    count, gap = sampling["clear_dates"], sampling["largest_gap_days"]
    if count == 0:
        age = (as_of - parse_time(latest)).days
        reasons.append(Said("stale.none_in_window", window=days, date=latest[:10], days=age))
    elif count < CONFIRM_EVIDENCE:
        reasons.append(
            Said(
                "stale.too_few",
                count=count,
                window=days,
                date=latest[:10],
                gap=f"{gap:.0f}",
                needed=f"{CONFIRM_EVIDENCE:.0f}",
            )
        )
    for suspected in parcel.get("suspected", []):
        coded_reason = suspected.get("reason_coded")  # snapshots from before have none
        if coded_reason:
            code, params = f"stale.{coded_reason['code']}", coded_reason["params"]
            reasons.append(Said(code, start=suspected["start"], **params))
        else:
            reasons.append(
                Said("stale.suspected", start=suspected["start"], reason=suspected["reason"])
            )
    return reasons
