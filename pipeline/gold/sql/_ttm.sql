-- Shared CTEs: trailing twelve months over the last 4 quarterly rows; NULL unless those 4 rows are consecutive
-- quarters (the oldest period end at most ~300 days before the newest; a gap makes it ~365) and all have the item.
-- EPS is summed on the current share basis, so quarters on either side of a split add up.
statement_windows AS (
    SELECT *,
           count(*) OVER last_4 = 4
               AND date_diff('day', min(period_end) OVER last_4, period_end) <= 300 AS has_4_quarters,
{% for item in ttm_items %}
           CASE WHEN count({{ item }}) OVER last_4 = 4 THEN sum({{ item }}) OVER last_4 END AS {{ item }}_4q{{ "," if not loop.last }}
{% endfor %}
    FROM statements
    WINDOW last_4 AS (PARTITION BY ticker ORDER BY period_end ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)
),
ttm AS (
    SELECT * EXCLUDE (has_4_quarters, {% for item in ttm_items %}{{ item }}_4q{{ ", " if not loop.last }}{% endfor %}),
{% for item in ttm_items %}
           CASE WHEN has_4_quarters THEN {{ item }}_4q END AS {{ item }}_ttm{{ "," if not loop.last }}
{% endfor %}
    FROM statement_windows
)
