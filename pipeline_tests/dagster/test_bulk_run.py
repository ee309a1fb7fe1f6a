"""`pipeline run` on Ultimate through Dagster: the global step fetches the eod-bulk day and derives the as-traded
per-ticker files from it, the per-ticker step sends nothing for backfilled tickers, and Silver's as-traded table gets
the day. Real Dagster runs on a real instance in tmp, the bundled sample source (402 on bulk paths outside the plan,
fmp_api.md 3.1/3.2), two tickers, the daily price entries only."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.commands import main
from pipeline.settings import get_settings
from pipeline.warehouse import Warehouse

SELECT = (
    "bronze/prices/historical-price-eod__non-split-adjusted,bronze/prices/eod-bulk,"
    "silver/fmp_price_eod_as_traded,silver/fmp_eod_bulk"
)


@pytest.fixture
def data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIPELINE_TICKERS", "AAPL,MSFT")
    monkeypatch.setenv("PIPELINE_SOURCE", "sample")
    monkeypatch.setenv("FMP_PLAN", "ultimate")
    return data_dir


def run_day(day: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("PIPELINE_AS_OF", day)
    code = main(["run", "--select", SELECT])
    out = capsys.readouterr().out
    assert code == 0, out


def test_an_ultimate_day_is_one_bulk_request_and_reaches_the_as_traded_table(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_day("2025-11-10", monkeypatch, capsys)  # backfill: per-ticker history (and the first bulk day)
    run_day("2025-11-11", monkeypatch, capsys)
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:
        day_two = conn.execute(
            """SELECT dataset, discriminator, count(*), sum(attempts), bool_and(silver_status = 'promoted')
               FROM ops.file_ingestions WHERE as_of = DATE '2025-11-11' GROUP BY ALL ORDER BY ALL"""
        ).fetchall()
        bars = conn.execute(
            "SELECT ticker FROM silver.fmp_price_eod_as_traded WHERE date = DATE '2025-11-11' ORDER BY ticker"
        ).fetchall()
    # one request (the bulk day); the two as-traded files are derived from it, without a request, and promoted
    assert day_two == [("eod-bulk", "", 1, 1, True), ("historical-price-eod", "non-split-adjusted", 2, 0, True)]
    assert bars == [("AAPL",), ("MSFT",)]
