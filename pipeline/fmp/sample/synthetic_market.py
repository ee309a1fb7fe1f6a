"""A synthetic whole market for the sample source: thousands of listed common stocks with realistic calendars.

Why: the whole-market work (issue 19) has to be measured and tested on a market the size of FMP's US listing
(about 6,000 common stocks, fmp_api.md section 3) without a network, a key or a fixture file per ticker. The
market is opt-in (`PIPELINE_SAMPLE_MARKET=N`, or `SyntheticMarket(N)` in tests and benchmarks); the default
demo keeps the ten named companies.

What it holds, all derived from the market's size and fixed seeds (deterministic, nothing stored):
- `tickers`: the ten named sample companies first, then synthetic symbols of 3-4 letters, a few class shares
  spelled FMP's way (`ABCD-B`, fmp_api.md section 2.4); every one passes the one ticker rule (`pipeline.tickers`).
- `company(symbol)`: the same `Company` description every sample generator consumes (prices, statements,
  splits, dividends, profile, screener), so every route serves the synthetic tickers with FMP's real semantics
  (fmp_api.md section 1): as-traded bars jump on the split day that `/splits` lists, `/full` is rewritten on
  the current basis, statements are restated, dividends are paid in the cash-flow statement.
- Calendars like the real market's:
  - splits: from 2023 to 2027 a few every week (about one per 2,000 tickers, at least one, each ticker at most
    once), on NYSE sessions, about two in three forward (2:1, 3:1, 4:1) and the rest reverse (1:5, 1:10, 1:20);
    one name in ten also split once between 2016 and 2023 (`companies`);
  - dividends: about 45 % of the synthetic names pay quarterly, their ex-dates spread over the three months of
    the quarter (the first ex-month of each payer is 1, 2 or 3);
  - earnings: quarters are filed 25-45 days after the quarter ends (`statements.filing_date_of`), so most
    acceptances fall in the 3-6 weeks after quarter end and Mondays collect the weekend's share: the seasons.

Lazy and cheap: the symbol list and the split schedule are small (computed once, in milliseconds); a
company's parameters are derived on demand from its name, and the sample source generates its data on first
request (`SampleSource`'s LRU caches), so a 6,000-ticker market costs nothing up front.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import string

import numpy as np

from pipeline.fmp.sample.common import crc, quarter_end
from pipeline.fmp.sample.companies import (
    FOREIGN_LISTINGS,
    KNOWN_SYMBOLS,
    SAMPLE_TICKERS,
    Company,
    company,
    synthetic_parameters,
)
from pipeline.fmp.sample.statements import filing_date_of
from pipeline.fmp.sample.trading_days import trading_days
from pipeline.tickers import is_ticker

MIN_MARKET = len(SAMPLE_TICKERS)
MAX_MARKET = 50_000
SPLIT_SCHEDULE_START = dt.date(2023, 1, 2)  # a Monday; splits are scheduled week by week from here
SPLIT_SCHEDULE_END = dt.date(2027, 12, 31)
TICKERS_PER_WEEKLY_SPLIT = 2_000  # one split a week per 2,000 tickers (at least one a week)
DIVIDEND_PAYER_SHARE = 45  # percent of synthetic names that pay a quarterly dividend
CLASS_SHARE_EVERY = 400  # one synthetic name in 400 is a class-B share of the name before it
# (numerator, denominator, weight): forward splits two times in three, reverse splits the rest
SPLIT_RATIOS: tuple[tuple[int, int, int], ...] = (
    (2, 1, 40),
    (3, 1, 15),
    (4, 1, 10),
    (1, 5, 10),
    (1, 10, 15),
    (1, 20, 10),
)


def _symbol(i: int, attempt: int) -> str:
    """A 3- or 4-letter symbol (about 60 % four letters), seeded by the name's position."""
    seed = crc("market-symbol", i, attempt)
    length = 4 if seed % 5 < 3 else 3
    letters = string.ascii_uppercase
    return "".join(letters[(seed >> (5 * k + 3)) % 26] for k in range(length))


def _weighted_ratio(seed: int) -> tuple[int, int]:
    total = sum(w for _, _, w in SPLIT_RATIOS)
    pick = seed % total
    for num, den, weight in SPLIT_RATIOS:
        if pick < weight:
            return num, den
        pick -= weight
    raise AssertionError("unreachable")


@dataclasses.dataclass(frozen=True)
class SyntheticMarket:
    """A market of `size` tickers: the named sample companies plus synthetic ones (see the module docstring)."""

    size: int

    def __post_init__(self) -> None:
        if not MIN_MARKET <= self.size <= MAX_MARKET:
            raise ValueError(f"a synthetic market holds {MIN_MARKET}-{MAX_MARKET} tickers, not {self.size}")

    @functools.cached_property
    def tickers(self) -> tuple[str, ...]:
        """The named sample tickers, then synthetic symbols; unique, never a foreign listing's symbol."""
        taken = set(SAMPLE_TICKERS) | {s for s, _ in FOREIGN_LISTINGS}
        out = list(SAMPLE_TICKERS)
        i = 0
        while len(out) < self.size:
            if i % CLASS_SHARE_EVERY == CLASS_SHARE_EVERY - 1 and out[-1] not in SAMPLE_TICKERS:
                candidate = f"{out[-1]}-B"  # FMP spells class shares with a dash (fmp_api.md section 2.4)
            else:
                attempt = 0
                candidate = _symbol(i, attempt)
                while candidate in taken:
                    attempt += 1
                    candidate = _symbol(i, attempt)
            assert is_ticker(candidate), candidate
            taken.add(candidate)
            out.append(candidate)
            i += 1
        return tuple(out)

    @functools.cached_property
    def synthetic(self) -> tuple[str, ...]:
        """The synthetic tickers (the market without the named companies)."""
        return tuple(t for t in self.tickers if t not in KNOWN_SYMBOLS)

    @functools.cached_property
    def _ticker_set(self) -> frozenset[str]:
        return frozenset(self.tickers)

    @functools.cached_property
    def split_schedule(self) -> dict[str, tuple[tuple[str, int, int], ...]]:
        """Per synthetic ticker, the split the market schedules for it (ISO session date, numerator, denominator).

        Week by week from SPLIT_SCHEDULE_START to SPLIT_SCHEDULE_END, `splits_per_week` tickers drawn by seed
        among those not yet drawn split on a weekday of that week, moved to the next NYSE session when it is a
        holiday (FMP dates a split on a trading day). One scheduled split per ticker at most: a small market runs
        out of candidates early, and a ticker split many times over would trade at fractions of a cent."""
        remaining = list(self.synthetic)
        if not remaining:
            return {}
        sessions = trading_days(SPLIT_SCHEDULE_START, SPLIT_SCHEDULE_END)
        per_week = max(1, round(len(remaining) / TICKERS_PER_WEEKLY_SPLIT))
        out: dict[str, tuple[tuple[str, int, int], ...]] = {}
        week = 0
        while remaining and (monday := SPLIT_SCHEDULE_START + dt.timedelta(weeks=week)) <= SPLIT_SCHEDULE_END:
            for j in range(min(per_week, len(remaining))):
                seed = crc("market-split", self.size, week, j)
                k = int(np.searchsorted(sessions, np.datetime64(monday + dt.timedelta(days=seed % 5))))
                if k < len(sessions):
                    num, den = _weighted_ratio(seed >> 13)
                    out[remaining.pop((seed >> 3) % len(remaining))] = ((str(sessions[k]), num, den),)
            week += 1
        return out

    def splits_between(self, start: dt.date, end: dt.date) -> list[tuple[str, str, int, int]]:
        """(ISO date, symbol, numerator, denominator) of the scheduled splits dated within [start, end], by date."""
        lo, hi = start.isoformat(), end.isoformat()
        return sorted(
            (day, symbol, num, den)
            for symbol, splits in self.split_schedule.items()
            for day, num, den in splits
            if lo <= day <= hi
        )

    def company(self, symbol: str) -> Company:
        """The `Company` the sample generators consume: a named company as catalogued, a synthetic one from its
        name with the market's split schedule and dividend policy."""
        if symbol in KNOWN_SYMBOLS or symbol not in self._ticker_set:
            return company(symbol)
        params = synthetic_parameters(symbol)
        # an older split derived from the name (one name in ten, 2016-2023), then the market's scheduled one
        scheduled = self.split_schedule.get(symbol, ())
        older = tuple(s for s in params["splits"] if not scheduled or s[0] < scheduled[0][0])
        params["splits"] = older + scheduled
        if crc("market-dividend", symbol) % 100 >= DIVIDEND_PAYER_SHARE:
            params["dividend_yield"] = 0.0
        elif not params["dividend_yield"]:
            params["dividend_yield"] = 0.01 + (crc("market-yield", symbol) % 300) / 10_000
        return Company(symbol=symbol, **params)

    def calendar(self, start: dt.date, end: dt.date) -> dict[str, dict[str, int]]:
        """Per NYSE session in [start, end]: how many of the market's tickers split, go ex-dividend and file a
        quarter that day (what a market-wide calendar would list, fmp_api.md section 3.3). Computed with the
        generators' own rules (`statements.filing_date_of`, `prices.generate_dividends`' ex-date rule) without
        generating any price history; a benchmark prints it to show which day is the split or earnings day."""
        sessions = [str(d) for d in trading_days(start, end)]
        out = {d: {"splits": 0, "ex_dividends": 0, "filings": 0} for d in sessions}
        for day, _, _, _ in self.splits_between(start, end):
            if day in out:
                out[day]["splits"] += 1
        all_sessions = trading_days(start - dt.timedelta(days=120), end + dt.timedelta(days=10))
        for symbol in self.tickers:
            comp = self.company(symbol)
            for year in range(start.year - 1, end.year + 1):
                for quarter in range(1, 5):
                    filed = filing_date_of(comp, quarter_end(year, quarter), year, quarter).isoformat()
                    if filed in out:
                        out[filed]["filings"] += 1
                if comp.dividend_yield <= 0:
                    continue
                for k in range(4):
                    nominal = dt.date(year, comp.dividend_month + 3 * k, 8 + crc("div", symbol) % 10)
                    i = int(np.searchsorted(all_sessions, np.datetime64(nominal)))
                    if i < len(all_sessions) and str(all_sessions[i]) in out:
                        out[str(all_sessions[i])]["ex_dividends"] += 1
        return out
