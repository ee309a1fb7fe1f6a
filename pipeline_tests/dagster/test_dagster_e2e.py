"""End-to-end through real Dagster: definitions load, materializations on the sample source, sensors, schedule,
and the `dagster` CLI in a subprocess. Each test uses its own data folder and Dagster instance."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipeline.orchestration.assets import bronze_key, gold_key, silver_key
from pipeline.orchestration.partitions import TICKERS_PER_RUN, tickers_partitions
from pipeline.orchestration.resources import SAMPLE_SOURCE_LABEL
from pipeline.settings import PROJECT_ROOT
from pipeline_tests.support import (
    E2E_AS_OF,
    E2E_TICKERS,
    make_env,
    materialize,
    range_tags,
)

AS_OF, TICKERS = E2E_AS_OF, E2E_TICKERS


def test_definitions_load_and_validate(setup):
    settings, keymap, defs, instance = setup
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert "bronze/prices/historical-price-eod" in keys
    assert "bronze/economics/economic-indicators__GDP" in keys
    assert "silver/fmp_price_eod" in keys and "gold/fact_valuation_daily" in keys
    assert len([k for k in keys if k.startswith("bronze/")]) == len(keymap)
    # every per-ticker asset uses the one `tickers` definition, and a UI backfill goes in runs of the CLI's size
    for entry in keymap.per_ticker_entries():
        node = graph.get(bronze_key(entry))
        assert node.partitions_def == tickers_partitions
        assert node.backfill_policy == dg.BackfillPolicy.multi_run(TICKERS_PER_RUN)
    assert graph.get(silver_key("fmp_price_eod")).partitions_def == tickers_partitions
    assert graph.get(silver_key("fmp_price_eod")).backfill_policy == dg.BackfillPolicy.multi_run(TICKERS_PER_RUN)
    sensor_names = {s.name for s in defs.sensors}
    assert {"ticker_universe_sensor", "silver_promotion_sensor", "gold_promotion_sensor"} <= sensor_names
    assert {s.name for s in defs.schedules} == {"daily_refresh"}


def test_partition_mappings_resolve(setup):
    """validate_loadable does not resolve partition mappings; resolve every edge for a sample key."""
    from dagster._core.definitions.partitions.context import partition_loading_context

    settings, keymap, defs, instance = setup
    graph = defs.resolve_asset_graph()
    with partition_loading_context(dynamic_partitions_store=instance):
        for key in graph.get_all_asset_keys():
            node = graph.get(key)
            for parent in node.parent_keys:
                if graph.get(parent).partitions_def is None:
                    continue
                pk = "AAPL" if node.partitions_def is not None else None
                assert graph.get_parent_partition_keys_for_child(pk, parent, key)


def test_bronze_partitions_are_materialized_with_their_own_counts_and_only_when_due(setup):
    """Each ticker partition carries what happened for that ticker (not the run's totals), and a ticker with
    nothing due is not materialized at all."""
    settings, keymap, defs, instance = setup
    eod = next(e for e in keymap if e.dataset == "historical-price-eod")
    profile = next(e for e in keymap if e.dataset == "profile")
    result = materialize(defs, instance, [bronze_key(eod), bronze_key(profile)], range_tags("AAPL", "NVDA"))
    assert result.success
    mats = result.get_asset_materialization_events()
    partitions = {(m.asset_key.to_user_string(), m.partition) for m in mats}
    assert {("bronze/prices/historical-price-eod", t) for t in TICKERS} <= partitions
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        ledger = dict(
            con.execute(
                "SELECT ticker, sum(bronze_rows) FROM ops.file_ingestions "
                "WHERE dataset = 'historical-price-eod' AND can_promote GROUP BY ticker"
            ).fetchall()
        )
    finally:
        con.close()
    assert set(ledger) == set(TICKERS)
    own = {m.partition: m.materialization.metadata for m in mats if m.asset_key == bronze_key(eod)}
    for ticker in TICKERS:
        meta = own[ticker]
        assert (meta["due"].value, meta["requests"].value, meta["files"].value) == (1, 1, 1)
        assert meta["rows"].value == ledger[ticker] > 1000  # this ticker's rows, not the run's
    assert meta["source"].value == SAMPLE_SOURCE_LABEL
    # the run log says where data came from
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("bundled sample source" in (m or "") for m in logs)

    # a second run the same day: nothing is due, nothing is materialized, and the run log says why
    again = materialize(defs, instance, [bronze_key(eod)], range_tags("AAPL", "NVDA"))
    assert again.success and again.get_asset_materialization_events() == []
    logs = [entry.user_message or "" for entry in instance.all_logs(again.run_id)]
    assert any("historical-price-eod: due for 0 of 3 ticker(s)" in m for m in logs)

    # a new ticker joins: a run over all four materializes that one alone
    instance.add_dynamic_partitions(tickers_partitions.name, ["JPM"])
    joined = materialize(defs, instance, [bronze_key(eod)], range_tags("AAPL", "JPM"))
    assert joined.success
    [mat] = joined.get_asset_materialization_events()
    assert mat.partition == "JPM" and mat.materialization.metadata["requests"].value == 1


def test_silver_partitions_carry_their_own_promotion_counts(setup):
    """A Silver ticker partition says what was promoted for that ticker; a rerun with nothing waiting records none."""
    settings, keymap, defs, instance = setup
    eod = next(e for e in keymap if e.dataset == "historical-price-eod")
    silver = silver_key(eod.silver.table)
    assert materialize(defs, instance, [bronze_key(eod)], range_tags("AAPL", "NVDA")).success
    result = materialize(defs, instance, [silver], range_tags("AAPL", "NVDA"))
    assert result.success
    own = {m.partition: m.materialization.metadata for m in result.get_asset_materialization_events()}
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        rows = dict(con.execute(f"SELECT ticker, count(*) FROM silver.{eod.silver.table} GROUP BY ticker").fetchall())
    finally:
        con.close()
    assert set(own) == set(TICKERS)
    for ticker in TICKERS:
        assert own[ticker]["files"].value == 1
        assert own[ticker]["inserted"].value == rows[ticker]  # this ticker's rows, not the table's
    again = materialize(defs, instance, [silver], range_tags("AAPL", "NVDA"))
    assert again.success and again.get_asset_materialization_events() == []


def test_backfills_and_runs_with_downstream_assets_materialize_every_partition_that_has_data(setup):
    """Dagster fails a backfill that leaves a requested partition unmaterialized, and skips the steps downstream of
    an output that was not yielded: there, the whole range is materialized when every partition in it has data
    (changed now or before), with the range's totals; a partition that never had data is never marked."""
    settings, keymap, defs, instance = setup
    eod = next(e for e in keymap if e.dataset == "historical-price-eod")
    assert materialize(defs, instance, [bronze_key(eod)], range_tags("AAPL", "NVDA")).success
    # nothing is due any more: a quiet backfill re-materializes the partitions (they have data) and says so
    backfill = materialize(
        defs, instance, [bronze_key(eod)], {**range_tags("AAPL", "NVDA"), "dagster/backfill": "abcdefgh"}
    )
    mats = backfill.get_asset_materialization_events()
    assert {m.partition for m in mats} == set(TICKERS)
    for m in mats:
        meta = m.materialization.metadata
        assert (meta["range_tickers_changed"].value, meta["range_requests"].value) == (0, 0)
        assert "requests" not in meta  # no per-ticker counts pretending this ticker was fetched
    # Bronze and its Silver table in one run: Silver still runs (and promotes the files waiting since the first run)
    both = materialize(defs, instance, [bronze_key(eod), silver_key(eod.silver.table)], range_tags("AAPL", "NVDA"))
    assert both.success
    by_asset = {(m.asset_key, m.partition) for m in both.get_asset_materialization_events()}
    assert {(silver_key(eod.silver.table), t) for t in TICKERS} <= by_asset

    # A backfill of a Silver table over a range with a ticker that never had data: the changed tickers are
    # materialized with their own counts, the one without data is not (the backfill shows it failed) and is named.
    instance.add_dynamic_partitions(tickers_partitions.name, ["JPM"])
    quotes = next(e for e in keymap if e.ticker_scope == "per_ticker" and e.silver.table != eod.silver.table)
    assert materialize(defs, instance, [bronze_key(quotes)], range_tags("AAPL", "NVDA")).success
    table = silver_key(quotes.silver.table)
    partial = materialize(defs, instance, [table], {**range_tags("AAPL", "JPM"), "dagster/backfill": "ijklmnop"})
    assert partial.success
    own = {m.partition: m.materialization.metadata for m in partial.get_asset_materialization_events()}
    assert set(own) == set(TICKERS) and all(meta["files"].value >= 1 for meta in own.values())
    assert "JPM" not in instance.get_materialized_partitions(table)
    logs = [entry.user_message or "" for entry in instance.all_logs(partial.run_id)]
    assert any("1 partition(s) never had data" in m and "JPM" in m for m in logs)


def test_full_graph_sensors_and_checks(setup):
    settings, keymap, defs, instance = setup
    global_bronze = [bronze_key(e) for e in keymap.global_entries()]
    ticker_bronze = [bronze_key(e) for e in keymap.per_ticker_entries()]
    assert materialize(defs, instance, global_bronze).success
    assert materialize(defs, instance, ticker_bronze, range_tags("AAPL", "NVDA")).success

    # the promotion sensor sees the waiting files and batches them into two runs (global, per ticker)
    sensor = next(s for s in defs.sensors if s.name == "silver_promotion_sensor")
    ctx = dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
    tick = sensor.evaluate_tick(ctx)
    keys = sorted(r.run_key for r in tick.run_requests)
    assert len(keys) == 2 and keys[0].startswith("silver:global:") and keys[1].startswith("silver:per_ticker:")
    per_ticker_req = next(r for r in tick.run_requests if r.run_key.startswith("silver:per_ticker"))
    assert per_ticker_req.tags["dagster/asset_partition_range_start"] == "AAPL"
    assert set(per_ticker_req.asset_selection) == {silver_key(e.silver.table) for e in keymap.per_ticker_entries()}
    # same files, next tick: the same run keys, which Dagster never launches twice
    tick2 = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources))
    assert sorted(r.run_key for r in tick2.run_requests) == keys

    # a run for that work failed: after a pause the retry gets a new key (a reused key would be skipped forever)
    @dg.asset(name="always_fails")
    def always_fails():
        raise RuntimeError("promotion crashed")

    work = per_ticker_req.tags["pipeline/work"]
    assert not dg.materialize(
        [always_fails], instance=instance, tags={"pipeline/scope": "silver:per_ticker"}, raise_on_error=False
    ).success
    tick3 = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources))
    assert {r.tags["pipeline/scope"] for r in tick3.run_requests} == {"silver:global"}
    import pipeline.orchestration.sensors as sensors

    later = sensors.now() + sensors.RETRY_BASE_S + 1
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sensors, "now", lambda: later)
        tick3 = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
        )
    assert f"{work}:retry-1" in {r.run_key for r in tick3.run_requests}

    # promote as the sensor asked
    silver_global = sorted({silver_key(e.silver.table) for e in keymap.global_entries()}, key=str)
    silver_ticker = sorted({silver_key(e.silver.table) for e in keymap.per_ticker_entries()}, key=str)
    r1 = materialize(defs, instance, silver_global)
    r2 = materialize(defs, instance, silver_ticker, range_tags("AAPL", "NVDA"))
    assert r1.success and r2.success
    failed = [
        (e.asset_key.to_user_string(), e.check_name)
        for r in (r1, r2)
        for e in r.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]
    assert failed == []
    evaluated = {(e.asset_key.to_user_string(), e.check_name) for e in r2.get_asset_check_evaluations()}
    assert ("silver/fmp_price_eod", "key_unique") in evaluated and (
        "silver/fmp_price_eod",
        "reconciliation",
    ) in evaluated

    # gold sensor: every gold asset has moved inputs before its first build
    gold_sensor = next(s for s in defs.sensors if s.name == "gold_promotion_sensor")
    gt = gold_sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
    )
    assert len(gt.run_requests) == 1
    gold_keys = set(gt.run_requests[0].asset_selection)
    assert gold_key("fact_price_daily") in gold_keys
    r3 = materialize(defs, instance, sorted(gold_keys, key=str))
    assert r3.success
    gold_failed = [
        (e.asset_key.to_user_string(), e.check_name) for e in r3.get_asset_check_evaluations() if not e.passed
    ]
    assert gold_failed == []
    # nothing moved now: the gold sensor skips with a reason
    gt2 = gold_sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
    )
    assert not gt2.run_requests and "no Gold input watermark moved" in (gt2.skip_message or "")


def test_universe_sensor_and_schedule(setup):
    settings, keymap, defs, instance = setup
    sensor = next(s for s in defs.sensors if s.name == "ticker_universe_sensor")
    # PIPELINE_TICKERS pins the universe: with all three already present the sensor skips
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources))
    assert not tick.dynamic_partitions_requests and "are the partitions" in tick.skip_message
    instance.delete_dynamic_partition(tickers_partitions.name, "NVDA")
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources))
    assert tick.dynamic_partitions_requests[0].partition_keys == ["NVDA"]
    assert tick.skip_message.startswith("added 1 ticker partition(s) from ") and "(NVDA)" in tick.skip_message

    schedule = next(s for s in defs.schedules if s.name == "daily_refresh")
    when = dt.datetime(2026, 11, 20, 18, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
    data = schedule.evaluate_tick(ctx)
    keys = [r.run_key for r in data.run_requests]
    assert keys == ["daily:2026-11-20:global", "daily:2026-11-20:tickers:0"]  # two runs, never one per ticker
    ticker_run = data.run_requests[1]
    assert ticker_run.tags["dagster/asset_partition_range_start"] == "AAPL"
    assert ticker_run.tags["dagster/asset_partition_range_end"] == "MSFT"  # NVDA was removed above


@pytest.mark.slow
def test_dagster_cli_materializes_bronze(tmp_path):
    env = {**os.environ, **make_env(tmp_path), "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("FMP_API_KEY", None)
    Path(env["DAGSTER_HOME"]).mkdir()
    (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    # the partitions must exist in the instance the CLI uses
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import dagster as dg; dg.DagsterInstance.get().add_dynamic_partitions('tickers', {TICKERS!r})",
        ],
        env=env,
        check=True,
        cwd=tmp_path,
    )

    def launch(*partitions: str) -> subprocess.CompletedProcess:
        dg_cli = str(Path(sys.executable).parent / "dg")
        command = [dg_cli, "launch", "--assets", "bronze/prices/historical-price-eod", *partitions]
        return subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)

    proc = launch("--partition", "AAPL")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stdout + proc.stderr, proc.stderr[-3000:]  # e.g. a superseded command
    con = duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True)
    try:
        tickers = {r[0] for r in con.execute("SELECT DISTINCT ticker FROM ops.file_ingestions").fetchall()}
    finally:
        con.close()
    assert tickers == {"AAPL"}
    # Dagster 1.13's CLI runs a partition range only for single-run backfill policies; per-ticker assets go in runs
    # of TICKERS_PER_RUN (a UI backfill is split like `pipeline run`), so ranges go through `pipeline run` or the UI
    refused = launch("--partition-range", "AAPL...NVDA")
    assert refused.returncode != 0 and "single_run" in refused.stderr


@pytest.mark.slow
def test_dg_check_defs(tmp_path):
    """What CI users run to gate a change: `dg check defs` loads and validates the project's definitions."""
    env = {**os.environ, "PIPELINE_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dg"), "check", "defs"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "All definitions loaded successfully" in proc.stdout + proc.stderr
    assert "Warning" not in proc.stdout + proc.stderr  # no superseded command, no venv mismatch


def test_a_failed_promotion_is_recorded_for_pipeline_status(setup, monkeypatch):
    """A Silver step that raises fails its run and leaves a failed row in ops.runs, which `pipeline status` lists."""
    import pipeline.silver.promote as promote

    settings, keymap, defs, instance = setup
    eod = next(e for e in keymap if e.dataset == "historical-price-eod")
    assert materialize(defs, instance, [bronze_key(eod)], range_tags("AAPL", "NVDA")).success

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(promote, "promote_files", broken)
    result = materialize(defs, instance, [silver_key("fmp_price_eod")], range_tags("AAPL", "NVDA"))
    assert not result.success
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        status, message = con.execute(
            "SELECT status, message FROM ops.runs WHERE run_id = ?", [result.run_id]
        ).fetchone()
        waiting = con.execute("SELECT count(*) FROM ops.file_ingestions WHERE silver_status IS NULL").fetchone()[0]
    finally:
        con.close()
    assert status == "failed" and "silver.fmp_price_eod" in message and "disk full" in message
    assert waiting == 3  # nothing was lost: the files still wait for promotion


def test_the_instance_always_gets_the_projects_current_dagster_yaml(tmp_path):
    """`make ui` and `pipeline` install the project's dagster.yaml in DAGSTER_HOME every time it changed."""
    from pipeline.cli.commands import sync_instance_config

    current = (PROJECT_ROOT / "dagster.yaml").read_text()
    home = tmp_path / "home"
    home.mkdir()
    assert sync_instance_config(home) and (home / "dagster.yaml").read_text() == current
    assert not sync_instance_config(home)  # unchanged: nothing written
    stale = current.replace("free_slots_after_run_end_seconds", "# (an older file)\n  old_key")
    (home / "dagster.yaml").write_text(stale)  # written by an older checkout
    assert sync_instance_config(home) and (home / "dagster.yaml").read_text() == current
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")  # someone's own instance settings
    assert not sync_instance_config(home) and "enabled: true" in (home / "dagster.yaml").read_text()


def test_assets_carry_code_versions_tags_and_gold_schemas_before_any_run(setup):
    """The UI shows what defines each asset before anything ran: a code version that moves only when the keymap
    entry or the Gold SQL changes, the keymap's tags, and the Gold tables' declared columns."""
    import dataclasses

    from pipeline.gold.models import MODELS
    from pipeline.orchestration.assets import code_version, entry_fingerprint

    settings, keymap, defs, instance = setup
    graph = defs.resolve_asset_graph()
    eod = next(e for e in keymap if e.dataset == "historical-price-eod")
    node = graph.get(bronze_key(eod))
    assert node.code_version == code_version(entry_fingerprint(eod))
    assert code_version(entry_fingerprint(dataclasses.replace(eod, index=eod.index + 7))) == node.code_version
    changed = dataclasses.replace(eod, recipe=dataclasses.replace(eod.recipe, min_age_days=eod.recipe.min_age_days + 1))
    assert code_version(entry_fingerprint(changed)) != node.code_version
    assert node.tags["domain"] == "prices" and node.tags["ticker_scope"] == "per_ticker"
    assert graph.get(silver_key("fmp_price_eod")).code_version
    gold = graph.get(gold_key("fact_price_daily"))
    model = MODELS["fact_price_daily"]
    assert gold.code_version == code_version(model)
    assert code_version(dataclasses.replace(model, sql=model.sql + "\n")) != gold.code_version
    columns = gold.metadata["dagster/column_schema"].columns
    assert [c.name for c in columns] == list(model.column_names)
    assert instance.get_latest_materialization_event(gold_key("fact_price_daily")) is None  # nothing ran yet
