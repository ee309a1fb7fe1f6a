"""Delisted tickers whose history is complete: fetched once after the delisting, then frozen (DESIGN.md section 12).

FMP keeps a delisted ticker's price history, ending on its delisting day (fmp_api.md 3.4), so one fetch after that
day brings everything there will ever be; asking again every day would spend the plan's requests on nothing. A
frozen ticker stays in the universe (its partitions and Gold rows stay); the planner skips its requests with the
skip kind `frozen`.

A reused ticker is not frozen: when the profile's listing date is after the delisting, or the actively-trading list
(served after the delisting) has the ticker, the delisting belongs to an earlier holder (3.4: "match delisted rows
by symbol plus a date window"). A delisting dated after today is not frozen either: it is fetched until it passes.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from pipeline.silver.cast import ny_date

FROZEN_SQL = f"""
    WITH served AS (
        SELECT file_id, least({ny_date("fetched_at")}, coalesce(as_of, {ny_date("fetched_at")})) AS served_on
        FROM ops.file_ingestions
    ),
    latest AS (
        SELECT symbol, max(delisted_date) AS delisted_date
        FROM silver.fmp_delisted_companies
        GROUP BY symbol
    )
    SELECT l.symbol, l.delisted_date
    FROM latest l
    WHERE l.delisted_date < $today
      AND NOT EXISTS (SELECT 1 FROM {{profile}} p WHERE p.ticker = l.symbol AND p.ipo_date > l.delisted_date)
      AND NOT EXISTS (SELECT 1 FROM {{active}} a JOIN served s ON s.file_id = a.bronze_file_id
                      WHERE a.symbol = l.symbol AND s.served_on > l.delisted_date)
"""


def _silver_tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'silver'").fetchall()
    return {r[0] for r in rows}


def frozen_tickers(conn: duckdb.DuckDBPyConnection, today: dt.date) -> dict[str, dt.date]:
    """Ticker -> delisting day, for tickers whose current holder was delisted before `today` ({} before Silver has
    the delisted list)."""
    have = _silver_tables(conn)
    if "fmp_delisted_companies" not in have:
        return {}
    profile = (
        "silver.fmp_company_profile"
        if "fmp_company_profile" in have
        else "(SELECT NULL::VARCHAR AS ticker, NULL::DATE AS ipo_date WHERE false)"
    )
    active = (
        "silver.fmp_actively_trading"
        if "fmp_actively_trading" in have
        else "(SELECT NULL::VARCHAR AS symbol, NULL::VARCHAR AS bronze_file_id WHERE false)"
    )
    sql = FROZEN_SQL.format(profile=profile, active=active)
    return dict(conn.execute(sql, {"today": today}).fetchall())
