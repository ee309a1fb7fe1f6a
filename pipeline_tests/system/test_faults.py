"""The fault matrix (issue 7): one table of FMP misbehaviours, each driven through the whole chain
Bronze -> ledger -> Silver for one per-ticker dataset (EOD prices, two tickers, one fixed planning date).

Every row injects its faults into FakeFmpServer (real loopback sockets) for the path of the dataset; faults
are consumed one per request, in order, so a row says exactly which calls misbehave. The run uses one worker,
so the first ticker (AAPL) meets the faults and the second (MSFT) is served normally: every row also shows
that one ticker's trouble does not spill onto another. For each row the test asserts

1. what the run reports (failed files per error class, hard failures, the run status; or success after
   retries with attempts > 1),
2. what Bronze holds (an envelope with `can_promote: false` and the classified error for a persistent fault;
   the good data for a transient one),
3. what the ledger holds (one row per file, error_class, can_promote),
4. that no watermark moved wrongly (`latest_bronze_coverage` of the faulted ticker unchanged by an error),
5. that the next run, with the faults gone, re-requests the same window, and after `promote_files` Silver
   holds exactly what a clean run's Silver holds (same keys, same values), without duplicates.

Client-level classification and retry timing are covered in test_fmp_client.py; the Bronze-level watermark
tests for 503x5 / persistent 429 / Error Message 200 on a second day are in test_bronze.py.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.report import BronzeRunReport
from pipeline.bronze.store import BronzeStore
from pipeline.fmp.client import FmpClient
from pipeline.fmp.ratelimit import RateLimiter
from pipeline.fmp.sample import SampleSource
from pipeline.keymap import KeymapEntry, load_keymap
from pipeline.ledger_types import Coverage
from pipeline.ops import file_ingestions
from pipeline.ops.runs import get_run
from pipeline.settings import PROJECT_ROOT
from pipeline.silver.promote import promote_files
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.fakes.fmp_server import (
    INVALID_KEY_MESSAGE,
    PREMIUM_SYMBOL_TEXT,
    FakeFmpServer,
    Fault,
    error_body,
    error_message_200,
    html,
    plain_text_200,
    rate_limit,
    reset,
    sample_data,
    status,
    timeout,
    truncated,
)
from pipeline_tests.support import KEY

EOD = "historical-price-eod/full"
DAY = dt.date(2024, 6, 28)  # the fixed planning date (a Friday)
TICKERS = ("AAPL", "MSFT")  # one worker: AAPL is requested first and meets the faults
FAULTED, HEALTHY = TICKERS
MAX_RETRIES = 3  # 4 attempts: enough for 500, 502, 503 then success
ATTEMPTS = MAX_RETRIES + 1
RETRY_AFTER_CAP_S = 0.05
KEYMAP = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")
EOD_ENTRY: KeymapEntry = next(e for e in KEYMAP if e.dataset == "historical-price-eod" and not e.discriminator)
TABLE = EOD_ENTRY.silver.table
LINEAGE = ("bronze_file_id", "run_id", "fetched_at", "promoted_at")
SOURCE = SampleSource(as_of=DAY)

serve_sample = sample_data(SOURCE)


# -- the matrix ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One fault of the matrix: what is injected, and what the chain must make of it."""

    faults: tuple[Fault, ...]  # consumed one per request to EOD, in order
    error_class: str | None  # None: transient, the run recovers by retrying
    attempts: int  # attempts recorded for the faulted ticker's request
    hard: bool = False  # counted in hard_failures (fails the Bronze step)
    client: Mapping[str, Any] = field(default_factory=dict)
    min_elapsed_ms: float = 0.0  # the retry waited at least this long (Retry-After honoured)


def _times(fault: Fault, n: int = ATTEMPTS) -> tuple[Fault, ...]:
    return (fault,) * n


SHORT_TIMEOUT = {"timeout_s": 0.5}  # the server sleeps 1 s on a timeout fault

MATRIX: dict[str, Case] = {
    # 429 -------------------------------------------------------------------------------------------------
    "429-no-retry-after-then-ok": Case((rate_limit(),), None, 2),
    "429-no-retry-after-persistent": Case(_times(rate_limit()), "rate_limited", ATTEMPTS, hard=True),
    "429-retry-after-then-ok": Case((rate_limit("1"),), None, 2, min_elapsed_ms=RETRY_AFTER_CAP_S * 1000 * 0.9),
    "429-retry-after-persistent": Case(_times(rate_limit("1")), "rate_limited", ATTEMPTS, hard=True),
    # 5xx -------------------------------------------------------------------------------------------------
    "500-502-503-then-ok": Case((status(500, b"oops"), status(502, b"bad gateway"), status(503, b"busy")), None, 4),
    "503-persistent": Case(_times(status(503, b"busy")), "http_status", ATTEMPTS, hard=True),
    # transport -------------------------------------------------------------------------------------------
    "connection-reset-then-ok": Case((reset(),), None, 2),
    "connection-reset-persistent": Case(_times(reset()), "transport", ATTEMPTS, hard=True),
    "read-timeout-then-ok": Case((timeout(1.0),), None, 2, client=SHORT_TIMEOUT),
    "read-timeout-persistent": Case(_times(timeout(1.0)), "transport", ATTEMPTS, hard=True, client=SHORT_TIMEOUT),
    "short-read-then-ok": Case((truncated(),), None, 2),
    # bodies ----------------------------------------------------------------------------------------------
    "json-cut-mid-body": Case((truncated(declare_full_length=False),), "invalid_body", 1, hard=True),
    "200-error-message": Case((error_message_200("Something went wrong on our side"),), "api_error_body", 1),
    "200-plain-text": Case((plain_text_200("Invalid name"),), "invalid_body", 1, hard=True),
    "200-html-page": Case((html(200),), "invalid_body", 1, hard=True),
    "502-html-page-then-ok": Case((html(502),), None, 2),
    # refusals --------------------------------------------------------------------------------------------
    "401-invalid-key": Case((status(401, error_body(INVALID_KEY_MESSAGE)),), "auth", 1, hard=True),
    # a symbol outside the plan: that ticker is skipped, the step does not fail (the endpoint form, which skips
    # the whole dataset, is in bronze/test_refusals.py)
    "402-symbol-not-in-plan": Case((status(402, PREMIUM_SYMBOL_TEXT),), "plan_restricted", 1),
    "404-empty-array": Case((status(404, b"[]"),), "http_status", 1, hard=True),
}


# -- helpers ------------------------------------------------------------------------------------------------


class Lake:
    """A data folder (warehouse + Bronze) and the Bronze step and Silver promotion as the assets run them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.warehouse = Warehouse(root / "warehouse.duckdb")
        self.store = BronzeStore(root / "bronze")

    def run(self, server: FakeFmpServer, *, run_id: str | None = None, **client: Any) -> BronzeRunReport:
        options: dict[str, Any] = dict(
            max_retries=MAX_RETRIES,
            backoff_base_s=0.001,
            backoff_cap_s=0.005,
            retry_after_cap_s=RETRY_AFTER_CAP_S,
            timeout_s=5.0,
            limiter=RateLimiter(100_000),
        )
        options.update(client)
        with FmpClient(server.base_url, KEY, **options) as fmp:
            return run_bronze(
                entries=[EOD_ENTRY],
                tickers=TICKERS,
                warehouse=self.warehouse,
                store=self.store,
                client=fmp,
                run_id=run_id or str(uuid.uuid4()),
                today=DAY,
                fmp_plan=None,
                source_mode="fmp",
                max_concurrency=1,
            )

    def coverage(self, ticker: str) -> Coverage | None:
        with self.warehouse.connect() as conn:
            cov = file_ingestions.latest_bronze_coverage(conn, EOD_ENTRY.identity, ticker_wildcard=True)
        return cov.get(EOD_ENTRY.identity.with_ticker(ticker))

    def ledger(self, where: str = "true", params: Sequence[Any] = ()) -> list[dict]:
        with self.warehouse.connect() as conn:
            cur = conn.execute(f"SELECT * FROM ops.file_ingestions WHERE {where} ORDER BY ingestion_id", list(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def run_status(self, run_id: str) -> str:
        with self.warehouse.connect() as conn:
            return get_run(conn, run_id)["status"]

    def promote(self) -> None:
        with self.warehouse.transaction() as conn:
            files = file_ingestions.promotable_files(conn, tables=[TABLE])
            result = promote_files(conn, KEYMAP, TABLE, files, self.store.root, f"promote-{uuid.uuid4()}")
        assert not result.failed and result.balanced

    def silver(self) -> list[tuple]:
        """Silver rows without lineage columns, ordered: the business content of the table."""
        with self.warehouse.connect() as conn:
            return conn.execute(f"SELECT * EXCLUDE ({', '.join(LINEAGE)}) FROM silver.{TABLE} ORDER BY ALL").fetchall()

    def duplicate_keys(self) -> int:
        key = ", ".join(EOD_ENTRY.silver.key)
        with self.warehouse.connect() as conn:
            return conn.execute(f"SELECT count(*) - count(DISTINCT ({key})) FROM silver.{TABLE}").fetchone()[0]


def eod_requests(server: FakeFmpServer, start: int = 0) -> list[dict[str, str]]:
    return [r.params for r in server.requests[start:] if r.path == EOD]


@pytest.fixture
def server() -> Iterator[FakeFmpServer]:
    with FakeFmpServer(api_key=KEY, data=serve_sample) as fake:
        yield fake


@pytest.fixture(scope="module")
def clean_silver(tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    """Silver after a run without any fault: what every row of the matrix must end up with."""
    lake = Lake(tmp_path_factory.mktemp("clean"))
    with FakeFmpServer(api_key=KEY, data=serve_sample) as fake:
        report = lake.run(fake)
    assert report.hard_failures == 0 and not report.entries[EOD_ENTRY.asset_name].failed
    lake.promote()
    rows = lake.silver()
    assert {r[0] for r in rows} == set(TICKERS)
    assert max(r[1] for r in rows) == DAY and min(r[1] for r in rows) >= EOD_ENTRY.recipe.history_start
    return rows


# -- the test -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(MATRIX.values()), ids=list(MATRIX))
def test_fault_matrix(tmp_path: Path, server: FakeFmpServer, clean_silver: list[tuple], case: Case) -> None:
    lake = Lake(tmp_path)
    before = lake.coverage(FAULTED)
    server.add_faults(EOD, *case.faults)
    run_id = str(uuid.uuid4())
    report = lake.run(server, run_id=run_id, **case.client)
    rep = report.entries[EOD_ENTRY.asset_name]
    first_window = eod_requests(server)
    assert {p["symbol"] for p in first_window} == set(TICKERS)
    assert len(first_window) == case.attempts + 1, "every attempt of AAPL, then one clean MSFT request"
    assert first_window[0]["symbol"] == FAULTED and first_window[-1]["symbol"] == HEALTHY
    assert all((p["from"], p["to"]) == (str(EOD_ENTRY.recipe.history_start), str(DAY)) for p in first_window)

    ledger = lake.ledger("run_id = ?", [run_id])
    by_ticker = {r["ticker"]: r for r in ledger}
    # (3) the ledger: one row per file, one file per ticker
    assert len(ledger) == 2 and set(by_ticker) == set(TICKERS)
    healthy = by_ticker[HEALTHY]
    assert healthy["error_class"] is None and healthy["can_promote"] is True and healthy["bronze_rows"] > 0
    faulted = by_ticker[FAULTED]
    envelope = lake.store.read(faulted["bronze_path"])
    raw = json.loads((lake.store.root / faulted["bronze_path"]).read_bytes())
    assert envelope.attempts == case.attempts

    if case.error_class is None:
        # (1) success after retries
        assert report.hard_failures == 0 and not rep.failed and rep.failures == []
        assert rep.tickers_with_data == set(TICKERS) and rep.files == 2
        assert lake.run_status(run_id) == "success"
        # (2) Bronze holds the good data, just like the healthy ticker's file
        assert raw["can_promote"] is True and raw["error"] is None and raw["status_code"] == 200
        assert envelope.row_count == faulted["bronze_rows"] == len(envelope.content) > 0
        assert envelope.coverage_to == DAY
        assert envelope.elapsed_ms >= case.min_elapsed_ms
        # (3)
        assert faulted["error_class"] is None and faulted["can_promote"] is True
        # (4) the watermark moved for both, to the planning date
        assert lake.coverage(FAULTED).coverage_to == DAY and lake.coverage(FAULTED).last_as_of == DAY
    else:
        # (1) the run reports the failure under its class; only refusals are hard failures
        assert rep.failed == {case.error_class: 1} and rep.rows == healthy["bronze_rows"]
        assert report.hard_failures == (1 if case.hard else 0)
        assert len(rep.failures) == 1 and rep.failures[0].startswith(f"{FAULTED}: {case.error_class}: ")
        assert KEY not in rep.failures[0]
        assert rep.tickers_with_data == {HEALTHY}
        assert lake.run_status(run_id) == ("partial" if case.hard else "success")
        # (2) Bronze keeps the error, classified and unpromotable, with the window it asked for
        assert raw["can_promote"] is False and raw["content"] is None and raw["row_count"] == 0
        assert raw["error"]["class"] == case.error_class and raw["error"]["message"]
        assert raw["request"]["window_from"] == str(EOD_ENTRY.recipe.history_start)
        assert raw["request"]["window_to"] == str(DAY)
        assert KEY not in json.dumps(raw)
        # (3)
        assert faulted["error_class"] == case.error_class and faulted["can_promote"] is False
        assert faulted["error_message"] == raw["error"]["message"] and faulted["bronze_rows"] == 0
        # (4) no watermark moved for the failed ticker (only the healthy one's did)
        assert lake.coverage(FAULTED) == before is None
    assert lake.coverage(HEALTHY).coverage_to == DAY

    # (5) the next run, faults gone: the failed window is requested again (only it), and Silver is complete
    seen = len(server.requests)
    run2 = str(uuid.uuid4())
    report2 = lake.run(server, run_id=run2)
    again = eod_requests(server, seen)
    rep2 = report2.entries[EOD_ENTRY.asset_name]
    assert report2.hard_failures == 0 and not rep2.failed and lake.run_status(run2) == "success"
    if case.error_class is None:
        assert again == [] and rep2.skipped == {"not_due": 2}  # nothing to recover: already complete
        assert len(lake.ledger()) == 2
    else:
        assert again == [first_window[0]], "the same window, for the failed ticker only"
        assert rep2.skipped == {"not_due": 1} and rep2.tickers_with_data == {FAULTED}
        assert lake.coverage(FAULTED).coverage_to == DAY
        rows = lake.ledger()
        assert len(rows) == 3  # the error file stays, next to its repair
        assert [r["can_promote"] for r in rows if r["ticker"] == FAULTED] == [False, True]

    lake.promote()
    assert lake.silver() == clean_silver
    assert lake.duplicate_keys() == 0
    # the error file is never promoted; every good file is
    ledger = lake.ledger()
    assert all(r["silver_status"] == ("promoted" if r["can_promote"] else None) for r in ledger)
    # promoting again changes nothing
    lake.promote()
    assert lake.silver() == clean_silver


def test_matrix_covers_every_error_class_a_fetch_can_produce() -> None:
    """The table is the spec: every class the client can give a response (but `empty`) appears in it."""
    from pipeline.fmp.classify import ERROR_CLASSES

    covered = {c.error_class for c in MATRIX.values()}
    assert set(ERROR_CLASSES) - covered == {"empty"}
    assert any(c.error_class is None and c.attempts > 1 for c in MATRIX.values())
