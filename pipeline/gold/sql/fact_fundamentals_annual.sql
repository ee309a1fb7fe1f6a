-- gold.fact_fundamentals_annual: annual statements, key metrics and ratios.
WITH
{% include '_price_bars.sql' %},
{% include '_statements.sql' %}
{% with source = 'statements' %}{% include '_fundamentals_select.sql' %}{% endwith %}
