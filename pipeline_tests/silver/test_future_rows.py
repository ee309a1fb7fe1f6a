"""Nothing dated in the future is stored (issue 18, item 3): Silver promotion rejects, and counts per file, rows whose
row date lies after the New York date of their fetch, unless the keymap entry allows future dates (an economic
calendar lists upcoming releases)."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.keymap import KeymapError, parse_keymap
from pipeline.silver.replay import replay
from pipeline_tests.config.test_keymap import entry, shipped_doc
from pipeline_tests.silver.test_silver import Lake  # the `lake` fixture is in conftest: on the file and on a DuckLake
from pipeline_tests.support import eod_row as eod

FETCHED = dt.datetime(2024, 11, 1, 21, 0, tzinfo=dt.UTC)  # 17:00 in New York, Friday 2024-11-01
LATE_EVENING = dt.datetime(2024, 11, 2, 3, 0, tzinfo=dt.UTC)  # still 2024-11-01 (23:00) in New York


def test_rows_dated_after_the_fetch_day_are_rejected_and_counted(lake: Lake) -> None:  # noqa: F811
    rows = [eod("AAPL", "2024-10-31", 10), eod("AAPL", "2024-11-01", 11), eod("AAPL", "2024-11-04", 12)]
    rows.append(eod("AAPL", "2030-06-28", 13))  # what PIPELINE_AS_OF=2030-06-28 wrote
    first, _ = lake.add("historical-price-eod", rows, FETCHED, ticker="AAPL")
    # the UTC date of this fetch is already 2024-11-02; the New York date is not
    second, _ = lake.add("historical-price-eod", [eod("MSFT", "2024-11-02", 20)], LATE_EVENING, ticker="MSFT")
    result = lake.promote("fmp_price_eod")
    assert (result.rows_read, result.inserted, result.rejected, result.future_dated) == (5, 2, 3, 3)
    assert result.metadata()["future_dated"] == 3
    assert result.coverage_to == dt.date(2024, 11, 1)
    assert lake.rows("SELECT ticker, date FROM silver.fmp_price_eod ORDER BY ALL") == [
        ("AAPL", dt.date(2024, 10, 31)),
        ("AAPL", dt.date(2024, 11, 1)),
    ]
    assert lake.rows("SELECT count(*) FROM silver.fmp_price_eod__history WHERE date > '2024-11-01'") == [(0,)]
    for env, rejected in ((first, 2), (second, 1)):
        led = lake.ledger(env.file_id)
        assert (led["silver_status"], led["silver_rejected"], led["silver_future_rows"]) == (
            "promoted",
            rejected,
            rejected,
        )
    assert lake.ledger(first.file_id)["silver_coverage_to"] == dt.date(2024, 11, 1)


def test_an_entry_that_allows_future_dates_keeps_them(lake: Lake) -> None:  # noqa: F811
    upcoming = {"date": "2024-11-20 13:30:00", "country": "US", "event": "CPI", "currency": "USD", "impact": "High"}
    past = {**upcoming, "date": "2024-10-10 12:30:00", "actual": 2.4}
    env, _ = lake.add("economic-calendar", [past, upcoming], FETCHED)
    result = lake.promote("fmp_economic_calendar")
    assert (result.inserted, result.rejected, result.future_dated) == (2, 0, 0)
    assert lake.ledger(env.file_id)["silver_future_rows"] == 0


def test_allow_future_dates_is_validated() -> None:
    doc = shipped_doc()
    assert parse_keymap(doc, "k.yaml").tables()["fmp_economic_calendar"].allow_future_dates
    assert not parse_keymap(doc, "k.yaml").tables()["fmp_price_eod"].allow_future_dates
    entry(doc, "historical-price-eod")["silver"]["allow_future_dates"] = "yes"
    with pytest.raises(KeymapError, match=r"field 'silver.allow_future_dates': must be true or false"):
        parse_keymap(doc, "k.yaml")
    doc = shipped_doc()
    entry(doc, "stock-list")["silver"]["allow_future_dates"] = True
    with pytest.raises(KeymapError, match=r"field 'silver.allow_future_dates': .*needs a row_date"):
        parse_keymap(doc, "k.yaml")


def test_replay_removes_future_rows_stored_before_the_rule(lake: Lake) -> None:  # noqa: F811
    """Rows a table took before the rule (a PIPELINE_AS_OF ahead of time) go with `pipeline replay`."""
    env, _ = lake.add(
        "historical-price-eod", [eod("AAPL", "2024-11-01", 11), eod("AAPL", "2030-06-28", 13)], FETCHED, ticker="AAPL"
    )
    lake.promote("fmp_price_eod")
    with lake.warehouse.transaction() as conn:  # as the unfixed promotion left it
        conn.execute(
            """INSERT INTO silver.fmp_price_eod (ticker, date, close, bronze_file_id, run_id, fetched_at, promoted_at)
               VALUES ('AAPL', '2030-06-28', 13, $file, 'old', $at, $at)""",
            {"file": env.file_id, "at": FETCHED.replace(tzinfo=None)},
        )
    (result,) = replay(lake.warehouse, lake.keymap, lake.root, "replay-run", tables=["fmp_price_eod"])
    assert (result.inserted, result.future_dated) == (1, 1)
    assert lake.rows("SELECT max(date) FROM silver.fmp_price_eod") == [(dt.date(2024, 11, 1),)]
