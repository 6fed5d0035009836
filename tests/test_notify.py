"""Notifications to real receivers: a local HTTP server (generic webhook with a valid
signature, a WeCom- and a DingTalk-shaped robot), retried after a 500 with backoff,
dead-lettered after N; e-mail to a real SMTP server (aiosmtpd); once per subscription
across notifier restarts (separate `agri notify run --once` processes)."""

import base64
import email
import email.policy
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update

from agri_common.wording import Said, worded
from collateral import loans, notify
from collateral.db import make_engine, upgrade
from collateral.tables import loan_alerts
from collateral.tables import loans as loans_table
from remote_sensing import store as rs_store
from remote_sensing.parcels import read_parcel_file
from telemetry.local_broker import free_port
from tests.support.paths import REPO_ROOT, SAMPLE_TILES

SECRET = "s3cret-key"


class Receiver:
    """A real HTTP server on a free loopback port: records every POST; answers with the
    queued statuses first (e.g. a 500), then 200 and ``answer``."""

    def __init__(self, answer: bytes = b"{}"):
        self.posts: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the http.server name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(answer if status == 200 else b"receiver is down")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    upgrade(engine)
    rs_store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
    loans.create_loan(
        engine,
        loans.LoanIn(
            loan_id="N-1",
            borrower="Wang Hui",
            branch="ANXI-01",
            principal_cny="100000",
            parcel_ids=["F-03"],
        ),
    )
    loans.create_loan(
        engine,
        loans.LoanIn(
            loan_id="N-2",
            borrower="Su Qiang",
            branch="XIAMEN-02",
            principal_cny="100000",
            parcel_ids=["F-05"],
        ),
    )
    yield engine
    engine.dispose()


def open_alert(engine, loan_id: str, detail: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            loan_alerts.insert().values(
                loan_id=loan_id,
                kind="status_worsened",
                valuation_id="VAL-x",
                opened_at=datetime.now(UTC),
                **worded(detail),
            )
        )


def test_a_signed_webhook_is_delivered_once_to_its_branch_only(engine, receiver):
    sub = notify.subscribe(
        engine, "Anxi desk", ["loan_status_worsened"], "webhook", receiver.url, "ANXI-01", SECRET
    )
    open_alert(engine, "N-1", "status ok -> watch; LTV 0.65 -> 0.72")
    open_alert(engine, "N-2", "another branch's loan")
    counts = notify.run_once(engine, None, max_attempts=3)
    assert counts == {"queued": 1, "delivered": 1, "failed": 0, "dead": 0}
    (post,) = receiver.posts
    headers, body = post["headers"], post["body"]
    expected = hmac.new(
        SECRET.encode(), headers["X-Agri-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert headers["X-Agri-Signature"] == f"sha256={expected}"
    payload = json.loads(body)
    assert payload["schema"] == "agri-notice/v1" and payload["notice"]["loan_id"] == "N-1"
    assert "LTV 0.65 -> 0.72" in payload["notice"]["detail"]
    assert headers["X-Agri-Delivery"] == str(payload["delivery_id"])
    # the next cycles send nothing again
    assert notify.run_once(engine, None, max_attempts=3)["delivered"] == 0
    assert len(receiver.posts) == 1
    (delivery,) = notify.list_deliveries(engine)
    assert delivery["state"] == "delivered" and delivery["subscription_id"] == sub["id"]


def test_a_500_is_retried_with_backoff_and_n_failures_dead_letter(engine, receiver):
    notify.subscribe(
        engine, "Anxi desk", ["loan_status_worsened"], "webhook", receiver.url, "ANXI-01"
    )
    open_alert(engine, "N-1", "first")
    receiver.statuses = [500]
    now = datetime.now(UTC)
    assert notify.run_once(engine, None, 3, now)["failed"] == 1
    (delivery,) = notify.list_deliveries(engine)
    assert delivery["attempts"] == 1 and "HTTP 500" in delivery["last_error"]
    assert (
        notify.run_once(engine, None, 3, now + timedelta(seconds=5))["delivered"] == 0
    )  # not yet due
    assert notify.run_once(engine, None, 3, now + timedelta(seconds=31))["delivered"] == 1
    assert len(receiver.posts) == 2
    open_alert(engine, "N-1", "second")
    receiver.statuses = [500, 500, 500]
    for minutes in (0, 1, 3):
        notify.run_once(engine, None, 3, datetime.now(UTC) + timedelta(minutes=minutes))
    dead = notify.list_deliveries(engine, "dead")
    assert len(dead) == 1 and dead[0]["attempts"] == 3 and "HTTP 500" in dead[0]["last_error"]
    notify.requeue(engine, dead[0]["id"])
    assert notify.run_once(engine, None, 3)["delivered"] == 1


def test_wecom_and_dingtalk_robot_formats(engine):
    wecom, dingtalk = Receiver(b'{"errcode": 0, "errmsg": "ok"}'), Receiver(b'{"errcode": 0}')
    refusing = Receiver(b'{"errcode": 310000, "errmsg": "sign not match"}')
    try:
        notify.subscribe(
            engine,
            "WeCom group",
            ["loan_status_worsened"],
            "wecom",
            wecom.url + "?key=abc",
            "ANXI-01",
        )
        notify.subscribe(
            engine,
            "DingTalk group",
            ["loan_status_worsened"],
            "dingtalk",
            dingtalk.url + "?access_token=t",
            "ANXI-01",
            "SECdingtalk",
            language="en",
        )
        notify.subscribe(
            engine, "Bad robot", ["loan_status_worsened"], "dingtalk", refusing.url, "ANXI-01"
        )
        worse = Said(
            "alert.status_worsened",
            from_status="ok",
            to_status="margin_call",
            from_ltv="0.65",
            to_ltv="0.91",
        )
        open_alert(engine, "N-1", worse)
        counts = notify.run_once(engine, None, 3)
        assert counts["delivered"] == 2 and counts["failed"] == 1
        body = json.loads(wecom.posts[0]["body"])  # a Chinese branch's group: in Chinese
        content = body["markdown"]["content"]
        assert body["msgtype"] == "markdown" and content.startswith("**贷款 N-1（")
        assert "贷款状态恶化" in content and "状态 正常 → 追加担保；抵押率 0.65 → 0.91" in content
        assert "key=abc" in wecom.posts[0]["path"]
        post = dingtalk.posts[0]
        query = parse_qs(urlsplit(post["path"]).query)
        expected = base64.b64encode(
            hmac.new(
                b"SECdingtalk", f"{query['timestamp'][0]}\nSECdingtalk".encode(), hashlib.sha256
            ).digest()
        ).decode()
        assert query["sign"] == [expected] and query["access_token"] == ["t"]
        english = json.loads(post["body"])["markdown"]  # this one asked for English
        assert english["title"].startswith("Loan N-1") and "ok -> margin_call" in english["text"]
        (bad,) = notify.list_deliveries(engine, "pending")
        assert "sign not match" in bad["last_error"]
    finally:
        for r in (wecom, dingtalk, refusing):
            r.close()


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(envelope)
        return "250 OK"


def test_email_reaches_a_real_smtp_server(engine):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        notify.subscribe(
            engine, "Officer Lin", ["loan_status_worsened"], "email", "lin@anxi.example", "ANXI-01"
        )
        open_alert(engine, "N-1", "status ok -> watch")
        smtp = notify.Smtp.from_url(f"smtp://127.0.0.1:{controller.port}", "alerts@bank.example")
        assert notify.run_once(engine, smtp, 3)["delivered"] == 1
        (message,) = inbox.messages
        assert (
            message.rcpt_tos == ["lin@anxi.example"] and message.mail_from == "alerts@bank.example"
        )
        mail = email.message_from_bytes(message.content, policy=email.policy.default)
        assert mail["Subject"] == "贷款 N-1（Wang Hui）：贷款状态恶化"  # Chinese by default
        assert "status ok -> watch" in mail.get_content()  # stored uncoded: as stored
        assert mail["Message-ID"].startswith("<agri-delivery-")
    finally:
        controller.stop()
    # no server: the delivery fails with the reason and stays pending
    open_alert(engine, "N-1", "again")
    smtp = notify.Smtp.from_url(
        f"smtp://user:pw@127.0.0.1:{free_port()}?starttls=1", "alerts@bank.example"
    )
    assert smtp.starttls and smtp.user == "user"
    assert notify.run_once(engine, smtp, 3)["failed"] == 1
    assert "SMTP 127.0.0.1" in notify.list_deliveries(engine, "pending")[0]["last_error"]


def test_no_loss_and_no_repeat_across_notifier_restarts(engine, receiver, tmp_path):
    env = {
        **os.environ,
        "AGRI_DATABASE_URL": str(engine.url),
        "AGRI_DATA_DIR": str(tmp_path / "data"),
    }

    def run():
        out = subprocess.run(
            [sys.executable, "-m", "collateral.cli", "notify", "run", "--once"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    subprocess.run(
        [
            sys.executable,
            "-m",
            "collateral.cli",
            "notify",
            "subscribe",
            "--label",
            "desk",
            "--kinds",
            "loan_status_worsened,claim_verdict",
            "--channel",
            "webhook",
            "--target",
            receiver.url,
            "--branch",
            "ANXI-01",
        ],
        env=env,
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    open_alert(engine, "N-1", "one")
    open_alert(engine, "N-1", "two")
    assert run()["delivered"] == 2
    open_alert(engine, "N-1", "three")
    receiver.statuses = [500]
    assert run()["failed"] == 1  # a new process; the first two are not sent again
    with engine.begin() as conn:  # the retry is due now (as if its backoff had passed)
        conn.execute(notify.deliveries.update().values(next_attempt_at=datetime.now(UTC)))
    assert run()["delivered"] == 1
    assert run() == {"queued": 0, "delivered": 0, "failed": 0, "dead": 0}
    details = [json.loads(p["body"])["notice"]["detail"] for p in receiver.posts]
    assert sorted(set(details)) == ["one", "three", "two"] and details.count("three") == 2
    assert sorted(d for d in details if d != "three") == ["one", "two"]


def test_bad_subscriptions_are_refused(engine):
    with pytest.raises(ValueError, match="is not smtp://"):
        notify.Smtp.from_url("http://mail.example", "a@b")
    for args, words in [
        ((["rain"], "webhook", "http://x/y"), "kinds must be among"),
        ((["disturbance"], "fax", "http://x/y"), "channel must be one of"),
        ((["disturbance"], "email", "not-an-address"), "not an e-mail address"),
        ((["disturbance"], "webhook", "file:///etc/passwd"), "not an http(s) URL"),
    ]:
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            notify.subscribe(engine, "x", *args)


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_every_source_becomes_a_notice_for_the_branches_it_concerns(world, receiver):
    from collateral.notices import notices_since

    loans.create_loan(
        world,
        loans.LoanIn(
            loan_id="N-W-1",
            borrower="Wang Hui",
            branch="ANXI-01",
            principal_cny="1",
            parcel_ids=["F-08"],
            herds=[{"farm_id": "FARM-CATTLE", "categories": ["dairy_cow"]}],
        ),
    )
    with world.begin() as conn:  # none left by other tests of the shared world (the API's)
        conn.execute(notify.subscriptions.update().values(active=False))
    since = datetime(2000, 1, 1, tzinfo=UTC)
    found = notices_since(world, since)
    disturbance = [n for n in found if n["kind"] == "disturbance"]
    assert [n["parcel_id"] for n in disturbance] == ["F-08"]
    assert disturbance[0]["branches"] == ["ANXI-01"] and "ha affected" in disturbance[0]["detail"]
    assert all(n["kind"] != "disturbance" or n["parcel_id"] == "F-08" for n in found)
    sub = notify.subscribe(
        world, "desk", ["disturbance"], "webhook", receiver.url, "ANXI-01", since=since
    )
    assert notify.run_once(world, None, 3)["delivered"] == 1
    assert json.loads(receiver.posts[0]["body"])["notice"]["key"] == disturbance[0]["key"]
    with world.begin() as conn:  # the world is shared: leave no subscription behind
        conn.execute(
            notify.subscriptions.update()
            .where(notify.subscriptions.c.id == sub["id"])
            .values(active=False)
        )


def test_subscriptions_through_the_api(engine, receiver):
    from fastapi.testclient import TestClient

    from collateral import auth
    from collateral.api.app import create_app

    client = TestClient(create_app(engine))
    officer = {"Authorization": f"Bearer {auth.create_key(engine, 'loan_officer', 'ANXI-01')}"}
    other = {"Authorization": f"Bearer {auth.create_key(engine, 'loan_officer', 'XIAMEN-02')}"}
    body = {
        "label": "desk",
        "kinds": ["loan_status_worsened"],
        "channel": "webhook",
        "target": receiver.url,
        "secret": SECRET,
    }
    created = client.post("/v1/subscriptions", json=body, headers=officer)
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["branch"] == "ANXI-01" and "secret" not in sub
    refused = client.post(
        "/v1/subscriptions", json={**body, "branch": "XIAMEN-02"}, headers=officer
    )
    assert refused.status_code == 422
    bad = client.post("/v1/subscriptions", json={**body, "kinds": ["rain"]}, headers=officer)
    assert bad.status_code == 422
    assert [s["id"] for s in client.get("/v1/subscriptions", headers=other).json()] == []
    open_alert(engine, "N-1", "through the API")
    notify.run_once(engine, None, 3)
    log = client.get(f"/v1/subscriptions/{sub['id']}/deliveries", headers=officer).json()
    assert [d["state"] for d in log] == ["delivered"]
    assert client.get(f"/v1/subscriptions/{sub['id']}/deliveries", headers=other).status_code == 404


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_revalue_with_notify_delivers_in_the_same_cron_run(world, receiver, agri, monkeypatch):
    """`agri revalue --all --notify`: the status that worsened in this run reaches the
    branch's webhook in the same run, in the subscription's language."""
    before_cut = datetime.fromisoformat("2024-04-30T00:00:00+00:00")
    loans.create_loan(
        world,
        loans.LoanIn(
            loan_id="N-CRON",
            borrower="Wang Hui",
            branch="ANXI-01",
            principal_cny="1",
            parcel_ids=["F-08"],
        ),
    )
    first = loans.value_now(world, "N-CRON", before_cut)
    principal = (Decimal(first["eligible_value_cny"]) * Decimal("0.6")).quantize(Decimal("1"))
    with world.begin() as conn:  # an ok loan before the clear-cut
        conn.execute(
            update(loans_table)
            .where(loans_table.c.loan_id == "N-CRON")
            .values(principal_cny=str(principal))
        )
    assert loans.value_now(world, "N-CRON", before_cut)["status"] == "ok"
    notify.subscribe(
        world,
        "desk",
        ["loan_status_worsened"],
        "webhook",
        receiver.url,
        "ANXI-01",
        language="zh-CN",
    )
    monkeypatch.setenv("AGRI_DATABASE_URL", str(world.url))
    result = agri("revalue", "--all", "--notify")
    assert "N-CRON" in result.stdout and "status worsened" in result.stdout, result.stdout
    assert '"delivered": 1' in result.stdout
    (post,) = receiver.posts
    notice = json.loads(post["body"])["notice"]
    assert notice["loan_id"] == "N-CRON" and notice["title"].startswith("贷款 N-CRON")
    assert notice["words"]["en"]["detail"].startswith("status ok -> ")
