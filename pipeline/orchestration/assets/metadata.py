"""Dagster metadata built from what the domain functions return: column schemas, previews, per-step counts."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import duckdb

from pipeline.bronze.report import EntryReport
from pipeline.gold.build import GoldBuildResult
from pipeline.gold.models import GoldModel
from pipeline.keymap.model import KeymapEntry, SilverSpec
from pipeline.orchestration.resources import FmpResource
from pipeline.silver.schema import LINEAGE_COLUMNS


def column_schema(columns: list[tuple[str, str, bool]]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, dtype, constraints=dg.TableColumnConstraints(nullable=nullable))
            for name, dtype, nullable in columns
        ]
    )


# What the lineage columns every Silver table carries hold (pipeline.silver.schema.LINEAGE_COLUMNS).
LINEAGE_DESCRIPTIONS = {
    "bronze_file_id": "The Bronze file this row was promoted from (ops.file_ingestions.file_id).",
    "run_id": "The Dagster run that promoted the row.",
    "fetched_at": "When the Bronze file was fetched from FMP (UTC): a newer fetch wins on a key.",
    "promoted_at": "When the row was written to Silver (UTC).",
}


def silver_column_descriptions(spec: SilverSpec, entries: Sequence[KeymapEntry]) -> dict[str, str]:
    """Each column's description, from the keymap: the API field it comes from, in which datasets' responses, and
    whether it is part of the key. `ticker` in a per-ticker table is the symbol the request was made for."""
    paths = ", ".join(sorted({f"`{e.recipe.path}`" for e in entries})) or "the API"
    per_ticker = any(e.ticker_scope == "per_ticker" for e in entries)
    out = {}
    for col in spec.columns:
        if col.name == "ticker" and per_ticker:
            text = "The ticker symbol the request was made for (the Dagster partition)."
        else:
            text = f"FMP field `{col.api}` of {paths}, as {col.type}."
        if col.name in spec.key:
            text += f" Part of the key ({', '.join(spec.key)})."
        if col.name == spec.row_date:
            text += " The row's observation date."
        out[col.name] = text
    return {**out, **LINEAGE_DESCRIPTIONS}


def silver_column_schema(spec: SilverSpec, entries: Sequence[KeymapEntry] = ()) -> dg.TableSchema:
    """The Silver table's columns with their types, nullability and descriptions from the keymap."""
    descriptions = silver_column_descriptions(spec, entries)
    cols = [(c.name, c.duckdb_type, c.nullable) for c in spec.columns]
    cols += [(name, decl.split()[0], False) for name, decl in LINEAGE_COLUMNS]
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                dtype,
                description=descriptions.get(name),
                constraints=dg.TableColumnConstraints(nullable=nullable),
            )
            for name, dtype, nullable in cols
        ]
    )


def gold_column_schema(model: GoldModel) -> dg.TableSchema:
    """The Gold table's declared columns (shown before the first build), with descriptions when the model has them."""
    descriptions = getattr(model, "descriptions", None) or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                dtype,
                description=descriptions.get(name),
                constraints=dg.TableColumnConstraints(nullable=name not in model.key),
            )
            for name, dtype in model.columns
        ]
    )


def table_preview(conn: duckdb.DuckDBPyConnection, qualified_table: str, order_by: str, limit: int = 5) -> str:
    frame = conn.execute(f"SELECT * FROM {qualified_table} ORDER BY {order_by} LIMIT {limit}").df()
    frame = frame.loc[:, [c for c in frame.columns if c not in ("run_id", "bronze_file_id")]].iloc[:, :10]
    return frame.to_markdown(index=False) if len(frame) else "(empty)"


def bronze_metadata(report: EntryReport, fmp: FmpResource) -> dict:
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


def silver_metadata(
    table: str, spec: SilverSpec, totals: dict, rows: int, preview: str, entries: Sequence[KeymapEntry] = ()
) -> dict:
    """`totals` as `pipeline.silver.promote.promote_waiting` sums them over the batches of one table."""
    return {
        **{k: v for k, v in totals.items() if isinstance(v, int)},
        "drift_fields": dg.MetadataValue.json(totals["drift_fields"]),
        "failures": dg.MetadataValue.json(totals["failures"]),
        "coverage_from": totals["coverage_from"],
        "coverage_to": totals["coverage_to"],
        "dagster/row_count": int(rows),
        "dagster/table_name": f"warehouse.silver.{table}",
        "dagster/column_schema": silver_column_schema(spec, entries),
        "preview": dg.MetadataValue.md(preview),
    }


def gold_metadata(result: GoldBuildResult, model: GoldModel, chart: str | None) -> dict:
    """`model` as built (the macro model has a column set per indicator in Silver); `chart` in markdown, if any."""
    metadata = {
        "mode": result.mode,
        "reason": result.reason,
        "rows_written": result.rows_written,
        "rows_deleted": result.rows_deleted,  # changed rows (replaced by written ones) and vanished rows
        "tickers_touched": result.tickers_touched if result.tickers_touched is not None else 0,
        "tickers_by_date": result.tickers_by_date,  # of those, how many got only their new days
        "input_watermarks": dg.MetadataValue.json(result.input_watermarks[:200]),
        "input_identities": len(result.input_watermarks),
        **{key: int(value) for key, value in result.report.items()},
        "dagster/row_count": result.row_count,
        "dagster/table_name": f"warehouse.gold.{result.name}",
        "dagster/column_schema": gold_column_schema(model),
    }
    if chart:
        metadata["chart"] = dg.MetadataValue.md(chart)
    return metadata
