"""The `tickers` partitions and how runs cover ranges of them.

Each partitions definition is defined once and imported everywhere: a second, equal-looking definition would not
be equal to Dagster. A run covers a range of tickers through two tags (what the UI and the CLI set for a range), so
a 2,000-ticker universe is a few runs, never 2,000.
"""

import dagster as dg

# Partition key = the ticker symbol exactly as FMP spells it. Added by `ticker_universe_sensor` and `pipeline run`.
tickers_partitions = dg.DynamicPartitionsDefinition(name="tickers")

TICKERS_PER_RUN = 500  # one run handles at most this many tickers
# A backfill launched from the UI goes in runs of the CLI's and the schedule's size: a failure retries one range of
# TICKERS_PER_RUN tickers, not the market.
TICKER_BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=TICKERS_PER_RUN)
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover the `tickers` partitions from `first` to `last` (in partition order)."""
    return {RANGE_START: first, RANGE_END: last}


def covering_range(keys: list[str], wanted: set[str]) -> tuple[str, str] | None:
    """The smallest (first, last) range, in partition order, that contains every wanted key."""
    positions = [i for i, k in enumerate(keys) if k in wanted]
    if not positions:
        return None
    return keys[min(positions)], keys[max(positions)]


def contiguous_ranges(keys: list[str], wanted: set[str], size: int = TICKERS_PER_RUN) -> list[tuple[str, str]]:
    """Ranges (first, last) over `keys` that contain only wanted keys, at most `size` keys each."""
    ranges: list[tuple[str, str]] = []
    run: list[str] = []
    for key in keys:
        if key in wanted and len(run) < size:
            run.append(key)
            continue
        if run:
            ranges.append((run[0], run[-1]))
        run = [key] if key in wanted else []
    if run:
        ranges.append((run[0], run[-1]))
    return ranges
