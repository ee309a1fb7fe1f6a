"""Sample data never lands beside live data (issue 18, item 2), on every path that fetches: `run_bronze` (what the
Dagster Bronze step runs, whoever launched it: UI, daemon, schedule, CLI), the Dagster step itself, and an early,
clear stop in `pipeline run` / `pipeline demo`.

The warehouse's `ops.runs.source_mode` says which source wrote its files. A sample run on a warehouse holding live
runs used to write invented rows under `bronze/fmp/...` beside the real ones and exit 0.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import dagster as dg
import pytest

from pipeline.bronze.envelope import file_record
from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.store import BronzeStore
from pipeline.cli.commands import main
from pipeline.fmp.client import FmpClient
from pipeline.ops import file_ingestions, runs
from pipeline.ops.runs import SourceMismatch
from pipeline.orchestration.assets import bronze_key
from pipeline.orchestration.definitions import build_definitions
from pipeline.settings import load_settings
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.support import KEY, KEYMAP, entry, envelope

DAY = dt.date(2025, 6, 27)
EOD = entry("historical-price-eod")


def seed(data_dir: Path, mode: str, files: int = 2) -> Warehouse:
    """A warehouse with one earlier Bronze run of `mode` that wrote `files` files."""
    wh = Warehouse(data_dir / "warehouse.duckdb")
    with wh.transaction() as conn:
        runs.record_run(conn, f"{mode}-run", job=None, source_mode=mode, status="success", files=files, finished=True)
        for _ in range(files):
            env = envelope(EOD.identity.with_ticker("AAPL"), run_id=f"{mode}-run")
            file_ingestions.register_files(conn, [file_record(env, f"x/{env.file_id}.json", EOD.silver.table)])
    return wh


def snapshot(wh: Warehouse) -> list[tuple]:
    with wh.connect() as conn:
        return conn.execute("SELECT run_id, source_mode, files FROM ops.runs ORDER BY run_id").fetchall() + [
            conn.execute("SELECT count(*) FROM ops.file_ingestions").fetchone()
        ]


def bronze_run(data_dir: Path, wh: Warehouse, settings) -> None:
    with FmpClient.from_settings(settings) as client:
        run_bronze(
            entries=[EOD],
            tickers=["AAPL"],
            warehouse=wh,
            store=BronzeStore(data_dir / "bronze"),
            client=client,
            run_id=str(uuid.uuid4()),
            today=DAY,
            fmp_plan=None,
            source_mode=settings.source_mode,
        )


def test_the_sample_source_never_writes_beside_live_data(tmp_path: Path) -> None:
    wh = seed(tmp_path, "fmp")
    before = snapshot(wh)
    sample = load_settings({"PIPELINE_DATA_DIR": str(tmp_path), "PIPELINE_AS_OF": DAY.isoformat()})
    with pytest.raises(SourceMismatch) as info:
        bronze_run(tmp_path, wh, sample)
    assert str(info.value) == (
        f"the warehouse {tmp_path / 'warehouse.duckdb'} holds live FMP data (1 run); the bundled sample source "
        "never writes beside it: set FMP_API_KEY to fetch live data, or point PIPELINE_DATA_DIR at another "
        "folder for the sample data"
    )
    assert snapshot(wh) == before and not (tmp_path / "bronze").exists()


def test_live_data_never_lands_beside_the_demo_s_invented_data(tmp_path: Path) -> None:
    wh = seed(tmp_path, "sample")
    before = snapshot(wh)
    live = load_settings(
        {"PIPELINE_DATA_DIR": str(tmp_path), "FMP_API_KEY": KEY, "FMP_BASE_URL": "http://127.0.0.1:9/stable"}
    )
    with pytest.raises(SourceMismatch) as info:
        bronze_run(tmp_path, wh, live)
    assert str(info.value) == (
        f"the warehouse {tmp_path / 'warehouse.duckdb'} holds the bundled sample source's invented data (1 run); "
        "live FMP data never lands beside it, where an invented number would pass for a real one: point "
        "PIPELINE_DATA_DIR at another folder for live data (or delete this one: it holds nothing but sample data)"
    )
    assert snapshot(wh) == before and not (tmp_path / "bronze").exists()


def test_the_dagster_bronze_step_refuses_too(tmp_path: Path) -> None:
    """The UI, the daemon and the schedule launch the step without `pipeline run`: the guard holds there."""
    data_dir = tmp_path / "data"
    wh = seed(data_dir, "fmp")
    before = snapshot(wh)
    settings = load_settings(
        {"PIPELINE_DATA_DIR": str(data_dir), "PIPELINE_AS_OF": DAY.isoformat(), "PIPELINE_TICKERS": "AAPL"}
    )
    defs = build_definitions(settings, KEYMAP)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        instance.add_dynamic_partitions("tickers", ["AAPL"])
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            instance=instance,
            resources=defs.resources,
            selection=[bronze_key(EOD)],
            partition_key="AAPL",
            raise_on_error=False,
        )
    assert not result.success
    (failure,) = [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
    assert "SourceMismatch: the warehouse" in failure.message and "holds live FMP data (1 run)" in failure.message
    assert snapshot(wh) == before and not (data_dir / "bronze").exists()


def test_pipeline_demo_on_a_live_data_folder_stops_at_once(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(data_dir, "fmp")
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pipeline: source error: the warehouse {data_dir / 'warehouse.duckdb'} holds live FMP")
    assert len(err.splitlines()) == 1 and not (data_dir / "dagster_home").exists()
