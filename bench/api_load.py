"""API under load: open-loop requests from this process against `agri serve` in another.

    .venv/bin/python bench/api_load.py [--rate 200] [--seconds 10] [--loans 1000]

The demo data scaled to 1,000 loans on a fresh PostgreSQL database: the sample parcels with
every sample scene processed, the sample farms with a round of readings an hour ago, the
two demo loans valued for real and 1,000 more loans of one branch, each pledging a parcel
of its own, whose latest valuation is a copy of one of those (tests/support/book.py), so
reading "a loan's latest valuation" touches a table of realistic size.
Requests are sent on a fixed schedule (open loop: a slow answer does not slow the sender),
and latency is measured from the scheduled send time, so queueing shows.
The reference, in the same run and at the same rate: GET /v1/health (the framework, auth
excluded, and one database round trip). Each read is first sent for ``--warm-up`` seconds
at the same rate, reported apart ("warm_up"): a just-started server computes each cached
read once. ``p99_ms_each_second`` shows where in a run the slow answers were.
"""

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.http_load import load, start_servers, stop_servers, wrk  # noqa: E402
from collateral import auth  # noqa: E402
from tests.support.book import add_book, branch_of, loan_of, value_demo_loans  # noqa: E402
from tests.support.databases import fresh_postgres_database  # noqa: E402
from tests.support.world import build_world  # noqa: E402


def scaled_world(url: str, data_dir: Path, n_loans: int) -> str:
    """Build the data; returns a loan officer key of the book's branch."""
    engine = build_world(url, data_dir, datetime.now(UTC) - timedelta(hours=1))
    add_book(engine, n_loans, n_loans, value_demo_loans(engine))
    key = auth.create_key(engine, "loan_officer", branch_of(0, n_loans))
    engine.dispose()
    return key


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
    servers: list = []
    with (
        fresh_postgres_database("agri_bench_api") as url,
        tempfile.TemporaryDirectory(prefix="agri-bench-api-") as folder,
    ):
        try:
            t0 = time.perf_counter()
            key = scaled_world(url, Path(folder) / "data", args.loans)
            results["setup_s"] = round(time.perf_counter() - t0, 1)
            servers, bases = start_servers(url, Path(folder) / "data", args.servers)
            loan_ids = [loan_of(n) for n in range(args.loans)]
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
            stop_servers(servers)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"api_results_{args.servers}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
