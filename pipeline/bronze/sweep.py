"""The safety sweep of event-driven refresh (`pipeline.bronze.refresh`): on which weekday each ticker is visited.

Every ticker gets one weekday in each period of PIPELINE_SWEEP_DAYS calendar days (`sweep_slots` weekdays), fixed
by its rank in the universe ordered by a stable hash, so every weekday takes the same share of the universe and a
ticker keeps its day from run to run and process to process. FMP's own derived series (the cross-checks) rotate on
the same slice of tickers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

EPOCH_MONDAY = dt.date(1970, 1, 5)


def sweep_slots(sweep_days: int) -> int:
    """Weekdays in one sweep period: every ticker is visited once in that many weekdays, which span at most
    `sweep_days` calendar days."""
    return max(1, sweep_days * 5 // 7)


def weekday_index(day: dt.date) -> int:
    """Weekdays since 1970-01-05 (a Saturday or Sunday counts as the Monday after it)."""
    weeks, rest = divmod((day - EPOCH_MONDAY).days, 7)
    return weeks * 5 + min(rest, 5)


def ticker_hash(ticker: str) -> int:
    """A stable hash (the same in every process and run, unlike `hash()`)."""
    return int(hashlib.sha256(ticker.encode()).hexdigest()[:12], 16)


def sweep_order(universe: Iterable[str]) -> dict[str, int]:
    """Each ticker's rank in the universe ordered by its stable hash. Slots taken by rank modulo the weekdays of a
    period hold ceil(n / slots) tickers at most, where slots by hash alone would vary by about +-sqrt(n / slots)
    (15 instead of 10 on some day for 200 tickers). A ticker added or removed moves the others by one weekday at
    most, and `SweepClock.due` catches a ticker whose last fetch is a whole period old."""
    return {t: n for n, t in enumerate(sorted(set(universe), key=lambda t: (ticker_hash(t), t)))}


@dataclass(frozen=True)
class SweepClock:
    """When the safety sweep (and the cross-check sample) reaches each ticker."""

    sweep_days: int
    order: Mapping[str, int]  # sweep_order of the universe

    @property
    def slots(self) -> int:
        return sweep_slots(self.sweep_days)

    def slot(self, ticker: str) -> int:
        rank = self.order.get(ticker)
        return (ticker_hash(ticker) if rank is None else rank) % self.slots

    def on(self, ticker: str, day: dt.date) -> bool:
        """The ticker's sweep day (a weekday)."""
        return weekday_index(day) % self.slots == self.slot(ticker)

    def due(self, ticker: str, day: dt.date, last: dt.date | None) -> bool:
        """On its sweep day, or its last fetch is a whole period old (a missed run, a universe change)."""
        return self.on(ticker, day) or (last is not None and (day - last).days >= self.sweep_days)

    def next(self, ticker: str, today: dt.date) -> dt.date:
        day = today + dt.timedelta(days=1)
        while not (day.weekday() < 5 and self.on(ticker, day)):
            day += dt.timedelta(days=1)
        return day
