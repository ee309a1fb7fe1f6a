"""The security master on the sample (issue 21): the S&P 500 as of a past date with names delisted since, a rename
continuous under one security, a reused ticker split at its reuse date, frozen delisted tickers costing no request,
a Starter run that says what it lacks, and bad input reported without loss.

Real chain: the loopback fake FMP server serving the sample source (FB -> META on 2022-06-09, TWTR delisted on
2022-10-27, AI held by C3.ai from 2020-12-09 after an earlier holder; fmp_api.md 3.4) -> Bronze -> Silver -> Gold.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from pipeline import market_calendar
from pipeline.bronze.delisted import frozen_tickers
from pipeline.gold.securities import index_members_as_of, security_at, universe_as_of
from pipeline.ops.survivorship import survivorship_section
from pipeline_tests.gold.secmaster_chain import (
    FUNDAMENTALS,
    KEYMAP,
    PRICES,
    SECURITY_GOLD,
    SURVIVORSHIP,
    build_gold,
    entries,
    fetch,
    with_extra_rows,
)
from pipeline_tests.oracle import load_gold, load_silver
from pipeline_tests.oracle.securities import security_ids

AS_OF = dt.date(2024, 6, 14)
RENAME, DELISTED, REUSED = dt.date(2022, 6, 9), dt.date(2022, 10, 27), dt.date(2020, 12, 9)
PAST = dt.date(2022, 1, 3)
TICKERS = ["KO", "TWTR", "AI"]


def connect(root: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """Two runs in one warehouse: as of a day before the rename with FB, then as of AS_OF with META (a universe
    follows the rename); the delisted and reused tickers and KO are fetched in both."""
    root = tmp_path_factory.mktemp("secmaster")
    fetch(root, dt.date(2022, 3, 1), ["FB", *TICKERS], entries(SURVIVORSHIP, PRICES, FUNDAMENTALS))
    fetch(root, AS_OF, ["META", *TICKERS], entries(SURVIVORSHIP, PRICES, FUNDAMENTALS))
    build_gold(root, [*SECURITY_GOLD, "fact_price_daily", "fact_fundamentals_quarterly"])
    return root


def test_sp500_as_of_a_past_date_includes_members_delisted_since(warehouse: Path) -> None:
    with connect(warehouse) as conn:
        past = index_members_as_of(conn, "sp500", PAST)
        today = index_members_as_of(conn, "sp500", AS_OF)
        macro = dict(
            conn.execute("SELECT security_id, ticker FROM gold.index_members_as_of('sp500', ?)", [PAST]).fetchall()
        )
        twtr = security_at(conn, "TWTR", PAST)
        delisted_on = conn.execute(
            "SELECT delisted_on FROM gold.dim_security WHERE security_id = ?", [twtr.security_id]
        ).fetchone()[0]
    base = {"AAPL", "MSFT", "NVDA", "JPM", "XOM", "JNJ", "KO", "PG", "GE"}
    assert sorted(past.values()) == sorted(base | {"FB", "TWTR"})  # tickers as they were that day
    assert sorted(today.values()) == sorted(base | {"META", "AI"})
    assert macro == past
    assert past[twtr.security_id] == "TWTR" and delisted_on == DELISTED  # delisted since, still in the past index
    meta = next(sid for sid, t in today.items() if t == "META")
    assert past[meta] == "FB"  # the same security under its ticker of the day


def test_rename_is_one_security_with_continuous_prices_and_fundamentals(warehouse: Path) -> None:
    with connect(warehouse) as conn:
        fb, meta = security_at(conn, "FB", RENAME - dt.timedelta(days=1)), security_at(conn, "META", RENAME)
        assert fb is not None and meta is not None and fb.security_id == meta.security_id
        assert security_at(conn, "META", RENAME - dt.timedelta(days=1)) is None  # not META's ticker then
        assert (fb.valid_to, meta.valid_from) == (RENAME - dt.timedelta(days=1), RENAME)
        sid = meta.security_id
        by_ticker = dict(
            conn.execute(
                "SELECT ticker, count(*) FROM gold.fact_price_daily WHERE security_id = ? GROUP BY ticker", [sid]
            ).fetchall()
        )
        # both fetches (FB before the rename, META after) hold the same history: one price per day under the security
        disagree = conn.execute(
            "SELECT count(*) FROM (SELECT date FROM gold.fact_price_daily WHERE security_id = ? GROUP BY date "
            "HAVING count(DISTINCT round(close, 6)) > 1)",
            [sid],
        ).fetchone()[0]
        days = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT date FROM gold.fact_price_daily WHERE security_id = ? ORDER BY 1", [sid]
            ).fetchall()
        ]
        quarters = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT period_end FROM gold.fact_fundamentals_quarterly WHERE security_id = ? ORDER BY 1",
                [sid],
            ).fetchall()
        ]
        other_ids = conn.execute(
            "SELECT count(*) FROM gold.fact_price_daily WHERE ticker IN ('FB', 'META') AND security_id <> ?", [sid]
        ).fetchone()[0]
    assert set(by_ticker) == {"FB", "META"} and other_ids == 0
    assert disagree == 0
    sessions = market_calendar.sessions(days[0], AS_OF).tolist()
    assert days == sessions  # no gap across the rename
    assert quarters[0] < RENAME < quarters[-1]
    gaps = {(b - a).days for a, b in zip(quarters, quarters[1:], strict=False)}
    assert max(gaps) <= 92  # consecutive quarters across the rename


def test_reused_ticker_is_two_securities_split_at_the_reuse_date(warehouse: Path) -> None:
    with connect(warehouse) as conn:
        before, after = security_at(conn, "AI", REUSED - dt.timedelta(days=1)), security_at(conn, "AI", REUSED)
        names = dict(conn.execute("SELECT security_id, name FROM gold.dim_security WHERE ticker = 'AI'").fetchall())
        facts = conn.execute(
            "SELECT DISTINCT security_id, min(date) OVER () FROM gold.fact_price_daily WHERE ticker = 'AI'"
        ).fetchall()
        universe_then = universe_as_of(conn, REUSED - dt.timedelta(days=1))
    assert before is not None and after is not None and before.security_id != after.security_id
    assert before.valid_to == REUSED - dt.timedelta(days=1) and after.valid_from == REUSED
    assert names[before.security_id] == "Arlington Asset Investment Corp." and names[after.security_id] == "C3.ai, Inc."
    assert facts == [(after.security_id, REUSED)]  # FMP's AI history is C3.ai's: no bar glued to the old holder
    assert universe_then[before.security_id] == "AI" and after.security_id not in universe_then


def test_security_ids_on_the_facts_match_the_oracle(warehouse: Path) -> None:
    """Across the rename (FB rows fetched before it, META rows after) and the reused ticker, the facts' security_id
    equals the pandas oracle's, written from the rules and not from the SQL (pipeline_tests/oracle/securities.py)."""
    with connect(warehouse) as conn:
        silver = load_silver(conn)
        prices, quarterly = load_gold(conn, "fact_price_daily"), load_gold(conn, "fact_fundamentals_quarterly")
    for frame, day in ((prices, "date"), (quarterly, "period_end")):
        expected = security_ids(silver, frame, day).astype("int64")
        assert (expected.to_numpy() == frame["security_id"].to_numpy()).all()
    assert prices.groupby("ticker")["security_id"].nunique().max() == 1 and prices["security_id"].nunique() == 4


def test_frozen_delisted_tickers_cost_no_request_on_a_daily_run(warehouse: Path) -> None:
    day = AS_OF + dt.timedelta(days=3)  # the next trading day
    with connect(warehouse) as conn:
        frozen = frozen_tickers(conn, day)
    assert frozen["TWTR"] == DELISTED and "AI" not in frozen  # AI's delisting belongs to its earlier holder
    again = fetch(warehouse, day, ["META", *TICKERS], entries(PRICES))
    symbols = [r.params.get("symbol") for r in again.requests]
    assert "TWTR" not in symbols and symbols.count("KO") > 0 and symbols.count("AI") > 0
    frozen = sum(r.skipped.get("frozen", 0) for r in again.report.entries.values())
    assert frozen == len(entries(PRICES))  # every per-ticker dataset of TWTR, skipped as frozen
    with connect(warehouse) as conn:  # its partitions' Gold rows stay
        rows = conn.execute("SELECT count(*), max(date) FROM gold.fact_price_daily WHERE ticker = 'TWTR'").fetchone()
    assert rows[0] > 0 and rows[1] == DELISTED


def test_a_starter_run_completes_and_says_what_it_lacks(tmp_path: Path) -> None:
    wanted = entries(SURVIVORSHIP)
    refused = fetch(tmp_path, AS_OF, TICKERS, wanted, plan="starter")  # FMP_PLAN unset: FMP's 402s say it
    assert refused.report.hard_failures == 0
    statuses = {(r.path, r.params.get("page")): r.status for r in refused.requests}
    assert statuses[("historical-sp500-constituent", None)] == 402 and statuses[("delisted-companies", "1")] == 402
    build_gold(tmp_path, SECURITY_GOLD)
    with connect(tmp_path) as conn:
        delisted = conn.execute("SELECT count(*) FROM silver.fmp_delisted_companies").fetchone()[0]
        lines = survivorship_section(KEYMAP.entries, conn, AS_OF, None)
    assert delisted == 3  # the first page, from the `latest` entry Starter may read
    text = "\n".join(lines)
    assert "historical-sp500-constituent: refused by the plan" in text
    assert "delisted-companies page 1: refused by the plan" in text
    assert "no constituent history in Silver" in text  # membership as of a past date would be biased: said
    planned = fetch(tmp_path / "planned", AS_OF, TICKERS, wanted, plan="starter", fmp_plan="starter")
    assert {r.path for r in planned.requests if r.status == 402} == set()  # skipped before the wire
    with connect(tmp_path / "planned") as conn:
        text = "\n".join(survivorship_section(KEYMAP.entries, conn, AS_OF, "starter"))
    assert "lacks: delisted-companies: skipped, needs the FMP premium plan (FMP_PLAN=starter)" in text


def test_bad_input_is_reported_and_nothing_is_lost(tmp_path: Path) -> None:
    extra = {
        "symbol-change": [{"date": "2024-03-01", "companyName": "Snap Inc.", "oldSymbol": "SNAP", "newSymbol": "KO"}],
        "delisted-companies": [
            {
                "symbol": "SNAP",
                "companyName": "Snap Inc.",
                "exchange": "NYSE",
                "ipoDate": "2017-03-02",
                "delistedDate": "2024-09-30",
            }
        ],
        "historical-sp500-constituent": [
            {
                "dateAdded": "Smarch 3, 2020",
                "addedSecurity": "Snap Inc.",
                "removedTicker": "GE",
                "removedSecurity": "General Electric Company",
                "date": "2020-03-03",
                "symbol": "SNAP",
                "reason": "x",
            },
            {
                "dateAdded": "sometime",
                "addedSecurity": "Coca-Cola",
                "removedTicker": "",
                "removedSecurity": "",
                "date": "",
                "symbol": "KO",
                "reason": "y",
            },
        ],
    }
    fetch(
        tmp_path,
        AS_OF,
        ["KO", "SNAP"],
        entries(SURVIVORSHIP, {"profile"}),
        data=lambda source: with_extra_rows(source, extra),
    )
    build_gold(tmp_path, SECURITY_GOLD)
    with connect(tmp_path) as conn:
        issues = dict(conn.execute("SELECT kind, message FROM gold.security_issues").fetchall())
        kept = conn.execute(
            "SELECT (SELECT count(*) FROM silver.fmp_symbol_change WHERE new_symbol = 'KO'), "
            "(SELECT count(*) FROM silver.fmp_delisted_companies WHERE symbol = 'SNAP'), "
            "(SELECT count(*) FROM silver.fmp_sp500_constituent_history "
            "WHERE date_added IN ('Smarch 3, 2020', 'sometime'))"
        ).fetchone()
        ko, snap = security_at(conn, "KO", AS_OF), security_at(conn, "SNAP", AS_OF)
        snap_before = security_at(conn, "SNAP", dt.date(2024, 2, 29))
        listed_today = universe_as_of(conn, AS_OF)
        frozen = frozen_tickers(conn, AS_OF + dt.timedelta(days=3))
        snap_in_index = index_members_as_of(conn, "sp500", dt.date(2020, 3, 3))
    assert kept == (1, 1, 2)  # every bad row stays in Silver
    assert (
        "SNAP -> KO (Snap Inc.) not applied: KO is already held by The Coca-Cola Company"
        in issues["symbol_change_conflict"]
    )
    assert ko is not None and snap is not None and snap_before is not None
    assert ko.security_id != snap.security_id == snap_before.security_id  # not merged
    assert (
        "SNAP (Snap Inc.): delisting dated 2024-09-30, after FMP served it on 2024-06-14" in issues["future_delisting"]
    )
    assert snap.security_id in listed_today and "SNAP" not in frozen  # listed until then, still fetched
    assert snap.valid_to == dt.date(2024, 9, 30)
    with connect(tmp_path) as conn:
        messages = [
            r[0]
            for r in conn.execute(
                "SELECT message FROM gold.security_issues WHERE kind = 'unparseable_date_added' ORDER BY 1"
            ).fetchall()
        ]
    assert any("'Smarch 3, 2020' of SNAP does not parse: used its date 2020-03-03" in m for m in messages)
    assert any("'sometime' of KO does not parse and the row has no date: left out" in m for m in messages)
    assert "SNAP" in snap_in_index.values()  # the row with a usable date counts from that date


def test_a_company_renamed_twice_has_one_spell_per_ticker_without_overlap(tmp_path: Path) -> None:
    """A -> B -> C: the middle ticker's spell runs from the first change to the day before the second, no longer."""
    first = dt.date(2015, 1, 2)
    extra = {
        "symbol-change": [
            {"date": first.isoformat(), "companyName": "Meta Platforms, Inc.", "oldSymbol": "FBX", "newSymbol": "FB"}
        ]
    }
    # a run while the company was FB (its profile stays in Silver under FB), then one after the second rename
    for day, ticker in ((dt.date(2022, 3, 1), "FB"), (AS_OF, "META")):
        fetch(tmp_path, day, [ticker], entries(SURVIVORSHIP, {"profile"}), data=lambda s: with_extra_rows(s, extra))
    build_gold(tmp_path, SECURITY_GOLD)
    with connect(tmp_path) as conn:
        meta = security_at(conn, "META", AS_OF)
        spells = conn.execute(
            "SELECT ticker, valid_from, valid_to FROM gold.dim_security_ticker WHERE security_id = ? ORDER BY 2",
            [meta.security_id],
        ).fetchall()
        fb, fbx = security_at(conn, "FB", dt.date(2020, 1, 2)), security_at(conn, "FBX", dt.date(2014, 6, 2))
    assert [s[0] for s in spells] == ["FBX", "FB", "META"], spells
    assert spells[1][1:] == (first, RENAME - dt.timedelta(days=1)), spells
    assert all(earlier[2] < later[1] for earlier, later in zip(spells, spells[1:])), spells  # no overlap
    assert fb is not None and fbx is not None and fb.security_id == fbx.security_id == meta.security_id
