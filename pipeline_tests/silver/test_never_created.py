"""Checks on a Silver table that was never created (its dataset is outside the plan, e.g. a bulk path without
FMP_PLAN=ultimate) pass and say so; a missing table that files were promoted into fails (silver/quality.py)."""

from __future__ import annotations

from pathlib import Path

from pipeline.silver.quality import never_created
from pipeline.warehouse.connection import Warehouse


def test_a_table_no_file_was_promoted_into_passes_and_one_that_lost_its_files_fails(tmp_path: Path) -> None:
    with Warehouse(tmp_path / "warehouse.duckdb").connect() as conn:
        conn.execute("CREATE TABLE silver.fmp_eod_bulk (ticker VARCHAR)")
        assert never_created(conn, "fmp_eod_bulk") is None  # it exists: the checks themselves decide

        skipped = never_created(conn, "fmp_profile_bulk")
        assert skipped is not None and skipped.passed
        assert skipped.description == "silver.fmp_profile_bulk does not exist yet: no file of its dataset was promoted"

        conn.execute("""
            INSERT INTO ops.file_ingestions (run_id, file_id, domain, source, dataset, bronze_path, fetched_at,
                                             can_promote, silver_table, silver_status)
            SELECT 'r1', 'f1', 'company', 'fmp', 'profile-bulk', 'x.json', TIMESTAMP '2025-11-10 22:00', true,
                   'fmp_profile_bulk', 'promoted'
        """)
        lost = never_created(conn, "fmp_profile_bulk")
    assert lost is not None and not lost.passed
    assert lost.description == "silver.fmp_profile_bulk is missing, yet 1 file(s) were promoted into it"
