"""`pipeline demo | run | check | status | plan | replay | coverage`.

`run` materializes the graph through Dagster (the same definitions, partitions and checks the schedule and
the UI use) on a persistent instance, so its runs show up in `make ui`. It works from any directory: the
keymap, migrations and instance settings are found through the package and the environment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from pipeline import stopping
from pipeline.keymap.loader import KeymapError
from pipeline.log import FILE_ONLY
from pipeline.ops.runs import SourceMismatch
from pipeline.settings import PROJECT_ROOT, Settings, SettingsError, get_settings, load_settings
from pipeline.storage_errors import quiet_event_log_failures, storage_cause, storage_folders, storage_problem
from pipeline.warehouse.migrations import MigrationError

PROJECT_CONFIG_MARKER = "# Dagster instance settings for this project."  # first words of ./dagster.yaml
WRITING_COMMANDS = ("run", "demo", "replay")


def sync_instance_config(home: Path) -> bool:
    """Install the project's current dagster.yaml in `home`; returns whether the file changed.

    A home's dagster.yaml that this project wrote earlier (it starts with the marker) is replaced when the
    project's changed, so pools, run monitoring and retries are always the current ones; a file someone wrote
    by hand for their own DAGSTER_HOME is left alone.
    """
    source = PROJECT_ROOT / "dagster.yaml"
    config = home / "dagster.yaml"
    if not source.exists():
        return False
    wanted = source.read_text()
    if config.exists():
        have = config.read_text()
        if have == wanted or not have.startswith(PROJECT_CONFIG_MARKER):
            return False
    tmp = home / f".dagster.yaml.{os.getpid()}.tmp"
    tmp.write_text(wanted)
    os.replace(tmp, config)
    return True


def ensure_dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME, defaulting to <data>/dagster_home with the project's dagster.yaml (pools, retries).

    Two runs started at once on a new home would race to write dagster.yaml and to create the instance's
    SQLite tables ("table ... already exists"): both happen once, under an exclusive lock on the home.
    """
    import fcntl

    import dagster as dg

    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    with open(home / ".init.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        sync_instance_config(home)
        if not (home / ".initialized").exists():
            with dg.DagsterInstance.get() as instance:  # creates the run, event log and schedule storage
                instance.get_runs(limit=1)
                instance.event_log_storage.get_concurrency_keys()
                instance.all_instigator_state()
            (home / ".initialized").touch()
    return home


def _quiet_dagster() -> None:
    from pipeline.orchestration.dagster_env import apply_event_log_env

    warnings.filterwarnings("ignore")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    # A run over a range of N tickers plans each asset once instead of once per ticker (the cost: a failed CLI run
    # shows its partitions as missing, not failed); partition events go to the event log in batches.
    apply_event_log_env()


def cmd_run(args: argparse.Namespace, settings: Settings, *, demo: bool = False) -> int:
    from pipeline.cli.runner import refuse_other_source, run_pipeline

    refuse_other_source(settings)  # sample and live data never share a warehouse
    _quiet_dagster()
    ensure_dagster_home(settings)
    started = time.monotonic()
    log = logging.getLogger("pipeline.run")

    def echo(line: str) -> None:  # the run's report, on stdout and in the log file
        print(line)
        log.info(line, extra=FILE_ONLY)

    with quiet_event_log_failures() as dropped:
        outcome = run_pipeline(settings, select=args.select, echo=echo)
    if demo:
        from pipeline.cli.report import print_demo_summary

        print_demo_summary(settings, outcome, time.monotonic() - started)
    else:
        from pipeline.cli.report import print_run_summary

        print_run_summary(outcome, time.monotonic() - started)
    if outcome.success:
        return 0
    log.error(f"pipeline run failed: {outcome.failure_summary}", extra=FILE_ONLY)
    problem = storage_problem(" ".join([outcome.failure_summary, *dropped]), storage_folders(settings))
    if problem:  # a step failed because the disk filled up: say so in one line, as `main` does for the rest
        return _refuse(settings, f"storage error: {problem}", 4)
    return 1


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Run every asset check (or those of --select) against the current warehouse, through Dagster."""
    import dagster as dg

    from pipeline.keymap import load_keymap
    from pipeline.orchestration.definitions import build_definitions
    from pipeline.orchestration.runs import check_results, crashed_steps, run_checks
    from pipeline.warehouse.connection import Warehouse

    _quiet_dagster()
    if not Warehouse.from_settings(settings).exists():
        print(
            f"pipeline check: no warehouse at {settings.warehouse_label}; create it with `pipeline demo` or "
            "`pipeline run`",
            file=sys.stderr,
        )
        return 1
    ensure_dagster_home(settings)
    defs = build_definitions(settings, load_keymap(settings.keymap_path))
    selection = dg.AssetSelection.all_asset_checks()
    if args.select:
        graph = defs.resolve_asset_graph()
        assets = dg.AssetSelection.from_coercible(args.select.split(",")).resolve(graph)
        selection = dg.AssetSelection.checks(*[k for k in graph.asset_check_keys if k.asset_key in assets])
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        result = run_checks(defs, instance, selection, "pipeline check", log_level="CRITICAL")
    stopping.raise_if_requested()  # the signal came while Dagster ran the checks: their results are incomplete
    evaluations = sorted(check_results(result), key=lambda c: c.name)
    failed_error = 0
    for c in evaluations:
        if c.passed:
            continue
        failed_error += c.severity == "ERROR"
        print(f"  {c.severity:5} {c.name}: {c.description or 'failed'}")
    passed = sum(c.passed for c in evaluations)
    print(
        f"pipeline check: {passed}/{len(evaluations)} check(s) passed, {failed_error} ERROR check(s) failed, "
        f"{len(evaluations) - passed - failed_error} WARN; "
        f"run {result.run_id[:8]} in {time.monotonic() - started:.1f} s"
    )
    if not evaluations:
        print("pipeline check: no check matched the selection", file=sys.stderr)
        return 1
    crashed = crashed_steps(result)
    for message in crashed:
        print(f"pipeline check: a check step failed: {message[:500]}", file=sys.stderr)
    return 1 if failed_error or crashed else 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cli.status import status

    code = status(settings, run_id=args.run, limit=args.limit, show_plan=not args.no_plan)
    if not args.run:
        print_automation(settings)
    return code


def cmd_plan(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cli.forecast import plan_report
    from pipeline.keymap.model import PLAN_ORDER

    plans = [p.strip().lower() for p in args.plans.split(",") if p.strip()] if args.plans else None
    for plan in plans or []:
        if plan not in PLAN_ORDER:
            raise SettingsError(f"--plans: {plan!r} is not a plan; use some of {', '.join(PLAN_ORDER)}")
    return plan_report(settings, plans=plans, as_json=args.json)


def print_automation(settings: Settings) -> None:
    """What the sensors are waiting for (a run in progress, a pause after failures, parked for a person).

    Read from the Dagster instance the UI and the daemon use; nothing is printed when it does not exist yet.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_dir / "dagster_home")
    if not (home / "history").exists() and not (home / "storage").exists():
        return
    _quiet_dagster()
    import dagster as dg

    from pipeline.orchestration.sensors import automation_report

    os.environ["DAGSTER_HOME"] = str(home.resolve())
    try:
        with dg.DagsterInstance.get() as instance:
            lines = automation_report(instance)
    except Exception as exc:  # noqa: BLE001 - status must still print what it could read
        found = storage_cause(exc, [home])
        why = found[1] if found else " ".join(str(exc).split())[:300]
        print(f"\nSensors: not shown, the Dagster instance in {home} could not be opened: {why}")
        return
    print("\nSensors: " + ("nothing waiting" if not lines else ""))
    for line in lines:
        print(f"  {line}")


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.cli.ui import serve

    ensure_dagster_home(settings)  # the project's current dagster.yaml (pools, run monitoring, retries)
    return serve(args.host, args.port)


def cmd_coverage(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ops.coverage import coverage

    return coverage(settings, html_path=args.html, dataset=args.dataset)


READONLY_EXIT_CODES = """exit codes: 0 printed; 1 no warehouse yet (create it with `pipeline demo` or `pipeline run`)
or nothing matched; 2 configuration error; 3 a run is writing the warehouse (read-only, does not wait:
try again in a moment)"""


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Register any Bronze file the ledger lacks, then rebuild the chosen Silver tables from Bronze (no API call).

    Files that fail to parse or to verify are quarantined and named, and the rows they had promoted are kept; a file
    that cannot be read now stops the replay, which then changes nothing."""
    import uuid

    from pipeline.bronze.recovery import register_unknown_files
    from pipeline.bronze.store import BronzeStore
    from pipeline.keymap import load_keymap
    from pipeline.settings import parse_tickers
    from pipeline.silver.errors import PromotionError
    from pipeline.silver.replay import replay
    from pipeline.text_table import text_table
    from pipeline.warehouse.connection import Warehouse

    keymap = load_keymap(settings.keymap_path)
    tables = [args.table] if args.table else None
    if args.table and args.table not in keymap.tables():
        print(
            f"pipeline replay: unknown table {args.table!r}; tables: {', '.join(sorted(keymap.tables()))}",
            file=sys.stderr,
        )
        return 1
    tickers = list(parse_tickers(args.tickers, "--tickers")) if args.tickers else None
    warehouse = Warehouse.from_settings(settings)
    by_identity = {e.identity: e.silver.table for e in keymap}
    problems: list[str] = []
    with warehouse.transaction() as conn:
        found = register_unknown_files(
            conn,
            BronzeStore.at(settings.bronze_location),
            lambda ident: by_identity.get(ident.without_ticker()),
            problems=problems,
        )
    if found:
        print(f"registered {found} Bronze file(s) the ledger did not know")
    for problem in problems:
        print(f"  {problem} (kept on disk, never promoted)")
    run_id = f"replay-{uuid.uuid4()}"
    started = time.monotonic()
    since = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # the ledger's times are naive UTC
    try:
        results = replay(warehouse, keymap, settings.bronze_location, run_id, tables=tables, tickers=tickers)
    except PromotionError as exc:  # a file that cannot be read now: the replay was rolled back
        print(f"pipeline replay: {exc}", file=sys.stderr)
        return 1
    by_table: dict[str, list] = {}
    for r in results:
        by_table.setdefault(r.table, []).append(r)
    print(
        f"replayed {len(by_table)} table(s) from Bronze in {time.monotonic() - started:.1f} s, "
        f"0 API calls (run {run_id})"
    )
    cells = [
        [
            f"silver.{table}",
            f"{sum(r.files for r in rs):,}",
            f"{sum(r.inserted for r in rs):,}",
            f"{sum(r.rejected for r in rs):,}",
            f"{sum(len(r.failed) for r in rs):,}",
        ]
        for table, rs in sorted(by_table.items())
    ]
    for line in text_table(cells, ["table", "files", "rows", "rejected", "failed files"], "lrrrr"):
        print(f"  {line}")
    alarming = _report_quarantined(warehouse, run_id, since, [f for r in results for f in r.failed])
    # a cron or CI caller must see that some files could not be promoted (they are kept and named above)
    return 1 if alarming or problems else 0


def _report_quarantined(warehouse, run_id: str, since: dt.datetime, failed: list) -> int:
    """Name every Bronze file the replay could not read: newly quarantined, or quarantined earlier and still waiting
    for its refetch (those earlier quarantined files a later fetch replaced are only counted). Returns how many of
    them call for attention (new, or still waiting)."""
    from pipeline.ops.quarantine import quarantined_files

    if not failed:
        return 0
    with warehouse.connect() as conn:
        found = {q.file_id: q for q in quarantined_files(conn, run_ids=[run_id], unresolved_only=False)}
        waiting = {q.file_id for q in quarantined_files(conn, run_ids=[run_id])}
    lines, replaced = [], 0
    for f in failed:
        q = found.get(f.file_id)
        if q is None:  # not quarantined (replay stops on transient problems, so this is not expected)
            lines.append(f"  failed to promote {f.file_id}: {f.error}")
        elif q.quarantined_at >= since:
            kept = f"{f.inserted + f.updated:,} row version(s) it had promoted stay in Silver"
            then = "its window is due for a refetch" if q.file_id in waiting else "a later fetch already covers it"
            lines.append(f"  quarantined {q.bronze_path}: {q.reason} (kept on disk, never promoted; {kept}; {then})")
        elif q.file_id in waiting:
            lines.append(
                f"  still quarantined {q.bronze_path} (since {q.quarantined_at:%Y-%m-%d}): {q.reason} "
                "(its window is due for a refetch)"
            )
        else:
            replaced += 1
    for line in lines[:50]:
        print(line)
    if len(lines) > 50:
        print(f"  ... and {len(lines) - 50} more (see `pipeline status` and ops.file_ingestions.quarantine_reason)")
    if replaced:
        print(f"  kept the rows of {replaced} quarantined file(s) whose windows later fetches replaced")
    return len(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline", description="Market-data warehouse: FMP -> Bronze -> Silver -> Gold."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="materialize the whole graph (or --select) through Dagster")
    p_run.add_argument(
        "--select",
        help="Dagster asset selection, e.g. 'bronze/prices/historical-price-eod,silver/fmp_price_eod' "
        "or '*gold/fact_price_daily'",
    )
    p_run.set_defaults(func=cmd_run)

    p_demo = sub.add_parser("demo", help="run on the bundled sample source and print a summary")
    p_demo.add_argument("--select", help=argparse.SUPPRESS)
    p_demo.set_defaults(func=lambda a, s: cmd_run(a, s, demo=True))

    p_check = sub.add_parser(
        "check",
        help="run every asset check against the current warehouse through Dagster; exit 1 when an ERROR check fails",
    )
    p_check.add_argument("--select", help="only the checks of these assets (Dagster asset selection syntax)")
    p_check.set_defaults(func=cmd_check)

    p_status = sub.add_parser(
        "status", help="recent runs, one run's files, and what is due next (read-only)", epilog=READONLY_EXIT_CODES
    )
    p_status.add_argument("--run", help="show the file ingestions of this run id (a unique prefix is enough)")
    p_status.add_argument("--limit", type=int, default=10, help="how many recent runs (default 10)")
    p_status.add_argument("--no-plan", action="store_true", help="skip the 'what is due next' section")
    p_status.set_defaults(func=cmd_status)

    p_plan = sub.add_parser(
        "plan",
        help="what the next run would request per dataset, its bytes and minutes at the plan's rate, and the "
        "bandwidth left (read-only, no network)",
        epilog=READONLY_EXIT_CODES,
    )
    p_plan.add_argument(
        "--plans",
        help="compare plans on their published figures, e.g. starter,premium,ultimate (default: FMP_PLAN and the "
        "configured limits)",
    )
    p_plan.add_argument("--json", action="store_true", help="print the forecast as JSON (for benchmarks and scripts)")
    p_plan.set_defaults(func=cmd_plan)

    p_cov = sub.add_parser(
        "coverage",
        help="first/last date, files, errors and gaps per dataset and ticker (read-only)",
        epilog=READONLY_EXIT_CODES,
    )
    p_cov.add_argument("--html", default=None, help="write the HTML report here (default <data>/coverage.html)")
    p_cov.add_argument(
        "--dataset", default=None, help="only this dataset (name, asset name, dataset/discriminator or Silver table)"
    )
    p_cov.set_defaults(func=cmd_coverage)

    p_ui = sub.add_parser(
        "ui", help="the Dagster UI and daemon (dg dev); SIGTERM or SIGINT stops all of it (what `make ui` runs)"
    )
    p_ui.add_argument("--host", default="127.0.0.1")
    p_ui.add_argument("--port", type=int, default=3000)
    p_ui.set_defaults(func=cmd_ui)

    p_replay = sub.add_parser("replay", help="rebuild Silver from Bronze with zero API calls")
    p_replay.add_argument("--table", default=None, help="only this Silver table (default: all)")
    p_replay.add_argument("--tickers", default=None, help="comma-separated tickers (default: all)")
    p_replay.set_defaults(func=cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The `pipeline` command. Run as a program (no `argv`), SIGTERM and SIGINT stop it within seconds with exit
    code 128 + the signal (`pipeline.stopping`); called with `argv` (tests), the caller's signal handling stays."""
    if argv is None:
        stopping.install()
    code = _main(argv)
    if argv is None and stopping.requested() is not None:
        stopping.exit_now(code)  # without waiting for threads still blocked in a request
    return code


def _main(argv: Sequence[str] | None) -> int:
    """Run one command. Every way it can be refused is one line on stderr (and in the log file): exit 2 for a
    configuration, source, keymap or migration error, 4 when the data folder cannot be written (read-only, full)."""
    args = build_parser().parse_args(argv)
    settings: Settings | None = None
    try:
        if args.command == "demo":  # the demo chooses the bundled sample source explicitly
            settings = load_settings({**os.environ, "PIPELINE_SOURCE": "sample"})
        else:
            settings = get_settings()
        from pipeline.log import get_logger

        get_logger("pipeline", settings)  # console + dated file under <data>/logs, key scrubbed
        _file_log(settings, logging.INFO, f"pipeline {args.command} started: source {settings.source_label}, "
                  f"as of {settings.today()}, data in {settings.data_dir}")  # fmt: skip
        code = int(args.func(args, settings) or 0)
        _file_log(settings, logging.INFO if code == 0 else logging.ERROR, f"pipeline {args.command}: exit code {code}")
        return code
    except stopping.Stopped as exc:
        kept = "; what was written so far is kept and registered" if args.command in WRITING_COMMANDS else ""
        print(f"pipeline {args.command}: {exc}{kept}", file=sys.stderr)
        if settings is not None:
            _file_log(settings, logging.WARNING, f"pipeline {args.command}: {exc}{kept}")
        return stopping.exit_code(exc.signum)
    except SettingsError as exc:
        return _refuse(settings, f"configuration error: {exc}", 2)
    except SourceMismatch as exc:
        return _refuse(settings, f"source error: {exc}", 2)
    except (KeymapError, MigrationError) as exc:
        # one line naming the file (a YAML parser error spans several lines), no traceback
        kind = "keymap" if isinstance(exc, KeymapError) else "migration"
        return _refuse(settings, f"{kind} error: {' '.join(str(exc).split())}", 2)
    except Exception as exc:
        problem = storage_problem(exc, storage_folders(settings)) if settings else None
        if problem is None:
            if settings:
                logging.getLogger("pipeline.cli").exception(f"pipeline {args.command} crashed", extra=FILE_ONLY)
            raise
        return _refuse(settings, f"storage error: {problem}", 4)


def _file_log(settings: Settings | None, level: int, message: str) -> None:
    """Into the log file only (the console already showed it); nothing before the settings, and so the log, exist."""
    if settings is not None:
        logging.getLogger("pipeline.cli").log(level, message, extra=FILE_ONLY)


def _refuse(settings: Settings | None, message: str, code: int) -> int:
    print(f"pipeline: {message}", file=sys.stderr)
    _file_log(settings, logging.ERROR, message)
    return code


if __name__ == "__main__":
    sys.exit(main())
