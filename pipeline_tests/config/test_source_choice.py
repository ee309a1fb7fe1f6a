"""The sample source is an explicit choice (issue 18, item 2).

`FMP_API_KEY` unset with nothing live-looking still means the bundled sample source (DESIGN section 4). A missing or
blank key next to a live-looking setting used to switch to invented data silently and exit 0; it now stops with one
line. `PIPELINE_SOURCE=sample` (what `pipeline demo` sets) chooses the sample source explicitly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.commands import main
from pipeline.settings import SettingsError, load_settings
from pipeline_tests.support import KEY

REMEDY = "set FMP_API_KEY, or choose the bundled sample source explicitly (`pipeline demo` or PIPELINE_SOURCE=sample)"


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"FMP_PLAN": "starter"}, "FMP_API_KEY is unset, but FMP_PLAN is set"),
        ({"FMP_API_KEY": "   ", "FMP_PLAN": "starter"}, "FMP_API_KEY is blank, but FMP_PLAN is set"),
        ({"FMP_API_KEY": ""}, "FMP_API_KEY is set but blank"),
        ({"FMP_BASE_URL": "https://example.com/stable"}, "FMP_API_KEY is unset, but FMP_BASE_URL is set"),
        ({"FMP_CALLS_PER_MINUTE": "750"}, "FMP_API_KEY is unset, but FMP_CALLS_PER_MINUTE is set"),
        ({"PIPELINE_SOURCE": "fmp"}, "FMP_API_KEY is unset, but PIPELINE_SOURCE=fmp"),
        ({"PIPELINE_SOURCE": "fmp", "FMP_API_KEY": " "}, "FMP_API_KEY is blank, but PIPELINE_SOURCE=fmp"),
    ],
    ids=lambda v: ",".join(v) if isinstance(v, dict) else None,
)
def test_a_missing_key_next_to_a_live_looking_setting_stops(env: dict[str, str], why: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert str(info.value) == f"{why}: the pipeline does not fall back to invented sample data; {REMEDY}"


def test_the_sample_source_is_chosen_plainly_or_explicitly() -> None:
    plain = load_settings({})
    assert plain.uses_sample_source and plain.source_mode == "sample"
    assert plain.source_label == "bundled sample source (FMP_API_KEY is unset)"
    explicit = load_settings({"PIPELINE_SOURCE": " Sample ", "FMP_PLAN": "starter", "FMP_API_KEY": KEY})
    assert explicit.uses_sample_source and explicit.fmp_api_key is None  # the key is never sent anywhere
    assert explicit.source_label == "bundled sample source (PIPELINE_SOURCE=sample)"
    live = load_settings({"FMP_API_KEY": KEY, "PIPELINE_SOURCE": "fmp"})
    assert not live.uses_sample_source and live.source_mode == "fmp"
    assert live.source_label == "https://financialmodelingprep.com/stable"
    with pytest.raises(SettingsError, match=r"^PIPELINE_SOURCE='demo' is not a source; use fmp .* or sample"):
        load_settings({"PIPELINE_SOURCE": "demo"})


def test_pipeline_run_stops_before_writing_anything(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`FMP_PLAN=starter pipeline run` with the key missing wrote invented rows under bronze/fmp and exited 0."""
    monkeypatch.setenv("FMP_PLAN", "starter")
    monkeypatch.setenv("FMP_API_KEY", " ")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "pipeline: configuration error: FMP_API_KEY is blank, but FMP_PLAN is set: the pipeline does not fall back "
        f"to invented sample data; {REMEDY}\n"
    )
    assert not data_dir.exists()
