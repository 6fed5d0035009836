"""Per-key rate limits, request body limits and the audit log of writes."""

import logging
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import Engine, insert
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from collateral.errors import Invalid
from collateral.tables import audit_log

log = logging.getLogger("agri.api")

WRITES = ("POST", "PUT", "PATCH", "DELETE")
# A registry or price upload: 100,000 animals' CSV is about 10 MB.
UPLOAD_MAX_BYTES = 64 << 20


async def bounded_body(request: Request, limit: int = UPLOAD_MAX_BYTES) -> bytes:
    """The request body, refused (Invalid on ``body``: a 422) as soon as it is known
    to pass ``limit`` bytes: at once from its Content-Length, or, for a chunked body or one
    that says less than it sends, when the bytes read pass the limit. Nothing beyond the
    limit is held in memory, so a few large uploads cannot take the API process down."""

    def refused(size: str) -> Invalid:
        return Invalid("body", f"the body is {size} bytes, beyond the {limit:,} allowed here")

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise refused(f"{int(declared):,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise refused(f"more than {limit:,}")
        chunks.append(chunk)
    return b"".join(chunks)


class RateLimiter:
    """A token bucket per API key, in this process: ``per_s`` sustained, ``burst`` at once.

    N API processes allow N times the rate; the limit protects each process and the
    database from one runaway script, it is not a quota.
    """

    def __init__(self, per_s: float, burst: int):
        self.per_s, self.burst = per_s, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str) -> float:
        """0 if the request may go ahead, else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.per_s)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / self.per_s


def record_write(engine: Engine, request, status: int) -> None:
    """One audit row for a write request, whatever its outcome (refusals included)."""
    principal = getattr(request.state, "principal", None)
    with engine.begin() as conn:
        conn.execute(
            insert(audit_log).values(
                at=datetime.now(UTC),
                key_id=principal.key_id if principal else None,
                role=principal.role if principal else None,
                branch=principal.branch if principal else None,
                method=request.method,
                path=str(request.url.path)[:2000],
                subject=getattr(request.state, "audit_subject", None),
                status=status,
            )
        )


class AuditWrites:
    """ASGI middleware: after each write under /v1/, one audit row with its status. Reads
    pass straight through (a plain ASGI wrapper costs them nothing measurable)."""

    def __init__(self, app, engine: Engine):
        self.app, self.engine = app, engine

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITES
            or not scope["path"].startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def capture(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, capture)
        request = Request(scope)
        try:
            await run_in_threadpool(record_write, self.engine, request, status["code"])
        except Exception:  # the write happened; a lost audit row must be loud
            log.exception("could not record %s %s in the audit log", request.method, scope["path"])
