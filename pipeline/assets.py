"""Dagster assets built from the keymap. Thin wiring: the work happens in pipeline.bronze/silver/gold.

Bronze: one asset per keymap entry (`bronze/<domain>/<dataset>[__<disc>]`), grouped in two multi-assets (per
ticker, partitioned by `tickers`; global, unpartitioned) so that one step fetches many datasets and tickers
concurrently through one client, instead of one process per asset and ticker.
Silver: one asset per table (`silver/<table>`), likewise in two multi-assets. Gold: one asset per table
(`gold/<name>`), reading DuckDB directly. The data-quality checks are standalone asset checks (pipeline.checks).
"""


import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg
import httpx
from dagster import AssetExecutionContext

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.report import FAILING_ERRORS
from pipeline.bronze.store import BronzeStore
from pipeline.keymap.model import Keymap, KeymapEntry
from pipeline.ops.runs import record_run
from pipeline.partitions import tickers_partitions
from pipeline.resources import FmpResource
from pipeline.settings import Settings
from pipeline.warehouse.connection import WarehouseBusy, retry_conflicts
from pipeline.warehouse.lake import silver_scopes, writer_pool
from pipeline.warehouse.resource import WarehouseResource

FMP_POOL = "fmp_api"            # fetching steps: two runs together cannot exceed the rate limit

# A Bronze step fails after the client's own per-request retries. When every failure was transient (network,
# rate limit, busy warehouse) the step is retried after a growing pause; only what is still due is fetched again.
BRONZE_RETRY = dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
TRANSIENT_ERRORS = frozenset({"transport", "rate_limited"})


def bronze_key(entry: KeymapEntry) -> dg.AssetKey:
    return dg.AssetKey(["bronze", entry.domain, entry.asset_name])


def silver_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["silver", table])


def gold_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["gold", name])


def code_version(*parts: object) -> str:
    """A short hash of what defines an asset (its keymap entries, its Gold SQL): Dagster shows an asset whose
    definition changed since its last materialization as changed, and reports the version on each run."""
    text = json.dumps([dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def entry_fingerprint(entry: KeymapEntry) -> dict:
    """The keymap entry without its position in the file (reordering the YAML changes nothing)."""
    return {k: v for k, v in dataclasses.asdict(entry).items() if k != "index"}


def entry_tags(entry: KeymapEntry) -> dict[str, str]:
    return {"domain": entry.domain, "source": entry.source, "ticker_scope": entry.ticker_scope,
            "min_plan": entry.recipe.min_plan}


def entry_description(entry: KeymapEntry) -> str:
    recipe = entry.recipe
    cadence = f"every {recipe.min_age_days} day(s)" if recipe.min_age_days else "every run"
    window = f", windows of at most {recipe.max_window_days} days" if recipe.max_window_days else ""
    return (f"{entry.description}\n\nFMP `{recipe.path}` ({entry.ticker_scope}; {cadence}{window}; "
            f"plan {recipe.min_plan}+). Docs: {entry.docs_url}\n\nSilver table: `silver.{entry.silver.table}`.")


def partition_tickers(context: AssetExecutionContext) -> list[str] | None:
    """The tickers of this run, or None for an unpartitioned asset (guards against the partition-tag leak)."""
    if context.assets_def.partitions_def is None:
        return None
    return list(context.partition_keys)


def _bronze_metadata(report, fmp: FmpResource) -> dict:
    return {
        "source": fmp.source_label,
        "requests": report.requests,
        "files": report.files,
        "rows": report.rows,
        "bytes": report.bytes,
        "due_identities": report.due,
        "skipped": dg.MetadataValue.json(dict(report.skipped)),
        "skip_examples": dg.MetadataValue.json(report.skip_reasons),
        "failed": dg.MetadataValue.json(dict(report.failed)),
        "failure_examples": dg.MetadataValue.json(report.failures),
        "coverage_from": str(report.coverage_from or ""),
        "coverage_to": str(report.coverage_to or ""),
        "dagster/row_count": report.rows,
    }


def build_bronze_asset(name: str, entries: Sequence[KeymapEntry], settings: Settings, per_ticker: bool,
                       all_entries: Sequence[KeymapEntry] = ()) -> dg.AssetsDefinition:
    specs = [
        dg.AssetSpec(
            bronze_key(e), group_name=e.domain, description=entry_description(e), kinds={"fmp", "json"},
            tags={"layer": "bronze", **entry_tags(e)}, skippable=True, code_version=code_version(entry_fingerprint(e)),
            metadata={"fmp_path": e.recipe.path, "docs_url": dg.MetadataValue.url(e.docs_url),
                      "min_age_days": e.recipe.min_age_days, "ticker_scope": e.ticker_scope},
        )
        for e in entries
    ]
    by_key = {bronze_key(e): e for e in entries}

    @dg.multi_asset(
        name=name, specs=specs, can_subset=True, pool=FMP_POOL,
        partitions_def=tickers_partitions if per_ticker else None,
        backfill_policy=dg.BackfillPolicy.single_run() if per_ticker else None,
        retry_policy=BRONZE_RETRY,
    )
    def _bronze(context: AssetExecutionContext, warehouse: WarehouseResource, fmp: FmpResource) -> Iterator[dg.MaterializeResult]:
        selected = [by_key[k] for k in sorted(context.selected_asset_keys, key=str) if k in by_key]
        tickers = partition_tickers(context) or []
        if fmp.uses_sample_source:
            context.log.info("FMP_API_KEY is unset: fetching from the bundled sample source (no network, no key)")
        with fmp.client(settings) as client, _only_transient_errors_retry():
            report = run_bronze(
                entries=selected, tickers=tickers, warehouse=warehouse.warehouse,
                store=BronzeStore.at(settings.bronze_location), client=client, run_id=context.run_id,
                today=settings.today(), fmp_plan=fmp.plan, source_mode=fmp.source_mode,
                max_concurrency=fmp.max_concurrency, job=context.job_name, log_fn=context.log.info,
                orphan_entries=list(all_entries) or None,   # a crash may leave files of the other Bronze step
            )
        for entry in selected:
            rep = report.entries[entry.asset_name]
            if any(k == "plan" or k.startswith("not_sent_") for k in rep.skipped):
                context.log.warning(f"{bronze_key(entry).to_user_string()}: {rep.skip_reasons[0]}")
            yield dg.MaterializeResult(asset_key=bronze_key(entry), metadata=_bronze_metadata(rep, fmp))
        if report.hard_failures:
            lines = [f for r in report.entries.values() for f in r.failures][:10]
            kinds = {cls for r in report.entries.values() for cls, n in r.failed.items() if n and cls in FAILING_ERRORS}
            transient = kinds <= TRANSIENT_ERRORS
            raise dg.Failure(
                description=f"{report.hard_failures} Bronze request(s) failed after retries ({', '.join(sorted(kinds))}); "
                            "everything that succeeded was written and registered"
                            + ("; the step is retried later" if transient else "") + ". First failures:\n"
                            + "\n".join(lines),
                allow_retries=transient,
            )

    return _bronze


@contextmanager
def _only_transient_errors_retry() -> Iterator[None]:
    """Let the step's retry policy act on transient errors only: anything else is a bug or bad input, and
    fails the step for good (with the original error as its cause)."""
    try:
        yield
    except dg.Failure:
        raise
    except (WarehouseBusy, httpx.TransportError):
        raise
    except Exception as exc:
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc


def build_bronze_assets(keymap: Keymap, settings: Settings) -> list[dg.AssetsDefinition]:
    out = []
    per_ticker = list(keymap.per_ticker_entries())
    global_ = list(keymap.global_entries())
    if per_ticker:
        out.append(build_bronze_asset("bronze_per_ticker", per_ticker, settings, per_ticker=True, all_entries=list(keymap)))
    if global_:
        out.append(build_bronze_asset("bronze_global", global_, settings, per_ticker=False, all_entries=list(keymap)))
    return out


def bronze_keys_by_table(keymap: Keymap) -> dict[str, list[dg.AssetKey]]:
    out: dict[str, list[dg.AssetKey]] = {}
    for entry in keymap:
        out.setdefault(entry.silver.table, []).append(bronze_key(entry))
    return out


def record_failed_step(warehouse: WarehouseResource, context: AssetExecutionContext, message: str) -> None:
    """Leave a failed step in ops.runs (what `pipeline status` shows), without hiding the original error."""
    try:
        with warehouse.connect() as conn:
            record_run(conn, context.run_id, job=context.job_name, source_mode=None, status="failed", errors=1,
                       message=message[:2000], finished=True)
    except Exception as exc:  # noqa: BLE001 - the step's own error is the one to raise
        context.log.warning(f"could not record the failure in ops.runs: {exc}")


# ---- Silver ------------------------------------------------------------------------------------------------

PROMOTE_BATCH_FILES = 2000   # files per promotion transaction: bounds memory and the work lost to a crash


def column_schema(columns: list[tuple[str, str, bool]]) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(name, dtype, constraints=dg.TableColumnConstraints(nullable=nullable))
        for name, dtype, nullable in columns
    ])


def silver_column_schema(spec) -> dg.TableSchema:
    from pipeline.silver.schema import LINEAGE_COLUMNS

    cols = [(c.name, c.duckdb_type, c.nullable) for c in spec.columns]
    cols += [(name, decl.split()[0], False) for name, decl in LINEAGE_COLUMNS]
    return column_schema(cols)


def gold_column_schema(model) -> dg.TableSchema:
    """The Gold table's declared columns (shown before the first build), with descriptions when the model has them."""
    descriptions = getattr(model, "descriptions", None) or {}
    return dg.TableSchema(columns=[
        dg.TableColumn(name, dtype, description=descriptions.get(name),
                       constraints=dg.TableColumnConstraints(nullable=name not in model.key))
        for name, dtype in model.columns
    ])


def table_preview(conn, qualified_table: str, order_by: str, limit: int = 5) -> str:
    frame = conn.execute(f"SELECT * FROM {qualified_table} ORDER BY {order_by} LIMIT {limit}").df()
    frame = frame.loc[:, [c for c in frame.columns if c not in ("run_id", "bronze_file_id")]].iloc[:, :10]
    return frame.to_markdown(index=False) if len(frame) else "(empty)"


def promote_table(warehouse: WarehouseResource, keymap: Keymap, table: str, tickers: list[str] | None,
                  bronze_root, run_id: str, log_fn) -> dict:
    """Promote every waiting file of one table (for some tickers), in batches; returns summed metadata."""
    from pipeline.ops.file_ingestions import promotable_files
    from pipeline.silver.promote import promote_files
    from pipeline.silver.schema import ensure_table

    totals = {"files": 0, "failed_files": 0, "rows_read": 0, "inserted": 0, "updated": 0, "unchanged": 0,
              "rejected": 0, "duplicates": 0}
    drift: set[str] = set()
    coverage: list = []
    failures: list[str] = []
    with warehouse.transaction() as conn:
        added = ensure_table(conn, keymap.tables()[table])
    if added:
        log_fn(f"silver.{table}: added column(s) {', '.join(added)} from the keymap")
    scopes = silver_scopes(table, tickers)

    def promote_batch():
        with warehouse.transaction(scopes) as conn:
            files = promotable_files(conn, tables=[table], tickers=tickers)
            batch = files[:PROMOTE_BATCH_FILES]
            return files, (promote_files(conn, keymap, table, batch, bronze_root, run_id) if batch else None)

    while True:
        files, result = retry_conflicts(promote_batch, log_fn=log_fn)   # a DuckLake commit may meet a concurrent one
        if result is None:
            break
        meta = result.metadata()
        for k in totals:
            totals[k] += meta.get(k) or 0
        drift.update(result.drift_fields)
        failures.extend(meta.get("failed") or [])
        coverage += [d for d in (result.coverage_from, result.coverage_to) if d]
        log_fn(f"silver.{table}: promoted {result.files} file(s): +{result.inserted} new, {result.updated} updated, "
               f"{result.unchanged} unchanged, {result.rejected} rejected")
        if len(files) <= PROMOTE_BATCH_FILES:
            break
    totals["drift_fields"] = sorted(drift)
    totals["failures"] = failures[:20]
    totals["coverage_from"] = str(min(coverage)) if coverage else ""
    totals["coverage_to"] = str(max(coverage)) if coverage else ""
    return totals


def build_silver_asset(name: str, keymap: Keymap, tables: Sequence[str], settings: Settings,
                       per_ticker: bool) -> dg.AssetsDefinition:
    from pipeline.silver.schema import qualified

    deps = bronze_keys_by_table(keymap)
    specs = []
    for table in tables:
        entries = keymap.entries_for_table(table)
        spec = keymap.tables()[table]
        domains = sorted({e.domain for e in entries})
        description = (f"Typed Silver table `silver.{table}` (key {', '.join(spec.key)}), merged from "
                       f"{len(entries)} keymap entr{'y' if len(entries) == 1 else 'ies'}: "
                       + "; ".join(f"{e.description} Docs: {e.docs_url}" for e in entries[:3])
                       + f"\n\nHistory of every changed version: `silver.{table}__history`.")
        specs.append(dg.AssetSpec(
            silver_key(table), deps=deps[table], group_name=domains[0], description=description, kinds={"duckdb"},
            tags={"layer": "silver", **entry_tags(entries[0])}, skippable=True,
            code_version=code_version(spec, *[entry_fingerprint(e) for e in entries]),
            metadata={"dagster/table_name": f"warehouse.silver.{table}", "dagster/column_schema": silver_column_schema(spec),
                      "key": dg.MetadataValue.json(list(spec.key)), "docs_url": dg.MetadataValue.url(entries[0].docs_url)},
        ))
    by_key = {silver_key(t): t for t in tables}

    @dg.multi_asset(
        name=name, specs=specs, can_subset=True, pool=writer_pool(settings.uses_lake),
        partitions_def=tickers_partitions if per_ticker else None,
        backfill_policy=dg.BackfillPolicy.single_run() if per_ticker else None,
    )
    def _silver(context: AssetExecutionContext, warehouse: WarehouseResource):
        tickers = partition_tickers(context)
        for key in sorted(context.selected_asset_keys, key=str):
            table = by_key.get(key)
            if table is None:
                continue
            try:
                totals = promote_table(warehouse, keymap, table, tickers, settings.bronze_location, context.run_id,
                                       context.log.info)
            except Exception as exc:
                record_failed_step(warehouse, context, f"silver.{table}: {type(exc).__name__}: {exc}")
                raise
            spec = keymap.tables()[table]
            with warehouse.connect() as conn:
                record_run(conn, context.run_id, job=context.job_name, source_mode=None,
                           status="partial" if totals["failed_files"] else "success", files=totals["files"],
                           rows=totals["inserted"] + totals["updated"], errors=totals["failed_files"], finished=True)
                rows = conn.execute(f"SELECT count(*) FROM {qualified(table)}").fetchall()[0][0]
                preview = table_preview(conn, qualified(table), "fetched_at DESC")
                if totals["drift_fields"]:
                    context.log.warning(f"silver.{table}: the API sends fields the keymap does not map: "
                                        f"{', '.join(totals['drift_fields'][:20])}")
                yield dg.MaterializeResult(asset_key=key, metadata={
                    **{k: v for k, v in totals.items() if isinstance(v, int)},
                    "drift_fields": dg.MetadataValue.json(totals["drift_fields"]),
                    "failures": dg.MetadataValue.json(totals["failures"]),
                    "coverage_from": totals["coverage_from"], "coverage_to": totals["coverage_to"],
                    "dagster/row_count": int(rows),
                    "dagster/table_name": f"warehouse.silver.{table}",
                    "dagster/column_schema": silver_column_schema(spec),
                    "preview": dg.MetadataValue.md(preview),
                })

    return _silver


def silver_groups(keymap: Keymap) -> dict[str, list[str]]:
    """Silver multi-asset name -> its tables (per-ticker tables are partitioned, global ones are not)."""
    groups = {"silver_per_ticker": sorted({e.silver.table for e in keymap.per_ticker_entries()}),
              "silver_global": sorted({e.silver.table for e in keymap.global_entries()})}
    return {name: tables for name, tables in groups.items() if tables}


def build_silver_assets(keymap: Keymap, settings: Settings) -> list[dg.AssetsDefinition]:
    return [build_silver_asset(name, keymap, tables, settings, per_ticker=name == "silver_per_ticker")
            for name, tables in silver_groups(keymap).items()]


# ---- Gold --------------------------------------------------------------------------------------------------

GOLD_DESCRIPTIONS = {
    "dim_instrument": "One row per ticker: name, exchange, sector, industry, country, currency, ETF and trading flags, "
                      "IPO date, from the stock list and the latest profile.",
    "dim_instrument_history": "Every version of each instrument's descriptive attributes (SCD2: valid_from/valid_to).",
    "fact_price_daily": "Daily bars in three explicitly named series: as traded (open..close, volume), split-adjusted "
                        "(split_adj_*, splits only, current share basis) and total return (tr_close, splits and "
                        "dividends); returns, 20/50/200-day SMAs, 52-week range and realised volatility on the "
                        "split-adjusted series (see each column's description).",
    "fact_fundamentals_quarterly": "Quarterly income statement, balance sheet, cash flow, key metrics and ratios per "
                                   "fiscal period, with trailing-twelve-month sums of flow items.",
    "fact_fundamentals_annual": "Annual income statement, balance sheet, cash flow, key metrics and ratios per fiscal year.",
    "fact_valuation_daily": "Point-in-time daily valuation (market cap, P/E, P/B, P/S, EV/EBITDA, dividend and FCF "
                            "yield): a statement counts from the first close at or after its acceptance (US Eastern), "
                            "and its restated share count is put on each day's share basis.",
    "fact_macro_daily": "Per trading date: the treasury curve and, per economic indicator, the newest value already "
                        "released (economic-calendar release time, else a documented lag), with its reference "
                        "period and the day it became known.",
}


def gold_chart(conn) -> str | None:
    """A small markdown chart (close and P/E of the largest ticker, monthly) for the valuation asset."""
    rows = conn.execute("""
        WITH pick AS (SELECT ticker FROM gold.fact_valuation_daily WHERE market_cap IS NOT NULL
                      GROUP BY ticker ORDER BY max(market_cap) DESC LIMIT 1),
             monthly AS (SELECT v.ticker, date_trunc('month', v.date) AS month, arg_max(v.close, v.date) AS close,
                                arg_max(v.pe_ttm, v.date) AS pe
                         FROM gold.fact_valuation_daily v JOIN pick USING (ticker) GROUP BY ALL)
        SELECT ticker, month, close, pe FROM monthly ORDER BY month DESC LIMIT 24
    """).fetchall()
    if not rows:
        return None
    rows = rows[::-1]
    top = max(r[2] for r in rows if r[2] is not None) or 1.0
    lines = [f"**{rows[0][0]}: month-end close and P/E (TTM), last {len(rows)} months**", "", "```"]
    for ticker, month, close, pe in rows:
        bar = "#" * int(40 * (close or 0) / top)
        pe_text = f"{pe:6.1f}" if pe is not None else "   n/a"
        lines.append(f"{month:%Y-%m} {close:9.2f} P/E {pe_text} |{bar}")
    lines.append("```")
    return "\n".join(lines)


def build_gold_asset(name: str, inputs: Sequence[str], keymap: Keymap, settings: Settings) -> dg.AssetsDefinition:
    from pipeline.gold.build import build
    from pipeline.gold.models import MODELS, resolve
    from pipeline.silver.schema import ensure_table

    key = gold_key(name)
    model = MODELS[name]

    @dg.asset(key=key, deps=[silver_key(t) for t in inputs], group_name="gold", kinds={"duckdb"},
              tags={"layer": "gold", "grain": "ticker" if model.per_ticker else "global"},
              pool=writer_pool(settings.uses_lake), code_version=code_version(model),
              description=GOLD_DESCRIPTIONS.get(name, name) + f"\n\nReads: {', '.join('silver.' + t for t in inputs)}.",
              metadata={"dagster/table_name": f"warehouse.gold.{name}", "dagster/column_schema": gold_column_schema(model),
                        "key": dg.MetadataValue.json(list(model.key))})
    def _gold(context: AssetExecutionContext, warehouse: WarehouseResource):
        with warehouse.connect() as conn:
            for table in inputs:   # a Silver input that was never promoted reads as empty, not as an error
                ensure_table(conn, keymap.tables()[table])
            try:
                result = build(conn, name, context.run_id)
            except Exception as exc:
                record_failed_step(warehouse, context, f"gold.{name}: {type(exc).__name__}: {exc}")
                raise
            record_run(conn, context.run_id, job=context.job_name, source_mode=None, status="success",
                       rows=result.rows_written, finished=True)
            context.log.info(f"gold.{name}: {result.mode} build, {result.rows_written} row(s) written ({result.reason})")
            derived = result.report.get("bars_derived_from_full", 0)
            if derived:
                context.log.warning(f"gold.{name}: {derived} bar(s) derived from /full and the splits (no as-traded "
                                    "row from /non-split-adjusted: the plan lacks it or the day is missing there)")
            metadata = {
                "mode": result.mode, "reason": result.reason, "rows_written": result.rows_written,
                "tickers_touched": result.tickers_touched if result.tickers_touched is not None else 0,
                "input_watermarks": dg.MetadataValue.json(result.input_watermarks[:200]),
                "input_identities": len(result.input_watermarks),
                **{key: int(value) for key, value in result.report.items()},
                "dagster/row_count": result.row_count,
                "dagster/table_name": f"warehouse.gold.{name}",
                # the table is created from the model (the macro model has a column set per indicator in Silver)
                "dagster/column_schema": gold_column_schema(resolve(conn, name)),
            }
            if name == "fact_valuation_daily":
                chart = gold_chart(conn)
                if chart:
                    metadata["chart"] = dg.MetadataValue.md(chart)
            yield dg.MaterializeResult(metadata=metadata)

    return _gold


def build_gold_assets(keymap: Keymap, settings: Settings) -> list[dg.AssetsDefinition]:
    from pipeline.gold.build import GOLD_ASSETS

    return [build_gold_asset(name, inputs, keymap, settings) for name, inputs in GOLD_ASSETS.items()]
