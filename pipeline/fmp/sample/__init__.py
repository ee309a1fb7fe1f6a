"""A deterministic, offline stand-in for the FMP `stable` REST API.

Why it exists: the demo and CI must run the whole pipeline (fetch -> Bronze -> Silver -> Gold) without a
network or an API key, and tests need data whose properties are known in advance. `SampleSource` answers
every path of the shipped keymap with FMP-shaped JSON (the stable API's field names, its quirks such as
`fiscalYear` as a string, its caps, windows and error bodies), and `sample_transport` plugs it into httpx.

Properties the rest of the project relies on:
- Deterministic: same (as_of, tickers, knobs, path, params) -> same bytes. Randomness is seeded from
  `zlib.crc32` of names, never from Python's `hash()`. As-traded values for a past date do not depend on
  `as_of` (a later `as_of` only adds rows); what does depend on it is what FMP itself rewrites (below).
- Nothing is dated after `as_of`, and no statement is returned before its `filingDate`.
- FMP's real semantics (fmp_api.md section 1), which Gold must get right:
  - `/historical-price-eod/full` is split-adjusted (prices and volume) on the share basis of `as_of`, so its
    whole history is rewritten when `as_of` passes a split; `/non-split-adjusted` serves as-traded bars under
    `adjOpen..adjClose` names; `/dividend-adjusted` is split- and dividend-adjusted (total return).
  - statement share counts and EPS are restated onto the basis of `as_of`, while `filingDate` keeps the
    original date; `dividends.adjDividend` is split-adjusted to `as_of`, `dividend` is as declared.
  - `economic-indicators` dates are the start of the reference period; an observation is served only once
    its release (listed in `economic-calendar`, UTC datetimes) is on or before `as_of`.
  - many filings are accepted after the 16:00 New York close (`acceptedDate`, Eastern wall clock).
  - one loss-making ticker (SNAP) and one reverse split (GE, 1-for-8 on 2021-08-02).
- Consistent across datasets: as-traded prices drop on split dates and `splits` lists the same events;
  dividends are paid in cash-flow statements; key metrics and ratios are derived from the statements and the
  price at period end (both on the `as_of` basis).
- Accounting identities hold exactly (integer dollars) on every statement.

Where things live: `companies` (the catalogue), `prices` (bars, split factors, dividends, total return),
`statements` and `metrics` (fundamentals), `macro` (treasury, indicators, calendar), `trading_days`,
`ticker_routes` and `market_routes` (one handler per FMP path), `wire` (response shape, parameter rules),
`source` (`SampleSource`: routing and caching) and `transport` (httpx).
"""

from pipeline.fmp.sample.companies import SAMPLE_TICKERS
from pipeline.fmp.sample.source import SampleSource
from pipeline.fmp.sample.transport import sample_transport
from pipeline.fmp.sample.wire import SampleResponse

__all__ = ["SAMPLE_TICKERS", "SampleResponse", "SampleSource", "sample_transport"]
