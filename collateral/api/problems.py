"""Every error a request meets, as one application/problem+json document: the error's kind
(collateral.errors) gives the status, and the few that carry more (a field, the loan that
holds a pledge, a table's problems) add it by one entry of ``SHAPES``. Handlers are
registered from these tables, not one by one.
"""

import logging
from collections.abc import Callable
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from agri_common import wording
from agri_common.wording import Said, coded, translate
from collateral import claims, errors, pledges, prices
from collateral.api.security import request_locale
from collateral.valuation import ValuationError
from remote_sensing.claims.plots import PlotError

log = logging.getLogger("agri.api")
PROBLEM = "application/problem+json"

# Error kind -> HTTP status. The domains' own errors subclass a kind; the one that cannot
# (remote_sensing's, below the API's layer) is mapped here.
STATUS: dict[type[Exception], int] = {
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Invalid: 422,
    errors.Refused: 422,
    PlotError: 422,
}


def problem(
    request: Request, status: int, detail: str, headers: dict | None = None, **extra
) -> JSONResponse:
    """A problem document in the language the request asks for (Accept-Language): the
    title always, the detail when it was composed from the catalogues (then with its
    ``code`` and ``params`` too); English otherwise, as other clients expect."""
    locale = request_locale(request)
    form = coded(detail)
    title = HTTPStatus(status).phrase
    body = {
        "type": "about:blank",
        "title": title if locale == "en" else wording.text(f"problem.{status}", locale),
        "status": status,
        "detail": translate(detail, form, locale),
        **(form or {}),
        **extra,
    }
    headers = {**(headers or {}), "Content-Language": locale}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def said(exc: Exception) -> str:
    """The exception's message, keeping its code when it was composed (wording.Said)."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], Said) else str(exc)


def _plot_refused(exc: Exception, locale: str) -> tuple[str, dict]:
    reason = said(exc)  # in the request's language where it was composed from codes
    return Said("problem.claim_refused", reason=translate(reason, coded(reason), locale)), {}


# What an error adds to its kind's document: (detail, extra members). The most specific
# type in an error's MRO that is here shapes it; the rest say their message.
Shape = Callable[[Exception, str], tuple[str, dict]]
SHAPES: dict[type[Exception], Shape] = {
    errors.Invalid: lambda exc, _: (
        f"{exc.field}: {exc}",
        {"errors": [{"field": exc.field, "message": str(exc), "type": "invalid"}]},
    ),
    pledges.DoublePledge: lambda exc, _: (said(exc), {"loan_id": exc.loan_id}),
    claims.ClaimRefused: _plot_refused,
    PlotError: _plot_refused,
    ValuationError: lambda exc, _: (f"cannot value: {exc}", {}),
    prices.VersionExists: lambda exc, _: (str(exc), {}),
    prices.TableError: lambda exc, _: (
        str(exc),
        {"errors": [{"message": p} for p in exc.problems]},
    ),
}


def _first(table: dict, exc: Exception):
    return next((table[t] for t in type(exc).__mro__ if t in table), None)


def answer(request: Request, exc: Exception) -> JSONResponse:
    """The problem document of a domain error (a kind in ``STATUS``)."""
    shape = _first(SHAPES, exc)
    detail, extra = shape(exc, request_locale(request)) if shape else (said(exc), {})
    return problem(request, _first(STATUS, exc), detail, **extra)


def _field(loc) -> str:
    return ".".join(str(p) for p in loc)


def install(app: FastAPI) -> None:
    """Register the handlers: one for each error kind, HTTP's own, validation, the rest."""

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        return answer(request, exc)

    for kind in STATUS:
        app.add_exception_handler(kind, domain_error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, Said) else str(exc.detail)
        return problem(request, exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        locale = request_locale(request)
        found = exc.errors()
        listed = [
            {"field": _field(e["loc"]), "message": e["msg"], "type": e["type"]} for e in found
        ]
        # pydantic's English, or the catalogue's wording of its error type
        detail = wording.text("ui.reason_sep", locale).join(
            f"{_field(e['loc'])}: "
            + wording.validation_message(e["type"], e["msg"], e.get("ctx"), locale)
            for e in found[:5]
        )
        return problem(request, 422, detail, errors=listed)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem(
            request, 500, f"internal error ({type(exc).__name__}); the request changed nothing"
        )
