"""Benchmark of a UI backfill of the per-ticker Bronze and Silver assets at whole-market size (issue 20).

Why: the event log, not the work, was what a UI backfill cost at 5,000 tickers (one planned event per partition
written by the daemon, one materialization per partition, whatever happened to it). This launches the backfill as
the UI does, through the real webserver and daemon (`dagster dev`, GraphQL `launchPartitionBackfill`), and the same
work through the library (`bench_backfill.phase_library`, one process, no Dagster), in the same invocation, and
then a quiet daily refresh (`pipeline run` the next weekday: one new day of prices, nothing else due) on the same
instance. The work is bench_backfill's: profile, one year of daily prices and three quarterly statements
(5 Bronze assets, 5 Silver tables) for N synthetic tickers from a fake FMP (loopback HTTP, 20 ms latency).

Printed: launch-to-done and its ratio to the library; Dagster runs; planned events per run (per asset); event-log
rows per changed partition and asset (planned + materialization rows in the runs' event logs, over the partitions
materialized); SQLite growth of DAGSTER_HOME for the backfill; for the quiet refresh the events it wrote and the
partitions it materialized; the load average before and after.

    python -m pipeline_tests.bench.bench_ui_backfill                  # 5,000 tickers (about 20 min on 2 cores)
    python -m pipeline_tests.bench.bench_ui_backfill --tickers 500
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pipeline_tests.bench import bench_backfill as bb

DEFAULT_TICKERS = 5000
QUIET_DAY = bb.AS_OF + dt.timedelta(days=3)  # AS_OF is a Friday: the next weekday, one more day of prices
TARGETS = {"ratio": 1.5, "planned_per_asset_run": 1.0, "rows_per_changed": 2.0, "growth_mib": 250.0}
DONE = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")
TIMEOUT_S = 3600


class Server:
    """The fake FMP serving the sample source for `n` tickers as of `day`, in its own process."""

    def __init__(self, n: int, day: dt.date) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline_tests.bench.bench_ui_backfill", "--serve", str(n), day.isoformat()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=bb.ROOT,
            env={**os.environ, "PYTHONPATH": str(bb.ROOT)},
        )
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"fake server did not start: {self.base_url!r}")

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.stdout.read()
        self.proc.wait(timeout=30)


def serve(n: int, day: dt.date) -> None:
    from pipeline.fmp.sample import SampleSource
    from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data

    source = SampleSource(as_of=day, tickers=bb.tickers(n))
    with FakeFmpServer(
        api_key=bb.API_KEY, data=sample_data(source), latency_s=bb.LATENCY_S, calls_per_minute=None
    ) as s:
        print(s.base_url, flush=True)
        sys.stdin.read()
        print(len(s.requests), flush=True)


def product_env(env: dict[str, str]) -> dict[str, str]:
    """The environment `pipeline ui` gives `dg dev` (a checkout before pipeline/orchestration/dagster_env.py:
    unchanged)."""
    try:
        from pipeline.orchestration.dagster_env import apply_event_log_env
    except ImportError:
        return env
    return dict(apply_event_log_env(dict(env)))


SENSORS = """{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { id name } } } } }"""
STOP_SENSOR = """mutation($id: String) { stopSensor(id: $id) { __typename } }"""
# The promotion sensors would promote the backfill's Bronze files and build Gold alongside it, competing for the
# warehouse's one writer slot: the measured figure is the backfill's own. The universe sensor has nothing to add.
QUIET_SENSORS = ("silver_promotion_sensor", "gold_promotion_sensor")


def stop_sensors(port: int) -> list[str]:
    """Stop the promotion sensors through GraphQL, as a user would in the UI."""
    repos = bb._graphql(port, SENSORS, timeout=120)["data"]["repositoriesOrError"]["nodes"]
    stopped = []
    for sensor in (x for repo in repos for x in repo["sensors"]):
        if sensor["name"] in QUIET_SENSORS:
            bb._graphql(port, STOP_SENSOR, {"id": sensor["id"]}, 120)
            stopped.append(sensor["name"])
    return stopped


def home_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.rglob("*") if p.is_file())


def event_rows(home: Path, run_ids: list[str]) -> dict[str, int]:
    """Rows of the runs' event logs by event type (the stock SQLite layout: one database per run)."""
    counts: dict[str, int] = {}
    for run_id in run_ids:
        db = home / "history" / "runs" / f"{run_id}.db"
        if not db.exists():
            continue
        with sqlite3.connect(db) as conn:
            for kind, n in conn.execute("SELECT dagster_event_type, count(*) FROM event_logs GROUP BY 1"):
                counts[kind or "log"] = counts.get(kind or "log", 0) + n
    return counts


def run_ids(home: Path) -> list[str]:
    with sqlite3.connect(home / "history" / "runs.db") as conn:
        return [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY create_timestamp")]


def backfill_run_ids(home: Path, backfill_id: str) -> list[str]:
    with sqlite3.connect(home / "history" / "runs.db") as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT run_id FROM run_tags WHERE key = 'dagster/backfill' AND value = ?", (backfill_id,)
            )
        ]


def launch_backfill(env: dict[str, str], workdir: Path, keymap_path: Path, n: int) -> dict:
    home = Path(env["DAGSTER_HOME"])
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
    port = bb._free_port()
    log = open(workdir / "dagster_dev.log", "w")
    dagster = str(Path(sys.executable).parent / "dagster")
    dev = subprocess.Popen(
        [dagster, "dev", "-w", str(bb.ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        env=product_env(env),
        cwd=bb.ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("dagster dev did not answer within 180 s") from None
                time.sleep(0.5)
        stopped = stop_sensors(port)
        before = home_bytes(home)
        keys = [{"path": k.split("/")} for k in bb.selection(keymap_path).split(",")]
        launched = time.perf_counter()
        answer = bb._graphql(port, bb.LAUNCH, {"p": {"partitionNames": bb.tickers(n), "assetSelection": keys}}, 600)
        payload = answer.get("data", {}).get("launchPartitionBackfill") or answer
        if payload.get("__typename") != "LaunchBackfillSuccess":
            raise RuntimeError(f"launchPartitionBackfill: {payload}")
        backfill_id = payload["backfillId"]
        status = None
        while time.perf_counter() - launched < TIMEOUT_S:
            time.sleep(3)
            reply = bb._graphql(port, bb.STATUS, {"id": backfill_id}, 120)["data"]["partitionBackfillOrError"]
            status = reply.get("status")
            if status in DONE:
                break
        seconds = time.perf_counter() - launched
        deadline = time.monotonic() + 600  # sensor runs started meanwhile end before dagster dev stops
        while time.monotonic() < deadline:
            every = bb._graphql(port, bb.RUNS, timeout=120)["data"]["runsOrError"]["results"]
            if not any(r["status"] in bb.ACTIVE for r in every):
                break
            time.sleep(3)
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait(timeout=30)
        log.close()
    return {
        "seconds": seconds,
        "status": status,
        "backfill_id": backfill_id,
        "bytes_before": before,
        "sensors_stopped": stopped,
    }


def quiet_refresh(env: dict[str, str], workdir: Path, keymap_path: Path) -> dict:
    """`pipeline run` on the next weekday against the same warehouse and instance: one new day of prices."""
    home = Path(env["DAGSTER_HOME"])
    runs_before = set(run_ids(home))
    bytes_before = home_bytes(home)
    server = Server(len(env["PIPELINE_TICKERS"].split(",")), QUIET_DAY)
    try:
        quiet = {**env, "FMP_BASE_URL": server.base_url, "PIPELINE_AS_OF": QUIET_DAY.isoformat()}
        cmd = [bb._pipeline_exe()] if bb._pipeline_exe() else [sys.executable, "-m", "pipeline.cli.commands"]
        started = time.perf_counter()
        proc = subprocess.run(
            [*cmd, "run", "--select", bb.selection(keymap_path)], env=quiet, cwd=workdir, capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
    finally:
        server.stop()
    new = [r for r in run_ids(home) if r not in runs_before]
    rows = event_rows(home, new)
    return {
        "seconds": seconds,
        "exit_code": proc.returncode,
        "runs": len(new),
        "rows": sum(rows.values()),
        "materializations": rows.get("ASSET_MATERIALIZATION", 0),
        "planned": rows.get("ASSET_MATERIALIZATION_PLANNED", 0),
        "growth_mib": (home_bytes(home) - bytes_before) / 2**20,
        "tail": proc.stdout.strip().splitlines()[-6:],
    }


def main(n: int = DEFAULT_TICKERS) -> dict:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_ui_backfill_", ignore_cleanup_errors=True) as tmp:
        keymap_path = Path(tmp) / "keymap.yaml"
        bb.write_keymap(keymap_path)
        assets = len(bb.selection(keymap_path).split(","))
        print(f"{n} tickers x {assets} assets (Bronze + Silver), as of {bb.AS_OF}; load {load_before}", flush=True)
        library = bb.case_library(Path(tmp) / "library", keymap_path, n)
        print(f"  library      {library['seconds']:7.1f} s", flush=True)

        workdir = Path(tmp) / "ui"
        server = Server(n, bb.AS_OF)
        env = bb.base_env(workdir, keymap_path, n, server.base_url)
        home = Path(env["DAGSTER_HOME"])
        home.mkdir(parents=True)
        shutil.copyfile(bb.ROOT / "dagster.yaml", home / "dagster.yaml")
        try:
            ui = launch_backfill(env, workdir, keymap_path, n)
        finally:
            server.stop()
        ids = backfill_run_ids(home, ui["backfill_id"])
        rows = event_rows(home, ids)
        growth = (home_bytes(home) - ui["bytes_before"]) / 2**20
        planned, mats = rows.get("ASSET_MATERIALIZATION_PLANNED", 0), rows.get("ASSET_MATERIALIZATION", 0)
        other = [r for r in run_ids(home) if r not in set(ids)]
        print(
            f"  ui backfill  {ui['seconds']:7.1f} s  {ui['status']}  ({len(ids)} runs, {len(other)} others; "
            f"sensors stopped: {', '.join(ui['sensors_stopped'])})",
            flush=True,
        )
        stats = bb.run_phase("stats", {**env, "DAGSTER_HOME": ""})
        quiet = quiet_refresh(env, workdir, keymap_path)
    res = {
        "tickers": n,
        "assets": assets,
        "library_s": library["seconds"],
        "ui_s": ui["seconds"],
        "ratio": ui["seconds"] / library["seconds"],
        "status": ui["status"],
        "runs": len(ids),
        "sensor_runs": len(other),
        "planned_per_asset_run": planned / max(len(ids), 1) / assets,
        "materializations": mats,
        "rows_per_changed": (planned + mats) / max(mats, 1),
        "all_rows": sum(rows.values()),
        "growth_mib": growth,
        "quiet": quiet,
        "same_rows_as_library": stats["silver_rows"] == library["silver_rows"],
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }
    print_report(res)
    return res


def print_report(r: dict) -> None:
    q = r["quiet"]
    lines = [
        ("launch -> done / library", f"{r['ratio']:.2f} ({r['ui_s']:.1f} s vs {r['library_s']:.1f} s)", "<= 1.5"),
        ("backfill status, runs", f"{r['status']}, {r['runs']} runs (+{r['sensor_runs']} sensor runs)", ""),
        ("planned events per run and asset", f"{r['planned_per_asset_run']:.2f}", "<= 1"),
        (
            "event-log rows (planned + materialized) per changed partition and asset",
            f"{r['rows_per_changed']:.2f} ({r['materializations']:,} materializations)",
            "<= 2",
        ),
        ("all event-log rows of the backfill runs", f"{r['all_rows']:,}", ""),
        ("SQLite growth for the backfill", f"{r['growth_mib']:.0f} MiB", "<= 250 MiB"),
        (
            f"quiet daily refresh ({QUIET_DAY}): events written",
            f"{q['rows']:,} rows in {q['runs']} runs ({q['materializations']:,} materializations, "
            f"{q['planned']} planned), {q['growth_mib']:.1f} MiB, {q['seconds']:.1f} s, exit {q['exit_code']}",
            "proportional to the partitions that changed",
        ),
        ("Silver rows equal to the library's", str(r["same_rows_as_library"]), "True"),
        ("load average before / after", f"{r['load_before']} / {r['load_after']}", ""),
    ]
    width = max(len(line[0]) for line in lines)
    for name, value, target in lines:
        print(f"{name:<{width}}  {value}" + (f"   [target {target}]" if target else ""))


def _cli() -> None:
    # started in the background of a non-interactive shell, SIGINT would be inherited as ignored by this process
    # and by `dagster dev`, which then could only be killed: Ctrl-C and the SIGINT that stops dagster dev must work
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), dt.date.fromisoformat(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickers", type=int, default=DEFAULT_TICKERS)
    parser.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = parser.parse_args()
    res = main(args.tickers)
    if args.json:
        print(json.dumps(res, default=str))


if __name__ == "__main__":
    _cli()
