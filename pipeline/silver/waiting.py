"""What waits for Silver, split the way the promotion sensor launches runs: global tables in one run, per-ticker
tables in another covering the tickers with waiting files. The newest waiting file of each scope names its work,
so a new file makes new work and a rerun of the same files does not."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from pipeline.ops.file_ingestions import PromotableFile


@dataclass(frozen=True)
class WaitingWork:
    global_tables: dict[str, int] = field(default_factory=dict)  # table -> newest waiting ingestion id
    ticker_tables: dict[str, set[str]] = field(default_factory=dict)  # table -> tickers with waiting files
    newest_ticker_file: int = 0  # newest ingestion id among those

    @property
    def tickers(self) -> set[str]:
        return set().union(*self.ticker_tables.values())


def waiting_work(files: Sequence[PromotableFile], per_ticker_tables: Collection[str]) -> WaitingWork:
    """Group promotable files by scope (`per_ticker_tables`: the tables partitioned by ticker)."""
    global_tables: dict[str, int] = {}
    ticker_tables: dict[str, set[str]] = defaultdict(set)
    newest_ticker = 0
    for f in files:
        if f.silver_table in per_ticker_tables:
            ticker_tables[f.silver_table].add(f.ticker)
            newest_ticker = max(newest_ticker, f.ingestion_id)
        else:
            global_tables[f.silver_table] = max(global_tables.get(f.silver_table, 0), f.ingestion_id)
    return WaitingWork(global_tables, dict(ticker_tables), newest_ticker)
