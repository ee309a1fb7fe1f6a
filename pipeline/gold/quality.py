"""Data-quality checks on the Gold tables, as plain functions the lead wires into Dagster asset checks.

Why plain functions: they can be tested without Dagster, run from the CLI, and reused by any orchestrator.
Each returns a CheckOutcome with the number of offending rows and a few examples in its metadata, so a
failing check says what to look at. Each check reads one Gold table (plus dim_instrument or Silver splits
where the rule needs them) with one set-based query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

import duckdb

from pipeline.silver.quality import CheckOutcome

EXAMPLES = 5


def _jsonable(value: object) -> object:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _violations(conn: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> tuple[int, list[dict]]:
    """Count the rows of `sql` and return the first few as dicts."""
    count = conn.execute(f"SELECT count(*) FROM ({sql})", params or []).fetchall()[0][0]
    cur = conn.execute(f"SELECT * FROM ({sql}) LIMIT {EXAMPLES}", params or [])
    names = [d[0] for d in cur.description]
    rows = [{n: _jsonable(v) for n, v in zip(names, row)} for row in cur.fetchall()]
    return int(count), rows


def _outcome(conn: duckdb.DuckDBPyConnection, sql: str, what: str, table: str,
             params: list | None = None) -> CheckOutcome:
    count, examples = _violations(conn, sql, params)
    checked = conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    passed = count == 0
    description = f"{what}: " + ("all rows pass" if passed else f"{count} offending row(s)") + f" in {table}"
    return CheckOutcome(passed, description, {"offending_rows": count, "rows_checked": int(checked),
                                              "examples": examples})


def check_balance_sheet_identity(conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_fundamentals_quarterly",
                                 tolerance: float = 0.005) -> CheckOutcome:
    """total_assets = total_liabilities + total_equity within a relative tolerance (rows with all three)."""
    sql = f"""
        SELECT ticker, period_end, period, total_assets, total_liabilities, total_equity,
               abs(total_assets - (total_liabilities + total_equity)) / abs(total_assets) AS relative_gap
        FROM {table}
        WHERE total_assets IS NOT NULL AND total_liabilities IS NOT NULL AND total_equity IS NOT NULL
          AND abs(total_assets - (total_liabilities + total_equity))
              > ? * greatest(abs(total_assets), 1.0)
        ORDER BY relative_gap DESC
    """
    out = _outcome(conn, sql, f"total_assets = total_liabilities + total_equity within {tolerance:.2%}", table,
                   [tolerance])
    out.metadata["tolerance"] = tolerance
    return out


def check_market_cap_positive(conn: duckdb.DuckDBPyConnection,
                              table: str = "gold.fact_valuation_daily") -> CheckOutcome:
    """market_cap > 0 wherever it is known (it is NULL before a ticker's first usable statement)."""
    sql = f"""
        SELECT ticker, date, close, shares_outstanding, market_cap
        FROM {table}
        WHERE market_cap IS NOT NULL AND NOT (market_cap > 0)
        ORDER BY ticker, date
    """
    return _outcome(conn, sql, "market_cap > 0", table)


def check_no_lookahead(conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_valuation_daily") -> CheckOutcome:
    """No valuation row uses a statement filed (or a period ending) after the row's date."""
    sql = f"""
        SELECT ticker, date, statement_period_end, statement_filing_date
        FROM {table}
        WHERE statement_filing_date > date OR statement_period_end > date
           OR (statement_period_end IS NOT NULL AND statement_filing_date IS NULL)
        ORDER BY ticker, date
    """
    return _outcome(conn, sql, "statement filing_date <= date (no look-ahead)", table)


def check_price_sanity(conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_price_daily") -> CheckOutcome:
    """Prices positive and high >= max(open, close) >= min(open, close) >= low (where the values exist)."""
    sql = f"""
        SELECT ticker, date, open, high, low, close
        FROM {table}
        WHERE close IS NULL OR close <= 0 OR open <= 0 OR high <= 0 OR low <= 0
           OR high < greatest(open, close) OR low > least(open, close) OR high < low
        ORDER BY ticker, date
    """
    return _outcome(conn, sql, "prices positive and low <= open, close <= high", table)


def check_split_continuity(conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_price_daily",
                           max_abs_return: float = 0.5) -> CheckOutcome:
    """adj_close does not jump on a split: |return_1d| < max_abs_return on the first trading day of each split."""
    sql = f"""
        SELECT s.ticker, s.date AS split_date, p.date AS trading_date, s.numerator, s.denominator,
               p.close, p.adj_close, p.return_1d
        FROM silver.fmp_splits s
        ASOF JOIN {table} p ON p.ticker = s.ticker AND p.date >= s.date
        WHERE abs(p.return_1d) >= ?
        ORDER BY s.ticker, s.date
    """
    out = _outcome(conn, sql, f"|return_1d| < {max_abs_return} on split days", table, [max_abs_return])
    out.metadata["splits_checked"] = int(conn.execute(f"""
        SELECT count(*) FROM silver.fmp_splits s ASOF JOIN {table} p ON p.ticker = s.ticker AND p.date >= s.date
    """).fetchall()[0][0])
    return out


def check_tickers_in_dim(conn: duckdb.DuckDBPyConnection, table: str) -> CheckOutcome:
    """Every ticker of a fact table exists in gold.dim_instrument."""
    sql = f"""
        SELECT f.ticker, count(*) AS fact_rows
        FROM {table} f
        WHERE NOT EXISTS (SELECT 1 FROM gold.dim_instrument d WHERE d.ticker = f.ticker)
        GROUP BY f.ticker
        ORDER BY f.ticker
    """
    return _outcome(conn, sql, "every ticker exists in gold.dim_instrument", table)


def _in_dim(table: str) -> Callable[[duckdb.DuckDBPyConnection], CheckOutcome]:
    def check(conn: duckdb.DuckDBPyConnection) -> CheckOutcome:
        return check_tickers_in_dim(conn, table)
    check.__name__ = f"check_tickers_in_dim__{table.split('.')[-1]}"
    return check


def _balance(table: str) -> Callable[[duckdb.DuckDBPyConnection], CheckOutcome]:
    def check(conn: duckdb.DuckDBPyConnection) -> CheckOutcome:
        return check_balance_sheet_identity(conn, table)
    check.__name__ = f"check_balance_sheet_identity__{table.split('.')[-1]}"
    return check


# gold table -> the checks that guard it (each takes only a connection), for wiring asset checks.
GOLD_CHECKS: dict[str, tuple[Callable[[duckdb.DuckDBPyConnection], CheckOutcome], ...]] = {
    "fact_price_daily": (check_price_sanity, check_split_continuity, _in_dim("gold.fact_price_daily")),
    "fact_fundamentals_quarterly": (_balance("gold.fact_fundamentals_quarterly"),
                                    _in_dim("gold.fact_fundamentals_quarterly")),
    "fact_fundamentals_annual": (_balance("gold.fact_fundamentals_annual"),
                                 _in_dim("gold.fact_fundamentals_annual")),
    "fact_valuation_daily": (check_market_cap_positive, check_no_lookahead, _in_dim("gold.fact_valuation_daily")),
}
