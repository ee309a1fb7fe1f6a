"""The real chain in-process, for Gold tests: the bundled sample source as of a day (through the FMP client and an
httpx transport) -> Bronze files and ledger -> Silver promotion, into a warehouse under `root`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.store import BronzeStore
from pipeline.fmp.client import FmpClient
from pipeline.fmp.ratelimit import RateLimiter
from pipeline.fmp.sample import sample_transport
from pipeline.gold.models import MODELS
from pipeline.keymap import load_keymap
from pipeline.keymap.model import KeymapEntry
from pipeline.ops import file_ingestions
from pipeline.settings import PROJECT_ROOT
from pipeline.silver.promote import promote_files
from pipeline.silver.schema import ensure_table
from pipeline.warehouse import Warehouse

KEYMAP = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")


def ensure_gold_inputs(conn, *names: str) -> None:
    """Create the Silver inputs of these Gold tables that were never promoted, empty, as the Gold asset does before
    it builds (a chain that fetched only some datasets still reads the security master's tables, issue 21)."""
    for name in names:
        for table in MODELS[name].inputs:
            ensure_table(conn, KEYMAP.tables()[table])


def entries_for(silver_tables: Sequence[str]) -> list[KeymapEntry]:
    """The shipped keymap's entries that feed these Silver tables."""
    return [e for e in KEYMAP if e.silver.table in set(silver_tables)]


def fetch_and_promote(
    root: Path,
    entries: Sequence[KeymapEntry],
    day: dt.date,
    tickers: Sequence[str],
    run_id: str,
    *,
    revision: int = 0,
) -> None:
    """Fetch what is due as of `day` (the sample source as of `day`; `revision=1` restates a quarter) and promote
    every promotable file of those entries' tables."""
    warehouse = Warehouse(root / "warehouse.duckdb")
    store = BronzeStore(root / "bronze")
    with FmpClient(
        "https://sample.invalid/stable",
        None,
        transport=sample_transport(day, list(tickers), revision=revision),
        limiter=RateLimiter(100000),
    ) as client:
        report = run_bronze(
            entries=entries,
            tickers=tickers,
            warehouse=warehouse,
            store=store,
            client=client,
            run_id=run_id,
            today=day,
            fmp_plan=None,
            source_mode="sample",
        )
    assert report.hard_failures == 0
    with warehouse.transaction() as conn:  # one transaction: each connection's close costs a checkpoint
        for table in sorted({e.silver.table for e in entries}):
            files = file_ingestions.promotable_files(conn, tables=[table])
            if files:
                promote_files(conn, KEYMAP, table, files, root / "bronze", run_id)
