"""The request budget (DESIGN section 11): the ledger records what every response cost, and a run that would exceed
the remaining bandwidth or a daily cap does the most valuable work first, across the several Bronze steps of a day,
says what it deferred, and the next run fetches it.

Everything runs `run_bronze` against the loopback fake FMP server (gzip on the wire, as FMP serves it) into a
temporary data folder, the way the Bronze assets call it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence

import pytest

from pipeline.bronze.budget import RunBudget, allocation, day_tickers
from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.planner import plan, split_window
from pipeline.bronze.report import BronzeRunReport
from pipeline.fmp.plans import budget_limits
from pipeline.keymap import KeymapEntry
from pipeline.ledger_types import FileRecord
from pipeline.ops import file_ingestions
from pipeline.ops.runs import get_run
from pipeline.ops.usage import Usage, usage
from pipeline_tests.bronze.test_bronze import KEYMAP, MON, DayData, Lake, make_client
from pipeline_tests.fakes.fmp_server import FakeFmpServer, status
from pipeline_tests.support import KEY

TICKERS = ["AAPL", "MSFT", "NVDA", "TSLA"]


def entry(asset_name: str) -> KeymapEntry:
    return next(e for e in KEYMAP if e.asset_name == asset_name)


EOD = entry("historical-price-eod")  # prices
CALENDAR = entry("economic-calendar")  # calendars (global)
TREASURY = entry("treasury-rates")  # other (global)
INCOME = entry("income-statement__quarter")  # statements
METRICS = entry("key-metrics__quarter")  # metrics
PER_TICKER = [EOD, INCOME, METRICS]
GLOBAL = [CALENDAR, TREASURY]
ALL = [*PER_TICKER, *GLOBAL]


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(tmp_path)


@pytest.fixture
def server() -> Iterator[FakeFmpServer]:
    with FakeFmpServer(api_key=KEY, data=DayData(MON)) as fake:
        yield fake


def step(
    lake: Lake,
    server: FakeFmpServer,
    entries: Sequence[KeymapEntry],
    tickers: Sequence[str],
    *,
    run_id: str | None = None,
    **limits: int,
) -> BronzeRunReport:
    """One Bronze step as the assets run it, with a budget over the whole universe (TICKERS) and keymap (ALL)."""
    budget = RunBudget(budget_limits(None, **limits), universe=lambda conn: TICKERS, entries=ALL) if limits else None
    with make_client(server.base_url) as client:
        return run_bronze(
            entries=entries,
            tickers=tickers,
            warehouse=lake.warehouse,
            store=lake.store,
            client=client,
            run_id=run_id or str(uuid.uuid4()),
            today=MON,
            fmp_plan=None,
            source_mode="fmp",
            max_concurrency=2,
            budget=budget,
        )


def sent(server: FakeFmpServer, start: int = 0) -> dict[str, int]:
    """Requests that reached the fake, per path."""
    out: dict[str, int] = {}
    for r in server.requests[start:]:
        out[r.path] = out.get(r.path, 0) + 1
    return out


# ---- the ledger: what every response cost ---------------------------------------------------------------------


def test_the_ledger_records_decoded_bytes_wire_bytes_and_every_attempt(lake: Lake, server: FakeFmpServer) -> None:
    """`bytes` is the body as decoded (what the envelope parsed), `wire_bytes` what crossed the wire for the request,
    gzip-compressed as FMP sends it and retries included, `attempts` every call FMP saw."""
    data = DayData(MON)
    server.add_faults(EOD.recipe.path, status(503, '{"Error Message": "busy"}'))
    step(lake, server, [EOD], ["AAPL"])
    [row] = lake.ledger("dataset = ?", [EOD.dataset])
    calls = [r for r in server.requests if r.path == EOD.recipe.path]
    assert [c.status for c in calls] == [503, 200] and row["attempts"] == 2
    decoded = data(EOD.recipe.path, calls[-1].params)[1]
    assert row["bytes"] == len(decoded) > 0
    assert row["wire_bytes"] == sum(c.body_bytes for c in calls)
    assert row["wire_bytes"] < row["bytes"]  # gzip: FMP may count either, so the budget counts the larger one
    with lake.warehouse.connect() as conn:
        used = usage(conn, dt.datetime.now(dt.UTC))
    assert (used.requests_today, used.bytes_today, used.bytes_30d) == (2, row["bytes"], row["bytes"])


# ---- the budget: most valuable work first, across the steps of a day --------------------------------------------


def test_a_daily_cap_fetches_prices_and_calendars_first_and_the_next_run_the_rest(
    lake: Lake, server: FakeFmpServer
) -> None:
    """The global step runs first but reserves what the prices of the whole universe need; the two per-ticker steps
    (chunks of the universe, separate runs) spend the cap on prices before statements, whichever chunk they are."""
    # a first day: the calendar's and the treasury's histories in 90-day windows, one request per ticker and dataset
    calendar, treasury = (len(split_window(e.recipe.history_start, MON, 90)) for e in (CALENDAR, TREASURY))
    cap = 4 + calendar  # the four tickers' prices and the calendar; nothing else fits
    first = step(lake, server, GLOBAL, [], daily_requests=cap)
    assert sent(server) == {CALENDAR.recipe.path: calendar}  # not treasury ("other"): prices are reserved
    chunk_a = step(lake, server, PER_TICKER, TICKERS[:2], daily_requests=cap)
    chunk_b = step(lake, server, PER_TICKER, TICKERS[2:], daily_requests=cap)
    assert sent(server) == {CALENDAR.recipe.path: calendar, EOD.recipe.path: 4}

    for report, deferred in ((first, {TREASURY.asset_name: treasury}), (chunk_a, None), (chunk_b, None)):
        got = {name: r.skipped["not_sent_budget"] for name, r in report.entries.items() if r.skipped["not_sent_budget"]}
        if deferred is not None:
            assert got == deferred
        else:
            assert got == {INCOME.asset_name: 2, METRICS.asset_name: 2}
    reason = chunk_b.entries[INCOME.asset_name].skip_reasons[0]
    assert "deferred by the request budget" in reason and "FMP_DAILY_REQUEST_CAP" in reason
    with lake.warehouse.connect() as conn:
        run = get_run(conn, chunk_b.run_id)
    assert run["deferred"] == 4 and "deferred by the request budget" in run["message"]
    # a deferred ticker is not "due": its partition is not materialized for a fetch that never happened
    assert chunk_a.entries[INCOME.asset_name].ticker("AAPL").due == 0

    # the next run, with a raised cap: the deferred work is fetched (the watermarks did not move), prices not again
    before = len(server.requests)
    step(lake, server, GLOBAL, [], daily_requests=100)
    step(lake, server, PER_TICKER, TICKERS, daily_requests=100)
    assert sent(server, before) == {TREASURY.recipe.path: treasury, INCOME.recipe.path: 4, METRICS.recipe.path: 4}


def test_without_a_budget_nothing_is_deferred(lake: Lake, server: FakeFmpServer) -> None:
    report = step(lake, server, PER_TICKER, TICKERS)
    assert not any(r.skipped["not_sent_budget"] for r in report.entries.values())
    assert sent(server) == {EOD.recipe.path: 4, INCOME.recipe.path: 4, METRICS.recipe.path: 4}


def test_a_step_stops_sending_once_the_bytes_it_was_left_are_spent(lake: Lake, server: FakeFmpServer) -> None:
    """Estimates can be wrong: a history of tiny answers makes four first fetches look cheap, but the first real
    answers are large. The step meters what it receives and stops sending once it has spent what was left."""
    history = [
        FileRecord(**{**TINY, "file_id": f"tiny{n}", "run_id": "earlier", "bronze_path": f"tiny/{n}.json"})
        for n in range(5)
    ]
    with lake.warehouse.transaction() as conn:
        file_ingestions.register_files(conn, history)
    report = step(lake, server, [EOD], TICKERS, bandwidth_30d=50 + 1000)  # 50 bytes used, 1 kB left
    eod = report.entries[EOD.asset_name]
    # two workers: the two requests in flight when the allowance ran out land, the others are not sent
    assert 1 <= eod.requests <= 2 and eod.skipped["not_sent_budget"] == len(TICKERS) - eod.requests
    assert sent(server) == {EOD.recipe.path: eod.requests}
    assert "this step's share is spent" in eod.skip_reasons[0]


TINY = {
    "domain": EOD.domain,
    "source": EOD.source,
    "dataset": EOD.dataset,
    "discriminator": "",
    "ticker": "ZZZZ",  # not one of the tickers: its coverage changes nothing for them
    "request_path": EOD.recipe.path,
    "page": None,
    "as_of": MON,
    "window_from": EOD.recipe.history_start,
    "window_to": MON,
    "status_code": 200,
    "error_class": None,
    "error_message": None,
    "bronze_rows": 1,
    "bytes": 10,
    "body_sha256": None,
    "coverage_from": MON,
    "coverage_to": MON,
    "fetched_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
    "elapsed_ms": 1.0,
    "can_promote": True,
    "silver_table": EOD.silver.table,
}


# ---- a large universe: the rest of the day on a sample ----------------------------------------------------------


def test_a_large_universe_is_planned_on_a_sample_that_stands_for_the_rest() -> None:
    """A step of 10 tickers in a universe of 1,000 plans its own tickers and 100 of the others, each standing for
    9.9: the prices of all 1,000 are reserved before the step's statements, as if every ticker had been planned."""
    universe = [f"T{i:04d}" for i in range(1000)]
    own = universe[:10]
    planned, weights = day_tickers(universe, own, sample=100)
    assert len(planned) == 110 and set(own) <= set(planned)
    assert sum(weights.values()) == pytest.approx(990) and not set(weights) & set(own)
    assert day_tickers(universe[:50], own, sample=100) == (universe[:50], {})  # small: every ticker, exactly

    day = plan([EOD, INCOME], planned, {}, MON, None)  # first fetches: one price window, one statement each
    used = Usage(dt.datetime.now(dt.UTC), MON, 0, 0, 0, 0)
    spend = allocation(budget_limits(None, daily_requests=1000 + 5), used, {}, day, weights)
    tasks = [(r, d.entry) for d in day if d.identity.ticker in own for r in d.requests]
    admitted, deferred, _meter = spend.split(tasks)
    assert sorted(e.asset_name for _, e in admitted).count(INCOME.asset_name) == 5  # 1,000 prices, then 5 statements
    assert len(deferred) == 5 and "prices 1,000" in deferred[0][2].reason
