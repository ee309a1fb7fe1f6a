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

from pipeline.gold import models
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


def _outcome(
    conn: duckdb.DuckDBPyConnection, sql: str, what: str, table: str, params: list | None = None
) -> CheckOutcome:
    count, examples = _violations(conn, sql, params)
    checked = conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    passed = count == 0
    description = f"{what}: " + ("all rows pass" if passed else f"{count} offending row(s)") + f" in {table}"
    return CheckOutcome(
        passed, description, {"offending_rows": count, "rows_checked": int(checked), "examples": examples}
    )


def check_balance_sheet_identity(
    conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_fundamentals_quarterly", tolerance: float = 0.005
) -> CheckOutcome:
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
    out = _outcome(
        conn, sql, f"total_assets = total_liabilities + total_equity within {tolerance:.2%}", table, [tolerance]
    )
    out.metadata["tolerance"] = tolerance
    return out


def check_market_cap_positive(
    conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_valuation_daily"
) -> CheckOutcome:
    """market_cap > 0 wherever it is known (it is NULL before a ticker's first usable statement)."""
    sql = f"""
        SELECT ticker, date, close, shares_outstanding, market_cap
        FROM {table}
        WHERE market_cap IS NOT NULL AND NOT (market_cap > 0)
        ORDER BY ticker, date
    """
    return _outcome(conn, sql, "market_cap > 0", table)


def check_no_lookahead(conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_valuation_daily") -> CheckOutcome:
    """No valuation row uses a statement before its first close at or after the acceptance (US Eastern)."""
    sql = f"""
        SELECT ticker, date, statement_period_end, statement_accepted_at, statement_usable_from
        FROM {table}
        WHERE statement_usable_from > date OR statement_period_end > date
           OR statement_accepted_at > date + INTERVAL 16 HOUR
           OR (statement_period_end IS NOT NULL AND statement_usable_from IS NULL)
        ORDER BY ticker, date
    """
    return _outcome(conn, sql, "statement accepted by the close of the row's date (no look-ahead)", table)


def check_macro_no_lookahead(conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_macro_daily") -> CheckOutcome:
    """No macro value is shown before the day it was released (its *_known_from <= date)."""
    columns = [
        r[0]
        for r in conn.execute(
            """
        SELECT column_name FROM information_schema.columns
        WHERE table_schema = 'gold' AND table_name = ? AND column_name LIKE '%\\_known\\_from' ESCAPE '\\'
    """,
            [table.split(".")[-1]],
        ).fetchall()
    ]
    if not columns:
        return CheckOutcome(True, f"no indicator columns in {table}", {"offending_rows": 0, "columns": []})
    late = " OR ".join(f"{c} > date" for c in columns)
    sql = f"SELECT date, {', '.join(columns)} FROM {table} WHERE {late} ORDER BY date"
    out = _outcome(conn, sql, "every indicator value released on or before the row's date", table)
    out.metadata["columns"] = columns
    return out


def check_price_sanity(conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_price_daily") -> CheckOutcome:
    """As-traded prices positive and high >= max(open, close) >= min(open, close) >= low."""
    sql = f"""
        SELECT ticker, date, open, high, low, close
        FROM {table}
        WHERE close IS NULL OR close <= 0 OR open <= 0 OR high <= 0 OR low <= 0
           OR high < greatest(open, close) OR low > least(open, close) OR high < low
        ORDER BY ticker, date
    """
    return _outcome(conn, sql, "prices positive and low <= open, close <= high", table)


# A split day's move in a split-adjusted series: a real split of ratio r shows up as |ln(move)| = |ln(r)|, a
# market move is small. "Moves like the market" = closer to no jump than to the split jump.
_SPLIT_DAYS = """
    split_days AS (
        SELECT s.ticker, s.date AS split_date, s.numerator, s.denominator,
               abs(ln(s.numerator / s.denominator)) AS split_jump
        FROM silver.fmp_splits s
        WHERE s.numerator > 0 AND s.denominator > 0 AND s.numerator <> s.denominator
    )"""


def _split_day_moves(table: str, column: str) -> str:
    """Rows (ticker, split, trading day, move) for the first trading day on or after each split date."""
    return f"""
        WITH {_SPLIT_DAYS},
        series AS (
            SELECT ticker, date, {column} AS value, lag({column}) OVER (PARTITION BY ticker ORDER BY date) AS previous
            FROM {table}
        )
        SELECT d.ticker, d.split_date, p.date AS trading_date, d.numerator, d.denominator,
               p.previous AS value_before, p.value AS value_on_split_day,
               abs(ln(p.value / p.previous)) AS log_move, d.split_jump
        FROM split_days d
        ASOF JOIN series p ON p.ticker = d.ticker AND p.date >= d.split_date
        WHERE p.previous > 0 AND p.value > 0"""


def _split_continuity(conn: duckdb.DuckDBPyConnection, table: str, column: str) -> CheckOutcome:
    moves = _split_day_moves(table, column)
    sql = f"SELECT * FROM ({moves}) WHERE log_move >= split_jump / 2 ORDER BY ticker, split_date"
    out = _outcome(conn, sql, f"{column} moves like the market, not by the split ratio, on split days", table)
    out.metadata["splits_checked"] = int(conn.execute(f"SELECT count(*) FROM ({moves})").fetchall()[0][0])
    return out


def check_split_continuity(conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_price_daily") -> CheckOutcome:
    """split_adj_close does not jump by the split ratio on the first trading day of any split in the data."""
    return _split_continuity(conn, table, "split_adj_close")


def check_market_cap_split_continuity(
    conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_valuation_daily"
) -> CheckOutcome:
    """market_cap does not jump by the split ratio on the first trading day of any split in the data."""
    return _split_continuity(conn, table, "market_cap")


def check_market_cap_matches_fmp(
    conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_valuation_daily", tolerance: float = 0.25
) -> CheckOutcome:
    """Gold's market_cap is within 25% of FMP's historical-market-capitalization where both exist (WARN).

    They differ a little by design (Gold uses the statement's weighted average shares, FMP the shares outstanding
    that day); a share-basis error shows up as a factor of the split ratio.
    """
    sql = f"""
        SELECT g.ticker, g.date, g.market_cap, f.market_cap AS fmp_market_cap,
               g.market_cap / f.market_cap - 1 AS relative_gap
        FROM {table} g
        JOIN silver.fmp_market_cap f ON f.ticker = g.ticker AND f.date = g.date
        WHERE g.market_cap IS NOT NULL AND f.market_cap > 0 AND abs(g.market_cap / f.market_cap - 1) > ?
        ORDER BY abs(g.market_cap / f.market_cap - 1) DESC
    """
    out = _outcome(conn, sql, f"market_cap within {tolerance:.0%} of FMP's", table, [tolerance])
    out.metadata["compared_rows"] = int(
        conn.execute(f"""
        SELECT count(*) FROM {table} g JOIN silver.fmp_market_cap f ON f.ticker = g.ticker AND f.date = g.date
        WHERE g.market_cap IS NOT NULL
    """).fetchall()[0][0]
    )
    return out


check_market_cap_matches_fmp.severity = "WARN"


def check_total_return_matches_fmp(
    conn: duckdb.DuckDBPyConnection, table: str = "gold.fact_price_daily", tolerance: float = 0.002
) -> CheckOutcome:
    """Gold's daily total return equals FMP's /dividend-adjusted one within 0.2 points (WARN).

    Only pairs of consecutive FMP rows from the same response are compared: rows fetched at different times can
    be on different share bases.
    """
    sql = f"""
        WITH fmp AS (
            SELECT ticker, date, close / lag(close) OVER w - 1 AS fmp_return,
                   bronze_file_id = lag(bronze_file_id) OVER w AS same_file
            FROM silver.fmp_price_eod_total_return
            WINDOW w AS (PARTITION BY ticker ORDER BY date)
        )
        SELECT g.ticker, g.date, g.total_return_1d, f.fmp_return, g.total_return_1d - f.fmp_return AS gap
        FROM {table} g
        JOIN fmp f ON f.ticker = g.ticker AND f.date = g.date
        WHERE f.same_file AND abs(g.total_return_1d - f.fmp_return) > ?
        ORDER BY abs(g.total_return_1d - f.fmp_return) DESC
    """
    return _outcome(
        conn, sql, f"daily total return within {tolerance} of FMP's dividend-adjusted series", table, [tolerance]
    )


check_total_return_matches_fmp.severity = "WARN"


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


def check_key_unique(conn: duckdb.DuckDBPyConnection, name: str) -> CheckOutcome:
    """No key twice. On the DuckDB file the PRIMARY KEY already refuses it; a DuckLake has no keys, so this
    check is what proves the build's delete-and-insert kept them unique."""
    key = ", ".join(models.MODELS[name].key)
    sql = f"SELECT {key}, count(*) AS copies FROM gold.{name} GROUP BY ALL HAVING count(*) > 1 ORDER BY ALL"
    return _outcome(conn, sql, f"every key ({key}) is unique", f"gold.{name}")


def _key_unique(name: str) -> Callable[[duckdb.DuckDBPyConnection], CheckOutcome]:
    def check(conn: duckdb.DuckDBPyConnection) -> CheckOutcome:
        return check_key_unique(conn, name)

    check.__name__ = f"check_key_unique__{name}"
    return check


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
# A check function may carry `severity = "WARN"`; the others are ERROR (blocking).
GOLD_CHECKS: dict[str, tuple[Callable[[duckdb.DuckDBPyConnection], CheckOutcome], ...]] = {
    "fact_price_daily": (
        check_price_sanity,
        check_split_continuity,
        check_total_return_matches_fmp,
        _in_dim("gold.fact_price_daily"),
    ),
    "fact_fundamentals_quarterly": (
        _balance("gold.fact_fundamentals_quarterly"),
        _in_dim("gold.fact_fundamentals_quarterly"),
    ),
    "fact_fundamentals_annual": (_balance("gold.fact_fundamentals_annual"), _in_dim("gold.fact_fundamentals_annual")),
    "fact_valuation_daily": (
        check_market_cap_positive,
        check_no_lookahead,
        check_market_cap_split_continuity,
        check_market_cap_matches_fmp,
        _in_dim("gold.fact_valuation_daily"),
    ),
    "fact_macro_daily": (check_macro_no_lookahead,),
}
GOLD_CHECKS = {name: (_key_unique(name), *GOLD_CHECKS.get(name, ())) for name in models.MODELS}
