"""Resolve tickers to securities, and ask for the universe or an index as of a date: SQL macros in the warehouse
and the same queries as Python helpers.

Macros (created in schema gold after the security master's tables are built, so a DuckDB shell on the warehouse
has them; they read the tables when called):
- `gold.security_at(ticker, day)`: the security holding `ticker` on `day` (0 or 1 row);
- `gold.security_id_at(ticker, day)`: the same as a scalar, for joins;
- `gold.universe_as_of(day)`: the securities listed on `day` (delisted since included), with their ticker that day;
- `gold.index_members_as_of(index_name, day)`: an index's members on `day` ('sp500'), by security.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

SECURITY_TABLES = ("dim_security", "dim_security_ticker", "index_membership")

_HELD_ON = (
    "(t.valid_from IS NULL OR t.valid_from <= CAST({day} AS DATE)) AND "
    "(t.valid_to IS NULL OR CAST({day} AS DATE) <= t.valid_to)"
)

SECURITY_AT = f"""
    SELECT t.security_id, t.ticker, t.valid_from, t.valid_to
    FROM gold.dim_security_ticker t
    WHERE t.ticker = {{ticker}} AND {_HELD_ON}
"""

UNIVERSE_AS_OF = f"""
    SELECT s.security_id, t.ticker, s.name, s.exchange, s.listed_on, s.delisted_on
    FROM gold.dim_security s
    JOIN gold.dim_security_ticker t ON t.security_id = s.security_id AND {_HELD_ON}
    WHERE (s.listed_on IS NULL OR s.listed_on <= CAST({{day}} AS DATE))
      AND (s.delisted_on IS NULL OR CAST({{day}} AS DATE) <= s.delisted_on)
"""

INDEX_MEMBERS_AS_OF = f"""
    SELECT m.security_id, coalesce(t.ticker, m.ticker) AS ticker, m.member_from, m.member_to
    FROM gold.index_membership m
    LEFT JOIN gold.dim_security_ticker t ON t.security_id = m.security_id AND {_HELD_ON}
    WHERE m.index_name = {{index_name}}
      AND (m.member_from IS NULL OR m.member_from <= CAST({{day}} AS DATE))
      AND (m.member_to IS NULL OR CAST({{day}} AS DATE) < m.member_to)
"""

MACROS = {
    # macro name -> (tables it reads, CREATE statement)
    "security_at": (
        ("dim_security_ticker",),
        "CREATE OR REPLACE MACRO gold.security_at(ticker_, day_) AS TABLE "
        + SECURITY_AT.format(ticker="ticker_", day="day_"),
    ),
    "security_id_at": (
        ("dim_security_ticker",),
        "CREATE OR REPLACE MACRO gold.security_id_at(ticker_, day_) AS ("
        + SECURITY_AT.format(ticker="ticker_", day="day_").replace(
            "SELECT t.security_id, t.ticker, t.valid_from, t.valid_to", "SELECT max(t.security_id)"
        )
        + ")",
    ),
    "universe_as_of": (
        ("dim_security", "dim_security_ticker"),
        "CREATE OR REPLACE MACRO gold.universe_as_of(day_) AS TABLE " + UNIVERSE_AS_OF.format(day="day_"),
    ),
    "index_members_as_of": (
        ("index_membership", "dim_security_ticker"),
        "CREATE OR REPLACE MACRO gold.index_members_as_of(index_name_, day_) AS TABLE "
        + INDEX_MEMBERS_AS_OF.format(index_name="index_name_", day="day_"),
    ),
}


def create_macros(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """(Re)create every macro whose tables exist (DuckDB binds a macro's tables when it is created); returns their
    names. Called after each security table's build, so the last one built completes the set."""
    have = {
        r[0]
        for r in conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'gold'").fetchall()
    }
    made = []
    for name, (tables, ddl) in MACROS.items():
        if set(tables) <= have:
            conn.execute(ddl)
            made.append(name)
    return made


@dataclass(frozen=True)
class Holding:
    security_id: int
    ticker: str
    valid_from: dt.date | None
    valid_to: dt.date | None


def security_at(conn: duckdb.DuckDBPyConnection, ticker: str, day: dt.date) -> Holding | None:
    """The security holding `ticker` on `day`, or None: a ticker means a security only together with a date."""
    row = conn.execute(SECURITY_AT.format(ticker="$ticker", day="$day"), {"ticker": ticker, "day": day}).fetchone()
    return Holding(*row) if row else None


def universe_as_of(conn: duckdb.DuckDBPyConnection, day: dt.date) -> dict[int, str]:
    """security_id -> ticker on `day`, for every security listed that day (delisted since included)."""
    rows = conn.execute(UNIVERSE_AS_OF.format(day="$day") + " ORDER BY 2", {"day": day}).fetchall()
    return {r[0]: r[1] for r in rows}


def index_members_as_of(conn: duckdb.DuckDBPyConnection, index_name: str, day: dt.date) -> dict[int, str]:
    """security_id -> ticker on `day`, for the members of `index_name` ('sp500') that day."""
    sql = INDEX_MEMBERS_AS_OF.format(index_name="$index_name", day="$day") + " ORDER BY 2"
    return {r[0]: r[1] for r in conn.execute(sql, {"index_name": index_name, "day": day}).fetchall()}
