"""A restated statement changes Silver inside dates already covered: Gold must notice and rebuild that ticker,
and the incremental result must equal a full rebuild. Runs the real chain on the sample source."""

from __future__ import annotations

import datetime as dt

from pipeline.gold.build import build, moved_inputs
from pipeline.keymap import load_keymap
from pipeline.settings import PROJECT_ROOT
from pipeline.warehouse import Warehouse
from pipeline_tests.gold.sample_chain import ensure_gold_inputs
from pipeline_tests.gold.sample_chain import fetch_and_promote as fetch_for

TICKERS = ["AAPL", "MSFT"]


def fetch_and_promote(tmp_path, entries, day: dt.date, revision: int, run_id: str) -> None:
    fetch_for(tmp_path, entries, day, TICKERS, run_id, revision=revision)


def snapshot(conn, table: str) -> list[tuple]:
    return conn.execute(f"SELECT * FROM gold.{table} ORDER BY ALL").fetchall()


def test_restated_quarter_rebuilds_gold_incrementally(tmp_path):
    keymap = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")
    wanted = {
        "historical-price-eod",
        "income-statement",
        "balance-sheet-statement",
        "cash-flow-statement",
        "key-metrics",
        "ratios",
        "splits",
        "dividends",
    }
    entries = [e for e in keymap if e.dataset in wanted]
    day1 = dt.date(2024, 6, 28)
    fetch_and_promote(tmp_path, entries, day1, revision=0, run_id="run-1")
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    names = ["fact_fundamentals_quarterly", "fact_valuation_daily"]
    with warehouse.connect() as conn:
        ensure_gold_inputs(conn, *names)
        for name in names:
            build(conn, name, "gold-1")
        before = {n: snapshot(conn, n) for n in names}
        assert not {n for n in moved_inputs(conn) if n in names}

    # eight days later the source restates a past quarter (same date and period, new values and filing)
    fetch_and_promote(tmp_path, entries, day1 + dt.timedelta(days=8), revision=1, run_id="run-2")
    with warehouse.connect() as conn:
        updated = conn.execute("""SELECT coalesce(sum(silver_updated), 0) FROM ops.file_ingestions
                                  WHERE run_id = 'run-2' AND silver_table = 'fmp_income_statement'""").fetchone()[0]
        assert updated > 0, "the restatement must update Silver rows"
        moved = moved_inputs(conn)
        assert "fact_fundamentals_quarterly" in moved and "revision=" in moved["fact_fundamentals_quarterly"]
        results = {n: build(conn, n, "gold-2") for n in names}
        assert results["fact_fundamentals_quarterly"].mode == "incremental"
        incremental = {n: snapshot(conn, n) for n in names}
        assert incremental["fact_fundamentals_quarterly"] != before["fact_fundamentals_quarterly"]
        for n in names:
            build(conn, n, "gold-full", full=True)
            assert snapshot(conn, n) == incremental[n], f"incremental {n} differs from a full rebuild"
