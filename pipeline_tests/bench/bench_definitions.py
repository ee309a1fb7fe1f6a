"""Benchmark of loading the Dagster definitions with 5,000 tickers in the `tickers` dynamic partitions.

Why: every process that touches the code location loads the definitions: the webserver and the daemon at
start and on reload, every run worker, every sensor and schedule evaluation subprocess, `pipeline run`, and
the `dagster` CLI. The asset graph is built from the keymap (27 Bronze entries, 16 Silver tables, 7 Gold
assets, their checks) and the per-ticker assets are partitioned by `tickers`, so the cost must not grow with
the universe. Target: under 5 s with the shipped keymap and 5,000 tickers.

What is timed, in a fresh interpreter per sample so that import time counts (the way a run worker or a sensor
subprocess pays it): `import pipeline.orchestration.definitions` (which builds `defs` at import), an explicit
`build_definitions(settings, keymap)`, `Definitions.validate_loadable`, `resolve_asset_graph()`, and the
partition keys of every partitioned asset resolved through the instance (`get_partition_keys(
dynamic_partitions_store=instance)`). The baseline is the same with an empty instance, in the same run.

    python -m pipeline_tests.bench.bench_definitions            # median of 3 fresh processes per case
    python -m pipeline_tests.bench.bench_definitions --quick    # 1 process per case
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICKERS = 5000
TARGET_S = 5.0

CHILD = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
warnings.filterwarnings("ignore")
import dagster as dg
t_dagster = time.perf_counter()
import pipeline.orchestration.definitions as module
t_import = time.perf_counter()
from pipeline.keymap import load_keymap
from pipeline.settings import get_settings
settings = get_settings()
defs = module.build_definitions(settings, load_keymap(settings.keymap_path))
t_build = time.perf_counter()
dg.Definitions.validate_loadable(defs)
t_validate = time.perf_counter()
graph = defs.resolve_asset_graph()
keys = graph.get_all_asset_keys()
t_graph = time.perf_counter()
instance = dg.DagsterInstance.get()
t_instance = time.perf_counter()
partitioned = [k for k in keys if graph.get(k).partitions_def is not None]
counts = {len(graph.get(k).partitions_def.get_partition_keys(dynamic_partitions_store=instance)) for k in partitioned}
t_parts = time.perf_counter()
print(json.dumps({
    "import dagster": t_dagster - t0, "import pipeline.orchestration.definitions": t_import - t_dagster,
    "build_definitions": t_build - t_import, "validate_loadable": t_validate - t_build,
    "resolve_asset_graph": t_graph - t_validate, "DagsterInstance.get()": t_instance - t_graph,
    "partition keys via instance": t_parts - t_instance,
    "in-process total": t_parts - t0, "assets": len(keys), "partitioned": len(partitioned),
    "partition_keys": sorted(counts),
}))
"""

SEED = r"""
import sys, dagster as dg
n = int(sys.argv[1])
dg.DagsterInstance.get().add_dynamic_partitions("tickers", [f"T{i:04d}" for i in range(1, n + 1)])
"""


def _env(home: Path, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FMP_", "PIPELINE_", "DAGSTER_"))}
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "PIPELINE_DATA_DIR": str(data),
            "PIPELINE_AS_OF": "2026-01-15",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PYTHONWARNINGS": "ignore",
        }
    )
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _instance(tmp: Path, name: str, tickers: int) -> dict[str, str]:
    from pipeline.settings import PROJECT_ROOT

    home, data = tmp / name / "dagster_home", tmp / name / "data"
    home.mkdir(parents=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = _env(home, data)
    if tickers:
        subprocess.run([sys.executable, "-c", SEED, str(tickers)], env=env, check=True, capture_output=True)
    return env


def _sample(env: dict[str, str]) -> dict:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process wall"] = wall
    return result


PHASES = (
    "import dagster",
    "import pipeline.orchestration.definitions",
    "build_definitions",
    "validate_loadable",
    "resolve_asset_graph",
    "DagsterInstance.get()",
    "partition keys via instance",
    "in-process total",
    "process wall",
)


def main(quick: bool = False) -> dict:
    reps = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench_definitions_") as tmp:
        envs = {
            "empty instance": _instance(Path(tmp), "empty", 0),
            f"{TICKERS:,} tickers": _instance(Path(tmp), "full", TICKERS),
        }
        samples: dict[str, list[dict]] = {name: [] for name in envs}
        for _ in range(reps):  # interleaved, so that machine noise hits both cases alike
            for name, env in envs.items():
                samples[name].append(_sample(env))
    med = {name: {p: statistics.median(s[p] for s in runs) for p in PHASES} for name, runs in samples.items()}
    base, full = med["empty instance"], med[f"{TICKERS:,} tickers"]
    info = samples[f"{TICKERS:,} tickers"][0]
    print(
        f"definitions: {info['assets']} assets, {info['partitioned']} partitioned; partition keys resolved per "
        f"partitioned asset: {info['partition_keys']} (median of {reps} fresh process(es) per case)"
    )
    print(f"{'phase (seconds)':<30}{'empty instance':>16}{f'{TICKERS:,} tickers':>16}{'ratio':>8}")
    for p in PHASES:
        ratio = full[p] / base[p] if base[p] > 0 else float("nan")
        print(f"{p:<30}{base[p]:>16.3f}{full[p]:>16.3f}{ratio:>8.2f}")
    ok = full["process wall"] < TARGET_S
    print(
        f"  [{'ok' if ok else 'MISS'}] load with {TICKERS:,} tickers (fresh process, wall) < {TARGET_S:g} s: "
        f"{full['process wall']:.2f} s (empty instance {base['process wall']:.2f} s)"
    )
    return {
        "empty": base,
        "full": full,
        "checks": {f"definitions load with {TICKERS:,} tickers < {TARGET_S:g} s": ok},
        "wall_s": full["process wall"],
        "baseline_wall_s": base["process wall"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one fresh process per case")
    main(quick=parser.parse_args().quick)
