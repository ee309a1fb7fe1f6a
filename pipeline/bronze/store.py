"""Append-only Bronze file store: safe paths, atomic writes, and a journal that lets a crash be recovered.

Layout: `<bronze>/<source>/<domain>/<dataset>[__<disc>]/<ticker or _global>/<YYYY-MM-DD>/<file_id>.json`.
All Bronze I/O goes through this module, on one of two backends chosen by the location (PIPELINE_BRONZE_URL):

- A local folder (the default, `<PIPELINE_DATA_DIR>/bronze`): `BronzeStore`. A write goes to a temporary file,
  is fsynced, and is hard-linked to its final name (the link fails if the name exists: never overwritten), so a
  reader sees a whole file or none.
- Any fsspec URL (`s3://bucket/prefix`, `gs://...`, `memory://...`): `ObjectBronzeStore`. Object stores have no
  link, rename or fsync; they give something as good: a PUT is atomic (an object is visible whole or not at
  all, an interrupted upload leaves nothing), so each envelope is written once, directly to its final key, with
  an exclusive create (`If-None-Match: *` on S3, fsspec's `mode="create"`) that refuses to overwrite. Keys are
  write-once (they end in a random file id), and the commit point is the ledger: a file counts as Bronze data
  for Silver only once its row is in `ops.file_ingestions`.

Every write returns the digest of the bytes it wrote (`StoredFile`), which the ledger keeps (`file_md5`): Silver
verifies each file against it when it reads the file, so a file that changed after it was written (truncated,
edited, badly restored) is quarantined instead of promoted.

A file is registered in `ops.file_ingestions` after it is written, in short batched transactions. To find
files whose registration was lost to a crash without walking the whole tree, each write first records its
relative path in a per-process journal under `<bronze>/_journal/` (an appended line locally, one small marker
object per file on an object store); the journal is removed once every file in it is registered, and
`journal_paths()` lists what a crashed process left behind: the entries whose file exists. An entry without
a file is a write that was cut before it became visible; it is dropped with the journal.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.bronze.envelope import BronzeEnvelope, file_digest
from pipeline.keymap.model import DatasetIdentity
from pipeline.tickers import ticker_problem

SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-^=]{0,63}$")
GLOBAL_MARKER = "_global"
JOURNAL_DIR = "_journal"
TMP_SUFFIX = ".tmp"


class UnsafeNameError(ValueError):
    """A ticker or discriminator that could escape the Bronze folder or break a path."""


@dataclass(frozen=True)
class StoredFile:
    """What a write produced: the file's path relative to the Bronze root, and the digest of the bytes written
    (the ledger's `file_md5`, which Silver verifies on every read)."""

    relative: str
    md5: str


def validate_part(kind: str, value: str, *, allow_empty: bool = False) -> str:
    """Reject values that could leave the Bronze folder: '..', '/', '\\', control characters, empty, overlong.

    Tickers follow the one ticker rule (`pipeline.tickers`), which settings and the universe apply too."""
    if value == "" and allow_empty:
        return value
    if kind == "ticker":
        problem = ticker_problem(value)
        if problem:
            raise UnsafeNameError(problem)
        return value
    if not isinstance(value, str) or not value:
        raise UnsafeNameError(f"{kind} must not be empty")
    if len(value) > 64:
        raise UnsafeNameError(f"{kind} {value[:20]!r}... is longer than 64 characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise UnsafeNameError(f"{kind} {value!r} contains control characters")
    if value in (".", "..") or "/" in value or "\\" in value or ".." in value or not SAFE_PART.match(value):
        raise UnsafeNameError(
            f"{kind} {value!r} is not allowed: use letters, digits, '.', '-', '_', '^' or '=' "
            "(no path separators, no '..')"
        )
    return value


def is_url(location: str | Path) -> bool:
    """True for an fsspec URL other than a local file URL (a plain path or `file://` stays local)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


class BronzeStore:
    """Bronze on a local folder (see the module docstring); `BronzeStore.at` picks the backend for a location."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(str(root).removeprefix("file://"))
        self._journal_lock = threading.Lock()

    @staticmethod
    def at(location: str | Path) -> BronzeStore:
        """The store for a local path or an fsspec URL (PIPELINE_BRONZE_URL)."""
        return ObjectBronzeStore(str(location)) if is_url(location) else BronzeStore(location)

    def uri(self, relative: str) -> str:
        """What a reader outside this module (DuckDB's read_json) opens for a relative path."""
        return str(self.absolute(relative))

    def size(self, relative: str) -> int | None:
        """Size in bytes, or None when the file does not exist."""
        try:
            return self.absolute(relative).stat().st_size
        except FileNotFoundError:
            return None

    def modified(self, relative: str) -> dt.datetime | None:
        """Last-modified time (UTC), or None when the file does not exist."""
        try:
            return dt.datetime.fromtimestamp(self.absolute(relative).stat().st_mtime, dt.UTC)
        except FileNotFoundError:
            return None

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
    def write(self, envelope: BronzeEnvelope, journal: str) -> StoredFile:
        """Write one envelope atomically (temp file, fsync, rename). Never overwrites. Returns its relative path and
        the digest of the bytes written."""
        relative = self.relative_path(envelope.identity, envelope.fetched_at, envelope.file_id)
        target = self.absolute(relative)
        if target.exists():
            raise FileExistsError(f"Bronze file {relative} already exists; Bronze is append-only")
        self._journal_append(journal, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        if envelope.body_file and envelope.raw_body is not None:
            # the CSV bytes as served, before the envelope that names them: an envelope never points at nothing
            _write_new(target.with_name(envelope.body_file), envelope.raw_body)
        data = envelope.to_json_bytes()
        _write_new(target, data)
        return StoredFile(relative, file_digest(data))

    def read_bytes(self, relative: str) -> bytes:
        return self.absolute(relative).read_bytes()

    def read(self, relative: str) -> BronzeEnvelope:
        return BronzeEnvelope.from_json_bytes(self.read_bytes(relative))

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
                continue  # not a path this store wrote
            body = target.with_suffix(".csv")  # a CSV body written before its envelope (`write`)
            for tmp in (target.with_name(f".{target.name}{TMP_SUFFIX}"), body.with_name(f".{body.name}{TMP_SUFFIX}")):
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


def _write_new(target: Path, data: bytes) -> None:
    """Write `data` to a new file atomically: temp file, fsync, hard link (fails if the name exists), unlink."""
    tmp = target.with_name(f".{target.name}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(tmp, target)  # fails if the target exists: never overwrite
    os.unlink(tmp)


def body_file_of(relative: str, body_file: str) -> str:
    """The relative path of an envelope's body file (a CSV kept as served), beside the envelope."""
    return f"{relative.rsplit('/', 1)[0]}/{body_file}" if "/" in relative else body_file


class ObjectBronzeStore(BronzeStore):
    """Bronze on an fsspec URL (S3 and S3-compatible stores, GCS, Azure, memory://): write-once keys, the ledger
    as the commit point (see the module docstring).

    Credentials and endpoints come from the backend's own environment (for S3: AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_DEFAULT_REGION), never from Bronze paths.
    """

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self.fs, prefix = fsspec.url_to_fs(self.url, **(storage_options or {}))
        self.prefix = prefix.rstrip("/")
        self.root = self.url  # a URL, not a Path: code that needs a local path must use the methods
        self._journal_lock = threading.Lock()

    def absolute(self, relative: str) -> str:  # type: ignore[override]
        """The backend key of a relative path; refuses a path that would leave the Bronze prefix."""
        parts = relative.split("/")
        if not relative or relative.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in relative:
            raise UnsafeNameError(f"Bronze path {relative!r} points outside {self.url}")
        return f"{self.prefix}/{relative}"

    def uri(self, relative: str) -> str:
        return self.fs.unstrip_protocol(self.absolute(relative))

    def _info(self, relative: str) -> dict | None:
        try:
            return self.fs.info(self.absolute(relative))
        except FileNotFoundError:
            return None

    def size(self, relative: str) -> int | None:
        info = self._info(relative)
        return None if info is None or info.get("type") == "directory" else int(info.get("size") or 0)

    def sizes(self, relatives: list[str]) -> list[int | None]:
        """Sizes of many files (None: missing or not a file), from one listing per folder instead of one request
        per file: a Silver batch of 2,000 files spans a few dozen ticker/day folders."""
        keys = [self.absolute(rel) for rel in relatives]
        listed: dict[str, int] = {}
        for folder in sorted({key.rsplit("/", 1)[0] for key in keys}):
            self.fs.invalidate_cache(folder)
            try:
                entries = self.fs.ls(folder, detail=True)
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.get("type") == "file":
                    listed[self.fs._strip_protocol(entry["name"]).rstrip("/")] = int(entry.get("size") or 0)
        return [listed.get(self.fs._strip_protocol(key)) for key in keys]

    def modified(self, relative: str) -> dt.datetime | None:
        info = self._info(relative)
        stamp = None if info is None else (info.get("LastModified") or info.get("mtime") or info.get("created"))
        if isinstance(stamp, (int, float)):
            return dt.datetime.fromtimestamp(stamp, dt.UTC)
        return stamp.astimezone(dt.UTC) if isinstance(stamp, dt.datetime) else None

    # ---- writing -----------------------------------------------------------------------------------------
    def write(self, envelope: BronzeEnvelope, journal: str) -> StoredFile:
        """Write one envelope to its final key in one atomic PUT that refuses to overwrite; returns its relative
        path and the digest of the bytes written."""
        relative = self.relative_path(envelope.identity, envelope.fetched_at, envelope.file_id)
        key = self.absolute(relative)
        if self.fs.exists(key):
            raise FileExistsError(f"Bronze file {relative} already exists; Bronze is append-only")
        self._journal_append(journal, relative)
        if envelope.body_file and envelope.raw_body is not None:
            self.fs.pipe_file(
                self.absolute(body_file_of(relative, envelope.body_file)), envelope.raw_body, mode="create"
            )
        data = envelope.to_json_bytes()
        try:
            self.fs.pipe_file(key, data, mode="create")
        except (FileExistsError, PermissionError) as exc:
            raise FileExistsError(f"Bronze file {relative} already exists; Bronze is append-only") from exc
        except OSError as exc:
            # S3 answers a failed If-None-Match with 412 PreconditionFailed, which s3fs raises as a plain OSError
            if "PreconditionFailed" in str(exc) or "412" in str(exc):
                raise FileExistsError(f"Bronze file {relative} already exists; Bronze is append-only") from exc
            raise
        return StoredFile(relative, file_digest(data))

    def read_bytes(self, relative: str) -> bytes:
        return self.fs.cat_file(self.absolute(relative))

    # ---- journal: one marker object per write, named by the file id ----------------------------------------
    def _journal_prefix(self, journal: str) -> str:
        return f"{self.prefix}/{JOURNAL_DIR}/{journal}"

    def _journal_append(self, journal: str, relative: str) -> None:
        file_id = relative.rsplit("/", 1)[-1].removesuffix(".json")
        self.fs.pipe_file(f"{self._journal_prefix(journal)}/{file_id}", relative.encode("utf-8"))

    def close_journal(self, journal: str) -> None:
        prefix = self._journal_prefix(journal)
        self.fs.invalidate_cache(prefix)
        try:
            markers = self.fs.find(prefix)
        except FileNotFoundError:
            return
        if markers:
            self.fs.rm(markers)
        self.fs.invalidate_cache(prefix)

    def journals(self) -> list[str]:
        folder = f"{self.prefix}/{JOURNAL_DIR}"
        self.fs.invalidate_cache(folder)
        try:
            markers = self.fs.find(folder)
        except FileNotFoundError:
            return []
        return sorted({m[len(folder) + 1 :].split("/", 1)[0] for m in markers})

    def journal_paths(self, journal: str) -> list[str]:
        prefix = self._journal_prefix(journal)
        self.fs.invalidate_cache(prefix)
        try:
            markers = self.fs.find(prefix)
        except FileNotFoundError:
            return []
        listed = sorted(v.decode("utf-8").strip() for v in self.fs.cat(markers).values()) if markers else []
        return [rel for rel in listed if rel and self.size(rel) is not None]

    def remove_journal_temp_files(self, journal: str) -> int:
        """Nothing to remove: a write is one PUT, and a cut PUT leaves no object (an incomplete multipart upload of
        a file over 100 MB is invisible, and the bucket's AbortIncompleteMultipartUpload rule reclaims its parts)."""
        return 0

    def register_with(self, conn) -> None:
        """Let a DuckDB connection read this store's URLs (read_json('s3://...')) through the same fsspec
        filesystem: DuckDB's own httpfs extension cannot be downloaded here, and this keeps one set of credentials."""
        protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        if not protocols & set(conn.list_filesystems()):
            conn.register_filesystem(self.fs)

    def batch_locations(self, conn, relatives: list[str]) -> list[tuple[str, int, str | None]]:
        """For Silver promotion: (URL DuckDB reads, size, problem or None) per relative path, with this store
        registered on `conn`. The problems read as the local store's do (outside the root, missing)."""
        self.register_with(conn)
        out: list[tuple[str, int, str | None]] = []
        safe = []
        for rel in relatives:
            try:
                self.absolute(rel)
                safe.append(rel)
            except UnsafeNameError:
                pass
        sizes = dict(zip(safe, self.sizes(safe)))
        for rel in relatives:
            if rel not in sizes:
                out.append((rel, 0, f"Bronze path {rel!r} points outside the Bronze root"))
            elif sizes[rel] is None:
                out.append((self.uri(rel), 0, f"Bronze file {rel} is missing"))
            else:
                out.append((self.uri(rel), sizes[rel], None))
        return out

    # ---- full scan (repair, replay) ----------------------------------------------------------------------
    def iter_files(self) -> Iterator[str]:
        self.fs.invalidate_cache(self.prefix)
        try:
            keys = self.fs.find(self.prefix)
        except FileNotFoundError:
            return
        for key in sorted(keys):
            relative = key[len(self.prefix) + 1 :]
            name = relative.rsplit("/", 1)[-1]
            if relative.startswith(JOURNAL_DIR + "/") or not name.endswith(".json") or name.startswith("."):
                continue
            yield relative
