"""Notifications: alerts reach officers where they work, from a worker, never a request.

A subscription names a branch (or every branch), the notice kinds it wants
(notices.KINDS) and a channel: a generic webhook (JSON, signed with HMAC-SHA256), the
group robots of WeCom and DingTalk that Chinese branches use, or e-mail over SMTP.
``run_once`` is one worker cycle: every notice recorded since a subscription was made is
queued for it (a unique key per subscription and notice: queueing again changes
nothing), then every due delivery is sent. A failure is retried with exponential backoff
and its last error kept; after ``max_attempts`` the delivery is dead (a dead letter an
operator can see and requeue). A delivery is marked delivered in the same step that
confirms it, and carries its id (``X-Agri-Delivery``, the e-mail's Message-ID) so a
receiver can drop the one repeat a crash between sending and marking could cause.
"""

import base64
import hashlib
import hmac
import json
import smtplib
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from agri_common.wording import LOCALES
from collateral.notices import KINDS, notices_since
from collateral.tables import deliveries, subscriptions

CHANNELS = ("webhook", "wecom", "dingtalk", "email")
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY_WAIT = timedelta(hours=1)
HTTP_TIMEOUT_S = 10.0
BATCH = 200  # deliveries sent per cycle at most
LOOKBACK = timedelta(days=30)  # how far back a cycle looks for notices


@dataclass(frozen=True)
class Smtp:
    """Where e-mail goes: smtp://[user:password@]host[:port][?starttls=1]; from address."""

    host: str
    port: int
    sender: str
    user: str | None = None
    password: str | None = None
    starttls: bool = False

    @classmethod
    def from_url(cls, url: str, sender: str) -> "Smtp":
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "smtp" or not parts.hostname:
            raise ValueError(f"{url!r} is not smtp://[user:password@]host[:port][?starttls=1]")
        query = urllib.parse.parse_qs(parts.query)
        return cls(
            parts.hostname,
            parts.port or 25,
            sender,
            urllib.parse.unquote(parts.username) if parts.username else None,
            urllib.parse.unquote(parts.password) if parts.password else None,
            query.get("starttls", ["0"])[0] in ("1", "true", "yes"),
        )


# --- subscriptions -----------------------------------------------------------------------


def subscribe(
    engine: Engine,
    label: str,
    kinds: list[str],
    channel: str,
    target: str,
    branch: str | None = None,
    secret: str | None = None,
    since: datetime | None = None,
    language: str = "zh-CN",
) -> dict:
    """A new subscription; it receives notices recorded from ``since`` (default: now),
    worded in ``language`` (Chinese unless asked: the branches' group robots are)."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(
            f"kinds must be among {list(KINDS)}" + (f", not {unknown}" if unknown else "")
        )
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {list(CHANNELS)}")
    if language not in LOCALES:
        raise ValueError(f"language must be one of {list(LOCALES)}")
    if channel == "email" and "@" not in target:
        raise ValueError(f"{target!r} is not an e-mail address")
    if channel != "email" and urllib.parse.urlsplit(target).scheme not in ("http", "https"):
        raise ValueError(f"{target!r} is not an http(s) URL")
    with engine.begin() as conn:
        new_id = conn.execute(
            insert(subscriptions).values(
                branch=branch,
                label=label,
                kinds=sorted(set(kinds)),
                channel=channel,
                target=target,
                secret=secret,
                language=language,
                active=True,
                created_at=since or datetime.now(UTC),
            )
        ).inserted_primary_key[0]
    return get_subscription(engine, new_id)


def get_subscription(engine: Engine, subscription_id: int) -> dict:
    with engine.connect() as conn:
        row = conn.execute(
            select(subscriptions).where(subscriptions.c.id == subscription_id)
        ).first()
    if row is None:
        raise LookupError(f"subscription {subscription_id} does not exist")
    return dict(row._mapping)


def list_subscriptions(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(select(subscriptions).order_by(subscriptions.c.id))
        ]


def list_deliveries(engine: Engine, state: str | None = None) -> list[dict]:
    query = select(deliveries).order_by(deliveries.c.id)
    if state:
        query = query.where(deliveries.c.state == state)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def requeue(engine: Engine, delivery_id: int) -> None:
    """A dead delivery tried again (after the receiver was fixed)."""
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.state == "dead")
            .values(state="pending", attempts=0, next_attempt_at=datetime.now(UTC))
        )


# --- the worker ----------------------------------------------------------------------------


def enqueue(engine: Engine, now: datetime | None = None) -> int:
    """Queue every notice for every active subscription it matches, due at ``now``;
    returns how many are new. Notices are looked for over the last LOOKBACK (a worker
    stopped longer than that misses older ones; it says nothing twice either way)."""
    now = now or datetime.now(UTC)
    subs = [s for s in list_subscriptions(engine) if s["active"]]
    if not subs:
        return 0
    since = max(min(s["created_at"] for s in subs), now - LOOKBACK)
    with engine.connect() as conn:
        queued = {
            (r.subscription_id, r.notice_key)
            for r in conn.execute(
                select(deliveries.c.subscription_id, deliveries.c.notice_key).where(
                    deliveries.c.created_at >= since - LOOKBACK
                )
            )
        }
    added = 0
    for notice in notices_since(engine, since):
        at = datetime.fromisoformat(notice["at"])
        for sub in subs:
            if notice["kind"] not in sub["kinds"] or at < sub["created_at"]:
                continue
            if sub["branch"] is not None and sub["branch"] not in notice["branches"]:
                continue
            if (sub["id"], notice["key"]) in queued:
                continue
            try:
                with engine.begin() as conn:
                    conn.execute(
                        insert(deliveries).values(
                            subscription_id=sub["id"],
                            notice_key=notice["key"],
                            notice=notice,
                            state="pending",
                            attempts=0,
                            next_attempt_at=now,
                            created_at=datetime.now(UTC),
                        )
                    )
                added += 1
            except IntegrityError:  # another worker queued it: once per subscription
                pass
    return added


def run_once(
    engine: Engine, smtp: Smtp | None, max_attempts: int, now: datetime | None = None
) -> dict:
    """One cycle: queue what is new, send what is due. Returns the counts."""
    now = now or datetime.now(UTC)
    queued = enqueue(engine, now)
    subs = {s["id"]: s for s in list_subscriptions(engine)}
    with engine.connect() as conn:
        due = [
            dict(r._mapping)
            for r in conn.execute(
                select(deliveries)
                .where(and_(deliveries.c.state == "pending", deliveries.c.next_attempt_at <= now))
                .order_by(deliveries.c.id)
                .limit(BATCH)
            )
        ]
    counts = {"queued": queued, "delivered": 0, "failed": 0, "dead": 0}
    for delivery in due:
        sub = subs[delivery["subscription_id"]]
        try:
            send(sub, delivery, smtp)
        except DeliveryError as exc:
            attempts = delivery["attempts"] + 1
            dead = attempts >= max_attempts
            wait = min(FIRST_RETRY * 2 ** (attempts - 1), MAX_RETRY_WAIT)
            _update(
                engine,
                delivery["id"],
                state="dead" if dead else "pending",
                attempts=attempts,
                last_error=str(exc)[:2000],
                next_attempt_at=now + wait,
            )
            counts["dead" if dead else "failed"] += 1
            continue
        _update(
            engine,
            delivery["id"],
            state="delivered",
            attempts=delivery["attempts"] + 1,
            delivered_at=datetime.now(UTC),
            last_error=None,
        )
        counts["delivered"] += 1
    return counts


def _update(engine: Engine, delivery_id: int, **values) -> None:
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(**values))


# --- channels ------------------------------------------------------------------------------


class DeliveryError(RuntimeError):
    """A delivery the receiver did not take, with what it said."""


def worded(notice: dict, language: str | None) -> dict:
    """The notice's title and detail in ``language`` (NULL: English, as subscriptions from
    before there was a choice had them; a notice queued before words existed as it is)."""
    words = notice.get("words", {}).get(language or "en")
    return {**notice, **words} if words else notice


def text_of(notice: dict) -> str:
    return f"{notice['title']}\n{notice['detail']}\n({notice['at'][:16].replace('T', ' ')} UTC)"


# How each channel's body looks: the payload formats, as data. ``n`` is already worded in
# the subscription's language; a webhook gets every language too (``n["words"]``).
PAYLOADS = {
    "webhook": lambda d, n: {"schema": "agri-notice/v1", "delivery_id": d["id"], "notice": n},
    "wecom": lambda d, n: {
        "msgtype": "markdown",
        "markdown": {"content": f"**{n['title']}**\n> {n['detail']}\n> {n['at'][:16]} UTC"},
    },
    "dingtalk": lambda d, n: {
        "msgtype": "markdown",
        "markdown": {
            "title": n["title"],
            "text": f"### {n['title']}\n\n{n['detail']}\n\n{n['at'][:16]} UTC",
        },
    },
}


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + HMAC-SHA256(secret, timestamp + "." + body): what X-Agri-Signature
    carries, so a receiver can check the sender and reject a replayed old body."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def dingtalk_url(target: str, secret: str, timestamp_ms: int) -> str:
    """A DingTalk robot URL with its signature: base64(HMAC-SHA256(secret, "ts\\nsecret"))."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    sign = urllib.parse.quote_plus(base64.b64encode(mac.digest()))
    return f"{target}{'&' if '?' in target else '?'}timestamp={timestamp_ms}&sign={sign}"


def send(sub: dict, delivery: dict, smtp: Smtp | None) -> None:
    """Deliver one notice on the subscription's channel; DeliveryError if not taken."""
    notice = worded(delivery["notice"], sub.get("language"))
    if sub["channel"] == "email":
        _send_email(sub["target"], delivery["id"], notice, smtp)
        return
    body = json.dumps(PAYLOADS[sub["channel"]](delivery, notice), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Agri-Delivery": str(delivery["id"]),
    }
    url = sub["target"]
    if sub["channel"] == "webhook" and sub["secret"]:
        timestamp = str(int(time.time()))
        headers["X-Agri-Timestamp"] = timestamp
        headers["X-Agri-Signature"] = webhook_signature(sub["secret"], timestamp, body)
    if sub["channel"] == "dingtalk" and sub["secret"]:
        url = dingtalk_url(url, sub["secret"], int(time.time() * 1000))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            answer = response.read(65536)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(
            f"HTTP {exc.code} from {_host(url)}: {exc.read(500).decode(errors='replace')}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"cannot reach {_host(url)}: {exc}") from exc
    if sub["channel"] in ("wecom", "dingtalk"):  # the robots answer 200 with an errcode
        try:
            errcode = json.loads(answer).get("errcode", 0)
        except ValueError:
            raise DeliveryError(
                f"{sub['channel']} answered with no JSON: {answer[:200]!r}"
            ) from None
        if errcode != 0:
            raise DeliveryError(
                f"{sub['channel']} refused it: {answer[:300].decode(errors='replace')}"
            )


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def _send_email(address: str, delivery_id: int, notice: dict, smtp: Smtp | None) -> None:
    if smtp is None:
        raise DeliveryError("no SMTP server configured (AGRI_SMTP_URL)")
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = address
    message["Subject"] = notice["title"]
    message["Message-ID"] = f"<agri-delivery-{delivery_id}@{smtp.sender.split('@')[-1]}>"
    message.set_content(text_of(notice))
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=HTTP_TIMEOUT_S) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {smtp.host}:{smtp.port}: {exc}") from exc
