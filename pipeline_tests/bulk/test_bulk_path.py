"""The bulk path (issue 19 item 2) through the real client, over loopback HTTP against the fake FMP server serving
the sample source's bulk CSV (fmp_api.md 3.2), into a real Bronze folder and DuckDB ledger, then Silver.

Each bad input (a CSV cut short, a changed header, a 200 JSON "Limit Reach" on a bulk path) becomes an error record
that names the file, fails alone and leaves what was stored before intact.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.report import BronzeRunReport
from pipeline.bronze.store import BronzeStore
from pipeline.fmp.client import FmpClient
from pipeline.fmp.ratelimit import RateLimiter
from pipeline.fmp.sample import SAMPLE_TICKERS, SampleSource
from pipeline.keymap import KeymapEntry
from pipeline.keymap.model import Keymap
from pipeline.ops import file_ingestions
from pipeline.silver.promote import promote_files
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data, status, truncated
from pipeline_tests.support import KEY, KEYMAP

DAY = dt.date(2025, 11, 10)  # a Monday session
NEXT = dt.date(2025, 11, 11)
# the sample's companies still trading on DAY (TWTR, delisted in 2022, is in no bulk day: fmp_api.md 3.4)
TICKERS = [t for t in SAMPLE_TICKERS if SampleSource(DAY, SAMPLE_TICKERS).trading(t)]
AS_TRADED = next(e for e in KEYMAP if e.discriminator == "non-split-adjusted")
EOD_BULK = next(e for e in KEYMAP if e.dataset == "eod-bulk")
# the daily as-traded requests replaced by the bulk day (pipeline.keymap.bulk `replaces`)
EOD_BULK_REPLACING = dataclasses.replace(
    EOD_BULK,
    recipe=dataclasses.replace(
        EOD_BULK.recipe, bulk=dataclasses.replace(EOD_BULK.recipe.bulk, replaces=AS_TRADED.asset_name)
    ),
)
BAR = ("ticker", "date", "open", "high", "low", "close", "volume")


class Lake:
    """A data folder (DuckDB ledger + Bronze) and the Bronze step run against a fake server."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.warehouse = Warehouse(root / "warehouse.duckdb")
        self.store = BronzeStore(root / "bronze")

    def run(
        self, server: FakeFmpServer, entries: list[KeymapEntry], day: dt.date, plan: str | None = "ultimate"
    ) -> BronzeRunReport:
        with FmpClient(
            server.base_url,
            KEY,
            max_retries=1,
            backoff_base_s=0.001,
            backoff_cap_s=0.005,
            timeout_s=10.0,
            limiter=RateLimiter(100_000),
        ) as client:
            return run_bronze(
                entries=entries,
                tickers=TICKERS,
                warehouse=self.warehouse,
                store=self.store,
                client=client,
                run_id=str(uuid.uuid4()),
                today=day,
                fmp_plan=plan,
                source_mode="fmp",
                max_concurrency=2,
            )

    def promote(self, table: str, entries: list[KeymapEntry]) -> None:
        keymap = Keymap(KEYMAP.version, tuple(entries))
        with self.warehouse.transaction() as conn:
            files = file_ingestions.promotable_files(conn, tables=[table])
            if files:
                promote_files(conn, keymap, table, files, self.root / "bronze", "promote-" + table)

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.warehouse.connect() as conn:
            return conn.execute(sql, params or []).fetchall()

    def ledger(self, dataset: str) -> list[dict]:
        with self.warehouse.connect() as conn:
            cur = conn.execute("SELECT * FROM ops.file_ingestions WHERE dataset = ? ORDER BY ingestion_id", [dataset])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path)


@pytest.fixture
def server() -> Iterator[FakeFmpServer]:
    with FakeFmpServer(api_key=KEY, data=sample_data(SampleSource(NEXT))) as fake:
        yield fake


def bulk_files(lake: Lake) -> list[dict]:
    return lake.ledger("eod-bulk")


def test_bulk_day_is_kept_as_served_and_equals_the_per_ticker_bars(lake: Lake, server: FakeFmpServer) -> None:
    report = lake.run(server, [EOD_BULK_REPLACING], DAY)
    assert report.hard_failures == 0
    [row] = bulk_files(lake)
    assert row["can_promote"] and row["error_class"] is None and row["bronze_rows"] == len(TICKERS)
    envelope = lake.store.read(row["bronze_path"])
    assert envelope.content is None and envelope.body_file == f"{row['file_id']}.csv"
    assert envelope.headers["content-type"] == "text/csv; charset=utf-8"
    assert "content-length" not in envelope.headers  # eod-bulk comes chunked (fmp_api.md 2.7)
    body = (lake.root / "bronze" / row["bronze_path"]).with_name(envelope.body_file).read_bytes()
    served = SampleSource(NEXT).respond("eod-bulk", {"date": DAY.isoformat()}).body
    assert body == served  # the bytes exactly as served
    assert hashlib.sha256(body).hexdigest() == envelope.body_sha256 == row["body_sha256"]
    assert row["bytes"] == len(body) and row["coverage_from"] == row["coverage_to"] == DAY

    lake.promote("fmp_eod_bulk", [EOD_BULK_REPLACING])
    # the same day through the per-ticker as-traded requests (a first fetch: its whole history, DAY included)
    lake.run(server, [AS_TRADED], DAY, plan=None)
    lake.promote(AS_TRADED.silver.table, [AS_TRADED])
    cols = ", ".join(BAR)
    bulk = lake.rows(f"SELECT {cols} FROM silver.fmp_eod_bulk ORDER BY ticker")
    per_ticker = lake.rows(f"SELECT {cols} FROM silver.fmp_price_eod_as_traded WHERE date = ? ORDER BY ticker", [DAY])
    assert len(bulk) == len(TICKERS) and bulk == per_ticker
    lineage = lake.rows("SELECT DISTINCT bronze_file_id FROM silver.fmp_eod_bulk")
    assert lineage == [(row["file_id"],)]


def test_a_plan_with_eod_bulk_asks_once_for_the_whole_market_day(lake: Lake, server: FakeFmpServer) -> None:
    entries = [AS_TRADED, EOD_BULK_REPLACING]
    lake.run(server, entries, DAY, plan="premium")  # backfill: per-ticker history to DAY (no bulk on Premium)
    seen = len(server.requests)
    assert {r.path for r in server.requests} == {AS_TRADED.recipe.path}

    premium = Lake(lake.root / "premium")
    premium.run(server, entries, DAY, plan="premium")
    before = len(server.requests)
    premium.run(server, entries, NEXT, plan="premium")
    without_bulk = server.requests[before:]
    assert len(without_bulk) == len(TICKERS)  # one as-traded request per ticker: nothing changes without bulk

    start = len(server.requests)
    report = lake.run(server, entries, NEXT, plan="ultimate")
    with_bulk = server.requests[start:]
    assert seen > 0 and [(r.path, r.params.get("date")) for r in with_bulk] == [("eod-bulk", NEXT.isoformat())]
    assert report.entries[AS_TRADED.asset_name].skipped["bulk"] == len(TICKERS)
    # a run again the same day asks nothing more
    again = len(server.requests)
    lake.run(server, entries, NEXT, plan="ultimate")
    assert len(server.requests) == again

    # the bulk day reaches the as-traded table (per-ticker files derived from it, `bulk_fanout`), equal to what the
    # per-ticker requests gave the Premium warehouse for the same day
    derived = lake.rows(
        "SELECT count(*), sum(attempts), sum(bytes) FROM ops.file_ingestions WHERE discriminator = ? AND as_of = ?",
        [AS_TRADED.discriminator, NEXT],
    )
    assert derived == [(len(TICKERS), 0, 0)]  # no request and no download of their own
    for each in (lake, premium):
        each.promote(AS_TRADED.silver.table, [AS_TRADED])
    sql = f"SELECT {', '.join(BAR)} FROM silver.fmp_price_eod_as_traded WHERE date = ? ORDER BY ticker"
    assert lake.rows(sql, [NEXT]) == premium.rows(sql, [NEXT]) and len(lake.rows(sql, [NEXT])) == len(TICKERS)
    # the next day: again one bulk request, the tickers' histories continue from the derived files
    start = len(server.requests)
    lake.run(server, entries, dt.date(2025, 11, 12), plan="ultimate")
    assert [r.path for r in server.requests[start:]] == ["eod-bulk"]


def test_a_csv_cut_short_fails_alone_and_names_the_file(lake: Lake, server: FakeFmpServer) -> None:
    lake.run(server, [EOD_BULK_REPLACING], DAY)
    lake.promote("fmp_eod_bulk", [EOD_BULK_REPLACING])
    held = lake.rows("SELECT * FROM silver.fmp_eod_bulk ORDER BY ticker")

    server.add_faults("eod-bulk", truncated(declare_full_length=False))  # a 200 whose body stops mid-row
    lake.run(server, [EOD_BULK_REPLACING], NEXT)
    good, bad = bulk_files(lake)
    assert bad["error_class"] == "invalid_body" and not bad["can_promote"]
    assert "cut short" in bad["error_message"] and bad["file_id"] in bad["error_message"]
    assert "eod-bulk" in bad["error_message"] and f"date={NEXT}" in bad["error_message"]
    lake.promote("fmp_eod_bulk", [EOD_BULK_REPLACING])
    assert lake.rows("SELECT * FROM silver.fmp_eod_bulk ORDER BY ticker") == held  # nothing stored is touched
    assert good["silver_status"] == "promoted"
    # the cut body is still kept as served, for whoever looks into it
    envelope = lake.store.read(bad["bronze_path"])
    assert (lake.root / "bronze" / bad["bronze_path"]).with_name(envelope.body_file).stat().st_size == bad["bytes"]
    # and the day is asked for again on the next run
    start = len(server.requests)
    lake.run(server, [EOD_BULK_REPLACING], NEXT)
    assert [r.params.get("date") for r in server.requests[start:]] == [NEXT.isoformat()]


def test_a_changed_header_fails_alone_and_names_the_column(lake: Lake, server: FakeFmpServer) -> None:
    served = SampleSource(NEXT).respond("eod-bulk", {"date": DAY.isoformat()}).body
    renamed = served.replace(b",close,", b",closePrice,", 1)
    server.add_faults("eod-bulk", status(200, renamed, {"Content-Type": "text/csv; charset=utf-8"}))
    lake.run(server, [EOD_BULK_REPLACING], DAY)
    [bad] = bulk_files(lake)
    assert bad["error_class"] == "invalid_body" and not bad["can_promote"]
    assert "changed header: close missing" in bad["error_message"] and bad["file_id"] in bad["error_message"]
    lake.promote("fmp_eod_bulk", [EOD_BULK_REPLACING])
    assert lake.rows("SELECT count(*) FROM ops.file_ingestions WHERE silver_status = 'promoted'") == [(0,)]


def test_a_200_json_limit_body_on_a_bulk_path_is_an_error_record(lake: Lake) -> None:
    source = SampleSource(NEXT)
    with FakeFmpServer(api_key=KEY, data=sample_data(source), bulk_calls_per_minute=1) as server:
        lake.run(server, [EOD_BULK_REPLACING], DAY)  # the bucket's one call
        lake.promote("fmp_eod_bulk", [EOD_BULK_REPLACING])
        held = lake.rows("SELECT * FROM silver.fmp_eod_bulk ORDER BY ticker")
        lake.run(server, [EOD_BULK_REPLACING], NEXT)
        statuses = [r.status for r in server.requests if r.params.get("date") == NEXT.isoformat()]
    assert statuses and set(statuses) == {200}  # throttled with HTTP 200, not 429
    _, bad = bulk_files(lake)
    assert bad["status_code"] == 200 and bad["error_class"] == "rate_limited" and not bad["can_promote"]
    assert "Limit Reach" in bad["error_message"] and bad["bronze_rows"] == 0
    lake.promote("fmp_eod_bulk", [EOD_BULK_REPLACING])
    assert lake.rows("SELECT * FROM silver.fmp_eod_bulk ORDER BY ticker") == held


def test_bulk_paths_outside_the_plan_are_not_asked(lake: Lake, server: FakeFmpServer) -> None:
    for plan in (None, "starter", "premium"):
        report = lake.run(server, [EOD_BULK_REPLACING], DAY, plan=plan)
        assert report.entries[EOD_BULK.asset_name].skipped["plan"] == 1
    assert server.requests == []


def test_a_body_changed_after_it_was_written_is_quarantined_alone(lake: Lake, server: FakeFmpServer) -> None:
    lake.run(server, [EOD_BULK_REPLACING], DAY)
    lake.run(server, [EOD_BULK_REPLACING], NEXT)
    first, second = bulk_files(lake)
    envelope = lake.store.read(second["bronze_path"])
    body = (lake.root / "bronze" / second["bronze_path"]).with_name(envelope.body_file)
    body.chmod(0o644)
    body.write_bytes(body.read_bytes().replace(b"AAPL", b"AAPM", 1))  # same size, same row count
    lake.promote("fmp_eod_bulk", [EOD_BULK_REPLACING])
    first, second = bulk_files(lake)
    assert first["silver_status"] == "promoted"
    assert second["quarantined_at"] is not None and "body_sha256" in second["quarantine_reason"]
    assert lake.rows("SELECT DISTINCT date FROM silver.fmp_eod_bulk") == [(DAY,)]
    assert body.exists()  # kept on disk, never promoted


def test_profile_and_statement_bulks_equal_the_per_ticker_rows(lake: Lake, server: FakeFmpServer) -> None:
    bulks = [e for e in KEYMAP if e.dataset in ("profile-bulk", "income-statement-bulk")]
    per_ticker = [e for e in KEYMAP if e.dataset in ("profile", "income-statement")]
    assert lake.run(server, bulks, NEXT).hard_failures == 0
    assert sorted(r.params.get("part", "") for r in server.requests if r.path == "profile-bulk") == list("0123")
    lake.run(server, per_ticker, NEXT, plan=None)
    for entry in bulks + per_ticker:
        lake.promote(entry.silver.table, [e for e in bulks + per_ticker if e.silver.table == entry.silver.table])
    profile_cols = ", ".join(c.name for c in next(e for e in per_ticker if e.dataset == "profile").silver.columns)
    sql = f"SELECT {profile_cols} FROM silver.{{}} ORDER BY ticker"
    # profile-bulk also lists companies no longer trading (its isActivelyTrading field): compare the trading ones
    bulk_profiles = [row for row in lake.rows(sql.format("fmp_profile_bulk")) if row[0] in TICKERS]
    assert len(bulk_profiles) == len(TICKERS) and bulk_profiles == lake.rows(sql.format("fmp_company_profile"))
    statement = next(e for e in per_ticker if e.dataset == "income-statement")
    cols = ", ".join(f"s.{c.name}" for c in statement.silver.columns)
    both = lake.rows(
        f"""SELECT {cols} FROM silver.fmp_income_statement s
            JOIN silver.fmp_income_statement_bulk b USING (ticker, date, period)
            EXCEPT SELECT {cols.replace("s.", "b.")} FROM silver.fmp_income_statement_bulk b"""
    )
    shared = lake.rows(
        "SELECT count(*) FROM silver.fmp_income_statement JOIN silver.fmp_income_statement_bulk "
        "USING (ticker, date, period)"
    )
    assert shared[0][0] >= len(TICKERS) * 4 and both == []  # every shared statement has the same values
