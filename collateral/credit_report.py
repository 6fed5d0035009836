"""A valuation as a PDF for the credit file, in Chinese or English.

Rendered on the server from HTML (Jinja2 template ``templates/valuation_report.html``)
by WeasyPrint with Debian's Noto CJK fonts, so that the document a credit committee files
is the same whoever prints it. Everything in it comes from the stored valuation (the
figures ``verify`` recomputes), the pledged parcels' outlines and NDVI profiles as of the
valuation, and the catalogues of agri_common.wording (one wording for page and paper).
"""

import base64
import html
import json
import tempfile
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

import jinja2
from sqlalchemy import Engine

from agri_common.times import parse_time
from agri_common.wording import amount, catalogue, text, translate
from remote_sensing import store as rs_store
from remote_sensing.profiles.profile_update import parcel_profile
from remote_sensing.rendering.profile_chart import render_profile_png

LAND_KINDS = ("tea_garden", "forest", "carbon_sink")
MAP_SIZE = (480, 300)  # points


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("valuation_report.html")


def report_html(
    valuation: dict, loan: dict, parcels: dict[str, dict], charts: dict[str, str], locale: str
) -> str:
    """The report's HTML: data in, text out (no I/O), so a test can read it too."""
    words = catalogue(locale)

    def t(code: str, **params) -> str:
        return text(code, locale, **params)

    def word(prefix: str, value) -> str:
        return words.get(f"{prefix}.{value}", str(value))

    def exact(value) -> str:
        return "-" if value is None else f"{Decimal(value):,.2f}"

    items = []
    for item in valuation["items"]:
        e = item["evidence"]
        haircut = e.get("haircut", {})
        stated = haircut.get("reasons", [])
        forms = haircut.get("reasons_coded") or [None] * len(stated)  # older: uncoded
        reasons = [translate(r, c, locale) for r, c in zip(stated, forms, strict=True)]
        unverified = [
            {"tag_id": u["tag_id"], "reason": translate(u["reason"], u.get("reason_coded"), locale)}
            for u in e.get("unverified", [])
        ]
        steps = item.get("formula_coded") or []
        formula = (
            t("ui.reason_sep").join(t(s["code"], **s["params"]) for s in steps)
            if steps and all(steps)
            else item["formula"]
        )
        items.append(
            {
                **item,
                "formula": formula,
                "kind_word": word("kind", item["kind"]),
                "category_word": word("category", e["category"]) if "category" in e else None,
                "reasons": reasons,
                "unverified": unverified,
                "evidence_date": (e.get("latest_clear_image") or e.get("last_reading_at") or "")[
                    :10
                ],
            }
        )
    land = sorted({i["ref"] for i in valuation["items"] if i["kind"] in LAND_KINDS})
    return _template().render(
        t=t,
        word=word,
        exact=exact,
        amount=lambda v: amount(v, locale),
        lang=locale,
        v=valuation,
        ltv_formula=translate(valuation["formula"], valuation.get("formula_coded"), locale),
        loan=loan,
        items=items,
        herds=[i for i in items if i["kind"] == "herd" and "registered" in i["evidence"]],
        map_svg=parcels_svg([parcels[p] for p in land if p in parcels]),
        charts=[(p, charts[p]) for p in land if p in charts],
        generated_at=datetime.now().astimezone().isoformat(timespec="seconds"),
    )


def parcels_svg(parcels: list[dict]) -> str:
    """The pledged parcels' outlines as an SVG map (no tile server: the credit file must
    print offline), scaled to fit, north up, with their ids."""
    rings = []
    for p in parcels:
        geometry = json.loads(p["geometry_geojson"])
        polygons = geometry["coordinates"]
        if geometry["type"] == "Polygon":
            polygons = [polygons]
        rings.append((p["parcel_id"], p["kind"], [poly[0] for poly in polygons]))
    points = [pt for _, _, polys in rings for ring in polys for pt in ring]
    if not points:
        return ""
    west, east = min(x for x, _ in points), max(x for x, _ in points)
    south, north = min(y for _, y in points), max(y for _, y in points)
    width, height = MAP_SIZE
    scale = min((width - 20) / max(east - west, 1e-9), (height - 20) / max(north - south, 1e-9))

    def xy(lon: float, lat: float) -> str:
        return f"{10 + (lon - west) * scale:.1f},{height - 10 - (lat - south) * scale:.1f}"

    colours = {"tea_garden": "#2e7d32", "forest": "#1b5e20"}
    shapes = []
    for parcel_id, kind, polys in rings:
        for ring in polys:
            shapes.append(
                f'<polygon points="{" ".join(xy(x, y) for x, y in ring)}" '
                f'fill="{colours.get(kind, "#607d8b")}" fill-opacity="0.35" stroke="#263238"/>'
            )
        lon = sum(x for x, _ in polys[0]) / len(polys[0])
        lat = sum(y for _, y in polys[0]) / len(polys[0])
        x, y = xy(lon, lat).split(",")
        shapes.append(
            f'<text x="{x}" y="{y}" font-size="9" text-anchor="middle">'
            f"{html.escape(parcel_id)}</text>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(shapes)}</svg>'
    )


def valuation_pdf(engine: Engine, valuation: dict, loan: dict, locale: str) -> bytes:
    """The PDF bytes of a stored valuation (``loans.document`` form) in ``locale``."""
    import weasyprint  # a heavy import (Pango), paid by the report only

    as_of = parse_time(valuation["as_of"])
    land = sorted({i["ref"] for i in valuation["items"] if i["kind"] in LAND_KINDS})
    parcels = rs_store.get_parcels(engine, land)
    charts = {}
    with tempfile.TemporaryDirectory() as folder:
        for parcel_id in parcels:
            profile = parcel_profile(engine, parcel_id, as_of)
            png = render_profile_png(profile, Path(folder) / f"{parcel_id}.png", locale)
            charts[parcel_id] = "data:image/png;base64," + base64.b64encode(
                png.read_bytes()
            ).decode("ascii")
    page = report_html(valuation, loan, parcels, charts, locale)
    return weasyprint.HTML(string=page).write_pdf()
