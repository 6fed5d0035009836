"""What is already pledged, and whether a new pledge or a claim would pledge it twice.

The 2025 rules on livestock and land collateral are written against the same asset being
pledged to two lenders. Land is compared by ground, not by parcel id: an operator can
import the same garden twice under two ids, and a borrower's drawn plot never has an id.
Two plots overlap when they share more than OVERLAP_MIN_HA *and* more than
OVERLAP_MIN_SHARE of the smaller one; below that it is a hand-drawn border, not a pledge.
Herds overlap when they are on the same farm and name a common category or tag; a
plant is pledged to one loan at a time.
"""

import json
from dataclasses import asdict, dataclass
from datetime import date
from typing import Literal

import shapely
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, select

from agri_common.wording import text
from bioassets import headcount
from bioassets import store as bio_store
from collateral.errors import Conflict, Invalid
from collateral.tables import loans
from remote_sensing import store as rs_store
from remote_sensing.claims.plots import area_in_ha
from solar import plants

OVERLAP_MIN_HA = 0.01
OVERLAP_MIN_SHARE = 0.02


@dataclass(frozen=True)
class Overlap:
    """Ground that a plot shares with something already pledged or claimed."""

    with_kind: str  # parcel | claim
    with_id: str
    loan_id: str | None
    overlap_ha: float
    share_of_plot: float  # of the plot being checked

    def as_json(self) -> dict:
        return {**asdict(self), "overlap_ha": round(self.overlap_ha, 4)}

    def sentence(self, locale: str = "en") -> str:
        return overlap_sentence(self.as_json(), locale)


def overlap_sentence(overlap: dict, locale: str) -> str:
    """An overlap (``Overlap.as_json``) in words, in ``locale``."""
    return text(
        "overlap.claim" if overlap["with_kind"] == "claim" else "overlap.parcel",
        locale,
        ha=f"{overlap['overlap_ha']:.2f}",
        share=f"{overlap['share_of_plot']:.0%}",
        id=repr(overlap["with_id"]),
        loan=repr(overlap["loan_id"]),
    )


class Herd(BaseModel):
    """A pledged herd: a farm and either whole categories or an explicit list of tags."""

    model_config = ConfigDict(extra="forbid")

    farm_id: str = Field(min_length=1, max_length=64)
    categories: list[str] | None = Field(default=None, examples=[["breeding_sow"]])
    tag_ids: list[str] | None = Field(default=None, max_length=100_000)

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = sorted(set(value) - set(headcount.CATEGORIES))
            if unknown or not value:
                raise ValueError(f"categories must be among {list(headcount.CATEGORIES)}")
        return value

    @model_validator(mode="after")
    def _one_way(self) -> "Herd":
        if self.categories is None and self.tag_ids is None:
            raise ValueError("a herd pledge needs categories or tag_ids")
        return self


class CarbonPledge(BaseModel):
    """The carbon of a forest parcel, pledged separately from its timber: the increment
    since ``baseline_date`` (as Sanming's carbon tickets count it) or the stock."""

    model_config = ConfigDict(extra="forbid")

    parcel_id: str = Field(min_length=1, max_length=64)
    basis: Literal["increment", "stock"] = "increment"
    baseline_date: date | None = Field(default=None, examples=["2021-01-01"])
    market: Literal["ccer", "fujian_ffcer", "sanming_ticket"] = "sanming_ticket"

    @model_validator(mode="after")
    def _baseline(self) -> "CarbonPledge":
        if self.basis == "increment" and self.baseline_date is None:
            raise ValueError("an increment pledge needs baseline_date")
        return self


class SolarPledge(BaseModel):
    """A rooftop plant pledged with the right to its electricity fees (电费收费权质押)."""

    model_config = ConfigDict(extra="forbid")

    plant_id: str = Field(min_length=1, max_length=64)


class DoublePledge(Conflict):
    """A pledge of land or animals that another active loan already holds; ``loan_id``
    names that loan."""

    def __init__(self, message: str, loan_id: str):
        super().__init__(message)
        self.loan_id = loan_id


def pledged_parcel_ids(loan: dict) -> list[str]:
    """Every parcel a loan pledges, for its timber or its carbon (the same ground)."""
    carbon = [c["parcel_id"] for c in loan.get("carbon") or []]
    return list(dict.fromkeys([*loan["parcel_ids"], *carbon]))


def active_pledges(engine: Engine, except_loan: str | None = None) -> list[dict]:
    """Active loans with their pledged parcel ids (timber or carbon), herds and plants."""
    query = select(
        loans.c.loan_id, loans.c.parcel_ids, loans.c.herds, loans.c.carbon, loans.c.solar
    ).where(loans.c.state == "active")
    if except_loan is not None:
        query = query.where(loans.c.loan_id != except_loan)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:  # a stand's carbon and its timber are the same ground
        row["parcel_ids"] = pledged_parcel_ids(row)
        row["solar"] = row["solar"] or []  # loans from before revision 0019: none
    return rows


def pledged_plots(
    engine: Engine, except_loan: str | None = None, pledges: list[dict] | None = None
) -> list[tuple[str, str, BaseGeometry]]:
    """(loan id, parcel id, WGS84 geometry) of every parcel pledged to an active loan
    (``pledges``: active_pledges already read)."""
    pledges = active_pledges(engine, except_loan) if pledges is None else pledges
    wanted = sorted({p for loan in pledges for p in loan["parcel_ids"]})
    parcels = rs_store.get_parcels(engine, wanted)
    return [
        (loan["loan_id"], pid, shape(json.loads(parcels[pid]["geometry_geojson"])))
        for loan in pledges
        for pid in loan["parcel_ids"]
        if pid in parcels
    ]


def overlaps(
    plot: BaseGeometry, others: list[tuple[str, str | None, str, BaseGeometry]]
) -> list[Overlap]:
    """The significant overlaps of ``plot`` with ``others`` ((kind, loan id, id, geometry))."""
    plot_ha = area_in_ha(plot)
    found = []
    tree = shapely.STRtree([geom for *_, geom in others])
    for index in tree.query(plot, predicate="intersects"):
        kind, loan_id, other_id, geom = others[int(index)]
        shared_ha = area_in_ha(shapely.intersection(plot, geom))
        smaller = min(plot_ha, area_in_ha(geom))
        if shared_ha > OVERLAP_MIN_HA and shared_ha > OVERLAP_MIN_SHARE * smaller:
            found.append(Overlap(kind, other_id, loan_id, shared_ha, shared_ha / plot_ha))
    return sorted(found, key=lambda o: -o.overlap_ha)


def parcel_pledge_overlaps(
    engine: Engine, geometry: BaseGeometry, except_loan: str | None = None
) -> list[Overlap]:
    """Overlaps of a plot with every parcel pledged to an active loan."""
    pledged = [
        ("parcel", loan, pid, geom) for loan, pid, geom in pledged_plots(engine, except_loan)
    ]
    return overlaps(geometry, pledged) if pledged else []


def check_not_pledged_elsewhere(
    engine: Engine,
    loan_id: str | None,
    parcel_ids: list[str],
    herds: list[dict],
    plant_ids: list[str] = (),
) -> None:
    """Refuse (DoublePledge) land, animals or plants another active loan holds; ``loan_id``
    is the loan being created or changed (its own pledges are not a conflict)."""
    others = active_pledges(engine, except_loan=loan_id)
    for plant_id in plant_ids:
        for other in others:
            if plant_id in {s["plant_id"] for s in other["solar"]}:
                raise DoublePledge(
                    f"plant {plant_id!r} is already pledged to active loan {other['loan_id']!r}",
                    other["loan_id"],
                )
    if parcel_ids:
        parcels = rs_store.get_parcels(engine, parcel_ids)
        pledged = [
            ("parcel", loan, pid, geom)
            for loan, pid, geom in pledged_plots(engine, loan_id, others)
        ]
        for pid in parcel_ids:
            if pid not in parcels or not pledged:
                continue
            found = overlaps(shape(json.loads(parcels[pid]["geometry_geojson"])), pledged)
            if found:
                o = found[0]
                raise DoublePledge(
                    f"parcel {pid!r} is already pledged: {o.overlap_ha:.2f} ha of it is parcel "
                    f"{o.with_id!r} of active loan {o.loan_id!r}",
                    o.loan_id,
                )
    for herd in herds:
        for other in others:
            for held in other["herds"]:
                shared = _shared_animals(engine, herd, held)
                if shared:
                    raise DoublePledge(
                        f"herd of farm {herd['farm_id']!r} is already pledged: {shared} "
                        f"belong to active loan {other['loan_id']!r}",
                        other["loan_id"],
                    )


def _shared_animals(engine: Engine, herd: dict, held: dict) -> str | None:
    """What two herd pledges of the same farm both claim, in words, or None. A pledge by
    category and one by tags meet on the tags of animals in those categories."""
    if herd["farm_id"] != held["farm_id"]:
        return None
    categories = set(herd.get("categories") or []) & set(held.get("categories") or [])
    if categories:
        return "the categories " + ", ".join(sorted(categories))
    tags = set(herd.get("tag_ids") or []) & set(held.get("tag_ids") or [])
    by_category = [(h, o) for h, o in ((herd, held), (held, herd)) if h.get("categories")]
    for with_categories, with_tags in by_category:
        if with_tags.get("tag_ids"):
            category_of = {
                a["tag_id"]: a["category"] for a in bio_store.farm_animals(engine, herd["farm_id"])
            }
            wanted = set(with_categories["categories"])
            tags |= {t for t in with_tags["tag_ids"] if category_of.get(t) in wanted}
    if tags:
        return f"{len(tags)} animals (e.g. tag {sorted(tags)[0]})"
    return None


def check_pledges(
    engine: Engine,
    parcel_ids: list[str],
    herds: list[Herd],
    loan_id: str | None = None,
    carbon: list[CarbonPledge] = (),
    solar: list[SolarPledge] = (),
) -> None:
    """Pledges name registered parcels, farms and plants, none twice, carbon only of
    forests, and nothing that another active loan holds (DoublePledge, HTTP 409, names that
    loan). A loan may pledge a forest's timber and its carbon: the valuation counts the
    stand once."""
    carbon_ids = [c.parcel_id for c in carbon]
    for i, parcel_id in enumerate(carbon_ids):
        parcel = rs_store.get_parcel(engine, parcel_id)
        if parcel is None or parcel["kind"] != "forest":
            what = "is not registered" if parcel is None else "is not a forest"
            raise Invalid(f"carbon.{i}.parcel_id", f"parcel {parcel_id!r} {what}")
    if len(set(carbon_ids)) != len(carbon_ids):
        raise Invalid("carbon", "a parcel's carbon is pledged twice")
    for i, parcel_id in enumerate(parcel_ids):
        if rs_store.get_parcel(engine, parcel_id) is None:
            raise Invalid(f"parcel_ids.{i}", f"parcel {parcel_id!r} is not registered")
    if len(set(parcel_ids)) != len(parcel_ids):
        raise Invalid("parcel_ids", "a parcel is pledged twice")
    farms = bio_store.farm_ids(engine)
    for i, herd in enumerate(herds):
        if herd.farm_id not in farms:
            raise Invalid(f"herds.{i}.farm_id", f"farm {herd.farm_id!r} is not registered")
    plant_ids = [s.plant_id for s in solar]
    for i, plant_id in enumerate(plant_ids):
        if plants.get_plant(engine, plant_id) is None:
            raise Invalid(f"solar.{i}.plant_id", f"plant {plant_id!r} is not registered")
    if len(set(plant_ids)) != len(plant_ids):
        raise Invalid("solar", "a plant is pledged twice")
    check_not_pledged_elsewhere(
        engine,
        loan_id,
        list(dict.fromkeys([*parcel_ids, *carbon_ids])),
        [h.model_dump(exclude_none=True) for h in herds],
        plant_ids,
    )
