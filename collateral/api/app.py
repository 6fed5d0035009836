"""The HTTP API: ``create_app(engine)``; errors as application/problem+json.

The app keeps no state but the engine, so N replicas behind a load balancer serve the
same answers.
"""

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, text

from collateral.api import assets, lending, maps, metrics, models, plants, problems
from collateral.api import claims as claims_api
from collateral.api import notify as notify_api
from collateral.api.cache import Cache
from collateral.api.limits import AuditWrites, RateLimiter
from collateral.auth import KeyCache
from collateral.settings import Settings, load_settings

log = logging.getLogger("agri.api")
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

    problems.install(app)

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
    app.include_router(plants.router, prefix="/v1")
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
