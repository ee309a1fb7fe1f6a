"""Run every benchmark and print one summary table: benchmark | value | target | met?

    python -m pipeline_tests.bench.run_all            # full benches (about 35 minutes on 2 cores)
    python -m pipeline_tests.bench.run_all --quick    # each bench in its quick mode (about 2 minutes)
    python -m pipeline_tests.bench.run_all --only ledger,definitions
    python -m pipeline_tests.bench.run_all --only market    # the whole-market bench, opt-in (6,000 tickers)

Each bench also prints its own detailed table as it runs. Exit code: 0 when every bench ran (targets missed or
not: the summary says which), 1 with --strict when a target was missed, 2 when a bench crashed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    bench: str
    measure: str
    value: str
    target: str
    met: bool | None  # None: informational


def run_client(quick: bool) -> list[Line]:
    from pipeline_tests.bench import bench_client

    captured: list = []
    original = bench_client.print_table

    def capture(rows):
        captured.extend(rows)
        original(rows)

    bench_client.print_table = capture
    try:
        bench_client.main(quick=quick)
    finally:
        bench_client.print_table = original
    return [Line("client", r.measure, r.value, r.target, r.passed if r.target else None) for r in captured]


def run_silver(quick: bool) -> list[Line]:
    from pipeline_tests.bench import bench_silver

    res = bench_silver.main(quick=quick)
    p, rp = res["promote"], res["repromote"]
    peak = max(r["peak_rss_mib"] for r in res.values() if isinstance(r, dict) and "peak_rss_mib" in r)
    checks = res["checks"]
    first, again = bench_silver.TARGETS["promote"], bench_silver.TARGETS["repromote"]
    return [
        Line(
            "silver",
            "first promotion / baseline rows/s (median)",
            f"{p['ratio']:.2f} ({p['rows_per_s']:,.0f} rows/s, spread {p['spread']:.0%})",
            f">= {first}",
            checks[f"first promotion / baseline >= {first}"],
        ),
        Line(
            "silver",
            "unchanged re-promotion / baseline rows/s (median)",
            f"{rp['ratio']:.2f} ({rp['rows_per_s']:,.0f} rows/s, spread {rp['spread']:.0%})",
            f">= {again}",
            checks[f"unchanged re-promotion / baseline >= {again}"],
        ),
        Line("silver", "peak RSS", f"{peak:,.0f} MiB", "< 2048 MiB", checks["peak RSS < 2 GiB"]),
        Line(
            "silver",
            "re-promotion inserted/updated",
            f"{rp['inserted']}/{rp['updated']}",
            "0/0",
            checks["re-promotion changed nothing"],
        ),
    ]


def run_ledger(quick: bool) -> list[Line]:
    from pipeline_tests.bench import bench_ledger

    res = bench_ledger.main(quick=quick)
    small, large = res["sizes"]
    out = []
    for r in res["rows"]:
        sensor = r["operation"] in bench_ledger.SENSORS
        target = (
            f"< {bench_ledger.SENSOR_TARGET_S:g} s, " if sensor else ""
        ) + f"growth <= {bench_ledger.GROWTH_TARGET:g}x"
        out.append(
            Line(
                "ledger",
                f"{r['operation']} ({small:,} -> {large:,} rows)",
                f"{r['small_s']:.3f} s -> {r['large_s']:.3f} s ({r['growth']:.2f}x)",
                target,
                r["ok"],
            )
        )
    return out


def run_definitions(quick: bool) -> list[Line]:
    from pipeline_tests.bench import bench_definitions

    res = bench_definitions.main(quick=quick)
    return [
        Line(
            "definitions",
            f"load, {bench_definitions.TICKERS:,} tickers (fresh process)",
            f"{res['wall_s']:.2f} s",
            f"< {bench_definitions.TARGET_S:g} s",
            res["wall_s"] < bench_definitions.TARGET_S,
        ),
        Line("definitions", "load, empty instance (baseline)", f"{res['baseline_wall_s']:.2f} s", "", None),
    ]


def run_backfill(quick: bool) -> list[Line]:
    from pipeline_tests.bench import bench_backfill

    res = bench_backfill.main(quick=quick)
    r = res["results"]
    n = res["tickers"]
    out = [
        Line("backfill", f"{n} tickers: library wall", f"{r['library']['seconds']:.1f} s", "", None),
        Line("backfill", f"{n} tickers: cli wall (pipeline run)", f"{r['cli']['seconds']:.1f} s", "", None),
        Line(
            "backfill",
            "cli / library (Dagster on SQLite)",
            f"{res['ratio']:.2f}",
            f"<= {bench_backfill.RATIO_TARGET:g}",
            res["ratio"] <= bench_backfill.RATIO_TARGET,
        ),
        Line(
            "backfill",
            "cli / library (Dagster on PostgreSQL)",
            f"{res['ratio_pg']:.2f}" if res["ratio_pg"] is not None else f"skipped: {r['cli_pg']['skipped']}"[:60],
            f"<= {bench_backfill.RATIO_TARGET:g}",
            res["ratio_pg"] <= bench_backfill.RATIO_TARGET if res["ratio_pg"] is not None else None,
        ),
        Line(
            "backfill",
            "Dagster runs launched by the cli",
            str(res["cli_runs"]),
            f"<= {bench_backfill.RUNS_TARGET}",
            (res["cli_runs"] or 10**9) <= bench_backfill.RUNS_TARGET,
        ),
        Line(
            "backfill",
            "cli result equals library result",
            "yes" if res["checks"]["cli exit code 0 and same result as the library"] else "no",
            "yes",
            res["checks"]["cli exit code 0 and same result as the library"],
        ),
    ]
    ui = r.get("ui")
    if ui and "error" not in ui:
        out += [
            Line(
                "backfill",
                f"{n} tickers: ui backfill, launch -> done",
                f"{ui['seconds']:.1f} s ({ui['status']})",
                "",
                None,
            ),
            Line(
                "backfill",
                "ui backfill launch -> done / library",
                f"{ui['seconds'] / r['library']['seconds']:.2f}",
                f"<= {bench_backfill.UI_RATIO_TARGET:g}",
                ui["seconds"] / r["library"]["seconds"] <= bench_backfill.UI_RATIO_TARGET,
            ),
            Line(
                "backfill",
                "ui backfill launch -> last run end / library",
                f"{(ui['to_last_run_end_s'] or 0) / r['library']['seconds']:.2f} (run alone "
                f"{(ui['run_span_s'] or 0) / r['library']['seconds']:.2f})",
                f"daemon ticks every {bench_backfill.BACKFILL_DAEMON_TICK_S} s",
                None,
            ),
            Line(
                "backfill",
                "Dagster runs launched by the ui backfill",
                str(ui["runs"]),
                f"<= {bench_backfill.RUNS_TARGET}",
                ui["runs"] <= bench_backfill.RUNS_TARGET,
            ),
        ]
    elif ui:
        out.append(Line("backfill", "ui backfill", ui["error"][:60], "", False))
    else:
        out.append(Line("backfill", "ui backfill", "skipped (--quick)", "", None))
    return out


def run_lake(quick: bool) -> list[Line]:
    from pipeline_tests.bench import bench_lake

    res = bench_lake.main(quick=quick)
    base = res["file_1"]
    out = [
        Line("lake", "Silver promotion, DuckDB file, 1 writer", f"{base['rows_per_s']:,.0f} rows/s", "baseline", None)
    ]
    if res.get("lake_skipped"):
        return out + [Line("lake", "DuckLake writers", "skipped: no PostgreSQL", "", None)]
    for key, label in (("lake_1", "DuckLake, 1 writer / file"), ("lake_2", "DuckLake, 2 concurrent writers / file")):
        r = res[key]
        out.append(
            Line(
                "lake",
                label,
                f"{r['ratio']:.2f} ({r['rows_per_s']:,.0f} rows/s, {r['conflicts']} retries)",
                "measured",
                None,
            )
        )
    return out


def run_market(quick: bool) -> list[Line]:
    """The whole-market benchmark (bench_market): opt-in (`--only market`), since 6,000 tickers take long."""
    from pipeline_tests.bench import bench_market

    res = bench_market.main(n=50 if quick else 6000)
    return [
        Line("market", f"{res['universe']:,} tickers: {label}", value, target, met)
        for label, value, target, met in res["rows"]
    ]


def run_ui_backfill(quick: bool) -> list[Line]:
    from pipeline_tests.bench import bench_ui_backfill as bench

    # 500 tickers in `make bench` (5,000 take one to several hours on SQLite: `python -m
    # pipeline_tests.bench.bench_ui_backfill --tickers 5000`)
    r = bench.main(100 if quick else 500)
    t, q = bench.TARGETS, r["quiet"]
    n = f"{r['tickers']:,} tickers"
    return [
        Line(
            "ui_backfill",
            f"{n}: launch -> done / library",
            f"{r['ratio']:.2f}",
            f"<= {t['ratio']:g}",
            r["ratio"] <= t["ratio"],
        ),
        Line(
            "ui_backfill",
            "planned events per run and asset",
            f"{r['planned_per_asset_run']:.2f}",
            f"<= {t['planned_per_asset_run']:g}",
            r["planned_per_asset_run"] <= t["planned_per_asset_run"],
        ),
        Line(
            "ui_backfill",
            "event-log rows per changed partition and asset",
            f"{r['rows_per_changed']:.2f}",
            f"<= {t['rows_per_changed']:g}",
            r["rows_per_changed"] <= t["rows_per_changed"],
        ),
        Line(
            "ui_backfill",
            f"{n}: SQLite growth",
            f"{r['growth_mib']:.0f} MiB",
            f"<= {t['growth_mib']:g} MiB",
            r["growth_mib"] <= t["growth_mib"],
        ),
        Line(
            "ui_backfill",
            "quiet daily refresh: event rows (materializations)",
            f"{q['rows']:,} ({q['materializations']:,})",
            "reported",
            None,
        ),
    ]


BENCHES: dict[str, Callable[[bool], list[Line]]] = {
    "client": run_client,
    "silver": run_silver,
    "ledger": run_ledger,
    "definitions": run_definitions,
    "backfill": run_backfill,
    "lake": run_lake,
    "market": run_market,
    "ui_backfill": run_ui_backfill,
}
OPT_IN = ("market",)  # run only when named in --only (also `make bench-market`)


def print_summary(lines: list[Line]) -> None:
    head = ("benchmark", "value", "target", "met?")
    cells = [
        (
            f"{line.bench}: {line.measure}",
            line.value,
            line.target,
            "-" if line.met is None else ("yes" if line.met else "NO"),
        )
        for line in lines
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*head))
    print("-+-".join("-" * w for w in widths))
    for c in cells:
        print(fmt.format(*c))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="run each bench in its quick mode")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(BENCHES)}")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    chosen = [b.strip() for b in args.only.split(",") if b.strip()] or [b for b in BENCHES if b not in OPT_IN]
    unknown = [b for b in chosen if b not in BENCHES]
    if unknown:
        parser.error(f"unknown bench(es) {unknown}; choose from {', '.join(BENCHES)}")

    lines: list[Line] = []
    crashed = False
    started = time.monotonic()
    for name in chosen:
        print(f"\n==================== bench_{name}{' (quick)' if args.quick else ''} ====================", flush=True)
        t0 = time.monotonic()
        try:
            lines += BENCHES[name](args.quick)
        except Exception as exc:  # noqa: BLE001 - one crashed bench must not hide the others
            traceback.print_exc()
            lines.append(Line(name, "crashed", f"{type(exc).__name__}: {exc}"[:80], "runs", False))
            crashed = True
        print(f"(bench_{name}: {time.monotonic() - t0:.0f} s)", flush=True)

    print(
        f"\n==================== summary ({'quick' if args.quick else 'full'}, "
        f"{time.monotonic() - started:.0f} s) ===================="
    )
    print_summary(lines)
    if args.quick:
        print("(quick mode: smaller inputs; the targets are stated for the full benches)")
    if crashed:
        return 2
    if args.strict and any(line.met is False for line in lines):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
