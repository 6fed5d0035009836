"""Subscriptions to notices: an officer subscribes their branch; a risk admin any branch
or all of them. Deliveries happen in the `agri notify` worker, never in a request."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from agri_common.rows import jsonable
from collateral import notify
from collateral.api import examples, models
from collateral.api.security import LENDING, EngineDep
from collateral.auth import Principal
from collateral.errors import Invalid, NotFound
from collateral.notices import KINDS

router = APIRouter(responses=examples.PROBLEMS)
Lender = Annotated[Principal, Depends(LENDING)]


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "label": "Anxi branch WeCom group",
                    "kinds": ["loan_status_worsened", "disturbance"],
                    "channel": "wecom",
                    "target": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY",
                }
            ]
        },
    )

    label: str = Field(min_length=1, max_length=200)
    kinds: list[Literal[KINDS]] = Field(min_length=1)  # type: ignore[valid-type]
    channel: Literal["webhook", "wecom", "dingtalk", "email"]
    target: str = Field(min_length=3, max_length=2000, description="URL, or e-mail address")
    branch: str | None = Field(default=None, max_length=64)
    secret: str | None = Field(default=None, max_length=200)
    language: Literal["zh-CN", "en"] = Field(
        default="zh-CN", description="the language notices are worded in"
    )


def _out(sub: dict) -> dict:
    return {k: v for k, v in jsonable(sub).items() if k != "secret"}


def _visible(principal: Principal, sub: dict) -> dict:
    if principal.role == "loan_officer" and sub["branch"] != principal.branch:
        raise NotFound(f"subscription {sub['id']} does not exist")
    return sub


@router.post(
    "/subscriptions",
    status_code=201,
    tags=["notifications"],
    summary="Subscribe to notices",
    response_model=models.Subscription,
)
def create_subscription(
    body: SubscriptionIn, request: Request, engine: EngineDep, principal: Lender
) -> dict:
    branch = body.branch
    if principal.role == "loan_officer":
        if branch not in (None, principal.branch):
            raise Invalid(
                "branch", f"a loan officer of {principal.branch} cannot subscribe {branch}"
            )
        branch = principal.branch
    try:
        sub = notify.subscribe(
            engine,
            body.label,
            list(body.kinds),
            body.channel,
            body.target,
            branch,
            body.secret,
            language=body.language,
        )
    except ValueError as exc:
        raise Invalid("target", str(exc)) from exc
    request.state.audit_subject = f"subscription:{sub['id']}"
    return _out(sub)


@router.get(
    "/subscriptions",
    tags=["notifications"],
    summary="Subscriptions (secrets not shown)",
    response_model=list[models.Subscription],
)
def list_subscriptions(engine: EngineDep, principal: Lender) -> list[dict]:
    subs = notify.list_subscriptions(engine)
    if principal.role == "loan_officer":
        subs = [s for s in subs if s["branch"] == principal.branch]
    return [_out(s) for s in subs]


@router.get(
    "/subscriptions/{subscription_id}/deliveries",
    tags=["notifications"],
    summary="A subscription's delivery log: state, attempts, last error",
    response_model=list[models.Delivery],
)
def subscription_deliveries(
    subscription_id: Annotated[int, Path(ge=1, le=2**31 - 1)], engine: EngineDep, principal: Lender
) -> list[dict]:
    try:
        _visible(principal, notify.get_subscription(engine, subscription_id))
    except LookupError as exc:
        raise NotFound(str(exc)) from exc
    return [
        jsonable(d)
        for d in notify.list_deliveries(engine)
        if d["subscription_id"] == subscription_id
    ]
