"""The sample source's trading days: NYSE sessions, from the project's one market calendar."""

from __future__ import annotations

import datetime as dt

import numpy as np

from pipeline import market_calendar


def trading_days(start: dt.date, end: dt.date) -> np.ndarray:
    """NYSE sessions from start to end (both included), as datetime64[D], oldest first."""
    if end < start:
        return np.array([], dtype="datetime64[D]")
    return market_calendar.sessions(start, end)
