"""The Silver universe includes the delisted names of its exchanges (issue 21: delisted securities are part of the
universe), but not a symbol that a live company holds today (a reused ticker), nor one on another exchange."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline.settings import UniverseSettings
from pipeline.universe import universe_from_silver


def silver(path: Path) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path / "w.duckdb"))
    conn.execute("CREATE SCHEMA silver")
    conn.execute("CREATE TABLE silver.fmp_stock_list (symbol VARCHAR, company_name VARCHAR)")
    conn.execute(
        "CREATE TABLE silver.fmp_company_screener (symbol VARCHAR, exchange VARCHAR, exchange_short_name VARCHAR, "
        "is_etf BOOLEAN, is_actively_trading BOOLEAN, market_cap DOUBLE)"
    )
    conn.execute("INSERT INTO silver.fmp_stock_list VALUES ('KO', 'Coca-Cola'), ('AI', 'C3.ai')")
    conn.execute(
        "INSERT INTO silver.fmp_company_screener VALUES ('KO', 'NYSE', 'NYSE', false, true, 2e11), "
        "('AI', 'NYSE', 'NYSE', false, true, 1e6)"
    )
    conn.execute("CREATE TABLE silver.fmp_delisted_companies (symbol VARCHAR, exchange VARCHAR, delisted_date DATE)")
    conn.execute(
        "INSERT INTO silver.fmp_delisted_companies VALUES ('TWTR', 'NYSE', '2022-10-27'), "
        "('AI', 'NYSE', '2020-12-08'), ('OLDX', 'OTC', '2015-01-02'), ('ZZ', 'NASDAQ', '2023-01-03')"
    )
    conn.execute("CREATE TABLE silver.fmp_actively_trading (symbol VARCHAR, name VARCHAR)")
    conn.execute("INSERT INTO silver.fmp_actively_trading VALUES ('KO', 'Coca-Cola'), ('AI', 'C3.ai'), ('ZZ', 'Z')")
    return conn


def test_delisted_names_join_the_universe_unless_a_live_holder_has_the_symbol(tmp_path: Path) -> None:
    with silver(tmp_path) as conn:
        # AI: listed (kept by the market-cap filter only when it passes); ZZ: reused by a live holder; OLDX: OTC
        assert universe_from_silver(conn, UniverseSettings(min_market_cap=1e9)) == ["KO", "TWTR"]
        assert universe_from_silver(conn, UniverseSettings()) == ["KO", "AI", "TWTR"]
        assert universe_from_silver(conn, UniverseSettings(include_delisted=False)) == ["KO", "AI"]
