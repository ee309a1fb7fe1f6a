"""Readable storage errors (issue 18, items 9 and 10), on real file systems: a read-only data folder and a full disk
give one line that names the folder and the cause, and the read-only commands work on a read-only data folder.

Before: every command, `status` and `coverage` included, crashed with a traceback opening `logs/pipeline-*.log` on a
read-only folder, and a full disk showed a 98-line SQLite "disk I/O error" traceback that never said the disk was
full. The folders are tmpfs mounts (a read-only remount, a small size), so this needs root; elsewhere the tests skip
and `test_storage_errors_are_classified_in_process` still covers the classification.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import sqlalchemy.exc

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.store import BronzeStore
from pipeline.cli.commands import ensure_dagster_home, main
from pipeline.fmp.client import FmpClient
from pipeline.log import get_logger
from pipeline.settings import get_settings
from pipeline.silver.promote import promote_waiting
from pipeline.storage_errors import storage_problem
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.support import KEYMAP, entry

AS_OF = "2025-06-27"
TREASURY = entry("treasury-rates")
SELECT = "bronze/market/treasury-rates"
READ_ONLY_HINT = "pipeline status and coverage still work; writing commands need a writable PIPELINE_DATA_DIR"
FULL_HINT = "free some space and run again: what was written is kept, and the next run goes on from there"


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs of its own (so that it can be filled up or made read-only), unmounted afterwards."""
    where = tmp_path / "mnt"
    where.mkdir()
    mounted = _mount("-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where))
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the classification is tested in-process")
    try:
        yield where
    finally:
        view = tmp_path / "ro"
        if view.is_dir():
            subprocess.run(["umount", "-l", str(view)], check=False)
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def data(tmpfs: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder on the tmpfs for in-process `pipeline` commands, with a small warehouse (treasury rates from
    the sample source, in Bronze and Silver), an initialised Dagster home and a log file, as after a first run."""
    root = tmpfs / "data"
    monkeypatch.setenv("PIPELINE_DATA_DIR", str(root))
    monkeypatch.setenv("PIPELINE_AS_OF", AS_OF)
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    get_settings.cache_clear()
    settings = get_settings()
    warehouse = Warehouse(settings.warehouse_path)
    with FmpClient.from_settings(settings) as client:
        run_bronze(
            entries=[TREASURY],
            tickers=[],
            warehouse=warehouse,
            store=BronzeStore(settings.bronze_dir),
            client=client,
            run_id=str(uuid.uuid4()),
            today=settings.today(),
            fmp_plan=None,
            source_mode="sample",
        )
    promote_waiting(warehouse, KEYMAP, TREASURY.silver.table, None, settings.bronze_dir, "silver-run", print)
    ensure_dagster_home(settings)
    get_logger("pipeline", settings).warning("a first run was here")
    _drop_log_handlers()  # each test configures the log anew (on its own stderr)
    return root


def read_only_view(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data folder as a read-only bind mount, which becomes PIPELINE_DATA_DIR (and its Dagster home)."""
    view = tmp_path / "ro"
    view.mkdir()
    assert _mount("--bind", str(data), str(view)).returncode == 0
    assert _mount("-o", "remount,ro,bind", str(view)).returncode == 0
    monkeypatch.setenv("PIPELINE_DATA_DIR", str(view))
    monkeypatch.setenv("DAGSTER_HOME", str(view / "dagster_home"))
    get_settings.cache_clear()
    return view


def fill_up(where: Path) -> Path:
    """Take every free byte of the file system holding `where`; returns the filler to delete afterwards."""
    filler = where / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_read_only_data_folder_status_and_coverage_work(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = read_only_view(data, tmp_path, monkeypatch)
    log_warning = (
        f"pipeline: warning: cannot write the log file {data}/logs/pipeline-{_today()}.log: the file system is "
        "read-only; logging to the console only\n"
    )
    assert main(["status"]) == 0
    out, err = capsys.readouterr()
    assert err == log_warning
    assert "Recent runs" in out and "What is due next" in out
    assert (
        f"Sensors: not shown, the Dagster instance in {data}/dagster_home could not be opened: the file system is "
        "read-only"
    ) in out
    assert main(["coverage"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # the log's warning is given once per process
    assert "treasury-rates" in out
    assert f"HTML report: not written, cannot write {data}/coverage.html: the file system is read-only" in out


def test_read_only_data_folder_stops_a_run_in_one_line(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = read_only_view(data, tmp_path, monkeypatch)
    assert main(["run", "--select", SELECT]) == 4
    err = capsys.readouterr().err.splitlines()
    assert err[1:] == [
        f"pipeline: storage error: cannot write in {data}/dagster_home: the file system is read-only ({READ_ONLY_HINT})"
    ]
    assert err[0].startswith("pipeline: warning: cannot write the log file")


def test_a_full_disk_is_one_line_and_the_next_run_recovers(
    data: Path, tmpfs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PIPELINE_AS_OF", "2025-06-30")  # a new day: treasury rates are due
    get_settings.cache_clear()
    filler = fill_up(tmpfs)
    assert main(["run", "--select", SELECT]) == 4
    err = capsys.readouterr().err
    # the Dagster instance's SQLite says "disk I/O error"; the file system says why
    full = "no space left on the device (the disk is full)"
    assert err == f"pipeline: storage error: cannot write in {data}: {full} ({FULL_HINT})\n"
    filler.unlink()
    assert main(["run", "--select", SELECT]) == 0
    out = capsys.readouterr().out
    assert "ok: run" in out and "FAILED" not in out


def test_a_log_file_that_fills_the_disk_warns_once(data: Path, tmpfs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logger = get_logger("pipeline", get_settings())
    fill_up(tmpfs)
    for i in range(50):
        logger.warning("line %d %s", i, "x" * 500)
    err = capsys.readouterr().err
    log_file = f"{data}/logs/pipeline-{_today()}.log"
    assert err.count(f"pipeline: warning: cannot write the log file {log_file}: no space left on the device") == 1
    assert "Logging error" not in err and "Traceback" not in err
    assert "line 49" in err  # the console goes on


def test_storage_errors_are_classified_in_process(tmp_path: Path) -> None:
    folders = [tmp_path / "data", tmp_path / "data" / "dagster_home"]
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "data" / "bronze" / "x.json"))
    assert storage_problem(full, folders) == (
        f"cannot write in {tmp_path}/data/bronze: no space left on the device (the disk is full) ({FULL_HINT})"
    )
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "data" / "logs" / "x.log"))
        except OSError as exc:
            raise RuntimeError("step failed") from exc
    except RuntimeError as wrapped:
        assert storage_problem(wrapped, folders) == (
            f"cannot write in {tmp_path}/data/logs: the file system is read-only ({READ_ONLY_HINT})"
        )
    # SQLite through SQLAlchemy, on a file system that is neither full nor read-only: the error's own words
    sqlite = sqlalchemy.exc.OperationalError(
        "INSERT INTO event_logs ...", {}, sqlite3.OperationalError("disk I/O error")
    )
    assert storage_problem(sqlite, folders).startswith(f"cannot write in {tmp_path}/data: ")
    assert "disk I/O error" in storage_problem(sqlite, folders)
    duck = duckdb.IOException('Could not write file "/x/warehouse.duckdb.wal": No space left on device')
    assert "No space left on device" in storage_problem(duck, folders)
    assert storage_problem(ValueError("a bug"), folders) is None
    assert storage_problem(KeyError("disk"), folders) is None


def _today() -> str:
    import datetime as dt

    return dt.date.today().isoformat()


def _drop_log_handlers() -> None:
    logger = logging.getLogger("pipeline")
    for handler in [h for h in logger.handlers if getattr(h, "_pipeline_config", None)]:
        logger.removeHandler(handler)
        handler.close()


@pytest.fixture(autouse=True)
def _unconfigure_the_log() -> Iterator[None]:
    """The tests configure the `pipeline` logger on a file system that goes away: leave it unconfigured."""
    yield
    _drop_log_handlers()


def test_words_that_only_may_mean_storage_need_the_file_system_to_agree(tmp_path: Path) -> None:
    """An HTTP 403 body or a missing extension is not a full disk: "permission denied" alone is not storage."""
    folders = [tmp_path]
    assert storage_problem("bronze_global: 3 Bronze request(s) failed: HTTP 403: Permission denied", folders) is None
    assert storage_problem(RuntimeError("unable to open database file"), folders) is None
    assert "disk I/O error" in storage_problem("silver_global: OperationalError: disk I/O error", folders)
