"""Build Gold tables from Silver: incremental by default, recorded in `ops.gold_builds`.

Why it works this way:
- Recomputing every fact table from all of Silver on every run does not scale. Here a build compares the
  Silver input watermarks now with those recorded by the table's last successful build. Only the tickers
  whose per-ticker identities moved are recomputed; a moved global input (stock list, treasury, indicators)
  recomputes the whole table; nothing moved means nothing is written.
- Cost grows with the news, not with history: in the tables keyed (ticker, date) that a daily refresh extends
  (`ByDate` models), a moved ticker whose history did not change gets only its new days, computed from the bars
  its rolling windows need; one with a split, a dividend, a restatement or a corrected bar is recomputed over its
  whole history (`pipeline.gold.by_date` decides, from Silver's history tables).
- A build writes only what differs: the recomputed rows are compared with those the table holds in the same
  scope (the ticker's new days, its whole history, or the whole table), rows that changed or vanished are
  deleted and new or changed ones inserted. A quiet day then writes the new days' rows, a restated quarter the
  fundamentals rows it changes, and the macro table (recomputed whole, it is small) its new day. All of it in the
  build's one transaction.
- The build's ledger row is committed on its own before the work starts, and its outcome ('success' with
  the watermarks, or 'failed' with the error) is written afterwards, so a failed build never stays
  'running' and the next build still compares against the last *successful* one. The success update
  commits in the same transaction as the data, so data and ledger never disagree.
- The watermarks are read inside the work transaction, so they describe the same snapshot of Silver that
  the SQL reads.

`build` needs a connection that is not inside a transaction (`Warehouse.connect()`, not `transaction()`),
because it runs its own transactions. `moved_inputs` only reads, so a sensor can
call them on a read-only connection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import duckdb

from pipeline.gold import completeness, models
from pipeline.gold.by_date import ByDatePlan, history_marks, plan_by_date
from pipeline.gold.models import GoldModel
from pipeline.gold.securities import SECURITY_TABLES, create_macros
from pipeline.keymap.model import DatasetIdentity
from pipeline.ops.file_ingestions import input_revisions, input_state_by_table, input_watermarks
from pipeline.ops.gold_builds import LastBuild, finish_build, last_build, last_successful_inputs, start_build
from pipeline.warehouse.dialect import portable_ddl

log = logging.getLogger("pipeline.gold")

# gold table name -> Silver tables it reads (asset dependencies of ["gold", name] on ["silver", table]).
GOLD_ASSETS: dict[str, tuple[str, ...]] = {name: model.inputs for name, model in models.MODELS.items()}

FULL = "full"
INCREMENTAL = "incremental"
NOOP = "noop"


@dataclass(frozen=True)
class GoldBuildResult:
    name: str
    mode: str  # full | incremental | noop
    rows_written: int  # rows inserted by this build
    tickers_touched: int | None  # tickers recomputed (None for tables without a ticker)
    input_watermarks: list[str]
    row_count: int  # rows in the table after the build
    reason: str = ""  # why this mode, in words
    build_id: int | None = None
    tickers: list[str] = field(default_factory=list)  # the recomputed tickers of an incremental build
    report: dict[str, int] = field(default_factory=dict)  # the model's run-report counts (model.report_sql)
    rows_deleted: int = 0  # rows removed because they changed (replaced by a written row) or vanished
    tickers_by_date: int = 0  # tickers of an incremental build that got only their new days
    recomputed_because: dict[str, str] = field(default_factory=dict)  # by-date models: ticker -> why in full
    incomplete: dict[str, str] = field(default_factory=dict)  # tickers left out (inputs incomplete) -> why


@dataclass(frozen=True)
class BuildPlan:
    mode: str
    tickers: list[str] | None  # None = all
    reason: str
    by_date: ByDatePlan | None = None  # for by-date models: which tickers get only their new days
    excluded: tuple[str, ...] = ()  # tickers left out, inputs incomplete (`pipeline.gold.completeness`)


def _model_or_error(name: str) -> GoldModel:
    if name not in models.MODELS:
        raise ValueError(f"unknown Gold table {name!r}; known: {', '.join(sorted(models.MODELS))}")
    return models.MODELS[name]


def input_state(watermarks: list[str], revisions: list[str]) -> list[str]:
    """One comparable string per input identity: its coverage watermark plus its revision marker.

    Coverage alone misses a restated statement or a corrected price inside dates already covered; the
    revision marker (newest ledger entry that changed Silver rows) catches those.
    """
    rev = {ident: marker for ident, _, marker in (r.partition("@") for r in revisions)}
    return [f"{w};{rev.get(w.partition('@')[0], 'revision=')}" for w in watermarks]


def current_state(conn: duckdb.DuckDBPyConnection, tables: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(watermarks, revisions) of a Gold table's Silver inputs now."""
    return input_watermarks(conn, tables), input_revisions(conn, tables)


def last_successful_state(conn: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Gold table -> input state (watermarks + revisions) recorded by its latest successful build."""
    return {asset: input_state(marks, revs) for asset, (marks, revs) in last_successful_inputs(conn).items()}


def _identity_changes(before: list[str], now: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """Identity key -> (old coverage, new coverage) for identities that appeared, vanished or moved."""

    def by_identity(marks: list[str]) -> dict[str, str]:
        out = {}
        for text in marks:
            ident, _, coverage = text.partition("@")
            out[ident] = coverage
        return out

    old, new = by_identity(before), by_identity(now)
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}


def _describe(changes: dict[str, tuple[str | None, str | None]], limit: int = 3) -> str:
    parts = []
    for ident, (old, new) in list(changes.items())[:limit]:
        parts.append(f"{ident.rstrip('|')}: {old or 'absent'} -> {new or 'absent'}")
    more = f" (+{len(changes) - limit} more)" if len(changes) > limit else ""
    return f"{len(changes)} input(s) moved: " + "; ".join(parts) + more


def current_states(
    conn: duckdb.DuckDBPyConnection, table_sets: list[tuple[str, ...]]
) -> dict[tuple[str, ...], list[str]]:
    """input_state(*current_state(conn, tables)) for several input sets, reading the ledger once.

    Each identity belongs to one Silver table, so a set's state is its tables' states put together; a set
    where an identity shows up under two tables (a keymap entry that moved table) falls back to the exact query.
    """
    wanted = sorted({t for tables in table_sets for t in tables})
    watermarks, revisions = input_state_by_table(conn, wanted) if wanted else ({}, {})
    by_table = {t: input_state(watermarks.get(t, []), revisions.get(t, [])) for t in wanted}
    out: dict[tuple[str, ...], list[str]] = {}
    for tables in table_sets:
        state = [s for t in tables for s in by_table[t]]
        if len(tables) > 1 and len({s.partition("@")[0] for s in state}) != len(state):
            state = input_state(*current_state(conn, tables))
        out[tables] = state
    return out


def moved_inputs(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Gold table -> reason, for every table never built or whose inputs moved since its last successful build."""
    last = last_successful_state(conn)
    # every input set is read in one ledger scan (the sensor calls this each tick, on millions of ledger rows)
    current = current_states(conn, list(dict.fromkeys(t for n, t in GOLD_ASSETS.items() if n in last)))
    # a ticker whose inputs are incomplete is left out of both sides, as a build leaves it out (no relaunch loop)
    waiting = completeness.waiting_by_ticker(conn, {t for tables in GOLD_ASSETS.values() for t in tables})
    dim = completeness.dim_tickers(conn)
    moved: dict[str, str] = {}
    for name, tables in GOLD_ASSETS.items():
        if name not in last:
            moved[name] = "never built successfully"
            continue
        state = current[tables]
        left_out = completeness.incomplete_tickers(
            conn, models.MODELS[name], completeness.tickers_of(state), waiting=waiting, dim=dim
        )
        changes = _identity_changes(completeness.without(last[name], left_out), completeness.without(state, left_out))
        if changes:
            moved[name] = _describe(changes)
    return moved


def plan_build(
    model: GoldModel,
    previous: list[str] | None,
    current: list[str],
    *,
    full: bool,
    table_ready: bool,
    model_version: str | None = None,
) -> BuildPlan:
    """Decide full / incremental (which tickers) / noop from the watermark difference. `model_version`: the
    version the last successful build recorded (None: before versions were recorded)."""
    if full:
        return BuildPlan(FULL, None, "full rebuild requested")
    if not table_ready:
        return BuildPlan(FULL, None, "table created or its columns changed")
    if previous is None:
        return BuildPlan(FULL, None, "no earlier successful build")
    if model_version != model.version:
        return BuildPlan(FULL, None, "the table's SQL changed since its last successful build")
    changes = _identity_changes(previous, current)
    if not changes:
        return BuildPlan(NOOP, [], "no input moved since the last successful build")
    tickers = {DatasetIdentity.from_key(ident).ticker for ident in changes}
    if not model.per_ticker or "" in tickers:
        return BuildPlan(FULL, None, ("a global input moved; " if "" in tickers else "") + _describe(changes))
    return BuildPlan(INCREMENTAL, sorted(tickers), _describe(changes))


def _ensure_table(conn: duckdb.DuckDBPyConnection, model: GoldModel) -> bool:
    """Create the table if missing; recreate it if its columns differ. True when it was already as declared."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS gold")
    have = conn.execute(
        """
        SELECT column_name, data_type FROM information_schema.columns
        WHERE table_schema = 'gold' AND table_name = ? ORDER BY ordinal_position
    """,
        [model.name],
    ).fetchall()
    want = [(c, t.upper()) for c, t in model.columns]
    if [(c, t.upper()) for c, t in have] == want:
        return True
    if have:
        conn.execute(f"DROP TABLE {model.qualified}")
    conn.execute(portable_ddl(conn, model.ddl()))  # no PRIMARY KEY on a DuckLake
    return False


def _start(conn: duckdb.DuckDBPyConnection, name: str, run_id: str) -> int:
    """Commit the 'running' ledger row on its own, and close out rows a killed process left 'running'."""
    try:
        conn.execute("BEGIN TRANSACTION")
    except duckdb.TransactionException as exc:
        raise RuntimeError(
            "gold build needs a connection outside a transaction (Warehouse.connect(), not Warehouse.transaction())"
        ) from exc
    try:
        build_id = start_build(conn, name, run_id)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return build_id


def _rollback_quietly(conn: duckdb.DuckDBPyConnection) -> None:
    try:
        conn.execute("ROLLBACK")
    except duckdb.Error:
        pass  # no transaction open (the failure happened before BEGIN or at COMMIT)


def _leave_out(plan: BuildPlan, left_out: dict[str, str]) -> BuildPlan:
    """`plan` without the tickers whose inputs are incomplete (their rows in the table stay as they are)."""
    if not left_out:
        return plan
    tickers = None if plan.tickers is None else [t for t in plan.tickers if t not in left_out]
    reason = f"{plan.reason}; {completeness.describe(left_out)}"
    if plan.mode == NOOP or tickers == []:
        return BuildPlan(NOOP, [], reason)
    return BuildPlan(plan.mode, tickers, reason, excluded=tuple(sorted(left_out)))


def _with_by_date(conn: duckdb.DuckDBPyConnection, model: GoldModel, plan: BuildPlan, last: LastBuild) -> BuildPlan:
    """An incremental plan of a by-date model, with its tickers split into by-date and full recomputes."""
    if plan.mode != INCREMENTAL or model.by_date is None or not plan.tickers:
        return plan
    by_date = plan_by_date(conn, model, plan.tickers, last.promoted_to)
    return BuildPlan(plan.mode, plan.tickers, f"{plan.reason}; {by_date.describe()}", by_date, plan.excluded)


_TEMP_TABLES = ("_gold_scope", "_gold_new", "_gold_gone", "_gold_left_out")


def _scope(conn: duckdb.DuckDBPyConnection, model: GoldModel, plan: BuildPlan) -> str:
    """SQL predicate on a row aliased `r`: it is one this build recomputes. For an incremental build the temp table
    `_gold_scope` lists the tickers, each with the last day held when it is built by date (only later days)."""
    left_out = "TRUE"
    if plan.excluded:  # tickers whose inputs are incomplete: their rows stay as they are
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE _gold_left_out AS SELECT unnest(?::VARCHAR[]) AS ticker",
            [list(plan.excluded)],
        )
        left_out = "NOT EXISTS (SELECT 1 FROM _gold_left_out x WHERE x.ticker = r.ticker)"
    if plan.tickers is None:
        return left_out
    after = plan.by_date.after if plan.by_date else {}
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _gold_scope AS SELECT unnest(?::VARCHAR[]) AS ticker, unnest(?::DATE[]) AS after",
        [plan.tickers, [after.get(t) for t in plan.tickers]],
    )
    later = " AND (s.after IS NULL OR r.date > s.after)" if model.by_date else ""
    return f"EXISTS (SELECT 1 FROM _gold_scope s WHERE s.ticker = r.ticker{later}) AND {left_out}"


def _write(conn: duckdb.DuckDBPyConnection, model: GoldModel, plan: BuildPlan, *, empty: bool) -> tuple[int, int]:
    """Write the planned rows that differ from what the table holds; returns (rows inserted, rows deleted).

    The rows are computed once into a temp table. Within the plan's scope, the table's rows that are not among
    them (changed or vanished) are deleted, then the computed rows it does not hold are inserted: a changed row
    counts once in each. An `empty` table (just created) takes the rows straight away.
    """
    if plan.mode == NOOP:
        return 0, 0
    cols = ", ".join(model.column_names)
    params = model.parameters(plan.tickers, plan.by_date.bars_from() if plan.by_date else None)
    in_scope = _scope(conn, model, plan)
    if empty:
        inserted = conn.execute(
            f"INSERT INTO {model.qualified} ({cols})\nSELECT {cols} FROM (\n{model.sql}\n) r WHERE {in_scope}", params
        ).fetchone()[0]
        _drop_temp_tables(conn)
        return int(inserted), 0
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE _gold_new AS SELECT {cols} FROM (\n{model.sql}\n) r WHERE {in_scope}", params
    )
    conn.execute(f"""
        CREATE OR REPLACE TEMP TABLE _gold_gone AS
        SELECT {cols} FROM {model.qualified} r WHERE {in_scope}
        EXCEPT
        SELECT {cols} FROM _gold_new
    """)
    same_key = " AND ".join(f"g.{k} = r.{k}" for k in model.key)
    deleted = conn.execute(
        f"DELETE FROM {model.qualified} r WHERE EXISTS (SELECT 1 FROM _gold_gone g WHERE {same_key})"
    ).fetchone()[0]
    inserted = conn.execute(f"""
        INSERT INTO {model.qualified} ({cols})
        SELECT {cols} FROM _gold_new
        EXCEPT
        SELECT {cols} FROM {model.qualified} r WHERE {in_scope}
    """).fetchone()[0]
    _drop_temp_tables(conn)
    return int(inserted), int(deleted)


def _drop_temp_tables(conn: duckdb.DuckDBPyConnection) -> None:
    for temp in _TEMP_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {temp}")


def build(conn: duckdb.DuckDBPyConnection, name: str, run_id: str, *, full: bool = False) -> GoldBuildResult:
    """Build one Gold table (incrementally unless `full`) and record it in ops.gold_builds."""
    _model_or_error(name)
    build_id = _start(conn, name, run_id)
    try:
        conn.execute("BEGIN TRANSACTION")
        model = models.resolve(conn, name)
        current, revisions = current_state(conn, model.inputs)
        left_out = completeness.incomplete_tickers(conn, model, completeness.tickers_of(current))
        current, revisions = completeness.without(current, left_out), completeness.without(revisions, left_out)
        table_ready = _ensure_table(conn, model)
        previous = last_successful_state(conn).get(name)
        if previous is not None:
            previous = completeness.without(previous, left_out)
        last = last_build(conn, name)
        state = input_state(current, revisions)
        plan = plan_build(model, previous, state, full=full, table_ready=table_ready, model_version=last.model_version)
        plan = _leave_out(plan, left_out)
        plan = _with_by_date(conn, model, plan, last)
        rows_written, rows_deleted = _write(conn, model, plan, empty=not table_ready)
        if name in SECURITY_TABLES:
            create_macros(conn)  # gold.security_at & co. bind their tables when created
        row_count = conn.execute(f"SELECT count(*) FROM {model.qualified}").fetchall()[0][0]
        if not model.per_ticker:
            tickers_touched = None
        elif plan.tickers is None:
            tickers_touched = conn.execute(f"SELECT count(DISTINCT ticker) FROM {model.qualified}").fetchall()[0][0]
        else:
            tickers_touched = len(plan.tickers)
        finish_build(
            conn,
            build_id,
            "success",
            mode=plan.mode,
            watermarks=current,
            revisions=revisions,
            tickers_touched=tickers_touched,
            rows_written=rows_written,
            promoted_to=history_marks(conn, model.inputs),
            model_version=model.version,
        )
        conn.execute("COMMIT")
    except BaseException as exc:
        _rollback_quietly(conn)
        try:
            finish_build(conn, build_id, "failed", error=f"{type(exc).__name__}: {exc}"[:4000])
        except duckdb.Error:
            log.exception("could not mark gold build %s of %s as failed", build_id, name)
        raise
    report = dict(conn.execute(model.report_sql).fetchall()) if model.report_sql else {}
    return GoldBuildResult(
        name=name,
        mode=plan.mode,
        rows_written=rows_written,
        tickers_touched=tickers_touched,
        input_watermarks=current,
        row_count=int(row_count),
        reason=plan.reason,
        build_id=build_id,
        tickers=list(plan.tickers or []),
        report=report,
        rows_deleted=rows_deleted,
        tickers_by_date=len(plan.by_date.after) if plan.by_date else 0,
        recomputed_because=dict(plan.by_date.full) if plan.by_date else {},
        incomplete=left_out,
    )
