"""Small text charts shown with a Gold table's materialization in the Dagster UI (markdown, no plotting library:
the UI renders a code block, and a few dozen lines of bars are enough to see that the numbers look right)."""

from __future__ import annotations

from collections.abc import Callable

import duckdb

VALUATION_CHART_SQL = """
    WITH pick AS (SELECT ticker FROM gold.fact_valuation_daily WHERE market_cap IS NOT NULL
                  GROUP BY ticker ORDER BY max(market_cap) DESC LIMIT 1),
         monthly AS (SELECT v.ticker, date_trunc('month', v.date) AS month, arg_max(v.close, v.date) AS close,
                            arg_max(v.pe_ttm, v.date) AS pe
                     FROM gold.fact_valuation_daily v JOIN pick USING (ticker) GROUP BY ALL)
    SELECT ticker, month, close, pe FROM monthly ORDER BY month DESC LIMIT 24
"""


def valuation_chart(conn: duckdb.DuckDBPyConnection) -> str | None:
    """Close and P/E of the largest ticker, monthly, for the last two years; None while the table is empty."""
    rows = conn.execute(VALUATION_CHART_SQL).fetchall()
    if not rows:
        return None
    rows = rows[::-1]
    top = max(r[2] for r in rows if r[2] is not None) or 1.0
    lines = [f"**{rows[0][0]}: month-end close and P/E (TTM), last {len(rows)} months**", "", "```"]
    for _ticker, month, close, pe in rows:
        bar = "#" * int(40 * (close or 0) / top)
        pe_text = f"{pe:6.1f}" if pe is not None else "   n/a"
        lines.append(f"{month:%Y-%m} {close:9.2f} P/E {pe_text} |{bar}")
    lines.append("```")
    return "\n".join(lines)


CHARTS: dict[str, Callable[[duckdb.DuckDBPyConnection], str | None]] = {"fact_valuation_daily": valuation_chart}


def chart(conn: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """The chart of Gold table `name`, or None (most tables have none, and an empty table has none)."""
    make = CHARTS.get(name)
    return make(conn) if make else None
