"""Sensors without storms, evaluated as the daemon does (evaluate_tick on a persistent instance): one queued or
running run per scope, failed work retried after a growing pause and then parked for a person (visible in the
tick and in `pipeline status`), and tickers that leave the universe stop being fetched while their data stays."""

from __future__ import annotations

import dagster as dg
from dagster._core.test_utils import create_run_for_test

import pipeline.orchestration.sensors as sensors
from pipeline.orchestration.assets import bronze_key, gold_key
from pipeline.orchestration.partitions import tickers_partitions
from pipeline_tests.support import E2E_TICKERS as TICKERS
from pipeline_tests.support import make_env, materialize, range_tags


def tick(defs, instance, name: str):
    sensor = next(s for s in defs.sensors if s.name == name)
    return sensor.evaluate_tick(
        dg.build_sensor_context(
            instance=instance, instance_ref=instance.get_ref(), definitions=defs, resources=defs.resources
        )
    )


def scope_run(instance, scope: str, status: dg.DagsterRunStatus) -> dg.DagsterRun:
    return create_run_for_test(instance, status=status, tags={sensors.SCOPE_TAG: scope, "pipeline/trigger": "test"})


def per_ticker_requests(data) -> list[dg.RunRequest]:
    return [r for r in data.run_requests if r.tags.get(sensors.SCOPE_TAG) == "silver:per_ticker"]


def test_a_burst_of_new_files_yields_at_most_one_queued_run_per_scope(setup):
    settings, keymap, defs, instance = setup
    eod = next(e for e in keymap if e.dataset == "historical-price-eod")
    assert materialize(defs, instance, [bronze_key(eod)], range_tags("AAPL", "AAPL")).success
    first = per_ticker_requests(tick(defs, instance, "silver_promotion_sensor"))
    assert len(first) == 1
    # the daemon launched it; it is still running (or queued: the same rule) while more files land
    queued = scope_run(instance, "silver:per_ticker", dg.DagsterRunStatus.STARTED)
    assert materialize(defs, instance, [bronze_key(eod)], range_tags("MSFT", "NVDA")).success
    data = tick(defs, instance, "silver_promotion_sensor")
    assert per_ticker_requests(data) == []
    assert f"run {queued.run_id[:8]} is queued or running" in data.skip_message
    # once it finished, the next tick covers every waiting file in one run
    instance.report_dagster_event(_run_success_event(queued), queued.run_id)
    again = per_ticker_requests(tick(defs, instance, "silver_promotion_sensor"))
    assert len(again) == 1 and again[0].tags["dagster/asset_partition_range_end"] == "NVDA"
    assert again[0].run_key != first[0].run_key  # new files: new work, new key


def _run_success_event(run: dg.DagsterRun):
    from dagster._core.events import DagsterEvent, DagsterEventType

    return DagsterEvent(DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name)


def test_failed_work_is_retried_with_growing_pauses_then_parked(setup, monkeypatch, tmp_path, capsys):
    settings, keymap, defs, instance = setup
    assert materialize(defs, instance, [bronze_key(e) for e in keymap.global_entries()]).success
    clock = [sensors.now()]
    monkeypatch.setattr(sensors, "now", lambda: clock[0])

    def global_requests():
        data = tick(defs, instance, "silver_promotion_sensor")
        return [r for r in data.run_requests if r.tags[sensors.SCOPE_TAG] == "silver:global"], data.skip_message

    pauses = []
    for failures in range(1, sensors.MAX_FAILURES + 1):
        failed = scope_run(instance, "silver:global", dg.DagsterRunStatus.FAILURE)
        clock[0] = sensors.scope_state(instance, "silver:global").last_failure_at
        requests, message = global_requests()
        assert requests == []
        if failures == sensors.MAX_FAILURES:
            assert "parked after 5 failed runs in a row" in message and failed.run_id[:8] in message
            break
        assert f"retry {failures + 1} of {sensors.MAX_FAILURES}" in message
        pause = sensors.scope_state(instance, "silver:global").retry_delay_s
        pauses.append(pause)
        clock[0] += pause - 1
        assert global_requests()[0] == []  # still waiting just before the pause ends
        clock[0] += 2
        requests, _ = global_requests()
        assert len(requests) == 1 and requests[0].run_key.endswith(f":retry-{failures}")
    assert pauses == [60, 120, 240, 480]  # doubling, capped at RETRY_CAP_S

    # parked: a day later it still waits for a person, and `pipeline status` says so
    clock[0] += 86400
    assert global_requests()[0] == []
    assert any("silver:global: parked" in line for line in sensors.automation_report(instance))
    from pipeline.cli import commands as cli
    from pipeline.settings import get_settings

    for name, value in make_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    get_settings.cache_clear()
    try:
        cli.main(["status", "--no-plan"])
    finally:
        get_settings.cache_clear()
    assert "silver:global: parked after 5 failed runs" in capsys.readouterr().out

    # a person fixed it and re-executed the run: its success resumes the sensor
    scope_run(instance, "silver:global", dg.DagsterRunStatus.SUCCESS)
    requests, _ = global_requests()
    assert len(requests) == 1


def test_tickers_leaving_the_universe_are_removed_but_a_mass_exit_is_refused(setup):
    settings, keymap, defs, instance = setup
    instance.add_dynamic_partitions(tickers_partitions.name, ["TSLA"])  # TSLA left PIPELINE_TICKERS
    data = tick(defs, instance, "ticker_universe_sensor")
    assert [r.partition_keys for r in data.dynamic_partitions_requests] == [["TSLA"]]
    assert type(data.dynamic_partitions_requests[0]).__name__ == "DeleteDynamicPartitionsRequest"
    # the tick says what it did (the UI shows it instead of "Sensor function returned an empty result")
    assert data.skip_message == "removed 1 ticker partition(s) that left the universe (TSLA); no run requested"
    # a stock list that suddenly lost most tickers is not trusted
    instance.add_dynamic_partitions(tickers_partitions.name, [f"X{i}" for i in range(10)])
    instance.delete_dynamic_partition(tickers_partitions.name, "TSLA")
    data = tick(defs, instance, "ticker_universe_sensor")
    assert not data.dynamic_partitions_requests and "10 of 13 tickers left the universe at once" in data.skip_message
    assert set(TICKERS) <= set(instance.get_dynamic_partitions(tickers_partitions.name))


def test_gold_waits_for_a_silver_promotion_in_progress(setup):
    settings, keymap, defs, instance = setup
    assert materialize(defs, instance, [bronze_key(e) for e in keymap.global_entries()]).success
    assert tick(defs, instance, "gold_promotion_sensor").run_requests  # never built: everything moved
    running = scope_run(instance, "silver:global", dg.DagsterRunStatus.STARTED)
    data = tick(defs, instance, "gold_promotion_sensor")
    assert not data.run_requests and "waiting for the Silver promotion in progress (silver:global)" in data.skip_message
    instance.report_dagster_event(_run_success_event(running), running.run_id)
    assert tick(defs, instance, "gold_promotion_sensor").run_requests
    # a running run that builds Gold, whoever launched it (here a UI backfill, without the sensor's scope tag)
    create_run_for_test(
        instance,
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/backfill": "abcdefgh"},
        asset_selection=frozenset({gold_key("fact_macro_daily")}),
    )
    data = tick(defs, instance, "gold_promotion_sensor")
    assert not data.run_requests and "builds gold/fact_macro_daily" in data.skip_message
