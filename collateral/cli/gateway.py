"""The farm side: `agri gateway run`, the reference gateway agent (telemetry.gateway_agent)."""

import logging
import queue
import sys
import threading
from pathlib import Path

import click

from agri_common.metrics import serve_metrics
from collateral import domains
from collateral.cli.context import stop_on_signals
from telemetry.gateway_agent import GatewayAgent, Outbox, read_stream, serve
from telemetry.mqtt_connection import parse_mqtt_url


@click.group("gateway")
def gateway() -> None:
    """A farm's gateway: take readings, keep them until the bank has them."""


@gateway.command("run")
@click.option("--farm", "farm_id", required=True, help="The farm this gateway belongs to.")
@click.option("--gateway", "gateway_id", required=True, help="This gateway's registered id.")
@click.option(
    "--mqtt-url",
    required=True,
    help="mqtt://GATEWAY-ID:PASSWORD@HOST:PORT (mqtts:// for TLS), as `agri gateways add` gave.",
)
@click.option("--ca-file", help="CA bundle for an mqtts:// broker with a private CA.")
@click.option(
    "--outbox",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("var/gateway-outbox.db"),
    show_default=True,
    help="The on-disk outbox (SQLite); keep it on persistent storage.",
)
@click.option(
    "--spool",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Take *.jsonl files dropped here (write another name, then rename); "
    "without it, JSON lines are read from standard input.",
)
@click.option("--resend-after", default=30.0, show_default=True, help="Seconds to wait for an ack.")
@click.option(
    "--max-outbox", default=100_000, show_default=True, help="Messages kept at most (input waits)."
)
@click.option("--per-message", default=100, show_default=True, help="Readings per MQTT message.")
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on this port."
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port."
)
def gateway_run(
    farm_id: str,
    gateway_id: str,
    mqtt_url: str,
    ca_file: str | None,
    outbox: Path,
    spool: Path | None,
    resend_after: float,
    max_outbox: int,
    per_message: int,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Send readings and life events (JSON lines) to the bank's ingester, losing none:
    each is kept on disk until the ingester says it is committed. Reading standard
    input, exits once it ends and everything is acknowledged; runs until SIGTERM on a
    spool folder."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        address = parse_mqtt_url(mqtt_url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mqtt-url") from exc
    box = Outbox(outbox, max_outbox)
    agent = GatewayAgent(
        box,
        address,
        farm_id,
        gateway_id,
        resend_after=resend_after,
        schemas=domains.agent_schemas(),
        per_message=per_message,
        ca_file=ca_file,
    )
    stop = stop_on_signals("stopping")
    lines = None
    if spool is None:
        lines = queue.Queue(maxsize=10_000)
        threading.Thread(target=read_stream, args=(sys.stdin, lines), daemon=True).start()
    serve_metrics(metrics_port, metrics_host)
    agent.start()
    try:
        serve(agent, stop, lines, spool)
    finally:
        agent.stop()
        s = agent.stats
        click.echo(
            f"gateway {gateway_id}: {s.published} published ({s.resent} re-sent), "
            f"{s.acked} acknowledged, {box.depth()} in the outbox, "
            f"{s.refused_lines} input line(s) refused",
            err=True,
        )
        box.close()


COMMANDS = [gateway]
