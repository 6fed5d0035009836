"""`agri` commands run as real processes, with explicit readiness: a long-running command
(the ingester) says READY=1 on the socket named by NOTIFY_SOCKET, systemd's protocol,
once it is subscribed. A test waits for that instead of sleeping or reading logs."""

import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.paths import REPO_ROOT

AGRI = [sys.executable, "-m", "collateral.cli"]


class AgriProcess:
    """``agri ARGS...`` in its own process, its output appended to ``log``."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self._folder = tempfile.TemporaryDirectory(prefix="agri-notify-")
        path = os.path.join(self._folder.name, "notify")
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(path)
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [*AGRI, *args],
                env={**os.environ, **env, "NOTIFY_SOCKET": path},
                cwd=REPO_ROOT,
                stdout=out,
                stderr=out,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        """Return once the process said READY=1; fail with its log if it did not."""
        self._notify.settimeout(timeout)
        try:
            while self._notify.recv(256) != b"READY=1":
                pass
        except TimeoutError:
            raise AssertionError(
                f"agri did not become ready in {timeout} s (exit code {self.process.poll()}):\n"
                + self.log.read_text()[-3000:]
            ) from None

    def close(self) -> None:
        self._notify.close()
        self._folder.cleanup()


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate a server process the tests started; kill it if it does not go."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def partitions_served(log: Path) -> set[int]:
    """The ingest partitions an `agri ingest` process serves now, from its log: taken
    ("partition K: serving it") and subscribed ("subscribed to ... as agri-ingest-pK"), so
    what gateways publish from then on is kept for it; a lost lease forgets both."""
    taken: set[int] = set()
    subscribed: set[int] = set()
    for line in log.read_text().splitlines():
        if m := re.search(r"partition (\d+): serving it", line):
            taken.add(int(m[1]))
        elif m := re.search(r"subscribed to .* as agri-ingest-p(\d+)$", line):
            subscribed.add(int(m[1]))
        elif m := re.search(r"partition (\d+): lease lost", line):
            taken.discard(int(m[1]))
            subscribed.discard(int(m[1]))
    return taken & subscribed
