"""Every Gold metric recomputed in pandas (pipeline_tests/oracle, written from the Gold semantics and not from the
Gold SQL) and compared for every ticker and date.

The warehouse is built by two `pipeline run`s in a subprocess, over real HTTP to the loopback fake FMP server
serving the bundled sample source (FMP's documented semantics): one as of a day before NVDA's 10:1 split of
2024-06-10 and one after it, in the same data folder, so history fetched before the split must be re-based.

Then the dates where point-in-time and share-basis mistakes show: around each split, around a filing becoming
usable (including one accepted after the 16:00 ET close), around a macro release, and a loss-making quarter.

The runs happen today while PIPELINE_AS_OF is in 2024, so every Silver fetched_at is today; the basis a row was
served on is the earlier of that day and the run's planning day (the ledger's as_of). One test replays the same
Silver on a production clock (each row fetched on its run's as-of day, no as-traded endpoint, statements not
refetched after the split) and checks Gold against both the oracle and the real numbers of the first build; another
makes the rare branches in a copy of Silver.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipeline.fmp.sample import SAMPLE_TICKERS, SampleSource
from pipeline.gold.build import GOLD_ASSETS, build
from pipeline.gold.models import MODELS
from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data
from pipeline_tests.oracle import (
    compare_frames,
    fundamentals,
    load_gold,
    load_silver,
    macro_daily,
    price_daily,
    valuation_daily,
)
from pipeline_tests.oracle.basis import et_timestamp
from pipeline_tests.oracle.macro import snake
from pipeline_tests.oracle.securities import security_ids
from pipeline_tests.oracle.silver import gold_columns
from pipeline_tests.support import KEY, cli_env, pipeline_cmd

BEFORE_SPLIT = "2024-06-05"
AS_OF = "2024-06-14"  # after NVDA's 10:1 split of 2024-06-10
WANTED = ("AAPL", "NVDA", "KO", "GE", "SNAP")  # GE: 1:8 reverse split; SNAP: loss-making
TICKERS = [t for t in WANTED if t in SAMPLE_TICKERS]
CLI_TIMEOUT_S = 300
INTEGER_TYPES = ("BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "UBIGINT")


def release_map() -> dict[str, tuple[tuple[str, ...], int]]:
    """indicator -> (calendar events, lag days), from the pipeline's own published mapping (data, not logic)."""
    from pipeline.gold.macro_releases import RELEASES

    return {name: (tuple(spec.events), int(spec.lag_days)) for name, spec in RELEASES.items()}


# ---- the warehouse: two incremental `pipeline run`s around a split ------------------------------------------

FACTS = (
    "fact_price_daily",
    "fact_fundamentals_quarterly",
    "fact_fundamentals_annual",
    "fact_valuation_daily",
    "fact_macro_daily",
)
# the first run fetches only what Gold reads (faster); the second is a plain `pipeline run`
GOLD_AND_UPSTREAM = ",".join(f"*gold/{name}" for name in GOLD_ASSETS)


@dataclass
class Built:
    data_dir: Path
    warehouse: Path
    silver: dict[str, pd.DataFrame]
    gold: dict[str, pd.DataFrame]
    types: dict[str, dict[str, str]]
    logs: dict[str, str]
    between_runs: dt.datetime  # UTC wall clock after the first run: older fetched_at = first run


def cli_run(root: Path, as_of: str, tickers: list[str], *args: str) -> tuple[int, str]:
    """`pipeline run` in a subprocess against the loopback fake FMP serving the sample source as of `as_of`."""
    source = SampleSource(as_of=dt.date.fromisoformat(as_of), tickers=tickers)
    (root / "dagster_home").mkdir(exist_ok=True)
    with FakeFmpServer(api_key=KEY, data=sample_data(source)) as server:
        # FMP_PLAN=starter (no corporate calendars): every dataset on its cadence, so the second run refetches /full
        # after the split too, which the production-clock replay below needs (a plan without the as-traded bars fetches
        # /full daily; event-driven refresh is tested in pipeline_tests/bronze/test_refresh.py)
        env = cli_env(
            server.base_url,
            root / "data",
            ",".join(tickers),
            as_of,
            DAGSTER_HOME=str(root / "dagster_home"),
            FMP_PLAN="starter",
        )
        proc = subprocess.run(
            pipeline_cmd("run", *args), env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
        )
    return proc.returncode, proc.stdout + proc.stderr


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("oracle")
    logs = {}
    between = None
    for as_of, args in ((BEFORE_SPLIT, ("--select", GOLD_AND_UPSTREAM)), (AS_OF, ())):
        if between is None and logs:
            between = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        code, logs[as_of] = cli_run(root, as_of, TICKERS, *args)
        assert code == 0, f"pipeline run as of {as_of} exited {code}:\n{tail(logs[as_of])}"
    warehouse = root / "data" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        silver = load_silver(conn)
        gold = {n: load_gold(conn, n) for n in FACTS}
        types = {n: gold_columns(conn, n) for n in FACTS}
    yield Built(root / "data", warehouse, silver, gold, types, logs, between)


@dataclass
class Oracle:
    prices: pd.DataFrame
    quarterly: pd.DataFrame
    annual: pd.DataFrame
    valuation: pd.DataFrame
    macro: pd.DataFrame


def compute_oracle(silver: dict[str, pd.DataFrame], types: dict[str, dict[str, str]]) -> Oracle:
    prices = price_daily(silver)
    quarterly = fundamentals(silver, annual=False, gold_columns=list(types["fact_fundamentals_quarterly"]))
    annual = fundamentals(silver, annual=True, gold_columns=list(types["fact_fundamentals_annual"]))
    valuation = valuation_daily(silver, prices, quarterly)
    macro = macro_daily(silver, prices["date"], release_map())
    for frame, day in ((prices, "date"), (quarterly, "period_end"), (annual, "period_end"), (valuation, "date")):
        frame["security_id"] = security_ids(silver, frame, day)
    return Oracle(prices, quarterly, annual, valuation, macro)


@pytest.fixture(scope="module")
def oracle(built: Built) -> Oracle:
    return compute_oracle(built.silver, built.types)


TABLES = {  # gold table -> (oracle attribute, key columns)
    "fact_price_daily": ("prices", ["ticker", "date"]),
    "fact_fundamentals_quarterly": ("quarterly", ["ticker", "period_end", "period"]),
    "fact_fundamentals_annual": ("annual", ["ticker", "period_end", "period"]),
    "fact_valuation_daily": ("valuation", ["ticker", "date"]),
    "fact_macro_daily": ("macro", ["date"]),
}


def mismatches(name: str, expected: pd.DataFrame, actual: pd.DataFrame, types: dict[str, str]) -> list[str]:
    keys = TABLES[name][1]
    uncovered = [c for c in actual.columns if c not in expected.columns]
    problems = [f"{name}: Gold columns with no oracle: {uncovered}"] if uncovered else []
    columns = [c for c in actual.columns if c not in keys and c in expected.columns]
    integer = [c for c, t in types.items() if t.upper() in INTEGER_TYPES]
    return problems + compare_frames(name, expected, actual, keys, columns, integer)


# ---- every metric, every ticker, every date ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(TABLES))
def test_gold_equals_oracle(built: Built, oracle: Oracle, name: str) -> None:
    expected = getattr(oracle, TABLES[name][0])
    actual = built.gold[name]
    assert len(actual) > 0, f"gold.{name} is empty"
    problems = mismatches(name, expected, actual, built.types[name])
    assert not problems, "\n".join(problems)


def test_a_one_cell_change_is_reported_with_its_coordinates(built: Built, oracle: Oracle) -> None:
    """The comparison has teeth: a 1e-7 relative change or a NULL in one cell fails and names it."""
    gold = built.gold["fact_valuation_daily"].copy()
    row = gold.index[len(gold) // 2]
    ticker, day = gold.loc[row, "ticker"], gold.loc[row, "date"]
    gold.loc[row, "market_cap"] *= 1 + 1e-7
    gold.loc[row, "pb"] = np.nan
    problems = mismatches("fact_valuation_daily", oracle.valuation, gold, built.types["fact_valuation_daily"])
    text = "\n".join(problems)
    for part in (
        "fact_valuation_daily.market_cap: 1 of",
        "fact_valuation_daily.pb: 1 of",
        f"ticker={ticker} date={day.date()}",
        "expected",
        "actual nan",
    ):
        assert part in text, text


def test_every_requested_ticker_has_prices_and_fundamentals(built: Built) -> None:
    prices = built.gold["fact_price_daily"]
    assert set(prices["ticker"]) == set(TICKERS)
    assert set(built.gold["fact_fundamentals_quarterly"]["ticker"]) == set(TICKERS)
    assert prices["date"].max() == pd.Timestamp(AS_OF)


# ---- splits: the day before, the split day, the day after --------------------------------------------------


def split_days(built: Built) -> list[tuple[str, pd.Timestamp, float]]:
    prices = built.gold["fact_price_daily"]
    out = []
    for _, s in built.silver["fmp_splits"].iterrows():
        p = prices[prices["ticker"] == s["ticker"]]
        if len(p) and p["date"].min() < s["date"] <= p["date"].max():
            out.append((s["ticker"], s["date"], s["numerator"] / s["denominator"]))
    return out


def test_splits_in_range_include_a_forward_and_a_reverse_split(built: Built) -> None:
    ratios = {(t, d.date()): r for t, d, r in split_days(built)}
    assert ("NVDA", dt.date(2024, 6, 10)) in ratios, ratios
    if "GE" in TICKERS:
        assert any(r < 1 for r in ratios.values()), f"no reverse split inside the price history: {ratios}"


def test_split_days_keep_adjusted_close_and_market_cap_continuous(built: Built) -> None:
    prices = built.gold["fact_price_daily"].set_index(["ticker", "date"]).sort_index()
    val = built.gold["fact_valuation_daily"].set_index(["ticker", "date"]).sort_index()
    checked = 0
    for ticker, split_date, ratio in split_days(built):
        days = prices.loc[ticker].index
        i = int(days.searchsorted(split_date))  # the split day, or the first trading day after it
        before, on = days[i - 1], days[i]
        after = days[i + 1] if i + 1 < len(days) else None
        p, v = prices.loc[ticker], val.loc[ticker]
        where = f"{ticker} split {ratio:g} on {split_date.date()} ({before.date()} -> {on.date()})"
        market = p.loc[on, "split_adj_close"] / p.loc[before, "split_adj_close"]
        traded = p.loc[on, "close"] / p.loc[before, "close"]
        # the as-traded close moves by the market move divided by the split ratio
        assert traded == pytest.approx(market / ratio, rel=1e-9), where
        # the split-adjusted close moves like a market, nowhere near the ratio
        assert 0.75 < market < 1.33, f"{where}: split_adj_close moved x{market:.4f}"
        assert p.loc[on, "return_1d"] == pytest.approx(market - 1, rel=1e-9, abs=1e-12), where
        # the day after is an ordinary day on both series
        if after is not None:
            assert p.loc[after, "close"] / p.loc[on, "close"] == pytest.approx(
                p.loc[after, "split_adj_close"] / p.loc[on, "split_adj_close"], rel=1e-9
            ), where
        # market cap moves with the adjusted close when the same statement is in force on both days
        for a, b in ((before, on), (on, after)):
            if b is None or pd.isna(v.loc[a, "market_cap"]):
                continue
            if v.loc[a, "statement_period_end"] != v.loc[b, "statement_period_end"]:
                continue
            mcap = v.loc[b, "market_cap"] / v.loc[a, "market_cap"]
            adj = p.loc[b, "split_adj_close"] / p.loc[a, "split_adj_close"]
            assert mcap == pytest.approx(adj, rel=1e-9), f"{where}: market cap x{mcap:.4f}, adjusted close x{adj:.4f}"
            assert v.loc[b, "shares_outstanding"] / v.loc[a, "shares_outstanding"] == pytest.approx(
                ratio if b == on else 1.0, rel=1e-9
            ), where
            checked += 1
    assert checked >= 2, "no split day had a statement in force on both sides"


# ---- filings: the day before usable, the usable day, after-close acceptance ---------------------------------


def test_statement_switches_on_its_usable_day(built: Built) -> None:
    q = built.gold["fact_fundamentals_quarterly"]
    val = built.gold["fact_valuation_daily"]
    checked = after_close = 0
    for _, row in q.iterrows():
        v = val[val["ticker"] == row["ticker"]].set_index("date").sort_index()
        usable = row["usable_from"]
        if pd.isna(usable) or usable not in v.index or usable == v.index[0]:
            continue
        if v.loc[usable, "statement_period_end"] != row["period_end"]:
            continue  # a late filing of an older period, or replaced the same day: covered by the oracle test
        before = v.index[v.index.get_loc(usable) - 1]
        where = f"{row['ticker']} {row['period']} {row['period_end'].date()} usable {usable.date()}"
        assert v.loc[before, "statement_period_end"] != row["period_end"], f"{where}: used on {before.date()}"
        accepted = row["accepted_date"]
        # the usable day's 16:00 close is at or after acceptance; the previous close is before it
        assert accepted <= usable + pd.Timedelta(hours=16), where
        assert accepted > before + pd.Timedelta(hours=16), where
        if accepted.time() > dt.time(16, 0) and accepted.normalize() in v.index:
            # accepted after the close of a trading day: that day's row still shows the previous statement
            assert v.loc[accepted.normalize(), "statement_period_end"] != row["period_end"], where
            assert usable > accepted.normalize(), where
            after_close += 1
        checked += 1
    assert checked >= 10, f"only {checked} statements became usable inside the price history"
    assert after_close >= 1, "the sample has no statement accepted after 16:00 ET on a trading day"


# ---- macro: the day before and the day of a release ----------------------------------------------------------


def test_macro_value_appears_on_its_release_day_not_before(built: Built) -> None:
    macro = built.gold["fact_macro_daily"].set_index("date").sort_index()
    calendar = built.silver["fmp_economic_calendar"]
    indicators = built.silver["fmp_economic_indicator"]
    releases = release_map()
    checked = 0
    for name, (events, _lag) in releases.items():
        col = snake(name)
        if col not in macro.columns or not events:
            continue
        cal = calendar[(calendar["country"] == "US") & calendar["event"].isin(events)]
        periods = sorted(indicators.loc[indicators["name"] == name, "date"])
        for released in et_timestamp(cal["released_at"]).sort_values():
            first_day = released.normalize() + pd.Timedelta(days=1 if released.time() > dt.time(16, 0) else 0)
            # the observation this release publishes: the newest period that ended before the release
            ended = [
                p for i, p in enumerate(periods) if i + 1 < len(periods) and periods[i + 1] <= released.normalize()
            ]
            if not ended or first_day > macro.index[-1] or first_day <= macro.index[0]:
                continue
            period = ended[-1]
            day = macro.index[macro.index.searchsorted(first_day)]
            prev = macro.index[macro.index.searchsorted(first_day) - 1]
            where = f"{name} period {period.date()} released {released} (ET)"
            if macro.loc[day, f"{col}_period"] != period:
                continue  # a later observation already shown (the release came late): the oracle test covers it
            shown_before = macro.loc[prev, f"{col}_period"]
            assert pd.isna(shown_before) or shown_before < period, f"{where}: shown on {prev.date()} before its release"
            assert macro.loc[day, f"{col}_known_from"] == first_day, where
            checked += 1
    assert checked >= 3, f"only {checked} macro releases fell inside the dates"


def test_macro_never_shows_a_period_before_it_ended(built: Built) -> None:
    macro = built.gold["fact_macro_daily"]
    cols = [c[: -len("_period")] for c in macro.columns if c.endswith("_period")]
    assert cols, "fact_macro_daily has no <indicator>_period column"
    for col in cols:
        shown = macro[macro[f"{col}_period"].notna()]
        assert (shown[f"{col}_known_from"] <= shown["date"]).all(), col
        # known at the earliest the day after the period's first day (a monthly value needs its month to end)
        assert (shown[f"{col}_known_from"] > shown[f"{col}_period"]).all(), col


# ---- a loss-making quarter ------------------------------------------------------------------------------------


def test_loss_making_quarter_has_no_pe(built: Built) -> None:
    val = built.gold["fact_valuation_daily"]
    losing = val[val["eps_ttm"] <= 0]
    assert len(losing) > 0, f"no row with eps_ttm <= 0 among {TICKERS}"
    assert losing["pe_ttm"].isna().all()
    assert (val.loc[val["eps_ttm"] > 0, "pe_ttm"] > 0).all()
    q = built.gold["fact_fundamentals_quarterly"]
    assert (q["net_income"] < 0).any(), "no loss-making quarter in the sample"


# ---- a split between two incremental runs ---------------------------------------------------------------------


def test_incremental_runs_across_a_split_equal_a_full_rebuild(built: Built, tmp_path: Path) -> None:
    nvda = built.silver["fmp_price_eod"]
    nvda = nvda[nvda["ticker"] == "NVDA"]
    assert nvda["date"].min() < pd.Timestamp("2024-06-05") < pd.Timestamp("2024-06-10") <= nvda["date"].max()
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(built.warehouse, copy)
    with duckdb.connect(str(copy)) as conn:
        modes = [
            r[0]
            for r in conn.execute(
                "SELECT mode FROM ops.gold_builds WHERE asset = 'fact_price_daily' "
                "AND status = 'success' ORDER BY build_id"
            ).fetchall()
        ]
        assert modes == ["full", "incremental"], f"the second run should build prices incrementally: {modes}"
        incremental = {n: load_gold(conn, n) for n in GOLD_ASSETS}
        for n in GOLD_ASSETS:
            build(conn, n, "oracle-full-rebuild", full=True)
        for n in GOLD_ASSETS:
            # equal up to floating-point summation order: the tickers built by date (all but NVDA) sum their rolling
            # windows over a shorter partition, and DuckDB's window sums depend on where a partition starts
            keys = list(MODELS[n].key)
            full = load_gold(conn, n).sort_values(keys).reset_index(drop=True)
            pd.testing.assert_frame_equal(
                incremental[n].sort_values(keys).reset_index(drop=True),
                full,
                check_exact=False,
                rtol=1e-12,
                obj=f"gold.{n}: the incremental result vs a full rebuild",
            )


# ---- FMP's own series as cross-checks ---------------------------------------------------------------------------


def test_total_return_close_tracks_fmp_dividend_adjusted_series(built: Built) -> None:
    """Within one fetch FMP's /dividend-adjusted bars share one basis, so Gold's tr_close / FMP's close is constant
    there (up to FMP's rounding); a dividend or split handled differently would bend the ratio at its date."""
    fmp = built.silver["fmp_price_eod_total_return"]
    assert len(fmp), "no /dividend-adjusted rows in Silver"
    both = built.gold["fact_price_daily"].merge(
        fmp[["ticker", "date", "close", "bronze_file_id"]], on=["ticker", "date"], suffixes=("", "_fmp")
    )
    both["ratio"] = both["tr_close"] / both["close_fmp"]
    spread = both.groupby(["ticker", "bronze_file_id"])["ratio"].agg(lambda r: r.max() / r.min() - 1)
    assert (spread < 1e-4).all(), (
        f"tr_close / FMP dividend-adjusted close varies within one fetch:\n{spread[spread >= 1e-4]}"
    )


def test_market_cap_is_near_fmp_historical_market_cap(built: Built) -> None:
    fmp = built.silver["fmp_market_cap"]
    assert len(fmp), "no historical-market-capitalization rows in Silver"
    both = built.gold["fact_valuation_daily"].merge(
        fmp[["ticker", "date", "market_cap"]], on=["ticker", "date"], suffixes=("", "_fmp")
    )
    ratio = both["market_cap"] / both["market_cap_fmp"]
    far = both[(ratio - 1).abs() > 0.05]
    assert far.empty, f"Gold market cap more than 5% away from FMP's on {len(far)} row(s):\n{far.head(8)}"


# ---- the same history on a production clock: fetch bases that differ from today's ----------------------------


def rebuild_facts(conn: duckdb.DuckDBPyConnection) -> None:
    for name in FACTS:
        build(conn, name, "oracle-rebuild", full=True)


def restore_first_fetch(conn: duckdb.DuckDBPyConnection, ticker: str, between: dt.datetime) -> None:
    """Put back the ticker's statements and ratios as the first run fetched them (before the split), as if the
    second run had not refetched them (it refetches only what is due)."""
    for table in ("fmp_income_statement", "fmp_ratios"):
        conn.execute(f"DELETE FROM silver.{table} WHERE ticker = ?", [ticker])
        conn.execute(
            f"""
            INSERT INTO silver.{table} BY NAME
            SELECT * EXCLUDE (valid_from, valid_to) FROM silver.{table}__history
            WHERE ticker = ? AND fetched_at < ?
            QUALIFY row_number() OVER (PARTITION BY ticker, date, period ORDER BY valid_from DESC) = 1
        """,
            [ticker, between],
        )


def replay_on_production_clock(conn: duckdb.DuckDBPyConnection, between: dt.datetime) -> None:
    """Make Silver what a user would hold had the two runs happened on their as-of days, without the
    as-traded endpoint, and had the second run not refetched NVDA's statements after the split.

    - fetched_at: the test ran both runs today, so every row's fetch day is today and every fetch basis equals
      the current one. Here each row gets the evening of its run's as-of day: NVDA's /full rows and dividends
      fetched by the first run are on the pre-split basis (as the sample source served them) and now say so.
    - no /non-split-adjusted (a plan without it): Gold must derive as-traded bars from /full and the splits.
    - NVDA's income statement and ratios as the first run fetched them (pre-split share counts, EPS, BVPS).
    - `dividend` NULL everywhere: Gold must rebuild the declared amount from adj_dividend and its fetch basis.
    """
    first, second = f"{BEFORE_SPLIT} 21:00:00", f"{AS_OF} 21:00:00"
    restore_first_fetch(conn, "NVDA", between)
    tables = [
        r[0]
        for r in conn.execute("""
        SELECT DISTINCT table_name FROM information_schema.columns
        WHERE table_schema = 'silver' AND column_name = 'fetched_at' AND NOT table_name LIKE '%__history'
    """).fetchall()
    ]
    for table in tables:
        conn.execute(
            f"""UPDATE silver.{table} SET fetched_at = CASE WHEN fetched_at < ? THEN TIMESTAMP '{first}'
                                                                ELSE TIMESTAMP '{second}' END""",
            [between],
        )
    conn.execute("DELETE FROM silver.fmp_price_eod_as_traded")
    conn.execute("UPDATE silver.fmp_dividends SET dividend = NULL")


def test_gold_on_a_production_clock_matches_oracle_and_the_real_numbers(built: Built, tmp_path: Path) -> None:
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(built.warehouse, copy)
    with duckdb.connect(str(copy)) as conn:
        replay_on_production_clock(conn, built.between_runs)
        stale = conn.execute("""SELECT count(*) FROM silver.fmp_price_eod WHERE ticker = 'NVDA'
                                AND fetched_at < TIMESTAMP '2024-06-10'""").fetchone()[0]
        assert stale > 1000, "NVDA's /full history fetched before the split should still be in Silver"
        rebuild_facts(conn)
        silver = load_silver(conn)
        gold = {n: load_gold(conn, n) for n in FACTS}
        types = {n: gold_columns(conn, n) for n in FACTS}
    expected = compute_oracle(silver, types)
    replayed = [n for n in TABLES if n != "fact_macro_daily"]  # the replay changes no macro input
    problems = [line for n in replayed for line in mismatches(n, getattr(expected, TABLES[n][0]), gold[n], types[n])]
    assert not problems, "\n".join(problems)

    # the derived as-traded bars, the re-based series and the share basis agree with the real numbers
    def joined(name: str, keys: list[str]) -> pd.DataFrame:
        return built.gold[name].merge(gold[name], on=keys, suffixes=("", "_replayed"))

    prices = joined("fact_price_daily", ["ticker", "date"])
    assert (gold["fact_price_daily"]["price_source"] == "derived_from_full").all()
    for col, rel in (
        ("open", 1e-3),
        ("high", 1e-3),
        ("low", 1e-3),
        ("close", 1e-3),
        ("split_adj_close", 1e-3),
        ("volume", 1e-3),
        ("total_return_factor", 1e-4),
        ("sma_200", 1e-3),
        ("high_52w", 1e-3),
    ):
        a, b = prices[col].astype(float), prices[f"{col}_replayed"].astype(float)
        bad = prices[~np.isclose(b, a, rtol=rel, equal_nan=True)]
        assert bad.empty, (
            f"fact_price_daily.{col} rebuilt from /full and adj_dividend differs from the as-traded "
            f"truth on {len(bad)} row(s):\n{bad[['ticker', 'date', col, col + '_replayed']].head(8)}"
        )
    fund = joined("fact_fundamentals_quarterly", ["ticker", "period_end", "period"])
    # EPS is served rounded to cents on each basis: up to half a cent apart per quarter
    for col, rel, atol in (
        ("weighted_average_shs_out", 1e-6, 0),
        ("weighted_average_shs_out_dil", 1e-6, 0),
        ("book_value_per_share", 1e-3, 0.006),
        ("eps", 0, 0.0051),
        ("eps_ttm", 0, 0.021),
    ):
        a, b = fund[col].astype(float), fund[f"{col}_replayed"].astype(float)
        bad = fund[~np.isclose(b, a, rtol=rel, atol=atol, equal_nan=True)]
        assert bad.empty, (
            f"fact_fundamentals_quarterly.{col} from statements fetched before the split differs from "
            f"the refetched truth on {len(bad)} row(s):\n"
            f"{bad[['ticker', 'period_end', col, col + '_replayed']].head(8)}"
        )
    val = joined("fact_valuation_daily", ["ticker", "date"])  # eps_ttm: checked on the current basis above
    for col, rel in (
        ("shares_outstanding", 1e-6),
        ("market_cap", 1e-3),
        ("pb", 1e-3),
        ("ps_ttm", 1e-3),
        ("dividends_ttm_per_share", 1e-4),
        ("fcf_yield", 1e-3),
    ):
        a, b = val[col].astype(float), val[f"{col}_replayed"].astype(float)
        bad = val[~np.isclose(b, a, rtol=rel, equal_nan=True)]
        assert bad.empty, (
            f"fact_valuation_daily.{col} from statements fetched before the split differs from the "
            f"refetched truth on {len(bad)} row(s):\n{bad[['ticker', 'date', col, col + '_replayed']].head(8)}"
        )


def test_statements_fetched_before_a_split_by_an_earlier_as_of_run_keep_market_cap(
    built: Built, tmp_path: Path
) -> None:
    """Runs as of 2024-06-05 and then 2024-06-11 (statements are not due again after 6 days) leave NVDA's statements
    on the pre-split share basis, served by the stand-in as of 2024-06-05, while fetched_at says today (after the
    split). That is this Silver state; the share basis must come from the day the source answered (the planning
    day in the ledger), and Gold's market cap must still match FMP's within a few percent (it was 10x too low)."""
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(built.warehouse, copy)
    with duckdb.connect(str(copy)) as conn:
        restore_first_fetch(conn, "NVDA", built.between_runs)
        rebuild_facts(conn)
        val = load_gold(conn, "fact_valuation_daily")
    fmp = built.silver["fmp_market_cap"]
    both = val[val["ticker"] == "NVDA"].merge(
        fmp[["ticker", "date", "market_cap"]], on=["ticker", "date"], suffixes=("", "_fmp")
    )
    ratio = both["market_cap"] / both["market_cap_fmp"]
    far = both[(ratio - 1).abs() > 0.05]
    assert far.empty, (
        f"NVDA market cap from statements fetched before the split is off FMP's on {len(far)} of "
        f"{len(both)} day(s), e.g. x{ratio.median():.3f}:\n"
        f"{far[['date', 'close', 'shares_outstanding', 'market_cap', 'market_cap_fmp']].tail(4)}"
    )


# ---- branches the sample does not reach, made in a copy of Silver -----------------------------------------------

STATEMENT_TABLES = ("fmp_income_statement", "fmp_balance_sheet", "fmp_cash_flow")


def test_filing_and_dividend_edge_cases_match_oracle(built: Built, tmp_path: Path) -> None:
    """A late filing of an older quarter, a statement without acceptance time, acceptances at 16:00:00 and
    16:00:01, one accepted after the last close in the data, and dividends that are monthly, semi-annual, special
    or of unknown frequency."""
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(built.warehouse, copy)
    with duckdb.connect(str(copy)) as conn:
        for table in STATEMENT_TABLES:
            conn.execute(f"""UPDATE silver.{table} SET accepted_date = TIMESTAMP '2024-02-01 10:00:00',
                             filing_date = DATE '2024-02-01' WHERE ticker = 'NVDA' AND date = '2023-09-30'""")
            conn.execute(
                f"UPDATE silver.{table} SET accepted_date = NULL WHERE ticker = 'SNAP' AND date = '2023-12-31'"
            )
            conn.execute(f"""UPDATE silver.{table} SET accepted_date = TIMESTAMP '{AS_OF} 17:30:00',
                             filing_date = DATE '{AS_OF}' WHERE ticker = 'KO' AND date = '2024-03-31'""")
            # exactly at the close counts for that close; a second later does not (2023-08-14 is a Monday)
            conn.execute(f"""UPDATE silver.{table} SET accepted_date = TIMESTAMP '2023-08-14 16:00:00'
                             WHERE ticker = 'KO' AND date = '2023-06-30'""")
            conn.execute(f"""UPDATE silver.{table} SET accepted_date = TIMESTAMP '2023-08-08 16:00:01'
                             WHERE ticker = 'NVDA' AND date = '2023-06-30'""")
        conn.execute("UPDATE silver.fmp_dividends SET frequency = NULL WHERE ticker = 'AAPL'")
        conn.execute(
            "UPDATE silver.fmp_dividends SET frequency = 'Monthly' WHERE ticker = 'KO' AND date >= '2023-01-01'"
        )
        conn.execute("UPDATE silver.fmp_dividends SET frequency = 'Semi-Annual' WHERE ticker = 'GE'")
        conn.execute("""UPDATE silver.fmp_dividends SET frequency = 'Special' WHERE ticker = 'NVDA'
                        AND date = (SELECT max(date) FROM silver.fmp_dividends
                                    WHERE ticker = 'NVDA' AND date < '2024-06-01')""")
        rebuild_facts(conn)
        silver = load_silver(conn)
        gold = {n: load_gold(conn, n) for n in FACTS}
        types = {n: gold_columns(conn, n) for n in FACTS}
    q = gold["fact_fundamentals_quarterly"].set_index(["ticker", "period_end"])
    val = gold["fact_valuation_daily"].set_index(["ticker", "date"])
    # the late Q3 never replaces the Q4 that was usable before it
    assert val.loc[("NVDA", pd.Timestamp("2024-02-01")), "statement_period_end"] == pd.Timestamp("2023-12-31")
    assert not (val.loc["NVDA"]["statement_period_end"] == pd.Timestamp("2023-09-30")).any()
    # no acceptance time: the first trading day after the filing date
    snap_days = val.loc["SNAP"].index.sort_values()  # a table has no row order: a build appends what it writes
    filed = q.loc[("SNAP", pd.Timestamp("2023-12-31")), "filing_date"]
    assert q.loc[("SNAP", pd.Timestamp("2023-12-31")), "usable_from"] == snap_days[snap_days > filed][0]
    assert q.loc[("KO", pd.Timestamp("2023-06-30")), "usable_from"] == pd.Timestamp("2023-08-14")
    assert q.loc[("NVDA", pd.Timestamp("2023-06-30")), "usable_from"] == pd.Timestamp("2023-08-09")
    # accepted after the last close in the data (a Friday): usable from the next weekday, not used yet
    assert q.loc[("KO", pd.Timestamp("2024-03-31")), "usable_from"] == pd.Timestamp("2024-06-17")
    assert val.loc[("KO", pd.Timestamp(AS_OF)), "statement_period_end"] == pd.Timestamp("2023-12-31")

    expected = compute_oracle(silver, types)
    checked = ["fact_fundamentals_quarterly", "fact_valuation_daily"]
    problems = [line for n in checked for line in mismatches(n, getattr(expected, TABLES[n][0]), gold[n], types[n])]
    assert not problems, "\n".join(problems)


# ---- `pipeline run` against the fake FMP server ------------------------------------------------------------------


def test_pipeline_run_exits_0_with_splits_inside_the_fetched_history(built: Built) -> None:
    """The fixture's second run is a plain `pipeline run` (subprocess, real HTTP to the fake FMP); it exited 0."""
    text = built.logs[AS_OF]
    assert "Traceback" not in text, tail(text)
    inside = [(t, d.date()) for t, d, _r in split_days(built)]
    assert len(inside) >= 2, f"fewer than two splits inside the fetched price history: {inside}"
    assert "FAILED" not in text, tail(text)
