"""Ordered, checksummed migrations: `migrations/NNNN_name.sql`, one transaction each.

The files are written for the DuckDB file; on a DuckLake they run without the keys, indexes and sequences it
lacks (pipeline.warehouse.dialect), and the recorded checksum stays the file's.

A fresh database and an old one must end with the same history, so an applied migration may never change or
disappear, and two files may not claim one version. Any of these stops the process with the file's name.

This module is the only writer of `ops.schema_migrations`: migrations own their ledger, because they must run
before any other `ops` table exists. Every other `ops.*` table is written only by `pipeline.ops`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline.settings import PACKAGE_ROOT, PROJECT_ROOT
from pipeline.warehouse.dialect import portable_ddl

MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The migrations folder and the database disagree; the message names the file."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    checksum: str

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def default_migrations_dir() -> Path:
    """The project's `migrations/` folder, found through the package, never the working directory."""
    for candidate in (PROJECT_ROOT / "migrations", PACKAGE_ROOT / "resources" / "migrations"):
        if candidate.is_dir():
            return candidate
    return PROJECT_ROOT / "migrations"


def discover(folder: Path) -> list[Migration]:
    """Migrations in version order. A missing folder means nothing to apply (a database that already recorded
    migrations then fails `verify` with the name of the first missing file)."""
    if not folder.is_dir():
        return []
    found: dict[int, Migration] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix != ".sql":
            continue
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path} has a malformed name; use NNNN_lower_snake_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"migration version {version:04d} is used twice: {found[version].path.name} and {path.name}"
            )
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        found[version] = Migration(version, match.group(2), path, checksum)
    return [found[v] for v in sorted(found)]


LEDGER_DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.schema_migrations (
    version    INTEGER   PRIMARY KEY,
    name       VARCHAR   NOT NULL,
    checksum   VARCHAR   NOT NULL,
    applied_at TIMESTAMP NOT NULL
);
"""


def applied(conn: duckdb.DuckDBPyConnection) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of the migrations recorded in the database."""
    exists = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ops' AND table_name = 'schema_migrations'"
    ).fetchone()[0]
    if not exists:
        return {}
    rows = conn.execute("SELECT version, name, checksum FROM ops.schema_migrations").fetchall()
    return {v: (n, c) for v, n, c in rows}


def verify(migrations: list[Migration], recorded: dict[int, tuple[str, str]], folder: Path) -> list[Migration]:
    """Check recorded history against the files; return the pending migrations."""
    by_version = {m.version: m for m in migrations}
    for version, (name, checksum) in sorted(recorded.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"migration {version:04d}_{name}.sql was applied to this database but is missing from {folder}"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {migration.path} changed after it was applied (checksum mismatch); "
                "restore the file and add a new migration instead"
            )
    return [m for m in migrations if m.version not in recorded]


def pending(conn: duckdb.DuckDBPyConnection, folder: Path | None = None) -> list[Migration]:
    folder = folder or default_migrations_dir()
    return verify(discover(folder), applied(conn), folder)


def migrate(conn: duckdb.DuckDBPyConnection, folder: Path | None = None) -> list[Migration]:
    """Apply pending migrations in order, one transaction each. Returns what was applied."""
    folder = folder or default_migrations_dir()
    todo = pending(conn, folder)
    if not todo:
        return []
    conn.execute(portable_ddl(conn, LEDGER_DDL))
    done: list[Migration] = []
    for migration in todo:
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.execute(portable_ddl(conn, migration.sql))  # the checksum is the file's, as written
            conn.execute(
                "INSERT INTO ops.schema_migrations VALUES (?, ?, ?, now() AT TIME ZONE 'UTC')",
                [migration.version, migration.name, migration.checksum],
            )
            conn.execute("COMMIT")
        except Exception as exc:
            conn.execute("ROLLBACK")
            raise MigrationError(f"migration {migration.path} failed: {exc}") from exc
        done.append(migration)
    return done
