"""The periods a source serves as of a day: every quarter filed on or before `as_of`, fiscal years summed from
their quarters, and the restated quarter the `revision` knob produces (same date and period, new values, a later
filing accepted after the close)."""

from __future__ import annotations

import datetime as dt

from pipeline.fmp.sample.common import quarter_end, safe_div
from pipeline.fmp.sample.companies import Company
from pipeline.fmp.sample.prices import Dividend
from pipeline.fmp.sample.statements import (
    FIRST_FISCAL_YEAR,
    Period,
    accepted_time,
    build_quarter,
    filing_date_of,
    initial_state,
    shares_on,
)


def _fiscal_year_row(quarters: list[Period]) -> Period:
    """FY = sum of the four quarters for flows, year-end balance sheet, EPS on the year-end share count."""
    q4 = quarters[-1]
    income = {k: sum(q.income[k] for q in quarters) for k in q4.income}
    for k in ("weightedAverageShsOut", "weightedAverageShsOutDil"):
        income[k] = q4.income[k]
    income["eps"] = round(safe_div(income["netIncome"], income["weightedAverageShsOut"]), 2)
    income["epsDiluted"] = round(safe_div(income["netIncome"], income["weightedAverageShsOutDil"]), 2)
    cash = {k: sum(q.cash[k] for q in quarters) for k in q4.cash}
    cash["cashAtBeginningOfPeriod"] = quarters[0].cash["cashAtBeginningOfPeriod"]
    cash["cashAtEndOfPeriod"] = q4.cash["cashAtEndOfPeriod"]
    latest = max(quarters, key=lambda q: q.accepted)
    return Period(
        date=q4.date,
        period="FY",
        fiscal_year=q4.fiscal_year,
        filing=max(q4.filing, latest.filing),
        accepted=max(q4.accepted, latest.accepted),
        income=income,
        balance=dict(q4.balance),
        cash=cash,
    )


def generate_periods(
    comp: Company, as_of: dt.date, dividends: list[Dividend], revision: int
) -> tuple[list[Period], list[Period]]:
    """All quarters and fiscal years filed on or before as_of, oldest first."""
    paid: dict[tuple[int, int], int] = {}
    for d in dividends:
        key = (d.payment.year, (d.payment.month - 1) // 3 + 1)
        shares = shares_on(comp, d.date)
        paid[key] = paid.get(key, 0) + int(round(d.dividend * shares))

    quarters: list[Period] = []
    drivers: list[tuple[int, int, int, dict[str, int]]] = []  # (q, year, quarter, state before)
    state = initial_state(comp)
    # Statements start two fiscal years before the first trade (an S-1 shows about that much history).
    q = max(0, int(comp.first_trade[:4]) - 2 - FIRST_FISCAL_YEAR) * 4 if comp.first_trade else 0
    while True:
        year, quarter = FIRST_FISCAL_YEAR + q // 4, q % 4 + 1
        end = quarter_end(year, quarter)
        filing = filing_date_of(comp, end, year, quarter)
        if filing > as_of or (comp.delisted_on is not None and filing > comp.delisted_on):
            break  # a delisted company files nothing after its delisting
        income, balance, cash, new_state = build_quarter(
            comp, q, year, quarter, state, paid.get((year, quarter), 0), basis=as_of
        )
        drivers.append((q, year, quarter, state))
        quarters.append(Period(end, f"Q{quarter}", year, filing, accepted_time(comp, filing, q), income, balance, cash))
        state = new_state
        q += 1

    if revision and len(quarters) >= 3:
        # Restate the third-newest quarter: same date and period, new values, filed with the newest one.
        k = len(quarters) - 3
        q_idx, year, quarter, before = drivers[k]
        income, balance, cash, _ = build_quarter(
            comp, q_idx, year, quarter, before, paid.get((year, quarter), 0), basis=as_of, scale=1 + 0.02 * revision
        )
        filing = quarters[-1].filing
        quarters[k] = Period(
            quarters[k].date,
            quarters[k].period,
            year,
            filing,
            f"{filing.isoformat()} 18:{30 + revision % 30:02d}:00",
            income,
            balance,
            cash,
        )

    years: list[Period] = []
    for i in range(0, len(quarters) - 3, 4):
        years.append(_fiscal_year_row(quarters[i : i + 4]))
    return quarters, years
