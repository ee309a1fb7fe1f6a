"""As-traded bars from the endpoint that serves them, or derived from /full when the plan lacks it; a split that
arrives between two incremental runs re-bases the whole history. Real HTTP against the loopback fake FMP server,
which serves the sample source's FMP semantics (split-adjusted /full rewritten after each split)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.store import BronzeStore
from pipeline.fmp.client import FmpClient
from pipeline.fmp.ratelimit import RateLimiter
from pipeline.fmp.sample import SampleSource
from pipeline.gold.build import build
from pipeline.keymap import load_keymap
from pipeline.ops import file_ingestions
from pipeline.settings import PROJECT_ROOT
from pipeline.silver.promote import promote_files
from pipeline.warehouse import Warehouse
from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data
from pipeline_tests.gold.sample_chain import ensure_gold_inputs
from pipeline_tests.support import KEY

TICKERS = ["NVDA", "KO"]
BEFORE_SPLIT, AFTER_SPLIT = dt.date(2024, 6, 5), dt.date(2024, 6, 14)  # NVDA 10:1 on 2024-06-10
AS_TRADED_PATH = "historical-price-eod/non-split-adjusted"
KEYMAP = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")
ENTRIES = [e for e in KEYMAP if e.dataset in {"historical-price-eod", "splits", "dividends"}]


def fetch_and_promote(data_dir: Path, day: dt.date, *, restrict: tuple[str, ...] = ()) -> None:
    """One fetch of the price datasets as of `day` (the fake serves the sample source as of that day), promoted."""
    warehouse = Warehouse(data_dir / "warehouse.duckdb")
    with FakeFmpServer(api_key=KEY, data=sample_data(SampleSource(day, TICKERS))) as fake:
        fake.restrict_paths(*restrict)
        with FmpClient(fake.base_url, KEY, limiter=RateLimiter(100000)) as client:
            run_bronze(
                entries=ENTRIES,
                tickers=TICKERS,
                warehouse=warehouse,
                store=BronzeStore(data_dir / "bronze"),
                client=client,
                run_id=f"run-{day}",
                today=day,
                fmp_plan=None,
                source_mode="fmp",
            )
    for table in sorted({e.silver.table for e in ENTRIES}):
        with warehouse.transaction() as conn:
            files = file_ingestions.promotable_files(conn, tables=[table])
            if files:
                promote_files(conn, KEYMAP, table, files, data_dir / "bronze", f"run-{day}")


def gold_prices(data_dir: Path) -> dict[tuple[str, str], tuple]:
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:
        ensure_gold_inputs(conn, "fact_price_daily")  # as the Gold asset does: a table never promoted is empty
        build(conn, "fact_price_daily", "gold")
        rows = conn.execute("""
            SELECT ticker, CAST(date AS VARCHAR), close, volume, price_source, split_adj_close
            FROM gold.fact_price_daily
        """).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def traded(day: dt.date, ticker: str) -> dict[str, dict]:
    body = SampleSource(day, TICKERS).respond(AS_TRADED_PATH, {"symbol": ticker, "from": "2019-01-01"}).body
    return {r["date"]: r for r in json.loads(body)}


@pytest.mark.parametrize("restrict", [(), (AS_TRADED_PATH,)], ids=["as-traded-endpoint", "plan-lacks-it"])
def test_a_split_between_two_runs_rebases_history_and_keeps_as_traded_prices(tmp_path, restrict):
    fetch_and_promote(tmp_path, BEFORE_SPLIT, restrict=restrict)
    first = gold_prices(tmp_path)
    fetch_and_promote(tmp_path, AFTER_SPLIT, restrict=restrict)  # /full's overlap window is now 10x lower
    second = gold_prices(tmp_path)

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        bases = conn.execute("""
            SELECT count(DISTINCT f.as_of)
            FROM silver.fmp_price_eod s JOIN ops.file_ingestions f ON f.file_id = s.bronze_file_id
            WHERE s.ticker = 'NVDA'
        """).fetchone()[0]
    assert bases == 2, "Silver /full rows come from both fetches (two share bases side by side)"

    want = traded(AFTER_SPLIT, "NVDA")
    source = {"as_traded"} if not restrict else {"derived_from_full"}
    for (ticker, day), (close, volume, price_source, split_adj_close) in second.items():
        if ticker != "NVDA":
            continue
        assert price_source in source
        assert close == pytest.approx(want[day]["adjClose"], rel=1e-6), day  # as traded, on every day
        assert volume == pytest.approx(want[day]["volume"], rel=1e-6), day
        factor = 40.0 if day < "2021-07-20" else 10.0 if day < "2024-06-10" else 1.0  # 4:1 then 10:1
        assert split_adj_close == pytest.approx(want[day]["adjClose"] / factor, rel=1e-6), day
    # before the split arrived, nothing was adjusted; after, the whole history is re-based (not only the window)
    old_day = "2021-01-04"
    assert first[("NVDA", old_day)][3] == pytest.approx(first[("NVDA", old_day)][0] / 4)
    assert second[("NVDA", old_day)][3] == pytest.approx(first[("NVDA", old_day)][0] / 40)
    # KO never split: identical as-traded and adjusted
    assert all(v[0] == pytest.approx(v[3]) for (t, _), v in second.items() if t == "KO")
