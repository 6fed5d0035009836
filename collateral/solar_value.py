"""A rooftop plant as collateral: the present value of its electricity fees (the right to
them is pledged, 电费收费权质押) and its equipment's residual value, with P50 and P90
figures, and the loan's debt-service cover ratio from the same cash flows. Pure: a
plant's record (solar.record.PlantRecord) and the solar table in force in, items out.
Money is Decimal; the formula is printed with its numbers.

- First-year energy E1 (P50): the model's typical year for the plant x its own record's
  measured-to-modelled ratio over the year before as_of (at least ``min_record_days``
  days; with fewer, the model alone and the weak-evidence haircut). P90: E1 x p90_factor.
- Year t (1..N): E1 x (1 - degradation)^(t-1) x availability, paid at the scheme's price
  for the share fed in and the residential price for the self-consumed share, less O&M
  and insurance per kWp. N: the whole years left of the scheme (from grid connection), or
  of the loan's term where it is shorter.
- Fee receivable = sum of year t's net income / (1 + discount rate)^t.
- Equipment = kWp x cost new per kWp x (1 - age / life), at least 0.
- DSCR = the pledged plants' first-year net income / the loan's annual debt service (an
  annuity of the principal over its term at its rate, monthly), at P50 and at P90.
"""

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from agri_common.wording import Said
from collateral import prices
from collateral.items import RATIO, dec, fmt, make_item, money

# Alerts that question what the record says (the plant may not be producing at all).
WEAK_EVIDENCE_ALERTS = (
    "solar_offline",
    "solar_zero_output",
    "solar_counter_fault",
    "solar_inverter_swapped",
)
KWH = Decimal("0.1")


def _years_between(start: date, end: date) -> Decimal:
    return Decimal((end - start).days) / Decimal("365.25")


def first_year_kwh(record: dict, table: dict) -> tuple[Decimal, bool]:
    """(E1 at P50 in kWh, whether the plant's own record set it)."""
    typical = dec(record["typical_year_kwh"], KWH)
    enough = record["record_days"] >= int(prices.value(table, "solar_value", "min_record_days"))
    if enough and record["modelled_kwh"] > 0:
        ratio = (dec(record["energy_kwh"], KWH) / dec(record["modelled_kwh"], KWH)).quantize(RATIO)
        return (typical * ratio).quantize(KWH, rounding=ROUND_HALF_UP), True
    return typical, False


def cash_flows(record: dict, table: dict, years: int, energy_kwh: Decimal) -> list[Decimal]:
    """Each year's net fee income (CNY) for ``years`` years from first-year energy."""
    v = lambda key: prices.value(table, "solar_value", key)  # noqa: E731
    price = prices.value(table, "solar_tariff", record["tariff"])
    own = v("self_consumed_share")
    per_kwh = (1 - own) * price + own * v("residential_price_cny_per_kwh")
    kwp = dec(record["kwp"], KWH)
    costs = kwp * (v("om_cny_per_kwp_yr") + v("insurance_cny_per_kwp_yr"))
    degradation = _degradation(record, table)
    availability = (
        dec(record["availability"], RATIO)
        if record["availability"] is not None
        else v("availability_default")
    )
    out = []
    for t in range(1, years + 1):
        energy = energy_kwh * (1 - degradation) ** (t - 1) * availability
        out.append(money(energy * per_kwh - costs))
    return out


def _degradation(record: dict, table: dict) -> Decimal:
    measured = record["degradation_pct_per_year"]
    pct = (
        dec(max(measured, 0.0), RATIO)
        if measured is not None
        else prices.value(table, "solar_value", "degradation_pct_per_yr")
    )
    return pct / 100


def present_value(flows: list[Decimal], rate: Decimal) -> Decimal:
    return money(sum((f / (1 + rate) ** t for t, f in enumerate(flows, 1)), Decimal("0")))


def years_left(record: dict, table: dict, loan: dict, as_of: datetime) -> int:
    """Whole years left of the fee scheme, or of the loan's term where shorter."""
    scheme = prices.value(table, "solar_tariff_years", record["tariff"])
    connected = date.fromisoformat(record["grid_connected"])
    left = scheme - _years_between(connected, as_of.date())
    if loan.get("term_months") and loan.get("start"):
        term = Decimal(loan["term_months"]) / 12
        left = min(left, term - _years_between(date.fromisoformat(loan["start"]), as_of.date()))
    return max(int(left), 0)


def plant_items(pledge: dict, table: dict, loan: dict, as_of: datetime) -> list[dict]:
    """The fee receivable's item and the equipment's, for one pledged plant (its record
    in ``pledge["record"]``)."""
    record = pledge["record"]
    v = lambda key: prices.value(table, "solar_value", key)  # noqa: E731
    haircut = lambda key: prices.value(table, "solar_haircut", key)  # noqa: E731
    e1, own_record = first_year_kwh(record, table)
    years = years_left(record, table, loan, as_of)
    rate = v("discount_rate")
    p50 = cash_flows(record, table, years, e1)
    p90 = cash_flows(record, table, years, (e1 * v("p90_factor")).quantize(KWH))
    fees_p50, fees_p90 = present_value(p50, rate), present_value(p90, rate)
    weak = [Said("stale.solar_short_record", days=record["record_days"])] if not own_record else []
    weak += [
        Said("stale.solar_alert", kind=kind)
        for kind in record["open_alerts"]
        if kind in WEAK_EVIDENCE_ALERTS
    ]
    extra = haircut("weak_evidence") if weak else Decimal("0")
    evidence = {
        "plant_id": record["plant_id"],
        "kwp": str(dec(record["kwp"], KWH)),
        "tariff": record["tariff"],
        "first_year_kwh_p50": str(e1),
        "first_year_kwh_p90": str((e1 * v("p90_factor")).quantize(KWH)),
        "record_days": record["record_days"],
        "years": years,
        "fees_p50_cny": str(fees_p50),
        "fees_p90_cny": str(fees_p90),
        "first_year_net_p50_cny": str(p50[0] if p50 else Decimal("0.00")),
        "first_year_net_p90_cny": str(p90[0] if p90 else Decimal("0.00")),
        "last_30_energy_kwh": record["last_30_energy_kwh"],
        "last_30_expected_kwh": record["last_30_expected_kwh"],
        "open_alerts": record["open_alerts"],
    }
    fees = make_item(
        "solar_plant",
        record["plant_id"],
        fees_p50,
        haircut("fees") + extra,
        haircut("fees"),
        extra,
        weak,
        evidence,
        Said(
            "formula.solar_fees",
            e1=fmt(e1),
            source="record" if own_record else "model",
            years=years,
            price=prices.value(table, "solar_tariff", record["tariff"]),
            rate=rate,
            p50=fmt(fees_p50),
            p90=fmt(fees_p90),
        ),
    )
    cost = dec(record["kwp"], KWH) * v("equipment_cny_per_kwp")
    age = _years_between(date.fromisoformat(record["commissioned"]), as_of.date())
    left = max(Decimal("0"), 1 - age / v("equipment_life_years")).quantize(RATIO)
    equipment = make_item(
        "solar_equipment",
        record["plant_id"],
        cost * left,
        haircut("equipment"),
        haircut("equipment"),
        Decimal("0"),
        [],
        {"plant_id": record["plant_id"], "age_years": str(age.quantize(Decimal("0.1")))},
        Said("formula.solar_equipment", cost=fmt(money(cost)), left=left),
    )
    return [fees, equipment]


def debt_service(loan: dict) -> Decimal | None:
    """The loan's annual debt service: a monthly annuity of the principal over its term."""
    if not loan.get("term_months") or loan.get("annual_rate") is None:
        return None
    principal, n = Decimal(loan["principal_cny"]), int(loan["term_months"])
    monthly = Decimal(loan["annual_rate"]) / 12
    payment = principal / n if monthly == 0 else principal * monthly / (1 - (1 + monthly) ** -n)
    return money(payment * 12)


def cover(items: list[dict], loan: dict) -> dict | None:
    """The loan's DSCR at P50 and P90 from its plants' first-year net income; None without
    plants."""
    plants = [i for i in items if i["kind"] == "solar_plant"]
    if not plants:
        return None
    income = {
        q: sum((Decimal(i["evidence"][f"first_year_net_{q}_cny"]) for i in plants), Decimal("0"))
        for q in ("p50", "p90")
    }
    service = debt_service(loan)
    ratio = lambda x: None if not service else str((x / service).quantize(Decimal("0.01")))  # noqa: E731
    return {
        "kwp": str(sum((Decimal(i["evidence"]["kwp"]) for i in plants), Decimal("0"))),
        "first_year_net_p50_cny": str(income["p50"]),
        "first_year_net_p90_cny": str(income["p90"]),
        "annual_debt_service_cny": None if service is None else str(service),
        "dscr_p50": ratio(income["p50"]),
        "dscr_p90": ratio(income["p90"]),
    }
