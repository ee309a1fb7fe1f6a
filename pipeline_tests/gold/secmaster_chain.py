"""The real chain for the security master's tests: the loopback fake FMP server (serving the sample source, whose
rename, delisting and reused ticker follow fmp_api.md 3.4) -> Bronze -> Silver -> Gold, in-process."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.report import BronzeRunReport
from pipeline.bronze.store import BronzeStore
from pipeline.fmp.client import FmpClient
from pipeline.fmp.ratelimit import RateLimiter
from pipeline.fmp.sample import SampleSource
from pipeline.gold.build import build
from pipeline.keymap import load_keymap
from pipeline.keymap.model import KeymapEntry
from pipeline.ops import file_ingestions
from pipeline.settings import PROJECT_ROOT
from pipeline.silver.promote import promote_files
from pipeline.silver.schema import ensure_table
from pipeline.warehouse import Warehouse
from pipeline_tests.fakes.fmp_server import DataFn, FakeFmpServer, RecordedRequest, sample_data
from pipeline_tests.support import KEY

KEYMAP = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")
SURVIVORSHIP = {
    "delisted-companies",
    "symbol-change",
    "actively-trading-list",
    "sp500-constituent",
    "historical-sp500-constituent",
}
PRICES = {"historical-price-eod", "splits", "dividends", "profile"}
FUNDAMENTALS = {"income-statement", "balance-sheet-statement", "cash-flow-statement", "key-metrics", "ratios"}
SECURITY_GOLD = ("dim_security", "dim_security_ticker", "index_membership", "security_issues")


def entries(*datasets: set[str]) -> list[KeymapEntry]:
    wanted = set().union(*datasets)
    return [e for e in KEYMAP if e.dataset in wanted]


@dataclass
class Fetched:
    report: BronzeRunReport
    requests: list[RecordedRequest]


def with_extra_rows(source: SampleSource, extra: Mapping[str, list[dict]]) -> DataFn:
    """The sample source, with `extra` rows appended to some global paths' answers (bad input)."""
    serve = sample_data(source)

    def respond(path: str, params: Mapping[str, str]) -> tuple[int, bytes, dict[str, str]]:
        status, body, headers = serve(path, params)
        if path in extra and status == 200 and params.get("page", "0") == "0":
            body = json.dumps(json.loads(body) + extra[path], indent=2).encode()
        return status, body, headers

    return respond


def fetch(
    root: Path,
    day: dt.date,
    tickers: Sequence[str],
    wanted: Sequence[KeymapEntry],
    *,
    plan: str = "ultimate",
    fmp_plan: str | None = None,
    data: Callable[[SampleSource], DataFn] = sample_data,
) -> Fetched:
    """Fetch what is due as of `day` from the fake (the sample source as of `day`, on `plan`), then promote."""
    warehouse = Warehouse(root / "warehouse.duckdb")
    source = SampleSource(day, tickers)
    with FakeFmpServer(api_key=KEY, data=data(source), plan=plan) as fake:
        with FmpClient(fake.base_url, KEY, limiter=RateLimiter(100000)) as client:
            report = run_bronze(
                entries=wanted,
                tickers=tickers,
                warehouse=warehouse,
                store=BronzeStore(root / "bronze"),
                client=client,
                run_id=f"run-{day}",
                today=day,
                fmp_plan=fmp_plan,
                source_mode="fmp",
            )
        requests = list(fake.requests)
    with warehouse.transaction() as conn:
        for table in sorted({e.silver.table for e in wanted}):
            files = file_ingestions.promotable_files(conn, tables=[table])
            if files:
                promote_files(conn, KEYMAP, table, files, root / "bronze", f"run-{day}")
    return Fetched(report, requests)


def build_gold(root: Path, names: Sequence[str]) -> None:
    """Build these Gold tables (every Silver table of the keymap exists first, as the Gold assets ensure)."""
    warehouse = Warehouse(root / "warehouse.duckdb")
    with warehouse.connect() as conn:
        for spec in KEYMAP.tables().values():
            ensure_table(conn, spec)
        for name in names:
            build(conn, name, "gold-run")
