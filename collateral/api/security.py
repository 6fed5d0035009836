"""Who is calling and what they may do: Bearer API keys, roles, branches."""

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from agri_common.wording import Said, negotiate
from collateral import auth
from collateral.auth import Principal

bearer = HTTPBearer(auto_error=False, description="An API key from `agri keys create`.")


# The dependencies are coroutines on purpose: FastAPI runs a plain-function dependency in
# its thread pool, and three such hops per request (engine, key, role) cost more than the
# loan read itself. Only a key not verified in the last few seconds goes to the database,
# in the pool.


async def engine_of(request: Request) -> Engine:
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(engine_of)]


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, Said("problem.no_key"), {"WWW-Authenticate": "Bearer"})
    keys, key = request.app.state.keys, credentials.credentials
    principal = keys.recent(key)
    if principal is None:
        principal = await run_in_threadpool(keys.principal, request.app.state.engine, key)
    if principal is None:
        raise HTTPException(401, Said("problem.unknown_key"), {"WWW-Authenticate": "Bearer"})
    request.state.principal = principal
    wait = request.app.state.rate_limiter.take(principal.key_id)
    if wait > 0:
        raise HTTPException(
            429,
            Said("problem.rate", seconds=f"{wait:.1f}"),
            {"Retry-After": str(max(1, round(wait)))},
        )
    return principal


def role(*roles: str) -> Callable[..., Principal]:
    """A dependency that admits only these roles (401 without a key, 403 with another)."""

    async def check(principal: Annotated[Principal, Depends(caller)]) -> Principal:
        if principal.role not in roles:
            raise HTTPException(
                403, Said("problem.role", role=principal.role, needs=" or ".join(roles))
            )
        return principal

    return check


ANY_ROLE = role(*auth.ROLES)
LENDING = role("loan_officer", "risk_admin")
RISK = role("risk_admin")
OPERATOR = role("operator", "risk_admin")


def request_locale(request: Request) -> str:
    """The language a request asks for (Accept-Language), as agri_common.wording knows it."""
    return negotiate(request.headers.get("accept-language"))
