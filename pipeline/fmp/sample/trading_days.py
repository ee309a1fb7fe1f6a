"""The sample source's trading-day calendar: weekdays minus a few fixed US market holidays.

Deliberately simple and kept in this one module, so it can later be pointed at a shared market calendar.
"""

from __future__ import annotations

import datetime as dt

import numpy as np


def _holidays(first_year: int, last_year: int) -> list[str]:
    """A few fixed US market holidays (New Year, Independence Day, Christmas)."""
    return [f"{y}-{md}" for y in range(first_year, last_year + 1) for md in ("01-01", "07-04", "12-25")]


def trading_days(start: dt.date, end: dt.date) -> np.ndarray:
    """Weekdays minus the fixed holidays, as datetime64[D], oldest first."""
    if end < start:
        return np.array([], dtype="datetime64[D]")
    days = np.arange(np.datetime64(start), np.datetime64(end) + 1, dtype="datetime64[D]")
    holidays = np.array(_holidays(start.year, end.year), dtype="datetime64[D]")
    return days[np.is_busday(days, holidays=holidays)]
