"""When each macro indicator becomes known: the economic-calendar event that publishes it, and a fallback lag.

FMP dates an `economic-indicators` value at the start of its reference period (GDP for Q1 2026 is dated
2026-01-01) and keeps no release date, so joining on that date would publish GDP about four months early. The
release time comes from `economic-calendar` (UTC datetimes), whose event names are free text: the mapping below
names them explicitly. A value is paired with the first mapped US release after its reference period ends; where
no release is found (no calendar for those dates, or a plan without the calendar), the value counts as known
`lag_days` after the period ends. The lags are deliberately a little later than the usual US release schedule,
so a missing calendar costs a few days of freshness, never a look-ahead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    events: tuple[str, ...]  # economic-calendar `event` names (country US) that first publish the indicator
    lag_days: int  # fallback: days after the reference period ends


RELEASES: dict[str, Release] = {
    # BEA advance estimate about 30 days after the quarter (real and nominal GDP come out together)
    "GDP": Release(("GDP Growth Rate QoQ Adv",), 35),
    "realGDP": Release(("GDP Growth Rate QoQ Adv",), 35),
    # BLS CPI report, mid-month for the previous month
    "CPI": Release(("CPI",), 20),
    "inflationRate": Release(("Inflation Rate YoY",), 20),
    # BLS employment situation, first Friday of the next month
    "unemploymentRate": Release(("Unemployment Rate",), 10),
    # monthly average of the daily effective rate: known once the month is over (no calendar event)
    "federalFunds": Release((), 3),
    "retailSales": Release(("Retail Sales MoM",), 20),
}

# Indicators not listed above: known two months after their reference period ends.
DEFAULT_RELEASE_LAG_DAYS = 60
