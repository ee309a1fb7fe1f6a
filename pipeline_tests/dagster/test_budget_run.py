"""`pipeline run` under a request budget, through Dagster: the Bronze steps (global, then per ticker, each its own
run) spend a daily cap on prices first, the run's output says what was deferred and why, and the next run with room
fetches it. Real Dagster runs on a real instance in tmp, the bundled sample source, two tickers, Bronze only."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.commands import main
from pipeline.settings import get_settings
from pipeline.warehouse import Warehouse

SELECT = "bronze/prices/historical-price-eod,bronze/company/profile,bronze/market/treasury-rates"


@pytest.fixture
def data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIPELINE_TICKERS", "AAPL,MSFT")
    monkeypatch.setenv("PIPELINE_AS_OF", "2025-06-27")
    monkeypatch.setenv("PIPELINE_SOURCE", "sample")
    return data_dir


def fetched(data_dir: Path) -> dict[str, int]:
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:
        return dict(conn.execute("SELECT dataset, count(*) FROM ops.file_ingestions GROUP BY ALL").fetchall())


def test_pipeline_run_fetches_prices_first_says_what_it_deferred_and_the_next_run_fetches_it(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # room for the two tickers' price history (one window each) and nothing else of the day
    monkeypatch.setenv("FMP_DAILY_REQUEST_CAP", "2")
    code = main(["run", "--select", SELECT])
    out = capsys.readouterr().out
    assert code == 0, out
    assert fetched(data_dir) == {"historical-price-eod": 2}
    # the global step ran first, deferred the treasury (reserving the prices), and said so
    assert "deferred by the request budget: " in out and "treasury-rates" in out and "profile 2" in out
    assert "daily request cap (FMP_DAILY_REQUEST_CAP: 2, 0 used today)" in out
    assert "request(s) deferred by the request budget: the next run fetches them" in out

    get_settings.cache_clear()
    monkeypatch.setenv("FMP_DAILY_REQUEST_CAP", "1000")
    code = main(["run", "--select", SELECT])
    out = capsys.readouterr().out
    assert code == 0, out
    got = fetched(data_dir)
    assert got["historical-price-eod"] == 2 and got["profile"] == 2 and got["treasury-rates"] > 0
    assert "deferred by the request budget" not in out
