"""How this package reaches the broker: the broker URL, the client identity, a configured
paho client, and telling a service manager we are ready. One home for all of it, so the
ingester and the gateway simulator connect the same way."""

import os
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_mqtt_url(url: str) -> BrokerAddress:
    """``mqtt://user:pass@host:port`` or ``mqtts://...`` (TLS)."""
    parsed = urlparse(url)
    if parsed.scheme not in DEFAULT_PORTS:
        raise ValueError(f"MQTT URL {url!r} must start with mqtt:// or mqtts://")
    if not parsed.hostname:
        raise ValueError(f"MQTT URL {url!r} has no host")
    return BrokerAddress(
        parsed.hostname,
        parsed.port or DEFAULT_PORTS[parsed.scheme],
        unquote(parsed.username) if parsed.username else None,
        unquote(parsed.password) if parsed.password else None,
        parsed.scheme == "mqtts",
    )


def ingester_client_id(instance: int | None = None, host: str | None = None) -> str:
    """The ingester's MQTT client id: the same on every restart of the same instance.

    The broker keeps a persistent session's queue (and the messages it sent but saw no
    acknowledgement for) under the client id; a restart that comes back under the same
    id collects them. Several ingesters on one host are told apart by ``instance``.
    """
    name = f"agri-ingest-{host or socket.gethostname()}"
    return name if instance is None else f"{name}-{instance}"


def new_client(
    address: BrokerAddress,
    client_id: str,
    *,
    ca_file: str | None = None,
    manual_ack: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> mqtt.Client:
    """An MQTT 5 paho client with the address's credentials (or the given ones) and TLS."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    user = username or address.username
    if user:
        client.username_pw_set(user, password if username else address.password)
    if address.tls:
        client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
    return client


def notify_ready() -> None:
    """Tell a service manager that started us with ``NOTIFY_SOCKET`` (systemd's
    Type=notify, or a test) that we are subscribed and working."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(path)
        sock.sendall(b"READY=1")
