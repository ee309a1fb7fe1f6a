"""Benchmark of the FMP client against FakeFmpServer (20 ms latency per request).

Why: the client's two performance promises are that bounded concurrency is actually used (throughput close
to concurrency / latency when nothing throttles) and that the shared limiter runs close to the key's ceiling
without ever crossing it as seen by the *server*. Run with `python -m pipeline_tests.bench.bench_client`
(about 2.5 minutes) or `--quick` (about 15 s, with the rate window scaled from 60 s down to 5 s).

How the rate is measured: a sliding-window limiter sends a full window's worth at once and then waits, so
the rate is measured from the first arrival to the last over a run of `k * limit + 1` requests, i.e. over
exactly k full windows; the result is that rate as a share of the limit.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from pipeline.fmp.client import FmpClient
from pipeline.fmp.ratelimit import RateLimiter
from pipeline_tests.client_helpers import fetch_many
from pipeline_tests.fakes.fmp_server import FakeFmpServer, builtin_data, max_in_window

LATENCY_S = 0.02
CONCURRENCY = 8
KEY = "bench-key"
PATH = "historical-price-eod/full"


@dataclass(frozen=True)
class Row:
    measure: str
    value: str
    target: str
    passed: bool


def _run(server: FakeFmpServer, limiter: RateLimiter, count: int) -> tuple[float, int]:
    """Send `count` requests through fetch_many; return (wall seconds, failures)."""
    with FmpClient(server.base_url, KEY, max_concurrency=CONCURRENCY, limiter=limiter, max_retries=0) as client:
        started = time.monotonic()
        failures = sum(
            1 for _, r in fetch_many(client, ((PATH, {"symbol": "AAPL"}, "json") for _ in range(count))) if not r.ok
        )
        return time.monotonic() - started, failures


def bench_throughput(count: int) -> list[Row]:
    with FakeFmpServer(api_key=KEY, data=builtin_data, latency_s=LATENCY_S) as server:
        elapsed, failures = _run(server, RateLimiter(10**9), count)
    achieved = count / elapsed
    ideal = CONCURRENCY / LATENCY_S
    return [
        Row(f"(a) {count} requests, concurrency {CONCURRENCY}", f"{elapsed:.2f} s, {achieved:.0f} req/s", "", True),
        Row(
            "(a) achieved / ideal (concurrency / latency)",
            f"{achieved / ideal:.2f} (ideal {ideal:.0f} req/s)",
            ">= 0.50",
            achieved / ideal >= 0.5,
        ),
        Row("(a) failed requests", str(failures), "0", failures == 0),
    ]


def bench_rate_limit(limit: int, window_s: float, windows: int) -> list[Row]:
    count = windows * limit + 1
    with FakeFmpServer(
        api_key=KEY, data=builtin_data, latency_s=LATENCY_S, calls_per_minute=limit, window_s=window_s
    ) as server:
        elapsed, failures = _run(server, RateLimiter(limit, window_s=window_s, margin_s=window_s / 120), count)
        times = server.request_times()
        refused = sum(1 for r in server.requests if r.status == 429)
    span = max(times) - min(times)
    rate_per_window = (len(times) - 1) / span * window_s
    share = rate_per_window / limit
    peak = max_in_window(times, window_s)
    unit = "min" if window_s == 60.0 else f"{window_s:g} s (scaled)"
    return [
        Row(
            f"(b) {count} requests at {limit}/{unit}", f"{elapsed:.1f} s", "70-130 s" if window_s == 60.0 else "", True
        ),
        Row("(b) achieved rate / limit", f"{share:.1%} ({rate_per_window:.1f}/{unit})", "90-100%", 0.9 <= share <= 1.0),
        Row(f"(b) max requests in any {window_s:g} s window (server)", str(peak), f"<= {limit}", peak <= limit),
        Row("(b) 429s from the server / failed requests", f"{refused} / {failures}", "0 / 0", refused == failures == 0),
    ]


def print_table(rows: list[Row]) -> None:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("measure", "value", "target")]
    header = ("measure", "value", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  ok"
    print(line)
    print("-" * len(line))
    for r in rows:
        mark = "yes" if r.passed else "NO"
        print("  ".join(v.ljust(w) for v, w in zip((r.measure, r.value, r.target), widths)) + f"  {mark}")


def main(quick: bool = False) -> int:
    if quick:
        rows = bench_throughput(400) + bench_rate_limit(limit=50, window_s=5.0, windows=2)
    else:
        rows = bench_throughput(2000) + bench_rate_limit(limit=600, window_s=60.0, windows=2)
    print_table(rows)
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and a 5 s rate window")
    raise SystemExit(main(quick=parser.parse_args().quick))
