"""The ops ledger: the only package that writes `ops.*` tables, one module per table.

`file_ingestions` (one row per Bronze file, with its Silver outcome), `runs`, `gold_builds` and `schema_drift`
hold the writes and the queries over their table; Bronze, Silver, Gold, the runner and the Dagster assets call
them with their own connection. `ops.schema_migrations` is the exception: `pipeline.warehouse.migrations` owns
it. This package never imports Bronze; the types both sides exchange live in `pipeline.ledger_types`.
`reader` and `coverage` are the read-only CLI reports over the ledger.
"""
