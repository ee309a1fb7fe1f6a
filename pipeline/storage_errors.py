"""Storage errors in one line that names the folder and the cause.

A full disk or a read-only data folder surfaces in many shapes: `OSError` (ENOSPC, EROFS) from a plain write,
DuckDB's `IOException`, or SQLite's "disk I/O error" / "database or disk is full" / "attempt to write a readonly
database" from the Dagster instance (wrapped by SQLAlchemy and Dagster, 98 lines of traceback that never say the
disk is full). `storage_problem` recognises them anywhere in an exception's chain and, where the text is vague
("disk I/O error"), asks the file system itself whether it is read-only or full.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.settings import Settings

READ_ONLY = "the file system is read-only"
FULL = "no space left on the device (the disk is full)"
CAUSES = {
    errno.EROFS: READ_ONLY,
    errno.ENOSPC: FULL,
    errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
# What a storage failure looks like in the text of a DuckDB, SQLite or SQLAlchemy error: certainly storage, or
# storage only when the file system itself shows why (read-only or full), since other failures use these words too.
STORAGE_TEXT = re.compile(
    r"no space left on device|database or disk is full|disk i/o error|read-only file system|readonly database"
    r"|disk quota exceeded",
    re.IGNORECASE,
)
MAYBE_STORAGE_TEXT = re.compile(
    r"unable to open database file|permission denied|could not write|failed to (?:write|create|sync)", re.IGNORECASE
)
LOW_SPACE_BYTES = 1 << 20  # below this much free space a failed write is read as "the disk is full"
HINTS = {
    READ_ONLY: "pipeline status and coverage still work; writing commands need a writable PIPELINE_DATA_DIR",
    FULL: "free some space and run again: what was written is kept, and the next run goes on from there",
}


def describe_os_error(exc: OSError) -> str:
    """The cause of an OSError in words ("the file system is read-only"), without the path."""
    return CAUSES.get(exc.errno or 0) or exc.strerror or str(exc)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the driver errors SQLAlchemy keeps in `orig`."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [getattr(current, "orig", None), current.__cause__, current.__context__]


def _file_system_cause(folder: Path) -> str | None:
    """READ_ONLY or FULL when the file system holding `folder` (or its nearest existing parent) is so."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    if stat.f_flag & os.ST_RDONLY:
        return READ_ONLY
    if stat.f_bavail * stat.f_frsize < LOW_SPACE_BYTES:
        return FULL
    return None


def storage_cause(exc: BaseException, folders: Iterable[Path]) -> tuple[Path, str] | None:
    """(folder, cause) when `exc` comes from storage that is read-only, full or not writable; else None.

    `folders` are where the command writes (the data folder, the Dagster home, the warehouse's folder), the first
    being the one named when the error names no file and the file systems show nothing wrong."""
    folders = [Path(f) for f in folders]
    for error in _chain(exc):
        if isinstance(error, OSError) and error.errno in CAUSES:
            return (Path(error.filename).parent if error.filename else folders[0]), describe_os_error(error)
        if not isinstance(error, OSError):
            found = _cause_from_text(str(error), folders)
            if found:
                return found
    return None


def _cause_from_text(text: str, folders: list[Path]) -> tuple[Path, str] | None:
    """(folder, cause) when `text` reads like a storage failure: the file system's own state where it shows one
    (read-only, full), else, for an unmistakable storage text, the text itself."""
    match = STORAGE_TEXT.search(text)
    if not match and not MAYBE_STORAGE_TEXT.search(text):
        return None
    for folder in folders:
        cause = _file_system_cause(folder)
        if cause:
            return folder, cause
    if not match:
        return None
    start = max(0, match.start() - 100)
    return folders[0], " ".join(text[start : match.end() + 100].split())


def storage_problem(exc: BaseException | str, folders: Iterable[Path]) -> str | None:
    """`storage_cause` as one line: "cannot write in <folder>: <cause> (<what to do>)"; None when not storage.
    `exc` may also be the text of a failure (a failed Dagster step's message)."""
    folders = [Path(f) for f in folders]
    found = _cause_from_text(exc, folders) if isinstance(exc, str) else storage_cause(exc, folders)
    if found is None:
        return None
    folder, cause = found
    hint = HINTS.get(cause)
    return f"cannot write in {folder}: {cause}" + (f" ({hint})" if hint else "")


def storage_folders(settings: Settings) -> list[Path]:
    """Where commands write, the data folder first: what a storage error is diagnosed against."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_dir / "dagster_home")
    return [settings.data_dir, home, settings.warehouse_path.parent, settings.bronze_dir]


@contextlib.contextmanager
def quiet_event_log_failures() -> Iterator[list[str]]:
    """Keep Dagster's "Exception while writing logger call to event log: <SQL error, statement, parameters>"
    messages (written straight to stderr, several lines each, when its event log cannot be written, e.g. on a full
    disk) off the console; yields the list they are collected in, for `storage_problem` to read. Everything else
    written to stderr passes unchanged."""
    dropped: list[str] = []
    real = sys.stderr

    class _Filter:
        def write(self, text: str) -> int:
            if text.startswith("Exception while writing logger call to event log"):
                dropped.append(text)
                return len(text)
            return real.write(text)

        def __getattr__(self, name: str):
            return getattr(real, name)

    sys.stderr = _Filter()  # type: ignore[assignment]
    try:
        yield dropped
    finally:
        sys.stderr = real
