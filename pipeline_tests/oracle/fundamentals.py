"""gold.fact_fundamentals_quarterly / _annual recomputed: statement values, current share basis, usable_from, TTM.

Statement share counts and EPS are served on the basis of the day F the source answered (the income row's
`served_on`); the Gold table states them on the current basis cum_L. A statement is usable from the first
NYSE session whose 16:00 ET close is at or after its acceptance time (the latest of the three statements'), on the
exchange calendar: which price days the warehouse holds plays no part.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pandas as pd

from pipeline_tests.oracle.basis import SplitBasis, basis_for
from pipeline_tests.oracle.prices import bases_from

KEY = ["ticker", "date", "period"]
STATEMENTS = ("fmp_income_statement", "fmp_balance_sheet", "fmp_cash_flow")
# where a copied column comes from when several Silver tables carry that name (first wins)
SOURCE_ORDER = ("fmp_income_statement", "fmp_balance_sheet", "fmp_cash_flow", "fmp_ratios", "fmp_key_metrics")
RENAMED = {"dividends_paid": ("fmp_cash_flow", "net_dividends_paid")}
TTM_ITEMS = (
    "revenue",
    "gross_profit",
    "operating_income",
    "net_income",
    "ebitda",
    "operating_cash_flow",
    "capital_expenditure",
    "free_cash_flow",
    "dividends_paid",
    "eps",
)
LINEAGE = ("bronze_file_id", "run_id", "fetched_at", "promoted_at", "served_on")
CLOSE = dt.time(16, 0)


def _statement_keys(silver: dict[str, pd.DataFrame], annual: bool) -> pd.DataFrame:
    keys = pd.concat([silver[t][KEY] for t in STATEMENTS if len(silver[t])]).drop_duplicates()
    is_fy = keys["period"] == "FY"
    return keys[is_fy if annual else keys["period"].isin(["Q1", "Q2", "Q3", "Q4"])].reset_index(drop=True)


@functools.cache
def nyse_sessions() -> np.ndarray:
    """Every NYSE session from 1990 to the end of next year (datetime64[ns]), from exchange-calendars itself."""
    import exchange_calendars

    end = f"{dt.date.today().year + 1}-12-31"
    days = exchange_calendars.get_calendar("XNYS", start="1990-01-01", end=end).sessions
    return days.to_numpy(dtype="datetime64[ns]")


def usable_from(accepted: pd.Timestamp, filing: pd.Timestamp) -> pd.Timestamp:
    """First NYSE session whose close (16:00 ET) is at or after `accepted` (without one: after the filing day)."""
    if pd.isna(accepted):
        if pd.isna(filing):
            return pd.NaT
        day = filing + pd.Timedelta(days=1)  # known from the start of the day after the filing
    else:
        day = accepted.normalize() + pd.Timedelta(days=1 if accepted.time() > CLOSE else 0)
    sessions = nyse_sessions()
    return pd.Timestamp(sessions[np.searchsorted(sessions, np.datetime64(day, "ns"))])


def _copied(frame: pd.DataFrame, silver: dict[str, pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """Each wanted column copied from the first Silver table (SOURCE_ORDER) that has it, joined on the key."""
    for col in columns:
        if col in frame.columns or col in ("period_end",):
            continue
        table, source_col = RENAMED.get(col, (None, col))
        if table is None:
            table = next((t for t in SOURCE_ORDER if len(silver[t]) and col in silver[t].columns), None)
        if table is None or col in LINEAGE:
            continue
        part = silver[table][KEY + [source_col]].rename(columns={source_col: col})
        frame = frame.merge(part, on=KEY, how="left")
    return frame


def _ttm(g: pd.DataFrame, item: str) -> pd.Series:
    """Sum of the last 4 rows by period_end; NULL unless 4 rows, span <= 300 days and all 4 carry the item."""
    values = g[item].astype(float)
    total = values.rolling(4, min_periods=4).sum()
    span = (g["date"] - g["date"].shift(3)).dt.days
    return total.where(span <= 300)


def fundamentals(silver: dict[str, pd.DataFrame], *, annual: bool, gold_columns: list[str]) -> pd.DataFrame:
    """Rows keyed (ticker, period_end, period), with every gold column the spec defines or copies from Silver."""
    bases = bases_from(silver)
    keys = _statement_keys(silver, annual)
    inc = silver["fmp_income_statement"]
    frame = keys.copy()

    # accepted_date: the latest of the three statements' acceptance times
    accepted = pd.concat([silver[t][KEY + ["accepted_date"]] for t in STATEMENTS if len(silver[t])])
    frame = frame.merge(accepted.groupby(KEY, as_index=False)["accepted_date"].max(), on=KEY, how="left")
    meta = ["fiscal_year", "reported_currency", "filing_date"]
    for col in meta:  # copied from the first statement that has the row
        vals = None
        for t in STATEMENTS:
            part = frame[KEY].merge(silver[t][KEY + [col]], on=KEY, how="left")[col]
            vals = part if vals is None else vals.where(vals.notna(), part)
        frame[col] = vals.to_numpy()

    served = inc[KEY + ["served_on", "eps", "eps_diluted", "weighted_average_shs_out", "weighted_average_shs_out_dil"]]
    frame = frame.merge(served.rename(columns={"served_on": "share_basis_date"}), on=KEY, how="left")
    ratios = silver["fmp_ratios"]
    bvps = ratios[KEY + ["book_value_per_share", "served_on"]].rename(columns={"served_on": "ratios_served_on"})
    frame = frame.merge(bvps, on=KEY, how="left")

    out = []
    for ticker, g in frame.groupby("ticker"):
        basis: SplitBasis = basis_for(bases, ticker)
        g = g.sort_values("date").reset_index(drop=True)
        fetch = basis.cum(g["share_basis_date"])
        for col in ("weighted_average_shs_out", "weighted_average_shs_out_dil"):
            g[col] = g[col].astype(float) * basis.current / fetch
        for col in ("eps", "eps_diluted"):
            g[col] = g[col].astype(float) * fetch / basis.current
        g["book_value_per_share"] = g["book_value_per_share"] * basis.cum(g["ratios_served_on"]) / basis.current
        g["usable_from"] = [usable_from(a, f) for a, f in zip(g["accepted_date"], g["filing_date"])]
        out.append(g)
    frame = pd.concat(out).drop(columns=["ratios_served_on"])
    frame = _copied(frame, silver, [c for c in gold_columns if not c.endswith("_ttm")] + list(TTM_ITEMS))
    if not annual:
        parts = []
        for _, g in frame.groupby("ticker"):
            g = g.sort_values("date").reset_index(drop=True)
            for item in TTM_ITEMS:
                g[f"{item}_ttm"] = _ttm(g, item)
            parts.append(g)
        frame = pd.concat(parts)
    frame["usable_from"] = pd.to_datetime(frame["usable_from"])
    return (
        frame.rename(columns={"date": "period_end"})
        .sort_values(["ticker", "period_end", "period"])
        .reset_index(drop=True)
    )
