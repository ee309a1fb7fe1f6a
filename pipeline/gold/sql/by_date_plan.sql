-- Which moved tickers of gold.{{ table }} get only their new days, from which bar each reads, and why the others are
-- recomputed over their whole history (the rules and their reasons: pipeline/gold/by_date.py). Parameters: $tickers
-- (the moved tickers), $since (per Silver input table, the newest promotion the table's last build saw: the history
-- rows promoted after it are what changed since; a table without a mark counts every history row as a change).
WITH since AS (
    SELECT unnest(CAST($since AS STRUCT(silver_table VARCHAR, promoted_after TIMESTAMP)[]), recursive := true)
),
-- what the table holds per ticker: its last day, the first of its last {{ lookback_rows }} days (the rows the new
-- days' windows need) and the newest statement period it shows
held AS (
    SELECT ticker, max(date) AS held_to,
           {% if lookback_rows %}list_min(max(date, {{ lookback_rows }})){% else %}CAST(NULL AS DATE){% endif %} AS rows_from,
           {% if statement_column %}max({{ statement_column }}){% else %}CAST(NULL AS DATE){% endif %} AS newest_statement
    FROM gold.{{ table }}
    WHERE list_contains($tickers, ticker)
    GROUP BY ticker
),
-- every Silver row version (inserted or updated) promoted since the last build
changes AS (
{% for silver_table, kind in inputs %}
    SELECT '{{ kind }}' AS kind, ticker, {{ "date" if kind != "other" else "CAST(NULL AS DATE)" }} AS date,
{% if kind == "statement" %}
           period, CAST(coalesce(accepted_date, CAST(filing_date + 1 AS TIMESTAMP)) AS DATE) AS knowable_on
{% else %}
           CAST(NULL AS VARCHAR) AS period, CAST(NULL AS DATE) AS knowable_on
{% endif %}
    FROM silver.{{ silver_table }}__history
    WHERE list_contains($tickers, ticker)
      AND promoted_at > coalesce((SELECT promoted_after FROM since WHERE silver_table = '{{ silver_table }}'),
                                 TIMESTAMP '-infinity')
{% if not loop.last %}
    UNION ALL
{% endif %}
{% endfor %}
),
-- the last price day per ticker in Silver now: splits and dividends dated later have not taken effect
last_price AS (
    SELECT ticker, max(last_date) AS last_date
    FROM (
{% for silver_table in bar_tables %}
        SELECT ticker, max(date) AS last_date FROM silver.{{ silver_table }}
        WHERE list_contains($tickers, ticker) GROUP BY ticker
{% if not loop.last %}
        UNION ALL
{% endif %}
{% endfor %}
    )
    GROUP BY ticker
),
-- the splits and dividends as Silver holds them now
events AS (
{% for silver_table in event_tables %}
    SELECT ticker, date FROM silver.{{ silver_table }} WHERE list_contains($tickers, ticker)
{% if not loop.last %}
    UNION ALL
{% endif %}
{% else %}
    SELECT CAST(NULL AS VARCHAR) AS ticker, CAST(NULL AS DATE) AS date WHERE false
{% endfor %}
)
SELECT m.ticker, h.held_to, least(h.held_to + 1 - {{ lookback_days }}, h.rows_from) AS read_from,
       CASE
           WHEN h.held_to IS NULL THEN 'not in the table yet'
           WHEN NOT EXISTS (SELECT 1 FROM changes c WHERE c.ticker = m.ticker)
               THEN 'its inputs moved, but Silver history shows no change'
           WHEN EXISTS (SELECT 1 FROM events e JOIN last_price l ON l.ticker = e.ticker
                        WHERE e.ticker = m.ticker AND e.date > h.held_to AND e.date <= l.last_date)
               THEN 'a split or dividend takes effect in the new days'
           WHEN EXISTS (SELECT 1 FROM changes c WHERE c.ticker = m.ticker AND c.kind = 'event' AND c.date <= h.held_to)
               THEN 'a split or dividend on or before ' || h.held_to || ' changed or arrived'
           WHEN EXISTS (SELECT 1 FROM changes c WHERE c.ticker = m.ticker AND c.kind = 'bar' AND c.date <= h.held_to)
               THEN 'a bar on or before ' || h.held_to || ' changed or arrived'
           WHEN EXISTS (SELECT 1 FROM changes c
                        WHERE c.ticker = m.ticker AND c.kind = 'statement'
{% if periods %}
                          AND c.period IN ({% for p in periods %}{{ p | sql_literal }}{{ ", " if not loop.last }}{% endfor %})
{% endif %}
                          AND (c.date <= h.newest_statement OR c.knowable_on IS NULL OR c.knowable_on <= h.held_to))
               THEN 'a statement for a day already built changed or arrived (restated or filed late)'
           WHEN EXISTS (SELECT 1 FROM changes c WHERE c.ticker = m.ticker AND c.kind = 'other')
               THEN 'an input without a by-date rule changed'
       END AS full_because
FROM (SELECT unnest(CAST($tickers AS VARCHAR[])) AS ticker) m
LEFT JOIN held h ON h.ticker = m.ticker
ORDER BY m.ticker
