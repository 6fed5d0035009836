"""Valuation rules: pure functions from an input snapshot to figures. Money is Decimal.

Everything a valuation depends on is in its input snapshot (``inputs``: the loan, the
price and policy tables in force, each parcel's profile evidence, each herd's animals with
their verification), so a stored valuation recomputes to the same cent with
``value_loan(inputs)``, whatever has happened to the database since.

Formulas (also written out, with the numbers, in every item's ``formula``):

- Tea garden: (area_ha - disturbed_ha) x yield (kg/ha/yr, by variety) x seasonal price
  (sum over spring, summer, autumn of share x fresh-leaf price, CNY/kg) x condition, where
  condition = the parcel's health index clamped to [policy floor, 1] (1 when there is no
  baseline yet) and disturbed_ha is the affected area of the disturbances open at as_of.
  Haircut by production stage (young / mature / old from the garden's age).
- Forest: (area_ha - disturbed_ha) x stand volume (m3/ha, from the parcel's inventory
  attributes, never from NDVI) x stumpage price (CNY/m3, by species group). Haircut by age
  class.
- Forest carbon (collateral/carbon.py): the pledged increment since a baseline date, or
  the stock, in t CO2e by the IPCC biomass-expansion method (volume x density x BEF x
  (1 + R) x CF x 44/12; growth by species and age class, scaled by health; zero on the
  area of open disturbances, whose carbon is reported as reversed) x the market's price.
  Timber and carbon of one stand are never counted twice: a harvest destroys both, so
  with the timber pledged too the carbon item counts max(0, carbon - timber).
- Herd, per farm and category: the sum over verified animals of the unit value: per head
  by parity band (breeding sows) or lactation band (dairy cows), last weight x live-weight
  price for the weight band (fattening pigs, beef cattle). Unverified animals are listed
  with their reason and valued at zero. Haircut by category.
- Stale evidence (fewer than two clear images of a parcel in the last N days, or a drop
  its profile could not confirm for want of clear images; no tag reading from the farm for
  more than N days) adds the policy's stale haircut: the advance rate drops, confidence is
  "reduced".
- Rooftop solar (collateral/solar_value.py): the present value of the plant's fee income
  over the years left of its scheme or the loan's term (P50 and P90), and its equipment's
  residual value, each with its haircut; the loan's DSCR from the same cash flows.
- Eligible value = value x (1 - haircut). LTV = principal / total eligible value; status
  ok, watch (LTV >= watch threshold) or margin_call (LTV >= margin-call threshold, or
  nothing eligible).
"""

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import NotRequired, TypedDict

from agri_common.times import parse_time
from agri_common.wording import Said, coded
from collateral import prices, solar_value
from collateral.carbon import carbon_item
from collateral.errors import Refused
from collateral.items import (
    RATIO,
    dec,
    disturbed_area,
    fmt,
    imagery_staleness,
    make_item,
    money,
    parcel_summary,
    where_of,
)
from collateral.prices import Where
from collateral.snapshot import ValuationInputs

RULES_VERSION = "2026.12.5"  # bump when a formula changes: stored valuations name theirs
# The rules version from which each change applies. A snapshot is recomputed by the rules
# it was valued with (its code_version names them), so `verify` of a valuation made before
# a change still finds its own figures to the cent.
RULE_SINCE = {
    # a carbon item takes the stale-evidence haircut of the land it stands on
    "carbon_follows_land_evidence": "2026.12.4",
    # rooftop plants pledged with their fees (collateral/solar_value.py)
    "solar_plants": "2026.12.5",
}


def _named_version(inputs: dict) -> tuple[int, ...] | None:
    """The rules version a snapshot's code_version names; None for a snapshot that names
    none (made before versions were recorded)."""
    made_with = str(inputs.get("code_version", "")).rsplit(" ", 1)[-1]
    try:
        return tuple(int(part) for part in made_with.split("."))
    except ValueError:
        return None


def rules_of(inputs: dict) -> str:
    """The rules version a snapshot was valued with (its code_version names it), which its
    recomputation applies and reports."""
    named = _named_version(inputs)
    return RULES_VERSION if named is None else ".".join(map(str, named))


def follows(inputs: dict, change: str) -> bool:
    """Whether the snapshot was valued under rules that include ``change``."""
    named = _named_version(inputs)
    since = tuple(int(part) for part in RULE_SINCE[change].split("."))
    return named is not None and named >= since


STATUS_RANK = {"ok": 0, "watch": 1, "margin_call": 2}
HEAD_BAND = {"breeding_sow": "parity", "dairy_cow": "lactation"}
WEIGHT_PRICED = ("fattening_pig", "beef_cattle")


class ValuationError(Refused):
    """The inputs cannot be valued (e.g. a table lacks a row the asset needs)."""


def value_loan(inputs: ValuationInputs) -> dict:
    """The valuation document (without its id) for an input snapshot, by the rules it was
    made with (``rules_of``)."""
    try:
        return _value_loan(inputs)
    except LookupError as exc:
        raise ValuationError(str(exc)) from exc


def _value_loan(inputs: dict) -> dict:
    as_of = parse_time(inputs["as_of"])
    price_table, policy = inputs["prices"], inputs["policy"]
    items = []
    for parcel in inputs["parcels"]:
        rule = tea_item if parcel["kind"] == "tea_garden" else forest_item
        items.append(rule(parcel, price_table, policy, as_of))
    timber = {i["ref"]: i for i in items if i["kind"] == "forest"}
    for pledge in inputs.get("carbon", []):  # snapshots from before carbon have none
        ref = pledge["parcel"]["parcel_id"]
        evidence_policy = policy if follows(inputs, "carbon_follows_land_evidence") else None
        items.append(
            carbon_item(pledge, inputs.get("carbon_table"), as_of, timber.get(ref), evidence_policy)
        )
    for herd in inputs["herds"]:
        items += herd_items(herd, price_table, policy, as_of)
    solar_pledges = inputs.get("solar") or []  # snapshots from before 2026.12.5 have none
    if solar_pledges and not inputs.get("solar_table"):
        raise ValuationError("no solar table in force: import one (agri prices import FILE)")
    for pledge in solar_pledges:
        items += solar_value.plant_items(pledge, inputs["solar_table"], inputs["loan"], as_of)
    collateral = sum((Decimal(i["value_cny"]) for i in items), Decimal("0.00"))
    eligible = sum((Decimal(i["eligible_value_cny"]) for i in items), Decimal("0.00"))
    principal = Decimal(inputs["loan"]["principal_cny"])
    ltv = (principal / eligible).quantize(RATIO, rounding=ROUND_HALF_UP) if eligible else None
    status = loan_status(ltv, principal, policy)
    watch = prices.value(policy, "ltv_threshold", "watch")
    margin = prices.value(policy, "ltv_threshold", "margin_call")
    ltv_formula = Said(
        "formula.ltv" if ltv is not None else "formula.ltv_none",
        principal=fmt(principal),
        eligible=fmt(eligible),
        ltv=ltv,
        watch=watch,
        margin_call=margin,
    )
    document = {
        "loan_id": inputs["loan"]["loan_id"],
        "as_of": inputs["as_of"],
        "principal_cny": str(principal),
        "items": items,
        "collateral_value_cny": str(collateral),
        "eligible_value_cny": str(eligible),
        "ltv": None if ltv is None else str(ltv),
        "status": status,
        "thresholds": {"watch": str(watch), "margin_call": str(margin)},
        "formula": str(ltv_formula),
        "formula_coded": coded(ltv_formula),
        "prices_version": price_table["version"],
        "policy_version": policy["version"],
        "illustrative_tables": bool(price_table["illustrative"] or policy["illustrative"]),
        "rules_version": rules_of(inputs),
        "changes": changes_since(inputs.get("previous"), items, eligible, ltv, status),
    }
    if solar_pledges:
        document["solar"] = solar_value.cover(items, inputs["loan"])
    return document


class Figures(TypedDict):
    """A valuation's totals that lists read (the loan list, the portfolio), stored beside its
    document so that a read of a thousand loans parses a few hundred bytes a loan rather
    than every item's evidence. Money and quantities as decimal strings."""

    collateral_value_cny: str
    carbon_t_co2e: str
    ha: dict[str, str]  # pledged land by kind (tea_garden, forest)
    headcount: dict[str, int]  # verified animals by category
    solar_kwp: NotRequired[str]  # pledged rooftop plants' nameplate (2026.12.5)
    solar_energy_30d_kwh: NotRequired[str]  # what they made in the last 30 days...
    solar_expected_30d_kwh: NotRequired[str]  # ...and what they should have
    dscr_p50: NotRequired[str | None]  # the loan's debt-service cover from their fees
    dscr_p90: NotRequired[str | None]


LAND_KINDS = ("tea_garden", "forest")


def figures(result: dict) -> Figures:
    """The totals of a valuation document (``value_loan``'s result)."""
    ha: dict[str, Decimal] = {}
    carbon = Decimal(0)
    headcount: dict[str, int] = {}
    for item in result["items"]:
        evidence = item["evidence"]
        if item["kind"] in LAND_KINDS:
            ha[item["kind"]] = ha.get(item["kind"], Decimal(0)) + Decimal(evidence["area_ha"])
        elif item["kind"] == "carbon_sink":
            carbon += Decimal(evidence["quantity_t_co2e"])
        elif item["kind"] == "herd" and "verified" in evidence:
            category = item["ref"].split("/", 1)[1]
            headcount[category] = headcount.get(category, 0) + int(evidence["verified"])
    out: Figures = {
        "collateral_value_cny": result["collateral_value_cny"],
        "carbon_t_co2e": str(carbon),
        "ha": {kind: str(value) for kind, value in sorted(ha.items())},
        "headcount": dict(sorted(headcount.items())),
    }
    if result.get("solar"):
        cover = result["solar"]
        plants = [i["evidence"] for i in result["items"] if i["kind"] == "solar_plant"]
        out["solar_kwp"] = cover["kwp"]
        for key in ("energy", "expected"):
            total = sum(Decimal(str(e[f"last_30_{key}_kwh"] or 0)) for e in plants)
            out[f"solar_{key}_30d_kwh"] = str(total.quantize(Decimal("0.1")))
        out["dscr_p50"], out["dscr_p90"] = cover["dscr_p50"], cover["dscr_p90"]
    return out


def loan_status(ltv: Decimal | None, principal: Decimal, policy: dict) -> str:
    if ltv is None:
        return "margin_call" if principal > 0 else "ok"
    if ltv >= prices.value(policy, "ltv_threshold", "margin_call"):
        return "margin_call"
    if ltv >= prices.value(policy, "ltv_threshold", "watch"):
        return "watch"
    return "ok"


def changes_since(
    previous: dict | None, items: list[dict], eligible: Decimal, ltv, status: str
) -> dict | None:
    """What moved since the loan's previous valuation (None for the first one)."""
    if previous is None:
        return None
    before = previous["items"]
    moved = [
        {"ref": i["ref"], "from": before.get(i["ref"]), "to": i["eligible_value_cny"]}
        for i in items
        if before.get(i["ref"]) != i["eligible_value_cny"]
    ]
    moved += [
        {"ref": ref, "from": old, "to": None}
        for ref, old in before.items()
        if ref not in {i["ref"] for i in items}
    ]
    return {
        "previous_valuation_id": previous["valuation_id"],
        "previous_as_of": previous["as_of"],
        "eligible_value_cny": {
            "from": previous["eligible_value_cny"],
            "to": str(eligible),
            "change": str(eligible - Decimal(previous["eligible_value_cny"])),
        },
        "ltv": {"from": previous["ltv"], "to": None if ltv is None else str(ltv)},
        "status": {"from": previous["status"], "to": status},
        "status_worsened": STATUS_RANK[status] > STATUS_RANK[previous["status"]],
        "items": moved,
    }


def _haircut(policy: dict, key: str, where: Where, stale: list[str], kind: str):
    base = prices.value(policy, "haircut", key, where)
    extra = prices.value(policy, "stale_haircut", kind, where) if stale else Decimal("0")
    return min(Decimal("1"), base + extra), base, extra


def tea_item(parcel: dict, price_table: dict, policy: dict, as_of: datetime) -> dict:
    where = where_of(parcel)
    attributes = parcel["attributes"]
    area = dec(parcel["area_ha"])
    disturbed, notes = disturbed_area(parcel, area)
    variety = str(attributes.get("variety") or "*")
    yield_kg = prices.value(price_table, "tea_yield_kg_per_ha_yr", variety, where)
    seasonal = Decimal("0")
    parts = []
    for season in prices.SEASONS:
        share = prices.value(price_table, "tea_season_share", season, where)
        price = prices.value(price_table, "tea_leaf_price_cny_per_kg", season, where)
        seasonal += share * price
        parts.append(f"{share} x {price}")
    floor = prices.value(policy, "condition_floor", "tea", where)
    health = parcel.get("health_index")
    condition = Decimal("1") if health is None else min(Decimal("1"), max(floor, dec(health)))
    value = (area - disturbed) * yield_kg * seasonal * condition
    planted = attributes.get("planted_year")
    age = as_of.year - int(planted) if planted is not None else None
    stage_row = prices.lookup(policy, "tea_stage", None, where, age) if age is not None else None
    if stage_row is None:
        raise LookupError(f"parcel {parcel['parcel_id']}: no tea_stage for garden age {age}")
    stage = stage_row["key"]
    stale = imagery_staleness(parcel, policy, as_of, where)
    haircut, base, extra = _haircut(policy, f"tea:{stage}", where, stale, "imagery")
    formula = Said(
        "formula.tea",
        area=area,
        disturbed=disturbed,
        yield_kg=fmt(yield_kg),
        seasons=" + ".join(parts),
        seasonal=seasonal,
        condition=condition,
        value=fmt(money(value)),
    )
    evidence = {
        **parcel_summary(parcel),
        "variety": variety,
        "garden_age_years": age,
        "stage": stage,
        "health_index": health,
        "condition_factor": str(condition),
        "condition_floor": str(floor),
        "disturbed_ha": str(disturbed),
        "notes": notes,
    }
    return make_item(
        "tea_garden", parcel["parcel_id"], value, haircut, base, extra, stale, evidence, formula
    )


def forest_item(parcel: dict, price_table: dict, policy: dict, as_of: datetime) -> dict:
    where = where_of(parcel)
    attributes = parcel["attributes"]
    area = dec(parcel["area_ha"])
    disturbed, notes = disturbed_area(parcel, area)
    group = str(attributes.get("species_group") or "*")
    age_class = str(attributes.get("age_class") or "*")
    stale = imagery_staleness(parcel, policy, as_of, where)
    haircut, base, extra = _haircut(policy, f"forest:{age_class}", where, stale, "imagery")
    volume = attributes.get("stand_volume_m3_per_ha")
    stumpage = prices.value(price_table, "timber_stumpage_cny_per_m3", group, where)
    if volume is None:
        notes.append("no stand_volume_m3_per_ha in the parcel's inventory attributes: valued 0")
        volume_m3 = Decimal("0")
    else:
        volume_m3 = dec(volume, Decimal("0.01"))
    value = (area - disturbed) * volume_m3 * stumpage
    formula = Said(
        "formula.forest",
        area=area,
        disturbed=disturbed,
        volume=volume_m3,
        stumpage=fmt(stumpage),
        value=fmt(money(value)),
    )
    evidence = {
        **parcel_summary(parcel),
        "species_group": group,
        "age_class": age_class,
        "stand_volume_m3_per_ha": str(volume_m3),
        "disturbed_ha": str(disturbed),
        "notes": notes,
    }
    return make_item(
        "forest", parcel["parcel_id"], value, haircut, base, extra, stale, evidence, formula
    )


def herd_items(herd: dict, price_table: dict, policy: dict, as_of: datetime) -> list[dict]:
    """One item per pledged category of a farm (plus one for pledged tags not found)."""
    where = where_of(herd)
    stale = []
    days = prices.value(policy, "stale_after_days", "tags", where)
    last = herd.get("last_reading_at")
    if last is None:
        stale.append(Said("stale.no_reading", farm=herd["farm_id"], days=days))
    elif as_of - parse_time(last) > timedelta(days=int(days)):
        stale.append(Said("stale.last_reading", farm=herd["farm_id"], at=last[:16]))
    by_category: dict[str, list[dict]] = {}
    for animal in herd["animals"]:
        by_category.setdefault(animal["category"], []).append(animal)
    items = []
    for category in sorted(by_category):
        animals = by_category[category]
        total, lines, unverified, counted = Decimal("0"), {}, [], 0
        for a in animals:
            if a["reason"] is not None:
                unverified.append(
                    {
                        "tag_id": a["tag_id"],
                        "reason": a["reason"],
                        "reason_coded": a.get("reason_coded"),
                    }
                )
                continue
            if category in WEIGHT_PRICED:
                if a.get("weight_kg") is None:
                    reason = Said("unverified.no_weight", days=90)
                    unverified.append(
                        {
                            "tag_id": a["tag_id"],
                            "reason": str(reason),
                            "reason_coded": reason.coded(),
                        }
                    )
                    continue
                weight = dec(a["weight_kg"], Decimal("0.1"))
                row = prices.lookup(price_table, "liveweight_cny_per_kg", category, where, weight)
                if row is None:
                    raise LookupError(f"no liveweight_cny_per_kg row for {category} at {weight} kg")
                price = Decimal(row["value"])
                label = _band_label(row, "kg")
                line = lines.setdefault(label, {"animals": 0, "kg": Decimal("0"), "price": price})
                line["kg"] += weight
                total += weight * price
            else:
                band = a.get(HEAD_BAND.get(category, "parity")) or 0
                row = prices.lookup(price_table, "head_value_cny", category, where, band)
                if row is None:
                    raise LookupError(f"no head_value_cny row for {category} at {band}")
                price = Decimal(row["value"])
                label = _band_label(row, HEAD_BAND.get(category, "parity"))
                line = lines.setdefault(label, {"animals": 0, "price": price})
                total += price
            line["animals"] += 1
            counted += 1
        haircut, base, extra = _haircut(policy, f"livestock:{category}", where, stale, "tags")
        if category in WEIGHT_PRICED:
            terms = [f"{fmt(v['kg'])} kg x {v['price']}" for v in lines.values()]
        else:
            terms = [f"{v['animals']} x {fmt(v['price'])}" for v in lines.values()]
        formula = Said(
            "formula.herd",
            verified=counted,
            category=category,
            registered=len(animals),
            terms=" + ".join(terms) or "0",
            value=fmt(money(total)),
        )
        evidence = {
            "farm_id": herd["farm_id"],
            "category": category,
            "registered": len(animals),
            "verified": counted,
            "unverified": unverified,
            "bands": {k: {kk: str(vv) for kk, vv in v.items()} for k, v in lines.items()},
            "last_reading_at": last,
            "headcount_rule": "alive, seen in the last 24 h, inside the geofence, no fever",
        }
        ref = f"{herd['farm_id']}/{category}"
        items.append(make_item("herd", ref, total, haircut, base, extra, stale, evidence, formula))
    if herd.get("missing_tags"):
        evidence = {"farm_id": herd["farm_id"], "unverified": herd["missing_tags"]}
        items.append(
            make_item(
                "herd",
                f"{herd['farm_id']}/unmatched_tags",
                Decimal("0"),
                Decimal("1"),
                Decimal("1"),
                Decimal("0"),
                [],
                evidence,
                Said("formula.missing_tags", count=len(herd["missing_tags"])),
            )
        )
    return items


def _band_label(row: dict, unit: str) -> str:
    low, high = row.get("band_min"), row.get("band_max")
    if low is None and high is None:
        return "all"
    return f"{unit} {low or ''}-{high or ''}".strip()
