"""What every valuation item is made of: exact money, figures from the data as Decimals,
the item's shape (value, haircut, eligible value, confidence, evidence, formula), the
area open disturbances take and a parcel's evidence summary. Shared by the valuation
rules (valuation.py) and their carbon half (carbon.py)."""

from decimal import ROUND_HALF_UP, Decimal

from agri_common.wording import Said, coded

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
