"""`make ui` stops on SIGTERM and on SIGINT, and leaves no process behind (issue 18, item 7).

It is started as a script or a service starts it: in the background of a non-interactive shell, so SIGINT is
inherited as ignored. SIGTERM goes to make alone (`kill`, `timeout`, systemd); SIGINT goes to make's whole process
group (Ctrl-C in the terminal). Every process `make ui` started (pipeline ui, the Dagster webserver, daemon and code
servers) must be gone within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from pipeline.cli.ui import UI_GRACE_S
from pipeline.settings import PROJECT_ROOT
from pipeline_tests.dagster_dev import free_port, process_tree, wait_for

pytestmark = pytest.mark.slow

STOP_DEADLINE_S = UI_GRACE_S + 5  # from the signal until every process is gone (a clean shutdown takes 3-8 s here;
# after UI_GRACE_S, pipeline ui kills what is left of the group)


def alive(pids: list[int]) -> list[int]:
    """The pids still running (a zombie not yet reaped counts as gone)."""
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            out.append(pid)
    return out


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `cmd &` in a non-interactive shell does to the job


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM-to-make", "SIGINT-to-group"])
def test_make_ui_stops_on_a_signal_and_leaves_nothing_running(tmp_path: Path, signum: int) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "FMP_", "DAGSTER_"))}
    env.update(
        PIPELINE_DATA_DIR=str(tmp_path / "data"),
        DAGSTER_HOME=str(tmp_path / "data" / "dagster_home"),
        PIPELINE_TICKERS="AAPL",
        DAGSTER_DISABLE_TELEMETRY="1",
    )
    log_path = tmp_path / "make_ui.log"
    with open(log_path, "wb") as log:
        make = subprocess.Popen(
            ["make", "-o", ".venv/.installed", "ui", f"UI_PORT={port}"],  # -o: never reinstall the venv here
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_ignore_sigint,
        )
    started: list[int] = []
    try:

        def up() -> bool:
            assert make.poll() is None, log_path.read_text(errors="replace")[-3000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 180, "the Dagster UI did not answer within 180 s")
        started = process_tree(make.pid)
        assert len(started) >= 3, started  # make, pipeline ui, dg dev and its servers
        sent = time.monotonic()
        if signum == signal.SIGTERM:
            make.send_signal(signum)
        else:
            os.killpg(make.pid, signum)
        try:
            make.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make ui still running {STOP_DEADLINE_S:.0f} s after {signal.Signals(signum).name}")
        wait_for(lambda: not alive(started), STOP_DEADLINE_S, f"left running: {alive(started)}", every_s=0.2)
        took = time.monotonic() - sent
        name = signal.Signals(signum).name
        print(f"{name}: make exit {make.returncode}, all {len(started)} processes gone in {took:.1f} s")
        assert make.returncode != 0  # make reports the interrupted recipe
        assert took < STOP_DEADLINE_S
        assert f"pipeline ui: stopped by {name}" in log_path.read_text(errors="replace")
    finally:
        for pid in alive(started + [make.pid]):  # nothing outlives the test
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        make.wait()
