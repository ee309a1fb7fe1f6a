"""Read Silver and Gold tables into pandas with one convention: DATE columns as midnight Timestamps."""

from __future__ import annotations

import duckdb
import pandas as pd

from pipeline_tests.oracle.basis import et_date

SILVER_TABLES = (
    "fmp_company_profile",  # these four: the security master (security_id)
    "fmp_delisted_companies",
    "fmp_symbol_change",
    "fmp_actively_trading",
    "fmp_price_eod",
    "fmp_price_eod_as_traded",
    "fmp_price_eod_total_return",
    "fmp_market_cap",
    "fmp_splits",
    "fmp_dividends",
    "fmp_income_statement",
    "fmp_balance_sheet",
    "fmp_cash_flow",
    "fmp_key_metrics",
    "fmp_ratios",
    "fmp_treasury_rates",
    "fmp_economic_indicator",
    "fmp_economic_calendar",
)


def _frame(conn: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    cur = conn.execute(sql)
    kinds = {d[0]: str(d[1]) for d in cur.description}
    df = cur.df()
    for col, kind in kinds.items():
        if kind == "DATE" or kind.startswith("TIMESTAMP"):
            df[col] = pd.to_datetime(df[col]).astype("datetime64[ns]")
    return df


def table_exists(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, table]
        ).fetchone()[0]
    )


def served_on(rows: pd.DataFrame, planning_days: pd.DataFrame) -> pd.Series:
    """F(row): the day the source answered, on whose share basis it served the row. That is the US Eastern day of
    fetched_at, or the run's planning day (PIPELINE_AS_OF, kept in the ledger per Bronze file) when earlier: a
    stand-in serving as of a past day serves that day's basis, whatever the wall clock says."""
    fetched = et_date(rows["fetched_at"])
    planned = rows[["bronze_file_id"]].merge(planning_days, how="left", left_on="bronze_file_id", right_on="file_id")
    planned = pd.to_datetime(planned["as_of"]).astype("datetime64[ns]").to_numpy()
    return pd.Series(pd.DataFrame({"f": fetched.to_numpy(), "p": planned}).min(axis=1).to_numpy(), index=rows.index)


def load_silver(conn: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    """The current Silver rows the Gold tables read, each with `served_on` (F); a table the run did not create is
    an empty frame."""
    planning_days = _frame(conn, "SELECT DISTINCT file_id, as_of FROM ops.file_ingestions")
    out: dict[str, pd.DataFrame] = {}
    for name in SILVER_TABLES:
        if table_exists(conn, "silver", name):
            df = _frame(conn, f"SELECT * FROM silver.{name}")
            if "fetched_at" in df.columns:
                df["served_on"] = served_on(df, planning_days)
            out[name] = df
        else:
            out[name] = pd.DataFrame()
    return out


def load_gold(conn: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    return _frame(conn, f"SELECT * FROM gold.{name}")


def gold_columns(conn: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'gold' AND table_name = ? ORDER BY ordinal_position",
        [name],
    ).fetchall()
    return dict(rows)
