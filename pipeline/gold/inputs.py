"""Gold inputs, checked once when the definitions load.

A Gold model names its Silver inputs twice: in `GoldModel.inputs` (the asset's dependencies, the watermarks a
build records, the tables a step makes sure exist) and in its SQL's `silver.<table>` references. Nothing else ties
either list to the keymap, so a renamed Silver table would surface as a KeyError in the middle of a run, or, worse, a
table read but not declared would move without Gold noticing. `check_inputs` compares the three and names every
mismatch, so `dg dev`, `pipeline run` and the tests fail at load time instead.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from pipeline.gold.models import GoldModel

HISTORY_SUFFIX = "__history"  # silver.<table>__history holds <table>'s versions: reading it reads <table>
_SILVER_REFERENCE = re.compile(r'\bsilver\."?([A-Za-z_][A-Za-z0-9_]*)"?')


class GoldInputError(ValueError):
    """A Gold model's inputs disagree with the keymap or with its own SQL."""


def sql_inputs(sql: str) -> set[str]:
    """The Silver tables the SQL text reads (a history table counts as its table)."""
    return {name.removesuffix(HISTORY_SUFFIX) for name in _SILVER_REFERENCE.findall(sql)}


def input_problems(model: GoldModel, silver_tables: Collection[str]) -> list[str]:
    """What is wrong with one model's inputs, one sentence each (empty when nothing is)."""
    declared, read = set(model.inputs), sql_inputs(model.sql)
    problems = [
        f"gold.{model.name} declares input {t!r}, which no keymap entry writes to Silver"
        for t in sorted(declared - set(silver_tables))
    ]
    problems += [
        f"gold.{model.name} reads silver.{t} in its SQL but does not declare it in GoldModel.inputs "
        "(a change there would not rebuild it)"
        for t in sorted(read - declared)
    ]
    problems += [
        f"gold.{model.name} declares input {t!r} but its SQL never reads silver.{t}" for t in sorted(declared - read)
    ]
    return problems


def check_inputs(models: Iterable[GoldModel], silver_tables: Collection[str]) -> None:
    """Raise GoldInputError naming every model whose inputs disagree with the keymap or its SQL."""
    problems = [p for model in models for p in input_problems(model, silver_tables)]
    if problems:
        known = ", ".join(sorted(silver_tables))
        raise GoldInputError("Gold inputs do not match:\n  " + "\n  ".join(problems) + f"\n(Silver tables: {known})")
