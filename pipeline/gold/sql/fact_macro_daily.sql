-- gold.fact_macro_daily: per trading date, the Treasury curve and, per economic indicator, the newest value already
-- released. FMP dates an indicator at the start of its reference period and keeps no release date, so a value
-- counts as known from its economic-calendar release (New York time; after 16:00 means the next day), else from a
-- documented lag after the period ends. Rendered per build with the indicators Silver holds.
WITH price_dates AS (
    SELECT date FROM silver.fmp_price_eod_as_traded
    UNION
    SELECT date FROM silver.fmp_price_eod
),
-- Without prices: every weekday between the first and last macro observation.
macro_span AS (
    SELECT least((SELECT min(date) FROM silver.fmp_treasury_rates),
                 (SELECT min(date) FROM silver.fmp_economic_indicator)) AS first_date,
           greatest((SELECT max(date) FROM silver.fmp_treasury_rates),
                    (SELECT max(date) FROM silver.fmp_economic_indicator)) AS last_date
),
weekdays AS (
    SELECT CAST(day AS DATE) AS date
    FROM macro_span, range(first_date, last_date + INTERVAL 1 DAY, INTERVAL 1 DAY) AS days(day)
    WHERE isodow(day) <= 5
),
dates AS (
    SELECT date FROM price_dates
    UNION ALL
    SELECT date FROM weekdays WHERE NOT EXISTS (SELECT 1 FROM price_dates)
),
curve AS (
    SELECT d.date, t.date AS treasury_date, {% for c in treasury_columns %}t.{{ c }}{{ ', ' if not loop.last }}{% endfor %}
    FROM dates d
    ASOF LEFT JOIN silver.fmp_treasury_rates t ON t.date <= d.date
),
-- The indicator -> economic-calendar event mapping and the fallback lags (pipeline/gold/macro_releases.py).
release_events(name, event) AS (
    VALUES
{% for name, event in release_events %}
        ({{ name | sql_literal }}, {{ event | sql_literal }}){{ "," if not loop.last }}
{% endfor %}
),
release_lags(name, lag_days) AS (
    VALUES
{% for name, days in release_lags %}
        ({{ name | sql_literal }}, {{ days }}){{ "," if not loop.last }}
{% endfor %}
),
-- FMP dates an indicator at the start of its reference period; the period ends where the next one starts.
observations AS (
    SELECT name, date AS period_start, value,
           -- the newest period is as long as the one before it: in months when periods start on the 1st
           coalesce(lead(date) OVER by_period - 1,
                    CASE WHEN day(date) = 1 AND day(lag(date) OVER by_period) = 1
                         THEN CAST(date + to_months(CAST(date_diff('month', lag(date) OVER by_period, date) AS INTEGER))
                                   AS DATE) - 1
                         ELSE date + CAST(date - lag(date) OVER by_period AS INTEGER) - 1 END,
                    CAST(date + INTERVAL 1 MONTH AS DATE) - 1) AS period_end
    FROM silver.fmp_economic_indicator
    WINDOW by_period AS (PARTITION BY name ORDER BY date)
),
us_releases AS (
    SELECT event, timezone('America/New_York', timezone('UTC', released_at)) AS released_ny
    FROM silver.fmp_economic_calendar
    WHERE country = 'US'
),
-- The first mapped US release after the period ends (within 120 days) published the value.
released AS (
    SELECT o.*,
           (SELECT min(r.released_ny)
            FROM us_releases r JOIN release_events m ON m.event = r.event
            WHERE m.name = o.name
              AND CAST(r.released_ny AS DATE) > o.period_end
              AND CAST(r.released_ny AS DATE) <= o.period_end + 120) AS released_ny,
           (SELECT lag_days FROM release_lags l WHERE l.name = o.name) AS lag_days
    FROM observations o
),
known AS (
    SELECT name, period_start, value,
           CASE WHEN released_ny IS NOT NULL
                THEN CAST(released_ny AS DATE)
                     + CASE WHEN CAST(released_ny AS TIME) <= TIME '16:00:00' THEN 0 ELSE 1 END
                ELSE period_end + CAST(coalesce(lag_days, {{ default_lag_days }}) AS INTEGER) END AS known_from
    FROM released
),
-- On each day: the newest reference period among the values already known.
newest_known AS (
    SELECT name, known_from,
           max(max(period_start)) OVER (PARTITION BY name ORDER BY known_from ROWS UNBOUNDED PRECEDING) AS period_start
    FROM known
    GROUP BY name, known_from
),
known_values AS (
    SELECT n.name, n.known_from AS as_of, k.period_start, k.value, k.known_from
    FROM newest_known n
    JOIN known k ON k.name = n.name AND k.period_start = n.period_start
)
SELECT c.*{% for column, name in indicators %},
       i{{ loop.index }}.value AS {{ column }}, i{{ loop.index }}.period_start AS {{ column }}_period,
       i{{ loop.index }}.known_from AS {{ column }}_known_from{% endfor %}

FROM curve c
{% for column, name in indicators %}
ASOF LEFT JOIN (FROM known_values WHERE name = {{ name | sql_literal }}) i{{ loop.index }} ON i{{ loop.index }}.as_of <= c.date
{% endfor %}
