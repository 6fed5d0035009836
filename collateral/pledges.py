"""What is already pledged, and whether a new pledge or a claim would pledge it twice.

The 2025 rules on livestock and land collateral are written against the same asset being
pledged to two lenders. Land is compared by ground, not by parcel id: an operator can
import the same garden twice under two ids, and a borrower's drawn plot never has an id.
Two plots overlap when they share more than OVERLAP_MIN_HA *and* more than
OVERLAP_MIN_SHARE of the smaller one; below that it is a hand-drawn border, not a pledge.
Herds overlap when they are on the same farm and name a common category or tag.
"""

import json
from dataclasses import asdict, dataclass

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, select

from agri_common.wording import text
from bioassets import store as bio_store
from collateral.errors import Conflict
from collateral.tables import loans
from remote_sensing import store as rs_store
from remote_sensing.claims.plots import area_in_ha

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
    """Active loans with their pledged parcel ids (timber or carbon) and herds."""
    query = select(loans.c.loan_id, loans.c.parcel_ids, loans.c.herds, loans.c.carbon).where(
        loans.c.state == "active"
    )
    if except_loan is not None:
        query = query.where(loans.c.loan_id != except_loan)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:  # a stand's carbon and its timber are the same ground
        row["parcel_ids"] = pledged_parcel_ids(row)
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
    engine: Engine, loan_id: str | None, parcel_ids: list[str], herds: list[dict]
) -> None:
    """Refuse (DoublePledge) land or animals another active loan holds; ``loan_id`` is the
    loan being created or changed (its own pledges are not a conflict)."""
    others = active_pledges(engine, except_loan=loan_id)
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
