"""gold.fact_macro_daily recomputed: treasury as of each day, and each indicator as known on each day.

FMP dates an indicator observation at the start of its reference period, so an observation is shown only from
its release (the first matching US economic-calendar event after the period ends, at most 120 days later; a
release after 16:00 ET counts from the next day), else from period end + a per-indicator publication lag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from pipeline.fmp.fields import TREASURY_MATURITIES
from pipeline_tests.oracle.basis import et_timestamp

TREASURY = TREASURY_MATURITIES  # the FMP field names (a fact, not Gold's computation)
DEFAULT_LAG_DAYS = 60
RELEASE_WINDOW_DAYS = 120


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _months_between(a: pd.Timestamp, b: pd.Timestamp) -> int | None:
    if a.day == 1 and b.day == 1:
        return (b.year - a.year) * 12 + (b.month - a.month)
    return None


def period_ends(periods: list[pd.Timestamp]) -> list[pd.Timestamp]:
    """Next observation's start - 1 day; the newest spans as long as the gap before it (1 month if alone).

    A gap between two month starts is taken in months (a quarter starting 2024-01-01 ends 2024-03-31), which is
    what an analyst means by "the same length as the previous period"; otherwise in days."""
    out = []
    for i, p in enumerate(periods):
        if i + 1 < len(periods):
            out.append(periods[i + 1] - pd.Timedelta(days=1))
        elif i == 0:
            out.append(p + pd.DateOffset(months=1) - pd.Timedelta(days=1))
        else:
            months = _months_between(periods[i - 1], p)
            if months is not None:
                out.append(p + pd.DateOffset(months=months) - pd.Timedelta(days=1))
            else:
                out.append(p + (p - periods[i - 1]) - pd.Timedelta(days=1))
    return out


def known_from(period_end: pd.Timestamp, releases: pd.DataFrame, lag_days: int) -> tuple[pd.Timestamp, bool]:
    """(day the value became usable, whether a calendar release set it)."""
    window = releases[
        (releases["et"].dt.normalize() > period_end)
        & (releases["et"].dt.normalize() <= period_end + pd.Timedelta(days=RELEASE_WINDOW_DAYS))
    ]
    if len(window):
        first = window.sort_values("et").iloc[0]["et"]
        day = first.normalize()
        late = (first - day) > pd.Timedelta(hours=16)
        return day + pd.Timedelta(days=1 if late else 0), True
    return period_end + pd.Timedelta(days=lag_days), False


def indicator_observations(
    ind: pd.DataFrame, calendar: pd.DataFrame, events: Iterable[str], lag_days: int
) -> pd.DataFrame:
    ind = ind.sort_values("date").reset_index(drop=True)
    releases = pd.DataFrame({"et": pd.Series(dtype="datetime64[ns]")})
    if len(calendar):
        us = calendar[(calendar["country"] == "US") & calendar["event"].isin(list(events))]
        releases = pd.DataFrame({"et": et_timestamp(us["released_at"]).to_numpy()})
    periods = list(ind["date"])
    ends = period_ends(periods)
    known = [known_from(e, releases, lag_days) for e in ends]
    return pd.DataFrame(
        {
            "period": periods,
            "value": ind["value"].to_numpy(),
            "period_end": ends,
            "known_from": [k for k, _ in known],
            "from_release": [r for _, r in known],
        }
    )


def as_known_on(obs: pd.DataFrame, dates: pd.Series) -> pd.DataFrame:
    """For each date: the observation with the newest period among those known on or before it."""
    rows = []
    known = obs["known_from"].to_numpy(dtype="datetime64[ns]")
    for d in pd.to_datetime(dates).to_numpy(dtype="datetime64[ns]"):
        k = obs[known <= d]
        if len(k):
            r = k.loc[k["period"].idxmax()]
            rows.append((r["value"], r["period"], r["known_from"]))
        else:
            rows.append((np.nan, pd.NaT, pd.NaT))
    return pd.DataFrame(rows, columns=["value", "period", "known_from"])


def macro_dates(silver: Mapping[str, pd.DataFrame], price_dates: pd.Series) -> pd.Series:
    if len(price_dates):
        return pd.Series(sorted(set(pd.to_datetime(price_dates))))
    ind = silver["fmp_economic_indicator"]
    days = pd.bdate_range(ind["date"].min(), ind["date"].max())
    return pd.Series(days)


def macro_daily(
    silver: Mapping[str, pd.DataFrame], price_dates: pd.Series, releases: Mapping[str, tuple[Iterable[str], int]]
) -> pd.DataFrame:
    """`releases`: indicator name -> (calendar event names, publication lag in days)."""
    dates = macro_dates(silver, price_dates)
    out = pd.DataFrame({"date": dates})
    t = silver["fmp_treasury_rates"].sort_values("date")
    tr = pd.merge_asof(
        out,
        t.rename(columns={"date": "treasury_date"})[["treasury_date", *TREASURY]],
        left_on="date",
        right_on="treasury_date",
        direction="backward",
    )
    for col in ("treasury_date", *TREASURY):
        out[col] = tr[col].to_numpy()
    ind_all = silver["fmp_economic_indicator"]
    calendar = silver["fmp_economic_calendar"]
    for name, ind in ind_all.groupby("name"):
        events, lag = releases.get(name, ((), DEFAULT_LAG_DAYS))
        obs = indicator_observations(ind, calendar, events, lag)
        shown = as_known_on(obs, out["date"])
        col = snake(name)
        out[col] = shown["value"].to_numpy()
        out[f"{col}_period"] = pd.to_datetime(shown["period"]).to_numpy()
        out[f"{col}_known_from"] = pd.to_datetime(shown["known_from"]).to_numpy()
    return out
