"""Benchmark of Silver promotion throughput: one writer on the DuckDB file against two concurrent writers on a
DuckLake (PostgreSQL catalog from PIPELINE_TEST_POSTGRES_URL, data files in a local folder).

Why: the DuckDB file admits one writing process, so promotions of different tickers queue; a DuckLake admits
several, but each commit goes through the PostgreSQL catalog, and DuckLake refuses a commit when a concurrent
transaction changed the same table (the writer reruns it). This measures what the lake costs per writer and
what two writers of disjoint tickers gain. Both backends promote the same Bronze files the way the pipeline
does: per ticker group, one transaction per group (`promote_files`), the lake writers under their ticker
scopes with the conflict retry. Printed as ratios against the file's one writer, measured in the same run; no
targets are asserted.

    python -m pipeline_tests.bench.bench_lake            # 60 tickers x 4 files x 250 rows = 60,000 rows
    python -m pipeline_tests.bench.bench_lake --quick    # 16 tickers x 2 files x 50 rows
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.keymap import load_keymap
from pipeline.ops import file_ingestions
from pipeline.settings import PROJECT_ROOT
from pipeline.silver.promote import promote_files
from pipeline.warehouse.connection import Warehouse, retry_conflicts
from pipeline.warehouse.lake import silver_scopes
from pipeline_tests import postgres_server
from pipeline_tests.bench.bench_silver import TABLE, generate

GROUP = 4  # tickers per promotion transaction


def writer(target: str, data_path: str | None, workdir: Path, tickers: list[str], start_at: float) -> dict:
    """Promote the waiting files of `tickers`, GROUP tickers per transaction; report rows, conflicts, end time."""
    keymap = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")
    warehouse = Warehouse(target, data_path=data_path)
    with warehouse.connect():
        pass  # migrated and extensions loaded before the clock starts
    conflicts = 0

    def count(message: str) -> None:
        nonlocal conflicts
        conflicts += 1

    time.sleep(max(0.0, start_at - time.time()))
    rows = 0
    for i in range(0, len(tickers), GROUP):
        group = tickers[i : i + GROUP]

        def promote_group(group: list[str] = group):
            with warehouse.transaction(silver_scopes(TABLE, group)) as conn:
                files = file_ingestions.promotable_files(conn, tables=[TABLE], tickers=group)
                return promote_files(conn, keymap, TABLE, files, workdir / "bronze", "bench-lake")

        rows += retry_conflicts(promote_group, attempts=30, log_fn=count).rows_read
    return {"rows": rows, "conflicts": conflicts, "end": time.time()}


def run_writers(target: str, data_path: str | None, workdir: Path, parts: list[list[str]]) -> dict:
    start_at = time.time() + 5.0  # every writer imported, attached and waiting
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline_tests.bench.bench_lake",
                "--writer",
                target,
                "--data-path",
                data_path or "",
                "--workdir",
                str(workdir),
                "--tickers",
                ",".join(part),
                "--start-at",
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for part in parts
    ]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("a writer failed")
    seconds = max(o["end"] for o in outs) - start_at
    rows = sum(o["rows"] for o in outs)
    return {
        "seconds": seconds,
        "rows": rows,
        "rows_per_s": rows / seconds,
        "conflicts": sum(o["conflicts"] for o in outs),
    }


def main(quick: bool = False) -> dict:
    tickers, windows, rows = (16, 2, 50) if quick else (60, 4, 250)
    names = [f"T{t:04d}" for t in range(tickers)]
    reason = postgres_server.unavailable_reason()
    results: dict = {"lake_skipped": reason}
    with tempfile.TemporaryDirectory(prefix="bench_lake_") as tmp:
        workdir = Path(tmp)
        file_target = str(workdir / "warehouse.duckdb")
        if reason:
            print(f"DuckLake rows skipped: {reason}")
            generate(workdir, tickers, windows, rows)
            results["file_1"] = run_writers(file_target, None, workdir, [names])
        else:
            with (
                postgres_server.fresh_database("bench_lake_one") as one,
                postgres_server.fresh_database("bench_lake_two") as two,
            ):
                lakes = {
                    "lake_1": (f"ducklake:postgres:{one}", str(workdir / "lake_one")),
                    "lake_2": (f"ducklake:postgres:{two}", str(workdir / "lake_two")),
                }
                generate(
                    workdir,
                    tickers,
                    windows,
                    rows,
                    [Warehouse(file_target)] + [Warehouse(spec, data_path=data) for spec, data in lakes.values()],
                )
                results["file_1"] = run_writers(file_target, None, workdir, [names])
                results["lake_1"] = run_writers(*lakes["lake_1"], workdir, [names])
                results["lake_2"] = run_writers(*lakes["lake_2"], workdir, [names[0::2], names[1::2]])
    print(
        f"{tickers} tickers x {windows} files x {rows} rows = {tickers * windows * rows:,} rows, "
        f"{GROUP} tickers per transaction"
    )
    base = results["file_1"]["rows_per_s"]
    print(f"{'writers':<36}{'seconds':>9}{'rows/s':>11}{'vs file':>9}{'conflicts':>11}")
    for key, label in (
        ("file_1", "DuckDB file, 1 writer"),
        ("lake_1", "DuckLake, 1 writer"),
        ("lake_2", "DuckLake, 2 concurrent writers"),
    ):
        r = results.get(key)
        if r:
            r["ratio"] = r["rows_per_s"] / base
            print(f"{label:<36}{r['seconds']:>9.2f}{r['rows_per_s']:>11,.0f}{r['ratio']:>9.2f}{r['conflicts']:>11}")
    return results


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--writer")
    parser.add_argument("--data-path", default="")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--tickers", default="")
    parser.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args()
    if args.writer:
        print(
            json.dumps(
                writer(args.writer, args.data_path or None, args.workdir, args.tickers.split(","), args.start_at)
            )
        )
    else:
        main(quick=args.quick)


if __name__ == "__main__":
    _cli()
