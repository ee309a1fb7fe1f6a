-- Shared CTEs: every (ticker, day) as-traded bar, the split index and the current share basis.
--
-- FMP's semantics decide every formula here (see the sample source and README "What the numbers mean"):
-- - /historical-price-eod/non-split-adjusted (silver.fmp_price_eod_as_traded) is as traded: the source of truth.
-- - /historical-price-eod/full (silver.fmp_price_eod) is split-adjusted on the share basis of the day it was served,
--   and FMP rewrites that history after every split; each row is read with its own serving day, so rows fetched
--   before and after a split are each put back on the as-traded basis correctly.
-- - statement share counts and EPS are restated onto the basis of their serving day, too.
-- cum(t) is the number of shares per original share after the splits effective on or before t (a split dated s is
-- effective from the trading day s). Splits dated after a ticker's last price are announcements: ignored.
-- Parameters: $tickers (VARCHAR[], NULL = all); $bars_from (STRUCT(ticker, read_from)[]): for a ticker built by
-- date, the first bar to read (its new days and what their rolling windows need); a ticker not listed reads every
-- bar. Splits, dividends and statements are always read in full: they are few, and they re-base whole histories.
-- The day a source answered fixes the share basis FMP served: the fetch day in New York, or the planning day when
-- that is earlier (the bundled sample source, the test fakes and a PIPELINE_AS_OF replay answer as of that day).
served_on AS (
    SELECT file_id, least({{ ny_date('fetched_at') }}, coalesce(as_of, {{ ny_date('fetched_at') }})) AS served_on
    FROM ops.file_ingestions
),
bars_from AS (
    SELECT unnest(CAST($bars_from AS STRUCT(ticker VARCHAR, read_from DATE)[]), recursive := true)
),
as_traded AS (
    SELECT a.ticker, a.date, a.open, a.high, a.low, a.close, a.volume
    FROM silver.fmp_price_eod_as_traded a
    LEFT JOIN bars_from w ON w.ticker = a.ticker
    WHERE ($tickers IS NULL OR list_contains($tickers, a.ticker)) AND (w.read_from IS NULL OR a.date >= w.read_from)
),
full_rows AS (
    -- split-adjusted on the basis of the fetch day (FMP rewrites /full after each split)
    SELECT f.ticker, f.date, f.open, f.high, f.low, f.close, f.volume, {{ served_on('f') }} AS basis_date
    FROM silver.fmp_price_eod f
    {{ join_served_on('f') }}
    LEFT JOIN bars_from w ON w.ticker = f.ticker
    WHERE ($tickers IS NULL OR list_contains($tickers, f.ticker)) AND (w.read_from IS NULL OR f.date >= w.read_from)
),
-- first and last price day of each ticker, over every bar (also those a by-date build does not read)
price_span AS (
    SELECT ticker, min(first_date) AS first_date, max(last_date) AS last_date
    FROM (
        SELECT ticker, min(date) AS first_date, max(date) AS last_date
        FROM silver.fmp_price_eod_as_traded
        WHERE ($tickers IS NULL OR list_contains($tickers, ticker))
        GROUP BY ticker
        UNION ALL
        SELECT ticker, min(date), max(date)
        FROM silver.fmp_price_eod
        WHERE ($tickers IS NULL OR list_contains($tickers, ticker))
        GROUP BY ticker
    )
    GROUP BY ticker
),
split_events AS (
    SELECT s.ticker, s.date, product(s.numerator / s.denominator) AS ratio
    FROM silver.fmp_splits s
    JOIN price_span l ON l.ticker = s.ticker AND s.date <= l.last_date
    WHERE s.numerator > 0 AND s.denominator > 0
    GROUP BY s.ticker, s.date
),
-- cum(t) from each split date on (look it up with an ASOF join on date <= t; no row = 1.0)
split_index AS (
    SELECT ticker, date,
           product(ratio) OVER (PARTITION BY ticker ORDER BY date ROWS UNBOUNDED PRECEDING) AS cum
    FROM split_events
),
-- cum_L: the current basis, after every split up to the last price
current_basis AS (
    SELECT ticker, product(ratio) AS cum_l FROM split_events GROUP BY ticker
),
derived_from_full AS (
    -- as traded = /full * k with k = cum(fetch day) / cum(day); volume / k
    SELECT f.*, coalesce(at_fetch.cum, 1.0) / coalesce(at_day.cum, 1.0) AS k
    FROM full_rows f
    ASOF LEFT JOIN split_index at_fetch ON at_fetch.ticker = f.ticker AND at_fetch.date <= f.basis_date
    ASOF LEFT JOIN split_index at_day ON at_day.ticker = f.ticker AND at_day.date <= f.date
    WHERE NOT EXISTS (SELECT 1 FROM as_traded a WHERE a.ticker = f.ticker AND a.date = f.date)
),
bars AS (
    SELECT ticker, date, open, high, low, close, volume, 'as_traded' AS price_source
    FROM as_traded
    UNION ALL
    SELECT ticker, date, open * k, high * k, low * k, close * k, CAST(round(volume / k) AS BIGINT),
           'derived_from_full'
    FROM derived_from_full
),
based_bars AS (
    SELECT b.*, coalesce(si.cum, 1.0) AS cum_day, coalesce(cb.cum_l, 1.0) AS cum_l,
           coalesce(si.cum, 1.0) / coalesce(cb.cum_l, 1.0) AS split_factor
    FROM bars b
    ASOF LEFT JOIN split_index si ON si.ticker = b.ticker AND si.date <= b.date
    LEFT JOIN current_basis cb ON cb.ticker = b.ticker
)
