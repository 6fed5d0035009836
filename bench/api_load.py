"""API under load: open-loop requests from this process against `agri serve` in another.

    .venv/bin/python bench/api_load.py [--rate 200] [--seconds 10] [--loans 1000]

The demo data scaled to 1,000 loans on a fresh PostgreSQL database: the sample parcels with
every sample scene processed, the sample farms with a round of readings an hour ago, the
two demo loans valued for real and 998 more loans whose latest valuation is a copy of one
of those (same document, new ids), so reading "a loan's latest valuation" touches a table
of realistic size. Requests are sent on a fixed schedule (open loop: a slow answer does not
slow the sender), and latency is measured from the scheduled send time, so queueing shows.
The reference, in the same run and at the same rate: GET /v1/health (the framework, auth
excluded, and one database round trip). Each read is first sent for ``--warm-up`` seconds
at the same rate, reported apart ("warm_up"): a just-started server computes each cached
read once. ``p99_ms_each_second`` shows where in a run the slow answers were.
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import numpy as np
from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bioassets.local_broker import free_port  # noqa: E402
from collateral import auth, loans  # noqa: E402
from collateral.tables import valuations  # noqa: E402
from tests.support.databases import fresh_postgres_database  # noqa: E402
from tests.support.paths import SAMPLE_TILES  # noqa: E402
from tests.support.world import build_world  # noqa: E402


def scaled_world(url: str, data_dir: Path, n_loans: int) -> str:
    """Build the data; returns a loan officer key."""
    engine = build_world(url, data_dir, datetime.now(UTC) - timedelta(hours=1))
    demo = json.loads((SAMPLE_TILES / "loans" / "demo-loans.json").read_text())
    for entry in demo:
        loans.create_loan(engine, loans.LoanIn.model_validate(entry))
        loans.value_now(engine, entry["loan_id"])
    with engine.connect() as c:
        stored = [dict(r._mapping) for r in c.execute(select(valuations))]
    for n in range(len(demo), n_loans):
        template = demo[n % len(demo)]
        loan_id = f"LN-BENCH-{n:05d}"
        loans.create_loan(engine, loans.LoanIn.model_validate({**template, "loan_id": loan_id}))
        row = dict(stored[n % len(stored)])
        row["valuation_id"] = f"VAL-{uuid.uuid4().hex[:20]}"
        row["loan_id"] = loan_id
        row["result"] = {**row["result"], "loan_id": loan_id}
        with engine.begin() as c:
            c.execute(insert(valuations).values(**row))
    key = auth.create_key(engine, "loan_officer", "ANXI-01")
    engine.dispose()
    return key


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--loans", type=int, default=1000)
    parser.add_argument("--post-rate", type=float, default=5)
    parser.add_argument("--connections", type=int, default=8, help="wrk's connections")
    parser.add_argument("--servers", type=int, default=1, help="agri serve processes")
    parser.add_argument(
        "--warm-up", type=float, default=2, help="seconds of each read at the rate, reported apart"
    )
    args = parser.parse_args()
    results: dict = {"loans": args.loans, "seconds": args.seconds, "servers": args.servers}
    servers: list[subprocess.Popen] = []
    with (
        fresh_postgres_database("agri_bench_api") as url,
        tempfile.TemporaryDirectory(prefix="agri-bench-api-") as folder,
    ):
        try:
            t0 = time.perf_counter()
            key = scaled_world(url, Path(folder) / "data", args.loans)
            results["setup_s"] = round(time.perf_counter() - t0, 1)
            env = {
                **os.environ,
                "AGRI_DATABASE_URL": url,
                "AGRI_DATA_DIR": str(Path(folder) / "data"),
                "AGRI_API_RATE_PER_S": "1000000",
                "AGRI_API_RATE_BURST": "1000000",
            }
            bases = []
            for _ in range(args.servers):
                port = free_port()
                command = [sys.executable, "-m", "collateral.cli", "serve", "--port", str(port)]
                servers.append(
                    subprocess.Popen(
                        command,
                        env=env,
                        cwd=ROOT,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                bases.append(f"http://127.0.0.1:{port}")
            for base in bases:
                for _ in range(100):
                    try:
                        httpx2.get(base + "/v1/health", timeout=1)
                        break
                    except httpx2.HTTPError:
                        time.sleep(0.2)
            loan_ids = [f"LN-BENCH-{n:05d}" for n in range(2, args.loans)]
            runs = {
                "reference GET /v1/health": ("GET", ["/v1/health"], args.rate),
                "GET /v1/loans/{id} (latest valuation)": (
                    "GET",
                    [f"/v1/loans/{i}" for i in loan_ids],
                    args.rate,
                ),
                "GET /v1/farms/{id}/headcount": (
                    "GET",
                    [f"/v1/farms/{f}/headcount" for f in ("FARM-SOW", "FARM-FAT", "FARM-CATTLE")],
                    args.rate,
                ),
                "GET /v1/parcels/{id}/profile": (
                    "GET",
                    [f"/v1/parcels/{p}/profile" for p in ("F-08", "T-05", "F-10", "T-04")],
                    args.rate,
                ),
                "POST /v1/loans/{id}/valuations": (
                    "POST",
                    [f"/v1/loans/{i}/valuations" for i in loan_ids],
                    args.post_rate,
                ),
            }
            asyncio.run(load(bases, key, "GET", ["/v1/health"], 20, 1))  # warm up
            for label, (method, paths, rate) in runs.items():
                warm_up = None
                if method == "GET" and args.warm_up > 0:
                    # A server that has just started computes each cached read once (a
                    # profile ~100 ms, a headcount ~50 ms); measured, but apart.
                    warm_up = asyncio.run(load(bases, key, method, paths, rate, args.warm_up))
                results[label] = asyncio.run(load(bases, key, method, paths, rate, args.seconds))
                results[label]["warm_up"] = warm_up
                print(label, results[label], flush=True)
                if method == "GET" and shutil.which("wrk") and len(bases) == 1:
                    capacity = wrk(bases[0], key, paths, args.seconds, args.connections)
                    results[label]["wrk_closed_loop"] = capacity
                    print("   wrk", capacity, flush=True)
        finally:
            for server in servers:
                server.terminate()
                server.wait(30)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"api_results_{args.servers}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
