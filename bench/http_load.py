"""Load against the API from this process: open-loop requests at a fixed rate (latency
from the scheduled send time, so queueing shows) and wrk's closed-loop capacity; `agri
serve` processes (tests/support/api_server.py) on free loopback ports, and each one's own
peak memory.

The one home of the benchmarks' HTTP plumbing (bench/api_load.py, bench/book_growth.py).
"""

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.api_server import peak_mb, start_servers, stop_servers  # noqa: E402, F401


async def load(
    bases: list[str], key: str, method: str, paths: list[str], rate: float, seconds: float
):
    """Send ``rate`` requests a second for ``seconds``, spread over the servers in turn (a
    client-side balancer); latency from the scheduled time."""
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    latencies, statuses = [], {}
    limits = httpx2.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx2.AsyncClient(headers=headers, limits=limits, timeout=30) as c:
        start = time.perf_counter() + 0.2
        count = int(rate * seconds)

        async def one(i: int) -> None:
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            path = bases[i % len(bases)] + paths[i % len(paths)]
            try:
                response = await (c.post(path, content="{}") if method == "POST" else c.get(path))
                status = response.status_code
            except httpx2.HTTPError as exc:  # overload: counted, not fatal
                status = type(exc).__name__
            latencies.append((due - start, time.perf_counter() - due))
            statuses[status] = statuses.get(status, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - max(began, start)
    sent, ms = np.array(latencies).T * [[1], [1000]]
    second = sent.astype(int)
    return {
        "requests": count,
        "rate_asked": rate,
        "throughput": round(count / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        # where in the run the slow answers were: warm-up, a cache refresh, or throughout
        "p99_ms_each_second": [
            round(float(np.percentile(ms[second == k], 99)), 1) for k in np.unique(second)
        ],
        "statuses": statuses,
    }


WRK_SCRIPT = """
paths = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, paths[(counter %% #paths) + 1])
end
"""


def wrk(base: str, key: str, paths: list[str], seconds: float, connections: int) -> dict:
    """Closed loop with wrk (C, light on the CPU): capacity and latency with N connections."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % ", ".join(json.dumps(p) for p in paths[:500]))
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "-s",
            script.name,
            "-H",
            f"Authorization: Bearer {key}",
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(script.name).unlink()

    def ms(label: str) -> float:
        value = next(line.split()[1] for line in out.splitlines() if line.strip().startswith(label))
        unit = 1000 if value.endswith("ms") is False and value.endswith("s") else 1
        number = float(value.rstrip("ms").rstrip("u"))
        return number / 1000 if value.endswith("us") else number * unit

    rps = float(next(line.split()[1] for line in out.splitlines() if "Requests/sec" in line))
    non2xx = next((line for line in out.splitlines() if "Non-2xx" in line), None)
    return {
        "connections": connections,
        "throughput": rps,
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "non_2xx": non2xx.split(":")[1].strip() if non2xx else "0",
    }
