"""Data-quality checks on Silver tables, as plain functions the Dagster asset checks call.

Each returns a CheckOutcome (passed, description, metadata, severity) and reads only what it needs with
set-based SQL, so the checks stay cheap on large tables. They catch what otherwise goes wrong silently in a
warehouse: duplicate or NULL keys, types drifting from the keymap, data that stopped
arriving, ledger counts that do not add up, and API fields nobody maps (schema drift, WARN only).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb

from pipeline.bronze.delisted import frozen_tickers
from pipeline.keymap.model import Keymap, SilverSpec
from pipeline.silver.schema import LINEAGE_COLUMNS, existing_columns, qualified
from pipeline.warehouse.dialect import quote

EXAMPLES = 10


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)
    severity: str = "ERROR"  # ERROR | WARN (maps to dagster AssetCheckSeverity)


def _key_list(spec: SilverSpec) -> str:
    return ", ".join(quote(k) for k in spec.key)


def key_unique(conn: duckdb.DuckDBPyConnection, spec: SilverSpec) -> CheckOutcome:
    """No two rows share a key (the PRIMARY KEY guarantees it; this also covers tables built without one)."""
    keys = _key_list(spec)
    rows = conn.execute(f"""
        SELECT {keys}, count(*) AS n FROM {qualified(spec.table)}
        GROUP BY ALL HAVING count(*) > 1 ORDER BY n DESC LIMIT {EXAMPLES}
    """).fetchall()
    dup_keys = conn.execute(f"""
        SELECT count(*) FROM (SELECT {keys} FROM {qualified(spec.table)} GROUP BY ALL HAVING count(*) > 1)
    """).fetchone()[0]
    examples = [dict(zip([*spec.key, "rows"], map(str, r))) for r in rows]
    meta = {"duplicate_keys": dup_keys, "examples": examples}
    if dup_keys:
        columns = ", ".join(spec.key)
        return CheckOutcome(False, f"silver.{spec.table}: {dup_keys} key(s) ({columns}) occur more than once", meta)
    return CheckOutcome(True, f"silver.{spec.table}: every key is unique", meta)


def key_not_null(conn: duckdb.DuckDBPyConnection, spec: SilverSpec) -> CheckOutcome:
    """No NULL in a key column or a NOT NULL column."""
    required = list(dict.fromkeys([*spec.key, *(c.name for c in spec.columns if not c.nullable)]))
    counts = ", ".join(f"count(*) FILTER (WHERE {quote(c)} IS NULL)" for c in required)
    row = conn.execute(f"SELECT {counts} FROM {qualified(spec.table)}").fetchone()
    nulls = {c: int(n) for c, n in zip(required, row) if n}
    meta = {"null_counts": nulls, "columns_checked": required}
    if sum(nulls.values()):
        return CheckOutcome(False, f"silver.{spec.table}: NULLs in required columns {nulls}", meta)
    return CheckOutcome(True, f"silver.{spec.table}: no NULL in {', '.join(required)}", meta)


def column_types_match(conn: duckdb.DuckDBPyConnection, spec: SilverSpec) -> CheckOutcome:
    """The warehouse columns and types equal the keymap's (plus the lineage columns)."""
    have = existing_columns(conn, spec.table)
    want = {c.name: c.duckdb_type for c in spec.columns}
    want.update({name: decl.split()[0] for name, decl in LINEAGE_COLUMNS})
    missing = sorted(set(want) - set(have))
    wrong = {c: {"warehouse": have[c], "keymap": want[c]} for c in want if c in have and have[c].upper() != want[c]}
    extra = sorted(set(have) - set(want))
    ok = not missing and not wrong
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    if wrong:
        problems.append(
            "type mismatches " + ", ".join(f"{c}: {v['warehouse']} != {v['keymap']}" for c, v in wrong.items())
        )
    return CheckOutcome(
        ok,
        f"silver.{spec.table}: " + ("; ".join(problems) if problems else "column types match the keymap"),
        {"missing": missing, "mismatched": wrong, "extra": extra},
    )


FRESHNESS_SQL = """
    SELECT ticker, max(silver_coverage_to) AS newest_row_date, max(fetched_at)::DATE AS last_fetch_date
    FROM ops.file_ingestions
    WHERE silver_status = 'promoted' AND silver_table = $table
      AND domain = $domain AND source = $source AND dataset = $dataset AND discriminator = $discriminator
    GROUP BY ticker
"""


def freshness(conn: duckdb.DuckDBPyConnection, keymap: Keymap, table: str, today: dt.date) -> CheckOutcome:
    """Every identity feeding the table delivered data within its recipe's freshness window.

    The newest row date per identity comes from the ledger (silver_coverage_to: the row dates of the rows
    it promoted), which also tells the indicators of a shared table apart. Snapshot tables (no row_date)
    use the date of the last promoted fetch. Identities never promoted are listed, but do not fail.
    """
    entries = keymap.entries_for_table(table)
    snapshot = entries[0].silver.row_date is None
    stale: list[dict] = []
    missing: list[str] = []
    checked = 0
    # a ticker whose holder was delisted gets no newer rows: its history is complete, not stale (DESIGN.md 12)
    delisted = frozen_tickers(conn, today) if entries and entries[0].per_ticker else {}
    for entry in entries:
        rows = conn.execute(
            FRESHNESS_SQL,
            {
                "table": table,
                "domain": entry.domain,
                "source": entry.source,
                "dataset": entry.dataset,
                "discriminator": entry.discriminator,
            },
        ).fetchall()
        if not rows:
            missing.append(entry.identity.key)
            continue
        limit = entry.recipe.effective_freshness_days
        for ticker, newest_row, last_fetch in rows:
            if ticker in delisted:
                continue
            checked += 1
            # an identity whose answers held no rows yet (a ticker that never split) is judged by its last fetch
            newest = last_fetch if snapshot or newest_row is None else newest_row
            age = (today - newest).days if newest else None
            if age is None or age > limit:
                stale.append(
                    {
                        "identity": entry.identity.with_ticker(ticker).key,
                        "newest": newest.isoformat() if newest else None,
                        "age_days": age,
                        "limit_days": limit,
                    }
                )
    stale.sort(key=lambda s: -(s["age_days"] if s["age_days"] is not None else 10**9))
    meta = {
        "identities_checked": checked,
        "stale_count": len(stale),
        "stale": stale[:50],
        "delisted_tickers_skipped": len(delisted),
        "never_promoted": missing,
        "today": today.isoformat(),
        "basis": "last promoted fetch date" if snapshot else "newest row date",
    }
    if stale:
        return CheckOutcome(
            False,
            f"silver.{table}: {len(stale)} of {checked} identities are stale "
            f"(e.g. {stale[0]['identity']}: {stale[0]['newest']}, limit {stale[0]['limit_days']} days)",
            meta,
        )
    return CheckOutcome(True, f"silver.{table}: all {checked} identities are fresh", meta)


RECONCILIATION_SQL = """
    SELECT count(*) AS files,
           coalesce(sum(silver_rows_read), 0), coalesce(sum(silver_inserted), 0), coalesce(sum(silver_updated), 0),
           coalesce(sum(silver_unchanged), 0), coalesce(sum(silver_rejected), 0), coalesce(sum(silver_duplicates), 0),
           count(*) FILTER (WHERE silver_rows_read IS DISTINCT FROM silver_inserted + silver_updated
                            + silver_unchanged + silver_rejected + silver_duplicates) AS unbalanced_files
    FROM ops.file_ingestions
    WHERE silver_status = 'promoted' AND silver_table = $table
"""


def reconciliation(conn: duckdb.DuckDBPyConnection, table: str) -> CheckOutcome:
    """Ledger counts add up: rows read = inserted + updated + unchanged + rejected + duplicates, per file and in
    total; and Silver holds no more rows than were ever inserted."""
    files, read, ins, upd, unch, rej, dup, unbalanced = conn.execute(RECONCILIATION_SQL, {"table": table}).fetchone()
    silver_rows = conn.execute(f"SELECT count(*) FROM {qualified(table)}").fetchone()[0]
    meta = {
        "files": files,
        "rows_read": read,
        "inserted": ins,
        "updated": upd,
        "unchanged": unch,
        "rejected": rej,
        "duplicates": dup,
        "silver_rows": silver_rows,
        "unbalanced_files": unbalanced,
    }
    problems = []
    if read != ins + upd + unch + rej + dup or unbalanced:
        problems.append(
            f"rows read {read} != inserted {ins} + updated {upd} + unchanged {unch} + rejected {rej} "
            f"+ duplicates {dup} ({unbalanced} unbalanced file(s))"
        )
    if silver_rows > ins:
        problems.append(f"Silver holds {silver_rows} rows but the ledger inserted only {ins}")
    if problems:
        return CheckOutcome(False, f"silver.{table}: " + "; ".join(problems), meta)
    return CheckOutcome(True, f"silver.{table}: {files} promoted files reconcile ({read} rows read)", meta)


def schema_drift(conn: duckdb.DuckDBPyConnection, keymap: Keymap, table: str) -> CheckOutcome:
    """WARN: API fields seen in promoted payloads (ops.schema_drift) that the keymap still does not map."""
    mapped = [c.api for c in keymap.tables()[table].columns]
    rows = conn.execute(
        """
        SELECT field, first_seen_file_id, first_seen_at FROM ops.schema_drift
        WHERE silver_table = $table AND field NOT IN (SELECT unnest($mapped))
        ORDER BY field
    """,
        {"table": table, "mapped": mapped},
    ).fetchall()
    fields = [r[0] for r in rows]
    meta = {
        "unmapped_fields": fields,
        "first_seen": {r[0]: {"file_id": r[1], "at": r[2].isoformat()} for r in rows[:50]},
    }
    if fields:
        return CheckOutcome(
            False,
            f"silver.{table}: {len(fields)} API field(s) not mapped by the keymap: {', '.join(fields[:20])}",
            meta,
            severity="WARN",
        )
    return CheckOutcome(True, f"silver.{table}: no unmapped API fields seen", meta, severity="WARN")


def never_created(conn: duckdb.DuckDBPyConnection, table: str) -> CheckOutcome | None:
    """The outcome of any check on a Silver table that does not exist, or None when it exists.

    A table is created when the first file of its dataset is promoted. A dataset the plan does not include (a bulk
    path without `FMP_PLAN=ultimate`, a calendar on Starter) never gets one, and its checks have nothing to vouch
    for: they pass, saying so. A missing table that files were promoted into is a real fault: they fail."""
    if existing_columns(conn, table):
        return None
    promoted = conn.execute(
        "SELECT count(*) FROM ops.file_ingestions WHERE silver_table = ? AND silver_status = 'promoted'", [table]
    ).fetchone()[0]
    if promoted:
        return CheckOutcome(False, f"silver.{table} is missing, yet {promoted} file(s) were promoted into it", {})
    return CheckOutcome(True, f"silver.{table} does not exist yet: no file of its dataset was promoted", {})
