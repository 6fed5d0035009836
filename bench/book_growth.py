"""Reads as the loan book grows: the officer's and the risk desk's reads at several book sizes,
side by side in one run, on PostgreSQL.

    .venv/bin/python bench/book_growth.py [--sizes 1000,10000] [--per-branch 1000]
        [--rate-scale 1] [--seconds 10] [--connections 4]

Each size is a fresh database: the sample world, the demo loans valued for real, and a book
of synthetic loans (tests/support/book.py) of ``--per-branch`` loans a branch, each with a
parcel of its own and a valuation. A branch keeps its size as the book grows (1,000 loans:
one branch; 10,000: ten), so what a loan officer reads should cost the same at every size;
the risk desk's whole-book portfolio returns every loan and grows with what it returns.

Reads, each at a fixed rate (``RATES``: open loop, latency from the scheduled send) after a
2 s warm-up, then wrk's closed-loop capacity, the server drained in between:
- reference ``GET /v1/health`` (framework and one query, no auth);
- ``GET /v1/portfolio`` as a loan officer (the branch) and as the risk desk (the book);
- ``GET /v1/loans`` (the branch's loans with their latest valuations);
- ``GET /v1/loans/{id}`` (one loan with its latest valuation);
- the map's pledges: ``GET /v1/parcels?ids=<the branch's pledged parcels>&limit=1000``.
Reported: p50/p99 and capacity per read and size, each read's p99 over the reference's at
the same size, the largest size's p99 over the smallest's, and the server's own peak memory.
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.http_load import load, peak_mb, start_servers, stop_servers, wrk  # noqa: E402
from collateral import auth  # noqa: E402
from tests.support.book import (  # noqa: E402
    add_book,
    branch_of,
    loan_of,
    parcel_of,
    value_demo_loans,
)
from tests.support.databases import fresh_postgres_database  # noqa: E402
from tests.support.world import build_world  # noqa: E402

REFERENCE = "reference GET /v1/health"


def reads(per_branch: int, n_loans: int) -> dict[str, tuple[str, list[str]]]:
    """label -> (whose key, paths): the first branch's officer, or the risk desk."""
    mine = range(min(per_branch, n_loans))
    pledged = ",".join(parcel_of(n) for n in mine)
    return {
        REFERENCE: ("officer", ["/v1/health"]),
        "GET /v1/portfolio (a branch, loan officer)": ("officer", ["/v1/portfolio"]),
        "GET /v1/portfolio (the whole book, risk desk)": ("risk", ["/v1/portfolio"]),
        "GET /v1/loans (a branch)": ("officer", ["/v1/loans"]),
        "GET /v1/loans/{id}": ("officer", [f"/v1/loans/{loan_of(n)}" for n in mine]),
        "GET /v1/parcels?ids= (the map's pledges)": (
            "officer",
            [f"/v1/parcels?ids={pledged}&limit=1000"],
        ),
    }


# Requests a second for each read, as often as a bank's officers would send it: every
# screen reads a loan; a branch's list and portfolio open a few times a minute per officer;
# the map's pledges and the whole book's portfolio rarely. --rate-scale multiplies them.
RATES = {
    REFERENCE: 50,
    "GET /v1/loans/{id}": 50,
    "GET /v1/portfolio (a branch, loan officer)": 5,
    "GET /v1/loans (a branch)": 5,
    "GET /v1/parcels?ids= (the map's pledges)": 2,
    "GET /v1/portfolio (the whole book, risk desk)": 1,
}


def drain(base: str) -> None:
    """Wait until the server answers at once again: an overloaded read's queue must not be
    measured as the next read's latency."""
    for _ in range(600):
        t0 = time.perf_counter()
        httpx2.get(base + "/v1/health", timeout=120)
        if time.perf_counter() - t0 < 0.05:
            return
        time.sleep(0.5)


def one_size(n_loans: int, args) -> dict:
    out: dict = {"loans": n_loans}
    with (
        fresh_postgres_database("agri_bench_book") as url,
        tempfile.TemporaryDirectory(prefix="agri-bench-book-") as folder,
    ):
        data = Path(folder) / "data"
        t0 = time.perf_counter()
        engine = build_world(url, data, datetime.now(UTC) - timedelta(hours=1))
        add_book(engine, n_loans, args.per_branch, value_demo_loans(engine))
        keys = {
            "officer": auth.create_key(engine, "loan_officer", branch_of(0, args.per_branch)),
            "risk": auth.create_key(engine, "risk_admin", None),
        }
        engine.dispose()
        out["setup_s"] = round(time.perf_counter() - t0, 1)
        servers, bases = start_servers(url, data)
        try:
            for label, (who, paths) in reads(args.per_branch, n_loans).items():
                rate = RATES[label] * args.rate_scale
                key = keys[who]
                drain(bases[0])
                asyncio.run(load(bases, key, "GET", paths, rate, args.warm_up))
                row = asyncio.run(load(bases, key, "GET", paths, rate, args.seconds))
                if args.connections:
                    row["wrk_closed_loop"] = wrk(
                        bases[0], key, paths, args.seconds, args.connections
                    )
                out[label] = row
                print(n_loans, label, row, flush=True)
            out["server_peak_mb"] = peak_mb(servers[0])
        finally:
            stop_servers(servers)
    return out


def ratios(sizes: list[dict]) -> dict:
    """Each read's p99 over the reference's at each size, and at the largest size over the
    smallest."""
    labels = [k for k in sizes[0] if isinstance(sizes[0][k], dict)]
    to_reference = {
        label: {
            str(s["loans"]): round(s[label]["p99_ms"] / max(s[REFERENCE]["p99_ms"], 0.1), 2)
            for s in sizes
        }
        for label in labels
    }
    growth = {
        label: round(sizes[-1][label]["p99_ms"] / max(sizes[0][label]["p99_ms"], 0.1), 2)
        for label in labels
    }
    return {"p99_to_reference": to_reference, "p99_largest_to_smallest": growth}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--per-branch", type=int, default=1000)
    parser.add_argument("--rate-scale", type=float, default=1.0, help="times RATES")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warm-up", type=float, default=2)
    parser.add_argument("--connections", type=int, default=4, help="wrk's; 0: no wrk")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "book_growth.json")
    args = parser.parse_args()
    sizes = [one_size(int(n), args) for n in args.sizes.split(",")]
    results = {"per_branch": args.per_branch, "sizes": sizes, **ratios(sizes)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "sizes"}, indent=2))


if __name__ == "__main__":
    main()
