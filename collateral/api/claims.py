"""Claims: a borrower's plot submitted, verified and accepted. Officers see their branch's."""

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime

from agri_common.rows import jsonable
from agri_common.wording import Said
from collateral import claims
from collateral.api import examples, models
from collateral.api.examples import CONFLICT
from collateral.api.limits import bounded_body
from collateral.api.security import LENDING, EngineDep, request_locale
from collateral.auth import Principal
from collateral.claim_report import claim_words
from collateral.errors import NotFound
from remote_sensing.claims.plots import COORDINATE_SYSTEMS, MAX_SUBMISSION_BYTES

router = APIRouter(responses=examples.PROBLEMS)
Lender = Annotated[Principal, Depends(LENDING)]

# A file's content type -> the plot reader's format (`format=` overrides it).
CONTENT_TYPES = {
    "application/geo+json": "geojson",
    "application/vnd.google-earth.kml+xml": "kml",
    "application/vnd.google-earth.kmz": "kmz",
    "application/zip": "shapefile",
    "application/x-zip-compressed": "shapefile",
    "text/plain": "coordinates",
    "text/csv": "coordinates",
}
ENVELOPE_FIELDS = ("kind", "crs", "owner", "branch", "attributes", "as_of", "geometry")


def _visible(principal: Principal, claim: dict) -> dict:
    if not principal.sees_branch(claim["branch"]):
        raise NotFound(Said("problem.not_found", what="claim", id=repr(claim["claim_id"])))
    return claim


def _out(claim: dict, request: Request) -> dict:
    """The claim with its report's sentences also in the request's language (``words``;
    the report itself keeps them in English)."""
    out = jsonable(claim)
    if out.get("report"):
        locale = request_locale(request)
        out["report"] = {
            **out["report"],
            "words": {"locale": locale, **claim_words(out["report"], locale)},
        }
    return out


@router.post(
    "/claims",
    status_code=201,
    tags=["claims"],
    summary="Submit a plot and what the borrower says it is; returns the verification report",
    response_model=models.Claim,
    description=(
        "Either a JSON envelope (`application/json`: kind, crs, owner, attributes, as_of and "
        "`geometry`, a GeoJSON geometry, feature or collection), or the file itself as the "
        "body (GeoJSON, KML, KMZ, a zipped Shapefile, or lon,lat lines) with `kind` and `crs` "
        "as query parameters. `crs` is the system the plot was drawn in: gcj02 for AMap and "
        "Tencent, bd09 for Baidu, wgs84 for GPS, cgcs2000."
    ),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": {"type": "object"}},
                **{t: {"schema": {"type": "string", "format": "binary"}} for t in CONTENT_TYPES},
            }
        }
    },
)
async def submit_claim(
    request: Request,
    engine: EngineDep,
    principal: Lender,
    kind: Annotated[str | None, Query(description="tea_garden or forest")] = None,
    crs: Annotated[str | None, Query(description=", ".join(COORDINATE_SYSTEMS))] = None,
    owner: Annotated[str | None, Query(max_length=200)] = None,
    branch: Annotated[str | None, Query(max_length=64)] = None,
    file_format: Annotated[
        str | None, Query(alias="format", description="overrides the content type")
    ] = None,
    as_of: Annotated[AwareDatetime | None, Query()] = None,
    attributes_json: Annotated[
        str | None,
        Query(alias="attributes", description='a JSON object, e.g. {"planted_year": 2010}'),
    ] = None,
) -> dict:
    body = await bounded_body(request, MAX_SUBMISSION_BYTES)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields = {"kind": kind, "crs": crs, "owner": owner, "branch": branch, "as_of": as_of}
    attributes = _attributes(attributes_json)
    if content_type == "application/json" and not file_format:
        envelope = _envelope(body)
        fields.update({k: envelope.get(k) or fields.get(k) for k in fields})
        attributes = envelope.get("attributes") or attributes
        data, fmt = json.dumps(envelope.get("geometry")).encode(), "geojson"
    else:
        fmt = file_format or CONTENT_TYPES.get(content_type)
        if fmt is None:
            raise claims.ClaimRefused(
                f"content type {content_type or 'none'!r} is not a plot file: send one of "
                f"{', '.join(CONTENT_TYPES)} or application/json, or say format="
            )
        data = body
    if not fields["kind"] or not fields["crs"]:
        raise claims.ClaimRefused("say the claim's kind and the crs it was drawn in")
    claim_branch = principal.branch if principal.role == "loan_officer" else fields["branch"]
    if fields["branch"] and fields["branch"] != claim_branch:
        raise claims.ClaimRefused(
            f"a loan officer of {principal.branch} cannot submit claims of {fields['branch']}"
        )
    as_of_value = fields["as_of"]
    if isinstance(as_of_value, str):
        as_of_value = _time(as_of_value)
    submission = claims.Submission(
        fields["kind"], fields["crs"], fields["owner"], claim_branch, attributes, as_of_value
    )
    settings = request.app.state.settings
    claim = claims.submit(
        engine,
        data,
        fmt,
        submission,
        settings.claim_max_ha,
        claims.catalogue_of(settings),
        settings.data_dir,
    )
    request.state.audit_subject = claim["claim_id"]
    return _out(claim, request)


def _attributes(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise claims.ClaimRefused("attributes must be a JSON object")
    return value


def _envelope(body: bytes) -> dict:
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise claims.ClaimRefused(f"the body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or "geometry" not in envelope:
        raise claims.ClaimRefused("a JSON claim needs 'geometry' (GeoJSON), 'kind' and 'crs'")
    unknown = sorted(set(envelope) - set(ENVELOPE_FIELDS))
    if unknown:
        raise claims.ClaimRefused(f"unknown fields {unknown}; expected {list(ENVELOPE_FIELDS)}")
    if not isinstance(envelope.get("attributes") or {}, dict):
        raise claims.ClaimRefused("'attributes' must be an object")
    return envelope


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise claims.ClaimRefused(f"as_of {text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise claims.ClaimRefused(f"as_of {text!r} needs a time zone")
    return value


@router.get(
    "/claims",
    tags=["claims"],
    summary="Claims (a loan officer's own branch)",
    response_model=list[models.ClaimSummary],
)
def list_claims(engine: EngineDep, principal: Lender) -> list[dict]:
    branch = principal.branch if principal.role == "loan_officer" else None
    return [jsonable(c) for c in claims.list_claims(engine, branch)]


@router.get(
    "/claims/{claim_id}",
    tags=["claims"],
    summary="A claim and its report",
    response_model=models.Claim,
)
def get_claim(claim_id: str, request: Request, engine: EngineDep, principal: Lender) -> dict:
    return _out(_visible(principal, claims.get_claim(engine, claim_id)), request)


@router.post(
    "/claims/{claim_id}/accept",
    tags=["claims"],
    summary="Turn a consistent claim into a parcel that loans can pledge",
    responses=CONFLICT,
    response_model=models.Claim,
)
def accept_claim(
    claim_id: str,
    request: Request,
    engine: EngineDep,
    principal: Lender,
    parcel_id: Annotated[str | None, Query(max_length=64)] = None,
) -> dict:
    _visible(principal, claims.get_claim(engine, claim_id))
    request.state.audit_subject = claim_id
    return _out(claims.accept(engine, claim_id, parcel_id), request)
