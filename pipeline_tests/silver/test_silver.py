"""Silver promotion, replay and quality checks against real DuckDB files and real Bronze envelopes.

Every test builds envelopes with BronzeEnvelope, writes them with BronzeStore (the same atomic writer the
fetch uses), registers them in ops.file_ingestions and promotes what `promotable_files` returns, so the
tests exercise the same path as the sensor-driven runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.bronze.envelope import (
    BronzeEnvelope,
    RequestInfo,
    file_record,
    new_file_id,
)
from pipeline.bronze.store import BronzeStore
from pipeline.keymap import load_keymap
from pipeline.keymap.model import (
    Column,
    DatasetIdentity,
    Keymap,
    KeymapEntry,
    SilverSpec,
)
from pipeline.ops import file_ingestions
from pipeline.ops.file_ingestions import register_files
from pipeline.settings import PROJECT_ROOT
from pipeline.silver import promote as promote_mod
from pipeline.silver import quality
from pipeline.silver.promote import PromotionResult, promote_files
from pipeline.silver.replay import replay
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.support import eod_row as eod  # short: many rows per line below

KEYMAP = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")
T0 = dt.datetime(2024, 11, 8, 21, 0, tzinfo=dt.UTC)  # after every row date the tests use: nothing is future-dated


def day(n: int) -> dt.datetime:
    """Fetch time n days after T0."""
    return T0 + dt.timedelta(days=n)


class Lake:
    """A Bronze folder plus a warehouse file in tmp_path, with helpers to add files and promote them."""

    def __init__(self, tmp_path: Path, keymap: Keymap = KEYMAP, warehouse: Warehouse | None = None) -> None:
        self.root = tmp_path / "bronze"
        self.store = BronzeStore(self.root)
        self.warehouse = warehouse or Warehouse(tmp_path / "warehouse.duckdb")
        self.keymap = keymap

    def entry(self, dataset: str, discriminator: str = "") -> KeymapEntry:
        for e in self.keymap:
            if e.dataset == dataset and e.discriminator == discriminator:
                return e
        raise KeyError(dataset)

    def add(
        self,
        dataset: str,
        content: Any,
        fetched_at: dt.datetime,
        *,
        ticker: str = "",
        discriminator: str = "",
        can_promote: bool = True,
        file_id: str | None = None,
        content_format: str = "json",
        register: bool = True,
    ) -> tuple[BronzeEnvelope, str]:
        entry = self.entry(dataset, discriminator)
        identity = DatasetIdentity(entry.domain, entry.source, entry.dataset, discriminator, ticker)
        body = json.dumps(content).encode()
        rows = len(content) if isinstance(content, list) else 1
        env = BronzeEnvelope(
            file_id=file_id or new_file_id(),
            run_id="fetch-run",
            identity=identity,
            request=RequestInfo(entry.recipe.path, f"https://example.test/{entry.recipe.path}", {}),
            fetched_at=fetched_at,
            elapsed_ms=1.0,
            attempts=1,
            status_code=200,
            headers={},
            body_sha256=hashlib.sha256(body).hexdigest(),
            bytes=len(body),
            content_format=content_format,
            content=content,
            row_count=rows,
            coverage_from=None,
            coverage_to=None,
            error_class=None if can_promote else "empty",
            error_message=None,
            can_promote=can_promote,
        )
        stored = self.store.write(env, journal="tests")
        if register:
            with self.warehouse.transaction() as conn:
                register_files(conn, [file_record(env, stored.relative, entry.silver.table, stored.md5)])
        return env, stored.relative

    def promote(self, table: str, run_id: str = "promote-run") -> PromotionResult:
        with self.warehouse.transaction() as conn:
            files = file_ingestions.promotable_files(conn, tables=[table])
            return promote_files(conn, self.keymap, table, files, self.root, run_id)

    def rows(self, sql: str, params: Any = None) -> list[tuple]:
        with self.warehouse.connect() as conn:
            return conn.execute(sql, params or []).fetchall()

    def ledger(self, file_id: str) -> dict:
        with self.warehouse.connect() as conn:
            cur = conn.execute("SELECT * FROM ops.file_ingestions WHERE file_id = ?", [file_id])
            return dict(zip([d[0] for d in cur.description], cur.fetchone()))


# ---- casting ----------------------------------------------------------------------------------------------

TYPES = ("varchar", "integer", "bigint", "double", "boolean", "date", "timestamp", "json")


def types_keymap() -> Keymap:
    """A one-table keymap with a column of every type, fed by the API fields `v_<type>`."""
    base = KEYMAP.entries_for_table("fmp_price_eod")[0]
    columns = (
        Column("ticker", "varchar", "symbol", False),
        Column("case_id", "integer", "id", False),
        *(Column(f"v_{t}", t, f"v_{t}") for t in TYPES),
    )
    spec = SilverSpec(table="test_types", key=("ticker", "case_id"), columns=columns)
    return Keymap(1, (dataclasses.replace(base, silver=spec),), path="test")


# input -> expected value per type (NULL for anything that cannot be cast; booleans never default to false)
TS = dt.datetime(2024, 11, 1, 6, 1, 36)
D = dt.date(2024, 11, 1)
COERCIONS: list[tuple[Any, dict[str, Any]]] = [
    ("164000", {"varchar": "164000", "integer": 164000, "bigint": 164000, "double": 164000.0}),
    (164000, {"varchar": "164000", "integer": 164000, "bigint": 164000, "double": 164000.0, "json": "164000"}),
    ("12.5", {"varchar": "12.5", "double": 12.5}),  # fractional: not an integer
    (12.5, {"varchar": "12.5", "double": 12.5, "json": "12.5"}),
    ("1.5e5", {"varchar": "1.5e5", "integer": 150000, "bigint": 150000, "double": 150000.0}),
    ("9007199254740993", {"varchar": "9007199254740993", "bigint": 9007199254740993, "double": 9007199254740992.0}),
    (".", {}),
    ("", {}),
    ("   ", {}),
    ("\t \n", {}),
    ("null", {}),
    (None, {}),
    ("true", {"varchar": "true", "boolean": True}),
    ("FALSE", {"varchar": "FALSE", "boolean": False}),
    (True, {"varchar": "true", "boolean": True, "double": 1.0, "json": "true"}),
    (False, {"varchar": "false", "boolean": False, "double": 0.0, "json": "false"}),
    (1, {"varchar": "1", "integer": 1, "bigint": 1, "double": 1.0, "boolean": True, "json": "1"}),
    (0, {"varchar": "0", "integer": 0, "bigint": 0, "double": 0.0, "boolean": False, "json": "0"}),
    ("maybe", {"varchar": "maybe"}),
    ("2024-11-01", {"varchar": "2024-11-01", "date": D, "timestamp": dt.datetime(2024, 11, 1)}),
    ("2024-11-01 06:01:36", {"varchar": "2024-11-01 06:01:36", "date": D, "timestamp": TS}),
    ("2024-11-01T06:01:36Z", {"varchar": "2024-11-01T06:01:36Z", "date": D, "timestamp": TS}),
    ("2024-11-01T08:01:36+02:00", {"varchar": "2024-11-01T08:01:36+02:00", "date": D, "timestamp": TS}),
    ("2024-13-01", {"varchar": "2024-13-01"}),
    ({"a": 1}, {"varchar": '{"a":1}', "json": '{"a":1}'}),
]


def test_coercion_table_every_type(tmp_path: Path) -> None:
    lake = Lake(tmp_path, types_keymap())
    rows = [{"symbol": "IGNORED", "id": i, **{f"v_{t}": raw for t in TYPES}} for i, (raw, _) in enumerate(COERCIONS)]
    lake.add("historical-price-eod", rows, day(0), ticker="AAPL")
    result = lake.promote("test_types")
    assert result.inserted == len(COERCIONS) and result.rejected == 0
    got = lake.rows(f"SELECT case_id, ticker, {', '.join(f'v_{t}' for t in TYPES)} FROM silver.test_types ORDER BY 1")
    mismatches = []
    for (raw, expected), row in zip(COERCIONS, got):
        assert row[1] == "AAPL"  # per-ticker tables take the ticker from the envelope
        actual = dict(zip(TYPES, row[2:]))
        actual["json"] = (
            None if actual["json"] is None else json.dumps(json.loads(actual["json"]), separators=(",", ":"))
        )
        want = {t: expected.get(t) for t in TYPES}
        want["json"] = None if raw is None else json.dumps(raw, separators=(",", ":"))  # JSON keeps any value
        mismatches.append((raw, actual, want)) if actual != want else None
    assert not mismatches, "\n".join(f"{r!r}: got {a} want {w}" for r, a, w in mismatches)
    types = dict(
        lake.rows("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'test_types'")
    )
    assert types["v_date"] == "DATE" and types["v_boolean"] == "BOOLEAN" and types["v_integer"] == "INTEGER"


def test_csv_strings_and_fmp_string_numbers(lake: Lake) -> None:
    """CSV payloads carry every value as text; FMP sends fullTimeEmployees and fiscalYear as strings."""
    lake.add(
        "historical-price-eod",
        [{k: str(v) for k, v in eod("AAPL", "2024-11-01", 10.5).items()}],
        day(0),
        ticker="AAPL",
        content_format="csv",
    )
    lake.add(
        "profile",
        [
            {
                "symbol": "AAPL",
                "price": "225.5",
                "fullTimeEmployees": "164000",
                "isEtf": "false",
                "isActivelyTrading": True,
                "isFund": None,
                "ipoDate": "1980-12-12",
            }
        ],
        day(0),
        ticker="AAPL",
    )
    lake.promote("fmp_price_eod")
    lake.promote("fmp_company_profile")
    assert lake.rows("SELECT close, volume FROM silver.fmp_price_eod") == [(10.5, 1000)]
    assert lake.rows(
        "SELECT price, full_time_employees, is_etf, is_actively_trading, is_fund, ipo_date "
        "FROM silver.fmp_company_profile"
    ) == [(225.5, 164000, False, True, None, dt.date(1980, 12, 12))]


# ---- merge, history, lineage ---------------------------------------------------------------------------------


def test_day2_price_updates_silver_and_keeps_history(lake: Lake) -> None:
    e1, _ = lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    r1 = lake.promote("fmp_price_eod", run_id="run-1")
    e2, _ = lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 11)], day(1), ticker="AAPL")
    r2 = lake.promote("fmp_price_eod", run_id="run-2")
    assert (r1.inserted, r1.updated, r2.inserted, r2.updated) == (1, 0, 0, 1)
    assert lake.rows("SELECT close, bronze_file_id, run_id, fetched_at FROM silver.fmp_price_eod") == [
        (11.0, e2.file_id, "run-2", day(1).replace(tzinfo=None))
    ]
    history = lake.rows(
        "SELECT close, bronze_file_id, valid_from, valid_to FROM silver.fmp_price_eod__history ORDER BY valid_from"
    )
    naive = [day(0).replace(tzinfo=None), day(1).replace(tzinfo=None)]
    assert history == [(10.0, e1.file_id, naive[0], naive[1]), (11.0, e2.file_id, naive[1], None)]
    led = lake.ledger(e2.file_id)
    assert (led["silver_status"], led["silver_run_id"], led["silver_rows_read"], led["silver_updated"]) == (
        "promoted",
        "run-2",
        1,
        1,
    )
    assert led["silver_coverage_from"] == led["silver_coverage_to"] == dt.date(2024, 11, 1)
    assert (
        led["silver_started_at"] is not None and led["silver_finished_at"] is not None and led["silver_error"] is None
    )


def test_restatement_within_one_batch_keeps_both_versions(lake: Lake) -> None:
    lake.add(
        "income-statement",
        [{"symbol": "AAPL", "date": "2024-09-28", "period": "FY", "revenue": 100}],
        day(0),
        ticker="AAPL",
        discriminator="annual",
    )
    lake.add(
        "income-statement",
        [{"symbol": "AAPL", "date": "2024-09-28", "period": "FY", "revenue": 120}],
        day(5),
        ticker="AAPL",
        discriminator="annual",
    )
    result = lake.promote("fmp_income_statement")
    assert (result.inserted, result.updated, result.rows_read) == (1, 1, 2)
    assert lake.rows("SELECT revenue FROM silver.fmp_income_statement") == [(120.0,)]
    assert lake.rows(
        "SELECT revenue, valid_to IS NULL FROM silver.fmp_income_statement__history ORDER BY valid_from"
    ) == [(100.0, False), (120.0, True)]


def test_repromoting_the_same_files_changes_nothing(lake: Lake) -> None:
    e1, _ = lake.add(
        "historical-price-eod", [eod("AAPL", f"2024-11-0{d}", 10 + d) for d in range(1, 6)], day(0), ticker="AAPL"
    )
    lake.promote("fmp_price_eod", run_id="run-1")
    before = lake.rows("SELECT * FROM silver.fmp_price_eod ORDER BY date")
    with lake.warehouse.transaction() as conn:
        conn.execute("UPDATE ops.file_ingestions SET silver_status = NULL")
    again = lake.promote("fmp_price_eod", run_id="run-2")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 5)
    assert lake.rows("SELECT * FROM silver.fmp_price_eod ORDER BY date") == before  # lineage untouched too
    assert lake.rows("SELECT count(*) FROM silver.fmp_price_eod__history") == [(5,)]
    assert lake.ledger(e1.file_id)["silver_unchanged"] == 5


def test_null_keys_are_rejected_and_counted(lake: Lake) -> None:
    rows = [
        eod("AAPL", "2024-11-01", 10),
        eod("AAPL", None, 11),
        eod("AAPL", "", 12),
        eod("AAPL", ".", 13),
        eod("AAPL", "not a date", 14),
    ]
    env, _ = lake.add("historical-price-eod", rows, day(0), ticker="AAPL")
    result = lake.promote("fmp_price_eod")
    assert (result.rows_read, result.inserted, result.rejected) == (5, 1, 4)
    led = lake.ledger(env.file_id)
    assert (led["silver_rows_read"], led["silver_inserted"], led["silver_rejected"]) == (5, 1, 4)
    assert lake.rows("SELECT count(*) FROM silver.fmp_price_eod WHERE date IS NULL") == [(0,)]
    with lake.warehouse.transaction() as conn:  # replaying never inserts them either
        conn.execute("UPDATE ops.file_ingestions SET silver_status = NULL")
    assert lake.promote("fmp_price_eod").rejected == 4
    assert lake.rows("SELECT count(*) FROM silver.fmp_price_eod") == [(1,)]


def test_duplicates_in_batch_keep_the_latest_fetch(lake: Lake) -> None:
    e1, _ = lake.add(
        "historical-price-eod",
        [eod("AAPL", "2024-11-01", 10), eod("AAPL", "2024-11-01", 10.5)],
        day(0),
        ticker="AAPL",
    )
    e2, _ = lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10.5)], day(1), ticker="AAPL")
    result = lake.promote("fmp_price_eod")
    # in file 1 the last row of the key wins (the first is a duplicate); file 2 repeats that value: unchanged
    assert (result.rows_read, result.inserted, result.unchanged, result.duplicates) == (3, 1, 1, 1)
    assert lake.rows("SELECT close, bronze_file_id FROM silver.fmp_price_eod") == [(10.5, e1.file_id)]
    assert lake.ledger(e1.file_id)["silver_duplicates"] == 1


def test_late_row_lands(lake: Lake) -> None:
    lake.add("historical-price-eod", [eod("AAPL", "2024-11-05", 10)], day(5), ticker="AAPL")
    lake.promote("fmp_price_eod")
    late, _ = lake.add("historical-price-eod", [eod("AAPL", "2023-01-03", 5)], day(6), ticker="AAPL")
    result = lake.promote("fmp_price_eod")
    assert result.inserted == 1
    assert lake.rows("SELECT date, bronze_file_id FROM silver.fmp_price_eod ORDER BY date")[0] == (
        dt.date(2023, 1, 3),
        late.file_id,
    )


def test_shared_economic_indicator_table_keeps_every_indicator(lake: Lake) -> None:
    for name, value in (("GDP", 29000.5), ("CPI", 315.2), ("unemploymentRate", 4.1)):
        lake.add(
            "economic-indicators", [{"name": name, "date": "2024-10-01", "value": value}], day(0), discriminator=name
        )
    result = lake.promote("fmp_economic_indicator")
    assert result.inserted == 3
    assert lake.rows("SELECT name, value FROM silver.fmp_economic_indicator ORDER BY name") == [
        ("CPI", 315.2),
        ("GDP", 29000.5),
        ("unemploymentRate", 4.1),
    ]


def test_older_file_promoted_later_does_not_overwrite(lake: Lake) -> None:
    new, _ = lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 11)], day(2), ticker="AAPL")
    lake.promote("fmp_price_eod")
    old, _ = lake.add(
        "historical-price-eod",
        [eod("AAPL", "2024-11-01", 10), eod("AAPL", "2024-10-31", 9)],
        day(1),
        ticker="AAPL",
    )
    result = lake.promote("fmp_price_eod")
    assert (result.inserted, result.updated, result.duplicates) == (1, 0, 1)  # the late 10-31 row still lands
    assert lake.rows("SELECT date, close, bronze_file_id FROM silver.fmp_price_eod ORDER BY date") == [
        (dt.date(2024, 10, 31), 9.0, old.file_id),
        (dt.date(2024, 11, 1), 11.0, new.file_id),
    ]
    assert lake.rows("SELECT count(*) FROM silver.fmp_price_eod__history WHERE date = '2024-11-01'") == [(1,)]


def test_exception_after_merge_leaves_everything_unchanged(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    lake.promote("fmp_price_eod")
    snapshot = [
        lake.rows(f"SELECT * FROM {t} ORDER BY ALL")
        for t in ("silver.fmp_price_eod", "silver.fmp_price_eod__history", "ops.file_ingestions")
    ]
    e2, _ = lake.add(
        "historical-price-eod",
        [eod("AAPL", "2024-11-01", 11), eod("AAPL", "2024-11-04", 12)],
        day(1),
        ticker="AAPL",
    )

    def boom(*args: Any, **kwargs: Any) -> tuple[str, ...]:
        raise RuntimeError("injected after the MERGE")

    monkeypatch.setattr(promote_mod, "_record_drift", boom)  # runs after MERGE and history writes
    with pytest.raises(RuntimeError, match="injected"):
        lake.promote("fmp_price_eod")
    assert lake.rows("SELECT close FROM silver.fmp_price_eod") == [(10.0,)]
    assert [
        lake.rows(f"SELECT * FROM {t} ORDER BY ALL") for t in ("silver.fmp_price_eod", "silver.fmp_price_eod__history")
    ] == snapshot[:2]
    assert lake.ledger(e2.file_id)["silver_status"] is None
    monkeypatch.undo()
    assert lake.promote("fmp_price_eod").updated == 1  # and the retry works


def test_schema_drift_is_reported_and_recorded(lake: Lake) -> None:
    env, _ = lake.add(
        "historical-price-eod", [eod("AAPL", "2024-11-01", 10, adjClose=9.9, label="x")], day(0), ticker="AAPL"
    )
    result = lake.promote("fmp_price_eod")
    assert result.drift_fields == ("adjClose", "label")
    assert lake.rows("SELECT field, first_seen_file_id FROM ops.schema_drift ORDER BY field") == [
        ("adjClose", env.file_id),
        ("label", env.file_id),
    ]
    with lake.warehouse.connect() as conn:
        outcome = quality.schema_drift(conn, lake.keymap, "fmp_price_eod")
    assert (
        not outcome.passed
        and outcome.severity == "WARN"
        and outcome.metadata["unmapped_fields"] == ["adjClose", "label"]
    )


# ---- bad files ---------------------------------------------------------------------------------------------


def test_bad_files_fail_alone_and_the_rest_promotes(lake: Lake) -> None:
    good, _ = lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    missing, missing_path = lake.add("historical-price-eod", [eod("MSFT", "2024-11-01", 1)], day(0), ticker="MSFT")
    (lake.root / missing_path).unlink()
    broken, broken_path = lake.add("historical-price-eod", [eod("NVDA", "2024-11-01", 1)], day(0), ticker="NVDA")
    (lake.root / broken_path).write_text('{"envelope_version": 1, "file_id": "trunc')
    refused, _ = lake.add("historical-price-eod", [], day(0), ticker="AMZN", can_promote=False, register=False)
    with lake.warehouse.transaction() as conn:  # the ledger says promotable, the envelope says no
        conn.execute(
            "INSERT INTO ops.file_ingestions (ingestion_id, run_id, file_id, domain, source, dataset, "
            "bronze_path, fetched_at, can_promote, silver_table) SELECT (SELECT max(ingestion_id) + 1 FROM "
            "ops.file_ingestions), run_id, ?, domain, source, dataset, ?, fetched_at, "
            "true, silver_table FROM ops.file_ingestions WHERE file_id = ?",
            [
                refused.file_id,
                lake.store.relative_path(refused.identity, refused.fetched_at, refused.file_id),
                good.file_id,
            ],
        )
    obj, _ = lake.add("historical-price-eod", {"symbol": "META", "date": "2024-11-01"}, day(0), ticker="META")
    result = lake.promote("fmp_price_eod")
    assert result.files == 1 and result.inserted == 1
    errors = {f.file_id: f.error for f in result.failed}
    assert "missing" in errors[missing.file_id]
    assert "not valid JSON" in errors[broken.file_id]
    assert "can_promote" in errors[refused.file_id]
    assert "not an array" in errors[obj.file_id]
    for file_id, error in errors.items():
        led = lake.ledger(file_id)
        assert (led["silver_status"], led["silver_error"]) == ("failed", error)
    assert lake.ledger(good.file_id)["silver_status"] == "promoted"


# ---- quality checks ------------------------------------------------------------------------------------------

CORRUPT = SilverSpec(
    table="corrupt", key=("k",), columns=(Column("k", "varchar", "k", False), Column("v", "double", "v"))
)


def _corrupt_table(conn: duckdb.DuckDBPyConnection, v_type: str = "DOUBLE") -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS silver")
    conn.execute(
        f"CREATE OR REPLACE TABLE silver.corrupt (k VARCHAR, v {v_type}, bronze_file_id VARCHAR, "
        "run_id VARCHAR, fetched_at TIMESTAMP, promoted_at TIMESTAMP)"
    )


def test_quality_checks_pass_on_promoted_data(lake: Lake) -> None:
    lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10), eod("AAPL", None, 1)], day(0), ticker="AAPL")
    lake.promote("fmp_price_eod")
    spec = KEYMAP.tables()["fmp_price_eod"]
    with lake.warehouse.connect() as conn:
        outcomes = [
            quality.key_unique(conn, spec),
            quality.key_not_null(conn, spec),
            quality.column_types_match(conn, spec),
            quality.reconciliation(conn, "fmp_price_eod"),
            quality.freshness(conn, KEYMAP, "fmp_price_eod", dt.date(2024, 11, 3)),
            quality.schema_drift(conn, KEYMAP, "fmp_price_eod"),
        ]
    assert all(o.passed for o in outcomes), [o.description for o in outcomes if not o.passed]


def test_quality_checks_fail_on_corrupted_tables(lake: Lake) -> None:
    with lake.warehouse.connect() as conn:
        _corrupt_table(conn)
        conn.execute("INSERT INTO silver.corrupt (k, v) VALUES ('a', 1), ('a', 2), (NULL, 3)")
        dup, null = quality.key_unique(conn, CORRUPT), quality.key_not_null(conn, CORRUPT)
        assert not dup.passed and dup.metadata["duplicate_keys"] == 1
        assert not null.passed and null.metadata["null_counts"] == {"k": 1}
        _corrupt_table(conn, v_type="VARCHAR")
        types = quality.column_types_match(conn, CORRUPT)
        assert not types.passed and types.metadata["mismatched"] == {"v": {"warehouse": "VARCHAR", "keymap": "DOUBLE"}}


def test_freshness_fails_on_stale_data(lake: Lake) -> None:
    lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    lake.add("historical-price-eod", [eod("MSFT", "2024-06-03", 10)], day(0), ticker="MSFT")
    lake.add("profile", [{"symbol": "AAPL", "price": 1}], day(0), ticker="AAPL")
    lake.promote("fmp_price_eod")
    lake.promote("fmp_company_profile")
    with lake.warehouse.connect() as conn:
        eod_check = quality.freshness(conn, KEYMAP, "fmp_price_eod", dt.date(2024, 11, 4))
        fresh_profile = quality.freshness(conn, KEYMAP, "fmp_company_profile", dt.date(2024, 11, 4))
        stale_profile = quality.freshness(conn, KEYMAP, "fmp_company_profile", dt.date(2024, 12, 31))
    assert not eod_check.passed
    assert [s["identity"] for s in eod_check.metadata["stale"]] == ["prices|fmp|historical-price-eod||MSFT"]
    assert fresh_profile.passed and not stale_profile.passed  # snapshot table: judged by the fetch date


def test_reconciliation_fails_when_the_ledger_does_not_add_up(lake: Lake) -> None:
    env, _ = lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    lake.promote("fmp_price_eod")
    with lake.warehouse.connect() as conn:
        assert quality.reconciliation(conn, "fmp_price_eod").passed
        conn.execute("UPDATE ops.file_ingestions SET silver_rows_read = 7 WHERE file_id = ?", [env.file_id])
        broken = quality.reconciliation(conn, "fmp_price_eod")
        assert not broken.passed and broken.metadata["unbalanced_files"] == 1
        conn.execute("UPDATE ops.file_ingestions SET silver_rows_read = 1, silver_inserted = 0, silver_unchanged = 1")
        fewer = quality.reconciliation(conn, "fmp_price_eod")
        assert not fewer.passed and "Silver holds 1 rows" in fewer.description


# ---- replay ---------------------------------------------------------------------------------------------------


def _snapshot(lake: Lake, tables: list[str]) -> dict[str, list[tuple]]:
    out = {}
    with lake.warehouse.connect() as conn:
        for table in tables:
            for name in (table, f"{table}__history"):
                out[name] = conn.execute(
                    f"SELECT * EXCLUDE (promoted_at, run_id) FROM silver.{name} ORDER BY ALL"
                ).fetchall()
    return out


def test_replay_equals_incremental_promotion(lake: Lake) -> None:
    # Incremental: the sensor promotes whatever arrived, in several batches.
    for d, closes in enumerate(([10, 11], [10, 12], [13, 12], [13, 12])):
        for ticker in ("AAPL", "MSFT"):
            rows = [eod(ticker, f"2024-11-0{i + 1}", c) for i, c in enumerate(closes)] + [
                eod(ticker, f"2024-11-0{d + 3}", 20 + d)
            ]
            lake.add("historical-price-eod", rows, day(d), ticker=ticker)
        for name in ("GDP", "CPI"):
            lake.add(
                "economic-indicators",
                [{"name": name, "date": "2024-10-01", "value": 100 + d // 2}],
                day(d),
                discriminator=name,
            )
        if d % 2 == 1:  # two sensor ticks' worth of files in one batch, then one
            lake.promote("fmp_price_eod")
            lake.promote("fmp_economic_indicator")
    tables = ["fmp_price_eod", "fmp_economic_indicator"]
    incremental = _snapshot(lake, tables)
    assert len(incremental["fmp_price_eod__history"]) > len(incremental["fmp_price_eod"])

    results = replay(lake.warehouse, lake.keymap, lake.root, "replay-run", tables=tables)
    assert sum(r.files for r in results) == 16
    assert _snapshot(lake, tables) == incremental
    with lake.warehouse.connect() as conn:
        assert quality.reconciliation(conn, "fmp_price_eod").passed

    # One ticker only, in tiny batches: same answer again, the other ticker untouched.
    results = replay(
        lake.warehouse, lake.keymap, lake.root, "replay-aapl", tables=["fmp_price_eod"], tickers=["AAPL"], batch_files=1
    )
    assert len(results) == 4
    assert _snapshot(lake, tables) == incremental
