"""`pipeline status` and `pipeline coverage` against a small real warehouse (sample source, two tickers).

The warehouse is built once per module the way runs build it: Bronze through `run_bronze` with the bundled
sample source, then Silver through `promote_files`. Then holes are punched into Silver so that coverage has
real gaps to find. Busy behaviour is tested with a second *process* holding the file read-write, because
that is the situation DuckDB refuses readers in (DESIGN section 9).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.store import BronzeStore
from pipeline.cli.status import status
from pipeline.fmp.client import FmpClient
from pipeline.keymap import load_keymap
from pipeline.ops import file_ingestions
from pipeline.ops.coverage import coverage
from pipeline.ops.coverage.gaps import trading_days
from pipeline.ops.reader import EXIT_BUSY, EXIT_NOTHING, EXIT_OK
from pipeline.settings import Settings, load_settings
from pipeline.silver.promote import promote_files
from pipeline.silver.replay import replay
from pipeline.warehouse.connection import Warehouse

AS_OF = "2024-06-28"
TICKERS = "AAPL,MSFT"
RUN_ONE = "11111111-aaaa-4000-8000-000000000001"
RUN_TWO = "22222222-bbbb-4000-8000-000000000002"
ASSETS = ("historical-price-eod", "income-statement__quarter", "treasury-rates")


def make_settings(data_dir: Path, as_of: str = AS_OF) -> Settings:
    return load_settings({"PIPELINE_DATA_DIR": str(data_dir), "PIPELINE_AS_OF": as_of, "PIPELINE_TICKERS": TICKERS})


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two Bronze runs (the second finds nothing due), Silver promoted, then an EOD hole and a missing quarter."""
    data_dir = tmp_path_factory.mktemp("status_cov")
    settings = make_settings(data_dir)
    keymap = load_keymap(settings.keymap_path)
    entries = [e for e in keymap.entries if e.asset_name in ASSETS]
    wh = Warehouse(settings.warehouse_path)
    store = BronzeStore(settings.bronze_dir)
    for run_id in (RUN_ONE, RUN_TWO):
        with FmpClient.from_settings(settings) as client:
            run_bronze(
                entries=entries,
                tickers=settings.tickers,
                warehouse=wh,
                store=store,
                client=client,
                run_id=run_id,
                today=settings.today(),
                fmp_plan=None,
                source_mode="sample",
                job="test",
            )
    with wh.transaction() as conn:
        for table in sorted({e.silver.table for e in entries}):
            promote_files(
                conn,
                keymap,
                table,
                file_ingestions.promotable_files(conn, tables=[table]),
                settings.bronze_dir,
                "silver-run-1",
            )
        conn.execute("""
            DELETE FROM silver.fmp_price_eod
            WHERE ticker = 'AAPL' AND date BETWEEN '2024-03-04' AND '2024-03-08'
        """)
        fy, period = conn.execute("""
            SELECT fiscal_year, period FROM silver.fmp_income_statement
            WHERE ticker = 'MSFT' AND period LIKE 'Q%'
            ORDER BY date
            LIMIT 1 OFFSET 3
        """).fetchone()
        conn.execute(
            "DELETE FROM silver.fmp_income_statement WHERE ticker = 'MSFT' AND fiscal_year = ? AND period = ?",
            [fy, period],
        )
    return {"settings": settings, "data_dir": data_dir, "missing_quarter": f"FY{fy} {period}"}


def run_status(settings: Settings, **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    return status(settings, out=out, **kwargs), out.getvalue()


def run_coverage(settings: Settings, **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    return coverage(settings, out=out, **kwargs), out.getvalue()


# ---- status ---------------------------------------------------------------------------------------------------


def test_status_lists_runs_newest_first(warehouse: dict) -> None:
    code, text = run_status(warehouse["settings"], show_plan=False)
    assert code == EXIT_OK
    assert text.index(RUN_TWO[:8]) < text.index(RUN_ONE[:8])
    assert "nothing due" in text  # the second run says why it fetched nothing
    assert max(len(line) for line in text.splitlines()) <= 100


def test_status_run_shows_its_files_by_prefix(warehouse: dict) -> None:
    code, text = run_status(warehouse["settings"], run_id=RUN_ONE[:6])
    assert code == EXIT_OK
    assert f"Run {RUN_ONE}" in text
    eod = [line for line in text.splitlines() if line.startswith("historical-price-eod")]
    assert {line.split()[1] for line in eod} == {"AAPL", "MSFT"}
    assert all(" 200 " in line and "ok " in line for line in eod)  # status code and Silver counts
    assert max(len(line) for line in text.splitlines()) <= 100


def test_status_run_unknown_or_ambiguous(warehouse: dict) -> None:
    assert run_status(warehouse["settings"], run_id="zz")[0] == EXIT_NOTHING
    code, text = run_status(warehouse["settings"], run_id="")  # empty: falls back to the overview
    assert code == EXIT_OK


def test_due_next_explains_not_due(warehouse: dict) -> None:
    code, text = run_status(warehouse["settings"])
    assert code == EXIT_OK
    assert "prices/historical-price-eod: 0 due (0 request(s)), 2 not due" in text
    block = text[text.index("prices/historical-price-eod") :]
    assert "not due: last good fetch for 2024-06-28 is 0 day(s) old, min_age_days=1" in " ".join(block.split())
    assert "market/treasury-rates: not due" in text  # a global entry: one line


def test_due_next_explains_due(warehouse: dict) -> None:
    later = make_settings(warehouse["data_dir"], as_of="2024-07-03")
    code, text = run_status(later)
    assert code == EXIT_OK
    assert "prices/historical-price-eod: 2 due (2 request(s)), 0 not due" in text
    assert "incremental from 2024-06-21" in " ".join(text.split())


def test_status_is_busy_while_another_process_writes(warehouse: dict) -> None:
    settings = warehouse["settings"]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"c = duckdb.connect({str(settings.warehouse_path)!r})\nprint('held', flush=True)\ntime.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        env = {
            **os.environ,
            "PIPELINE_DATA_DIR": str(settings.data_dir),
            "PIPELINE_AS_OF": AS_OF,
            "PIPELINE_TICKERS": TICKERS,
        }
        env.pop("FMP_API_KEY", None)
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.cli.commands", "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert proc.returncode == EXIT_BUSY, proc.stderr
        assert time.monotonic() - started < 10
        assert "being written by a run" in proc.stderr and "Traceback" not in proc.stderr
        assert run_coverage(settings)[0] == EXIT_BUSY  # coverage shares the behaviour
    finally:
        holder.kill()
        holder.wait()


def test_missing_warehouse_says_how_to_create_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "nothing")
    code, text = run_status(settings)
    assert code == EXIT_NOTHING and "pipeline demo" in text
    assert not (tmp_path / "nothing").exists()  # read-only: creates nothing


def test_status_never_migrates_an_empty_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    duckdb.connect(str(settings.warehouse_path)).close()
    assert run_status(settings)[0] == EXIT_NOTHING
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        schemas = conn.execute("SELECT schema_name FROM information_schema.schemata").fetchall()
    assert ("ops",) not in schemas


# ---- coverage ---------------------------------------------------------------------------------------------------


def test_trading_calendar_skips_holidays_only() -> None:
    days = {d.item() for d in trading_days(dt.date(2024, 3, 25), dt.date(2024, 12, 31))}
    for holiday in ("2024-03-29", "2024-05-27", "2024-06-19", "2024-07-04", "2024-09-02", "2024-11-28", "2024-12-25"):
        assert dt.date.fromisoformat(holiday) not in days
    for open_day in ("2024-03-28", "2024-07-05", "2024-11-29", "2024-12-24"):
        assert dt.date.fromisoformat(open_day) in days
    assert dt.date(2024, 3, 30) not in days  # weekend


def test_coverage_finds_the_gaps_we_made(warehouse: dict) -> None:
    code, text = run_coverage(warehouse["settings"])
    assert code == EXIT_OK
    lines = text.splitlines()
    aapl = next(i for i, line in enumerate(lines) if line.startswith("historical-price-eod") and " AAPL " in line)
    assert lines[aapl].split()[-2:] == ["trading", "5"]  # exactly the hole: sample holidays are not gaps
    assert "2024-03-04..2024-03-08 (5)" in lines[aapl + 1]
    msft = next(line for line in lines if line.startswith("historical-price-eod") and " MSFT " in line)
    assert msft.split()[-2:] == ["trading", "0"]
    assert warehouse["missing_quarter"] in text
    assert "treasury-rates" in text and max(len(line) for line in lines) <= 100


def test_coverage_html_is_self_contained(warehouse: dict, tmp_path: Path) -> None:
    settings = warehouse["settings"]
    default = settings.data_dir / "coverage.html"
    assert run_coverage(settings)[0] == EXIT_OK
    assert default.exists()
    custom = tmp_path / "report" / "cov.html"
    assert run_coverage(settings, html_path=str(custom), dataset="historical-price-eod")[0] == EXIT_OK
    page = custom.read_text(encoding="utf-8")
    assert "<svg" in page and "<rect" in page and "2024-03-04..2024-03-08 (5)" in page
    lowered = page.lower()
    assert "<script" not in lowered and "<link" not in lowered and "src=" not in lowered and "@import" not in lowered
    for part in lowered.split("http")[1:]:  # only documentation links
        assert part.startswith("s://site.financialmodelingprep.com/developer/docs/")
    hrefs = page.count('<a href="https://site.financialmodelingprep.com/')
    assert hrefs == lowered.count("http")


# ---- a quarantined Bronze file: an error until its refetch lands ---------------------------------------------------


def _eod_line(text: str, ticker: str) -> list[str]:
    return next(
        line for line in text.splitlines() if line.startswith("historical-price-eod ") and f" {ticker} " in line
    )


def test_a_quarantined_file_is_an_error_and_due_until_its_refetch_lands(warehouse: dict, tmp_path: Path) -> None:
    """Issue 18: AAPL's price file is truncated on disk. Replay keeps AAPL's rows and quarantines the file; coverage
    counts it as an error file, status names it, the planner makes AAPL's window due; the refetch promotes and clears
    all of that."""
    data_dir = tmp_path / "data"
    shutil.copytree(warehouse["data_dir"], data_dir)
    settings = make_settings(data_dir)
    keymap = load_keymap(settings.keymap_path)
    eod = next(e for e in keymap.entries if e.asset_name == "historical-price-eod")
    wh = Warehouse(settings.warehouse_path)
    with wh.connect() as conn:
        (path,) = conn.execute(
            "SELECT bronze_path FROM ops.file_ingestions WHERE dataset = ? AND discriminator = '' AND ticker = 'AAPL'",
            [eod.dataset],
        ).fetchone()
        history = conn.execute("SELECT * EXCLUDE (run_id, promoted_at) FROM silver.fmp_price_eod__history ORDER BY ALL")
        history = history.fetchall()
    bronze_file = settings.bronze_dir / path
    bronze_file.write_bytes(bronze_file.read_bytes()[:1000])
    assert "0 error file(s)" in run_coverage(settings)[1]

    results = replay(wh, keymap, settings.bronze_dir, "replay-issue-18", tables=[eod.silver.table])

    assert [f.error.split(":")[0] for r in results for f in r.quarantined] == ["not valid JSON"]
    with wh.connect() as conn:  # every row AAPL had stays, history included
        kept = conn.execute("SELECT * EXCLUDE (run_id, promoted_at) FROM silver.fmp_price_eod__history ORDER BY ALL")
        assert kept.fetchall() == history and len(history) > 1000
    code, text = run_coverage(settings)
    assert code == EXIT_OK and "1 error file(s) (1 quarantined, waiting for a refetch)" in text
    assert _eod_line(text, "AAPL").split()[5] == "1" and _eod_line(text, "MSFT").split()[5] == "0"  # the err column
    code, text = run_status(settings)
    assert code == EXIT_OK and "Quarantined Bronze files waiting for a refetch (1)" in text and path in text
    assert "prices/historical-price-eod: 1 due (1 request(s)), 1 not due" in text  # AAPL's window, and only it
    assert "first fetch from history start 2019-01-01" in " ".join(text.split())

    with FmpClient.from_settings(settings) as client:  # the next run: the refetch
        report = run_bronze(
            entries=[eod],
            tickers=settings.tickers,
            warehouse=wh,
            store=BronzeStore(settings.bronze_dir),
            client=client,
            run_id="refetch-run",
            today=settings.today(),
            fmp_plan=None,
            source_mode="sample",
        )
    assert report.requests == 1
    with wh.transaction() as conn:
        files = file_ingestions.promotable_files(conn, tables=[eod.silver.table])
        assert [f.ticker for f in files] == ["AAPL"]
        assert promote_files(conn, keymap, eod.silver.table, files, settings.bronze_dir, "silver-run-2").files == 1
    code, text = run_coverage(settings)
    assert "0 error file(s)" in text and _eod_line(text, "AAPL").split()[5] == "0"
    code, text = run_status(settings)
    assert "Quarantined" not in text and "prices/historical-price-eod: 0 due" in text
    assert bronze_file.stat().st_size == 1000  # the quarantined file itself stays, untouched


def test_coverage_unknown_dataset(warehouse: dict) -> None:
    code, text = run_coverage(warehouse["settings"], dataset="no-such-dataset")
    assert code == EXIT_NOTHING and "historical-price-eod" in text
