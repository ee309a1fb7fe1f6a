"""Asset checks as Dagster users meet them: run alone against the current warehouse (UI selection, `pipeline
check`), blocking downstream Gold in the same run, and gating the Gold sensor until a re-run passes."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from pipeline.orchestration.assets import bronze_key, gold_key, silver_key
from pipeline.orchestration.checks import gold_check_defs
from pipeline.orchestration.runs import failure_reason
from pipeline_tests.support import make_env, materialize, range_tags

ROGUE_DATE = "1990-01-02"


def write(settings, sql: str) -> None:
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        con.execute(sql)
    finally:
        con.close()


def evaluations(result) -> dict[tuple[str, str], bool]:
    return {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}


def gold_builds(settings) -> int:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute("SELECT count(*) FROM ops.gold_builds").fetchone()[0]


def checks_planned(instance, run_id: str) -> set[dg.AssetCheckKey]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED).records
    return {r.event_log_entry.dagster_event.asset_check_planned_data.asset_check_key for r in records}


def gold_tick(defs, instance):
    sensor = next(s for s in defs.sensors if s.name == "gold_promotion_sensor")
    return sensor.evaluate_tick(
        dg.build_sensor_context(
            instance=instance, instance_ref=instance.get_ref(), definitions=defs, resources=defs.resources
        )
    )


def test_a_failed_silver_error_check_blocks_gold_until_a_rerun_passes(setup, tmp_path, monkeypatch):
    settings, keymap, defs, instance = setup
    assert materialize(defs, instance, [bronze_key(e) for e in keymap.global_entries()]).success
    assert materialize(
        defs, instance, [bronze_key(e) for e in keymap.per_ticker_entries()], range_tags("AAPL", "NVDA")
    ).success
    silver_global = sorted({silver_key(e.silver.table) for e in keymap.global_entries()}, key=str)
    silver_ticker = sorted({silver_key(e.silver.table) for e in keymap.per_ticker_entries()}, key=str)
    first = materialize(defs, instance, silver_global)
    assert first.success and materialize(defs, instance, silver_ticker, range_tags("AAPL", "NVDA")).success
    # selecting assets also runs their checks (standalone checks, one step per Silver multi-asset)
    assert evaluations(first)[("silver/fmp_treasury_rates", "reconciliation")] is True
    # again with nothing new (as `dg launch` of the Silver assets on a quiet day): no partition is materialized, so
    # Dagster skips the check step; the Silver step evaluates the run's checks instead of leaving them unevaluated
    quiet = materialize(defs, instance, silver_ticker, range_tags("AAPL", "NVDA"))
    assert quiet.success and quiet.get_asset_materialization_events() == []
    assert evaluations(quiet)[("silver/fmp_price_eod", "reconciliation")] is True
    planned = {(k.asset_key.to_user_string(), k.name) for k in checks_planned(instance, quiet.run_id)}
    assert planned and set(evaluations(quiet)) == planned

    # someone writes a row into Silver by hand: the ledger no longer reconciles (an ERROR check)
    treasury = silver_key("fmp_treasury_rates")
    write(
        settings,
        f"INSERT INTO silver.fmp_treasury_rates SELECT * REPLACE (DATE '{ROGUE_DATE}' AS date) "
        "FROM silver.fmp_treasury_rates LIMIT 1",
    )

    # the checks run alone against the current warehouse: results, no materialization
    alone = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        instance=instance,
        resources=defs.resources,
        selection=dg.AssetSelection.checks_for_assets(treasury),
        raise_on_error=False,
    )
    results = evaluations(alone)
    assert results[("silver/fmp_treasury_rates", "reconciliation")] is False
    assert results[("silver/fmp_treasury_rates", "key_unique")] is True
    assert {k[0] for k in results} == {"silver/fmp_treasury_rates"}
    assert alone.get_asset_materialization_events() == []
    assert not alone.success  # a blocking ERROR check failed

    # Gold launched on its own (a backfill's Gold run, `dg launch`, the schedule): the Gold step itself refuses,
    # naming the check and the asset, and writes no Gold build
    alone_gold = materialize(defs, instance, [gold_key("fact_macro_daily")])
    assert not alone_gold.success and alone_gold.get_asset_materialization_events() == []
    [failure] = alone_gold.get_step_failure_events()
    why = failure_reason(failure)
    assert "gold/fact_macro_daily not built" in why and "silver/fmp_treasury_rates reconciliation" in why, why
    assert gold_builds(settings) == 0

    # the Gold sensor (what the daemon evaluates) launches the Gold assets whose inputs are fine, not fact_macro_daily
    tick = gold_tick(defs, instance)
    launched = {k for r in tick.run_requests for k in r.asset_selection}
    assert gold_key("fact_price_daily") in launched
    assert gold_key("fact_macro_daily") not in launched

    # one run with Silver and Gold: the failed blocking check stops Gold in that run
    both = materialize(defs, instance, [treasury, gold_key("fact_macro_daily")])
    assert not both.success
    assert evaluations(both)[("silver/fmp_treasury_rates", "reconciliation")] is False
    assert {m.asset_key for m in both.get_asset_materialization_events()} == {treasury}

    # `pipeline check` says so and exits 1
    from pipeline.cli import commands as cli
    from pipeline.settings import get_settings

    for name, value in make_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "cli_home"))
    monkeypatch.delenv("FMP_API_KEY", raising=False)
    get_settings.cache_clear()
    try:
        assert cli.main(["check", "--select", "silver/fmp_treasury_rates"]) == 1

        # fixed: remove the row, re-run the checks; the sensor launches fact_macro_daily again
        write(settings, f"DELETE FROM silver.fmp_treasury_rates WHERE date = DATE '{ROGUE_DATE}'")
        assert cli.main(["check", "--select", "silver/fmp_treasury_rates"]) == 0
    finally:
        get_settings.cache_clear()
    rerun = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        instance=instance,
        resources=defs.resources,
        selection=dg.AssetSelection.checks_for_assets(treasury),
        raise_on_error=False,
    )
    assert rerun.success and all(evaluations(rerun).values())
    tick = gold_tick(defs, instance)
    assert gold_key("fact_macro_daily") in {k for r in tick.run_requests for k in r.asset_selection}

    # Gold checks alone, after Gold is built
    gold = sorted({k for r in tick.run_requests for k in r.asset_selection}, key=str)
    assert materialize(defs, instance, gold).success
    gold_checks = dg.AssetSelection.checks_for_assets(gold_key("fact_price_daily"))
    alone = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        instance=instance,
        resources=defs.resources,
        selection=gold_checks,
        raise_on_error=False,
    )
    assert alone.success and alone.get_asset_materialization_events() == []
    assert set(evaluations(alone)) == {("gold/fact_price_daily", d.name) for d in gold_check_defs("fact_price_daily")}


def test_gold_check_severity_comes_from_the_callable(monkeypatch):
    import pipeline.orchestration.checks as checks
    from pipeline.silver.quality import CheckOutcome

    def check_something__fact_price_daily(conn):
        """Something looks odd."""
        return CheckOutcome(False, "odd", {})

    def check_must_hold(conn):
        """Must hold."""
        return CheckOutcome(True, "ok", {})

    check_something__fact_price_daily.severity = "WARN"
    monkeypatch.setitem(checks.GOLD_CHECKS, "fact_price_daily", (check_something__fact_price_daily, check_must_hold))
    defs = {d.name: d for d in checks.gold_check_defs("fact_price_daily")}
    assert defs["something"].severity == dg.AssetCheckSeverity.WARN and not defs["something"].blocking
    assert defs["must_hold"].severity == dg.AssetCheckSeverity.ERROR and defs["must_hold"].blocking
    check_must_hold.severity = "fatal"
    with pytest.raises(ValueError, match="check_must_hold"):
        checks.gold_check_defs("fact_price_daily")
