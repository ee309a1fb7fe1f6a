"""Price history: as-traded daily bars, the split factors that move them onto another share basis, dividends
and the total-return factor.

Bars are generated once on the as-traded basis (what printed that day); every other price view divides by a
split factor at serving time, so the split-adjusted history can be rewritten after each split the way FMP's is
(fmp_api.md section 1).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from pipeline.fmp.sample.common import crc, rng, safe_div
from pipeline.fmp.sample.companies import Company

PRICE_START = dt.date(2000, 1, 3)  # first trading day generated (covers every keymap history start)
PRICE_ANCHOR = dt.date(2025, 1, 2)  # the adjusted close equals Company.ref_price on this day
DIVIDEND_START = dt.date(2012, 1, 1)


@dataclass
class Prices:
    """Raw (as-traded) daily bars, oldest first; prices in cents to keep rounding exact."""

    days: np.ndarray  # datetime64[D]
    dates: np.ndarray  # ISO strings
    open: np.ndarray  # int64 cents
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # int64 shares
    vwap: np.ndarray  # float64, 4 decimals

    def close_on_or_before(self, d: dt.date) -> float:
        i = int(np.searchsorted(self.days, np.datetime64(d), side="right")) - 1
        return float(self.close[max(i, 0)]) / 100 if len(self.days) else 0.0


@dataclass(frozen=True)
class Dividend:
    date: dt.date
    record: dt.date
    payment: dt.date
    declaration: dt.date
    dividend: float
    adj_dividend: float
    yield_pct: float


def _splits_until(comp: Company, until: dt.date | None) -> list[tuple[dt.date, float]]:
    """(split day, ratio) of the splits on or before `until` (every split when None), in catalogue order."""
    out = []
    for d, num, den in comp.splits:
        day = dt.date.fromisoformat(d)
        if until is None or day <= until:
            out.append((day, num / den))
    return out


def split_factor(comp: Company, day: np.ndarray, until: dt.date | None = None) -> np.ndarray:
    """Product of the ratios of the splits after each day and on or before `until` (every split when None).

    An as-traded value on `day` divided by this is on the share basis of `until`: that is how FMP's
    split-adjusted `/full` history is rewritten after each split (fmp_api.md section 1).
    """
    factor = np.ones(len(day))
    for split_day, ratio in _splits_until(comp, until):
        factor[day < np.datetime64(split_day)] *= ratio
    return factor


def split_factor_on(comp: Company, d: dt.date, until: dt.date | None = None) -> float:
    """`split_factor` for a single day (a scalar loop: this runs once per row in several routes)."""
    factor = 1.0
    for split_day, ratio in _splits_until(comp, until):
        if d < split_day:
            factor *= ratio
    return factor


def generate_prices(comp: Company, days: np.ndarray, dates: np.ndarray, revised_before: dt.date | None) -> Prices:
    """Adjusted closes follow a log-linear trend plus a mean-reverting (AR(1)) deviation, pinned to
    `ref_price` on PRICE_ANCHOR; the splits then turn them into as-traded prices and volumes.

    `days` may run past as_of (to reach the anchor); callers slice. Each random stream has its own
    generator, so the first k draws do not depend on how many days are generated: history is stable.
    """
    n = len(days)
    sym = comp.symbol
    sigma = comp.vol / math.sqrt(252)
    phi = 0.998  # deviation half-life of about 350 trading days
    e = rng("ret", sym).standard_normal(n) * sigma
    t = np.arange(n)
    deviation = phi**t * np.cumsum(e * phi**-t)  # x_t = phi * x_{t-1} + e_t, vectorised
    anchor = min(int(np.searchsorted(days, np.datetime64(PRICE_ANCHOR))), n - 1)
    trend = comp.drift / 252 * (t - anchor)
    adj_close = comp.ref_price * np.exp(trend + deviation - deviation[anchor])
    gap = rng("gap", sym).standard_normal(n) * sigma * 0.25
    wick_hi = np.abs(rng("hi", sym).standard_normal(n)) * sigma * 0.5
    wick_lo = np.abs(rng("lo", sym).standard_normal(n)) * sigma * 0.5
    vol_noise = rng("vol", sym).standard_normal(n) * 0.35

    adj_open = np.concatenate((adj_close[:1], adj_close[:-1])) * np.exp(gap)
    factor = split_factor(comp, days)
    raw_open, raw_close = adj_open * factor, adj_close * factor
    raw_high = np.maximum(raw_open, raw_close) * (1 + wick_hi)
    raw_low = np.minimum(raw_open, raw_close) * (1 - wick_lo)

    def cents(x: np.ndarray) -> np.ndarray:
        return np.maximum(np.rint(x * 100).astype(np.int64), 1)

    o, c = cents(raw_open), cents(raw_close)
    h = np.maximum(cents(raw_high), np.maximum(o, c))
    lo = np.minimum(cents(raw_low), np.minimum(o, c))
    volume = np.rint(comp.avg_volume * np.exp(vol_noise) / factor).astype(np.int64)
    vwap = np.round((o + h + lo + c) / 400.0, 4)
    if revised_before is not None:
        # Late corrections: some past rows get a slightly different volume and a typical-price vwap.
        idx = np.arange(n)
        mask = (idx % 7 == 3) & (days < np.datetime64(revised_before))
        volume = np.where(mask, volume + 17 + idx % 50, volume)
        vwap = np.where(mask, np.round((h + lo + c) / 300.0, 4), vwap)
    return Prices(days, dates, o, h, lo, c, volume, vwap)


def generate_dividends(comp: Company, prices: Prices, as_of: dt.date) -> list[Dividend]:
    """Quarterly dividends (oldest first): `dividend` as declared (per as-traded share on the ex-date),
    `adj_dividend` split-adjusted to `as_of`'s basis (fmp_api.md section 1, /stable/dividends)."""
    if comp.dividend_yield <= 0 or not len(prices.days):
        return []
    out: list[Dividend] = []
    annual_adj = 0.0
    for year in range(DIVIDEND_START.year, as_of.year + 1):
        # The annual (adjusted) rate is reset each January from the price: yield stays near target.
        jan = prices.close_on_or_before(dt.date(year, 1, 10)) / split_factor_on(comp, dt.date(year, 1, 10))
        annual_adj = max(annual_adj * 1.02, comp.dividend_yield * jan)
        for k in range(4):
            month = comp.dividend_month + 3 * k
            ex = dt.date(year, month, 8 + crc("div", comp.symbol) % 10)
            i = int(np.searchsorted(prices.days, np.datetime64(ex)))
            if i >= len(prices.days):
                break
            ex = prices.days[i].item()
            if ex > as_of:
                break
            factor = split_factor_on(comp, ex)
            raw = max(round(annual_adj / 4 * factor, 2), 0.01)
            close = float(prices.close[i]) / 100
            out.append(
                Dividend(
                    date=ex,
                    record=ex,
                    payment=ex + dt.timedelta(days=14),
                    declaration=ex - dt.timedelta(days=21),
                    dividend=raw,
                    # adjDividend: split-adjusted to the basis FMP serves today (as_of)
                    adj_dividend=round(raw / split_factor_on(comp, ex, until=as_of), 6),
                    yield_pct=safe_div(raw * 4 * 100, close),
                )
            )
    return out


def total_return_factor(comp: Company, px: Prices, dividends: list[Dividend], as_of: dt.date) -> np.ndarray:
    """Per day: the product of (1 - dividend / previous close) over the ex-dates after it, both on the
    split-adjusted basis (the standard total-return adjustment; fmp_api.md section 1, /dividend-adjusted)."""
    basis = split_factor(comp, px.days, until=as_of)
    factor = np.ones(len(px.days))
    for div in dividends:
        i = int(np.searchsorted(px.days, np.datetime64(div.date)))
        if i == 0 or i >= len(px.days):
            continue
        amount = div.dividend / split_factor_on(comp, div.date, until=as_of)
        factor[:i] *= 1 - amount / (px.close[i - 1] / 100 / basis[i - 1])
    return factor
