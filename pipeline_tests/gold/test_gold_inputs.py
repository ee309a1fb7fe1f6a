"""Gold inputs are checked when the definitions load (pipeline/gold/inputs.py): each model's declared Silver inputs
against the `silver.<table>` references of its own SQL (a mismatch fails loading), and against the keymap's Silver
tables (the shipped keymap feeds every model; a keymap that lacks an input gets a Gold step that says so)."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.gold.inputs import GoldInputError, check_sql, missing_inputs, sql_inputs
from pipeline.gold.models import FACT_PRICE_DAILY, MODELS
from pipeline.keymap import load_keymap
from pipeline.settings import PROJECT_ROOT


def test_the_shipped_keymap_feeds_every_model_and_each_sql_reads_what_it_declares() -> None:
    tables = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml").tables()
    assert {m.name: missing_inputs(m, tables) for m in MODELS.values()} == {name: None for name in MODELS}
    check_sql(MODELS.values())


def test_a_wrong_input_name_fails_loading_the_definitions_naming_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.orchestration.assets import gold as gold_assets
    from pipeline.orchestration.definitions import load_definitions

    typo = dataclasses.replace(FACT_PRICE_DAILY, inputs=("fmp_price_eod_as_traded", "fmp_price_eod", "fmp_split"))
    monkeypatch.setitem(gold_assets.MODELS, "fact_price_daily", typo)
    with pytest.raises(GoldInputError) as failure:
        load_definitions()
    message = str(failure.value)
    assert "gold.fact_price_daily reads silver.fmp_splits in its SQL but does not declare it" in message
    assert "gold.fact_price_daily declares input 'fmp_split' but its SQL never reads silver.fmp_split" in message


def test_a_keymap_renaming_an_input_table_is_named_with_the_model() -> None:
    text = (PROJECT_ROOT / "dataset_keymap.yaml").read_text()
    assert text.count("table: fmp_splits\n") == 1
    tables = dict(load_keymap(PROJECT_ROOT / "dataset_keymap.yaml").tables())
    tables["fmp_split_events"] = tables.pop("fmp_splits")
    assert missing_inputs(FACT_PRICE_DAILY, tables) == (
        "gold.fact_price_daily reads fmp_splits, which no keymap entry writes to Silver"
    )


def test_sql_that_reads_an_undeclared_history_table_is_named() -> None:
    sneaky = dataclasses.replace(FACT_PRICE_DAILY, sql=FACT_PRICE_DAILY.sql + "\n-- JOIN silver.fmp_ratios__history r")
    with pytest.raises(GoldInputError, match=r"gold.fact_price_daily reads silver.fmp_ratios in its SQL but does not"):
        check_sql([sneaky])


def test_history_tables_and_quoted_names_count_as_their_table() -> None:
    assert sql_inputs('FROM silver."fmp_price_eod" p JOIN silver.fmp_splits__history s') == {
        "fmp_price_eod",
        "fmp_splits",
    }
