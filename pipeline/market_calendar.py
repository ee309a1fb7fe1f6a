"""NYSE trading sessions (from `exchange-calendars`) and US federal holidays (from pandas), as numpy days.

Lives at the top of the package, not under `ops`, because both the coverage report (ops) and the sample
source (fmp) need the same calendar, and neither layer should import the other for it.

The exchange calendar takes about a second to import and build, so it is built lazily, once per process,
covering 2000-01-01 (the first day the sample source generates) to the end of next year; a date outside
that span rebuilds it once, wider. Lookups run on the sessions as a sorted datetime64[D] array with
`searchsorted`: the library's own methods parse every argument (about 3x slower per call) and raise for
dates outside the span they were built for.
"""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np

EXCHANGE = "XNYS"
FIRST_YEAR = 2000

DayLike = dt.date | np.datetime64 | str

_lock = threading.Lock()
_span: tuple[int, int] = (0, -1)  # first and last year the sessions below cover
_sessions: np.ndarray = np.array([], dtype="datetime64[D]")


def _day(value: DayLike) -> np.datetime64:
    if isinstance(value, dt.datetime):
        value = value.date()
    return np.datetime64(value, "D")


def _year(day: np.datetime64) -> int:
    return int(day.astype("datetime64[Y]").astype(int)) + 1970


def _covering(*days: np.datetime64) -> np.ndarray:
    """All sessions of a span that includes `days` (building or widening the calendar when needed)."""
    global _span, _sessions
    lo, hi = min(_year(d) for d in days), max(_year(d) for d in days)
    if _span[0] <= lo and hi <= _span[1]:
        return _sessions
    with _lock:
        if not (_span[0] <= lo and hi <= _span[1]):
            import exchange_calendars  # about a second: only when a calendar is needed

            first = min(lo, FIRST_YEAR, _span[0] or FIRST_YEAR)
            last = max(hi, dt.date.today().year + 1, _span[1])
            calendar = exchange_calendars.get_calendar(EXCHANGE, start=f"{first}-01-01", end=f"{last}-12-31")
            _sessions = calendar.sessions.values.astype("datetime64[D]")
            _span = (first, last)
    return _sessions


def sessions(start: DayLike, end: DayLike) -> np.ndarray:
    """NYSE sessions from `start` to `end`, both inclusive, oldest first, as datetime64[D] (empty if end < start)."""
    lo, hi = _day(start), _day(end)
    if hi < lo:
        return np.array([], dtype="datetime64[D]")
    days = _covering(lo, hi)
    return days[np.searchsorted(days, lo, "left") : np.searchsorted(days, hi, "right")]


def is_session(day: DayLike) -> bool:
    """True when the NYSE holds a (full or early-close) session on `day`."""
    d = _day(day)
    days = _covering(d)
    i = np.searchsorted(days, d)
    return bool(i < len(days) and days[i] == d)


def next_session(day: DayLike) -> dt.date:
    """The first NYSE session strictly after `day` (which need not be a session itself)."""
    d = _day(day)
    days = _covering(d, d + 14)  # the longest closure since 1914 is four weekdays
    return days[np.searchsorted(days, d, "right")].item()


def federal_holidays(start: DayLike, end: DayLike) -> np.ndarray:
    """US federal holidays (observed days) from `start` to `end` inclusive, as datetime64[D].

    They include Columbus and Veterans Day, when the NYSE trades but the Treasury publishes no yield curve.
    """
    from pandas.tseries.holiday import USFederalHolidayCalendar

    lo, hi = _day(start), _day(end)
    if hi < lo:
        return np.array([], dtype="datetime64[D]")
    return USFederalHolidayCalendar().holidays(str(lo), str(hi)).values.astype("datetime64[D]")
