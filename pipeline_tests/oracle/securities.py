"""The oracle of `security_id` on the fact tables, written from the security master's rules (README "Securities,
not tickers"; fmp_api.md 3.4), not from its SQL:

- a security's id is the first 15 hex digits of md5("<first ticker>|<day its holding of that ticker began>"), the
  day left empty when it is the ticker's first known holder;
- a delisted row of a ticker that ended before the listing of the ticker's current holder belongs to an earlier
  holder, whose window is [ipoDate, delistedDate];
- a rename (date C, old O, new N) continues the holder of N under O before C: its first ticker is the oldest one;
- a fact row belongs to the holder of its ticker on its date, else to the ticker's current holder.
Symbol changes onto a ticker held by another company are not modelled here (the oracle's tickers have none).
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pandas as pd


def security_key(ticker: str, since: dt.date | None) -> int:
    text = f"{ticker}|{since.isoformat() if since else ''}"
    return int(hashlib.md5(text.encode()).hexdigest()[:15], 16)


def _frame(silver: dict[str, pd.DataFrame], name: str, columns: list[str], dates: tuple[str, ...]) -> pd.DataFrame:
    """The Silver table (empty with `columns` when absent), its `dates` columns as datetime.date (NaT: None)."""
    df = silver.get(name)
    df = df.copy() if df is not None and len(df) else pd.DataFrame(columns=columns)
    for col in dates:
        df[col] = [None if pd.isna(v) else pd.Timestamp(v).date() for v in df[col]]
    return df


def _first_ticker(ticker: str, changes: pd.DataFrame) -> str:
    seen = {ticker}
    while True:
        before = changes[changes["new_symbol"] == ticker]
        if before.empty:
            return ticker
        ticker = str(before.sort_values("date")["old_symbol"].iloc[-1])
        if ticker in seen:
            return ticker
        seen.add(ticker)


def security_ids(silver: dict[str, pd.DataFrame], frame: pd.DataFrame, date_column: str) -> pd.Series:
    """security_id per row of `frame` (columns ticker and `date_column`)."""
    delisted = _frame(
        silver, "fmp_delisted_companies", ["symbol", "ipo_date", "delisted_date"], ("ipo_date", "delisted_date")
    )
    changes = _frame(silver, "fmp_symbol_change", ["date", "old_symbol", "new_symbol"], ("date",))
    profile = _frame(silver, "fmp_company_profile", ["ticker", "ipo_date"], ("ipo_date",))
    out = pd.Series(index=frame.index, dtype="Int64")
    days = pd.to_datetime(frame[date_column]).dt.date
    for ticker, rows in frame.groupby("ticker").groups.items():
        listed = profile.loc[profile["ticker"] == ticker, "ipo_date"]
        listed_on = listed.iloc[0] if len(listed) and pd.notna(listed.iloc[0]) else None
        mine = delisted[delisted["symbol"] == ticker].sort_values("delisted_date")
        earlier = mine[[listed_on is not None and d < listed_on for d in mine["delisted_date"]]]
        first = _first_ticker(str(ticker), changes)
        since = None
        if first == ticker and len(earlier):
            since = max(earlier["delisted_date"]) + dt.timedelta(days=1)
        current = security_key(first, since)
        ids = []
        for day in days.loc[rows]:
            holder, boundary = current, None
            for _, old in earlier.iterrows():
                if (old["ipo_date"] is None or old["ipo_date"] <= day) and day <= old["delisted_date"]:
                    holder = security_key(str(ticker), boundary)
                boundary = old["delisted_date"] + dt.timedelta(days=1)
            ids.append(holder)
        out.loc[rows] = ids
    return out
