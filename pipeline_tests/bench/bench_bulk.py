"""Requests and bytes of a daily price refresh with and without the bulk path (issue 19 item 2).

    python -m pipeline_tests.bench.bench_bulk                 # the 10 sample tickers, the shipped keymap
    python -m pipeline_tests.bench.bench_bulk --tickers 200   # 200 synthetic tickers, the daily price entries only

The sample source through the loopback fake FMP server, a first run (the backfill) on 2025-11-10 and the next
trading day, on Premium (no bulk: per-ticker requests) and on Ultimate (eod-bulk replaces the daily as-traded
requests). Prints, per plan and day, the requests by path, the bytes on the wire (gzip) and decoded, and the ledger
rows (a bulk day adds one derived per-ticker file per ticker, without a request).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.store import BronzeStore
from pipeline.fmp.client import FmpClient
from pipeline.fmp.ratelimit import RateLimiter
from pipeline.fmp.sample import SAMPLE_TICKERS, SampleSource
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data
from pipeline_tests.support import KEY, KEYMAP

DAYS = (dt.date(2025, 11, 10), dt.date(2025, 11, 11))


def measure(tickers: list[str], entries: list, plan: str) -> list[dict]:
    root = Path(tempfile.mkdtemp(prefix="bench-bulk-"))
    warehouse, store = Warehouse(root / "warehouse.duckdb"), BronzeStore(root / "bronze")
    out = []
    with FakeFmpServer(api_key=KEY, data=sample_data(SampleSource(DAYS[-1], tickers)), plan=plan) as server:
        for day in DAYS:
            start, began = len(server.requests), time.monotonic()
            with FmpClient(server.base_url, KEY, limiter=RateLimiter(1_000_000)) as client:
                run_bronze(
                    entries=entries,
                    tickers=tickers,
                    warehouse=warehouse,
                    store=store,
                    client=client,
                    run_id=str(uuid.uuid4()),
                    today=day,
                    fmp_plan=plan,
                    source_mode="fmp",
                    max_concurrency=4,
                )
            sent = server.requests[start:]
            with warehouse.connect() as conn:
                decoded, rows = conn.execute(
                    "SELECT coalesce(sum(bytes), 0), count(*) FROM ops.file_ingestions WHERE as_of = ?", [day]
                ).fetchone()
            out.append(
                {
                    "plan": plan,
                    "day": day,
                    "requests": len(sent),
                    "by_path": collections.Counter(r.path for r in sent),
                    "wire_bytes": sum(r.body_bytes for r in sent),
                    "decoded_bytes": decoded,
                    "ledger_rows": rows,
                    "seconds": time.monotonic() - began,
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=0, help="synthetic tickers (0: the sample's, full keymap)")
    args = parser.parse_args()
    if args.tickers:
        tickers = [f"T{i:04d}" for i in range(args.tickers)]
        entries = [e for e in KEYMAP if e.discriminator == "non-split-adjusted" or e.dataset == "eod-bulk"]
    else:
        tickers, entries = list(SAMPLE_TICKERS), list(KEYMAP)
    print(f"{len(tickers)} tickers, {len(entries)} keymap entries")
    print("plan      day         requests  wire bytes  decoded bytes  ledger rows  seconds  by path")
    for plan in ("premium", "ultimate"):
        for r in measure(tickers, entries, plan):
            paths = ", ".join(f"{p} {n}" for p, n in sorted(r["by_path"].items()))
            print(
                f"{r['plan']:<9} {r['day']}  {r['requests']:>8}  {r['wire_bytes']:>10}  {r['decoded_bytes']:>13}  "
                f"{r['ledger_rows']:>11}  {r['seconds']:>7.1f}  {paths}"
            )


if __name__ == "__main__":
    main()
