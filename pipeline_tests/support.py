"""What many test modules share: the test API key, the shipped keymap, Bronze envelope builders and the Dagster
end-to-end helpers. Fixtures built from these live in conftest.py files."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from pipeline.bronze.envelope import BronzeEnvelope, RequestInfo, new_file_id
from pipeline.keymap import load_keymap
from pipeline.keymap.model import DatasetIdentity, KeymapEntry
from pipeline.settings import PROJECT_ROOT

KEY = "sk-TEST-9d8c7b6a5e4f3210"  # the FMP key every test uses; no file, row or log line may contain it
KEYMAP = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")


def entry(dataset: str, discriminator: str = "") -> KeymapEntry:
    """The shipped keymap's entry for a dataset (and discriminator)."""
    return next(e for e in KEYMAP if e.dataset == dataset and e.discriminator == discriminator)


def envelope(
    identity: DatasetIdentity,
    content: Any = None,
    *,
    run_id: str = "run-1",
    coverage: tuple[dt.date | None, dt.date | None] = (None, None),
    window: tuple[dt.date | None, dt.date | None] | None = None,
    as_of: dt.date | None = dt.date(2024, 4, 1),
    fetched_at: dt.datetime = dt.datetime(2024, 4, 1, 21, 0, tzinfo=dt.UTC),
    error_class: str | None = None,
    can_promote: bool | None = None,
    rows: int | None = None,
    path: str | None = None,
) -> BronzeEnvelope:
    """A Bronze envelope as the fetch step writes it: a 200 with `content`, or a 500 when `error_class` is set."""
    ok = error_class is None
    content = ([] if ok else None) if content is None else content
    body = json.dumps(content).encode()
    window = coverage if window is None else window
    path = path or identity.dataset
    return BronzeEnvelope(
        file_id=new_file_id(),
        run_id=run_id,
        identity=identity,
        request=RequestInfo(
            path=path,
            url=f"https://fmp.test/stable/{path}",
            params={"symbol": identity.ticker} if identity.ticker else {},
            page=None,
            as_of=as_of,
            window_from=window[0],
            window_to=window[1],
        ),
        fetched_at=fetched_at,
        elapsed_ms=12.5,
        attempts=1,
        status_code=200 if ok else 500,
        headers={},
        body_sha256=hashlib.sha256(body).hexdigest(),
        bytes=len(body),
        content_format="json",
        content=content,
        row_count=(len(content) if isinstance(content, list) else 1) if rows is None else rows,
        coverage_from=coverage[0],
        coverage_to=coverage[1],
        error_class=error_class,
        error_message=None if ok else "server error",
        can_promote=ok if can_promote is None else can_promote,
    )


def eod_row(ticker: str, date: str | None, close: Any, **extra: Any) -> dict[str, Any]:
    """One `/historical-price-eod/full` row as FMP sends it, flat at `close`, with `extra` fields on top."""
    return {
        "symbol": ticker,
        "date": date,
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "volume": 1000,
        "change": 0.0,
        "changePercent": 0.0,
        "vwap": close,
        **extra,
    }


# ---- Dagster end-to-end ------------------------------------------------------------------------------------

E2E_AS_OF = "2026-11-20"
E2E_TICKERS = ["AAPL", "MSFT", "NVDA"]


def make_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a Dagster end-to-end test: its own data folder, a fixed day, three tickers."""
    env = {
        "PIPELINE_DATA_DIR": str(tmp_path / "data"),
        "PIPELINE_AS_OF": E2E_AS_OF,
        "PIPELINE_TICKERS": ",".join(E2E_TICKERS),
    }
    env.update(extra)
    return env


def materialize(defs: dg.Definitions, instance: dg.DagsterInstance, keys, tags: dict | None = None):
    """Materialize a selection (assets and their checks) in-process, as `pipeline run` does."""
    return dg.materialize(
        [*defs.assets, *defs.asset_checks],
        instance=instance,
        resources=defs.resources,
        selection=keys,
        tags=tags or {},
        raise_on_error=False,
    )


def range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


# Environment variables the product reads: tests that call `pipeline.cli.main` in-process unset them all first.
PRODUCT_ENV_VARS = (
    "FMP_API_KEY",
    "FMP_BASE_URL",
    "FMP_PLAN",
    "FMP_CALLS_PER_MINUTE",
    "FMP_BANDWIDTH_30D",
    "FMP_DAILY_REQUEST_CAP",
    "FMP_DAILY_BYTE_CAP",
    "PIPELINE_SOURCE",
    "PIPELINE_DATA_DIR",
    "PIPELINE_KEYMAP",
    "PIPELINE_AS_OF",
    "PIPELINE_TICKERS",
    "PIPELINE_SAMPLE_MARKET",
    "PIPELINE_SWEEP_DAYS",
    "DAGSTER_HOME",
)


# ---- `pipeline` in a subprocess ----------------------------------------------------------------------------


def pipeline_cmd(*args: str) -> list[str]:
    """The installed `pipeline` command (as a user runs it), else the module, with `args`."""
    script = Path(sys.executable).with_name("pipeline")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "pipeline.cli.commands", *args]


def cli_env(base_url: str, data_dir: Path, tickers: str, as_of: str, **extra: str) -> dict[str, str]:
    """The environment of a `pipeline` subprocess against a loopback fake FMP at `base_url`.

    The caller's environment without the product's and Dagster's own variables, the rate limit lifted (the fake
    has none), DAGSTER_HOME under the data folder, and `extra` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "FMP_", "DAGSTER_"))}
    env.update(
        {
            "FMP_API_KEY": KEY,
            "FMP_BASE_URL": base_url,
            "FMP_CALLS_PER_MINUTE": "100000",
            "PIPELINE_TICKERS": tickers,
            "PIPELINE_AS_OF": as_of,
            "PIPELINE_DATA_DIR": str(data_dir),
            "DAGSTER_HOME": str(data_dir / "dagster_home"),
            "PYTHONUNBUFFERED": "1",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            **extra,
        }
    )
    return env


def wait_all(procs: list[subprocess.Popen], timeout_s: float) -> list[int]:
    """The exit codes of `procs` (started with start_new_session=True); whatever is still running when waiting
    stops, by timeout or error, is killed with its whole process group so no run outlives the test."""
    try:
        return [p.wait(timeout=timeout_s) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
