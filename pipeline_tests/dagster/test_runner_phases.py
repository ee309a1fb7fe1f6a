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
from pipeline.cli.commands import main
from pipeline.cli.runner import CHECKS_NOT_RUN_TRIGGER
from pipeline.ops.file_ingestions import register_files
from pipeline.orchestration.checks import silver_check_defs
from pipeline.warehouse import Warehouse
from pipeline_tests.support import KEYMAP

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


def run(capsys: pytest.CaptureFixture[str], select: str = SELECT) -> tuple[int, str]:
    code = main(["run", "--select", select])
    return code, capsys.readouterr().out


def dagster_runs(data_dir: Path) -> int:
    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        return len(instance.get_runs())


def add_restated_profile(data_dir: Path, ticker: str, **extra: object) -> str:
    """A later fetch of a ticker's profile with a changed value (and `extra` fields), as the next day's Bronze run
    would write."""
    store = BronzeStore(data_dir / "bronze")
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:
        path = conn.execute(
            "SELECT bronze_path FROM ops.file_ingestions WHERE dataset = 'profile' AND ticker = ? "
            "AND can_promote ORDER BY fetched_at DESC LIMIT 1",
            [ticker],
        ).fetchone()[0]
    env = store.read(path)
    content = [{**env.content[0], "price": float(env.content[0].get("price") or 0) + 1.0, **extra}]
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
    assert "==> gold: 1 asset(s)" not in out, out
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


PROFILE_CHECKS = 6  # the Silver checks of one table (pipeline.orchestration.checks.silver_check_defs)


def checks_only_runs(data_dir: Path) -> list[dg.DagsterRun]:
    """The checks-only runs `pipeline run` launched for checks its phases' runs did not evaluate."""
    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        return instance.get_runs(dg.RunsFilter(tags={"pipeline/trigger": CHECKS_NOT_RUN_TRIGGER}))


def test_checks_skipped_in_a_silver_run_run_on_their_own_and_gold_waits_for_them(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two promotions of the same files, as two overlapping runs do: this run sees files waiting, another run
    promotes them first, so this run's Silver step yields nothing and Dagster skips its check step ("skipped
    dependencies"). The Silver step evaluates the run's checks itself (issue 20), and Gold is built only once they
    ran and the ERROR ones passed; when the step cannot evaluate them, the run says so and runs them on their own."""
    import pipeline.cli.runner as runner
    from pipeline.silver.promote import promote_waiting

    code, out = run(capsys)
    assert code == 0, out
    assert checks_only_runs(data_dir) == []  # a run whose check steps ran needs none
    corrupt = False
    waiting = runner.silver_files_waiting

    def promoted_by_another_run(settings, tables, tickers):
        found = waiting(settings, tables, tickers)
        warehouse = Warehouse.from_settings(settings)
        for table in found if tickers is not None else ():
            promote_waiting(warehouse, KEYMAP, table, tickers, settings.bronze_location, "other-run", print)
            if corrupt:  # and that run leaves a row the ledger never inserted
                with warehouse.transaction() as conn:
                    conn.execute(
                        f"INSERT INTO silver.{table} SELECT * REPLACE ('ZZZZ' AS ticker) FROM silver.{table} LIMIT 1"
                    )
        return found

    monkeypatch.setattr(runner, "silver_files_waiting", promoted_by_another_run)
    promote_and_build = "silver/fmp_company_profile,gold/dim_instrument_history"  # the new files are registered
    for ticker in ("AAPL", "MSFT"):
        add_restated_profile(data_dir, ticker)
    code, out = run(capsys, promote_and_build)
    assert code == 0, out
    assert "did not run" not in out and checks_only_runs(data_dir) == [], out
    phase = out.split("==> gold: 1 asset(s)")[0]
    assert f"0 materialization(s), {PROFILE_CHECKS}/{PROFILE_CHECKS} check(s) passed" in phase, out
    keys = [
        dg.AssetCheckKey(dg.AssetKey(["silver", "fmp_company_profile"]), d.name)
        for d in silver_check_defs(KEYMAP, "fmp_company_profile", dt.date.today)
    ]
    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        latest = {k: instance.get_latest_asset_check_evaluation_record(k) for k in keys}
        (silver_run,) = {r.run_id for r in latest.values()}  # evaluated in the Silver run, by its Silver step
        assert instance.get_run_by_id(silver_run).tags.get("pipeline/trigger") != CHECKS_NOT_RUN_TRIGGER
        assert all(r.evaluation.passed for r in latest.values())

    # the same, but the files the other run promoted break an ERROR check: Gold waits, and the exit code says so
    corrupt = True
    for ticker in ("AAPL", "MSFT"):
        add_restated_profile(data_dir, ticker)
    code, out = run(capsys, promote_and_build)
    assert code == 1, out
    assert "failed ERROR check silver/fmp_company_profile reconciliation: silver.fmp_company_profile: " in out, out
    assert "==> gold: skipped, blocked by failures upstream: " in out, out
    assert "silver/fmp_company_profile reconciliation" in out.split("==> gold: skipped")[1], out
    assert "==> gold: 1 asset(s)" not in out, out

    # the checks cannot run on their own either (their step crashes): Gold waits for them, and the run says so
    import pipeline.orchestration.checks as checks

    def unreadable(*args: object) -> None:
        raise RuntimeError("catalog unreachable")

    corrupt = False
    monkeypatch.setattr(checks, "evaluate", unreadable)
    monkeypatch.setattr(checks, "CHECK_RETRY", dg.RetryPolicy(max_retries=0))  # fail now, not after 75 s of retries
    for ticker in ("AAPL", "MSFT"):
        add_restated_profile(data_dir, ticker)
    code, out = run(capsys, promote_and_build)
    assert code == 1, out
    assert "step silver_per_ticker_checks failed: RuntimeError: catalog unreachable" in out, out
    assert f"NOT RUN: {PROFILE_CHECKS} check(s): silver/fmp_company_profile column_types, " in out, out
    blocked = f"==> gold: skipped, blocked by failures upstream: {PROFILE_CHECKS} check(s) that did not run (silver/"
    assert blocked in out, out
    assert "  did not run: silver/fmp_company_profile reconciliation\n" in out, out


def test_a_plain_run_names_its_failed_warn_checks(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A WARN check that fails does not fail the run, but the run names it (not only "5/6 check(s) passed")."""
    select = "bronze/company/profile,silver/fmp_company_profile"
    code = main(["run", "--select", select])
    out = capsys.readouterr().out
    assert code == 0, out
    for ticker in ("AAPL", "MSFT"):  # FMP starts sending a field the keymap does not map
        add_restated_profile(data_dir, ticker, analystRating="buy")
    code = main(["run", "--select", "silver/fmp_company_profile"])
    out = capsys.readouterr().out
    assert code == 0, out
    named = (
        "failed WARN check silver/fmp_company_profile schema_drift: silver.fmp_company_profile: 1 API field(s) not "
        "mapped by the keymap: analystRating"
    )
    phase, summary = out.split("pipeline run: ")[-2:]  # the Silver phase's lines, then the closing summary
    assert named in phase, out
    assert summary.startswith("SUCCESS; asset checks: 5/6 passed") and named in summary, out
