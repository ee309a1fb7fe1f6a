"""Quota and plan refusals: what FMP's "you may not" answers make a run send, skip and report.

FMP refuses in four ways that retrying cannot fix within a run: an exhausted daily or bandwidth quota
(429, or 200, with a "Limit Reach" JSON body), a symbol outside the plan (402 plain text "Premium Query
Parameter ... 'symbol'"), and an endpoint outside the plan (402 JSON "Restricted Endpoint"). Each test drives
`run_bronze` over real loopback HTTP against FakeFmpServer's standing refusal modes into a real DuckDB ledger
and Bronze folder, counts what the server saw, and checks what the run reports, what Bronze and the ledger
keep, and that a later run (quota reset, plan changed) fetches what was not sent, once.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.planner import plan
from pipeline.bronze.refusals import QUOTA_REFUSALS_TO_STOP
from pipeline.bronze.report import BronzeRunReport
from pipeline.bronze.store import BronzeStore
from pipeline.fmp.classify import (
    ENDPOINT_NOT_IN_PLAN,
    PARAMETER_NOT_IN_PLAN,
    QUOTA_EXHAUSTED,
    SYMBOL_NOT_IN_PLAN,
    classify_response,
)
from pipeline.fmp.client import FmpClient
from pipeline.fmp.ratelimit import RateLimiter
from pipeline.fmp.sample import SampleSource
from pipeline.keymap import KeymapEntry, load_keymap
from pipeline.ops.runs import get_run
from pipeline.settings import PROJECT_ROOT
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.fakes.fmp_server import (
    BANDWIDTH_LIMIT_MESSAGE,
    LIMIT_REACH_MESSAGE,
    PREMIUM_SYMBOL_TEXT,
    RESTRICTED_ENDPOINT_MESSAGE,
    FakeFmpServer,
    error_body,
    sample_data,
)
from pipeline_tests.support import KEY

DAY = dt.date(2025, 3, 13)
EOD = "historical-price-eod/full"
KEYMAP = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")
# keymap order, which is the order requests are sent in: profile, dividends, splits, EOD
ENTRIES = [
    e for e in KEYMAP if e.dataset in ("profile", "dividends", "splits", "historical-price-eod") and not e.discriminator
]
TICKERS = ["AAPL", "MSFT", "NVDA", "JPM", "XOM", "JNJ", "KO", "PG"]
MAX_RETRIES = 1  # a "Limit Reach" is sent twice before it counts as a quota refusal
SOURCE = SampleSource(as_of=DAY)


def planned_requests(entries: list[KeymapEntry] = ENTRIES, tickers: list[str] = TICKERS) -> int:
    return sum(len(d.requests) for d in plan(entries, tickers, {}, DAY, None) if d.due)


class Lake:
    """A data folder (DuckDB ledger + Bronze) and the Bronze step as the assets run it, one worker at a time
    so the server's request count is exact."""

    def __init__(self, root: Path) -> None:
        self.warehouse = Warehouse(root / "warehouse.duckdb")
        self.store = BronzeStore(root / "bronze")
        self.said: list[str] = []

    def run(
        self, server: FakeFmpServer, entries: list[KeymapEntry] = ENTRIES, tickers: list[str] = TICKERS
    ) -> tuple[str, BronzeRunReport]:
        run_id = str(uuid.uuid4())
        with FmpClient(
            server.base_url,
            KEY,
            max_retries=MAX_RETRIES,
            backoff_base_s=0.001,
            backoff_cap_s=0.005,
            timeout_s=5.0,
            limiter=RateLimiter(100_000),
        ) as client:
            report = run_bronze(
                entries=entries,
                tickers=tickers,
                warehouse=self.warehouse,
                store=self.store,
                client=client,
                run_id=run_id,
                today=DAY,
                fmp_plan=None,
                source_mode="fmp",
                max_concurrency=1,
                log_fn=self.said.append,
            )
        return run_id, report

    def ledger(self, where: str = "true", params: list[Any] | None = None) -> list[dict]:
        with self.warehouse.connect() as conn:
            cur = conn.execute(f"SELECT * FROM ops.file_ingestions WHERE {where} ORDER BY ingestion_id", params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def answered(self, dataset: str) -> set[str]:
        """Tickers with a promotable answer for `dataset` (empty answers included: dividends are rare)."""
        return {row["ticker"] for row in self.ledger("error_class IS NULL AND can_promote AND dataset = ?", [dataset])}

    def run_row(self, run_id: str) -> dict:
        with self.warehouse.connect() as conn:
            return get_run(conn, run_id)

    def good_files_per_request(self) -> dict[tuple[str, str, dt.date | None], int]:
        """Promotable files per planned request (dataset, ticker, window): each must exist exactly once."""
        counts: dict[tuple[str, str, dt.date | None], int] = {}
        for row in self.ledger("error_class IS NULL AND can_promote"):
            key = (row["dataset"], row["ticker"], row["window_from"])
            counts[key] = counts.get(key, 0) + 1
        return counts


def skipped(report: BronzeRunReport, kind: str) -> int:
    return sum(r.skipped.get(kind, 0) for r in report.entries.values())


def by_dataset(report: BronzeRunReport, dataset: str):
    return next(r for r in report.entries.values() if r.entry.dataset == dataset)


@pytest.fixture
def server() -> Iterator[FakeFmpServer]:
    with FakeFmpServer(api_key=KEY, data=sample_data(SOURCE)) as fake:
        yield fake


# -- classification ---------------------------------------------------------------------------------------


def test_refusals_are_classified_within_the_design_classes_with_a_detail() -> None:
    bandwidth = classify_response(429, error_body(BANDWIDTH_LIMIT_MESSAGE))
    assert (bandwidth.error_class, bandwidth.detail, bandwidth.retryable) == ("rate_limited", QUOTA_EXHAUSTED, False)
    bandwidth_200 = classify_response(200, error_body(BANDWIDTH_LIMIT_MESSAGE))
    assert (bandwidth_200.error_class, bandwidth_200.detail) == ("rate_limited", QUOTA_EXHAUSTED)
    # the ordinary per-minute answer and the daily quota share one text: retried, no verdict yet
    for code in (429, 200):
        minute = classify_response(code, error_body(LIMIT_REACH_MESSAGE))
        assert (minute.error_class, minute.detail, minute.retryable) == ("rate_limited", None, True)
    symbol = classify_response(402, PREMIUM_SYMBOL_TEXT.encode())
    assert (symbol.error_class, symbol.detail, symbol.retryable) == ("plan_restricted", SYMBOL_NOT_IN_PLAN, False)
    assert classify_response(402, b"Premium Query Parameter: 'limit'").detail == PARAMETER_NOT_IN_PLAN
    assert classify_response(402, error_body(RESTRICTED_ENDPOINT_MESSAGE)).detail == ENDPOINT_NOT_IN_PLAN
    assert classify_response(500, error_body(BANDWIDTH_LIMIT_MESSAGE)).error_class == "http_status"  # status first


def test_a_limit_reach_that_outlasts_every_retry_is_read_as_quota(server: FakeFmpServer) -> None:
    server.exhaust_quota(after=0, mode="200")
    with FmpClient(
        server.base_url, KEY, max_retries=2, backoff_base_s=0.001, backoff_cap_s=0.005, limiter=RateLimiter(100_000)
    ) as client:
        result = client.fetch(EOD, {"symbol": "AAPL"})
        assert (result.error_class, result.error_detail, result.attempts) == ("rate_limited", QUOTA_EXHAUSTED, 3)
        server.reset_quota()
        assert client.fetch(EOD, {"symbol": "AAPL"}).ok
    assert [r.status for r in server.requests] == [200, 200, 200, 200]  # 200 + Limit Reach three times, then data


# -- quota ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, attempts", [("429", MAX_RETRIES + 1), ("200", MAX_RETRIES + 1), ("bandwidth", 1)])
def test_an_exhausted_quota_stops_the_run_and_a_run_after_the_reset_fetches_the_rest(
    tmp_path: Path, server: FakeFmpServer, mode: str, attempts: int
) -> None:
    lake = Lake(tmp_path)
    planned = planned_requests()
    served = 5
    server.exhaust_quota(after=served, mode=mode)
    run_id, report = lake.run(server)

    # the server saw the served requests, then each attempt of three refused requests, and nothing else
    assert len(server.requests) == served + QUOTA_REFUSALS_TO_STOP * attempts
    not_sent = skipped(report, "not_sent_quota_exhausted")
    assert not_sent == planned - served - QUOTA_REFUSALS_TO_STOP
    # the run says so: asset metadata (skip counts and examples), the log, the ops row
    reasons = [reason for r in report.entries.values() for reason in r.skip_reasons]
    assert any("quota is exhausted" in reason and "Limit Reach" in reason for reason in reasons)
    assert any("not_sent_quota_exhausted" in line for line in lake.said)
    row = lake.run_row(run_id)
    assert row["skipped"] == not_sent and row["requests"] == served + QUOTA_REFUSALS_TO_STOP
    assert row["status"] == "partial" and report.hard_failures == QUOTA_REFUSALS_TO_STOP  # incomplete: it fails
    # the refusals are kept as unpromotable error envelopes, classified
    refused = lake.ledger("run_id = ? AND error_class IS NOT NULL", [run_id])
    assert len(refused) == QUOTA_REFUSALS_TO_STOP
    for row in refused:
        raw = json.loads((lake.store.root / row["bronze_path"]).read_bytes())
        assert raw["can_promote"] is False and raw["error"]["class"] == "rate_limited"
        assert raw["error"]["detail"] == QUOTA_EXHAUSTED and raw["attempts"] == attempts and KEY not in json.dumps(raw)
    assert len(lake.good_files_per_request()) == served

    # the quota resets: the next run sends exactly what the first did not get, and Bronze has each once
    server.reset_quota()
    seen = len(server.requests)
    run2, report2 = lake.run(server)
    assert len(server.requests) - seen == planned - served
    assert report2.hard_failures == 0 and skipped(report2, "not_sent_quota_exhausted") == 0
    assert lake.run_row(run2)["status"] == "success"
    good = lake.good_files_per_request()
    assert len(good) == planned and set(good.values()) == {1}


def test_quota_refusals_stop_the_run_only_when_consecutive(tmp_path: Path) -> None:
    """Two refusals, an answer, two refusals...: a busy minute, not an exhausted quota; nothing is held back."""
    refused = {"AAPL", "MSFT", "JPM", "XOM", "KO", "PG"}  # NVDA and JNJ are answered in between
    serve = sample_data(SOURCE)

    def data(path: str, params: Mapping[str, str]) -> tuple[int, bytes, dict[str, str]]:
        if params.get("symbol") in refused:
            return 429, error_body(LIMIT_REACH_MESSAGE), {}
        return serve(path, params)

    eod = [e for e in ENTRIES if e.dataset == "historical-price-eod"]
    lake = Lake(tmp_path)
    with FakeFmpServer(api_key=KEY, data=data) as fake:
        _, report = lake.run(fake, entries=eod)
        assert {r.params["symbol"] for r in fake.requests} == set(TICKERS)
    assert skipped(report, "not_sent_quota_exhausted") == 0
    assert report.entries[eod[0].asset_name].failed == {"rate_limited": len(refused)}


# -- plan -------------------------------------------------------------------------------------------------


def test_a_symbol_outside_the_plan_skips_that_ticker_only(tmp_path: Path, server: FakeFmpServer) -> None:
    server.restrict_symbols("NVDA")
    lake = Lake(tmp_path)
    run_id, report = lake.run(server)

    nvda = [(r.path, r.status) for r in server.requests if r.params.get("symbol") == "NVDA"]
    # profile is served for any symbol; the first symbol-scoped refusal skips NVDA's remaining requests
    assert nvda == [("profile", 200), ("dividends", 402)]
    nvda_planned = planned_requests(tickers=["NVDA"])  # profile, 2 dividends, 2 splits, 1 EOD windows
    assert len(server.requests) == planned_requests() - nvda_planned + 2
    others = [r for r in server.requests if r.params["symbol"] != "NVDA"]
    assert len(others) == planned_requests(tickers=[t for t in TICKERS if t != "NVDA"])  # nobody else skipped
    assert skipped(report, "not_sent_symbol_not_in_plan") == nvda_planned - 2
    for dataset in ("dividends", "splits", "historical-price-eod"):
        rep = by_dataset(report, dataset)
        assert rep.skipped["not_sent_symbol_not_in_plan"] >= 1
        assert rep.skip_reasons[0].startswith("NVDA: not sent: the FMP plan does not cover symbol NVDA")
        assert lake.answered(dataset) == set(TICKERS) - {"NVDA"}
    assert by_dataset(report, "dividends").failed == {"plan_restricted": 1}
    # it does not fail the step: the plan, not the run, is what lacks NVDA
    assert report.hard_failures == 0 and lake.run_row(run_id)["status"] == "success"
    [refusal] = lake.ledger("error_class IS NOT NULL")
    assert (refusal["ticker"], refusal["dataset"], refusal["status_code"], refusal["can_promote"]) == (
        "NVDA",
        "dividends",
        402,
        False,
    )
    assert json.loads((lake.store.root / refusal["bronze_path"]).read_bytes())["error"]["detail"] == SYMBOL_NOT_IN_PLAN


def test_an_endpoint_outside_the_plan_skips_that_dataset_with_the_reason(tmp_path: Path, server: FakeFmpServer) -> None:
    server.restrict_paths("dividends")
    lake = Lake(tmp_path)
    run_id, report = lake.run(server)

    dividends = by_dataset(report, "dividends")
    assert [r.status for r in server.requests if r.path == "dividends"] == [402]  # asked once, then skipped
    assert dividends.skipped["not_sent_endpoint_not_in_plan"] == planned_requests([dividends.entry]) - 1
    assert dividends.failed == {"plan_restricted": 1}
    reason = dividends.skip_reasons[0]
    assert reason.startswith("dividends: not sent: the FMP plan does not include this endpoint")
    assert "Restricted Endpoint" in reason and KEY not in reason
    assert any("dividends: not sent" in line for line in lake.said)  # in the run's log
    # every other dataset is fetched for every ticker, and the step does not fail
    for rep in report.entries.values():
        if rep is not dividends:
            assert lake.answered(rep.entry.dataset) == set(TICKERS) and not rep.failed and not rep.skipped
    assert report.hard_failures == 0 and lake.run_row(run_id)["status"] == "success"

    # the plan is upgraded: the next run fetches the dataset for every ticker, and nothing else
    server.restrict_paths()
    seen = len(server.requests)
    _, report2 = lake.run(server)
    again = server.requests[seen:]
    assert {r.path for r in again} == {"dividends"} and len(again) == planned_requests([dividends.entry])
    assert lake.answered("dividends") == set(TICKERS) and not by_dataset(report2, "dividends").failed
    good = lake.good_files_per_request()
    assert len(good) == planned_requests() and set(good.values()) == {1}
