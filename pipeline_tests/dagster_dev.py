"""Start the project's Dagster UI and daemon headless for a test, and stop it cleanly (SIGINT to its group)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from pipeline.cli import ui
from pipeline.orchestration.dagster_env import apply_event_log_env
from pipeline.settings import PROJECT_ROOT

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dev_command(port: int) -> list[str]:
    """What `pipeline ui` (and so `make ui`) starts: `dg dev`, or `dagster dev` without the dg CLI."""
    return ui.dev_command("127.0.0.1", port)


@contextmanager
def dagster_dev(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    """Yields the base URL once the webserver answers; the log is at tmp_path/dagster_dev.log."""
    port = free_port()
    log_path = tmp_path / "dagster_dev.log"
    log = open(log_path, "wb")
    env = apply_event_log_env(dict(env))  # as `pipeline ui` starts it
    proc = subprocess.Popen(
        dev_command(port), cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )  # own process group: SIGINT reaches every child
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                return httpx.get(f"{base}/server_info", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 120, "webserver did not answer within 120 s")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("the Dagster UI did not stop within 60 s of SIGINT")
        finally:
            log.close()


def wait_for(probe: Callable[[], T], timeout_s: float, message: str, every_s: float = 0.5) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(message)


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out
