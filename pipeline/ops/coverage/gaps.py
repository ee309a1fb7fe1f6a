"""Gap rules: what a series should hold between its first and last Silver date, and what is missing.

One rule per series, chosen from the keymap and the data, so a new dataset needs no code:
- `trading`: daily series (median spacing of row dates <= 4 days: EOD prices, the Treasury curve, daily
  snapshots). Expected = every NYSE session between the first and last Silver date that is not also a US
  federal holiday (Columbus and Veterans Day: the exchange trades, the Treasury publishes no curve). The
  union errs towards silence: a missing EOD price on Columbus Day is not reported, but no closure is ever
  reported as a gap. Every missing expected day counts; consecutive days are shown as one range.
- `fiscal-q` / `fiscal-y`: statements (discriminator `quarter`/`annual`). Periods are numbered by
  (fiscal_year, period) when the table has those columns (else by the calendar quarter/year of the row
  date); a number missing between the first and last period held is a gap ("FY2023 Q2", "FY2021").
- `monthly` / `quarterly`: calendar series (all row dates on the same day of the month, spacing ~1 or ~3
  months: economic indicators); a missing month or quarter is a gap.
- `events` (dividends, splits: irregular dates) and `snapshot` (no row date): no expected cadence, so no
  gaps; the heatmap shows the months that have rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd

from pipeline import market_calendar
from pipeline.keymap.model import KeymapEntry
from pipeline.ops.coverage.model import Month, SeriesCoverage


def trading_days(start: dt.date, end: dt.date) -> np.ndarray:
    """Expected observation days of a daily series between start and end (inclusive), as datetime64[D]."""
    return np.setdiff1d(market_calendar.sessions(start, end), market_calendar.federal_holidays(start, end))


def months_of(days: np.ndarray) -> dict[Month, int]:
    """Count of days per (year, month)."""
    if len(days) == 0:
        return {}
    months, counts = np.unique(days.astype("datetime64[M]"), return_counts=True)
    return {(int(str(m)[:4]), int(str(m)[5:7])): int(n) for m, n in zip(months, counts)}


def day_ranges(days: np.ndarray, expected: np.ndarray) -> list[str]:
    """Missing days as ranges of consecutive *expected* days ("2024-03-04..2024-03-08 (5)")."""
    position = {d: i for i, d in enumerate(expected.tolist())}
    ranges: list[list[dt.date]] = []
    for day in days.tolist():
        if ranges and position[day] == position[ranges[-1][-1]] + 1:
            ranges[-1].append(day)
        else:
            ranges.append([day])
    return [f"{r[0]}" if len(r) == 1 else f"{r[0]}..{r[-1]} ({len(r)})" for r in ranges]


def classify(entry: KeymapEntry, days: np.ndarray, fiscal: bool) -> str:
    """Pick the gap rule of one series from the keymap and the spacing of its row dates."""
    if entry.silver.row_date is None:
        return "snapshot"
    if fiscal and entry.discriminator in ("quarter", "annual"):
        return "fiscal-q" if entry.discriminator == "quarter" else "fiscal-y"
    if len(days) < 2:
        return "trading" if entry.recipe.min_age_days <= 1 and entry.recipe.is_windowed else "events"
    spacing = float(np.median(np.diff(days).astype(int)))
    if spacing <= 4:
        return "trading"
    same_day = len({d.day for d in days.tolist()}) == 1
    if same_day and 27 <= spacing <= 32:
        return "monthly"
    if same_day and 88 <= spacing <= 93:
        return "quarterly"
    return "events"


def apply_trading(s: SeriesCoverage, days: np.ndarray) -> None:
    expected = trading_days(s.silver_first, s.silver_last)
    missing = np.setdiff1d(expected, days)
    present = np.intersect1d(expected, days)
    have = months_of(present)
    s.months = {m: (n, have.get(m, 0)) for m, n in months_of(expected).items()}
    s.missing = len(missing)
    s.missing_labels = day_ranges(missing, expected)


def add_months(day: dt.date, months: int) -> Month:
    index = day.year * 12 + day.month - 1 + months
    return index // 12, index % 12 + 1


def apply_periods(
    s: SeriesCoverage, numbered: dict[int, dt.date], step_months: int, name: Callable[[int], str]
) -> None:
    """Shared by fiscal and calendar periods: `numbered` maps a consecutive period number to its row date."""
    if not numbered:
        return
    lo, hi = min(numbered), max(numbered)
    anchor_n = lo
    months: dict[Month, list[int]] = {}
    labels: list[str] = []
    for n in range(lo, hi + 1):
        if n in numbered:
            anchor_n = n
            month = (numbered[n].year, numbered[n].month)
        else:
            month = add_months(numbered[anchor_n], step_months * (n - anchor_n))
            labels.append(name(n))
        cell = months.setdefault(month, [0, 0])
        cell[0] += 1
        cell[1] += n in numbered
    s.months = {m: (e, p) for m, (e, p) in months.items()}
    s.missing = len(labels)
    s.missing_labels = labels


def fiscal_numbers(frame: pd.DataFrame, quarterly: bool) -> dict[int, dt.date]:
    """Period number -> row date: fy*4 + q for quarters, fy for years; falls back to the calendar of the date."""
    out: dict[int, dt.date] = {}
    blank = [None] * len(frame)
    for day, fy, period in zip(frame["d"], frame.get("fy", blank), frame.get("period", blank)):
        day = pd.Timestamp(day).date()
        period = str(period or "").upper()
        year = int(fy) if fy is not None and not pd.isna(fy) else day.year
        if quarterly:
            named = len(period) == 2 and period[0] == "Q" and period[1] in "1234"
            q = int(period[1]) if named else (day.month - 1) // 3 + 1
            out[year * 4 + q - 1] = day
        elif period in ("", "FY"):
            out[year] = day
    return out


def fill_silver(s: SeriesCoverage, frame: pd.DataFrame, fiscal: bool) -> None:
    """Attach the Silver facts and the gaps of one series to it."""
    days = np.unique(pd.to_datetime(frame["d"]).values.astype("datetime64[D]"))
    s.silver_rows = len(frame)
    s.silver_first, s.silver_last = days[0].item(), days[-1].item()
    s.rule = classify(s.entry, days, fiscal)
    if s.rule == "trading":
        apply_trading(s, days)
    elif s.rule in ("fiscal-q", "fiscal-y"):
        quarterly = s.rule == "fiscal-q"
        apply_periods(
            s,
            fiscal_numbers(frame, quarterly),
            3 if quarterly else 12,
            (lambda n: f"FY{n // 4} Q{n % 4 + 1}") if quarterly else (lambda n: f"FY{n}"),
        )
    elif s.rule in ("monthly", "quarterly"):
        step = 1 if s.rule == "monthly" else 3
        numbered = {(d.year * 12 + d.month - 1) // step: d for d in days.tolist()}
        apply_periods(s, numbered, step, lambda n: f"{n * step // 12}-{n * step % 12 + 1:02d}")
    else:
        s.months = {m: (0, n) for m, n in months_of(days).items()}
