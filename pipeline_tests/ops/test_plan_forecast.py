"""`pipeline plan` and the budget lines of `pipeline status`, on a small real warehouse (sample source, three
tickers, a keymap of four datasets).

The warehouse holds one Bronze day (`run_bronze` through the bundled sample source); the forecast is asked for the
next day, and that next day is then really fetched and compared with what was forecast. No network, no Dagster.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.bronze.budget import FALLBACK_BYTES_PER_WINDOW_DAY
from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.planner import split_window
from pipeline.bronze.store import BronzeStore
from pipeline.cli.commands import main
from pipeline.cli.forecast import forecasts, plan_report
from pipeline.cli.status import status
from pipeline.fmp.client import FmpClient
from pipeline.keymap import load_keymap
from pipeline.ops.reader import EXIT_BUSY, EXIT_NOTHING, EXIT_OK
from pipeline.settings import PROJECT_ROOT, Settings, load_settings
from pipeline.warehouse.connection import Warehouse

DAY_ONE, DAY_TWO = "2024-06-27", "2024-06-28"
TICKERS = "AAPL,MSFT,NVDA"
ASSETS = ("historical-price-eod", "historical-price-eod__non-split-adjusted", "treasury-rates", "profile")
EOD_LINE = "prices/historical-price-eod "
NON_SPLIT_LINE = "prices/historical-price-eod [non-split-adjusted]"


def small_keymap(folder: Path) -> Path:
    """The shipped keymap with only ASSETS: the forecast covers exactly what the warehouse fetches."""
    doc = yaml.safe_load((PROJECT_ROOT / "dataset_keymap.yaml").read_text())
    keep = {a.split("__")[0] + "|" + (a.split("__") + [""])[1] for a in ASSETS}
    doc["datasets"] = [d for d in doc["datasets"] if f"{d['dataset']}|{d.get('discriminator') or ''}" in keep]
    path = folder / "keymap.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def make_settings(data_dir: Path, as_of: str, **env: str) -> Settings:
    return load_settings(
        {
            "PIPELINE_DATA_DIR": str(data_dir),
            "PIPELINE_KEYMAP": str(data_dir / "keymap.yaml"),
            "PIPELINE_AS_OF": as_of,
            "PIPELINE_TICKERS": TICKERS,
            "PIPELINE_SOURCE": "sample",
            **env,
        }
    )


def fetch_day(settings: Settings, run_id: str) -> None:
    with FmpClient.from_settings(settings) as client:
        run_bronze(
            entries=load_keymap(settings.keymap_path).entries,
            tickers=settings.tickers,
            warehouse=Warehouse(settings.warehouse_path),
            store=BronzeStore(settings.bronze_dir),
            client=client,
            run_id=run_id,
            today=settings.today(),
            fmp_plan=None,
            source_mode="sample",
        )


def new_lake(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    small_keymap(folder)
    fetch_day(make_settings(folder, DAY_ONE), "day-one")
    return folder


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_lake(tmp_path_factory.mktemp("plan"))


def ledger_totals(settings: Settings, run_id: str | None = None) -> tuple[int, int]:
    with Warehouse(settings.warehouse_path).reader() as conn:
        return conn.execute(
            "SELECT count(*), sum(greatest(bytes, wire_bytes)) FROM ops.file_ingestions "
            "WHERE coalesce(?, run_id) = run_id",
            [run_id],
        ).fetchone()


def rows(text: str) -> dict[str, list[str]]:
    """The forecast table: dataset -> its other cells (priority, requests, est. bytes in two, estimate, deferred)."""
    out = {}
    for line in text.splitlines():
        if line.startswith(("prices/", "market/", "company/")):
            name = NON_SPLIT_LINE if line.startswith(NON_SPLIT_LINE) else line.split()[0]
            out[name] = line[len(name) :].split()
    return out


def report(settings: Settings, **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    return plan_report(settings, out=out, **kwargs), out.getvalue()


def test_plan_prints_the_next_run_per_dataset_with_bytes_and_minutes(lake: Path) -> None:
    settings = make_settings(lake, DAY_TWO, FMP_PLAN="premium")
    code, text = report(settings)
    assert code == EXIT_OK, text
    files, spent = ledger_totals(settings)
    assert "rate: 750 calls per minute (FMP_PLAN=premium)" in text
    assert "of 50.0 GB (FMP_PLAN=premium)" in text
    assert f": {files:,} request(s), " in text  # today's requests, from the ledger
    due = rows(text)
    # the daily datasets are due again, the weekly profile is not; each with its priority and estimate basis
    assert list(due) == [EOD_LINE.strip(), NON_SPLIT_LINE, "market/treasury-rates"]
    assert [cells[0] for cells in due.values()] == ["prices", "prices", "other"]
    assert [cells[1] for cells in due.values()] == ["3", "3", "1"]
    assert all(cells[4] == "history" for cells in due.values())
    [total] = [line for line in text.splitlines() if line.startswith("total")]
    assert total.split()[1] == "7"  # 3 + 3 tickers, 1 treasury window
    assert "At 750 calls per minute the requests take 0.0 min" in text
    assert "The request budget pays for all of it." in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_the_forecast_matches_what_the_next_day_really_costs(tmp_path: Path) -> None:
    lake = new_lake(tmp_path / "lake")
    settings = make_settings(lake, DAY_TWO)
    with Warehouse(settings.warehouse_path).reader() as conn:
        [forecast] = forecasts(settings, conn)
    fetch_day(settings, "day-two")
    files, spent = ledger_totals(settings, "day-two")
    assert files == forecast.requests == 7
    assert 0.5 * spent <= forecast.bytes <= 2 * spent, (forecast.bytes, spent)


def test_a_daily_cap_shows_what_the_budget_would_defer(lake: Path) -> None:
    files, _ = ledger_totals(make_settings(lake, DAY_TWO))
    settings = make_settings(lake, DAY_TWO, FMP_PLAN="premium", FMP_DAILY_REQUEST_CAP=str(files + 3))
    code, text = report(settings)
    assert code == EXIT_OK
    deferred = {name: cells[-1] for name, cells in rows(text).items() if name.startswith("prices/")}
    assert deferred == {EOD_LINE.strip(): "-", NON_SPLIT_LINE: "3"}  # the split-adjusted bars come first
    assert "defers 4 request(s) to a later run: the daily request cap (FMP_DAILY_REQUEST_CAP" in " ".join(text.split())


def test_plans_side_by_side_as_json(lake: Path, data_dir: Path, monkeypatch, capsys) -> None:
    for name, value in (("PIPELINE_KEYMAP", lake / "keymap.yaml"), ("PIPELINE_AS_OF", DAY_TWO)):
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("PIPELINE_DATA_DIR", str(lake))
    monkeypatch.setenv("PIPELINE_TICKERS", TICKERS)
    monkeypatch.setenv("PIPELINE_SOURCE", "sample")
    assert main(["plan", "--plans", "starter,premium,ultimate", "--json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    by_plan = {f["plan"]: f for f in doc["forecasts"]}
    assert list(by_plan) == ["starter", "premium", "ultimate"]
    assert {p: f["calls_per_minute"] for p, f in by_plan.items()} == {"starter": 300, "premium": 750, "ultimate": 3000}
    starter, ultimate = by_plan["starter"], by_plan["ultimate"]
    assert starter["requests"] == ultimate["requests"] == 7 and starter["bytes"] > 0
    assert starter["minutes"] == pytest.approx(7 / 300, abs=0.01) and ultimate["minutes"] == pytest.approx(
        7 / 3000, abs=0.01
    )
    assert starter["bandwidth_share"] == pytest.approx(starter["bytes"] / 20e9, rel=1e-3)  # bytes are rounded
    assert doc["used"]["requests_today"] == ledger_totals(make_settings(lake, DAY_TWO))[0]
    assert main(["plan", "--plans", "premium,gold"]) == 2
    assert "pipeline: configuration error: --plans: 'gold' is not a plan" in capsys.readouterr().err


def test_a_dataset_without_history_is_estimated_with_the_fallback(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    small_keymap(folder)
    settings = make_settings(folder, DAY_TWO)
    with Warehouse(settings.warehouse_path).connect():
        pass  # a migrated warehouse, no file yet
    code, text = report(settings)
    assert code == EXIT_OK and "fallback" in text
    with Warehouse(settings.warehouse_path).reader() as conn:
        [forecast] = forecasts(settings, conn)
    eod = next(d for d in forecast.datasets if d.dataset == EOD_LINE.strip())
    entry = next(e for e in load_keymap(settings.keymap_path) if e.asset_name == "historical-price-eod")
    days = sum(
        (b - a).days + 1
        for a, b in split_window(
            entry.recipe.history_start, dt.date.fromisoformat(DAY_TWO), entry.recipe.max_window_days
        )
    )
    assert not eod.from_history and eod.bytes == 3 * days * FALLBACK_BYTES_PER_WINDOW_DAY


def test_status_shows_the_bandwidth_and_todays_requests_against_the_plan(lake: Path) -> None:
    settings = make_settings(lake, DAY_TWO, FMP_PLAN="basic")
    files, spent = ledger_totals(settings)
    out = io.StringIO()
    assert status(settings, show_plan=False, out=out) == EXIT_OK
    text = out.getvalue()
    assert "of 500.0 MB (FMP_PLAN=basic)" in text
    assert f"{files:,} request(s) of 250 (FMP_PLAN=basic)" in text


def test_plan_is_read_only_busy_and_missing_like_status(lake: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "nothing", DAY_TWO, PIPELINE_KEYMAP=str(lake / "keymap.yaml"))
    code, text = report(settings)
    assert code == EXIT_NOTHING and "pipeline demo" in text and not (tmp_path / "nothing").exists()
    settings = make_settings(lake, DAY_TWO)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, time\n"
            f"c = duckdb.connect({str(settings.warehouse_path)!r})\nprint('held', flush=True)\ntime.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert report(settings)[0] == EXIT_BUSY
    finally:
        holder.kill()
        holder.wait()
