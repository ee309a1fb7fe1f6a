"""The synthetic whole market (pipeline.fmp.sample.synthetic_market) serves consistent data with realistic calendars,
and the default universe is the whole filtered market (issue 19, item 5)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import duckdb
import pytest

from pipeline.fmp.client import FmpClient
from pipeline.fmp.sample import SAMPLE_TICKERS, SampleSource
from pipeline.fmp.sample.synthetic_market import SyntheticMarket
from pipeline.settings import SettingsError, UniverseSettings, load_settings
from pipeline.tickers import is_ticker
from pipeline.universe import configured_tickers, universe_from_silver

AS_OF = dt.date(2025, 11, 14)
SIZE = 300


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(SIZE)


@pytest.fixture(scope="module")
def source(market: SyntheticMarket) -> SampleSource:
    return SampleSource(AS_OF, market.tickers, catalogue=market.company)


def rows(source: SampleSource, path: str, **params: str) -> list[dict[str, Any]]:
    answer = source.respond(path, params)
    assert answer.status_code == 200, (path, params, answer.body[:200])
    return json.loads(answer.body)


def test_the_market_lists_its_size_in_valid_unique_tickers_deterministically(market: SyntheticMarket) -> None:
    assert len(market.tickers) == SIZE == len(set(market.tickers))
    assert market.tickers[: len(SAMPLE_TICKERS)] == SAMPLE_TICKERS
    assert all(is_ticker(t) for t in market.tickers)
    assert any(t.endswith("-B") for t in SyntheticMarket(1000).tickers)  # class shares, FMP's spelling
    again = SyntheticMarket(SIZE)
    assert again.tickers == market.tickers and again.split_schedule == market.split_schedule
    with pytest.raises(ValueError, match="synthetic market"):
        SyntheticMarket(3)


def test_a_split_is_in_the_splits_route_and_in_the_as_traded_jump(
    market: SyntheticMarket, source: SampleSource
) -> None:
    recent = market.splits_between(dt.date(2025, 1, 1), AS_OF - dt.timedelta(days=7))
    assert len(recent) >= 30  # at least one a week
    assert {(n, d) for *_, n, d in recent} & {(1, 5), (1, 10), (1, 20)}  # reverse splits too
    for day, symbol, num, den in recent[:6]:
        listed = rows(source, "splits", symbol=symbol)
        assert {"symbol": symbol, "date": day, "numerator": num, "denominator": den} in [
            {k: r[k] for k in ("symbol", "date", "numerator", "denominator")} for r in listed
        ]
        window = {"symbol": symbol, "from": (dt.date.fromisoformat(day) - dt.timedelta(days=6)).isoformat()}
        window["to"] = (dt.date.fromisoformat(day) + dt.timedelta(days=6)).isoformat()
        traded = {r["date"]: r["adjClose"] for r in rows(source, "historical-price-eod/non-split-adjusted", **window)}
        adjusted = {r["date"]: r["close"] for r in rows(source, "historical-price-eod/full", **window)}
        before = max(d for d in traded if d < day)
        # as traded / split-adjusted (on as_of's basis) is the split's ratio before the split day, 1 from it on
        assert traded[before] / adjusted[before] == pytest.approx(num / den, rel=0.01)
        assert traded[day] / adjusted[day] == pytest.approx(1.0, rel=0.01)


def test_dividend_payers_are_spread_across_the_quarter(market: SyntheticMarket, source: SampleSource) -> None:
    synthetic = [t for t in market.tickers if t not in SAMPLE_TICKERS]
    payers = [t for t in synthetic if market.company(t).dividend_yield > 0]
    assert 0.3 <= len(payers) / len(synthetic) <= 0.6
    months: Counter[int] = Counter()
    for symbol in payers:
        for row in rows(source, "dividends", symbol=symbol):
            if row["date"].startswith("2024"):
                months[int(row["date"][5:7])] += 1
    assert set(months) == set(range(1, 13))
    for position in range(3):  # first, second and third month of a quarter each hold a fair share
        assert sum(c for m, c in months.items() if m % 3 == position) >= 0.2 * sum(months.values())


def test_most_acceptances_fall_in_earnings_seasons(market: SyntheticMarket, source: SampleSource) -> None:
    """Most quarters are accepted 3-6 weeks after they end, so a few weeks a quarter carry most filings."""
    lags = []
    for symbol in market.tickers[len(SAMPLE_TICKERS) : len(SAMPLE_TICKERS) + 60]:
        for row in rows(source, "income-statement", symbol=symbol, period="quarter", limit="8"):
            accepted = dt.date.fromisoformat(row["acceptedDate"][:10])
            lags.append((accepted - dt.date.fromisoformat(row["date"])).days)
    assert len(lags) >= 400
    assert sum(21 <= lag <= 42 for lag in lags) >= 0.8 * len(lags)
    calendar = market.calendar(dt.date(2025, 10, 1), dt.date(2025, 12, 31))
    filings = {day: c["filings"] for day, c in calendar.items()}
    in_season = sum(n for day, n in filings.items() if "2025-10-22" <= day <= "2025-11-14")
    assert in_season >= 0.8 * sum(filings.values())


def test_the_default_universe_is_the_whole_filtered_market(source: SampleSource, market: SyntheticMarket) -> None:
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA silver")
    conn.execute("CREATE TABLE silver.fmp_stock_list (symbol VARCHAR)")
    conn.execute(
        "CREATE TABLE silver.fmp_company_screener (symbol VARCHAR, exchange_short_name VARCHAR, exchange VARCHAR, "
        "is_etf BOOLEAN, is_actively_trading BOOLEAN, market_cap DOUBLE)"
    )
    listed = rows(source, "stock-list")
    screened = rows(source, "company-screener")
    conn.executemany("INSERT INTO silver.fmp_stock_list VALUES (?)", [[r["symbol"]] for r in listed])
    conn.executemany(
        "INSERT INTO silver.fmp_company_screener VALUES (?, ?, ?, ?, ?, ?)",
        [
            [r["symbol"], r["exchangeShortName"], r["exchange"], r["isEtf"], r["isActivelyTrading"], r["marketCap"]]
            for r in screened
        ],
    )
    assert len(listed) > SIZE  # foreign listings too, which the screener's US market leaves out
    default = load_settings({}).universe
    assert default.max_tickers is None
    # every ticker still trading (a delisted name such as TWTR has no screener row; it joins the universe from
    # silver.fmp_delisted_companies, which this warehouse does not have)
    trading = [t for t in market.tickers if source.trading(t)]
    assert sorted(universe_from_silver(conn, default)) == sorted(trading)
    # the filters keep working: a cap keeps the largest market caps, an exchange filter keeps that exchange
    capped = universe_from_silver(conn, load_settings({"PIPELINE_UNIVERSE_MAX_TICKERS": "25"}).universe)
    largest = [r["symbol"] for r in sorted(screened, key=lambda r: -r["marketCap"])[:25]]
    assert capped == largest
    nyse = universe_from_silver(conn, UniverseSettings(exchanges=("NYSE",)))
    assert nyse and set(nyse) == {r["symbol"] for r in screened if r["exchangeShortName"] == "NYSE"}


def test_pipeline_sample_market_opts_the_sample_source_into_the_market(tmp_path) -> None:
    settings = load_settings(
        {"PIPELINE_SOURCE": "sample", "PIPELINE_SAMPLE_MARKET": "300", "PIPELINE_AS_OF": "2025-11-14"}
    )
    assert settings.sample_market == 300
    assert configured_tickers(settings) is None  # the universe comes from Silver, like the live market's
    assert configured_tickers(load_settings({"PIPELINE_SOURCE": "sample"})) is not None  # the demo: 10 companies
    with FmpClient.from_settings(settings) as client:
        listed = json.loads(client.fetch("stock-list", {}).body)
    assert {r["symbol"] for r in listed} >= set(SyntheticMarket(300).tickers)
    for value, message in (("ten", "not an integer"), ("5", "too small"), ("999999", "too large")):
        with pytest.raises(SettingsError, match=f"PIPELINE_SAMPLE_MARKET.*{message}"):
            load_settings({"PIPELINE_SOURCE": "sample", "PIPELINE_SAMPLE_MARKET": value})
    with pytest.raises(SettingsError, match="PIPELINE_SAMPLE_MARKET is set, but requests go to the FMP API"):
        load_settings({"FMP_API_KEY": "k", "PIPELINE_SAMPLE_MARKET": "300"})


def test_every_per_ticker_route_of_the_keymap_serves_synthetic_tickers(
    market: SyntheticMarket, source: SampleSource
) -> None:
    """A splitter, a dividend payer and a class share get FMP-shaped rows on every per-ticker path of the keymap."""
    import yaml

    from pipeline.settings import PROJECT_ROOT

    synthetic = [t for t in market.tickers if t not in SAMPLE_TICKERS]
    splitter = next(t for t in synthetic if market.split_schedule.get(t, (("9999",),))[0][0] < "2025-06-01")
    payer = next(t for t in synthetic if market.company(t).dividend_yield > 0)
    larger = SyntheticMarket(1000)
    class_share = next(t for t in larger.tickers if t.endswith("-B"))
    wide = SampleSource(AS_OF, larger.tickers, catalogue=larger.company)
    entries = yaml.safe_load((PROJECT_ROOT / "dataset_keymap.yaml").read_text())["datasets"]
    per_ticker = [d for d in entries if d["ticker_scope"] == "per_ticker"]
    assert len(per_ticker) >= 10
    for entry in per_ticker:
        path = entry["recipe"]["path"]
        params = {"from": "2023-01-01", "to": AS_OF.isoformat(), "period": "quarter", "limit": "5"}
        if entry.get("discriminator") in ("annual", "quarter"):
            params["period"] = entry["discriminator"]
        for src, symbol in ((source, splitter), (source, payer), (wide, class_share)):
            served = rows(src, path, symbol=symbol, **params)
            if path == "splits" and symbol != splitter or path == "dividends" and symbol != payer:
                continue  # a non-splitter has no splits; the class share may pay no dividend
            if path == "stock-peers":  # peers are other listed names of the same market
                assert served and {r["symbol"] for r in served} <= set(src.tickers) - {symbol}, symbol
                continue
            assert served and all(r.get("symbol", symbol) == symbol for r in served), (path, symbol)
