"""`security_id` beside `ticker` on Gold's fact tables (DESIGN.md section 12): a join across a rename or a reused
ticker is right when it goes through the security, not the ticker string.

The id comes from the same shared CTEs as `gold.dim_security` (`sql/_security_master.sql`), computed from Silver
like every Gold model, so a fact table never reads another Gold table. The fact tables therefore also read the
security master's Silver inputs: a new symbol change or delisting recomputes them (a full rebuild, as any moved
global input does).
"""

from __future__ import annotations

from pipeline.gold.templates import render

# the Silver tables the security master reads
SECURITY_INPUTS = ("fmp_company_profile", "fmp_actively_trading", "fmp_delisted_companies", "fmp_symbol_change")
SECURITY_COLUMN = ("security_id", "BIGINT")
SECURITY_DESCRIPTION = (
    "The security the row belongs to (gold.dim_security): the holder of the ticker on the row's date, else the "
    "ticker's current holder (FMP serves a symbol's history for its current holder). Join on it, not on ticker, "
    "across renames and reused tickers."
)


def with_security(sql: str, date_column: str) -> str:
    """The fact SELECT `sql` with a trailing `security_id` column, resolved from (ticker, `date_column`)."""
    return render("_with_security", inner=sql, date_column=date_column)
