"""Gold inputs are checked when the definitions load: each model's declared Silver inputs against the keymap's
Silver tables and against the `silver.<table>` references of its own SQL (pipeline/gold/inputs.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.gold.inputs import GoldInputError, check_inputs, sql_inputs
from pipeline.gold.models import FACT_PRICE_DAILY, MODELS
from pipeline.keymap import load_keymap
from pipeline.orchestration.definitions import build_definitions
from pipeline.settings import PROJECT_ROOT, load_settings
from pipeline_tests.support import make_env


def test_the_shipped_models_agree_with_the_keymap_and_their_sql() -> None:
    check_inputs(MODELS.values(), load_keymap(PROJECT_ROOT / "dataset_keymap.yaml").tables())


def test_a_renamed_silver_table_fails_loading_the_definitions_naming_the_model(tmp_path: Path) -> None:
    text = (PROJECT_ROOT / "dataset_keymap.yaml").read_text()
    assert text.count("table: fmp_splits\n") == 1
    renamed = tmp_path / "keymap.yaml"
    renamed.write_text(text.replace("table: fmp_splits\n", "table: fmp_split_events\n"))
    settings = load_settings(make_env(tmp_path, PIPELINE_KEYMAP=str(renamed)))

    with pytest.raises(GoldInputError) as failure:
        build_definitions(settings, load_keymap(settings.keymap_path))

    message = str(failure.value)
    assert "gold.fact_price_daily declares input 'fmp_splits', which no keymap entry writes to Silver" in message
    assert "fmp_split_events" in message  # the tables that do exist are listed


def test_sql_that_reads_an_undeclared_table_is_named() -> None:
    sneaky = dataclasses.replace(FACT_PRICE_DAILY, sql=FACT_PRICE_DAILY.sql + "\n-- JOIN silver.fmp_ratios__history r")
    with pytest.raises(GoldInputError, match=r"gold.fact_price_daily reads silver.fmp_ratios in its SQL but does not"):
        check_inputs([sneaky], load_keymap(PROJECT_ROOT / "dataset_keymap.yaml").tables())


def test_a_declared_input_the_sql_never_reads_is_named() -> None:
    idle = dataclasses.replace(FACT_PRICE_DAILY, inputs=(*FACT_PRICE_DAILY.inputs, "fmp_ratios"))
    with pytest.raises(GoldInputError, match=r"declares input 'fmp_ratios' but its SQL never reads silver.fmp_ratios"):
        check_inputs([idle], load_keymap(PROJECT_ROOT / "dataset_keymap.yaml").tables())


def test_history_tables_and_quoted_names_count_as_their_table() -> None:
    assert sql_inputs('FROM silver."fmp_price_eod" p JOIN silver.fmp_splits__history s') == {
        "fmp_price_eod",
        "fmp_splits",
    }
