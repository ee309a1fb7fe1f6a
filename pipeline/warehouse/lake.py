"""Opening a DuckLake with a PostgreSQL catalog, offline, and the advisory locks its writers share.

Extensions: DuckDB would download `ducklake` and `postgres_scanner` from extensions.duckdb.org, which these
machines cannot reach. The registry packages duckdb-extension-ducklake / duckdb-extension-postgres (the
`ducklake` extra) ship the binaries; they are LOADed from their installed files with auto-install and
auto-load off. The postgres binary must be loaded under the file name `postgres_scanner.duckdb_extension`,
because DuckDB derives the entry point (`postgres_scanner_duckdb_cpp_init`) from the file name, so it is
copied once into a per-user cache folder. A data path on s3:// also loads `httpfs`
(duckdb-extension-httpfs) with a secret built from the usual AWS_* variables.

Locks (PostgreSQL session advisory locks on the catalog database, one session per thread):

- `catalog_init`: around ATTACH and migrations. Two processes attaching a catalog that does not exist yet
  race on creating its tables, and the loser fails; concurrent `CREATE TABLE IF NOT EXISTS` conflict too.
- `write(None)`: exclusive write lock, the default for every write connection. Ledger registration, run
  records, Gold builds and migrations take it, so their ids (max + 1) grow in commit order and they never
  conflict.
- `write(scopes)`: the write lock shared, plus one exclusive lock per scope (e.g. a Silver table and
  ticker). Writers of disjoint scopes run at once; DuckLake may refuse one commit when both changed the same
  table, and the caller reruns it. Writers of one scope never overlap, so a key is never inserted twice.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pipeline.warehouse.dialect import literal

LAKE_PREFIX = "ducklake:"
CATALOG_PREFIX = "ducklake:postgres:"
LAKE_ALIAS = "lake"
_INIT_KEY = "pipeline:ducklake-catalog-init"
_WRITE_KEY = "pipeline:warehouse-write"
_copy_lock = threading.Lock()
_sessions = threading.local()  # dsn -> this thread's lock session, shared by every Warehouse of that lake
_ready: set[str] = set()  # catalogs this process has seen created: their ATTACH needs no lock


class LakeUnavailable(RuntimeError):
    """The DuckLake extensions are not installed (or do not match the installed DuckDB)."""


def redacted(spec: str) -> str:
    """A lake spec safe for logs and errors: passwords in a conninfo or URL replaced by ***."""
    spec = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", spec, flags=re.IGNORECASE)
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", spec)


def conninfo(spec: str) -> str:
    """The libpq conninfo (key=value pairs or a postgresql:// URL) of a `ducklake:postgres:` spec."""
    return spec.removeprefix(CATALOG_PREFIX)


def _package_extension(package: str, name: str) -> Path:
    try:
        module = __import__(package)
    except ImportError as exc:
        raise LakeUnavailable(
            f"the DuckLake warehouse needs the {package.replace('_', '-')} package "
            f"(pip install -e '.[ducklake]'): {exc}"
        ) from None
    path = Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise LakeUnavailable(
            f"{package} has no extension for DuckDB {duckdb.__version__} at {path}; install the "
            "extension package version that matches duckdb (constraints.txt pins both)"
        )
    return path


def extension_files() -> tuple[Path, Path]:
    """(postgres_scanner, ducklake) extension files, the first copied under the name DuckDB expects."""
    postgres = _package_extension("duckdb_extension_postgres", "postgres")
    ducklake = _package_extension("duckdb_extension_ducklake", "ducklake")
    folder = Path(tempfile.gettempdir()) / f"pipeline-duckdb-extensions-{os.getuid()}" / f"v{duckdb.__version__}"
    target = folder / "postgres_scanner.duckdb_extension"
    with _copy_lock:
        if not target.is_file() or target.stat().st_size != postgres.stat().st_size:
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f".postgres_scanner.{os.getpid()}.tmp"
            shutil.copyfile(postgres, partial)
            os.replace(partial, target)  # atomic: a concurrent process never loads half a file
    return target, ducklake


def _s3_secret_sql() -> str:
    """A DuckDB S3 secret from the usual AWS variables (the same ones the Bronze store's s3fs reads)."""
    env = os.environ
    parts = ["TYPE s3"]
    for option, names in (
        ("KEY_ID", ("AWS_ACCESS_KEY_ID",)),
        ("SECRET", ("AWS_SECRET_ACCESS_KEY",)),
        ("SESSION_TOKEN", ("AWS_SESSION_TOKEN",)),
        ("REGION", ("AWS_REGION", "AWS_DEFAULT_REGION")),
    ):
        value = next((env[n] for n in names if env.get(n)), None)
        if value:
            parts.append(f"{option} {literal(value)}")
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:  # an S3-compatible server: host[:port], path-style URLs, TLS as the URL says
        parts += [
            f"ENDPOINT {literal(endpoint.split('://', 1)[-1].rstrip('/'))}",
            "URL_STYLE 'path'",
            f"USE_SSL {str(not endpoint.startswith('http://')).lower()}",
        ]
    return f"CREATE OR REPLACE SECRET pipeline_lake_s3 ({', '.join(parts)})"


_instances: dict[tuple[int, str, str | None], duckdb.DuckDBPyConnection] = {}
_instances_lock = threading.Lock()


def open_lake(spec: str, data_path: str | None, locks: LakeLocks | None) -> duckdb.DuckDBPyConnection:
    """A connection to the lake, with `lake` in use so `ops.x` means `lake.ops.x`; close it when done.

    Loading the extensions and attaching costs about 0.3 s, more than a short transaction, so each process
    keeps one in-memory DuckDB with the lake attached and hands out its cursors: separate connections of one
    database (own transactions, own temp tables), each reading the catalog's latest snapshot when its
    transaction starts."""
    key = (os.getpid(), spec, data_path)  # never reuse an instance inherited through fork
    with _instances_lock:
        root = _instances.get(key)
        if root is None:
            root = _attach(spec, data_path, locks)
            _instances[key] = root
    conn = root.cursor()
    conn.execute(f"USE {LAKE_ALIAS}")
    return conn


def _attach(spec: str, data_path: str | None, locks: LakeLocks | None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the extensions loaded and the lake attached as `lake`."""
    postgres, ducklake = extension_files()
    if data_path and "://" not in data_path:
        Path(data_path).mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(
        ":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    try:
        conn.execute(f"LOAD {literal(str(postgres))}")
        conn.execute(f"LOAD {literal(str(ducklake))}")
        if data_path and data_path.startswith("s3://"):  # DuckLake writes its Parquet files through httpfs
            conn.execute(f"LOAD {literal(str(_package_extension('duckdb_extension_httpfs', 'httpfs')))}")
            conn.execute(_s3_secret_sql())
        attach = f"ATTACH {literal(spec)} AS {LAKE_ALIAS} (DATA_PATH {literal(data_path or '')})"
        if locks is not None and not locks.catalog_ready():
            with locks.catalog_init():
                conn.execute(attach)
        else:
            conn.execute(attach)
        conn.execute(f"USE {LAKE_ALIAS}")
    except BaseException:
        conn.close()
        raise
    return conn


SHARED = "shared:"  # a scope taken in shared mode: excludes the writers of the whole scope, not each other


def silver_scopes(table: str, tickers: Sequence[str] | None) -> list[str]:
    """Lock scopes of one Silver promotion: the whole table, or the table shared plus each of its tickers.
    Promotions of one ticker never overlap (so one key is never inserted twice), disjoint tickers do."""
    if not tickers:
        return [f"silver.{table}"]
    return [f"{SHARED}silver.{table}"] + [f"silver.{table}:{t}" for t in tickers]


DUCKDB_POOL = "duckdb_writer"


def writer_pool(uses_lake: bool) -> str | None:
    """The Dagster pool of steps that write the warehouse: `duckdb_writer` (limit 1 in dagster.yaml: one
    writing process per DuckDB file); none on a lake, whose writers coordinate through the catalog's locks."""
    return None if uses_lake else DUCKDB_POOL


class LakeLocks:
    """PostgreSQL advisory locks on the lake's catalog database. One session per thread and catalog, shared by
    all `Warehouse` objects of the thread, so a thread that holds a lock and opens another connection re-enters
    its own lock instead of waiting for itself."""

    def __init__(self, spec: str) -> None:
        self.dsn = conninfo(spec)

    def _cursor(self):
        by_dsn = _sessions.__dict__.setdefault("by_dsn", {})
        conn = by_dsn.get(self.dsn)
        if conn is None or conn.closed:
            try:
                import psycopg2
            except ImportError as exc:
                raise LakeUnavailable(
                    f"the DuckLake warehouse needs psycopg2 (pip install -e '.[ducklake]'): {exc}"
                ) from None
            conn = psycopg2.connect(self.dsn, application_name="pipeline-warehouse-locks")
            conn.autocommit = True
            by_dsn[self.dsn] = conn
        return conn.cursor()

    @contextmanager
    def _held(self, keys: Sequence[tuple[str, bool]]) -> Iterator[None]:
        """Take (key, shared) locks in order; release in reverse, also when the block fails."""
        cur = self._cursor()
        taken: list[tuple[str, bool]] = []
        try:
            for key, shared in keys:
                cur.execute(f"SELECT pg_advisory_lock{'_shared' if shared else ''}(hashtext(%s))", [key])
                taken.append((key, shared))
            yield
        finally:
            for key, shared in reversed(taken):
                cur.execute(f"SELECT pg_advisory_unlock{'_shared' if shared else ''}(hashtext(%s))", [key])
            cur.close()

    def catalog_ready(self) -> bool:
        """Whether DuckLake's catalog tables exist already (then attaching creates nothing and cannot race)."""
        if self.dsn in _ready:
            return True
        cur = self._cursor()
        try:
            cur.execute("SELECT to_regclass('ducklake_metadata') IS NOT NULL")
            ready = bool(cur.fetchone()[0])
        finally:
            cur.close()
        if ready:
            _ready.add(self.dsn)
        return ready

    @contextmanager
    def catalog_init(self) -> Iterator[None]:
        with self._held([(_INIT_KEY, False)]):
            yield

    @contextmanager
    def write(self, scopes: Sequence[str] | None = None) -> Iterator[None]:
        if scopes is None:
            keys = [(_WRITE_KEY, False)]
        else:  # sorted: two writers of overlapping scopes take them in one order, so they cannot deadlock
            keys = [(_WRITE_KEY, True)] + [
                (f"pipeline:scope:{s.removeprefix(SHARED)}", s.startswith(SHARED)) for s in sorted(set(scopes))
            ]
        with self._held(keys):
            yield


GOLD_POOL = "gold"


def gold_pool(uses_lake: bool) -> str:
    """The Dagster pool of the Gold steps: at most one Gold build at a time, whoever launched it (limit 1 in
    dagster.yaml). On the DuckDB file that is the writers' pool (one writing process per file); a lake lets writers
    run together, so Gold steps there take a slot of their own pool."""
    return writer_pool(uses_lake) or GOLD_POOL
