"""Notification commands: subscriptions, the delivery log, and the worker."""

import json

import click

from agri_common.rows import jsonable
from agri_common.wording import LOCALES
from collateral import notify
from collateral.cli.context import App, parse_time_option, pass_app, stop_on_signals
from collateral.notices import KINDS


@click.group("notify")
def notify_group() -> None:
    """Alerts to officers by webhook, WeCom or DingTalk robot, or e-mail."""


def smtp_of(settings) -> "notify.Smtp | None":
    """The configured SMTP server; a malformed AGRI_SMTP_URL stops the command at start
    (not at the first e-mail)."""
    try:
        if settings.smtp_url:
            return notify.Smtp.from_url(settings.smtp_url, settings.smtp_from)
    except ValueError as exc:
        raise click.ClickException(f"AGRI_SMTP_URL: {exc}") from exc
    return None


@notify_group.command("subscribe")
@click.option("--label", required=True, help="Who it is for (an officer, a group).")
@click.option("--kinds", required=True, help=f"Comma separated: {', '.join(KINDS)}.")
@click.option("--channel", required=True, type=click.Choice(notify.CHANNELS))
@click.option("--target", required=True, help="The webhook or robot URL, or the e-mail address.")
@click.option("--branch", help="Only this branch's notices (default: every branch).")
@click.option("--secret", help="HMAC key (webhook) or signing secret (DingTalk robot).")
@click.option("--since", help="Also notices recorded since this date (default: from now).")
@click.option(
    "--lang",
    "language",
    type=click.Choice(LOCALES),
    default="zh-CN",
    show_default=True,
    help="The language notices are worded in.",
)
@pass_app
def notify_subscribe(
    app: App, label, kinds, channel, target, branch, secret, since, language
) -> None:
    """Subscribe to notice kinds."""
    try:
        sub = notify.subscribe(
            app.engine,
            label,
            [k.strip() for k in kinds.split(",") if k.strip()],
            channel,
            target,
            branch,
            secret,
            parse_time_option(since, "date"),
            language,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"subscription {sub['id']}: {', '.join(sub['kinds'])} -> {channel} {target}")


@notify_group.command("list")
@pass_app
def notify_list(app: App) -> None:
    """Subscriptions (secrets not shown)."""
    rows = [
        {k: v for k, v in s.items() if k != "secret"} for s in notify.list_subscriptions(app.engine)
    ]
    click.echo(json.dumps(jsonable(rows), indent=2))


@notify_group.command("deliveries")
@click.option("--state", type=click.Choice(["pending", "delivered", "dead"]))
@pass_app
def notify_deliveries(app: App, state: str | None) -> None:
    """The delivery log: state, attempts, last error."""
    click.echo(json.dumps(jsonable(notify.list_deliveries(app.engine, state)), indent=2))


@notify_group.command("requeue")
@click.argument("delivery_id", type=int)
@pass_app
def notify_requeue(app: App, delivery_id: int) -> None:
    """Try a dead delivery again."""
    notify.requeue(app.engine, delivery_id)
    click.echo(f"delivery {delivery_id} requeued")


@notify_group.command("run")
@click.option("--once", is_flag=True, help="One cycle, then exit (for cron).")
@click.option("--interval", default=15.0, show_default=True, help="Seconds between cycles.")
@pass_app
def notify_run(app: App, once: bool, interval: float) -> None:
    """The delivery worker: queue new notices, send what is due; until SIGTERM/SIGINT."""
    settings = app.settings
    smtp = smtp_of(settings)
    stop = stop_on_signals("stopping")
    while True:
        counts = notify.run_once(app.engine, smtp, settings.notify_max_attempts)
        if once or any(counts.values()):
            click.echo(json.dumps(counts))
        if once or stop.wait(interval):
            return


COMMANDS = [notify_group]
