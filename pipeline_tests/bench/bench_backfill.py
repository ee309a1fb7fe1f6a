"""Benchmark of a 500-ticker Bronze + Silver backfill: `pipeline run` (through Dagster) vs the library functions.

Why: DESIGN section 3 promises that a 500-ticker backfill does not cost 500 process launches (partitioned
assets use a single-run backfill policy and `pipeline run` sends ranges of tickers). This measures what the
orchestration costs on top of the same work done by plain function calls.

The work: profile, one year of daily prices (history_start one year before PIPELINE_AS_OF) and the quarterly
income, balance-sheet and cash-flow statements for 500 synthetic tickers (T0001..T0500), from a FakeFmpServer
(real loopback HTTP, 20 ms latency per request, no rate limit) that serves the bundled sample source. The keymap
is a copy of the shipped one reduced to those five entries (PIPELINE_KEYMAP, in a temp dir).

  cli      `pipeline run --select <the five Bronze assets and their Silver tables>` in a fresh process, with
           FMP_API_KEY=test-key, FMP_BASE_URL at the fake, PIPELINE_TICKERS, PIPELINE_AS_OF,
           FMP_MAX_CONCURRENCY=8 and a fresh DAGSTER_HOME (the project's dagster.yaml); runs are counted from
           that instance afterwards.
  library  a fresh process that calls `run_bronze` once (one FmpClient on the same kind of fake) and then
           `promote_files` per Silver table in batches of 2,000 files, as bench_silver does.
  cli_pg   the cli case with the Dagster instance on PostgreSQL (deploy/dagster-postgres.yaml, a fresh database
           on PIPELINE_TEST_POSTGRES_URL; skipped with the reason when no server answers), so that the
           ratio is printed for both storages side by side.
  ui       (full mode only) `dagster dev` headless on a fresh DAGSTER_HOME, `launchPartitionBackfill` through
           GraphQL for all 500 partitions of the same assets, polled until the backfill is done.

Each case gets a fresh data dir and its own fake server process (so the server's CPU does not share a GIL with
the measured process). FMP_CALLS_PER_MINUTE is set far above what 8 connections can send, so no client-side
limiter throttles either side ("no rate limit"). Targets: CLI / library wall time <= 1.5; Dagster runs launched
by the CLI <= 10.

    python -m pipeline_tests.bench.bench_backfill            # 500 tickers: cli, library, ui backfill
    python -m pipeline_tests.bench.bench_backfill --quick    # 50 tickers: cli and library only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

AS_OF = dt.date(2025, 11, 14)
API_KEY = "test-key"
LATENCY_S = 0.02
CONCURRENCY = 8
ENTRIES = (
    ("company", "profile", ""),
    ("prices", "historical-price-eod", ""),
    ("fundamentals", "income-statement", "quarter"),
    ("fundamentals", "balance-sheet-statement", "quarter"),
    ("fundamentals", "cash-flow-statement", "quarter"),
)
RATIO_TARGET = 1.5
UI_RATIO_TARGET = 2.0
# Dagster 1.13's backfill daemon evaluates backfills every 30 s (DEFAULT_DAEMON_INTERVAL_SECONDS, not configurable):
# a backfill waits up to one tick to start and up to one more, after its last run, to be marked done.
BACKFILL_DAEMON_TICK_S = 30
RUNS_TARGET = 10
BATCH_FILES = 2000
ROOT = Path(__file__).resolve().parents[2]


def tickers(n: int) -> list[str]:
    return [f"T{i:04d}" for i in range(1, n + 1)]


# ---- setup -------------------------------------------------------------------------------------------------


def write_keymap(path: Path) -> None:
    """The shipped keymap reduced to ENTRIES, prices starting one year before AS_OF."""
    import yaml

    from pipeline.settings import PROJECT_ROOT

    doc = yaml.safe_load((PROJECT_ROOT / "dataset_keymap.yaml").read_text())
    keep = []
    for d in doc["datasets"]:
        if (d["domain"], d["dataset"], d.get("discriminator") or "") in ENTRIES:
            if d["recipe"].get("history_start") or d["recipe"].get("history_days"):
                d["recipe"].pop("history_days", None)
                d["recipe"]["history_start"] = AS_OF.replace(year=AS_OF.year - 1).isoformat()
            keep.append(d)
    assert len(keep) == len(ENTRIES), [d["dataset"] for d in keep]
    doc["datasets"] = keep
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def selection(keymap_path: Path) -> str:
    from pipeline.keymap import load_keymap
    from pipeline.orchestration.assets import bronze_key, silver_key

    keymap = load_keymap(keymap_path)
    keys = [bronze_key(e) for e in keymap] + [silver_key(t) for t in sorted(keymap.tables())]
    return ",".join(k.to_user_string() for k in keys)


def base_env(workdir: Path, keymap_path: Path, n: int, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FMP_", "PIPELINE_", "DAGSTER_"))}
    env.update(
        {
            "FMP_API_KEY": API_KEY,
            "FMP_BASE_URL": base_url,
            "FMP_MAX_CONCURRENCY": str(CONCURRENCY),
            "FMP_CALLS_PER_MINUTE": "1000000",
            "PIPELINE_TICKERS": ",".join(tickers(n)),
            "PIPELINE_AS_OF": AS_OF.isoformat(),
            "PIPELINE_KEYMAP": str(keymap_path),
            "PIPELINE_DATA_DIR": str(workdir / "data"),
            "DAGSTER_HOME": str(workdir / "dagster_home"),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PYTHONWARNINGS": "ignore",
        }
    )
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class FakeServerProcess:
    """FakeFmpServer serving the sample source for `n` tickers, in its own process."""

    def __init__(self, n: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline_tests.bench.bench_backfill", "--serve", str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"fake server did not start: {self.base_url!r}")

    def stop(self) -> int:
        """Stop the server; returns how many requests it answered."""
        self.proc.stdin.close()
        out = self.proc.stdout.read().strip()
        self.proc.wait(timeout=30)
        return int(out.splitlines()[-1]) if out else -1


def serve(n: int) -> None:
    from pipeline.fmp.sample import SampleSource
    from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data

    source = SampleSource(as_of=AS_OF, tickers=tickers(n))

    with FakeFmpServer(api_key=API_KEY, data=sample_data(source), latency_s=LATENCY_S, calls_per_minute=None) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        print(len(server.requests), flush=True)


# ---- phases (fresh processes) --------------------------------------------------------------------------------


def phase_library() -> dict:
    """run_bronze with one client, then promote_files per table: the work without Dagster."""
    from pipeline.bronze.fetch import run_bronze
    from pipeline.bronze.store import BronzeStore
    from pipeline.fmp.client import FmpClient
    from pipeline.keymap import load_keymap
    from pipeline.ops import file_ingestions
    from pipeline.settings import load_settings
    from pipeline.silver.promote import promote_files
    from pipeline.warehouse.connection import Warehouse

    started = time.perf_counter()
    settings = load_settings()
    keymap = load_keymap(settings.keymap_path)
    warehouse = Warehouse(settings.warehouse_path)
    with FmpClient.from_settings(settings) as client:
        report = run_bronze(
            entries=list(keymap),
            tickers=settings.tickers,
            warehouse=warehouse,
            store=BronzeStore(settings.bronze_dir),
            client=client,
            run_id="bench-library",
            today=settings.today(),
            fmp_plan=settings.fmp_plan,
            source_mode="fmp",
            max_concurrency=settings.max_concurrency,
        )
    bronze_s = time.perf_counter() - started
    for table in sorted(keymap.tables()):
        with warehouse.connect() as conn:
            files = file_ingestions.promotable_files(conn, tables=[table])
        for i in range(0, len(files), BATCH_FILES):
            with warehouse.transaction() as conn:
                promote_files(
                    conn, keymap, table, files[i : i + BATCH_FILES], settings.bronze_dir, "bench-library-silver"
                )
    return {
        "seconds": time.perf_counter() - started,
        "bronze_s": bronze_s,
        "requests": report.requests,
        "hard_failures": report.hard_failures,
    }


def phase_stats() -> dict:
    """What a case produced: ledger files, promoted files, Silver rows per table (to check equal work)."""
    from pipeline.settings import load_settings
    from pipeline.warehouse.connection import Warehouse

    settings = load_settings()
    with Warehouse(settings.warehouse_path).reader() as conn:
        files, promoted, errors = conn.execute("""
            SELECT count(*), count(*) FILTER (WHERE silver_status = 'promoted'), count(error_class)
            FROM ops.file_ingestions""").fetchone()
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'silver' "
                "AND NOT ends_with(table_name, '__history') ORDER BY 1"
            ).fetchall()
        ]
        rows = {t: conn.execute(f'SELECT count(*) FROM silver."{t}"').fetchone()[0] for t in tables}
    out = {"files": files, "promoted": promoted, "errors": errors, "silver_rows": rows}
    if os.environ.get("DAGSTER_HOME") and Path(os.environ["DAGSTER_HOME"], "dagster.yaml").exists():
        import dagster as dg

        instance = dg.DagsterInstance.get()
        runs = instance.get_runs()
        out["runs"] = len(runs)
        out["run_statuses"] = sorted({r.status.value for r in runs})
        # every event is a row written to the instance's event log (sqlite by default): the orchestration cost
        out["events"] = sum(len(instance.all_logs(r.run_id)) for r in runs)
    return out


PHASES = {"library": phase_library, "stats": phase_stats}


def run_phase(name: str, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline_tests.bench.bench_backfill", "--phase", name],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"phase {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pipeline_exe() -> str:
    exe = Path(sys.executable).parent / "pipeline"
    return str(exe) if exe.exists() else ""


def case_cli(workdir: Path, keymap_path: Path, n: int, dagster_postgres_url: str | None = None) -> dict:
    """`pipeline run` on the default SQLite instance, or, given a URL, on deploy/dagster-postgres.yaml."""
    server = FakeServerProcess(n)
    env = base_env(workdir, keymap_path, n, server.base_url)
    Path(env["DAGSTER_HOME"]).mkdir(parents=True)
    if dagster_postgres_url:
        shutil.copyfile(ROOT / "deploy" / "dagster-postgres.yaml", Path(env["DAGSTER_HOME"]) / "dagster.yaml")
        env["DAGSTER_POSTGRES_URL"] = dagster_postgres_url
    cmd = [_pipeline_exe()] if _pipeline_exe() else [sys.executable, "-m", "pipeline.cli.commands"]
    cmd += ["run", "--select", selection(keymap_path)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    requests = server.stop()
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    result = {
        "seconds": seconds,
        "exit_code": proc.returncode,
        "server_requests": requests,
        "log_tail": proc.stdout.strip().splitlines()[-4:],
    }
    return {**result, **run_phase("stats", env)}


def case_cli_postgres(workdir: Path, keymap_path: Path, n: int) -> dict:
    """The cli case with the Dagster instance on PostgreSQL (a fresh database on PIPELINE_TEST_POSTGRES_URL)."""
    from pipeline_tests import postgres_server

    reason = postgres_server.unavailable_reason()
    if reason:
        return {"skipped": reason}
    with postgres_server.fresh_database("pipeline_bench") as url:
        return case_cli(workdir, keymap_path, n, dagster_postgres_url=postgres_server.sqlalchemy_url(url))


def case_library(workdir: Path, keymap_path: Path, n: int) -> dict:
    server = FakeServerProcess(n)
    env = base_env(workdir, keymap_path, n, server.base_url)
    env.pop("DAGSTER_HOME")
    started = time.perf_counter()
    inner = run_phase("library", env)
    seconds = time.perf_counter() - started
    requests = server.stop()
    return {
        "seconds": seconds,
        "work_seconds": inner["seconds"],
        "bronze_s": inner["bronze_s"],
        "server_requests": requests,
        "exit_code": 0 if not inner["hard_failures"] else 1,
        **run_phase("stats", env),
    }


# ---- UI backfill through `dagster dev` ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None, timeout: float = 60.0) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


LAUNCH = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  ... on PartitionSetNotFoundError { message } ... on InvalidStepError { invalidStepKey }
  ... on InvalidOutputError { invalidOutputName } ... on UnauthorizedError { message } } }"""
STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status numCancelable } ... on PythonError { message } } }"""
RUNS = """{ runsOrError { ... on Runs { results { runId status startTime endTime tags { key value } } } } }"""
ACTIVE = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}
UI_TIMEOUT_S = 900


def case_ui(workdir: Path, keymap_path: Path, n: int) -> dict:
    server = FakeServerProcess(n)
    env = base_env(workdir, keymap_path, n, server.base_url)
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True)
    from pipeline.settings import PROJECT_ROOT

    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    # the partitions must exist before the backfill names them (the universe sensor would add them)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import dagster as dg, os; dg.DagsterInstance.get().add_dynamic_partitions("
            "'tickers', os.environ['PIPELINE_TICKERS'].split(','))",
        ],
        env=env,
        check=True,
        cwd=workdir,
    )
    port = _free_port()
    log = open(workdir / "dagster_dev.log", "w")
    dagster = str(Path(sys.executable).parent / "dagster")
    started = time.perf_counter()
    dev = subprocess.Popen(
        [dagster, "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    result: dict = {"exit_code": 1}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("dagster dev did not answer within 120 s")
        ready_s = time.perf_counter() - started
        keys = [{"path": k.split("/")} for k in selection(keymap_path).split(",")]
        launched, launched_epoch = time.perf_counter(), time.time()
        answer = _graphql(port, LAUNCH, {"p": {"partitionNames": tickers(n), "assetSelection": keys}})
        payload = answer.get("data", {}).get("launchPartitionBackfill") or answer
        if payload.get("__typename") != "LaunchBackfillSuccess":
            raise RuntimeError(f"launchPartitionBackfill: {payload}")
        backfill_id = payload["backfillId"]
        status = None
        while time.perf_counter() - launched < UI_TIMEOUT_S:
            time.sleep(2)
            status = _graphql(port, STATUS, {"id": backfill_id})["data"]["partitionBackfillOrError"].get("status")
            if status in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
                break
        seconds = time.perf_counter() - launched
        # the project's sensors run too (as for a user): runs they launch are counted apart from the backfill's,
        # and awaited, so that no run worker still holds the warehouse when dagster dev stops
        deadline = time.monotonic() + 300
        while True:
            every = _graphql(port, RUNS)["data"]["runsOrError"]["results"]
            if time.monotonic() > deadline or not any(r["status"] in ACTIVE for r in every):
                break
            time.sleep(2)
        runs = [r for r in every if {"key": "dagster/backfill", "value": backfill_id} in r["tags"]]
        starts = [r["startTime"] for r in runs if r["startTime"]]
        ends = [r["endTime"] for r in runs if r["endTime"]]
        result = {
            "seconds": seconds,
            "ready_s": ready_s,
            "status": status,
            "runs": len(runs),
            "other_runs": len(every) - len(runs),
            "run_statuses": sorted({r["status"] for r in runs}),
            "run_span_s": (max(ends) - min(starts)) if starts and ends else None,
            "to_first_run_s": (min(starts) - launched_epoch) if starts else None,
            "to_last_run_end_s": (max(ends) - launched_epoch) if ends else None,
            "exit_code": 0 if status in ("COMPLETED", "COMPLETED_SUCCESS") else 1,
        }
    finally:
        try:
            os.killpg(dev.pid, signal.SIGINT)
            dev.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait(timeout=30)
        log.close()
        result["server_requests"] = server.stop()
    for attempt in range(30):
        try:
            stats = run_phase("stats", {**env, "DAGSTER_HOME": ""})
            break
        except RuntimeError:
            if attempt == 29:
                raise
            time.sleep(2)
    stats.pop("runs", None)
    return {**result, **stats}


# ---- report --------------------------------------------------------------------------------------------------


def main(quick: bool = False, ui: bool | None = None) -> dict:
    n = 50 if quick else 500
    ui = (not quick) if ui is None else ui
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_backfill_", ignore_cleanup_errors=True) as tmp:
        keymap_path = Path(tmp) / "keymap.yaml"
        write_keymap(keymap_path)
        print(
            f"{n} tickers x {len(ENTRIES)} datasets, as of {AS_OF}, fake FMP latency {LATENCY_S * 1000:.0f} ms, "
            f"concurrency {CONCURRENCY}"
        )
        for name, case in (("library", case_library), ("cli", case_cli)):
            results[name] = case(Path(tmp) / name, keymap_path, n)
            print(f"  {name:8} {results[name]['seconds']:7.1f} s  exit {results[name]['exit_code']}")
        results["cli_pg"] = case_cli_postgres(Path(tmp) / "cli_pg", keymap_path, n)
        if "skipped" in results["cli_pg"]:
            print(f"  cli_pg   skipped: {results['cli_pg']['skipped']}")
        else:
            print(f"  cli_pg   {results['cli_pg']['seconds']:7.1f} s  exit {results['cli_pg']['exit_code']}")
        if ui:
            try:
                results["ui"] = case_ui(Path(tmp) / "ui", keymap_path, n)
                print(f"  {'ui':8} {results['ui']['seconds']:7.1f} s  status {results['ui']['status']}")
            except Exception as exc:  # noqa: BLE001 - reported, the other cases still count
                results["ui"] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"  ui backfill failed: {results['ui']['error']}")
                log = Path(tmp) / "ui" / "dagster_dev.log"
                if log.exists():
                    print("\n".join(log.read_text().splitlines()[-20:]))

    lib, cli = results["library"], results["cli"]
    ratio = cli["seconds"] / lib["seconds"]
    ratio_work = cli["seconds"] / lib["work_seconds"]
    same = lib["silver_rows"] == cli["silver_rows"] and lib["files"] == cli["files"]
    print(
        f"\n{'case':<52}{'wall s':>8}{'requests':>10}{'files':>8}{'promoted':>10}{'silver rows':>13}{'runs':>6}"
        f"{'events':>8}"
    )
    rows = [("library (run_bronze + promote_files, 1 process)", lib), ("cli (pipeline run --select ...)", cli)]
    pg = results.get("cli_pg", {})
    if "seconds" in pg:
        rows.append(("cli, Dagster instance on PostgreSQL", pg))
    if "ui" in results and "error" not in results["ui"]:
        rows.append(("ui backfill (dagster dev, launchPartitionBackfill)", results["ui"]))
    for label, r in rows:
        print(
            f"{label:<52}{r['seconds']:>8.1f}{r['server_requests']:>10,}{r['files']:>8,}{r['promoted']:>10,}"
            f"{sum(r['silver_rows'].values()):>13,}{r.get('runs', '-')!s:>6}{r.get('events', '-')!s:>8}"
        )
    print(
        f"library work inside its process: {lib['work_seconds']:.1f} s (Bronze {lib['bronze_s']:.1f} s); "
        f"same files and Silver rows in both: {'yes' if same else 'NO'}"
    )
    if "ui" in results and "error" not in results["ui"]:
        u = results["ui"]
        print(
            f"ui: webserver + daemon ready in {u['ready_s']:.1f} s; backfill {u['status']} in {u['seconds']:.1f} s "
            f"after launch; {u['runs']} backfill run(s) {u['run_statuses']} (+{u['other_runs']} launched by "
            f"sensors); first backfill run start -> last run end "
            f"{u['run_span_s'] or 0:.1f} s; ui / library {u['seconds'] / lib['seconds']:.2f}"
        )
        print(
            f"ui: launch -> first run start {u['to_first_run_s'] or 0:.1f} s, -> last run end "
            f"{u['to_last_run_end_s'] or 0:.1f} s ({(u['to_last_run_end_s'] or 0) / lib['seconds']:.2f} x library), "
            f"-> backfill done {u['seconds']:.1f} s (the backfill daemon ticks every {BACKFILL_DAEMON_TICK_S} s)"
        )
    checks = {
        f"cli / library wall <= {RATIO_TARGET:g}": ratio <= RATIO_TARGET,
        f"Dagster runs launched by the cli <= {RUNS_TARGET}": cli.get("runs", 10**9) <= RUNS_TARGET,
        "cli exit code 0 and same result as the library": cli["exit_code"] == 0 and same,
    }
    print(
        f"cli / library = {ratio:.2f} (vs the library's in-process work time: {ratio_work:.2f}); "
        f"runs launched by the cli: {cli.get('runs')}"
    )
    ratio_pg = pg["seconds"] / lib["seconds"] if "seconds" in pg else None
    if ratio_pg is not None:
        same_pg = pg["exit_code"] == 0 and lib["silver_rows"] == pg["silver_rows"] and lib["files"] == pg["files"]
        checks["cli on PostgreSQL: exit code 0 and same result as the library"] = same_pg
        print(
            f"Dagster storage side by side: cli / library = {ratio:.2f} on SQLite, {ratio_pg:.2f} on PostgreSQL "
            f"({cli.get('events')} vs {pg.get('events')} events)"
        )
    else:
        print(f"cli on PostgreSQL storage: skipped ({pg.get('skipped')})")
    for label, ok in checks.items():
        print(f"  [{'ok' if ok else 'MISS'}] {label}")
    return {
        "results": results,
        "ratio": ratio,
        "ratio_pg": ratio_pg,
        "ratio_work": ratio_work,
        "cli_runs": cli.get("runs"),
        "checks": checks,
        "tickers": n,
    }


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50 tickers, no UI backfill")
    parser.add_argument(
        "--ui",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also (or not) measure the UI backfill through dagster dev",
    )
    parser.add_argument("--phase", choices=sorted(PHASES))
    parser.add_argument("--serve", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
    elif args.phase:
        print(json.dumps(PHASES[args.phase](), default=str))
    else:
        main(quick=args.quick, ui=args.ui)


if __name__ == "__main__":
    _cli()
