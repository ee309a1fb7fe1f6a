"""The plan's budget in the environment contract: FMP_PLAN gives the calls per minute, the calls per day and the
30-day bandwidth (reference notes on the FMP API, section 3.1); explicit variables win; bad values are one line
that names the variable."""

from __future__ import annotations

import pytest

from pipeline.fmp.plans import GB, MB, PLANS, format_bytes, parse_size
from pipeline.keymap.model import PLAN_ORDER
from pipeline.orchestration.resources import build_resources
from pipeline.settings import SettingsError, load_settings
from pipeline_tests.support import KEY


def live(**env: str) -> dict[str, str]:
    return {"FMP_API_KEY": KEY, **env}


def test_the_plan_table_has_every_plan_and_the_published_figures() -> None:
    assert tuple(PLANS) == PLAN_ORDER
    figures = {name: (p.calls_per_minute, p.calls_per_day, p.bandwidth_30d) for name, p in PLANS.items()}
    assert figures == {
        "basic": (None, 250, 500 * MB),
        "starter": (300, None, 20 * GB),
        "premium": (750, None, 50 * GB),
        "ultimate": (3000, None, 150 * GB),
    }


@pytest.mark.parametrize(
    ("plan", "per_minute", "bandwidth", "per_day"),
    [
        ("starter", 300, 20 * GB, None),
        ("premium", 750, 50 * GB, None),
        ("ultimate", 3000, 150 * GB, None),
        ("basic", 300, 500 * MB, 250),  # Basic counts calls per day; no per-minute figure is published
    ],
)
def test_the_plan_gives_the_defaults(plan: str, per_minute: int, bandwidth: int, per_day: int | None) -> None:
    s = load_settings(live(FMP_PLAN=plan))
    assert s.calls_per_minute == per_minute
    assert (s.budget.bandwidth_30d, s.budget.daily_requests, s.budget.daily_bytes) == (bandwidth, per_day, None)
    assert s.budget.active
    assert s.budget.origins["bandwidth_30d"] == f"FMP_PLAN={plan}"


def test_without_a_plan_there_is_no_budget_and_300_calls_per_minute() -> None:
    s = load_settings(live())
    assert s.calls_per_minute == 300 and not s.budget.active
    assert s.budget.origins["calls_per_minute"] == "default"


def test_explicit_values_win_over_the_plan() -> None:
    s = load_settings(
        live(
            FMP_PLAN="premium",
            FMP_CALLS_PER_MINUTE="100",
            FMP_BANDWIDTH_30D="75GB",
            FMP_DAILY_REQUEST_CAP="5000",
            FMP_DAILY_BYTE_CAP="1.5 GB",
        )
    )
    assert s.calls_per_minute == 100
    assert s.budget.bandwidth_30d == 75 * GB
    assert (s.budget.daily_requests, s.budget.daily_bytes) == (5000, 1_500_000_000)
    assert s.budget.origins == {
        "calls_per_minute": "FMP_CALLS_PER_MINUTE",
        "bandwidth_30d": "FMP_BANDWIDTH_30D",
        "daily_requests": "FMP_DAILY_REQUEST_CAP",
        "daily_bytes": "FMP_DAILY_BYTE_CAP",
    }
    # a cap without a plan is a budget too
    assert load_settings(live(FMP_DAILY_REQUEST_CAP="10")).budget.active


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FMP_BANDWIDTH_30D": "lots"}, "FMP_BANDWIDTH_30D='lots' is not a size; use bytes or a number with"),
        ({"FMP_BANDWIDTH_30D": "0"}, "FMP_BANDWIDTH_30D='0' is not a size"),
        ({"FMP_BANDWIDTH_30D": "-5GB"}, "FMP_BANDWIDTH_30D='-5GB' is not a size"),
        ({"FMP_BANDWIDTH_30D": "5 PB"}, "FMP_BANDWIDTH_30D='5 PB' is not a size"),
        ({"FMP_DAILY_BYTE_CAP": "1e9"}, "FMP_DAILY_BYTE_CAP='1e9' is not a size"),
        ({"FMP_DAILY_REQUEST_CAP": "many"}, "FMP_DAILY_REQUEST_CAP='many' is not an integer"),
        ({"FMP_DAILY_REQUEST_CAP": "0"}, "FMP_DAILY_REQUEST_CAP=0 is too small"),
    ],
)
def test_bad_budget_values_are_one_line_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(live(**env))
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text and KEY not in text


def test_budget_variables_without_a_key_look_live() -> None:
    """Like FMP_PLAN: a budget next to a missing key means the key is missing by mistake."""
    with pytest.raises(SettingsError, match="FMP_API_KEY is unset, but FMP_BANDWIDTH_30D is set"):
        load_settings({"FMP_BANDWIDTH_30D": "20GB"})
    assert load_settings({"PIPELINE_SOURCE": "sample", "FMP_PLAN": "premium"}).budget.bandwidth_30d == 50 * GB


@pytest.mark.parametrize(
    ("text", "size"),
    [("1234", 1234), ("500MB", 500 * MB), ("20 GB", 20 * GB), ("1.5gb", 1_500_000_000), ("2 TB", 2 * 1000 * GB)],
)
def test_sizes_use_decimal_units_like_fmp(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_sizes_print_readably() -> None:
    assert [format_bytes(n) for n in (0, 999, 1_500, 20 * GB, 1_234_567)] == [
        "0 B",
        "999 B",
        "1.5 kB",
        "20.0 GB",
        "1.2 MB",
    ]


def test_the_fmp_resource_shows_the_budget() -> None:
    fmp = build_resources(load_settings(live(FMP_PLAN="premium", FMP_DAILY_REQUEST_CAP="900")))["fmp"]
    assert (fmp.plan, fmp.calls_per_minute, fmp.bandwidth_30d, fmp.daily_request_cap) == (
        "premium",
        750,
        50 * GB,
        900,
    )
    assert fmp.budget_limits().bandwidth_30d == 50 * GB and fmp.budget_limits().daily_requests == 900
