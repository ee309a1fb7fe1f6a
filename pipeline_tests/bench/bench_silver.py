"""Benchmark of Silver promotion against a bare DuckDB load of the same Bronze files.

Why: promotion does much more than a load (explicit robust casts, key checks, de-duplication, a MERGE that
compares values, history, per-file ledger counts), and this measures what that costs. The baseline is the
cheapest correct-looking load: `read_json` of the same files plus `INSERT OR REPLACE` into a table keyed by
(ticker, date). Targets, on medians: first promotion >= 0.8 x baseline rows/s, re-promotion of unchanged
files >= 1.2 x baseline rows/s, peak RSS < 2 GiB.

The machine this runs on is shared and noisy, so one measurement proves little: every phase is repeated
(`--repeat`, at least 5) and reported as median and spread, and the repetitions are interleaved (baseline,
promotion, re-promotion, then again) so that a burst of load hits the baseline as much as what it is
compared with. Each measured phase runs in its own subprocess so that its RSS high-water mark (getrusage)
is its own; each promotion starts from the same registered-but-unpromoted warehouse.

    python -m pipeline_tests.bench.bench_silver            # 2,000 files x 250 rows = 500,000 rows, 5 rounds
    python -m pipeline_tests.bench.bench_silver --quick    # 100 files x 50 rows, for a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from pipeline.bronze.envelope import (
    BronzeEnvelope,
    RequestInfo,
    file_record,
    new_file_id,
)
from pipeline.bronze.store import BronzeStore
from pipeline.keymap import load_keymap
from pipeline.keymap.model import DatasetIdentity
from pipeline.ops import file_ingestions
from pipeline.settings import PROJECT_ROOT
from pipeline.silver.promote import promote_files
from pipeline.warehouse.connection import Warehouse

TABLE = "fmp_price_eod"
FIELDS = ("symbol", "date", "open", "high", "low", "close", "volume", "change", "changePercent", "vwap")
BATCH_FILES = 2000  # files per promote_files call (one transaction each); the sensor's batch size
REPEAT = 5  # rounds of (baseline, promotion, re-promotion); the report uses medians
TARGETS = {"promote": 0.8, "repromote": 1.2}  # median rows/s over the median baseline rows/s
PEAK_RSS_MIB = 2048

BASELINE_SQL = """
    INSERT OR REPLACE INTO bench_eod
    SELECT r.symbol, r.date, r.open, r.high, r.low, r.close, r.volume, r.change, r.changePercent, r.vwap
    FROM (SELECT unnest(content) AS r FROM read_json($paths, format = 'auto', maximum_object_size = 268435456))
"""

BASELINE_DDL = """
    CREATE TABLE bench_eod (
        ticker VARCHAR, date DATE, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume BIGINT,
        change DOUBLE, change_percent DOUBLE, vwap DOUBLE, PRIMARY KEY (ticker, date))
"""


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ---- data --------------------------------------------------------------------------------------------------


def generate(workdir: Path, tickers: int, windows: int, rows: int, warehouses: list[Warehouse] | None = None) -> None:
    """Write tickers x windows EOD envelopes of `rows` rows each and register them in the ledger (of each of
    `warehouses`, default the DuckDB file in `workdir`)."""
    keymap = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")
    entry = next(e for e in keymap if e.silver.table == TABLE)
    store = BronzeStore(workdir / "bronze")
    fetched = dt.datetime(2025, 1, 2, 22, 0, tzinfo=dt.UTC)
    records = []
    for w in range(windows):
        for t in range(tickers):
            ticker = f"T{t:04d}"
            start = dt.date(1990, 1, 1) + dt.timedelta(days=w * rows)
            content = []
            for i in range(rows):
                price = 10.0 + (t % 50) + i * 0.01
                content.append(
                    {
                        "symbol": ticker,
                        "date": (start + dt.timedelta(days=i)).isoformat(),
                        "open": price,
                        "high": price + 0.5,
                        "low": price - 0.5,
                        "close": price + 0.1,
                        "volume": 1_000_000 + i,
                        "change": 0.1,
                        "changePercent": 0.98,
                        "vwap": price + 0.05,
                    }
                )
            env = BronzeEnvelope(
                file_id=new_file_id(),
                run_id="bench-fetch",
                identity=DatasetIdentity(entry.domain, entry.source, entry.dataset, "", ticker),
                request=RequestInfo(entry.recipe.path, "https://example.test/eod", {"symbol": ticker}),
                fetched_at=fetched + dt.timedelta(seconds=w * tickers + t),
                elapsed_ms=1.0,
                attempts=1,
                status_code=200,
                headers={},
                body_sha256="",
                bytes=0,
                content_format="json",
                content=content,
                row_count=rows,
                coverage_from=start,
                coverage_to=start + dt.timedelta(days=rows - 1),
                error_class=None,
                error_message=None,
                can_promote=True,
            )
            stored = store.write(env, journal="bench")
            records.append(file_record(env, stored.relative, TABLE, stored.md5))
    for warehouse in warehouses or [Warehouse(workdir / "warehouse.duckdb")]:
        with warehouse.transaction() as conn:
            file_ingestions.register_files(conn, records)
    store.close_journal("bench")


# ---- phases (each in its own process) ----------------------------------------------------------------------


def phase_baseline(workdir: Path) -> dict:
    with Warehouse(workdir / "warehouse.duckdb").connect() as conn:
        paths = [
            str(workdir / "bronze" / r[0])
            for r in conn.execute("SELECT bronze_path FROM ops.file_ingestions ORDER BY ingestion_id").fetchall()
        ]
    target = workdir / "baseline.duckdb"
    target.unlink(missing_ok=True)
    conn = duckdb.connect(str(target))
    conn.execute(BASELINE_DDL)
    conn.execute("SELECT 1 FROM read_json($p, format = 'auto') LIMIT 1", {"p": paths[:1]})  # load the extension
    start = time.perf_counter()
    conn.execute(BASELINE_SQL, {"paths": paths})
    elapsed = time.perf_counter() - start
    rows = conn.execute("SELECT count(*) FROM bench_eod").fetchone()[0]
    conn.close()
    return {"seconds": elapsed, "rows": rows, "files": len(paths)}


def _promote_all(workdir: Path, run_id: str) -> dict:
    keymap = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")
    warehouse = Warehouse(workdir / "warehouse.duckdb")
    with warehouse.connect() as conn:
        files = file_ingestions.promotable_files(conn, tables=[TABLE])
        conn.execute(
            "SELECT 1 FROM read_json($p, format = 'auto') LIMIT 1",
            {"p": [str(workdir / "bronze" / files[0].bronze_path)]},
        )  # load the extension
    totals = dict.fromkeys(("rows_read", "inserted", "updated", "unchanged", "rejected", "duplicates"), 0)
    calls = 0
    start = time.perf_counter()
    for i in range(0, len(files), BATCH_FILES):
        with warehouse.transaction() as conn:
            result = promote_files(conn, keymap, TABLE, files[i : i + BATCH_FILES], workdir / "bronze", run_id)
        calls += 1
        for k in totals:
            totals[k] += getattr(result, k)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "files": len(files), "calls": calls, **totals}


def phase_promote(workdir: Path) -> dict:
    return _promote_all(workdir, "bench-promote")


def phase_repromote(workdir: Path) -> dict:
    """Reset the ledger (not Silver) and promote the same files again: everything must come out unchanged."""
    with Warehouse(workdir / "warehouse.duckdb").transaction() as conn:
        conn.execute("UPDATE ops.file_ingestions SET silver_status = NULL WHERE silver_table = ?", [TABLE])
    return _promote_all(workdir, "bench-repromote")


PHASES = {"baseline": phase_baseline, "promote": phase_promote, "repromote": phase_repromote}


def run_phase(name: str, workdir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline_tests.bench.bench_silver", "--phase", name, "--workdir", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- report ------------------------------------------------------------------------------------------------

LABELS = {
    "baseline": "baseline read_json + INSERT OR REPLACE",
    "promote": "first promotion (promote_files)",
    "repromote": "re-promotion of unchanged files",
}


def run_round(workdir: Path) -> dict[str, dict]:
    """One round: the baseline, then a first promotion from the pristine ledger, then its re-promotion."""
    out = {"baseline": run_phase("baseline", workdir)}
    shutil.copyfile(workdir / "pristine.duckdb", workdir / "warehouse.duckdb")
    out["promote"] = run_phase("promote", workdir)
    out["repromote"] = run_phase("repromote", workdir)
    return out


def summarize(rounds: list[dict[str, dict]]) -> dict:
    """Median and spread of every phase, and each phase's median rate over the median baseline rate."""
    results: dict = {}
    for name in LABELS:
        runs = [r[name] for r in rounds]
        rates = [r.get("rows_read", r.get("rows")) / r["seconds"] for r in runs]
        seconds = [r["seconds"] for r in runs]
        med = statistics.median(seconds)
        results[name] = {
            **runs[-1],
            "seconds": med,
            "seconds_all": seconds,
            "rows_per_s": statistics.median(rates),
            "spread": (max(seconds) - min(seconds)) / med if med else 0.0,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "changed_nothing": all(r.get("inserted", 0) == r.get("updated", 0) == 0 for r in runs),
        }
    base = results["baseline"]["rows_per_s"]
    for name in LABELS:
        results[name]["ratio"] = results[name]["rows_per_s"] / base
        # the ratio within each round: how much of the spread is shared load rather than the code
        results[name]["round_ratios"] = [
            (r[name].get("rows_read", r[name].get("rows")) / r[name]["seconds"])
            / (r["baseline"]["rows"] / r["baseline"]["seconds"])
            for r in rounds
        ]
    return results


def main(quick: bool = False, repeat: int = REPEAT) -> dict:
    repeat = max(repeat, 5)
    tickers, windows, rows = (20, 5, 50) if quick else (200, 10, 250)
    with tempfile.TemporaryDirectory(prefix="bench_silver_") as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        generate(workdir, tickers, windows, rows)
        shutil.copyfile(workdir / "warehouse.duckdb", workdir / "pristine.duckdb")
        print(
            f"generated {tickers * windows} envelopes x {rows} rows = {tickers * windows * rows:,} rows "
            f"in {time.perf_counter() - t0:.1f} s ({BATCH_FILES} files per promote_files call, {repeat} rounds)",
            flush=True,
        )
        rounds = []
        for i in range(repeat):
            rounds.append(run_round(workdir))
            print(
                f"  round {i + 1}/{repeat}: "
                + ", ".join(f"{name} {r['seconds']:.2f} s" for name, r in rounds[-1].items()),
                flush=True,
            )
    results = summarize(rounds)

    print(f"{'phase':<40}{'median s':>9}{'spread':>8}{'rows/s':>12}{'vs baseline':>13}{'rounds':>13}{'peak MiB':>10}")
    for name, label in LABELS.items():
        r = results[name]
        rr = r["round_ratios"]
        print(
            f"{label:<40}{r['seconds']:>9.2f}{r['spread']:>7.0%} {r['rows_per_s']:>12,.0f}{r['ratio']:>13.2f}"
            f"{min(rr):>6.2f}-{max(rr):<6.2f}{r['peak_rss_mib']:>10,.0f}"
        )
    p, rp = results["promote"], results["repromote"]
    print(
        f"first promotion: inserted={p['inserted']:,} updated={p['updated']:,} rejected={p['rejected']:,} "
        f"in {p['calls']} call(s)"
    )
    print(f"re-promotion:    inserted={rp['inserted']:,} updated={rp['updated']:,} unchanged={rp['unchanged']:,}")
    print("(spread = (max - min) / median of the rounds' seconds; rounds = range of the per-round ratios)")
    checks = {
        f"first promotion / baseline >= {TARGETS['promote']}": p["ratio"] >= TARGETS["promote"],
        f"unchanged re-promotion / baseline >= {TARGETS['repromote']}": rp["ratio"] >= TARGETS["repromote"],
        "peak RSS < 2 GiB": max(r["peak_rss_mib"] for r in results.values()) < PEAK_RSS_MIB,
        "re-promotion changed nothing": rp["changed_nothing"],
    }
    for label, ok in checks.items():
        print(f"  [{'ok' if ok else 'MISS'}] {label}")
    if quick:
        print("  (--quick is a smoke run: fixed per-call costs dominate 5,000 rows; the targets apply to the full run)")
    results["checks"] = checks
    return results


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=REPEAT, help=f"rounds (at least 5, default {REPEAT})")
    parser.add_argument("--phase", choices=sorted(PHASES))
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.phase:
        out = PHASES[args.phase](args.workdir)
        out["peak_rss_mib"] = peak_rss_mib()
        print(json.dumps(out))
    else:
        main(quick=args.quick, repeat=args.repeat)


if __name__ == "__main__":
    _cli()
