"""`pipeline ui` (what `make ui` runs): the Dagster UI and daemon (`dg dev`), stopped by SIGTERM and SIGINT.

`dg dev` run straight from make ignored both signals when started in the background of a non-interactive shell
(SIGINT is then inherited as ignored, and dagster dev maps SIGTERM onto the SIGINT handler), and only `kill -9`
stopped it, leaving its webserver, daemon and code servers behind. So this command starts `dg dev` in a process
group of its own, with default signal dispositions, and on SIGTERM or SIGINT asks the whole group to shut down
(SIGINT: dagster dev's clean shutdown), then kills what is left after UI_GRACE_S.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline import stopping
from pipeline.orchestration.dagster_env import apply_event_log_env
from pipeline.settings import PROJECT_ROOT

UI_GRACE_S = 20.0  # for dagster dev's own shutdown (webserver, daemon, code servers) before the group is killed


def dev_command(host: str, port: int) -> list[str]:
    """`dg dev` when the dg CLI is installed, else `dagster dev` on the project's workspace."""
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "dg").exists():
        return [str(bin_dir / "dg"), "dev", "--host", host, "--port", str(port)]
    return [str(bin_dir / "dagster"), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", host, "-p", str(port)]


def serve(host: str, port: int) -> int:
    """Run the UI until it ends or a signal stops it (then `Stopped` propagates, after the group is gone).

    `stopping.install()` has given this process handlers for SIGTERM and SIGINT, so `dg dev` starts with both at
    their defaults (exec resets handled signals; only ignored ones would be inherited)."""
    # the webserver and the daemon create the runs of the UI, sensors, schedule and backfills: they plan each asset
    # of a ticker range once (pipeline.orchestration.dagster_env)
    env = apply_event_log_env(dict(os.environ))
    proc = subprocess.Popen(dev_command(host, port), cwd=PROJECT_ROOT, env=env, start_new_session=True)
    stopping.set_grace(UI_GRACE_S + 5)
    stopping.at_forced_exit(lambda: _kill_group(proc.pid, signal.SIGKILL))
    try:
        return proc.wait()
    except stopping.Stopped:
        _kill_group(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=UI_GRACE_S)
        except subprocess.TimeoutExpired:
            print(f"pipeline ui: the Dagster UI did not stop within {UI_GRACE_S:g} s; killing it", file=sys.stderr)
        _kill_group(proc.pid, signal.SIGKILL)  # whatever of the group is left (a code server, a run worker)
        proc.wait()
        raise


def _kill_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
