"""The ops ledger on a DuckDB file: idempotent registration, identities with missing parts, watermarks that
errors never move, the promotable-file queue, Gold input watermarks, and run records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pipeline.bronze.envelope import (
    BronzeEnvelope,
    file_record,
)
from pipeline.keymap.model import DatasetIdentity, DatasetWatermark
from pipeline.ops import file_ingestions
from pipeline.ops.runs import fail_abandoned, get_run, record_run, run_overviews
from pipeline.warehouse import Warehouse
from pipeline_tests import support

EOD = DatasetIdentity("prices", "fmp", "historical-price-eod")
AAPL = EOD.with_ticker("AAPL")
MSFT = EOD.with_ticker("MSFT")
STOCKS = DatasetIdentity("market", "fmp", "stock-list")
GDP = DatasetIdentity("economics", "fmp", "economic-indicators", "GDP")
T0 = dt.datetime(2024, 4, 1, 12, 0, tzinfo=dt.UTC)
D = dt.date


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with Warehouse(tmp_path / "wh.duckdb").connect() as c:
        yield c


APRIL_1 = D(2024, 4, 1)


def envelope(
    identity: DatasetIdentity,
    *,
    run_id: str = "run-1",
    coverage: tuple[dt.date | None, dt.date | None] = (None, None),
    error_class: str | None = None,
    can_promote: bool | None = None,
    fetched_at: dt.datetime = T0,
    rows: int = 3,
    as_of: dt.date | None = APRIL_1,
    window: tuple[dt.date | None, dt.date | None] | None = None,
) -> BronzeEnvelope:
    return support.envelope(
        identity,
        run_id=run_id,
        coverage=coverage,
        window=window,
        as_of=as_of,
        fetched_at=fetched_at,
        error_class=error_class,
        can_promote=can_promote,
        rows=rows if error_class is None else 0,
    )


def register(
    conn: duckdb.DuckDBPyConnection, env: BronzeEnvelope, table: str | None = "fmp_price_eod"
) -> BronzeEnvelope:
    file_ingestions.register_files(conn, [file_record(env, f"bronze/{env.file_id}.json", table)])
    return env


def ingestion_id(conn: duckdb.DuckDBPyConnection, env: BronzeEnvelope) -> int:
    # fetchall, not fetchone: DuckDB 2 refuses conn.register() (used by register_files) while a result is half-read
    return conn.execute("SELECT ingestion_id FROM ops.file_ingestions WHERE file_id = ?", [env.file_id]).fetchall()[0][
        0
    ]


def mark(
    conn: duckdb.DuckDBPyConnection,
    env: BronzeEnvelope,
    status: str,
    *,
    run_id: str = "promo-1",
    coverage: tuple[dt.date | None, dt.date | None] = (None, None),
) -> None:
    conn.execute(
        """UPDATE ops.file_ingestions SET silver_status = ?, silver_run_id = ?, silver_coverage_from = ?,
                    silver_coverage_to = ? WHERE file_id = ?""",
        [status, run_id, coverage[0], coverage[1], env.file_id],
    )


# ---- registration ---------------------------------------------------------------------------------------------


def test_register_same_file_twice_gives_one_row_and_keeps_ingestion_id(conn: duckdb.DuckDBPyConnection) -> None:
    env = register(conn, envelope(AAPL, coverage=(D(2024, 1, 2), D(2024, 3, 28))))
    first_id = ingestion_id(conn, env)
    register(conn, envelope(MSFT))  # another file in between
    record = dataclasses.replace(file_record(env, f"bronze/{env.file_id}.json", "fmp_price_eod"), bronze_rows=42)
    assert file_ingestions.register_files(conn, [record]) == 1
    rows = conn.execute(
        "SELECT ingestion_id, bronze_rows, coverage_from, coverage_to, fetched_at FROM ops.file_ingestions "
        "WHERE file_id = ?",
        [env.file_id],
    ).fetchall()
    assert rows == [(first_id, 42, D(2024, 1, 2), D(2024, 3, 28), T0.replace(tzinfo=None))]
    assert conn.execute("SELECT count(*) FROM ops.file_ingestions").fetchone()[0] == 2
    assert file_ingestions.registered_file_ids(conn, [env.file_id, "nope"]) == {env.file_id}
    assert file_ingestions.registered_file_ids(conn, []) == set()
    assert file_ingestions.register_files(conn, []) == 0


def test_register_batch_with_a_repeated_file_keeps_one_row(conn: duckdb.DuckDBPyConnection) -> None:
    env = envelope(AAPL)
    record = file_record(env, "bronze/x.json", "fmp_price_eod")
    file_ingestions.register_files(conn, [record, dataclasses.replace(record, bronze_rows=7)])
    assert conn.execute("SELECT count(*) FROM ops.file_ingestions").fetchall() == [(1,)]


def test_file_record_is_key_free_and_utc(conn: duckdb.DuckDBPyConnection) -> None:
    local = dt.datetime(2024, 4, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    env = register(conn, envelope(AAPL, fetched_at=local, error_class="http_500"))
    row = conn.execute(
        "SELECT fetched_at, error_class, can_promote, status_code, as_of FROM ops.file_ingestions"
    ).fetchone()
    assert row == (dt.datetime(2024, 4, 1, 12, 0), "http_500", False, 500, D(2024, 4, 1))
    assert "apikey" not in str(file_record(env, "p", None)).lower()


def test_missing_discriminator_and_ticker_stored_as_empty_and_matched(conn: duckdb.DuckDBPyConnection) -> None:
    register(
        conn,
        envelope(
            DatasetIdentity("market", "fmp", "stock-list", None, None),  # type: ignore[arg-type]
            coverage=(None, D(2024, 4, 1)),
        ),
        "fmp_stock_list",
    )
    register(conn, envelope(GDP, coverage=(D(2024, 1, 1), D(2024, 3, 31))), "fmp_economic_indicator")
    assert conn.execute(
        "SELECT discriminator, ticker FROM ops.file_ingestions WHERE dataset = 'stock-list'"
    ).fetchall() == [("", "")]
    assert conn.execute("SELECT ticker FROM ops.file_ingestions WHERE dataset = 'economic-indicators'").fetchall() == [
        ("",)
    ]
    cov = file_ingestions.latest_bronze_coverage(conn, STOCKS)
    assert list(cov) == [STOCKS] and cov[STOCKS].coverage_to == D(2024, 4, 1)
    assert list(file_ingestions.latest_bronze_coverage(conn, GDP)) == [GDP]
    # The other spelling of "missing" finds the same row.
    assert STOCKS in file_ingestions.latest_bronze_coverage(
        conn, DatasetIdentity("market", "fmp", "stock-list", None, None)
    )  # type: ignore[arg-type]


# ---- Bronze coverage -----------------------------------------------------------------------------------------


def test_latest_bronze_coverage_ignores_errors_and_unpromotable_files(conn: duckdb.DuckDBPyConnection) -> None:
    register(conn, envelope(AAPL, coverage=(D(2024, 1, 2), D(2024, 1, 31)), as_of=D(2024, 2, 1)))
    register(
        conn,
        envelope(
            AAPL,
            coverage=(D(2024, 2, 1), D(2024, 2, 29)),
            as_of=D(2024, 3, 1),
            window=(D(2024, 2, 1), D(2024, 3, 1)),
            fetched_at=T0 + dt.timedelta(days=1),
        ),
    )
    # An error never moves the watermark, even one that (wrongly) carries a coverage; nor does an unpromotable file.
    register(
        conn,
        envelope(
            AAPL,
            coverage=(D(2024, 3, 1), D(2024, 3, 31)),
            error_class="http_500",
            fetched_at=T0 + dt.timedelta(days=5),
            as_of=D(2024, 4, 5),
        ),
    )
    register(
        conn,
        envelope(
            AAPL,
            coverage=(D(2024, 3, 1), D(2024, 4, 30)),
            can_promote=False,
            fetched_at=T0 + dt.timedelta(days=6),
            as_of=D(2024, 4, 6),
        ),
    )
    register(conn, envelope(MSFT, coverage=(D(2023, 6, 1), D(2023, 12, 29))))
    register(conn, envelope(EOD.with_ticker("NVDA"), error_class="http_429"))  # errors only: no coverage at all

    cov = file_ingestions.latest_bronze_coverage(conn, AAPL)
    assert list(cov) == [AAPL]
    c = cov[AAPL]
    assert (c.coverage_from, c.coverage_to, c.files) == (D(2024, 1, 2), D(2024, 2, 29), 2)
    assert c.last_fetched_at == (T0 + dt.timedelta(days=1)).replace(tzinfo=None)
    assert c.last_as_of == D(2024, 3, 1)

    every = file_ingestions.latest_bronze_coverage(conn, EOD, ticker_wildcard=True)
    assert set(every) == {AAPL, MSFT}
    assert every[MSFT].coverage_to == D(2023, 12, 29)
    assert set(file_ingestions.latest_bronze_coverage(conn)) == {AAPL, MSFT}
    assert file_ingestions.latest_bronze_coverage(conn, EOD) == {}  # the ticker-less identity has no files of its own


# ---- promotion queue -----------------------------------------------------------------------------------------


def test_promotable_files_filters(conn: duckdb.DuckDBPyConnection) -> None:
    a1 = register(conn, envelope(AAPL))
    m1 = register(conn, envelope(MSFT))
    g1 = register(conn, envelope(GDP), "fmp_economic_indicator")
    done = register(conn, envelope(AAPL))
    failed = register(conn, envelope(MSFT))
    register(conn, envelope(AAPL, error_class="http_500"))  # cannot promote
    register(conn, envelope(AAPL), None)  # no Silver table
    a2 = register(conn, envelope(AAPL))
    mark(conn, done, "promoted")
    mark(conn, failed, "failed")

    def ids(files: list[file_ingestions.PromotableFile]) -> list[str]:
        return [f.file_id for f in files]

    everything = file_ingestions.promotable_files(conn)
    assert ids(everything) == [a1.file_id, m1.file_id, g1.file_id, failed.file_id, a2.file_id]
    assert [f.ingestion_id for f in everything] == sorted(f.ingestion_id for f in everything)
    assert ids(file_ingestions.promotable_files(conn, tables=["fmp_price_eod"])) == [
        a1.file_id,
        m1.file_id,
        failed.file_id,
        a2.file_id,
    ]
    assert ids(file_ingestions.promotable_files(conn, tables=["fmp_economic_indicator"])) == [g1.file_id]
    assert ids(file_ingestions.promotable_files(conn, tables=[])) == []
    assert ids(file_ingestions.promotable_files(conn, tables=["fmp_price_eod"], tickers=["MSFT"])) == [
        m1.file_id,
        failed.file_id,
    ]
    assert ids(file_ingestions.promotable_files(conn, tickers=[""])) == [g1.file_id]
    after = ingestion_id(conn, g1)
    assert ids(file_ingestions.promotable_files(conn, after_ingestion_id=after)) == [failed.file_id, a2.file_id]
    f = everything[0]
    assert (f.run_id, f.silver_table, f.ticker, f.bronze_path) == (
        "run-1",
        "fmp_price_eod",
        "AAPL",
        f"bronze/{a1.file_id}.json",
    )
    assert f.fetched_at == T0.replace(tzinfo=None)


# ---- watermarks ----------------------------------------------------------------------------------------------


def test_input_watermarks_strings(conn: duckdb.DuckDBPyConnection) -> None:
    a1 = register(conn, envelope(AAPL, coverage=(D(2024, 1, 2), D(2024, 1, 31))))
    a2 = register(conn, envelope(AAPL, coverage=(D(2024, 2, 1), D(2024, 2, 29))))
    m1 = register(conn, envelope(MSFT, coverage=(D(2024, 1, 2), D(2024, 3, 28))))
    pending = register(conn, envelope(MSFT, coverage=(D(2024, 4, 1), D(2024, 4, 30))))  # not promoted: ignored
    snap = register(conn, envelope(STOCKS, fetched_at=dt.datetime(2024, 5, 6, 23, 0, tzinfo=dt.UTC)), "fmp_stock_list")
    g = register(conn, envelope(GDP, coverage=(D(2023, 1, 1), D(2023, 12, 31))), "fmp_economic_indicator")
    for env in (a1, a2, snap, g):
        mark(conn, env, "promoted")
    # Silver coverage (rows that actually landed) wins over the Bronze coverage.
    mark(conn, m1, "promoted", coverage=(D(2024, 1, 3), D(2024, 3, 27)))
    mark(conn, pending, "failed")

    marks = file_ingestions.input_watermarks(conn, ["fmp_price_eod", "fmp_stock_list"])
    assert marks == [
        "market|fmp|stock-list||@coverage_from=2024-05-06;coverage_to=2024-05-06",
        "prices|fmp|historical-price-eod||AAPL@coverage_from=2024-01-02;coverage_to=2024-02-29",
        "prices|fmp|historical-price-eod||MSFT@coverage_from=2024-01-03;coverage_to=2024-03-27",
    ]
    assert all(str(DatasetWatermark.parse(m)) == m for m in marks)
    assert file_ingestions.input_watermarks(conn, ["fmp_economic_indicator"]) == [
        "economics|fmp|economic-indicators|GDP|@coverage_from=2023-01-01;coverage_to=2023-12-31"
    ]
    assert file_ingestions.input_watermarks(conn, ["no_such_table"]) == []

    # A new snapshot moves the snapshot watermark.
    snap2 = register(conn, envelope(STOCKS, fetched_at=dt.datetime(2024, 5, 13, 1, 0, tzinfo=dt.UTC)), "fmp_stock_list")
    mark(conn, snap2, "promoted")
    assert file_ingestions.input_watermarks(conn, ["fmp_stock_list"]) == [
        "market|fmp|stock-list||@coverage_from=2024-05-06;coverage_to=2024-05-13"
    ]

    silver = file_ingestions.latest_silver_coverage(conn, ["fmp_price_eod"])
    assert set(silver) == {AAPL, MSFT}
    assert (silver[MSFT].coverage_from, silver[MSFT].coverage_to, silver[AAPL].files) == (
        D(2024, 1, 3),
        D(2024, 3, 27),
        2,
    )
    assert set(file_ingestions.latest_silver_coverage(conn)) == {AAPL, MSFT, STOCKS, GDP}


# ---- runs ----------------------------------------------------------------------------------------------------


def test_record_run_accumulates_across_steps(conn: duckdb.DuckDBPyConnection) -> None:
    record_run(conn, "r1", job="daily", source_mode="sample", status="running", requests=5, files=4, rows=100)
    record_run(
        conn,
        "r1",
        job=None,
        source_mode=None,
        status="partial",
        requests=3,
        skipped=2,
        files=2,
        rows=10,
        errors=1,
        message="1 request failed",
    )
    record_run(conn, "r1", job=None, source_mode=None, status="success", requests=1, finished=True)
    run = get_run(conn, "r1")
    assert run is not None
    assert (run["job"], run["source_mode"], run["status"]) == ("daily", "sample", "partial")  # partial is not undone
    assert (run["requests"], run["skipped"], run["files"], run["rows"], run["errors"]) == (9, 2, 6, 110, 1)
    assert run["message"] == "1 request failed"
    assert run["finished_at"] is not None and run["started_at"] <= run["finished_at"]

    record_run(conn, "r2", job="daily", source_mode="fmp", status="failed", errors=1)
    record_run(conn, "r2", job=None, source_mode=None, status="success")
    r2 = get_run(conn, "r2")
    assert r2 is not None and r2["status"] == "failed" and r2["finished_at"] is None  # failed sticks
    assert get_run(conn, "absent") is None


def test_abandoned_runs_are_failed_and_finished_ones_kept(conn: duckdb.DuckDBPyConnection) -> None:
    record_run(conn, "dead", job="daily", source_mode="fmp", status="running", message="3 requests refused")
    record_run(conn, "done", job="daily", source_mode="fmp", status="success", finished=True)
    fail_abandoned(conn, ["dead", "done", "absent"])
    dead, done = get_run(conn, "dead"), get_run(conn, "done")
    assert dead is not None and dead["status"] == "failed" and dead["finished_at"] is not None
    assert dead["message"] == "3 requests refused; abandoned: the process died before the run finished"
    assert done is not None and done["status"] == "success" and done["message"] is None
    assert get_run(conn, "absent") is None


def test_run_overviews_newest_first_with_file_counts(conn: duckdb.DuckDBPyConnection) -> None:
    for run_id in ("old", "mid", "new"):
        record_run(conn, run_id, job="daily", source_mode="sample", status="success")
        time.sleep(0.002)  # distinct started_at
    for _ in range(3):
        register(conn, envelope(AAPL, run_id="old", rows=10))
    err = register(conn, envelope(MSFT, run_id="old", error_class="http_500"))
    promoted = register(conn, envelope(MSFT, run_id="new", rows=5))
    mark(conn, promoted, "promoted", run_id="new")
    assert err.error_class

    overviews = run_overviews(conn)
    assert [o["run_id"] for o in overviews] == ["new", "mid", "old"]
    by_id = {o["run_id"]: o for o in overviews}
    assert (
        by_id["old"]["files"],
        by_id["old"]["bronze_rows"],
        by_id["old"]["file_errors"],
        by_id["old"]["promoted"],
    ) == (4, 30, 1, 0)
    assert (by_id["mid"]["files"], by_id["mid"]["bronze_rows"], by_id["mid"]["file_errors"]) == (0, 0, 0)
    assert (by_id["new"]["files"], by_id["new"]["promoted"]) == (1, 1)
    assert [o["run_id"] for o in run_overviews(conn, limit=2)] == ["new", "mid"]


def test_file_ingestions_for_run(conn: duckdb.DuckDBPyConnection) -> None:
    fetched = register(conn, envelope(AAPL, run_id="fetch-run", coverage=(D(2024, 1, 2), D(2024, 1, 31))))
    other = register(conn, envelope(MSFT, run_id="other-run"))
    mark(conn, other, "promoted", run_id="promo-run")
    rows = file_ingestions.file_ingestions_for_run(conn, "fetch-run")
    assert [r["file_id"] for r in rows] == [fetched.file_id]
    assert rows[0]["ticker"] == "AAPL" and rows[0]["coverage_to"] == D(2024, 1, 31) and rows[0]["silver_status"] is None
    # A promotion run sees the files it promoted, although another run fetched them.
    assert [r["file_id"] for r in file_ingestions.file_ingestions_for_run(conn, "promo-run")] == [other.file_id]
    assert file_ingestions.file_ingestions_for_run(conn, "nobody") == []
