"""Partitions definitions, each defined once and imported everywhere (a second, equal-looking definition
would not be equal to Dagster)."""

import dagster as dg

# Partition key = the ticker symbol exactly as FMP spells it. Added by `ticker_universe_sensor` and `pipeline run`.
tickers_partitions = dg.DynamicPartitionsDefinition(name="tickers")
