"""One ticker rule (issue 18, item 11): settings, Bronze paths, the universe query, the message that lists what is
allowed and the sample source all agree on which symbols exist."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from pipeline.bronze.store import UnsafeNameError, validate_part
from pipeline.fmp.client import FmpClient
from pipeline.settings import SettingsError, load_settings, parse_tickers
from pipeline.tickers import MAX_TICKER_LENGTH, TICKER_REGEX
from pipeline.universe import UNIVERSE_SQL

ALLOWED = ["AAPL", "^GSPC", "^DJI", "BRK-B", "BRK.B", "BF-B", "EURUSD=X", "GC=F", "7203.T", "X^A", "aapl", "A" * 20]
REFUSED = ["A..", "A.", "A..B", "^", "^^GSPC", ".A", "-A", "A-", "A B", "A/B", "../x", "A_B", "A" * 21, "", "A\nB"]


def settings_accept(ticker: str) -> bool:
    try:
        return parse_tickers(ticker) == (ticker,)
    except SettingsError:
        return False


def bronze_accepts(ticker: str) -> bool:
    try:
        return validate_part("ticker", ticker) == ticker
    except UnsafeNameError:
        return False


def universe_accepts(ticker: str) -> bool:
    """The universe query's filter, run by DuckDB on a one-symbol stock list."""
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA silver")
    conn.execute("CREATE TABLE silver.fmp_stock_list (symbol VARCHAR)")
    conn.execute(
        "CREATE TABLE silver.fmp_company_screener (symbol VARCHAR, exchange_short_name VARCHAR, exchange VARCHAR, "
        "is_etf BOOLEAN, is_actively_trading BOOLEAN, market_cap DOUBLE)"
    )
    conn.execute("INSERT INTO silver.fmp_stock_list VALUES (?)", [ticker])
    conn.execute("INSERT INTO silver.fmp_company_screener VALUES (?, 'NYSE', 'NYSE', false, true, 1e9)", [ticker])
    rows = conn.execute(
        UNIVERSE_SQL,
        {
            "exchanges": ["NYSE"],
            "include_etfs": False,
            "active_only": True,
            "min_cap": 0,
            "max_tickers": 10,
            "ticker_regex": TICKER_REGEX,
            "max_ticker_length": MAX_TICKER_LENGTH,
        },
    ).fetchall()
    return rows == [(ticker,)]


@pytest.mark.parametrize("ticker", ALLOWED + REFUSED, ids=repr)
def test_settings_bronze_and_universe_agree(ticker: str) -> None:
    expected = ticker in ALLOWED
    assert (settings_accept(ticker), bronze_accepts(ticker), universe_accepts(ticker)) == (expected,) * 3


def test_the_message_lists_what_the_rule_allows() -> None:
    """`A..` passed settings and then failed every ticker in Bronze; `^GSPC` was refused although the message
    listed '^'. Now `A..` stops at settings, and the message describes the rule that refused it."""
    with pytest.raises(SettingsError) as info:
        load_settings({"PIPELINE_TICKERS": "AAPL,A.."})
    message = str(info.value)
    assert message.startswith("PIPELINE_TICKERS: ticker 'A..' is not allowed")
    assert "^GSPC" in message and "1-20 characters" in message
    with pytest.raises(UnsafeNameError) as bronze:
        validate_part("ticker", "A..")
    assert str(bronze.value) == message.removeprefix("PIPELINE_TICKERS: ")


def test_the_sample_source_answers_unknown_tickers_as_fmp_does() -> None:
    """FMP answers an unknown symbol with 200 `[]` (fmp_api.md section 2.4); the sample source invented prices for
    any ticker it was asked about (`ZZZZ`, lowercase `aapl`)."""
    settings = load_settings({"PIPELINE_TICKERS": "AAPL,ZZZZ,aapl", "PIPELINE_AS_OF": "2025-06-27"})
    params = {"from": "2025-06-02", "to": "2025-06-27"}
    with FmpClient.from_settings(settings) as client:
        answers = {t: client.fetch("historical-price-eod/full", {"symbol": t, **params}) for t in settings.tickers}
        profile = client.fetch("profile", {"symbol": "ZZZZ"})
    assert all(a.ok and a.status_code == 200 for a in answers.values())
    assert len(answers["AAPL"].content) == 19
    assert answers["ZZZZ"].content == [] and answers["aapl"].content == []
    assert profile.ok and profile.content == []
    assert max(r["date"] for r in answers["AAPL"].content) <= dt.date(2025, 6, 27).isoformat()
