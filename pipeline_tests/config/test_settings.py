"""The environment contract (DESIGN section 4): defaults, every bad value named with what is allowed, no key in repr."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipeline.settings import (
    DEFAULT_BASE_URL,
    PROJECT_ROOT,
    Settings,
    SettingsError,
    get_settings,
    load_settings,
    parse_tickers,
)
from pipeline_tests.support import KEY


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings({})
    assert s.fmp_api_key is None and s.uses_sample_source
    assert s.fmp_base_url == DEFAULT_BASE_URL
    assert s.fmp_plan is None
    assert s.calls_per_minute == 300
    assert s.max_concurrency == 8
    assert s.data_dir == tmp_path / "data"
    assert s.bronze_dir == tmp_path / "data" / "bronze"
    assert s.warehouse_path == tmp_path / "data" / "warehouse.duckdb"
    assert s.logs_dir == tmp_path / "data" / "logs"
    assert s.keymap_path == PROJECT_ROOT / "dataset_keymap.yaml" and s.keymap_path.is_file()
    assert s.as_of is None and s.tickers is None
    assert s.env == "PROD"
    assert s.universe.exchanges == ("NASDAQ", "NYSE") and s.universe.max_tickers is None


def test_blank_values_mean_default() -> None:
    # a blank FMP_API_KEY is not a default but a missing key: it stops (test_source_choice.py)
    s = load_settings(
        {
            "FMP_PLAN": "",
            "FMP_CALLS_PER_MINUTE": " ",
            "PIPELINE_TICKERS": "",
            "PIPELINE_AS_OF": "",
            "PIPELINE_KEYMAP": "",
        }
    )
    assert s.fmp_api_key is None and s.fmp_plan is None and s.calls_per_minute == 300 and s.tickers is None


def test_values_are_read_and_normalised(tmp_path: Path) -> None:
    keymap = tmp_path / "km.yaml"
    keymap.write_text("version: 1\n")
    s = load_settings(
        {
            "FMP_API_KEY": f" {KEY} ",
            "FMP_BASE_URL": "http://127.0.0.1:8123/stable/",
            "FMP_PLAN": " Premium ",
            "FMP_CALLS_PER_MINUTE": "60",
            "FMP_MAX_CONCURRENCY": "2",
            "PIPELINE_DATA_DIR": str(tmp_path / "d"),
            "PIPELINE_KEYMAP": str(keymap),
            "PIPELINE_AS_OF": "2024-03-15",
            "PIPELINE_TICKERS": " AAPL, msft ,AAPL,BRK.B,BF-B,,",
            "ENV": "dev",
        }
    )
    assert s.fmp_api_key == KEY and not s.uses_sample_source
    assert s.fmp_base_url == "http://127.0.0.1:8123/stable"
    assert s.fmp_plan == "premium"
    assert (s.calls_per_minute, s.max_concurrency) == (60, 2)
    assert s.data_dir == tmp_path / "d"
    assert s.keymap_path == keymap
    assert s.as_of == dt.date(2024, 3, 15) and s.today() == dt.date(2024, 3, 15)
    assert s.tickers == ("AAPL", "msft", "BRK.B", "BF-B")  # FMP's spelling kept, duplicates dropped
    assert s.env == "DEV"


@pytest.mark.parametrize(
    ("env", "variable", "allowed"),
    [
        ({"FMP_PLAN": "gold"}, "FMP_PLAN", "basic, starter, premium, ultimate"),
        ({"FMP_CALLS_PER_MINUTE": "fast"}, "FMP_CALLS_PER_MINUTE", "whole number >= 1"),
        ({"FMP_CALLS_PER_MINUTE": "0"}, "FMP_CALLS_PER_MINUTE", "whole number >= 1"),
        ({"FMP_CALLS_PER_MINUTE": "2.5"}, "FMP_CALLS_PER_MINUTE", "whole number >= 1"),
        ({"FMP_MAX_CONCURRENCY": "-1"}, "FMP_MAX_CONCURRENCY", "whole number >= 1"),
        ({"FMP_MAX_CONCURRENCY": "many"}, "FMP_MAX_CONCURRENCY", "whole number >= 1"),
        ({"PIPELINE_AS_OF": "2024-02-30"}, "PIPELINE_AS_OF", "YYYY-MM-DD"),
        ({"PIPELINE_AS_OF": "yesterday"}, "PIPELINE_AS_OF", "YYYY-MM-DD"),
        ({"PIPELINE_TICKERS": "AAPL,../x"}, "PIPELINE_TICKERS", "letters and digits"),
        ({"PIPELINE_TICKERS": "A/B"}, "PIPELINE_TICKERS", "letters and digits"),
        ({"PIPELINE_TICKERS": "AAPL MSFT"}, "PIPELINE_TICKERS", "letters and digits"),
        ({"PIPELINE_TICKERS": "A" * 21}, "PIPELINE_TICKERS", "1-20 characters"),
        ({"PIPELINE_TICKERS": " , ,"}, "PIPELINE_TICKERS", "comma-separated"),
        ({"PIPELINE_KEYMAP": "/nonexistent/keymap.yaml"}, "PIPELINE_KEYMAP", "dataset keymap YAML file"),
        ({"FMP_BASE_URL": "ftp://example.com"}, "FMP_BASE_URL", "http(s) URL"),
        ({"PIPELINE_UNIVERSE_INCLUDE_ETFS": "maybe"}, "PIPELINE_UNIVERSE_INCLUDE_ETFS", "true, false"),
        ({"PIPELINE_UNIVERSE_MAX_TICKERS": "0"}, "PIPELINE_UNIVERSE_MAX_TICKERS", "whole number >= 1"),
        ({"PIPELINE_UNIVERSE_MIN_MARKET_CAP": "big"}, "PIPELINE_UNIVERSE_MIN_MARKET_CAP", "not a number"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_value_names_variable_and_allowed_values(env: dict[str, str], variable: str, allowed: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    message = str(info.value)
    assert message.startswith(variable)
    assert allowed in message


def test_keymap_that_is_a_folder_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PIPELINE_KEYMAP"):
        load_settings({"PIPELINE_KEYMAP": str(tmp_path)})


def test_hostile_ticker_is_quoted_in_the_message() -> None:
    with pytest.raises(SettingsError, match=r"ticker '\.\./x' is not allowed"):
        load_settings({"PIPELINE_TICKERS": "../x"})
    with pytest.raises(SettingsError, match=r"^universe: ticker 'A/B'"):
        parse_tickers("A/B", source="universe")


@pytest.mark.parametrize("ticker", ["AAPL", "BRK.B", "BF-B", "EURUSD=X", "7203.T", "X^A"])
def test_real_ticker_spellings_are_allowed(ticker: str) -> None:
    assert parse_tickers(ticker) == (ticker,)


def test_errors_never_echo_the_key() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"FMP_API_KEY": KEY, "FMP_PLAN": "gold"})
    assert KEY not in str(info.value)


def test_repr_never_shows_the_key(tmp_path: Path) -> None:
    s = load_settings({"FMP_API_KEY": KEY, "PIPELINE_DATA_DIR": str(tmp_path)})
    for text in (repr(s), str(s), f"{s}", repr([s]), repr({"settings": s})):
        assert KEY not in text
        assert "fmp_api_key=<set>" in text
    assert "fmp_api_key=<unset>" in repr(load_settings({}))
    # A copy made with dataclasses.replace keeps the custom repr.
    assert KEY not in repr(dataclasses.replace(s, max_concurrency=3))
    assert KEY not in repr(Settings(fmp_api_key=KEY))


def test_today_defaults_to_new_york_date() -> None:
    today = load_settings({}).today()
    assert isinstance(today, dt.date)
    assert abs((today - dt.date.today()).days) <= 1


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        monkeypatch.setenv("FMP_MAX_CONCURRENCY", "3")
        assert get_settings().max_concurrency == 3
        monkeypatch.setenv("FMP_MAX_CONCURRENCY", "4")
        assert get_settings().max_concurrency == 3
        get_settings.cache_clear()
        assert get_settings().max_concurrency == 4
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


# ---- PIPELINE_AS_OF: a real date, never in the future (issue 18, item 3) --------------------------------------


@pytest.mark.parametrize("raw", ["20261207", "2026-W49-1", "2026-12-7", "2026-12-07T00:00", " 2026-12-07x"])
def test_as_of_takes_only_yyyy_mm_dd(raw: str) -> None:
    """Python's fromisoformat also reads these; the README promises YYYY-MM-DD."""
    with pytest.raises(SettingsError) as info:
        load_settings({"PIPELINE_AS_OF": raw})
    assert str(info.value) == f"PIPELINE_AS_OF={raw.strip()!r} is not a date; use YYYY-MM-DD"


def test_as_of_after_today_in_new_york_is_refused() -> None:
    """`PIPELINE_AS_OF=2030-06-28` fetched rows dated years ahead and stalled every later run."""
    today = dt.datetime.now(ZoneInfo("America/New_York")).date()
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    with pytest.raises(SettingsError) as info:
        load_settings({"PIPELINE_AS_OF": "2030-06-28"})
    assert str(info.value) == (
        f"PIPELINE_AS_OF=2030-06-28 is after today ({today} in New York); planning never runs ahead of time: "
        "use today or an earlier date, or unset it"
    )
    with pytest.raises(SettingsError, match="is after today"):
        load_settings({"PIPELINE_AS_OF": tomorrow})
    assert load_settings({"PIPELINE_AS_OF": today.isoformat()}).today() == today
