"""Append-only Bronze file store: safe paths, atomic writes, and a journal that lets a crash be recovered.

Layout: `<bronze>/<source>/<domain>/<dataset>[__<disc>]/<ticker or _global>/<YYYY-MM-DD>/<file_id>.json`.
All paths go through this module (DESIGN section 10: one storage module, ready for object storage).

A file is registered in `ops.file_ingestions` after it is written, in short batched transactions. To find
files whose registration was lost to a crash without walking the whole tree, each write first appends its
relative path to a per-process journal under `<bronze>/_journal/`; the journal is removed once every file
in it is registered, and `pending_journal_paths()` lists what a crashed process left behind.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from pipeline.bronze.envelope import BronzeEnvelope
from pipeline.keymap.model import DatasetIdentity

SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-^=]{0,63}$")
GLOBAL_MARKER = "_global"
JOURNAL_DIR = "_journal"
TMP_SUFFIX = ".tmp"


class UnsafeNameError(ValueError):
    """A ticker or discriminator that could escape the Bronze folder or break a path."""


def validate_part(kind: str, value: str, *, allow_empty: bool = False) -> str:
    """Reject values that could leave the Bronze folder: '..', '/', '\\', control characters, empty, overlong."""
    if value == "" and allow_empty:
        return value
    if not isinstance(value, str) or not value:
        raise UnsafeNameError(f"{kind} must not be empty")
    if len(value) > 64:
        raise UnsafeNameError(f"{kind} {value[:20]!r}... is longer than 64 characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise UnsafeNameError(f"{kind} {value!r} contains control characters")
    if value in (".", "..") or "/" in value or "\\" in value or ".." in value or not SAFE_PART.match(value):
        raise UnsafeNameError(f"{kind} {value!r} is not allowed: use letters, digits, '.', '-', '_', '^' or '=' "
                              "(no path separators, no '..')")
    return value


class BronzeStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._journal_lock = threading.Lock()

    # ---- paths -------------------------------------------------------------------------------------------
    def relative_path(self, identity: DatasetIdentity, fetched_at: dt.datetime, file_id: str) -> str:
        validate_part("source", identity.source)
        validate_part("domain", identity.domain)
        validate_part("dataset", identity.dataset)
        validate_part("discriminator", identity.discriminator, allow_empty=True)
        validate_part("ticker", identity.ticker, allow_empty=True)
        if not re.fullmatch(r"[0-9a-f]{32}", file_id):
            raise UnsafeNameError(f"file id {file_id!r} is not 32 hex characters")
        dataset = identity.dataset + (f"__{identity.discriminator}" if identity.discriminator else "")
        ticker = identity.ticker or GLOBAL_MARKER
        day = fetched_at.astimezone(dt.UTC).date().isoformat()
        return "/".join((identity.source, identity.domain, dataset, ticker, day, f"{file_id}.json"))

    def absolute(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        root = self.root.resolve()
        if root not in path.parents:
            raise UnsafeNameError(f"Bronze path {relative!r} points outside {root}")
        return path

    # ---- writing -----------------------------------------------------------------------------------------
    def write(self, envelope: BronzeEnvelope, journal: str) -> str:
        """Write one envelope atomically (temp file, fsync, rename). Never overwrites. Returns the relative path."""
        relative = self.relative_path(envelope.identity, envelope.fetched_at, envelope.file_id)
        target = self.absolute(relative)
        if target.exists():
            raise FileExistsError(f"Bronze file {relative} already exists; Bronze is append-only")
        self._journal_append(journal, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}{TMP_SUFFIX}")
        data = envelope.to_json_bytes()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, target)          # fails if the target exists: never overwrite
        os.unlink(tmp)
        return relative

    def read(self, relative: str) -> BronzeEnvelope:
        return BronzeEnvelope.from_json_bytes(self.absolute(relative).read_bytes())

    # ---- journal -----------------------------------------------------------------------------------------
    def journal_name(self, run_id: str) -> str:
        return f"{validate_part('run id', run_id.replace('-', ''))}.{os.getpid()}.{threading.get_ident()}"

    def _journal_path(self, journal: str) -> Path:
        return self.root / JOURNAL_DIR / f"{journal}.txt"

    def _journal_append(self, journal: str, relative: str) -> None:
        path = self._journal_path(journal)
        with self._journal_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(relative + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def close_journal(self, journal: str) -> None:
        """Forget a journal once all its files are registered."""
        self._journal_path(journal).unlink(missing_ok=True)

    def journals(self) -> list[str]:
        folder = self.root / JOURNAL_DIR
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.txt"))

    def journal_paths(self, journal: str) -> list[str]:
        """Relative paths listed in a journal whose file exists (an entry without a file was never written)."""
        path = self._journal_path(journal)
        if not path.exists():
            return []
        out: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and (self.root / line).is_file():
                out.append(line)
        return out

    def remove_journal_temp_files(self, journal: str) -> int:
        """Remove the temp files of a dead writer's journal (a kill between the temp write and the link);
        they never became data. Temp files of other journals are left alone: their writer may be alive."""
        path = self._journal_path(journal)
        if not path.exists():
            return 0
        removed = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            try:
                target = self.absolute(line)
            except UnsafeNameError:
                continue            # not a path this store wrote
            tmp = target.with_name(f".{target.name}{TMP_SUFFIX}")
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed

    # ---- full scan (repair, replay) ----------------------------------------------------------------------
    def iter_files(self) -> Iterator[str]:
        """Every Bronze envelope's relative path (skips temp files and the journal)."""
        if not self.root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if d != JOURNAL_DIR)
            for name in sorted(filenames):
                if name.endswith(".json") and not name.startswith("."):
                    yield os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")

    def remove_stale_temp_files(self) -> int:
        """Temp files are leftovers of a crash mid-write; they never became data. Returns how many were removed."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                if name.startswith(".") and name.endswith(TMP_SUFFIX):
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
        return removed
