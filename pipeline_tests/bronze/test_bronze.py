"""Bronze fetching end to end (DESIGN sections 4-6): `run_bronze` against FakeFmpServer on real loopback sockets,
into a temporary data folder (DuckDB ledger + Bronze files).

Each test guards one defect of the earlier system (earlier_system.md section 4): B1 (windows not incremental),
B2 (off-by-one cadence), B3 (failures move the watermark), B7 (the key in Bronze), B12 (retries), B13 (pagination).
Backoff values are tiny and the rate limiter is effectively off, so the file runs in seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import pipeline
from pipeline.bronze.envelope import BronzeEnvelope
from pipeline.bronze.fetch import dry_run, fetch_request, run_bronze
from pipeline.bronze.planner import PlannedRequest
from pipeline.bronze.recovery import register_orphans
from pipeline.bronze.report import BronzeRunReport
from pipeline.bronze.store import BronzeStore, UnsafeNameError
from pipeline.fmp.client import FmpClient
from pipeline.fmp.ratelimit import RateLimiter
from pipeline.fmp.sample import SampleSource
from pipeline.keymap import KeymapEntry, load_keymap, parse_keymap
from pipeline.ledger_types import Coverage
from pipeline.ops import file_ingestions
from pipeline.ops.runs import get_run
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.fakes.fmp_server import (
    FakeFmpServer,
    error_message_200,
    rate_limit,
    status,
)
from pipeline_tests.support import KEY

EOD = "historical-price-eod/full"
TREASURY = "treasury-rates"
MON, TUE, WED, THU = (dt.date(2025, 3, 10) + dt.timedelta(days=i) for i in range(4))
KEYMAP = load_keymap(Path(pipeline.__file__).resolve().parent.parent / "dataset_keymap.yaml")


def entry(dataset: str, discriminator: str = "") -> KeymapEntry:
    return next(e for e in KEYMAP if e.dataset == dataset and e.discriminator == discriminator)


EOD_ENTRY = entry("historical-price-eod")
TREASURY_ENTRY = entry("treasury-rates")
SCREENER_ENTRY = entry("company-screener")  # min_plan: starter


# -- fakes and helpers ---------------------------------------------------------------------------------


class DayData:
    """FakeFmpServer data: the sample source as of `self.as_of` (switch the date between runs)."""

    def __init__(self, as_of: dt.date) -> None:
        self.as_of = as_of
        self._sources: dict[dt.date, SampleSource] = {}

    def source(self, as_of: dt.date | None = None) -> SampleSource:
        day = as_of or self.as_of
        if day not in self._sources:
            self._sources[day] = SampleSource(as_of=day)
        return self._sources[day]

    def __call__(self, path: str, params: Mapping[str, str]) -> tuple[int, bytes, dict[str, str]]:
        answer = self.source().respond(path, params)
        return answer.status_code, bytes(answer.body), dict(answer.headers or {})


def make_client(base_url: str, **overrides: Any) -> FmpClient:
    options: dict[str, Any] = dict(
        max_retries=2,
        backoff_base_s=0.001,
        backoff_cap_s=0.01,
        retry_after_cap_s=0.05,
        timeout_s=5.0,
        limiter=RateLimiter(100_000),
    )
    options.update(overrides)
    return FmpClient(base_url, KEY, **options)


class Lake:
    """A data folder: warehouse + Bronze store, and a helper that runs one Bronze step like the asset does."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.warehouse = Warehouse(root / "warehouse.duckdb")
        self.store = BronzeStore(root / "bronze")

    def run(
        self,
        server_or_url: FakeFmpServer | str,
        entries: Sequence[KeymapEntry],
        tickers: Sequence[str],
        today: dt.date,
        *,
        fmp_plan: str | None = None,
        run_id: str | None = None,
        **client_options: Any,
    ) -> BronzeRunReport:
        base_url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
        with make_client(base_url, **client_options) as client:
            return run_bronze(
                entries=entries,
                tickers=tickers,
                warehouse=self.warehouse,
                store=self.store,
                client=client,
                run_id=run_id or str(uuid.uuid4()),
                today=today,
                fmp_plan=fmp_plan,
                source_mode="fmp",
                max_concurrency=4,
            )

    def coverage(self, e: KeymapEntry, ticker: str = "") -> Coverage | None:
        with self.warehouse.connect() as conn:
            cov = file_ingestions.latest_bronze_coverage(conn, e.identity, ticker_wildcard=e.per_ticker)
        return cov.get(e.identity.with_ticker(ticker))

    def ledger(self, where: str = "true", params: Sequence[Any] = ()) -> list[dict]:
        with self.warehouse.connect() as conn:
            cur = conn.execute(f"SELECT * FROM ops.file_ingestions WHERE {where} ORDER BY ingestion_id", list(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def envelopes(self, dataset: str, ticker: str = "") -> list[BronzeEnvelope]:
        rows = self.ledger("dataset = ? AND ticker = ?", [dataset, ticker])
        return [self.store.read(r["bronze_path"]) for r in rows]


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path)


@pytest.fixture
def data() -> DayData:
    return DayData(MON)


@pytest.fixture
def server(data: DayData) -> Iterator[FakeFmpServer]:
    with FakeFmpServer(api_key=KEY, data=data) as fake:
        yield fake


def wire(server: FakeFmpServer, path: str, start: int = 0) -> list[dict[str, str]]:
    return [r.params for r in server.requests[start:] if r.path == path]


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def span_days(params: Mapping[str, str]) -> int:
    return (d(params["to"]) - d(params["from"])).days + 1


def assert_contiguous(windows: list[tuple[dt.date, dt.date]], start: dt.date, end: dt.date, max_days: int) -> None:
    windows = sorted(windows)
    assert windows[0][0] == start and windows[-1][1] == end
    for (_a, b), (c, _) in zip(windows, windows[1:]):
        assert c == b + dt.timedelta(days=1), f"gap or overlap between windows ending {b} and starting {c}"
    assert all((b - a).days + 1 <= max_days for a, b in windows)


# -- B1: incremental windows, split at max_window_days ---------------------------------------------------


def test_first_run_from_history_start_then_incremental_from_watermark(
    lake: Lake, server: FakeFmpServer, data: DayData
) -> None:
    report = lake.run(server, [EOD_ENTRY, TREASURY_ENTRY], ["AAPL", "MSFT"], MON)
    assert report.hard_failures == 0

    eod = wire(server, EOD)
    assert sorted(p["symbol"] for p in eod) == ["AAPL", "MSFT"]
    assert all(p["from"] == "2019-01-01" and p["to"] == MON.isoformat() for p in eod)
    assert all(span_days(p) <= EOD_ENTRY.recipe.max_window_days for p in eod)

    treasury = wire(server, TREASURY)
    assert len(treasury) > 1, "2023-01-01..2025-03-10 must be split into 90-day windows"
    assert_contiguous([(d(p["from"]), d(p["to"])) for p in treasury], d("2023-01-01"), MON, 90)
    for e, t in ((EOD_ENTRY, "AAPL"), (EOD_ENTRY, "MSFT"), (TREASURY_ENTRY, "")):
        cov = lake.coverage(e, t)
        assert cov is not None and cov.coverage_to == MON and cov.last_as_of == MON

    # next day: the window on the wire is the incremental one, not the history start
    data.as_of = TUE
    seen = len(server.requests)
    report = lake.run(server, [EOD_ENTRY, TREASURY_ENTRY], ["AAPL", "MSFT"], TUE)
    expected_from = (MON - dt.timedelta(days=7)).isoformat()
    assert [(p["from"], p["to"]) for p in wire(server, EOD, seen)] == [(expected_from, TUE.isoformat())] * 2
    assert [(p["from"], p["to"]) for p in wire(server, TREASURY, seen)] == [(expected_from, TUE.isoformat())]
    assert lake.coverage(EOD_ENTRY, "AAPL").coverage_to == TUE
    assert lake.coverage(TREASURY_ENTRY).coverage_to == TUE
    # the recorded requested window matches the wire
    latest = [e for e in lake.envelopes("historical-price-eod", "AAPL") if e.request.as_of == TUE]
    assert len(latest) == 1 and latest[0].request.window_from == d(expected_from) and latest[0].request.window_to == TUE


def test_long_history_is_split_so_no_eod_request_reaches_the_row_cap(lake: Lake, server: FakeFmpServer) -> None:
    long_eod = dataclasses.replace(
        EOD_ENTRY, recipe=dataclasses.replace(EOD_ENTRY.recipe, history_start=dt.date(2000, 1, 1))
    )
    report = lake.run(server, [long_eod], ["AAPL"], MON)
    assert report.hard_failures == 0
    eod = wire(server, EOD)
    assert len(eod) == 3
    assert_contiguous([(d(p["from"]), d(p["to"])) for p in eod], dt.date(2000, 1, 1), MON, 3650)
    envs = lake.envelopes("historical-price-eod", "AAPL")
    assert all(e.row_count < EOD_ENTRY.recipe.row_cap and not e.notes for e in envs)
    # 25 years of rows arrived although one request would have been capped at 5,000
    assert sum(e.row_count for e in envs) > EOD_ENTRY.recipe.row_cap


# -- B2: cadence over consecutive days ---------------------------------------------------------------------


def test_four_consecutive_daily_runs_fetch_every_day_and_a_rerun_fetches_nothing(
    lake: Lake, server: FakeFmpServer, data: DayData
) -> None:
    tickers = ["AAPL", "MSFT"]
    for day in (MON, TUE, WED, THU):
        data.as_of = day
        seen = len(server.requests)
        report = lake.run(server, [EOD_ENTRY], tickers, day)
        rep = report.entries[EOD_ENTRY.asset_name]
        assert rep.due == 2 and not rep.skipped, f"{day}: {rep.skip_reasons}"
        assert sorted(p["symbol"] for p in wire(server, EOD, seen)) == tickers
        assert all(p["to"] == day.isoformat() for p in wire(server, EOD, seen))
        for t in tickers:
            assert lake.coverage(EOD_ENTRY, t).coverage_to == day
            assert lake.coverage(EOD_ENTRY, t).last_as_of == day

    # the union of what was fetched has no gap: every trading day the source knows, up to Thursday
    full = json.loads(
        data.source(THU).respond(EOD, {"symbol": "AAPL", "from": "2019-01-01", "to": THU.isoformat()}).body
    )
    expected = {row["date"] for row in full}
    got = {row["date"] for env in lake.envelopes("historical-price-eod", "AAPL") for row in env.content}
    assert got == expected
    assert {MON.isoformat(), TUE.isoformat(), WED.isoformat(), THU.isoformat()} <= got

    # a second run on the same day is not due, and says why
    seen = len(server.requests)
    run_id = str(uuid.uuid4())
    report = lake.run(server, [EOD_ENTRY], tickers, THU, run_id=run_id)
    rep = report.entries[EOD_ENTRY.asset_name]
    assert len(server.requests) == seen and report.requests == 0
    assert rep.due == 0 and rep.skipped == {"not_due": 2}
    assert all("not due" in r and "min_age_days=1" in r and "0 day(s) old" in r for r in rep.skip_reasons)
    with lake.warehouse.connect() as conn:
        run = get_run(conn, run_id)
    assert (
        run["status"] == "success" and run["requests"] == 0 and run["skipped"] == 2 and "nothing due" in run["message"]
    )


# -- B3 / B12: failures never move the watermark, and the next run recovers -----------------------------------

FAILURES = {
    "503x5": ([status(503, "<html>Service Unavailable</html>")] * 5, "http_status", True),
    "429_persistent": ([rate_limit()] * 5, "rate_limited", True),
    "error_message_200": ([error_message_200("Something went wrong on our side")], "api_error_body", False),
}


@pytest.mark.parametrize("kind", list(FAILURES))
def test_failed_fetch_keeps_the_watermark_and_the_next_run_refetches_the_window(
    lake: Lake, server: FakeFmpServer, data: DayData, kind: str
) -> None:
    faults, error_class, hard = FAILURES[kind]
    lake.run(server, [EOD_ENTRY], ["AAPL"], MON, max_retries=4)
    before = lake.coverage(EOD_ENTRY, "AAPL")
    assert before.coverage_to == MON

    data.as_of = TUE
    server.add_faults(EOD, *faults)
    seen = len(server.requests)
    run_id = str(uuid.uuid4())
    report = lake.run(server, [EOD_ENTRY], ["AAPL"], TUE, max_retries=4, run_id=run_id)
    failed_window = [(p["from"], p["to"]) for p in wire(server, EOD, seen)]
    assert len(failed_window) == len(faults)
    assert set(failed_window) == {((MON - dt.timedelta(days=7)).isoformat(), TUE.isoformat())}

    # the watermark did not move
    assert lake.coverage(EOD_ENTRY, "AAPL") == before
    # the error is kept in Bronze, classified, unpromotable
    rows = lake.ledger("run_id = ?", [run_id])
    assert len(rows) == 1 and rows[0]["error_class"] == error_class and rows[0]["can_promote"] is False
    raw = json.loads((lake.store.root / rows[0]["bronze_path"]).read_bytes())
    assert raw["can_promote"] is False and raw["error"]["class"] == error_class and raw["content"] is None
    assert raw["request"]["window_from"] == failed_window[0][0]
    # the step's report counts it under its class; only refusals are hard failures
    rep = report.entries[EOD_ENTRY.asset_name]
    assert rep.failed == {error_class: 1} and rep.rows == 0
    assert report.hard_failures == (1 if hard else 0)
    with lake.warehouse.connect() as conn:
        assert get_run(conn, run_id)["status"] == ("partial" if hard else "success")

    # the next run (same day) asks for the same window again and gets the data
    seen = len(server.requests)
    report = lake.run(server, [EOD_ENTRY], ["AAPL"], TUE)
    assert [(p["from"], p["to"]) for p in wire(server, EOD, seen)] == [failed_window[0]]
    assert report.hard_failures == 0
    after = lake.coverage(EOD_ENTRY, "AAPL")
    assert after.coverage_to == TUE and after.last_as_of == TUE


def test_unknown_ticker_empty_answer_is_not_a_failure(lake: Lake, server: FakeFmpServer) -> None:
    report = lake.run(server, [EOD_ENTRY], ["AAPL", "ZZZZ"], MON)
    rep = report.entries[EOD_ENTRY.asset_name]
    assert report.hard_failures == 0 and not rep.failed
    assert rep.tickers_with_data == {"AAPL"}
    (env,) = lake.envelopes("historical-price-eod", "ZZZZ")
    assert env.content == [] and env.row_count == 0 and env.can_promote and env.error_class is None
    assert env.coverage_from is None and env.coverage_to is None


def test_failed_middle_window_is_fetched_again(lake: Lake, server: FakeFmpServer, data: DayData) -> None:
    """A window that failed while later windows of the same identity succeeded must not be skipped for good."""
    failing = {"on": True}

    def flaky(path: str, params: Mapping[str, str]) -> tuple[int, bytes, dict[str, str]]:
        if failing["on"] and path == TREASURY and params["from"] == "2023-04-01":
            return 400, b"Query Error: something odd", {}
        return data(path, params)

    server.data = flaky
    report = lake.run(server, [TREASURY_ENTRY], [], MON)
    assert report.entries[TREASURY_ENTRY.asset_name].failed == {"http_status": 1}
    # later windows succeeded, but the watermark stays before the hole, and the dataset stays due
    cov = lake.coverage(TREASURY_ENTRY)
    assert cov.coverage_to < d("2023-04-01") and cov.last_as_of is None

    failing["on"] = False
    seen = len(server.requests)
    lake.run(server, [TREASURY_ENTRY], [], MON)  # the same day: retried at once, not after min_age_days
    windows = [(d(p["from"]), d(p["to"])) for p in wire(server, TREASURY, seen)]
    assert windows and min(a for a, _ in windows) <= d("2023-04-01"), (
        f"the failed window was not re-requested: {windows}"
    )
    assert max(b for _, b in windows) == MON
    dates = {row["date"] for e in lake.envelopes("treasury-rates") if e.can_promote for row in e.content}
    assert "2023-04-03" in dates and "2023-06-29" in dates  # trading days inside the failed window
    cov = lake.coverage(TREASURY_ENTRY)
    assert cov.coverage_to == MON and cov.last_as_of == MON
    seen = len(server.requests)
    assert lake.run(server, [TREASURY_ENTRY], [], MON).requests == 0  # healed: back to the normal cadence


def test_missing_first_window_is_fetched_again(lake: Lake, server: FakeFmpServer, data: DayData) -> None:
    """A run killed while its first window was in flight, after later windows landed, leaves no file for the start
    of history: no failed file marks the hole, so the planner compares the oldest good window with history_start."""
    history_start = TREASURY_ENTRY.recipe.history_start
    server.data = data
    lake.run(server, [TREASURY_ENTRY], [], MON)
    # as if the process died before writing the first window's file: neither the file nor its ledger row exist
    (first,) = lake.ledger("dataset = 'treasury-rates' AND window_from = ?", [history_start])
    (lake.store.root / first["bronze_path"]).unlink()
    with lake.warehouse.transaction() as conn:
        conn.execute("DELETE FROM ops.file_ingestions WHERE file_id = ?", [first["file_id"]])
    cov = lake.coverage(TREASURY_ENTRY)
    assert cov.coverage_to == MON and cov.first_window_from > history_start

    seen = len(server.requests)
    lake.run(server, [TREASURY_ENTRY], [], MON + dt.timedelta(days=1))
    windows = [(d(p["from"]), d(p["to"])) for p in wire(server, TREASURY, seen)]
    # (windows are fetched concurrently: the server may see them in any order)
    assert (first["window_from"], first["window_to"]) in windows, f"the first window was not re-requested: {windows}"
    assert lake.coverage(TREASURY_ENTRY).first_window_from == history_start
    seen = len(server.requests)
    lake.run(server, [TREASURY_ENTRY], [], MON + dt.timedelta(days=2))
    assert all(d(p["from"]) > history_start for p in wire(server, TREASURY, seen))  # healed: incremental again


def test_missing_first_window_is_fetched_by_a_rerun_inside_the_cadence(
    lake: Lake, server: FakeFmpServer, data: DayData
) -> None:
    """The rerun right after the crash, on the same day, must not wait for the cadence (min_age_days) to fetch the
    history the killed run never wrote: the later windows' files look like a fresh, complete fetch."""
    history_start = TREASURY_ENTRY.recipe.history_start
    server.data = data
    lake.run(server, [TREASURY_ENTRY], [], MON)
    (first,) = lake.ledger("dataset = 'treasury-rates' AND window_from = ?", [history_start])
    (lake.store.root / first["bronze_path"]).unlink()
    with lake.warehouse.transaction() as conn:
        conn.execute("DELETE FROM ops.file_ingestions WHERE file_id = ?", [first["file_id"]])

    seen = len(server.requests)
    lake.run(server, [TREASURY_ENTRY], [], MON)  # the same day: within min_age_days of the later windows
    windows = [(d(p["from"]), d(p["to"])) for p in wire(server, TREASURY, seen)]
    assert (first["window_from"], first["window_to"]) in windows, f"the first window was not re-requested: {windows}"
    assert lake.coverage(TREASURY_ENTRY).first_window_from == history_start


# -- B13: pagination guards ---------------------------------------------------------------------------------

PAGED_DOC = {
    "version": 1,
    "datasets": [
        {
            "domain": "market",
            "source": "fmp",
            "dataset": "fake-paged",
            "ticker_scope": "global",
            "description": "A paginated test dataset.",
            "docs_url": "https://example.invalid/fake-paged",
            "silver": {
                "table": "fake_paged",
                "key": ["id"],
                "columns": [{"name": "id", "type": "integer", "nullable": False}],
            },
            "recipe": {
                "path": "fake-paged",
                "query": {"page": "__page__"},
                "min_age_days": 1,
                "pagination": {"param": "page", "start": 0, "max_pages": 5},
            },
        }
    ],
}
PAGED = parse_keymap(PAGED_DOC, "<test>").entries[0]


def paged_data(pages: int | None = None, *, ignore_page: bool = False, fail_page: int | None = None):
    def respond(path: str, params: Mapping[str, str]) -> tuple[int, bytes, dict[str, str]]:
        assert path == "fake-paged"
        page = 0 if ignore_page else int(params["page"])
        if fail_page is not None and page == fail_page:
            return 400, b"Query Error: page", {}
        if pages is not None and page >= pages:
            return 200, b"[]", {}
        return 200, json.dumps([{"id": page * 10 + i} for i in range(3)]).encode(), {}

    return respond


def paged_run(lake: Lake, server: FakeFmpServer) -> list[BronzeEnvelope]:
    run_id = str(uuid.uuid4())
    lake.run(server, [PAGED], [], MON, run_id=run_id)
    return sorted(
        (lake.store.read(r["bronze_path"]) for r in lake.ledger("run_id = ?", [run_id])), key=lambda e: e.request.page
    )


def test_pagination_stops_at_an_empty_page(lake: Lake, server: FakeFmpServer) -> None:
    server.data = paged_data(pages=3)
    envs = paged_run(lake, server)
    assert [r.params["page"] for r in server.requests] == ["0", "1", "2", "3"]
    assert [e.request.page for e in envs] == [0, 1, 2, 3] and [e.row_count for e in envs] == [3, 3, 3, 0]
    assert all(e.can_promote for e in envs)


def test_pagination_stops_at_a_repeated_page_without_storing_it(lake: Lake, server: FakeFmpServer) -> None:
    server.data = paged_data(ignore_page=True)
    envs = paged_run(lake, server)
    assert [r.params["page"] for r in server.requests] == ["0", "1"]
    assert [e.request.page for e in envs] == [0] and envs[0].can_promote


def test_pagination_stops_at_max_pages(lake: Lake, server: FakeFmpServer, caplog: pytest.LogCaptureFixture) -> None:
    server.data = paged_data()
    envs = paged_run(lake, server)
    assert [r.params["page"] for r in server.requests] == ["0", "1", "2", "3", "4"]
    assert len(envs) == 5
    assert "page limit" in caplog.text


def test_a_failed_middle_page_makes_the_whole_set_unpromotable(lake: Lake, server: FakeFmpServer) -> None:
    server.data = paged_data(pages=4, fail_page=2)
    envs = paged_run(lake, server)
    assert [r.params["page"] for r in server.requests] == ["0", "1", "2"]
    assert [e.request.page for e in envs] == [0, 1, 2]
    assert not any(e.can_promote for e in envs)
    assert envs[2].error_class == "http_status"
    assert all(any("page set incomplete" in n for n in e.notes) for e in envs[:2])
    assert lake.coverage(PAGED) is None  # nothing good: the dataset stays due
    # and the next run walks the whole set again
    server.data = paged_data(pages=2)
    seen = len(server.requests)
    lake.run(server, [PAGED], [], MON)
    assert [r.params["page"] for r in server.requests[seen:]] == ["0", "1", "2"]
    assert lake.coverage(PAGED) is not None


# -- plan gating ---------------------------------------------------------------------------------------------


def test_recipe_above_the_plan_is_skipped_visibly_and_not_requested(lake: Lake, server: FakeFmpServer) -> None:
    report = lake.run(server, [EOD_ENTRY, SCREENER_ENTRY], ["AAPL"], MON, fmp_plan="basic")
    assert {r.path for r in server.requests} == {EOD}
    rep = report.entries[SCREENER_ENTRY.asset_name]
    assert rep.skipped == {"plan": 1} and rep.requests == 0
    assert "starter" in rep.skip_reasons[0] and "FMP_PLAN=basic" in rep.skip_reasons[0]
    assert report.entries[EOD_ENTRY.asset_name].due == 1
    # without a plan nothing is gated
    lake.run(server, [SCREENER_ENTRY], [], MON)
    assert any(r.path == "company-screener" for r in server.requests)


# -- crash recovery: orphans ------------------------------------------------------------------------------------


def _write_unregistered(lake: Lake, server: FakeFmpServer, journal: str) -> BronzeEnvelope:
    """Fetch and write one file like a worker does, then 'crash' before registering it."""
    request = PlannedRequest(
        EOD_ENTRY.identity.with_ticker("AAPL"),
        EOD,
        {"symbol": "AAPL", "from": "2025-03-01", "to": MON.isoformat()},
        MON,
        d("2025-03-01"),
        MON,
    )
    with make_client(server.base_url) as client:
        (env,) = fetch_request(client, request, EOD_ENTRY, str(uuid.uuid4()))
    lake.store.write(env, journal)
    return env


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_file_written_but_never_registered_is_registered_once_on_the_next_run(
    lake: Lake, server: FakeFmpServer
) -> None:
    crashed_journal = f"{uuid.uuid4().hex}.{_dead_pid()}.1"
    env = _write_unregistered(lake, server, crashed_journal)
    assert lake.store.journals() == [crashed_journal]

    first = lake.run(server, [EOD_ENTRY], ["AAPL"], TUE)
    second = lake.run(server, [EOD_ENTRY], ["AAPL"], TUE)
    assert first.orphans_registered == 1 and second.orphans_registered == 0
    assert len(lake.ledger("file_id = ?", [env.file_id])) == 1
    assert lake.store.journals() == []
    # the orphan and the file the run fetched itself carry the digest of their bytes, which Silver verifies on read
    rows = lake.ledger()
    assert len(rows) > 1 and all(
        r["file_md5"] == hashlib.md5(lake.store.read_bytes(r["bronze_path"])).hexdigest() for r in rows
    )


def test_crash_between_write_and_register_is_repaired_and_not_refetched(
    lake: Lake, server: FakeFmpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_register = file_ingestions.register_files

    def crash(conn, records):
        if records:
            raise RuntimeError("simulated crash before the ledger write")
        return real_register(conn, records)

    monkeypatch.setattr(file_ingestions, "register_files", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        lake.run(server, [EOD_ENTRY], ["AAPL", "MSFT"], MON)
    monkeypatch.setattr(file_ingestions, "register_files", real_register)
    written = list(lake.store.iter_files())
    assert len(written) == 2 and lake.ledger() == [] and len(lake.store.journals()) == 1

    seen = len(server.requests)
    report = lake.run(server, [EOD_ENTRY], ["AAPL", "MSFT"], MON)
    assert report.orphans_registered == 2
    assert sorted(r["bronze_path"] for r in lake.ledger()) == sorted(written)
    # the repaired files count as coverage: nothing is fetched twice
    assert len(server.requests) == seen and report.entries[EOD_ENTRY.asset_name].skipped == {"not_due": 2}


def test_journal_of_a_live_process_is_left_alone(lake: Lake, server: FakeFmpServer) -> None:
    live_journal = f"{uuid.uuid4().hex}.{os.getppid()}.1"  # our parent is alive and may still be writing
    env = _write_unregistered(lake, server, live_journal)
    with lake.warehouse.transaction() as conn:
        assert register_orphans(conn, lake.store, lambda ident: EOD_ENTRY.silver.table) == 0
    report = lake.run(server, [EOD_ENTRY], ["MSFT"], MON)
    assert report.orphans_registered == 0
    assert lake.ledger("file_id = ?", [env.file_id]) == []
    assert live_journal in lake.store.journals()


# -- hostile names -------------------------------------------------------------------------------------------

HOSTILE = ["../x", "A/B", "", "x" * 70, "A\nB", "A\x00B", "..", ".hidden", "A\\B", "/etc", "A B"]


@pytest.mark.parametrize("ticker", [t for t in HOSTILE if t])
def test_hostile_ticker_is_rejected_by_the_store(
    lake: Lake, server: FakeFmpServer, tmp_path: Path, ticker: str
) -> None:
    request = PlannedRequest(EOD_ENTRY.identity.with_ticker("AAPL"), EOD, {"symbol": "AAPL"}, MON)
    with make_client(server.base_url) as client:
        (good,) = fetch_request(client, request, EOD_ENTRY, str(uuid.uuid4()))
    hostile = dataclasses.replace(good, identity=EOD_ENTRY.identity.with_ticker(ticker))
    before = set(tmp_path.rglob("*"))
    with pytest.raises(UnsafeNameError, match="ticker"):
        lake.store.write(hostile, "journal")
    assert set(tmp_path.rglob("*")) == before  # not even the journal line was written
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize("ticker", HOSTILE)
def test_hostile_ticker_in_a_run_is_rejected_before_anything_is_sent_or_written(
    lake: Lake, server: FakeFmpServer, tmp_path: Path, ticker: str
) -> None:
    # the empty ticker is the store's global marker, so the run itself must refuse it for per-ticker datasets
    with pytest.raises(UnsafeNameError, match="ticker"):
        lake.run(server, [EOD_ENTRY], ["AAPL", ticker], MON)
    assert server.requests == []
    assert not (tmp_path / "bronze").exists() or list(lake.store.iter_files()) == []
    assert [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith("warehouse.duckdb")] == []


# -- B7: the key never lands anywhere ------------------------------------------------------------------------------


def _assert_key_nowhere(lake: Lake, caplog: pytest.LogCaptureFixture) -> None:
    files = [p for p in lake.root.rglob("*") if p.is_file()]
    assert any(p.name == "warehouse.duckdb" for p in files) and any(p.suffix == ".json" for p in files)
    for p in files:
        assert KEY.encode() not in p.read_bytes(), f"API key found in {p}"
    # DuckDB may compress strings on disk, so also look through the ledger itself
    with lake.warehouse.connect() as conn:
        for table in ("ops.file_ingestions", "ops.runs"):
            rows = conn.execute(f"SELECT * FROM {table}").fetchall()
            assert KEY not in repr(rows), f"API key found in {table}"
    assert KEY not in caplog.text and all(KEY not in r.getMessage() for r in caplog.records)
    for e in (lake.store.read(rel) for rel in lake.store.iter_files()):
        assert "apikey" not in {k.lower() for k in e.request.params}
        assert KEY not in e.request.url and "apikey" not in e.request.url.lower()
        assert KEY not in json.dumps(dataclasses.asdict(e), default=str)


def test_api_key_never_reaches_disk_logs_or_envelopes(
    lake: Lake, server: FakeFmpServer, data: DayData, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    # error bodies that echo the key (as some gateways echo the request URL) must not carry it into Bronze
    server.add_faults(TREASURY, status(503, "busy"), error_message_200(f"Invalid request apikey={KEY}"))
    server.add_faults(
        EOD,
        status(500, f'{{"Error Message": "bad key {KEY}"}}'.encode()),
        status(502, f"<html>GET /stable/x?apikey={KEY} failed</html>"),
    )
    report = lake.run(server, [EOD_ENTRY, TREASURY_ENTRY], ["AAPL", "MSFT"], MON, max_retries=0)
    assert all(r.had_key for r in server.requests)  # the key was sent ...
    assert any(r.name == "httpx" for r in caplog.records)  # ... httpx logged URLs at INFO, filtered
    assert sum(sum(r.failed.values()) for r in report.entries.values()) == 4
    assert all(KEY not in f for r in report.entries.values() for f in r.failures)

    # a run that dies before registering leaves its journal behind: that file is key-free too
    def crash(conn, records):
        if records:
            raise RuntimeError("simulated crash")

    data.as_of = TUE
    monkeypatch.setattr(file_ingestions, "register_files", crash)
    with pytest.raises(RuntimeError):
        lake.run(server, [EOD_ENTRY], ["AAPL"], TUE)
    monkeypatch.undo()
    assert lake.store.journals()
    _assert_key_nowhere(lake, caplog)


def test_api_key_free_when_the_transport_fails(lake: Lake, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = lake.run(f"http://127.0.0.1:{port}/stable", [EOD_ENTRY, TREASURY_ENTRY], ["AAPL"], MON, max_retries=1)
    assert report.entries[EOD_ENTRY.asset_name].failed == {"transport": 1}
    assert report.hard_failures >= 2
    envs = [lake.store.read(r["bronze_path"]) for r in lake.ledger()]
    assert envs and all(e.error_class == "transport" and not e.can_promote and e.status_code is None for e in envs)
    for e in envs:
        assert KEY not in e.request.url and KEY not in (e.error_message or "")
    assert all(KEY not in f for r in report.entries.values() for f in r.failures)
    _assert_key_nowhere(lake, caplog)
    assert lake.coverage(EOD_ENTRY, "AAPL") is None


# -- dry run -----------------------------------------------------------------------------------------------------


def test_dry_run_says_what_is_due_and_why_not(lake: Lake, server: FakeFmpServer) -> None:
    entries = [EOD_ENTRY, TREASURY_ENTRY, SCREENER_ENTRY]
    lake.run(server, [EOD_ENTRY, TREASURY_ENTRY], ["AAPL"], MON)
    seen = len(server.requests)

    with lake.warehouse.reader() as conn:
        same_day = dry_run(entries=entries, tickers=["AAPL", "MSFT"], conn=conn, today=MON, fmp_plan="basic")
        next_day = dry_run(entries=entries, tickers=["AAPL", "MSFT"], conn=conn, today=TUE, fmp_plan="basic")
    assert len(server.requests) == seen  # nothing fetched

    def by_key(decisions):
        return {(x.entry.dataset, x.identity.ticker): x for x in decisions}

    today = by_key(same_day)
    assert set(today) == {
        ("historical-price-eod", "AAPL"),
        ("historical-price-eod", "MSFT"),
        ("treasury-rates", ""),
        ("company-screener", ""),
    }
    aapl = today[("historical-price-eod", "AAPL")]
    assert not aapl.due and aapl.skip_kind == "not_due" and "min_age_days=1" in aapl.reason and str(TUE) in aapl.reason
    msft = today[("historical-price-eod", "MSFT")]
    assert msft.due and "first fetch from history start 2019-01-01" in msft.reason
    assert msft.requests[0].params == {"symbol": "MSFT", "from": "2019-01-01", "to": MON.isoformat()}
    assert not today[("treasury-rates", "")].due and today[("treasury-rates", "")].skip_kind == "not_due"
    screener = today[("company-screener", "")]
    assert not screener.due and screener.skip_kind == "plan" and "starter" in screener.reason

    tomorrow = by_key(next_day)
    aapl = tomorrow[("historical-price-eod", "AAPL")]
    week_before = (MON - dt.timedelta(days=7)).isoformat()
    assert aapl.due and f"incremental from {week_before}" in aapl.reason
    assert [(r.params["from"], r.params["to"]) for r in aapl.requests] == [(week_before, TUE.isoformat())]
    assert tomorrow[("treasury-rates", "")].due


def test_window_reaching_the_row_cap_is_split_and_refetched(tmp_path):
    """FMP drops the oldest EOD rows silently past 5,000: a capped answer is never stored as the window's data."""
    import dataclasses

    from pipeline.bronze.fetch import fetch_request
    from pipeline.bronze.planner import plan_identity
    from pipeline.fmp.client import FmpClient
    from pipeline.fmp.ratelimit import RateLimiter
    from pipeline.fmp.sample import sample_transport
    from pipeline.keymap import load_keymap
    from pipeline.settings import PROJECT_ROOT

    keymap = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")
    eod = next(e for e in keymap if e.dataset == "historical-price-eod")
    # one window of 25 years: far above the cap
    recipe = dataclasses.replace(eod.recipe, history_start=dt.date(2000, 1, 3), max_window_days=None)
    entry = dataclasses.replace(eod, recipe=recipe)
    today = dt.date(2026, 11, 20)
    decision = plan_identity(entry, entry.identity.with_ticker("AAPL"), None, today, None)
    assert len(decision.requests) == 1
    with FmpClient(
        "https://sample.invalid/stable", None, transport=sample_transport(today), limiter=RateLimiter(100000)
    ) as client:
        envelopes = fetch_request(client, decision.requests[0], entry, "run-cap")
    assert len(envelopes) >= 2
    assert all(e.row_count < 5000 for e in envelopes)
    assert min(e.coverage_from for e in envelopes) <= dt.date(2000, 1, 7)
    assert max(e.coverage_to for e in envelopes) == dt.date(2026, 11, 20)
    windows = sorted((e.request.window_from, e.request.window_to) for e in envelopes)
    for (_a1, b1), (a2, _b2) in zip(windows, windows[1:]):
        assert a2 == b1 + dt.timedelta(days=1)  # contiguous, no hole


def test_a_refused_key_stops_the_run_early(tmp_path):
    """A wrong key fails every request alike: after a few refusals the rest are reported, not sent."""
    from pipeline.fmp.sample import SampleSource
    from pipeline_tests.fakes.fmp_server import sample_data

    entries = [e for e in KEYMAP if e.dataset in ("historical-price-eod", "profile", "dividends", "splits")]
    tickers = ["AAPL", "MSFT", "NVDA", "JPM", "XOM", "JNJ", "KO", "PG"]
    with FakeFmpServer(api_key="the-right-key", data=sample_data(SampleSource(as_of=THU))) as fake:
        client = make_client(fake.base_url, max_concurrency=2)  # KEY is not the server's key
        report = run_bronze(
            entries=entries,
            tickers=tickers,
            warehouse=Warehouse(tmp_path / "warehouse.duckdb"),
            store=BronzeStore(tmp_path / "bronze"),
            client=client,
            run_id="run-auth",
            today=THU,
            fmp_plan=None,
            source_mode="fmp",
            max_concurrency=2,
        )
        client.close()
        sent = len(fake.requests)
    planned = sum(r.due for r in report.entries.values())  # identities; EOD adds a window per identity
    not_sent = sum(r.skipped.get("not_sent_key_refused", 0) for r in report.entries.values())
    assert sent <= 3 + 2  # the refusals that stop it, plus what was already in flight
    assert not_sent > 0 and sent + not_sent >= planned
    assert report.hard_failures == sent  # every answer was an auth refusal, each one reported
