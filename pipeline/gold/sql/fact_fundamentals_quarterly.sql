-- gold.fact_fundamentals_quarterly: quarterly statements, key metrics and ratios with trailing-twelve-month sums.
WITH
{% include '_price_bars.sql' %},
{% include '_statements.sql' %},
{% include '_ttm.sql' %}
{% with source = 'ttm' %}{% include '_fundamentals_select.sql' %}{% endwith %}
