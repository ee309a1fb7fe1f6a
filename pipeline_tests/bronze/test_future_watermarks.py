"""Time moves only forward (issue 18, item 3): Bronze files dated ahead of time never hold planning back.

A run with `PIPELINE_AS_OF=2030-06-28` (accepted before the fix) left files planned for 2030; every later run at the
real date then said "last good fetch for 2030-06-28 is -1299 day(s) old" and fetched nothing. A response with rows
dated after its planning day (FMP serving a date ahead) moved the window start past today ("nothing new"). The
planner now ignores both, and `pipeline status` names such files.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

from pipeline.bronze.envelope import file_record
from pipeline.bronze.fetch import dry_run
from pipeline.cli.status import status
from pipeline.ops.file_ingestions import register_files
from pipeline.settings import load_settings
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.support import entry, envelope

TODAY = dt.date(2025, 6, 27)
EOD = entry("historical-price-eod")
CALENDAR = entry("economic-calendar")


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def at(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T22:00:00+00:00")


def first_window(identity) -> dt.date:
    return (EOD if identity.ticker else CALENDAR).recipe.history_start


def ledger(data_dir: Path) -> Warehouse:
    """A warehouse whose ledger holds good files, files planned for 2030, and one that served rows ahead."""
    wh = Warehouse(data_dir / "warehouse.duckdb")
    aapl, msft = EOD.identity.with_ticker("AAPL"), EOD.identity.with_ticker("MSFT")

    def file(identity, first: str, last: str, as_of: str, fetched: str, start: dt.date | None = None):
        window = (start or first_window(identity), d(as_of))
        return envelope(identity, coverage=(d(first), d(last)), window=window, as_of=d(as_of), fetched_at=at(fetched))

    files = [
        (file(aapl, "2019-01-02", "2025-06-20", "2025-06-20", "2025-06-20"), EOD),
        # PIPELINE_AS_OF=2030-06-28, run on 2025-06-23
        (file(aapl, "2025-06-13", "2030-06-28", "2030-06-28", "2025-06-23", start=d("2025-06-13")), EOD),
        # planned for 2025-06-24, but the answer held rows to 2025-07-31
        (file(msft, "2019-01-02", "2025-07-31", "2025-06-24", "2025-06-24"), EOD),
        # an economic calendar lists coming releases by design: never reported, planned from its planning day
        (file(CALENDAR.identity, "2021-01-04", "2025-08-15", "2025-06-24", "2025-06-24"), CALENDAR),
    ]
    with wh.transaction() as conn:
        register_files(conn, [file_record(env, f"{env.file_id}.json", e.silver.table) for env, e in files])
    return wh


def test_the_planner_ignores_what_lies_ahead_of_it(tmp_path: Path) -> None:
    wh = ledger(tmp_path)
    with wh.reader() as conn:
        decisions = dry_run(entries=[EOD, CALENDAR], tickers=["AAPL", "MSFT"], conn=conn, today=TODAY, fmp_plan=None)
    by_ticker = {x.identity.ticker: x for x in decisions}
    aapl, msft, calendar = by_ticker["AAPL"], by_ticker["MSFT"], by_ticker[""]
    assert aapl.due, aapl.reason  # was: "not due: last good fetch for 2030-06-28 is -1829 day(s) old"
    assert "incremental from 2025-06-13 (coverage to 2025-06-20 minus 7 overlap day(s))" in aapl.reason
    assert [(r.window_from, r.window_to) for r in aapl.requests] == [(d("2025-06-13"), TODAY)]
    assert msft.due, msft.reason  # was: "nothing new: coverage already reaches 2025-06-27"
    assert [(r.window_from, r.window_to) for r in msft.requests] == [(d("2025-06-17"), TODAY)]
    assert calendar.due and [(r.window_from, r.window_to) for r in calendar.requests] == [(d("2025-06-17"), TODAY)]


def test_status_names_the_future_dated_files(tmp_path: Path) -> None:
    ledger(tmp_path)
    settings = load_settings(
        {"PIPELINE_DATA_DIR": str(tmp_path), "PIPELINE_AS_OF": TODAY.isoformat(), "PIPELINE_TICKERS": "AAPL,MSFT"}
    )
    out = io.StringIO()
    assert status(settings, show_plan=False, out=out) == 0
    text = out.getvalue()
    assert (
        "Future-dated Bronze files: 2 file(s) planned for a day after 2025-06-27 or holding rows after their "
        "planning day; planning ignores what lies ahead, and Silver rejects rows dated after their fetch day"
    ) in " ".join(text.split())
    assert "prices/historical-price-eod AAPL: 1 file(s), planned for 2030-06-28, rows to 2030-06-28" in text
    assert "prices/historical-price-eod MSFT: 1 file(s), planned for 2025-06-24, rows to 2025-07-31" in text
    assert "economic-calendar" not in text
