"""The ops ledger has one writer: `pipeline/ops/` (and the migrations, for their own `ops.schema_migrations`).

A write to an `ops.*` table from anywhere else would be a second place to change when a ledger column or rule
changes, and a second place to get it wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import pipeline

PACKAGE = Path(pipeline.__file__).parent
# INSERT INTO / UPDATE / DELETE FROM an ops table, across line breaks and in any case
WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+ops\.(\w+)", re.IGNORECASE)
MIGRATIONS = PACKAGE / "warehouse" / "migrations.py"


def ledger_writes(root: Path) -> list[tuple[Path, str]]:
    """(file, table) for every write to an ops table in the Python and SQL files under `root`."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".sql")):
        for match in WRITE.finditer(path.read_text(encoding="utf-8")):
            found.append((path, match.group(2).lower()))
    return found


def test_only_the_ops_package_writes_ops_tables() -> None:
    writes = ledger_writes(PACKAGE)
    strays = [
        f"{path.relative_to(PACKAGE.parent)} writes ops.{table}"
        for path, table in writes
        if not path.is_relative_to(PACKAGE / "ops") and not (path == MIGRATIONS and table == "schema_migrations")
    ]
    assert strays == [], "ops.* tables are written outside pipeline/ops/:\n" + "\n".join(strays)
    # the scan sees the writes that exist, so an empty result is not a pattern that matches nothing
    tables = {table for path, table in writes}
    assert {"file_ingestions", "runs", "gold_builds", "schema_drift", "schema_migrations"} <= tables


def test_the_scan_catches_a_stray_write(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.py").write_text('SQL = """\n    update OPS.runs\n    SET status = 1\n"""\n')
    (tmp_path / "also.sql").write_text("DELETE\nFROM ops.file_ingestions WHERE true;\n")
    assert sorted(table for _path, table in ledger_writes(tmp_path)) == ["file_ingestions", "runs"]
