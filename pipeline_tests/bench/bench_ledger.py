"""Benchmark of the ledger readers at 100,000 and 1,000,000 rows of `ops.file_ingestions`.

Why: the ledger grows by every Bronze file forever (a few thousand files a day for a 2,000-ticker universe),
and five things read all of it on a clock or on every run: the Silver promotion sensor (every 30 s), the
Gold promotion sensor (every 30 s), `pipeline status`, the promotable-files query behind Silver promotion,
and `latest_bronze_coverage` (request planning of every Bronze run). A sensor tick must stay far below the
daemon's 60 s gRPC timeout, and each must grow sub-linearly with the ledger.

The ledger is generated with set-based SQL (`INSERT ... SELECT ... FROM range(n)`) on a migrated warehouse:
the shipped keymap's 27 datasets (15 per ticker, 12 global), 3,000 tickers, one fetch day per 5,000 files (so
the 1M ledger is ~200 days of history and the 100k one ~20 days, same universe), ~0.5 % error files, the last
3,000 files waiting for Silver plus ~0.1 % failed promotions (promotable, not promoted), everything else
promoted. Empty Silver tables exist for every keymap table and every Gold asset has a successful build whose
recorded watermarks are the current ones except for ~200 moved identities, so the Gold sensor has real work
(compare every identity, find the moved ones).

Targets: a sensor tick < 1 s at 1M rows; growth 100k -> 1M <= 3x for every operation.

    python -m pipeline_tests.bench.bench_ledger            # 100k and 1M rows, median of 5 repetitions
    python -m pipeline_tests.bench.bench_ledger --quick    # 20k and 200k rows, median of 3
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import logging
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

N_TICKERS = 3000
FILES_PER_DAY = 5000  # one daily run's worth of Bronze files
PENDING = 3000  # newest files not promoted yet (the sensor's work)
MOVED = 200  # identities whose Silver coverage moved after the last Gold builds
SENSOR_TARGET_S = 1.0
GROWTH_TARGET = 3.0


def _tickers() -> list[str]:
    return [f"T{i:04d}" for i in range(1, N_TICKERS + 1)]


def _settings(data_dir: Path):
    from pipeline.settings import load_settings

    return load_settings(
        {"PIPELINE_DATA_DIR": str(data_dir), "PIPELINE_AS_OF": "2026-01-15", "PIPELINE_TICKERS": ",".join(_tickers())}
    )


GENERATE_SQL = """
INSERT INTO ops.file_ingestions (
    run_id, file_id, domain, source, dataset, discriminator, ticker, bronze_path, request_path, page, as_of,
    window_from, window_to, status_code, error_class, error_message, bronze_rows, bytes, body_sha256,
    coverage_from, coverage_to, fetched_at, elapsed_ms, can_promote, registered_at, silver_table, silver_status,
    silver_run_id, silver_rows_read, silver_inserted, silver_updated, silver_unchanged, silver_rejected,
    silver_duplicates, silver_coverage_from, silver_coverage_to, silver_started_at, silver_finished_at)
WITH base AS (
    SELECT i,
           i // $per_day                                         AS day_no,
           (i % 100) = 0                                         AS is_global,
           hash(i, 'err') % 200 = 0                              AS is_error,
           hash(i, 'fail') % 1000 = 0                            AS is_failed,
           i >= $n - $pending                                    AS is_pending
    FROM range($n) AS t(i)
),
picked AS (
    SELECT b.*, e.*,
           CASE WHEN b.is_global THEN '' ELSE printf('T%04d', 1 + (b.i // 15) % $tickers) END AS ticker,
           DATE '2025-01-02' + CAST(b.day_no AS INTEGER)                                       AS as_of_day,
           TIMESTAMP '2025-01-02 22:00:00' + to_days(CAST(b.day_no AS INTEGER))
               + to_milliseconds((b.i % $per_day) * 500)                                       AS fetched
    FROM base b
    JOIN bench_entries e
      ON e.per_ticker = NOT b.is_global
     AND e.slot = CASE WHEN b.is_global THEN (b.i // 100) % $n_global ELSE b.i % $n_ticker END
)
SELECT
    printf('run-%06d', day_no)                                          AS run_id,
    md5(CAST(i AS VARCHAR))                                             AS file_id,
    domain, source, dataset, discriminator, ticker,
    domain || '/' || dataset || '/' || coalesce(nullif(ticker, ''), '_global') || '/' || strftime(as_of_day, '%Y-%m-%d')
        || '/' || md5(CAST(i AS VARCHAR)) || '.json'                    AS bronze_path,
    request_path, NULL, as_of_day,
    CASE WHEN windowed THEN as_of_day - 10 END                          AS window_from,
    CASE WHEN windowed THEN as_of_day END                               AS window_to,
    CASE WHEN is_error THEN 500 ELSE 200 END                            AS status_code,
    CASE WHEN is_error THEN 'http_status' END                           AS error_class,
    CASE WHEN is_error THEN 'HTTP 500 from the API' END                 AS error_message,
    CASE WHEN is_error THEN 0 WHEN windowed THEN 8 ELSE 5 END           AS bronze_rows,
    CASE WHEN is_error THEN 120 ELSE 4000 END                           AS bytes,
    md5(CAST(i AS VARCHAR) || 'body')                                   AS body_sha256,
    CASE WHEN is_error THEN NULL WHEN windowed THEN as_of_day - 10 ELSE as_of_day - 1500 END AS coverage_from,
    CASE WHEN is_error THEN NULL ELSE as_of_day - 1 END                 AS coverage_to,
    fetched, 25.0,
    NOT is_error                                                        AS can_promote,
    fetched + INTERVAL 1 SECOND                                         AS registered_at,
    silver_table,
    CASE WHEN is_error OR is_pending THEN NULL WHEN is_failed THEN 'failed' ELSE 'promoted' END AS silver_status,
    CASE WHEN is_error OR is_pending THEN NULL ELSE printf('silver-%06d', day_no) END AS silver_run_id,
    CASE WHEN is_error OR is_pending OR is_failed THEN NULL ELSE 5 END,
    CASE WHEN is_error OR is_pending OR is_failed THEN NULL ELSE 1 END,
    CASE WHEN is_error OR is_pending OR is_failed THEN NULL ELSE 0 END,
    CASE WHEN is_error OR is_pending OR is_failed THEN NULL ELSE 4 END,
    CASE WHEN is_error OR is_pending OR is_failed THEN NULL ELSE 0 END,
    CASE WHEN is_error OR is_pending OR is_failed THEN NULL ELSE 0 END,
    CASE WHEN is_error OR is_pending OR is_failed THEN NULL WHEN windowed THEN as_of_day - 10 ELSE as_of_day - 1500 END,
    CASE WHEN is_error OR is_pending OR is_failed THEN NULL ELSE as_of_day - 1 END,
    CASE WHEN is_error OR is_pending THEN NULL ELSE fetched + INTERVAL 1 HOUR END,
    CASE WHEN is_error OR is_pending THEN NULL ELSE fetched + INTERVAL 61 MINUTE END
FROM picked
ORDER BY i
"""

RUNS_SQL = """
INSERT INTO ops.runs (run_id, job, source_mode, started_at, finished_at, status, requests, skipped, files, rows,
                      errors, message)
SELECT run_id, '__ephemeral_asset_job__', 'fmp', min(fetched_at), max(fetched_at) + INTERVAL 5 SECOND,
       CASE WHEN count(error_class) > 0 THEN 'partial' ELSE 'success' END,
       count(*), 0, count(*), sum(bronze_rows), count(error_class), NULL
FROM ops.file_ingestions GROUP BY run_id
"""


def build_ledger(data_dir: Path, n: int) -> dict:
    """A migrated warehouse with `n` ledger rows, empty Silver tables and recorded Gold builds."""
    import pandas as pd

    from pipeline.gold.build import GOLD_ASSETS, current_state
    from pipeline.keymap import load_keymap
    from pipeline.silver.schema import ensure_table
    from pipeline.warehouse.connection import Warehouse

    settings = _settings(data_dir)
    keymap = load_keymap(settings.keymap_path)
    per_ticker = list(keymap.per_ticker_entries())
    global_ = list(keymap.global_entries())
    rows = [
        (
            slot,
            e.per_ticker,
            e.domain,
            e.source,
            e.dataset,
            e.discriminator or "",
            e.recipe.path,
            e.recipe.is_windowed,
            e.silver.table,
        )
        for group in (per_ticker, global_)
        for slot, e in enumerate(group)
    ]
    entries = pd.DataFrame(
        rows,
        columns=[
            "slot",
            "per_ticker",
            "domain",
            "source",
            "dataset",
            "discriminator",
            "request_path",
            "windowed",
            "silver_table",
        ],
    )
    started = time.perf_counter()
    warehouse = Warehouse(settings.warehouse_path)
    with warehouse.connect() as conn:
        conn.register("bench_entries_df", entries)
        conn.execute("CREATE TEMP TABLE bench_entries AS SELECT * FROM bench_entries_df")
        conn.execute(
            GENERATE_SQL,
            {
                "n": n,
                "per_day": FILES_PER_DAY,
                "pending": PENDING,
                "tickers": N_TICKERS,
                "n_global": len(global_),
                "n_ticker": len(per_ticker),
            },
        )
        conn.execute(RUNS_SQL)
        for spec in keymap.tables().values():
            ensure_table(conn, spec)
        # Gold builds that saw the current watermarks, then MOVED identities move (a later promotion)
        now = dt.datetime(2026, 1, 15, 23, 0)
        for name, tables in GOLD_ASSETS.items():
            marks, revisions = current_state(conn, tables)
            conn.execute(
                """INSERT INTO ops.gold_builds (asset, run_id, input_watermarks, input_revisions, mode,
                                tickers_touched, rows_written, status, started_at, finished_at)
                            VALUES (?, 'gold-bench', ?, ?, 'full', 0, 0, 'success', ?, ?)""",
                [name, marks, revisions, now, now],
            )
        conn.execute(
            """
            UPDATE ops.file_ingestions SET silver_coverage_to = silver_coverage_to + 1
            WHERE ingestion_id IN (SELECT max(ingestion_id) FROM ops.file_ingestions
                                   WHERE silver_status = 'promoted' AND ticker <> ''
                                   GROUP BY silver_table, ticker ORDER BY 1 DESC LIMIT $moved)
        """,
            {"moved": MOVED},
        )
        stats = conn.execute("""
            SELECT count(*), count(DISTINCT ticker) FILTER (WHERE ticker <> ''),
                   count(DISTINCT dataset || discriminator),
                   count(*) FILTER (WHERE can_promote AND coalesce(silver_status, '') <> 'promoted'),
                   count(*) FILTER (WHERE error_class IS NOT NULL), count(DISTINCT run_id)
            FROM ops.file_ingestions
        """).fetchone()
        conn.execute("CHECKPOINT")
    return {
        "rows": stats[0],
        "tickers": stats[1],
        "datasets": stats[2],
        "promotable": stats[3],
        "errors": stats[4],
        "runs": stats[5],
        "build_s": time.perf_counter() - started,
    }


def _median(fn: Callable[[], object], reps: int) -> tuple[float, object]:
    fn()  # warm-up: imports, DuckDB extension and catalog caches
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def measure(data_dir: Path, reps: int) -> tuple[dict[str, float], dict[str, str]]:
    """Median seconds per operation on an existing ledger, plus a short note on what each returned."""
    import dagster as dg

    from pipeline.cli.status import status
    from pipeline.keymap import load_keymap
    from pipeline.ops import file_ingestions
    from pipeline.orchestration.definitions import build_definitions
    from pipeline.orchestration.partitions import tickers_partitions
    from pipeline.warehouse.connection import Warehouse

    settings = _settings(data_dir)
    keymap = load_keymap(settings.keymap_path)
    defs = build_definitions(settings, keymap)
    silver_sensor = next(s for s in defs.sensors if s.name == "silver_promotion_sensor")
    gold_sensor = next(s for s in defs.sensors if s.name == "gold_promotion_sensor")
    warehouse = Warehouse(settings.warehouse_path)
    times: dict[str, float] = {}
    notes: dict[str, str] = {}
    home = data_dir / "dagster_home"
    home.mkdir(exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        instance.add_dynamic_partitions(tickers_partitions.name, _tickers())

        # the sensors' context.log lines would go to the tick's captured log under the daemon; keep them off the table
        def silver_tick():
            with contextlib.redirect_stderr(io.StringIO()):
                return silver_sensor.evaluate_tick(
                    dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
                )

        def gold_tick():
            with contextlib.redirect_stderr(io.StringIO()):
                return gold_sensor.evaluate_tick(
                    dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
                )

        times["silver_promotion_sensor tick"], tick = _median(silver_tick, reps)
        notes["silver_promotion_sensor tick"] = f"{len(tick.run_requests)} run request(s)"
        times["gold_promotion_sensor tick"], tick = _median(gold_tick, reps)
        notes["gold_promotion_sensor tick"] = (
            f"{len(tick.run_requests)} run request(s), "
            f"{len(tick.run_requests[0].asset_selection) if tick.run_requests else 0} gold asset(s)"
        )

    def status_call():
        out = io.StringIO()
        code = status(settings, out=out)
        return code, out.getvalue()

    times["pipeline status"], (code, text) = _median(status_call, reps)
    notes["pipeline status"] = f"exit {code}, {len(text.splitlines())} lines"

    tables = list(keymap.tables())

    def promotable():
        with warehouse.reader() as conn:
            return file_ingestions.promotable_files(conn, tables=tables)

    times["promotable_files (all tables)"], files = _median(promotable, reps)
    notes["promotable_files (all tables)"] = f"{len(files):,} file(s)"

    def coverage():
        with warehouse.reader() as conn:
            out = {}
            for entry in keymap:
                out.update(
                    file_ingestions.latest_bronze_coverage(conn, entry.identity, ticker_wildcard=entry.per_ticker)
                )
            return out

    times["latest_bronze_coverage (27 entries)"], cov = _median(coverage, reps)
    notes["latest_bronze_coverage (27 entries)"] = f"{len(cov):,} identities"
    return times, notes


SENSORS = ("silver_promotion_sensor tick", "gold_promotion_sensor tick")


def main(quick: bool = False) -> dict:
    warnings.filterwarnings("ignore")
    logging.getLogger("dagster").setLevel(logging.ERROR)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    small, large = (20_000, 200_000) if quick else (100_000, 1_000_000)
    reps = 3 if quick else 5
    results: dict[int, dict[str, float]] = {}
    notes: dict[int, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_ledger_") as tmp:
        for n in (small, large):
            data_dir = Path(tmp) / f"n{n}"
            info = build_ledger(data_dir, n)
            print(
                f"ledger {info['rows']:,} rows: {info['tickers']:,} tickers, {info['datasets']} datasets, "
                f"{info['runs']} daily runs, {info['promotable']:,} promotable not promoted, {info['errors']:,} errors "
                f"(built in {info['build_s']:.1f} s)"
            )
            results[n], notes[n] = measure(data_dir, reps)

    label_small, label_large = (
        f"{small // 1000}k",
        (f"{large // 1_000_000}M" if large >= 1_000_000 else f"{large // 1000}k"),
    )
    ops = list(results[small])
    width = max(len(o) for o in ops)
    header = (
        f"{'operation':<{width}}  {label_small:>9}  {label_large:>9}  {'growth':>7}  "
        f"targets                     ok   at {label_large}"
    )
    print(f"\nmedian of {reps} repetitions (after one warm-up call)")
    print(header)
    print("-" * len(header))
    checks: dict[str, bool] = {}
    rows = []
    for op in ops:
        a, b = results[small][op], results[large][op]
        growth = b / a if a > 0 else float("inf")
        ok = growth <= GROWTH_TARGET
        target = f"growth <= {GROWTH_TARGET:g}x"
        if op in SENSORS:
            ok = ok and b < SENSOR_TARGET_S
            target = f"< {SENSOR_TARGET_S:g} s, " + target
        checks[op] = ok
        rows.append({"operation": op, "small_s": a, "large_s": b, "growth": growth, "ok": ok})
        print(
            f"{op:<{width}}  {a:>8.3f}s  {b:>8.3f}s  {growth:>6.2f}x  {target:<26}  {'yes' if ok else 'NO ':3}  "
            f"{notes[large][op]}"
        )
    if quick:
        print(f"  (--quick uses {small:,} and {large:,} rows; the targets are stated for 100k and 1M)")
    return {"sizes": (small, large), "rows": rows, "checks": checks, "reps": reps}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k and 200k rows, 3 repetitions")
    main(quick=parser.parse_args().quick)
