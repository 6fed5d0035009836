"""`agri serve` in processes of its own on free loopback ports, for the tests and benchmarks
that need a real server (its memory, its connections) rather than an in-process client."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from telemetry.local_broker import free_port
from tests.support.paths import REPO_ROOT


def start_servers(url: str, data_dir: Path, count: int = 1) -> tuple[list, list[str]]:
    """``count`` API processes on the database at ``url``; (processes, base URLs), each
    answering /v1/health. Rate limits lifted: the load is the point."""
    env = {
        **os.environ,
        "AGRI_DATABASE_URL": url,
        "AGRI_DATA_DIR": str(data_dir),
        "AGRI_API_RATE_PER_S": "1000000",
        "AGRI_API_RATE_BURST": "1000000",
    }
    servers, bases = [], []
    for _ in range(count):
        port = free_port()
        command = [sys.executable, "-m", "collateral.cli", "serve", "--port", str(port)]
        servers.append(
            subprocess.Popen(
                command,
                env=env,
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        bases.append(f"http://127.0.0.1:{port}")
    for base in bases:
        for _ in range(150):
            try:
                httpx2.get(base + "/v1/health", timeout=1)
                break
            except httpx2.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"the API at {base} did not start")
    return servers, bases


def peak_mb(process: subprocess.Popen) -> float | None:
    """The process's own peak resident memory so far (VmHWM), in MB."""
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except OSError:
        return None
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    return round(kb / 1024, 1)


def stop_servers(servers: list) -> None:
    for server in servers:
        server.terminate()
        server.wait(30)
