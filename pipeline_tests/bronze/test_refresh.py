"""Event-driven refresh (pipeline.bronze.refresh) through real Bronze steps against the loopback fake FMP server
serving the sample source, with real Silver promotion in between (the policy reads the calendars and the statements
from Silver), the way a day's `pipeline run` orders them: calendars first, then the per-ticker datasets."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import uuid
from collections.abc import Mapping, Sequence

import pytest

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.report import BronzeRunReport
from pipeline.bronze.sweep import SweepClock, sweep_order, sweep_slots
from pipeline.cli.forecast import plan_report
from pipeline.cli.status import status
from pipeline.gold.build import build
from pipeline.keymap import KeymapEntry
from pipeline.settings import load_settings
from pipeline.silver.promote import promote_waiting
from pipeline_tests.bronze.test_bronze import KEYMAP, DayData, Lake, entry, make_client
from pipeline_tests.fakes.fmp_server import FakeFmpServer
from pipeline_tests.gold.sample_chain import ensure_gold_inputs
from pipeline_tests.support import KEY

CALENDARS = [entry("splits-calendar"), entry("dividends-calendar"), entry("earnings-calendar")]
INCOME_Q = entry("income-statement", "quarter")
SPLITS = entry("splits")
DIVIDENDS = entry("dividends")
AS_TRADED = entry("historical-price-eod", "non-split-adjusted")
FULL = entry("historical-price-eod")
PER_TICKER = [INCOME_Q, SPLITS, DIVIDENDS, AS_TRADED, FULL]
SWEEP = 28


class Day:
    """Runs one day like `pipeline run`: the calendars' Bronze step and Silver, then the per-ticker step and Silver."""

    def __init__(self, lake: Lake, server: FakeFmpServer, data: DayData, universe: Sequence[str]) -> None:
        self.lake, self.server, self.data, self.universe = lake, server, data, list(universe)
        self.log: list[str] = []

    def step(self, entries: Sequence[KeymapEntry], today: dt.date, plan: str | None) -> BronzeRunReport:
        with make_client(self.server.base_url) as client:
            return run_bronze(
                entries=entries,
                tickers=self.universe if entries[0].per_ticker else [],
                warehouse=self.lake.warehouse,
                store=self.lake.store,
                client=client,
                run_id=str(uuid.uuid4()),
                today=today,
                fmp_plan=plan,
                source_mode="fmp",
                max_concurrency=4,
                log_fn=self.log.append,
                orphan_entries=list(KEYMAP),
                sweep_days=SWEEP,
                universe=lambda conn: self.universe,
            )

    def promote(self, entries: Sequence[KeymapEntry]) -> None:
        for table in sorted({e.silver.table for e in entries}):
            promote_waiting(self.lake.warehouse, KEYMAP, table, None, self.lake.store.root, "silver", self.log.append)

    def run(self, today: dt.date, plan: str | None = None) -> None:
        """One day; the per-ticker step's requests are kept in `self.requests`, the log in `self.log`."""
        self.data.as_of = today
        self.log.clear()
        self.step(CALENDARS, today, plan)
        self.promote(CALENDARS)
        start = len(self.server.requests)
        self.step(PER_TICKER, today, plan)
        self.promote(PER_TICKER)
        self.requests = self.server.requests[start:]

    def asked(self, path: str) -> list[str]:
        """Symbols requested on `path` in the last run's per-ticker step."""
        return sorted(r.params.get("symbol", "") for r in self.requests if r.path == path)

    def silver(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self.lake.warehouse.connect() as conn:
            return conn.execute(sql, list(params)).fetchall()


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(tmp_path)


def serve(data: DayData | object, plan: str = "ultimate") -> FakeFmpServer:
    return FakeFmpServer(api_key=KEY, data=data, plan=plan)


def quiet_days(clock: SweepClock, tickers: Sequence[str], start: dt.date, n: int) -> list[dt.date]:
    """Weekdays from `start` on which none of `tickers` is on its sweep day."""
    out, day = [], start
    while len(out) < n:
        if day.weekday() < 5 and not any(clock.on(t, day) for t in tickers):
            out.append(day)
        day += dt.timedelta(days=1)
    return out


def test_the_calendar_driven_plan_fetches_a_statement_within_one_run_of_its_earnings_date(lake: Lake) -> None:
    # AAPL's quarter ending 2025-09-30 is accepted on 2025-11-03 (the sample's filing dates; the earnings calendar
    # lists AAPL that day). The backfill runs a week before; the days between are quiet for AAPL.
    universe = ["AAPL", "KO", "MSFT"]
    clock = SweepClock(SWEEP, sweep_order(universe))
    assert not clock.on("AAPL", dt.date(2025, 10, 31)) and not clock.on("AAPL", dt.date(2025, 11, 3))
    data = DayData(dt.date(2025, 10, 27))
    with serve(data) as server:
        day = Day(lake, server, data, universe)
        day.run(dt.date(2025, 10, 27))  # backfill: every dataset of every ticker once
        assert day.asked("income-statement") == universe

        day.run(dt.date(2025, 10, 31))  # no calendar row for AAPL: its statements wait
        assert "AAPL" not in day.asked("income-statement")
        assert "AAPL" in day.asked("historical-price-eod/non-split-adjusted")  # a bar every day
        assert "AAPL" not in day.asked("historical-price-eod/full")  # a cross-check, not a daily fetch

        day.run(dt.date(2025, 11, 3))
        assert "AAPL" in day.asked("income-statement")
        lines = [line for line in day.log if line.startswith("refresh income-statement__quarter")]
        assert lines and "earnings-calendar 1 (AAPL)" in lines[0], day.log
        held = day.silver(
            "SELECT count(*) FROM silver.fmp_income_statement WHERE ticker = 'AAPL' AND date = DATE '2025-09-30'"
        )
        assert held == [(1,)]


def test_a_calendar_row_for_a_symbol_outside_the_universe_is_a_logged_skip_naming_it(lake: Lake) -> None:
    data = DayData(dt.date(2025, 11, 3))
    with serve(data) as server:
        day = Day(lake, server, data, ["KO"])
        day.run(dt.date(2025, 11, 3))
        day.run(dt.date(2025, 11, 4))
    # the earnings calendar of those days lists AAPL (2025-11-03) and foreign listings: kept in Silver, never fetched
    skip = [line for line in day.log if "outside the universe" in line]
    assert skip and skip[0].startswith("earnings-calendar: skipped") and "AAPL" in skip[0], day.log
    assert day.silver("SELECT count(*) FROM silver.fmp_earnings_calendar WHERE symbol = 'AAPL'")[0][0] >= 1
    assert "AAPL" not in day.asked("income-statement")


class LateSplit:
    """The sample source, plus a 2:1 split of AAPL on `on` that the splits calendar lists from that day but the
    per-ticker /splits endpoint shows only once `shown` is set (the calendar ahead of the endpoint)."""

    def __init__(self, data: DayData, on: dt.date) -> None:
        self.data, self.on, self.shown = data, on, False

    def __call__(self, path: str, params: Mapping[str, str]) -> tuple[int, bytes, dict[str, str]]:
        code, body, headers = self.data(path, params)
        row = {"symbol": "AAPL", "date": self.on.isoformat(), "numerator": 2, "denominator": 1}
        within = params.get("from", "") <= row["date"] <= params.get("to", "9999")
        add = (path == "splits-calendar" and within) or (
            path == "splits" and params.get("symbol") == "AAPL" and within and self.shown
        )
        if code == 200 and add:
            body = json.dumps([row, *json.loads(body)]).encode()
        return code, body, headers


def test_a_split_the_per_ticker_endpoint_does_not_show_yet_is_asked_again_and_nothing_stored_is_lost(
    lake: Lake,
) -> None:
    universe = ["AAPL", "KO"]
    clock = SweepClock(SWEEP, sweep_order(universe))
    first, d1, d2, d3 = quiet_days(clock, ["AAPL"], dt.date(2025, 11, 3), 4)
    data = DayData(first)
    late = LateSplit(data, d1)
    with serve(late) as server:
        day = Day(lake, server, data, universe)
        day.run(first)
        before = day.silver("SELECT date FROM silver.fmp_splits WHERE ticker = 'AAPL' ORDER BY date")
        assert dt.date(2020, 8, 31) in [r[0] for r in before]

        day.run(d1)  # the calendar lists the split; /splits does not show it yet
        assert day.asked("splits") == ["AAPL"]
        assert not day.silver(f"SELECT 1 FROM silver.fmp_splits WHERE ticker = 'AAPL' AND date = DATE '{d1}'")

        late.shown = True
        day.run(d2)  # asked again, not marked done by yesterday's fetch
        assert day.asked("splits") == ["AAPL"]
        why = [line for line in day.log if line.startswith("refresh splits")]
        assert why and "splits-calendar 1 (AAPL)" in why[0]
        after = day.silver("SELECT date FROM silver.fmp_splits WHERE ticker = 'AAPL' ORDER BY date")
        assert [r[0] for r in after] == sorted([r[0] for r in before] + [d1])  # the new split; nothing lost

        day.run(d3)  # shown and held: no longer asked
        assert day.asked("splits") == []


def test_starter_has_no_calendars_and_falls_back_to_the_cadence_and_says_so(lake: Lake) -> None:
    data = DayData(dt.date(2025, 11, 3))
    with serve(data, plan="starter") as server:
        day = Day(lake, server, data, ["AAPL"])
        day.run(dt.date(2025, 11, 3), plan="starter")
        assert not [r for r in server.requests if r.path.endswith("-calendar")]  # skipped by plan, not refused
        day.run(dt.date(2025, 11, 4), plan="starter")
    assert any(line.startswith("refresh: FMP_PLAN=starter has no corporate calendars") for line in day.log)
    assert day.asked("historical-price-eod/full") == ["AAPL"]  # today's daily cadence, not a rotating cross-check

    # `pipeline plan` and `pipeline status` say so before any request
    env = {"PIPELINE_DATA_DIR": str(lake.root), "PIPELINE_AS_OF": "2025-11-05", "PIPELINE_TICKERS": "AAPL"}
    starter = load_settings({**env, "PIPELINE_SOURCE": "sample", "FMP_PLAN": "starter"})
    for command in (plan_report, status):
        out = io.StringIO()
        assert command(starter, out=out) == 0, out.getvalue()
        text = " ".join(out.getvalue().split())
        assert "refresh: FMP_PLAN=starter has no corporate calendars" in text, text
    out = io.StringIO()
    assert plan_report(starter, plans=["premium"], out=out) == 0
    assert "refresh: by events (dividends-calendar, earnings-calendar, splits-calendar" in " ".join(
        out.getvalue().split()
    )


def test_the_sweep_visits_every_ticker_once_a_period_and_no_weekday_gets_more_than_its_share() -> None:
    tickers = [f"T{i:04d}" for i in range(200)] + ["AAPL", "BRK.B", "MSFT"]
    clock = SweepClock(SWEEP, sweep_order(tickers))
    slots = sweep_slots(SWEEP)
    days = [dt.date(2026, 1, 5) + dt.timedelta(days=i) for i in range(SWEEP)]
    weekdays = [d for d in days if d.weekday() < 5]
    per_day = [sum(clock.on(t, d) for t in tickers) for d in weekdays]
    assert max(per_day) <= math.ceil(len(tickers) / slots)
    visits = {t: [d for d in weekdays if clock.on(t, d)] for t in tickers}
    assert all(len(v) == 1 for v in visits.values())  # each ticker once in SWEEP calendar days
    # stable: the same slots in another process, whatever order the universe comes in
    again = SweepClock(SWEEP, sweep_order(reversed(tickers)))
    assert all(again.slot(t) == clock.slot(t) for t in tickers)
    # a ticker whose last fetch is a whole period old is due whatever its slot (a missed run, a universe change)
    off = next(d for d in weekdays if not clock.on("AAPL", d))
    assert clock.due("AAPL", off, off - dt.timedelta(days=SWEEP))
    assert not clock.due("AAPL", off, off - dt.timedelta(days=SWEEP - 1))


def test_a_split_the_calendar_brings_re_bases_gold_history_with_no_refetch_of_full(lake: Lake) -> None:
    # NVDA split 10:1 on 2024-06-10. After the backfill, the calendar-driven day asks for NVDA's splits and its new
    # bars only: /full is a cross-check (not NVDA's day), yet Gold's split-adjusted history is re-based, because Gold
    # derives it from the as-traded bars and the splits (pipeline/gold/sql/_price_bars.sql).
    universe = ["KO", "NVDA"]
    clock = SweepClock(SWEEP, sweep_order(universe))
    [after] = quiet_days(clock, universe, dt.date(2024, 6, 10), 1)
    data = DayData(dt.date(2024, 6, 5))
    with serve(data) as server:
        day = Day(lake, server, data, universe)
        day.run(dt.date(2024, 6, 5))
        day.run(after)
        assert day.asked("splits") == ["NVDA"]
        assert day.asked("historical-price-eod/full") == []
        assert day.asked("historical-price-eod/non-split-adjusted") == universe
    with lake.warehouse.connect() as conn:
        ensure_gold_inputs(conn, "fact_price_daily")
        build(conn, "fact_price_daily", "gold")
        rows = dict(
            conn.execute("""
                SELECT CAST(date AS VARCHAR), [close, split_adj_close] FROM gold.fact_price_daily
                WHERE ticker = 'NVDA' AND date IN (DATE '2021-01-04', DATE '2024-06-07', DATE '2024-06-10')
            """).fetchall()
        )
    assert rows["2021-01-04"][1] == pytest.approx(rows["2021-01-04"][0] / 40)  # 4:1 in 2021, then 10:1
    assert rows["2024-06-07"][1] == pytest.approx(rows["2024-06-07"][0] / 10)
    assert rows["2024-06-10"][1] == pytest.approx(rows["2024-06-10"][0])


def test_on_a_plan_without_the_as_traded_bars_full_stays_daily(lake: Lake) -> None:
    # /full stands in for the as-traded bars (Gold derives them from it and the splits): a cross-check only where the
    # bars come from their own endpoint
    clock = SweepClock(SWEEP, sweep_order(["KO"]))
    first, second = quiet_days(clock, ["KO"], dt.date(2025, 11, 3), 2)
    data = DayData(first)
    with serve(data) as server:
        server.restrict_paths("historical-price-eod/non-split-adjusted")
        day = Day(lake, server, data, ["KO"])
        day.run(first)
        day.run(second)
        assert day.asked("historical-price-eod/full") == ["KO"]
        assert day.asked("historical-price-eod/dividend-adjusted") == []  # still a rotating cross-check
