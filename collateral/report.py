"""A valuation as text a loan officer reads: each item, its evidence, the LTV and status."""

from decimal import Decimal

STATUS_WORDS = {
    "ok": "OK",
    "watch": "WATCH - review the collateral",
    "margin_call": "MARGIN CALL - collateral no longer covers the loan",
}


def cny(value: str | None) -> str:
    return "-" if value is None else f"{Decimal(value):,.2f}"


def valuation_text(doc: dict, borrower: str | None = None) -> str:
    lines = [
        f"Loan {doc['loan_id']}"
        + (f" ({borrower})" if borrower else "")
        + f" - valuation {doc['valuation_id']} as of {doc['as_of'][:16].replace('T', ' ')} UTC",
        f"  principal outstanding {cny(doc['principal_cny']):>16} CNY",
        f"  {'item':<28} {'value CNY':>14} {'haircut':>8} {'eligible CNY':>14}  evidence",
    ]
    for item in doc["items"]:
        lines.append(
            f"  {item['kind'] + ' ' + item['ref']:<28} {cny(item['value_cny']):>14} "
            f"{float(item['haircut']):>7.0%} {cny(item['eligible_value_cny']):>14}  "
            f"{_evidence(item)}"
        )
    lines += [
        f"  {'total':<28} {cny(doc['collateral_value_cny']):>14} {'':>8} "
        f"{cny(doc['eligible_value_cny']):>14}",
        f"  LTV {doc['ltv'] or 'n/a'} -> {STATUS_WORDS[doc['status']]}"
        f"  (watch at {doc['thresholds']['watch']}, margin call at "
        f"{doc['thresholds']['margin_call']})",
    ]
    cover = doc.get("solar")
    if cover:
        lines.append(
            f"  solar {cover['kwp']} kWp: first-year net fees P50 "
            f"{cny(cover['first_year_net_p50_cny'])} / P90 {cny(cover['first_year_net_p90_cny'])}"
            f" CNY against debt service {cny(cover['annual_debt_service_cny'])} CNY a year -> "
            f"DSCR {cover['dscr_p50'] or 'n/a'} (P50) / {cover['dscr_p90'] or 'n/a'} (P90)"
        )
    changes = doc.get("changes")
    if changes:
        lines.append(
            f"  since {changes['previous_valuation_id']}: eligible "
            f"{cny(changes['eligible_value_cny']['from'])} -> "
            f"{cny(changes['eligible_value_cny']['to'])}, status {changes['status']['from']} "
            f"-> {changes['status']['to']}"
        )
    if doc.get("illustrative_tables"):
        lines.append("  (prices and policy are the shipped illustrative tables)")
    return "\n".join(lines)


def _evidence(item: dict) -> str:
    e = item["evidence"]
    notes = []
    if item["kind"] == "herd":
        notes.append(f"{e['verified']} of {e['registered']} verified" if "verified" in e else "")
        if e.get("unverified"):
            kinds: dict[str, int] = {}
            for u in e["unverified"]:
                kind = _reason_kind(u["reason"])
                kinds[kind] = kinds.get(kind, 0) + 1
            notes.append("unverified: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    elif item["kind"] == "carbon_sink":
        notes.append(f"{e['quantity_t_co2e']} t CO2e {e['basis']} ({e['market']})")
        account = e.get("carbon")
        if account and Decimal(account["reversed_t_co2e"]) > 0:
            notes.append(f"{account['reversed_t_co2e']} t reversed by a disturbance")
        notes += e.get("notes", [])
    elif item["kind"] == "solar_plant":
        notes.append(
            f"{e['kwp']} kWp, {e['record_days']} days on record, first year "
            f"{e['first_year_kwh_p50']} kWh (P50) over {e['years']} years"
        )
        if e.get("last_30_expected_kwh"):
            notes.append(
                f"last 30 days {e['last_30_energy_kwh']:.0f} of {e['last_30_expected_kwh']:.0f}"
                " kWh expected"
            )
        notes += [f"open alert {a}" for a in e.get("open_alerts", [])]
    elif item["kind"] == "solar_equipment":
        notes.append(f"age {e['age_years']} years")
    else:
        notes.append(f"clear image {(e.get('latest_clear_image') or 'none')[:10]}")
        if item["kind"] == "tea_garden":
            notes.append(f"condition {e['condition_factor']}")
        if Decimal(e.get("disturbed_ha", "0")) > 0:
            notes.append(f"disturbed {e['disturbed_ha']} ha")
    if item["confidence"] != "high":
        notes.append("confidence reduced: " + "; ".join(e["haircut"]["reasons"]))
    return ", ".join(n for n in notes if n)


def _reason_kind(reason: str) -> str:
    """A short family name for an unverified animal's reason (the full text is in the JSON)."""
    for start, kind in (
        ("not seen", "not seen in 24 h"),
        ("fever", "with fever"),
        ("last position", "outside the fence"),
        ("no weight", "not weighed"),
        ("not an animal", "not on the farm"),
    ):
        if reason.startswith(start):
            return kind
    return reason[:30]


def claim_text(claim: dict) -> str:
    """A claim's report as an officer reads it: who says what about how much land, the
    verdict in words, the flags, and the indicative value with its formula."""
    report = claim["report"]
    lines = [
        f"{claim['owner'] or 'A borrower'} says {claim['area_ha']:.2f} ha are a "
        f"{claim['kind'].replace('_', ' ')} (claim {claim['claim_id']}, drawn in "
        f"{claim['crs']}, {claim['state']}):",
        f"  {report['summary']}",
        *(f"  ! {flag}" for flag in report["flags"]),
    ]
    value = report.get("indicative_value")
    if value and value.get("value_cny"):
        lines.append(
            f"  indicative value {cny(value['value_cny'])} CNY, eligible "
            f"{cny(value['eligible_value_cny'])} CNY ({value['formula']})"
        )
    elif value:
        lines.append(f"  no indicative value: {value['reason']}")
    if claim["state"] == "open":
        lines.append(
            "  `agri claims accept` makes it a parcel"
            if report["verdict"] == "consistent"
            else "  only a consistent claim becomes a parcel"
        )
    return "\n".join(lines)
