"""gold.fact_price_daily recomputed: as-traded bars, split-adjusted and total-return series, derived columns.

Three series, never mixed: as traded (what printed that day), split-adjusted (as traded * cum(date)/cum_L, the
current share basis) and total return (split-adjusted * the product of dividend factors after the day).
/full rows are split-adjusted on the basis of the day F the source served them, so an as-traded price derived from
one is price * cum(F)/cum(date).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline_tests.oracle.basis import SplitBasis, basis_for, split_bases

BAR = ("open", "high", "low", "close")


def last_price_dates(silver: dict[str, pd.DataFrame]) -> dict[str, pd.Timestamp]:
    frames = [f[["ticker", "date"]] for f in (silver["fmp_price_eod"], silver["fmp_price_eod_as_traded"]) if len(f)]
    if not frames:
        return {}
    return pd.concat(frames).groupby("ticker")["date"].max().to_dict()


def bases_from(silver: dict[str, pd.DataFrame]) -> dict[str, SplitBasis]:
    return split_bases(silver["fmp_splits"], last_price_dates(silver))


def dividend_amounts(divs: pd.DataFrame, basis: SplitBasis) -> pd.Series:
    """The as-declared amount (basis cum(D)): `dividend`, else adj_dividend restated from its fetch basis."""
    restated = divs["adj_dividend"] * basis.cum(divs["served_on"]) / basis.cum(divs["date"])
    return divs["dividend"].where(divs["dividend"].notna(), restated)


def as_traded_bars(ticker: str, silver: dict[str, pd.DataFrame], basis: SplitBasis) -> pd.DataFrame:
    traded = silver["fmp_price_eod_as_traded"]
    traded = traded[traded["ticker"] == ticker] if len(traded) else traded
    full = silver["fmp_price_eod"]
    full = full[full["ticker"] == ticker] if len(full) else full
    have = set(traded["date"]) if len(traded) else set()
    rows = []
    if len(traded):
        t = traded[["date", *BAR, "volume"]].copy()
        t["volume"] = t["volume"].astype(float)
        t["price_source"] = "as_traded"
        rows.append(t)
    if len(full):
        f = full[~full["date"].isin(have)].copy()
        if len(f):
            fetch_basis = basis.cum(f["served_on"])
            day_basis = basis.cum(f["date"])
            d = f[["date"]].copy()
            for col in BAR:
                d[col] = f[col].to_numpy(dtype=float) * fetch_basis / day_basis
            d["volume"] = f["volume"].to_numpy(dtype=float) * day_basis / fetch_basis
            d["price_source"] = "derived_from_full"
            rows.append(d)
    out = pd.concat(rows) if rows else pd.DataFrame(columns=["date", *BAR, "volume", "price_source"])
    return out.sort_values("date").reset_index(drop=True)


def dividend_factors(ticker: str, p: pd.DataFrame, silver: dict[str, pd.DataFrame], basis: SplitBasis) -> list[tuple]:
    """(ex-date, f_D) for each dividend on or before the last price date with a positive amount and a prior close."""
    divs = silver["fmp_dividends"]
    divs = divs[divs["ticker"] == ticker] if len(divs) else divs
    if not len(divs) or not len(p):
        return []
    last = p["date"].max()
    divs = divs.assign(amount=dividend_amounts(divs, basis))
    divs = divs[(divs["date"] <= last) & (divs["amount"] > 0)]
    factors = []
    for _, d in divs.iterrows():
        prev = p[p["date"] < d["date"]]
        if not len(prev):
            continue
        on_current_basis = d["amount"] * basis.cum(d["date"]) / basis.current
        factors.append((d["date"], 1.0 - on_current_basis / prev["split_adj_close"].iloc[-1]))
    return factors


def one_ticker(ticker: str, silver: dict[str, pd.DataFrame], basis: SplitBasis) -> pd.DataFrame:
    p = as_traded_bars(ticker, silver, basis)
    p.insert(0, "ticker", ticker)
    p["split_factor"] = basis.cum(p["date"]) / basis.current
    for col in BAR:
        p[f"split_adj_{col}"] = p[col] * p["split_factor"]
    p["split_adj_volume"] = p["volume"] / p["split_factor"]

    factors = dividend_factors(ticker, p, silver, basis)
    p["total_return_factor"] = [math.prod(f for day, f in factors if day > date) for date in p["date"]]
    p["tr_close"] = p["split_adj_close"] * p["total_return_factor"]

    prev = p["split_adj_close"].shift()
    p["return_1d"] = p["split_adj_close"] / prev - 1
    p["total_return_1d"] = p["tr_close"] / p["tr_close"].shift() - 1
    ok = (p["split_adj_close"] > 0) & (prev > 0)
    p["log_return_1d"] = np.log((p["split_adj_close"] / prev).where(ok))
    for n in (20, 50, 200):
        p[f"sma_{n}"] = p["split_adj_close"].rolling(n, min_periods=n).mean()

    by_date = p.set_index("date")
    full_year = p["date"] >= p["date"].min() + pd.Timedelta(days=364)  # first date <= date - 364 days
    p["high_52w"] = by_date["split_adj_high"].rolling("365D").max().to_numpy()
    p["low_52w"] = by_date["split_adj_low"].rolling("365D").min().to_numpy()
    p["trading_days_per_year"] = by_date["split_adj_close"].rolling("365D").count().to_numpy()
    for col in ("high_52w", "low_52w", "trading_days_per_year"):
        p[col] = p[col].where(full_year)
    p["realized_vol_20d"] = p["log_return_1d"].rolling(20, min_periods=20).std(ddof=1) * np.sqrt(
        p["trading_days_per_year"]
    )
    return p


def price_daily(silver: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every (ticker, date) with a price, with every fact_price_daily column."""
    bases = bases_from(silver)
    tickers = sorted(last_price_dates(silver))
    frames = [one_ticker(t, silver, basis_for(bases, t)) for t in tickers]
    return pd.concat(frames).sort_values(["ticker", "date"]).reset_index(drop=True)
