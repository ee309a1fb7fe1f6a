"""Share basis per ticker: cum(t), the product of split ratios effective on or before day t.

A split dated s is effective from the trading day s (prices on s are post-split). Only splits with a positive
numerator and denominator and dated on or before the ticker's last price date count: an announced future split
has not changed any number yet. cum_L, the basis of the last price date, is the "current basis".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MARKET_TZ = "America/New_York"


@dataclass(frozen=True)
class SplitBasis:
    dates: np.ndarray  # datetime64[ns], ascending split dates
    cumulative: np.ndarray  # cumulative[i] = product of the first i ratios; cumulative[0] = 1.0

    def cum(self, when: pd.Series | pd.Timestamp) -> np.ndarray | float:
        """cum(t) for one day or a Series of days (NaT gives NaN)."""
        if isinstance(when, pd.Series):
            days = pd.to_datetime(when).to_numpy(dtype="datetime64[ns]")
            idx = np.searchsorted(self.dates, days, side="right")
            out = self.cumulative[idx].astype(float)
            out[pd.isna(days)] = np.nan
            return out
        if pd.isna(when):
            return float("nan")
        idx = np.searchsorted(self.dates, np.datetime64(pd.Timestamp(when), "ns"), side="right")
        return float(self.cumulative[idx])

    @property
    def current(self) -> float:
        """cum_L: every counted split is on or before the last price date."""
        return float(self.cumulative[-1])


NO_SPLITS = SplitBasis(np.array([], dtype="datetime64[ns]"), np.array([1.0]))


def split_bases(splits: pd.DataFrame, last_price_date: dict[str, pd.Timestamp]) -> dict[str, SplitBasis]:
    """One SplitBasis per ticker that has splits or prices. A ticker without prices counts all its splits."""
    out: dict[str, SplitBasis] = {}
    tickers = set(splits["ticker"]) | set(last_price_date)
    for ticker in tickers:
        s = splits[(splits["ticker"] == ticker) & (splits["numerator"] > 0) & (splits["denominator"] > 0)]
        last = last_price_date.get(ticker)
        if last is not None:
            s = s[s["date"] <= last]
        s = s.sort_values("date")
        ratios = (s["numerator"] / s["denominator"]).to_numpy(dtype=float)
        out[ticker] = SplitBasis(
            s["date"].to_numpy(dtype="datetime64[ns]"), np.concatenate([[1.0], np.cumprod(ratios)])
        )
    return out


def basis_for(bases: dict[str, SplitBasis], ticker: str) -> SplitBasis:
    return bases.get(ticker, NO_SPLITS)


def et_timestamp(utc: pd.Series) -> pd.Series:
    """Naive UTC timestamps (DuckDB TIMESTAMP) as naive US Eastern wall-clock timestamps."""
    ts = pd.to_datetime(utc)
    return ts.dt.tz_localize("UTC").dt.tz_convert(MARKET_TZ).dt.tz_localize(None)


def et_date(utc: pd.Series) -> pd.Series:
    """F(row): the US Eastern calendar day of a UTC timestamp, as a midnight Timestamp."""
    return et_timestamp(utc).dt.normalize()
