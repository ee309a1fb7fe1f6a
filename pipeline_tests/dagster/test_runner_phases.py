"""`pipeline run` launches only the phases that have work, says which it skipped and why, and its exit code
stays truthful.

Real Dagster runs on a real instance in tmp, the bundled sample source, two tickers and a small selection
that has every kind of phase: global Bronze and Silver, per-ticker Bronze and Silver, Gold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest

from pipeline.bronze.envelope import file_record, new_file_id
from pipeline.bronze.store import BronzeStore
from pipeline.cli import main
from pipeline.ops.file_ingestions import register_files
from pipeline.warehouse import Warehouse

SELECT = (
    "bronze/market/treasury-rates,silver/fmp_treasury_rates,bronze/company/profile,silver/fmp_company_profile,"
    "gold/dim_instrument_history"
)


@pytest.fixture
def data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared empty data dir, for two sample tickers as of a fixed day."""
    monkeypatch.setenv("PIPELINE_TICKERS", "AAPL,MSFT")
    monkeypatch.setenv("PIPELINE_AS_OF", "2025-06-27")
    return data_dir


def run(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["run", "--select", SELECT])
    return code, capsys.readouterr().out


def dagster_runs(data_dir: Path) -> int:
    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        return len(instance.get_runs())


def add_restated_profile(data_dir: Path, ticker: str) -> str:
    """A later fetch of a ticker's profile with a changed value, as the next day's Bronze run would write."""
    store = BronzeStore(data_dir / "bronze")
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:
        path = conn.execute(
            "SELECT bronze_path FROM ops.file_ingestions WHERE dataset = 'profile' AND ticker = ? "
            "AND can_promote ORDER BY fetched_at DESC LIMIT 1",
            [ticker],
        ).fetchone()[0]
    env = store.read(path)
    content = [{**env.content[0], "price": float(env.content[0].get("price") or 0) + 1.0}]
    later = dataclasses.replace(
        env, file_id=new_file_id(), fetched_at=env.fetched_at + dt.timedelta(hours=1), content=content
    )
    stored = store.write(later, journal="tests")
    store.close_journal("tests")
    with Warehouse(data_dir / "warehouse.duckdb").transaction() as conn:
        register_files(conn, [file_record(later, stored.relative, "fmp_company_profile", stored.md5)])
    return later.file_id


def test_a_run_with_nothing_new_skips_silver_and_gold_and_says_why(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = run(capsys)
    assert code == 0, out
    assert "==> global datasets: silver: 1 asset(s)" in out and "==> gold: 1 asset(s)" in out, out
    assert "==> per-ticker datasets: silver (" in out
    first_runs = dagster_runs(data_dir)

    # nothing due, nothing fetched: only the two Bronze runs are launched
    code, out = run(capsys)
    assert code == 0, out
    assert (
        "==> global datasets: silver: skipped, nothing to do: no Bronze file is waiting for silver.fmp_treasury_rates"
        in out
    )
    assert (
        "==> per-ticker datasets: silver: skipped, nothing to do: no Bronze file is waiting for "
        "silver.fmp_company_profile"
    ) in out
    assert "==> gold: skipped, nothing to do: no Silver input moved since the last successful build" in out
    assert "==> gold: 1 asset(s)" not in out
    assert dagster_runs(data_dir) == first_runs + 2

    # one new Bronze file for one ticker: its Silver phase and Gold run again, the global Silver phase does not
    new_file = add_restated_profile(data_dir, "AAPL")
    code, out = run(capsys)
    assert code == 0, out
    assert "waiting for Silver: 1 file(s) for fmp_company_profile" in out
    assert "==> per-ticker datasets: silver (" in out and "==> gold: 1 asset(s)" in out
    assert "==> global datasets: silver: skipped, nothing to do" in out
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:
        assert conn.execute(
            "SELECT silver_status FROM ops.file_ingestions WHERE file_id = ?", [new_file]
        ).fetchone() == ("promoted",)

    # a new Bronze file edited on disk before its promotion (issue 18): the run names it as quarantined, promotes
    # nothing of it, and the next run fetches that profile again
    edited = add_restated_profile(data_dir, "MSFT")
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:
        (edited_path,) = conn.execute(
            "SELECT bronze_path FROM ops.file_ingestions WHERE file_id = ?", [edited]
        ).fetchone()
    bronze_file = data_dir / "bronze" / edited_path
    doc = json.loads(bronze_file.read_bytes())
    doc["content"][0]["price"] = 999999
    bronze_file.write_bytes(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())
    code, out = run(capsys)
    assert code == 0, out
    assert f"quarantined {edited_path}: the file changed after it was written" in out, out
    assert "==> gold: skipped, nothing to do" in out
    code, out = run(capsys)
    assert code == 0, out
    assert "waiting for Silver: 1 file(s) for fmp_company_profile" in out  # the refetch
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:
        assert conn.execute("SELECT price FROM silver.fmp_company_profile WHERE ticker = 'MSFT'").fetchone()[0] < 999999

    # a Silver phase that fails blocks Gold, and the exit code says so
    import pipeline.silver.promote as promote

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    add_restated_profile(data_dir, "MSFT")
    monkeypatch.setattr(promote, "promote_files", broken)
    code, out = run(capsys)
    assert code == 1, out
    assert "==> gold: skipped, blocked by failures upstream: per-ticker datasets: silver" in out
