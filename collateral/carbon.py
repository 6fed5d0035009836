"""Forest carbon as collateral: the carbon half of the valuation arithmetic (pure, Decimal).

The IPCC biomass-expansion method that China's forest carbon methodologies (CCER forest
management and afforestation) use: t CO2e = stem volume x basic wood density x biomass
expansion factor x (1 + root-to-shoot ratio) x carbon fraction x 44/12. Parameters,
prices and policy come from the ``carbon`` table in force (collateral/defaults/
carbon-2020.yaml, illustrative); the rules for items, haircuts and evidence are
valuation.py's (collateral.items).
"""

from datetime import datetime
from decimal import Decimal

from agri_common.times import parse_time
from agri_common.wording import Said
from collateral import prices
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

CO2_PER_C = Decimal(44) / Decimal(12)
TCO2 = Decimal("0.001")  # tonnes of CO2e are given to the kilogram
# Species groups whose carbon this method does not value, and why (a documented refusal).
CARBON_REFUSED = {
    "moso_bamboo": "Moso bamboo has no stand volume for the biomass-expansion method; its "
    "own methodology (CCER bamboo afforestation and management, culm counts and biomass "
    "equations) is not implemented, so its carbon is valued at zero",
}
CARBON_MARKETS = ("ccer", "fujian_ffcer", "sanming_ticket")


class CarbonError(ValueError):
    """A parcel whose carbon cannot be accounted (no volume, unknown species): the reason."""


def carbon_factor(table: dict, species: str) -> tuple[Decimal, dict]:
    """t CO2e per m3 of stem volume: density x BEF x (1 + R) x CF x 44/12, and its parts."""
    if species in CARBON_REFUSED:
        raise CarbonError(CARBON_REFUSED[species])
    try:
        parts = {
            name: prices.value(table, name, species)
            for name in (
                "wood_density_t_per_m3",
                "biomass_expansion_factor",
                "root_shoot_ratio",
                "carbon_fraction",
            )
        }
    except LookupError:
        raise CarbonError(
            f"species group {species!r} has no carbon parameters in table {table['version']!r}"
        ) from None
    factor = (
        parts["wood_density_t_per_m3"]
        * parts["biomass_expansion_factor"]
        * (1 + parts["root_shoot_ratio"])
        * parts["carbon_fraction"]
        * CO2_PER_C
    )
    return factor, {k: str(v) for k, v in parts.items()}


def carbon_account(parcel: dict, table: dict, as_of: datetime, since: datetime | None) -> dict:
    """A forest parcel's carbon at ``as_of``: stock, annual sequestration, the increment
    since ``since`` and the carbon reversed by open disturbances, with every factor.

    stock = volume x (area - disturbed) x factor; reversed = volume x disturbed x factor
    (a clear-cut returns that carbon to the air); annual = growth(species, age class) x
    (area - disturbed) x factor x growth scale, the scale being the health index clamped
    to [floor, 1] (a canopy below its usual state grows less); increment = annual x the
    years from ``since`` to ``as_of``. Raises CarbonError with the reason when the parcel
    cannot be accounted."""
    attributes = parcel["attributes"]
    species = str(attributes.get("species_group") or "")
    if not species:
        raise CarbonError("no species_group in the parcel's inventory attributes")
    volume = attributes.get("stand_volume_m3_per_ha")
    if volume is None:
        raise CarbonError("no stand_volume_m3_per_ha in the parcel's inventory attributes")
    factor, parts = carbon_factor(table, species)
    age_class = str(attributes.get("age_class") or "")
    try:
        growth = prices.value(table, "volume_growth_m3_per_ha_yr", f"{species}:{age_class}")
    except LookupError:
        raise CarbonError(
            f"no volume growth for {species} of age class {age_class or '(none)'}"
        ) from None
    area = dec(parcel["area_ha"])
    disturbed, notes = disturbed_area(parcel, area)
    volume_m3 = dec(volume, Decimal("0.01"))
    floor = prices.value(table, "carbon_growth_floor", "*")
    health = parcel.get("health_index")
    scale = Decimal("1") if health is None else min(Decimal("1"), max(floor, dec(health)))
    stock = (volume_m3 * (area - disturbed) * factor).quantize(TCO2)
    reversed_t = (volume_m3 * disturbed * factor).quantize(TCO2)
    annual = (growth * (area - disturbed) * factor * scale).quantize(TCO2)
    years = None
    increment = None
    if since is not None:
        years = (Decimal((as_of - since).days) / Decimal("365.25")).quantize(RATIO)
        increment = (annual * max(years, Decimal(0))).quantize(TCO2)
    steps = [
        Said(
            "formula.carbon_account",
            density=parts["wood_density_t_per_m3"],
            bef=parts["biomass_expansion_factor"],
            root_shoot=parts["root_shoot_ratio"],
            fraction=parts["carbon_fraction"],
            factor=factor.quantize(Decimal("0.0001")),
            volume=volume_m3,
            area=area,
            disturbed=disturbed,
            stock=stock,
            growth=growth,
            scale=scale,
            annual=annual,
        )
    ]
    if years is not None:
        steps.append(
            Said("formula.carbon_increment", annual=annual, years=years, increment=increment)
        )
    if reversed_t:
        steps.append(Said("formula.carbon_reversed", reversed=reversed_t))
    return {
        "parcel_id": parcel["parcel_id"],
        "as_of": as_of.isoformat(),
        "since": since.isoformat() if since else None,
        "species_group": species,
        "age_class": age_class,
        "area_ha": str(area),
        "disturbed_ha": str(disturbed),
        "stand_volume_m3_per_ha": str(volume_m3),
        "volume_growth_m3_per_ha_yr": str(growth),
        "factors": {**parts, "co2_per_c": "44/12"},
        "t_co2e_per_m3": str(factor.quantize(Decimal("0.000001"))),
        "growth_scale": str(scale),
        "health_index": health,
        "stock_t_co2e": str(stock),
        "reversed_t_co2e": str(reversed_t),
        "annual_t_co2e": str(annual),
        "years": None if years is None else str(years),
        "increment_t_co2e": None if increment is None else str(increment),
        "table_version": table["version"],
        "notes": notes,
        "formula": "; ".join(steps),
        "formula_coded": [s.coded() for s in steps],
    }


def carbon_item(
    pledge: dict,
    table: dict | None,
    as_of: datetime,
    timber: dict | None,
    policy: dict | None = None,
) -> dict:
    """The ``carbon_sink`` item of a carbon pledge ({parcel, basis, baseline_date, market}).

    The quantity is the increment since the pledge's baseline date, or the stock, as the
    pledge says; value = quantity x the market's price; eligible = value x (1 - haircut).
    Timber and carbon of the same stand are never counted twice: a harvest would destroy
    both, so when the loan also pledges the parcel's timber (``timber``, its item), the
    carbon item counts only what the carbon is worth beyond the timber,
    max(0, carbon value - timber value), and the pair is worth the larger of the two.
    An account that cannot be made (no stand volume, unknown species, no carbon table) is
    an item of value zero with its reason: it never stops the valuation.

    With ``policy``, the carbon follows the evidence rules of the land it stands on: imagery
    too sparse or too old, or a drop the profile could not confirm, adds the policy's
    stale-imagery haircut and reduces the confidence, as for the stand's timber (a stand cut
    since its last clear image holds neither). Without it (snapshots valued before rules
    2026.12.4), the market's haircut alone."""
    parcel = pledge["parcel"]
    ref = parcel["parcel_id"]
    base = {"parcel_id": ref, "basis": pledge["basis"], "market": pledge["market"]}
    if table is None:
        return _zero_carbon(ref, base, "no carbon table in force: import one (agri prices import)")
    since = parse_time(pledge["baseline_date"]) if pledge.get("baseline_date") else None
    try:
        if pledge["basis"] == "increment" and since is None:
            raise CarbonError("an increment pledge needs its baseline_date")
        if prices.value(table, "carbon_eligible_basis", pledge["basis"]) != 1:
            raise CarbonError(f"policy does not accept {pledge['basis']} as carbon collateral")
        account = carbon_account(parcel, table, as_of, since)
        price = prices.value(table, "carbon_price_cny_per_t", pledge["market"])
        haircut = prices.value(table, "carbon_haircut", pledge["market"])
    except (CarbonError, LookupError) as exc:
        return _zero_carbon(ref, base, str(exc).strip("'\""))
    key = "increment_t_co2e" if pledge["basis"] == "increment" else "stock_t_co2e"
    quantity = Decimal(account[key])
    carbon_value = quantity * price
    value, overlap = carbon_value, []
    if timber is not None:
        timber_value = Decimal(timber["value_cny"])
        value = max(Decimal(0), carbon_value - timber_value)
        overlap = [
            Said(
                "formula.carbon_timber",
                timber=fmt(timber_value),
                carbon=fmt(money(carbon_value)),
                value=fmt(money(value)),
            )
        ]
    evidence = {
        **base,
        **parcel_summary(parcel),
        "quantity_t_co2e": str(quantity),
        "price_cny_per_t": str(price),
        "carbon": account,
        "timber_also_pledged": timber is not None,
    }
    formula = [
        *(Said.of(step) for step in account["formula_coded"]),
        Said(
            "formula.carbon_pledged",
            basis=pledge["basis"],
            quantity=quantity,
            price=fmt(price),
            market=pledge["market"],
            value=fmt(money(carbon_value)),
        ),
        *overlap,
    ]
    stale, extra = [], Decimal(0)
    if policy is not None:
        where = where_of(parcel)
        stale = imagery_staleness(parcel, policy, as_of, where)
        if stale:
            extra = prices.value(policy, "stale_haircut", "imagery", where)
    total = min(Decimal(1), haircut + extra)
    return make_item("carbon_sink", ref, value, total, haircut, extra, stale, evidence, formula)


def _zero_carbon(ref: str, base: dict, reason: str) -> dict:
    evidence = {**base, "quantity_t_co2e": "0", "notes": [reason]}
    formula = Said("formula.carbon_none", parcel=ref, reason=reason)
    return make_item(
        "carbon_sink", ref, Decimal(0), Decimal(0), Decimal(0), Decimal(0), [], evidence, formula
    )
