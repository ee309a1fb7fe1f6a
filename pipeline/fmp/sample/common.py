"""Seeded randomness, safe division and date arithmetic shared by the sample generators.

Randomness is seeded from `zlib.crc32` of names, never from Python's `hash()` (salted per process), so the
same names give the same draws in every run.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import zlib

import numpy as np


def crc(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(crc(*parts))


def safe_div(a: float, b: float) -> float:
    """a / b as a finite float; 0.0 when the denominator is 0 (never NaN/Infinity in JSON)."""
    if not b:
        return 0.0
    value = a / b
    return float(value) if math.isfinite(value) else 0.0


def iso(d: dt.date) -> str:
    return d.isoformat()


def add_years(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def quarter_end(year: int, quarter: int) -> dt.date:
    month = quarter * 3
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def on_or_after_weekday(d: dt.date) -> dt.date:
    """`d`, or the Monday after it when it falls on a weekend."""
    while d.weekday() >= 5:
        d += dt.timedelta(days=1)
    return d
