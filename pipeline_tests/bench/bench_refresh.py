"""Requests per ticker per trading day, by dataset: cadence polling (before) against event-driven refresh (after).

Why: issue 19 measured about 5.9 requests per ticker on each day after the first (8.3 averaged over a week) with
every per-ticker dataset on its cadence; event-driven refresh (`pipeline.bronze.refresh`) should leave about one
as-traded bar per ticker plus what the calendars, the filing rhythm and the sweep ask for.

The work: N synthetic tickers (T0001.., the sample source's synthetic companies) from a FakeFmpServer on loopback
serving the sample source as of each day; the shipped keymap. A first day backfills, then D consecutive weekdays
each run like `pipeline run`: the global step (with the calendars) and its Silver promotion, then the per-ticker step
and its Silver promotion, through `run_bronze` and `promote_waiting` (no Dagster: the planner decides what is sent,
and that is what is counted). `before` plans every entry on its cadence without the calendars (main's behaviour),
`after` with the refresh policy (`--sweep-days`, PIPELINE_SWEEP_DAYS, default 28).

    python -m pipeline_tests.bench.bench_refresh --tickers 200 --days 5 [--start 2025-11-03] [--sweep-days 28]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.store import BronzeStore
from pipeline.fmp.sample import SampleSource
from pipeline.silver.promote import promote_waiting
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.bronze.test_bronze import KEYMAP, make_client
from pipeline_tests.fakes.fmp_server import FakeFmpServer
from pipeline_tests.support import KEY


class MarketDay:
    """FakeFmpServer data: a synthetic market as of `as_of` (one SampleSource per day)."""

    def __init__(self, tickers: list[str], as_of: dt.date) -> None:
        self.tickers, self.as_of, self._source = tickers, as_of, None

    def __call__(self, path: str, params):
        if self._source is None or self._source.as_of != self.as_of:
            self._source = SampleSource(self.as_of, self.tickers)
        answer = self._source.respond(path, params)
        return answer.status_code, bytes(answer.body), dict(answer.headers or {})


def weekdays(start: dt.date, n: int) -> list[dt.date]:
    out, day = [], start
    while len(out) < n:
        if day.weekday() < 5:
            out.append(day)
        day += dt.timedelta(days=1)
    return out


def run_arm(arm: str, tickers: list[str], days: list[dt.date], root: Path, sweep_days: int = 28) -> list[dict]:
    """Run the days; per day: requests by path, seconds."""
    entries = list(KEYMAP) if arm == "after" else [e for e in KEYMAP if not e.dataset.endswith("s-calendar")]
    glob, per_ticker = [e for e in entries if not e.per_ticker], [e for e in entries if e.per_ticker]
    warehouse, store = Warehouse(root / "warehouse.duckdb"), BronzeStore(root / "bronze")
    data = MarketDay(tickers, days[0])
    out = []
    with FakeFmpServer(api_key=KEY, data=data) as server:
        for day in days:
            data.as_of = day
            started, first = time.monotonic(), len(server.requests)
            for step in (glob, per_ticker):
                with make_client(server.base_url) as client:
                    run_bronze(
                        entries=step,
                        tickers=tickers if step is per_ticker else [],
                        warehouse=warehouse,
                        store=store,
                        client=client,
                        run_id=str(uuid.uuid4()),
                        today=day,
                        fmp_plan="premium",
                        source_mode="fmp",
                        max_concurrency=8,
                        log_fn=lambda line: None,
                        orphan_entries=entries,
                        sweep_days=sweep_days if arm == "after" else None,
                        universe=lambda conn: tickers,
                    )
                for table in sorted({e.silver.table for e in step}):
                    promote_waiting(warehouse, KEYMAP, table, None, store.root, "bench", lambda line: None)
            paths = Counter(r.path for r in server.requests[first:])
            out.append({"day": day.isoformat(), "seconds": round(time.monotonic() - started, 1), "paths": paths})
            print(f"{arm} {day}: {sum(paths.values())} requests, {out[-1]['seconds']} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickers", type=int, default=200)
    parser.add_argument("--days", type=int, default=5, help="steady-state weekdays after the backfill day")
    parser.add_argument("--start", default="2025-11-03")
    parser.add_argument("--arms", default="before,after")
    parser.add_argument("--sweep-days", type=int, default=28, help="PIPELINE_SWEEP_DAYS of the after arm")
    args = parser.parse_args(argv)
    tickers = [f"T{i:04d}" for i in range(1, args.tickers + 1)]
    days = weekdays(dt.date.fromisoformat(args.start), args.days + 1)
    result: dict[str, list[dict]] = {}
    for arm in args.arms.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bench-refresh-{arm}-") as tmp:
            result[arm] = run_arm(arm, tickers, days, Path(tmp), args.sweep_days)
    print(f"\n{args.tickers} tickers, backfill {days[0]}, then {args.days} weekdays; load {os.getloadavg()}")
    paths = sorted({p for runs in result.values() for r in runs[1:] for p in r["paths"]})
    for arm, runs in result.items():
        steady = runs[1:]
        total = sum(sum(r["paths"].values()) for r in steady)
        print(
            f"{arm}: backfill {sum(runs[0]['paths'].values())} requests ({runs[0]['seconds']} s); steady-state "
            f"{total / len(steady) / args.tickers:.3f} requests per ticker per day, "
            f"{sum(r['seconds'] for r in steady) / len(steady):.1f} s a day"
        )
    print("\nrequests per ticker per trading day (steady-state average), by path:")
    for p in paths:
        cells = []
        for arm, runs in result.items():
            steady = runs[1:]
            cells.append(f"{arm} {sum(r['paths'][p] for r in steady) / len(steady) / args.tickers:7.3f}")
        print(f"  {p:45s} " + "  ".join(cells))
    print(json.dumps({arm: [{**r, "paths": dict(r["paths"])} for r in runs] for arm, runs in result.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
