"""The HTTP API: ``create_app(engine)``; errors as application/problem+json.

The app keeps no state but the engine, so N replicas behind a load balancer serve the
same answers.
"""

import logging
from http import HTTPStatus
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, text
from starlette.exceptions import HTTPException

from agri_common import wording
from agri_common.wording import Said, coded, translate
from collateral import claims, loans, pledges, prices
from collateral.api import assets, lending, maps, metrics, models
from collateral.api import claims as claims_api
from collateral.api import notify as notify_api
from collateral.api.cache import Cache
from collateral.api.limits import AuditWrites, RateLimiter
from collateral.api.security import request_locale
from collateral.auth import KeyCache
from collateral.settings import Settings, load_settings
from collateral.valuation import ValuationError
from remote_sensing.plots import PlotError

log = logging.getLogger("agri.api")
PROBLEM = "application/problem+json"
KEY_CACHE_TTL_S = 5.0  # a verified API key is trusted this long without a new lookup
# A farm's headcount "now" is recomputed after HEADCOUNT_TTL_S, in the background while the
# previous one (at most HEADCOUNT_STALE_S old) is answered; `?at=` is never cached.
HEADCOUNT_TTL_S = 10.0
HEADCOUNT_STALE_S = 30.0
STATIC_DIR = Path(__file__).parent / "static"  # the web page, built by `make web`
PAGE_FILES = ("index.html", "app.js", "app.css")
# Swagger UI's files from npm (swagger-ui-dist), copied by the same build
DOCS_FILES = ("docs/swagger-ui-bundle.js", "docs/swagger-ui.css", "docs/favicon-32x32.png")
BUILD_HINT = (
    "The loan officer's web page and the API docs are not built: run `make web` (npm "
    "installs the map, chart and docs libraries and bundles them into "
    "collateral/api/static/), then restart."
)


def web_bundle_missing(files: tuple[str, ...] = PAGE_FILES) -> bool:
    return not all((STATIC_DIR / name).exists() for name in files)


def _not_built() -> HTMLResponse:
    """What / and /docs answer before `make web`: how to build them."""
    return HTMLResponse(
        f"<!doctype html><title>agri-collateral</title><p>{BUILD_HINT}", status_code=503
    )


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


def _said(exc: Exception) -> str:
    """The exception's message, keeping its code when it was composed (wording.Said)."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], Said) else str(exc)


def _field(loc) -> str:
    return ".".join(str(p) for p in loc)


def create_app(
    engine: Engine, settings: Settings | None = None, rate_limiter: RateLimiter | None = None
) -> FastAPI:
    """The API over ``engine``; ``settings`` as the process built them (read from the
    environment when not given)."""
    app = FastAPI(
        docs_url=None,  # served below from our own files: a bank intranet has no CDN
        redoc_url=None,
        title="agri-collateral",
        version="1",
        description=(
            "What a loan's pledged tea gardens, forests and herds are worth now, with the "
            "evidence, the loan-to-value ratio and its status. Authenticate with "
            "`Authorization: Bearer <API key>` (keys from `agri keys create`). Errors are "
            "`application/problem+json`."
        ),
    )
    settings = settings or load_settings()
    app.state.settings = settings
    app.state.engine = engine
    app.state.data_dir = settings.data_dir
    app.state.keys = KeyCache(ttl_s=KEY_CACHE_TTL_S)
    app.state.profiles = Cache(size=512)  # keyed by the imagery ledger's state
    app.state.headcounts = Cache(size=256, ttl_s=HEADCOUNT_TTL_S, stale_s=HEADCOUNT_STALE_S)
    app.state.rate_limiter = rate_limiter or RateLimiter(
        settings.api_rate_per_s, settings.api_rate_burst
    )

    app.add_middleware(AuditWrites, engine=engine)
    app.add_middleware(metrics.RequestMetrics)  # outermost: it times the audit row too

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, Said) else str(exc.detail)
        return problem(request, exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        locale = request_locale(request)
        found = exc.errors()
        errors = [
            {"field": _field(e["loc"]), "message": e["msg"], "type": e["type"]} for e in found
        ]
        # pydantic's English, or the catalogue's wording of its error type
        detail = wording.text("ui.reason_sep", locale).join(
            f"{_field(e['loc'])}: "
            + wording.validation_message(e["type"], e["msg"], e.get("ctx"), locale)
            for e in found[:5]
        )
        return problem(request, 422, detail, errors=errors)

    @app.exception_handler(loans.NotFound)
    async def not_found(request: Request, exc: loans.NotFound) -> JSONResponse:
        return problem(request, 404, _said(exc))

    @app.exception_handler(loans.Conflict)
    async def conflict(request: Request, exc: loans.Conflict) -> JSONResponse:
        return problem(request, 409, str(exc))

    @app.exception_handler(pledges.DoublePledge)
    async def double_pledge(request: Request, exc: pledges.DoublePledge) -> JSONResponse:
        return problem(request, 409, _said(exc), loan_id=exc.loan_id)

    @app.exception_handler(claims.ClaimRefused)
    @app.exception_handler(PlotError)
    async def claim_refused(request: Request, exc: ValueError) -> JSONResponse:
        reason = _said(exc)  # in the request's language where it was composed from codes
        locale = request_locale(request)
        said = Said("problem.claim_refused", reason=translate(reason, coded(reason), locale))
        return problem(request, 422, said)

    @app.exception_handler(claims.NotAcceptable)
    async def not_acceptable(request: Request, exc: claims.NotAcceptable) -> JSONResponse:
        return problem(request, 409, str(exc))

    @app.exception_handler(loans.Invalid)
    async def invalid(request: Request, exc: loans.Invalid) -> JSONResponse:
        return problem(
            request,
            422,
            f"{exc.field}: {exc}",
            errors=[{"field": exc.field, "message": str(exc), "type": "invalid"}],
        )

    @app.exception_handler(ValuationError)
    async def cannot_value(request: Request, exc: ValuationError) -> JSONResponse:
        return problem(request, 422, f"cannot value: {exc}")

    @app.exception_handler(prices.VersionExists)
    async def version_exists(request: Request, exc: prices.VersionExists) -> JSONResponse:
        return problem(request, 409, str(exc))

    @app.exception_handler(prices.TableError)
    async def bad_table(request: Request, exc: prices.TableError) -> JSONResponse:
        return problem(request, 422, str(exc), errors=[{"message": p} for p in exc.problems])

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem(
            request, 500, f"internal error ({type(exc).__name__}); the request changed nothing"
        )

    @app.get(
        "/v1/health",
        tags=["service"],
        summary="Liveness and database check",
        response_model=models.Health,
    )
    def health() -> dict:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok", "database": engine.dialect.name}

    app.include_router(assets.router, prefix="/v1")
    app.include_router(lending.router, prefix="/v1")
    app.include_router(claims_api.router, prefix="/v1")
    app.include_router(notify_api.router, prefix="/v1")
    app.include_router(maps.router, prefix="/v1")
    app.include_router(metrics.router)  # GET /metrics: Prometheus, no key (as /v1/health)

    @app.get("/docs", include_in_schema=False)
    def docs():
        if web_bundle_missing(DOCS_FILES):
            return _not_built()
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="agri-collateral API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon-32x32.png",
            # no badge from validator.swagger.io: the page must not reach outside
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/", include_in_schema=False)
    def page():
        if web_bundle_missing():
            return _not_built()
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    return app
