"""A private Mosquitto on a free loopback port, configured from deploy/mosquitto/.

The demo and the test suite run their own broker with exactly the shipped settings
(persistence, raised queue limits, password file, ACL), never the machine's shared one.
"""

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

from telemetry import accounts

DEPLOY_CONF = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "mosquitto.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise RuntimeError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    return found


class LocalBroker:
    """Start with ``start()``, stop with ``stop()``; ``url(user, password)`` to connect."""

    def __init__(
        self,
        root: Path,
        gateways: list[dict],
        ingester_password: str,
        tls: tuple[Path, Path, Path] | None = None,
    ):
        """``tls``: (CA certificate, server certificate, server key) for an mqtts:// listener."""
        self.root = Path(root)
        self.host = "127.0.0.1"
        self.port = free_port()
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self.write_credentials(gateways, ingester_password)
        conf = DEPLOY_CONF.read_text()
        conf = conf.replace("/etc/mosquitto/agri/", f"{self.root}/")
        conf = conf.replace(
            "persistence_location /var/lib/mosquitto/", f"persistence_location {self.root}/data/"
        )
        listener = f"listener {self.port} 127.0.0.1"
        if tls:
            ca, cert, key = tls
            listener += f"\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\ntls_version tlsv1.2"
        conf = conf.replace("listener 1883", listener)
        self.tls = tls is not None
        # As root Mosquitto would switch to the `mosquitto` user, who may not read our folder.
        conf += f"\nuser {getpass.getuser()}\n"
        (self.root / "mosquitto.conf").write_text(conf)
        self.process: subprocess.Popen | None = None

    def write_credentials(self, gateways: list[dict], ingester_password: str) -> None:
        ingester_hash = accounts.mosquitto_hash(ingester_password)
        accounts.write_mosquitto_files(self.root, gateways, ingester_hash)

    def start(self, timeout: float = 10) -> "LocalBroker":
        log = open(self.root / "mosquitto.log", "ab")
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.root / "mosquitto.conf")], stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start; see {self.root / 'mosquitto.log'}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def url(self, user: str = accounts.INGESTER_USER, password: str = "") -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{user}:{password}@{self.host}:{self.port}"
