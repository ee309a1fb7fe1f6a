"""Market-wide series: the treasury yield curve, economic indicators and their economic calendar, and the
equity risk premium table.

Indicator observations are dated at the start of their reference period, as FMP dates them, and are served
only once released; the release time lives in the economic calendar (UTC datetimes), not in the indicator
payload (fmp_api.md section 1).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from pipeline.fmp.fields import TREASURY_MATURITIES
from pipeline.fmp.sample.common import on_or_after_weekday, rng
from pipeline.fmp.sample.trading_days import trading_days

TREASURY_START = dt.date(2019, 1, 2)
INDICATOR_START = dt.date(2000, 1, 1)

MATURITIES = TREASURY_MATURITIES
MATURITY_YEARS = np.array([1 / 12, 2 / 12, 3 / 12, 0.5, 1, 2, 3, 5, 7, 10, 20, 30])

# name -> (frequency, value in 2000, log drift and noise per observation, release: days after the reference
# period ends). FMP dates an observation at the start of its reference period (GDP Q1 2026 is 2026-01-01) and
# keeps no release date in the payload (fmp_api.md section 1); the release time is in the economic calendar.
INDICATORS: dict[str, tuple[str, float, float, float, int]] = {
    "GDP": ("quarter", 10_250.0, 0.0105, 0.006, 29),
    "realGDP": ("quarter", 13_880.0, 0.0055, 0.005, 29),
    "nominalPotentialGDP": ("quarter", 10_300.0, 0.0105, 0.001, 40),
    "realGDPPerCapita": ("quarter", 49_000.0, 0.004, 0.005, 40),
    "CPI": ("month", 169.3, 0.0021, 0.002, 12),
    "inflationRate": ("level", 2.5, 0.0, 0.25, 12),
    "unemploymentRate": ("level", 4.8, 0.0, 0.15, 6),
    "federalFunds": ("level", 3.0, 0.0, 0.12, 1),
    "retailSales": ("month", 270_000.0, 0.003, 0.01, 15),
    "consumerSentiment": ("level", 90.0, 0.0, 2.5, 1),
    "durableGoods": ("month", 200_000.0, 0.002, 0.02, 26),
    "totalNonfarmPayroll": ("month", 130_000.0, 0.001, 0.001, 6),
    "industrialProductionTotalIndex": ("month", 90.0, 0.001, 0.005, 16),
    "30YearFixedRateMortgageAverage": ("level", 7.5, 0.0, 0.15, 3),
    "15YearFixedRateMortgageAverage": ("level", 7.0, 0.0, 0.15, 3),
    "smoothedUSRecessionProbabilities": ("level", 1.0, 0.0, 0.5, 35),
}
# indicator -> the economic-calendar event that first publishes it (free-text names, as FMP lists them:
# fmp_api.md section 1, e.g. "GDP Growth Rate QoQ Adv"). Indicators not listed have no calendar event.
_RELEASE_EVENTS: dict[str, tuple[str, str]] = {  # name -> (event, unit)
    "GDP": ("GDP Growth Rate QoQ Adv", "%"),
    "realGDP": ("GDP Growth Rate QoQ Adv", "%"),
    "CPI": ("CPI", ""),
    "inflationRate": ("Inflation Rate YoY", "%"),
    "unemploymentRate": ("Unemployment Rate", "%"),
    "retailSales": ("Retail Sales MoM", "%"),
}
_RELEASE_TIME_ET = dt.time(8, 30)
_NEW_YORK = ZoneInfo("America/New_York")
# Valid names FMP answers with [] (measured).
EMPTY_INDICATORS = frozenset({"inflation", "3MonthOr90DayRatesAndYieldsCertificatesOfDeposit"})
_LEVEL_BOUNDS = {
    "inflationRate": (-1.0, 9.0),
    "unemploymentRate": (3.4, 14.0),
    "federalFunds": (0.05, 6.5),
    "consumerSentiment": (50.0, 110.0),
    "30YearFixedRateMortgageAverage": (2.7, 8.0),
    "15YearFixedRateMortgageAverage": (2.2, 7.5),
    "smoothedUSRecessionProbabilities": (0.0, 100.0),
}

RISK_PREMIUM: tuple[tuple[str, str, float], ...] = (
    ("Zimbabwe", "Africa", 12.02),
    ("United States", "North America", 0),
    ("United Kingdom", "Europe", 0.8),
    ("Switzerland", "Europe", 0),
    ("South Africa", "Africa", 3.73),
    ("Mexico", "North America", 2.33),
    ("Japan", "Asia", 0.8),
    ("India", "Asia", 2.71),
    ("Germany", "Europe", 0),
    ("China", "Asia", 0.99),
    ("Canada", "North America", 0),
    ("Brazil", "South America", 3.59),
    ("Australia", "Australia & New Zealand", 0),
)
BASE_EQUITY_RISK_PREMIUM = 4.33


def treasury_curve(as_of: dt.date) -> tuple[list[str], np.ndarray]:
    """(ISO dates, yields per maturity) for every trading day from TREASURY_START to as_of, oldest first."""
    days = trading_days(TREASURY_START, as_of)
    n = len(days)
    level = 2.5 + np.cumsum(rng("ust", "level").standard_normal(n) * 0.035)
    slope = 0.3 + np.cumsum(rng("ust", "slope").standard_normal(n) * 0.02)
    level = np.clip(level, 0.1, 6.5)
    slope = np.clip(slope, -1.5, 2.5)
    shape = 1 - np.exp(-MATURITY_YEARS / 3.0)
    curve = np.clip(level[:, None] - slope[:, None] * (0.5 - shape[None, :]), 0.01, None)
    return np.datetime_as_string(days, unit="D").tolist(), np.round(curve, 2)


def _period_end(start: dt.date, months: int) -> dt.date:
    y, m = start.year + (start.month - 1 + months) // 12, (start.month - 1 + months) % 12 + 1
    return dt.date(y, m, 1) - dt.timedelta(days=1)


def _release_utc(period_end: dt.date, days_after: int) -> dt.datetime:
    """08:30 New York on a weekday `days_after` the reference period ends, as a naive UTC datetime."""
    day = on_or_after_weekday(period_end + dt.timedelta(days=days_after))
    local = dt.datetime.combine(day, _RELEASE_TIME_ET, tzinfo=_NEW_YORK)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def _stamp(t: dt.datetime) -> str:
    """The economic calendar's `date`: a UTC datetime without zone or fraction."""
    return t.strftime("%Y-%m-%d %H:%M:%S")


def indicator_series(name: str, as_of: dt.date) -> list[tuple[dt.date, float, dt.datetime]]:
    """(reference period start, value, release time UTC), oldest first, for observations released by as_of."""
    freq, start, drift, noise, days_after = INDICATORS[name]
    step = 3 if freq == "quarter" else 1
    rows: list[tuple[dt.date, dt.datetime]] = []
    y, m = INDICATOR_START.year, INDICATOR_START.month
    while True:
        d = dt.date(y, m, 1)
        released = _release_utc(_period_end(d, step), days_after)
        if released.date() > as_of:
            break
        rows.append((d, released))
        m += step
        if m > 12:
            y, m = y + 1, m - 12
    z = rng("indicator", name).standard_normal(len(rows))
    if freq == "level":
        lo, hi = _LEVEL_BOUNDS[name]
        values, x = [], start
        for e in z:  # a bounded walk: reflect at the bounds
            x = min(max(x + noise * e, lo), hi)
            values.append(round(x, 2))
    else:
        growth = np.exp(np.cumsum(drift + noise * z))
        values = [round(float(v), 3) for v in start * growth]
    return [(d, v, released) for (d, released), v in zip(rows, values)]


def calendar_events(as_of: dt.date, until: dt.date) -> list[dict[str, Any]]:
    """Economic-calendar rows up to `until` (scheduled ones after as_of have no actual yet), oldest first.

    FMP's calendar gives `date` as a UTC datetime (fmp_api.md section 1). The US rows publish the mapped
    indicators; a German GDP release a fortnight earlier shares the US event's name, so a consumer that ignores
    `country` pairs US GDP with the wrong, earlier release.
    """
    horizon = until + dt.timedelta(days=140)  # series far enough ahead to schedule events up to `until`
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, dt.datetime]] = set()
    for name, (event, unit) in _RELEASE_EVENTS.items():
        freq, _, _, _, days_after = INDICATORS[name]
        step = 3 if freq == "quarter" else 1
        series = indicator_series(name, horizon)
        prev_value: float | None = None
        for i, (start, value, released) in enumerate(series):
            actual = value
            if unit == "%" and freq != "level":  # growth events report the change, in percent
                actual = None if i == 0 else round((value / series[i - 1][1] - 1) * 100 * (4 if step == 3 else 1), 1)
            if released.date() > until or (event, released) in seen:
                prev_value = actual
                continue
            seen.add((event, released))
            scheduled = released.date() > as_of
            rows.append(
                {
                    "date": _stamp(released),
                    "country": "US",
                    "event": event,
                    "currency": "USD",
                    "previous": prev_value,
                    "estimate": None if actual is None else round(actual * 1.01, 2),
                    "actual": None if scheduled else actual,
                    "change": None
                    if scheduled or actual is None or prev_value is None
                    else round(actual - prev_value, 2),
                    "changePercentage": None,
                    "impact": "High",
                    "unit": unit,
                }
            )
            prev_value = actual
            if event == "GDP Growth Rate QoQ Adv":
                second = _release_utc(_period_end(start, step), days_after + 30)
                if second.date() <= until:
                    rows.append(
                        {
                            **rows[-1],
                            "date": _stamp(second),
                            "event": "GDP Growth Rate QoQ 2nd Est",
                            "actual": None if second.date() > as_of else actual,
                        }
                    )
                early = _release_utc(_period_end(start, step), 14) + dt.timedelta(hours=-6)
                if early.date() <= until:
                    rows.append(
                        {
                            **rows[-1],
                            "date": _stamp(early),
                            "country": "DE",
                            "currency": "EUR",
                            "event": "GDP Growth Rate QoQ Adv",
                            "impact": "Medium",
                        }
                    )
    rows.sort(key=lambda r: (r["date"], r["country"], r["event"]))
    return rows
