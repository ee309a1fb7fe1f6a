"""The summaries `pipeline run` and `pipeline demo` close with (status and coverage live in pipeline.ops, replay in
the CLI)."""

from __future__ import annotations

from pipeline.cli.runner import RunOutcome
from pipeline.settings import Settings
from pipeline.text_table import text_table
from pipeline.warehouse.connection import Warehouse, WarehouseBusy, WarehouseMissing

TABLE_COUNTS_SQL = """
    SELECT schema_name, table_name, estimated_size
    FROM duckdb_tables()
    WHERE schema_name IN ('silver', 'gold') AND NOT table_name LIKE '%\\_\\_history' ESCAPE '\\'
    ORDER BY schema_name DESC, table_name
"""


def table_counts(conn) -> list[tuple[str, str, int]]:
    rows = conn.execute(TABLE_COUNTS_SQL).fetchall()
    out = []
    for schema, table, _ in rows:
        n = conn.execute(f'SELECT count(*) FROM {schema}."{table}"').fetchall()[0][0]
        out.append((schema, table, int(n)))
    return out


def check_summary(outcome: RunOutcome) -> list[str]:
    """How many checks passed, then every failed check (WARN ones too) and every check that did not run, by name:
    a count alone ("38/42 passed") does not say what to look at."""
    checks = outcome.checks
    passed = sum(1 for c in checks if c.passed)
    head = f"asset checks: {passed}/{len(checks)} passed"
    if outcome.checks_not_run:
        head += f", {len(outcome.checks_not_run)} did not run"
    lines = [head]
    lines += [f"  {c.describe()}" for c in checks if not c.passed]
    lines += [f"  did not run: {name}" for name in outcome.checks_not_run]
    return lines


def print_run_summary(outcome: RunOutcome, seconds: float) -> None:
    """The last lines of a plain `pipeline run`, after the phases and Dagster's own log lines."""
    head, *details = check_summary(outcome)
    print(f"pipeline run: {'SUCCESS' if outcome.success else 'FAILED'}; {head}; {seconds:.1f} s")
    for line in details:
        print(line)
    if outcome.deferred:
        print(f"  {outcome.deferred:,} request(s) deferred by the request budget: the next run fetches them")
    for phase in outcome.phases:
        if not phase.success:
            print(f"  run failed: {phase.name}")
    for phase in outcome.skipped:
        print(f"  not run, blocked by failures upstream: {phase}")


def print_demo_summary(settings: Settings, outcome: RunOutcome, seconds: float) -> None:
    print()
    print("=" * 78)
    print(f"Demo finished in {seconds:.1f} s: {'SUCCESS' if outcome.success else 'FAILED'}")
    if outcome.tickers:
        print(f"Tickers ({len(outcome.tickers)}, {outcome.universe_reason}): {', '.join(outcome.tickers)}")
    try:
        with Warehouse.from_settings(settings).reader() as conn:
            counts = table_counts(conn)
            last = conn.execute(
                "SELECT requests, skipped, files, errors FROM ops.runs ORDER BY started_at DESC LIMIT 1"
            ).fetchall()
            fetched = conn.execute(
                """
                SELECT coalesce(sum(requests), 0), coalesce(sum(skipped), 0) FROM ops.runs
                WHERE run_id IN (SELECT unnest(?))
            """,
                [[p.run_id for p in outcome.phases]],
            ).fetchall()[0]
    except (WarehouseBusy, WarehouseMissing) as exc:
        print(f"(warehouse not readable: {exc})")
        return
    del last
    requests, skipped = fetched
    if requests == 0:
        print(
            f"Nothing was due: {skipped} dataset/ticker pair(s) are within their cadence (min_age_days); "
            "no API call was made."
        )
    else:
        print(f"Fetched {requests} response(s); {skipped} dataset/ticker pair(s) were not due.")
    print()
    for line in text_table([[f"{schema}.{table}", f"{n:,}"] for schema, table, n in counts], ["table", "rows"], "lr"):
        print(line)
    head, *details = check_summary(outcome)
    print()
    print(head[0].upper() + head[1:])
    for line in details:
        print(line)
    for phase in outcome.phases:
        if not phase.success:
            print(f"  run failed: {phase.name}: {phase.failure}")
    for phase, why in outcome.not_needed:
        print(f"Skipped {phase}: nothing to do ({why}).")
    print()
    print(f"Data: {settings.data_dir}  (bronze/ = raw API files, warehouse.duckdb = ops/silver/gold)")
    print("Next:")
    print("  make ui                      # the asset graph, runs, checks and backfills in the Dagster UI")
    print("  .venv/bin/pipeline status    # recent runs and what is due next")
    print("  .venv/bin/pipeline coverage  # dates, files and gaps per dataset and ticker (+ HTML report)")
    print("  # query Silver and Gold (read-only, while no run is writing):")
    print(
        f"  .venv/bin/python -c \"import duckdb; print(duckdb.connect('{settings.warehouse_path}', read_only=True)"
        f".sql('FROM gold.fact_valuation_daily ORDER BY date DESC LIMIT 5'))\""
    )
    print("=" * 78)
