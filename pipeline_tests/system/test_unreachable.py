"""An FMP API that cannot be reached at all (no network, a wrong FMP_BASE_URL): the run stops within seconds and says
so, instead of trying every planned request five times (issue 18, item 8).

`run_bronze` goes over real sockets with the production client settings (4 retries, backoff from 1 s) to a closed
loopback port (connection refused at once) and to a non-routable address (no answer: each attempt lasts the client's
timeout, short here); `pipeline run` itself is checked for the message, the missing step retry and the phases it
does not start.
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.planner import plan
from pipeline.bronze.store import BronzeStore
from pipeline.fmp.client import UNREACHABLE_AFTER, FmpClient
from pipeline.fmp.ratelimit import RateLimiter
from pipeline.ops.runs import get_run
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.support import KEY, cli_env, entry, pipeline_cmd

DAY = dt.date(2025, 6, 27)
TICKERS = ["AAPL", "MSFT", "NVDA", "JPM", "XOM", "JNJ", "KO", "PG"]
ENTRIES = [entry("historical-price-eod"), entry("profile"), entry("dividends"), entry("splits")]
CONCURRENCY = 8
NON_ROUTABLE = "http://[100::1]/stable"  # RFC 6666 discard prefix: nothing answers (or no route at all)
SHORT_TIMEOUT_S = 1.0
DEADLINE_S = 5.0  # after the unanswered attempts themselves


def closed_port_url() -> str:
    """A loopback URL where nothing listens: every connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/stable"


@pytest.mark.parametrize(
    "where,timeout_s", [("closed port", 30.0), ("non-routable", SHORT_TIMEOUT_S)], ids=["closed-port", "non-routable"]
)
def test_an_unreachable_api_stops_the_fetch_within_seconds(tmp_path: Path, where: str, timeout_s: float) -> None:
    base_url = closed_port_url() if where == "closed port" else NON_ROUTABLE
    planned = sum(len(d.requests) for d in plan(ENTRIES, TICKERS, {}, DAY, None) if d.due)
    assert planned > 3 * UNREACHABLE_AFTER
    warehouse, store = Warehouse(tmp_path / "warehouse.duckdb"), BronzeStore(tmp_path / "bronze")
    run_id = str(uuid.uuid4())
    started = time.monotonic()
    with FmpClient(
        base_url, KEY, timeout_s=timeout_s, max_concurrency=CONCURRENCY, limiter=RateLimiter(100_000)
    ) as client:
        report = run_bronze(
            entries=ENTRIES,
            tickers=TICKERS,
            warehouse=warehouse,
            store=store,
            client=client,
            run_id=run_id,
            today=DAY,
            fmp_plan=None,
            source_mode="fmp",
            max_concurrency=CONCURRENCY,
        )
    elapsed = time.monotonic() - started
    print(f"{where}: stopped after {elapsed:.1f} s; {report.stop.reason if report.stop else 'no stop'}")
    assert elapsed < timeout_s + DEADLINE_S

    assert report.stop is not None and report.stop.kind == "not_sent_api_unreachable"
    assert f"the FMP API at {base_url} is unreachable" in report.stop.reason
    assert "last: " in report.stop.reason and KEY not in report.stop.reason
    written = [store.read(rel) for rel in store.iter_files()]
    assert len(written) < 2 * CONCURRENCY  # what was in flight when the stop came; the rest was not sent
    assert all(env.error_class == "transport" and not env.can_promote for env in written)
    assert sum(env.attempts for env in written) <= UNREACHABLE_AFTER + 2 * CONCURRENCY
    not_sent = sum(r.skipped["not_sent_api_unreachable"] for r in report.entries.values())
    assert not_sent + len(written) == planned
    with warehouse.connect() as conn:  # the error envelopes written are registered
        ledger = {r[0] for r in conn.execute("SELECT file_id FROM ops.file_ingestions").fetchall()}
        assert ledger == {env.file_id for env in written}
        assert get_run(conn, run_id)["status"] == "partial"


@pytest.mark.slow
def test_pipeline_run_says_the_api_is_unreachable_and_stops(tmp_path: Path) -> None:
    base_url = closed_port_url()
    data_dir = tmp_path / "data"
    select = "bronze/market/treasury-rates,bronze/prices/historical-price-eod,silver/fmp_price_eod"
    started = time.monotonic()
    proc = subprocess.run(
        pipeline_cmd("run", "--select", select),
        env=cli_env(base_url, data_dir, ",".join(TICKERS), DAY.isoformat()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    out = proc.stdout + proc.stderr
    print(f"pipeline run ended after {elapsed:.1f} s with exit {proc.returncode}")
    assert proc.returncode == 1, out[-3000:]
    assert elapsed < 40, "a Dagster step retry (30 s) or a second Bronze phase ran"
    assert f"the FMP API at {base_url} is unreachable" in out
    assert "the step is retried later" not in out and "RETRY" not in out
    assert "==> per-ticker datasets: skipped" in out, out[-3000:]  # nothing more is sent
    assert KEY not in out
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        files, transport = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE error_class = 'transport') FROM ops.file_ingestions"
        ).fetchone()
    assert files == transport == len(list(BronzeStore(data_dir / "bronze").iter_files())) > 0
