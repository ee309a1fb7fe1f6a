-- gold.fact_price_daily: three explicitly named price series per (ticker, day): as traded, split-adjusted (current
-- basis) and total return; returns, SMAs, the 52-week range and volatility on the split-adjusted series.
WITH
{% include '_price_bars.sql' %},
split_adjusted AS (
    SELECT *, open * split_factor AS split_adj_open, high * split_factor AS split_adj_high,
           low * split_factor AS split_adj_low, close * split_factor AS split_adj_close,
           CAST(round(volume / split_factor) AS BIGINT) AS split_adj_volume
    FROM based_bars
),
-- A dividend on ex-date D (declared per share of D's basis) and the previous close, both on the current basis.
dividend_events AS (
    SELECT d.ticker, d.date,
           coalesce(d.dividend, d.adj_dividend * coalesce(at_fetch.cum, 1.0) / coalesce(at_ex.cum, 1.0))
               * coalesce(at_ex.cum, 1.0) / coalesce(cb.cum_l, 1.0) AS amount,
           prev.split_adj_close AS prev_close
    FROM silver.fmp_dividends d
    JOIN price_span l ON l.ticker = d.ticker AND d.date <= l.last_date
    LEFT JOIN current_basis cb ON cb.ticker = d.ticker
    ASOF LEFT JOIN split_index at_ex ON at_ex.ticker = d.ticker AND at_ex.date <= d.date
    {{ join_served_on('d') }}
    ASOF LEFT JOIN split_index at_fetch ON at_fetch.ticker = d.ticker AND at_fetch.date <= {{ served_on('d') }}
    ASOF JOIN split_adjusted prev ON prev.ticker = d.ticker AND prev.date < d.date
    WHERE ($tickers IS NULL OR list_contains($tickers, d.ticker))
),
dividend_factors AS (
    SELECT ticker, date, product(1 - amount / prev_close) AS factor
    FROM dividend_events
    WHERE amount > 0 AND prev_close > 0
    GROUP BY ticker, date
),
-- tr_factor(day) = product of the factors of the ex-dates after the day
dividend_cumulative AS (
    SELECT ticker, date,
           product(factor) OVER (PARTITION BY ticker ORDER BY date DESC ROWS UNBOUNDED PRECEDING) AS tr_factor
    FROM dividend_factors
),
with_total_return AS (
    SELECT s.*, coalesce(c.tr_factor, 1.0) AS total_return_factor,
           s.split_adj_close * coalesce(c.tr_factor, 1.0) AS tr_close
    FROM split_adjusted s
    ASOF LEFT JOIN dividend_cumulative c ON c.ticker = s.ticker AND s.date < c.date   -- first ex-date after the day
),
with_returns AS (
    SELECT t.*,
           split_adj_close / lag(split_adj_close) OVER by_day - 1 AS return_1d,
           tr_close / lag(tr_close) OVER by_day - 1 AS total_return_1d,
           CASE WHEN split_adj_close > 0 AND lag(split_adj_close) OVER by_day > 0
                THEN ln(split_adj_close / lag(split_adj_close) OVER by_day) END AS log_return_1d,
           ps.first_date <= t.date - 364 AS has_full_year   -- the ticker's first bar, also when not read
    FROM with_total_return t
    JOIN price_span ps ON ps.ticker = t.ticker
    WINDOW by_day AS (PARTITION BY t.ticker ORDER BY t.date)
)
SELECT ticker, date, open, high, low, close, volume, price_source, split_factor,
       split_adj_open, split_adj_high, split_adj_low, split_adj_close, split_adj_volume,
       total_return_factor, tr_close, return_1d, total_return_1d, log_return_1d,
       CASE WHEN count(*) OVER last_20 = 20 THEN avg(split_adj_close) OVER last_20 END AS sma_20,
       CASE WHEN count(*) OVER last_50 = 50 THEN avg(split_adj_close) OVER last_50 END AS sma_50,
       CASE WHEN count(*) OVER last_200 = 200 THEN avg(split_adj_close) OVER last_200 END AS sma_200,
       CASE WHEN has_full_year THEN max(split_adj_high) OVER last_365_days END AS high_52w,
       CASE WHEN has_full_year THEN min(split_adj_low) OVER last_365_days END AS low_52w,
       CASE WHEN has_full_year THEN count(*) OVER last_365_days END AS trading_days_per_year,
       CASE WHEN has_full_year AND count(log_return_1d) OVER last_20 = 20
            THEN stddev_samp(log_return_1d) OVER last_20 * sqrt(count(*) OVER last_365_days) END AS realized_vol_20d
FROM with_returns
WINDOW last_20 AS (PARTITION BY ticker ORDER BY date ROWS BETWEEN 19 PRECEDING AND CURRENT ROW),
       last_50 AS (PARTITION BY ticker ORDER BY date ROWS BETWEEN 49 PRECEDING AND CURRENT ROW),
       last_200 AS (PARTITION BY ticker ORDER BY date ROWS BETWEEN 199 PRECEDING AND CURRENT ROW),
       -- 365 calendar days ending today, both ends included: (date - 365 days, date]
       last_365_days AS (PARTITION BY ticker ORDER BY date
                         RANGE BETWEEN INTERVAL 364 DAYS PRECEDING AND CURRENT ROW)
