"""A PostgreSQL server of the test's own (initdb in a temp folder, a free port), so a
test can restart it without touching the machine's shared server."""

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from telemetry.local_broker import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (Debian: postgresql)")
    return found[-1]


class PrivatePostgres:
    """initdb + pg_ctl as the `postgres` user (initdb refuses to run as root)."""

    def __init__(self):
        # Its own folder straight under /tmp: pytest's tmp_path is private to root, and the
        # server runs as `postgres`.
        self.root = Path(tempfile.mkdtemp(prefix="agri-pg-", dir="/tmp"))
        self.root.chmod(0o777)
        self.data = self.root / "pgdata"
        self.port = free_port()
        self._as_postgres([_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"])

    def _as_postgres(self, command: list[str]) -> None:
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd="/tmp")
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")

    def start(self) -> "PrivatePostgres":
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            [
                _bin("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "log"),
                "-w",
                "start",
            ]
        )
        return self

    def stop(self) -> None:
        self._as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
