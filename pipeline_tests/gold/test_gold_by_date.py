"""Gold by date (issue 19): a daily refresh writes only the new days' rows of the tickers whose history did not
change, and recomputes over its history a ticker with a split, a dividend or a restated statement.

The real chain runs in-process (sample source as of each day -> Bronze -> Silver -> incremental Gold builds): full
history to 2024-06-05, then a plain day, NVDA's 10:1 split (2024-06-10), KO's ex-dividend day (2024-06-12) and a
day where MSFT's statements are restated (2024-06-20), each among unchanged tickers. After every day the incremental
tables must equal a full rebuild of the same Silver, and the rows written must stay within the issue's bound:
3 x the new price rows + the rows of the tickers recomputed over their history. On the split, dividend and
restatement days, the independent oracle (pipeline_tests/oracle) checks every cell.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from pipeline.gold import models
from pipeline.gold.build import GoldBuildResult, build
from pipeline.warehouse import Warehouse
from pipeline_tests.gold.sample_chain import ensure_gold_inputs, entries_for, fetch_and_promote
from pipeline_tests.oracle import compare_frames, fundamentals, load_gold, load_silver, price_daily, valuation_daily
from pipeline_tests.oracle.securities import security_ids
from pipeline_tests.oracle.silver import gold_columns

TICKERS = ["NVDA", "KO", "MSFT"]
TABLES = ("fact_price_daily", "fact_valuation_daily", "fact_fundamentals_quarterly")
BY_DATE = ("fact_price_daily", "fact_valuation_daily")
INTEGER_TYPES = ("BIGINT", "INTEGER")
FIRST_DAY = dt.date(2024, 6, 5)


@dataclass(frozen=True)
class Day:
    day: dt.date
    recomputed: dict[str, dict[str, str]]  # by-date table -> ticker -> a word of why it is recomputed in full
    restated: str | None = None  # this ticker's statements are restated (the sample source's revision=1)
    oracle: bool = False
    what: str = ""


DAYS = [
    Day(dt.date(2024, 6, 6), {"fact_price_daily": {}, "fact_valuation_daily": {}}, what="a plain day"),
    Day(
        dt.date(2024, 6, 10),  # NVDA splits 10:1; 06-07 and 06-10 are new
        {t: {"NVDA": "split or dividend takes effect"} for t in BY_DATE},
        oracle=True,
        what="NVDA's split",
    ),
    Day(
        dt.date(2024, 6, 12),  # KO goes ex-dividend; NVDA's dividends come back re-based onto the new share basis
        {t: {"KO": "takes effect in the new days", "NVDA": "changed or arrived"} for t in BY_DATE},
        oracle=True,
        what="KO's dividend",
    ),
    Day(
        dt.date(2024, 6, 20),  # MSFT restates a quarter; NVDA's dividend of 06-13 arrives with the weekly fetch
        {
            "fact_price_daily": {"NVDA": "takes effect in the new days"},
            "fact_valuation_daily": {"NVDA": "takes effect in the new days", "MSFT": "statement"},
        },
        restated="MSFT",
        oracle=True,
        what="MSFT's restatement",
    ),
]


@dataclass
class Built:
    results: dict[str, GoldBuildResult]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    held_before: dict[str, dt.date] = field(default_factory=dict)  # last price day in Gold before the build


def build_day(warehouse: Warehouse, run_id: str, *, first: bool = False) -> Built:
    with warehouse.connect() as conn:
        held = (
            {}
            if first
            else dict(conn.execute("SELECT ticker, max(date) FROM gold.fact_price_daily GROUP BY ALL").fetchall())
        )
        ensure_gold_inputs(conn, *TABLES)
        results = {name: build(conn, name, run_id) for name in TABLES}
        return Built(results, {name: load_gold(conn, name) for name in TABLES}, held)


def full_rebuild(path: Path, copy: Path) -> dict[str, pd.DataFrame]:
    """A full rebuild of the same Silver, in a copy of the warehouse."""
    shutil.copy(path, copy)
    with duckdb.connect(str(copy)) as conn:
        for name in TABLES:
            build(conn, name, "full-rebuild", full=True)
        return {name: load_gold(conn, name) for name in TABLES}


def assert_equal_tables(incremental: dict[str, pd.DataFrame], full: dict[str, pd.DataFrame], when: str) -> None:
    for name in TABLES:
        keys = list(models.MODELS[name].key)
        a = incremental[name].sort_values(keys).reset_index(drop=True)
        b = full[name].sort_values(keys).reset_index(drop=True)
        # the same numbers up to floating-point summation order (window sums depend on how DuckDB groups rows)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, obj=f"{when}: gold.{name}")


def oracle_mismatches(path: Path, tables: dict[str, pd.DataFrame]) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as conn:
        silver = load_silver(conn)
        types = {name: gold_columns(conn, name) for name in TABLES}
    prices = price_daily(silver)
    quarterly = fundamentals(silver, annual=False, gold_columns=list(types["fact_fundamentals_quarterly"]))
    expected = {
        "fact_price_daily": prices,
        "fact_fundamentals_quarterly": quarterly,
        "fact_valuation_daily": valuation_daily(silver, prices, quarterly),
    }
    for name, day in (("fact_price_daily", "date"), ("fact_fundamentals_quarterly", "period_end")):
        expected[name]["security_id"] = security_ids(silver, expected[name], day)
    expected["fact_valuation_daily"]["security_id"] = security_ids(silver, expected["fact_valuation_daily"], "date")
    problems = []
    for name in TABLES:
        keys = list(models.MODELS[name].key)
        actual = tables[name]
        uncovered = [c for c in actual.columns if c not in expected[name].columns]
        problems += [f"{name}: Gold columns with no oracle: {uncovered}"] if uncovered else []
        columns = [c for c in actual.columns if c not in keys and c in expected[name].columns]
        integer = [c for c, t in types[name].items() if t.upper() in INTEGER_TYPES]
        problems += compare_frames(name, expected[name], actual, keys, columns, integer)
    return problems


def rows_of(tables: dict[str, pd.DataFrame], tickers: set[str]) -> int:
    return sum(int(tables[name]["ticker"].isin(tickers).sum()) for name in TABLES)


def test_daily_builds_by_date_equal_a_full_rebuild_and_the_oracle(tmp_path: Path) -> None:
    root = tmp_path / "live"
    root.mkdir()
    entries = entries_for(sorted({t for name in TABLES for t in models.MODELS[name].inputs}))
    statements = [e for e in entries if e.silver.table in models.STATEMENT_INPUTS]
    warehouse = Warehouse(root / "warehouse.duckdb")
    fetch_and_promote(root, entries, FIRST_DAY, TICKERS, "run-0")
    first = build_day(warehouse, "gold-0", first=True)
    assert {r.mode for r in first.results.values()} == {"full"}

    for step in DAYS:
        when = f"{step.day} ({step.what})"
        if step.restated:  # restated statements for one ticker, fetched before the day's ordinary run
            fetch_and_promote(root, statements, step.day, [step.restated], f"run-{step.day}-r", revision=1)
        fetch_and_promote(root, entries, step.day, TICKERS, f"run-{step.day}")
        day = build_day(warehouse, f"gold-{step.day}")
        prices = day.tables["fact_price_daily"]
        new_rows = {t: int(((prices.ticker == t) & (prices.date.dt.date > day.held_before[t])).sum()) for t in TICKERS}
        assert all(n > 0 for n in new_rows.values()), f"{when}: every ticker has a new bar: {new_rows}"

        recomputed: set[str] = set()
        for name in BY_DATE:
            result = day.results[name]
            assert result.mode == "incremental", f"{when}: {name} {result.mode} ({result.reason})"
            got = result.recomputed_because
            want = step.recomputed[name]
            assert set(got) == set(want), f"{when}: {name} recomputed {got}, expected {sorted(want)}"
            for ticker, word in want.items():
                assert word in got[ticker], f"{when}: {name} recomputed {ticker} because {got[ticker]!r}"
            by_date = set(TICKERS) - set(want)
            assert result.tickers_by_date == len(by_date)
            # a ticker built by date gets exactly its new days; those recomputed at most their whole history
            history = int(day.tables[name]["ticker"].isin(set(want)).sum())
            assert sum(new_rows[t] for t in by_date) <= result.rows_written
            assert result.rows_written <= sum(new_rows[t] for t in by_date) + history, f"{when}: {name}"
            if not want:
                assert result.rows_written == sum(new_rows.values()) and result.rows_deleted == 0, when
            recomputed |= set(want)
        quarterly = day.results["fact_fundamentals_quarterly"]
        if not recomputed and not step.restated:
            assert quarterly.rows_written == 0, f"{when}: no fundamentals row changed: {quarterly.rows_written}"
        # the bound: Gold rows written per day <= 3 x new price rows + the rows of the recomputed tickers
        written = sum(r.rows_written for r in day.results.values())
        bound = 3 * sum(new_rows.values()) + rows_of(day.tables, recomputed | {step.restated} - {None})
        assert written <= bound, f"{when}: {written} Gold rows written, bound {bound}"

        assert_equal_tables(day.tables, full_rebuild(root / "warehouse.duckdb", tmp_path / f"{step.day}.duckdb"), when)
        if step.oracle:
            problems = oracle_mismatches(root / "warehouse.duckdb", day.tables)
            assert not problems, f"{when}:\n" + "\n".join(problems)
