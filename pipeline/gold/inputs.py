"""Gold inputs, checked once when the definitions load.

A Gold model names its Silver inputs twice: in `GoldModel.inputs` (the asset's dependencies, the watermarks a
build records, the tables a step makes sure exist) and in its SQL's `silver.<table>` references. A table read but
not declared would move without Gold noticing; a declared one the SQL never reads is a wrong name. `check_sql`
compares the two for every model and fails loading the definitions (`dg dev`, `pipeline run`, the tests), naming
each mismatch.

The keymap is compared too, but it may legitimately hold fewer datasets than Gold reads (a keymap cut down to a
few datasets for a benchmark or a test feeds no Gold table). `missing_inputs` names what a model lacks: the
definitions log it when they load, and a Gold step refuses with that sentence instead of a KeyError. The shipped
keymap must feed every model (tested), so a renamed Silver table fails the suite naming the model and the table.
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


def missing_inputs(model: GoldModel, silver_tables: Collection[str]) -> str | None:
    """One sentence naming the model's inputs that no keymap entry writes to Silver (None when it has them all)."""
    missing = [t for t in model.inputs if t not in silver_tables]
    if not missing:
        return None
    return f"gold.{model.name} reads {', '.join(missing)}, which no keymap entry writes to Silver"


def sql_problems(model: GoldModel) -> list[str]:
    """Where one model's declared inputs and its SQL disagree, one sentence each (empty when they agree)."""
    declared, read = set(model.inputs), sql_inputs(model.sql)
    problems = [
        f"gold.{model.name} reads silver.{t} in its SQL but does not declare it in GoldModel.inputs "
        "(a change there would not rebuild it)"
        for t in sorted(read - declared)
    ]
    problems += [
        f"gold.{model.name} declares input {t!r} but its SQL never reads silver.{t}" for t in sorted(declared - read)
    ]
    return problems


def check_sql(models: Iterable[GoldModel]) -> None:
    """Raise GoldInputError naming every model whose declared inputs disagree with its SQL."""
    problems = [p for model in models for p in sql_problems(model)]
    if problems:
        raise GoldInputError("Gold inputs do not match their SQL:\n  " + "\n  ".join(problems))
