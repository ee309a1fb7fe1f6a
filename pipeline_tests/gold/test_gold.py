"""Gold layer: each metric against an independent pandas computation, point in time, incremental == full.

The Silver fixture is built by hand (tables from the keymap through `ensure_table`, rows from pandas) with
ledger rows in ops.file_ingestions so that watermarks exist. It is built once per module into a template
DuckDB file and copied for each test, so every test gets its own warehouse cheaply.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipeline.gold import build as gold
from pipeline.gold import quality
from pipeline.gold.by_date import history_marks, plan_by_date
from pipeline.keymap.loader import load_keymap
from pipeline.ops.gold_builds import last_build
from pipeline.settings import PROJECT_ROOT
from pipeline.silver.schema import ensure_table
from pipeline.warehouse.connection import Warehouse
from pipeline.warehouse.dialect import next_id_sql

KEYMAP = PROJECT_ROOT / "dataset_keymap.yaml"
FETCHED = dt.datetime(2024, 3, 1, 12, 0)
SPLIT_DATE = dt.date(2023, 6, 15)  # AAA 2:1, a Thursday
TICKERS = ("AAA", "BBB", "CCC")

TABLE_IDENTITY = {  # silver table -> (domain, dataset, per_ticker)
    "fmp_stock_list": ("market", "stock-list", False),
    "fmp_company_profile": ("company", "profile", True),
    "fmp_price_eod_as_traded": ("prices", "historical-price-eod", True),
    "fmp_price_eod": ("prices", "historical-price-eod", True),
    "fmp_splits": ("company", "splits", True),
    "fmp_dividends": ("company", "dividends", True),
    "fmp_income_statement": ("fundamentals", "income-statement", True),
    "fmp_balance_sheet": ("fundamentals", "balance-sheet-statement", True),
    "fmp_cash_flow": ("fundamentals", "cash-flow-statement", True),
    "fmp_key_metrics": ("fundamentals", "key-metrics", True),
    "fmp_ratios": ("fundamentals", "ratios", True),
    "fmp_treasury_rates": ("market", "treasury-rates", False),
    "fmp_economic_indicator": ("economics", "economic-indicators", False),
}


# ---- fixture data ---------------------------------------------------------------------------------------


def trading_days(n: int = 300) -> list[dt.date]:
    """Weekdays from 2023-01-02, with a few 'holidays' removed so calendar and trading windows differ."""
    days = pd.bdate_range("2023-01-02", periods=n + n // 30 + 2).date.tolist()
    return [d for i, d in enumerate(days) if i % 31 != 17][:n]


def make_prices(ticker: str, seed: int, start: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = trading_days()
    base = start * np.exp(np.cumsum(rng.normal(0.0003, 0.015, len(days))))
    close = base.copy()
    if ticker == "AAA":
        close = np.where(np.array(days) >= SPLIT_DATE, base / 2, base)
    open_ = close * (1 + rng.normal(0, 0.005, len(days)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, len(days)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, len(days)))
    return pd.DataFrame(
        {
            "ticker": ticker,
            "date": days,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(10_000, 1_000_000, len(days)),
        }
    )


def make_dividends() -> pd.DataFrame:
    rows = [("AAA", d, 0.5) for d in ("2023-02-10", "2023-05-10")]
    rows += [("AAA", d, 0.25) for d in ("2023-08-10", "2023-11-10", "2024-02-09", "2024-05-10")]  # last: future
    rows += [("BBB", d, 0.3) for d in ("2023-03-15", "2023-06-15", "2023-09-16", "2023-12-15")]  # 09-16: Saturday
    df = pd.DataFrame(rows, columns=["ticker", "date", "dividend"])
    df["date"] = pd.to_datetime(df["date"]).dt.date
    df["adj_dividend"] = df["dividend"]
    return df


def quarter_ends(first: str = "2021-03-31", n: int = 12) -> list[dt.date]:
    return pd.date_range(first, periods=n, freq="QE").date.tolist()


def make_statements() -> dict[str, pd.DataFrame]:
    income, balance, cash = [], [], []
    for ticker, seed in (("AAA", 1), ("BBB", 2)):
        rng = np.random.default_rng(seed + 100)
        ends = quarter_ends()
        if ticker == "BBB":
            ends = [e for e in ends if e != dt.date(2022, 6, 30)]  # a missing quarter breaks TTM
        rows = [(e, f"Q{(e.month - 1) // 3 + 1}") for e in ends]
        rows += [(dt.date(y, 12, 31), "FY") for y in (2021, 2022, 2023)]
        for end, period in rows:
            scale = 4 if period == "FY" else 1
            filing = end + dt.timedelta(days=35 if period != "FY" else 60)
            # FMP restates share counts onto the basis of the fetch day (FETCHED, after AAA's 2:1 split)
            shares = 1_000_000 if ticker == "BBB" else 2_000_000
            revenue = float(rng.uniform(900, 1100)) * 1000 * scale
            net_income = revenue * float(rng.uniform(0.05, 0.2))
            common = {
                "ticker": ticker,
                "date": end,
                "period": period,
                "filing_date": filing,
                "accepted_date": dt.datetime.combine(filing, dt.time(16, 5)),
                "fiscal_year": end.year,
                "reported_currency": "USD",
            }
            income.append(
                {
                    **common,
                    "revenue": revenue,
                    "gross_profit": revenue * 0.4,
                    "operating_income": revenue * 0.25,
                    "net_income": net_income,
                    "ebitda": revenue * 0.3,
                    "eps": net_income / shares,
                    "eps_diluted": net_income / shares / 1.01,
                    "weighted_average_shs_out": shares,
                    "weighted_average_shs_out_dil": int(shares * 1.01),
                }
            )
            liabilities = float(rng.uniform(2e6, 3e6))
            equity = float(rng.uniform(1e6, 2e6))
            balance.append(
                {
                    **common,
                    "total_assets": liabilities + equity,
                    "total_liabilities": liabilities,
                    "total_equity": equity,
                    "total_stockholders_equity": equity,
                    "cash_and_cash_equivalents": 3e5,
                    "total_debt": 8e5,
                    "net_debt": 5e5,
                }
            )
            ocf = revenue * 0.2
            cash.append(
                {
                    **common,
                    "operating_cash_flow": ocf,
                    "capital_expenditure": -revenue * 0.05,
                    "free_cash_flow": ocf - revenue * 0.05,
                    "net_dividends_paid": -1e4 * scale,
                }
            )
    return {
        "fmp_income_statement": pd.DataFrame(income),
        "fmp_balance_sheet": pd.DataFrame(balance),
        "fmp_cash_flow": pd.DataFrame(cash),
    }


def make_profiles() -> tuple[pd.DataFrame, pd.DataFrame]:
    base = {
        "exchange": "NASDAQ",
        "industry": "Software",
        "country": "US",
        "currency": "USD",
        "is_etf": False,
        "is_actively_trading": True,
        "ipo_date": dt.date(2000, 1, 1),
    }
    t = dt.datetime
    history = [
        {
            "ticker": "AAA",
            "company_name": "Alpha",
            "sector": "Technology",
            "price": 10.0,
            "valid_from": t(2023, 1, 1),
            "valid_to": t(2023, 2, 1),
        },
        {
            "ticker": "AAA",
            "company_name": "Alpha",
            "sector": "Technology",
            "price": 11.0,  # price only
            "valid_from": t(2023, 2, 1),
            "valid_to": t(2023, 3, 1),
        },
        {
            "ticker": "AAA",
            "company_name": "Alpha Inc",
            "sector": "Communication",
            "price": 12.0,
            "valid_from": t(2023, 3, 1),
            "valid_to": None,
        },
        {
            "ticker": "BBB",
            "company_name": "Beta",
            "sector": "Energy",
            "price": 20.0,
            "valid_from": t(2023, 1, 5),
            "valid_to": None,
        },
    ]
    history = pd.DataFrame([{**base, **h} for h in history])
    current = history[history["valid_to"].isna()].drop(columns=["valid_from", "valid_to"])
    ccc = {**base, "ticker": "CCC", "company_name": "Gamma", "sector": "Utilities", "price": 5.0}
    current = pd.concat([current, pd.DataFrame([ccc])], ignore_index=True)
    return current, history


def make_treasury() -> pd.DataFrame:
    days = trading_days()[::5]
    return pd.DataFrame(
        {
            "date": days,
            "month3": np.linspace(4.5, 5.4, len(days)),
            "year10": np.linspace(3.5, 4.4, len(days)),
            "year30": 4.0,
        }
    )


def make_indicators() -> pd.DataFrame:
    months = pd.date_range("2022-06-01", "2024-03-01", freq="MS").date
    rows = [("CPI", m, 300 + i) for i, m in enumerate(months)]
    rows += [
        ("GDP", m, 25000 + 100 * i) for i, m in enumerate(pd.date_range("2022-04-01", "2024-01-01", freq="QS").date)
    ]
    rows += [
        ("realGDP", m, 22000 + 50 * i) for i, m in enumerate(pd.date_range("2022-04-01", "2024-01-01", freq="QS").date)
    ]
    return pd.DataFrame(rows, columns=["name", "date", "value"])


FULL_ONLY_BEFORE = dt.date(2023, 3, 1)  # AAA's bars before this exist only in /full (split-adjusted at FETCHED)


def silver_frames() -> dict[str, pd.DataFrame]:
    prices = pd.concat(
        [make_prices("AAA", 1, 100), make_prices("BBB", 2, 50), make_prices("CCC", 3, 20)], ignore_index=True
    )
    full_only = (prices.ticker == "AAA") & (prices.date < FULL_ONLY_BEFORE)
    full = prices[full_only].copy()
    for col in ("open", "high", "low", "close"):
        full[col] = full[col] / 2  # fetched after the 2:1 split: /full shows them re-based
    full["volume"] = full["volume"] * 2
    profile, history = make_profiles()
    frames = {
        "fmp_stock_list": pd.DataFrame(
            {"symbol": ["AAA", "BBB", "CCC", "DDD"], "company_name": ["Alpha", "Beta", "Gamma", "Delta"]}
        ),
        "fmp_company_profile": profile,
        "fmp_company_profile__history": history,
        "fmp_price_eod_as_traded": prices[~full_only].reset_index(drop=True),
        "fmp_price_eod": full.reset_index(drop=True),
        "fmp_splits": pd.DataFrame({"ticker": ["AAA"], "date": [SPLIT_DATE], "numerator": [2.0], "denominator": [1.0]}),
        "fmp_dividends": make_dividends(),
        "fmp_treasury_rates": make_treasury(),
        "fmp_economic_indicator": make_indicators(),
        "fmp_key_metrics": pd.DataFrame(
            {"ticker": ["AAA"], "date": [dt.date(2023, 12, 31)], "period": ["Q4"], "return_on_equity": [0.12]}
        ),
        "fmp_ratios": pd.DataFrame(
            {"ticker": ["AAA"], "date": [dt.date(2023, 12, 31)], "period": ["Q4"], "net_profit_margin": [0.1]}
        ),
    }
    frames.update(make_statements())
    return frames


def build_all(conn: duckdb.DuckDBPyConnection, run_id: str, *, full: bool = False) -> list[gold.GoldBuildResult]:
    """Build every Gold table in GOLD_ASSETS order, as the Gold assets do one by one."""
    return [gold.build(conn, n, run_id, full=full) for n in gold.GOLD_ASSETS]


# ---- warehouse helpers ----------------------------------------------------------------------------------

_file_counter = [0]


def write_silver(conn: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame, *, replace_tickers=None) -> None:
    """Insert rows with lineage columns; `replace_tickers` deletes those tickers' rows first."""
    df = df.copy()
    for col, value in (("bronze_file_id", "f"), ("run_id", "r"), ("fetched_at", FETCHED), ("promoted_at", FETCHED)):
        if col not in df.columns:
            df[col] = value
    if replace_tickers is not None:
        conn.execute(f"DELETE FROM silver.{table} WHERE list_contains(?, ticker)", [list(replace_tickers)]).fetchall()
    conn.register("frame", df)
    conn.execute(f"INSERT INTO silver.{table} BY NAME SELECT * FROM frame")
    conn.unregister("frame")


def ledger(conn: duckdb.DuckDBPyConnection, table: str, ticker: str, cov_from, cov_to, discriminator: str = "") -> None:
    """One promoted Bronze file for (table, ticker), so its watermark exists (or moves)."""
    domain, dataset, _ = TABLE_IDENTITY[table]
    if table == "fmp_price_eod_as_traded":
        discriminator = "non-split-adjusted"
    _file_counter[0] += 1
    n = _file_counter[0]
    next_id = next_id_sql(conn, "ops.file_ingestion_seq", "ops.file_ingestions", "ingestion_id")
    conn.execute(
        f"""
        INSERT INTO ops.file_ingestions (ingestion_id, run_id, file_id, domain, source, dataset, discriminator, ticker,
            bronze_path, coverage_from, coverage_to, fetched_at, can_promote, silver_table, silver_status)
        VALUES ({next_id}, 'r', ?, ?, 'fmp', ?, ?, ?, ?, ?, ?, ?, true, ?, 'promoted')
    """,
        [
            f"file-{n}-{table}-{ticker}-{discriminator}",
            domain,
            dataset,
            discriminator,
            ticker,
            f"x/{n}.json",
            cov_from,
            cov_to,
            FETCHED,
            table,
        ],
    )


def seed_ledger(conn: duckdb.DuckDBPyConnection, frames: dict[str, pd.DataFrame]) -> None:
    for table, (_, _, per_ticker) in TABLE_IDENTITY.items():
        df = frames[table]
        if table == "fmp_economic_indicator":
            for name, part in df.groupby("name"):
                ledger(conn, table, "", part["date"].min(), part["date"].max(), discriminator=str(name))
        elif per_ticker:
            for ticker, part in df.groupby("ticker"):
                dates = part["date"] if "date" in part else pd.Series([FETCHED.date()])
                ledger(conn, table, str(ticker), dates.min(), dates.max())
        else:
            dates = df["date"] if "date" in df else pd.Series([FETCHED.date()])
            ledger(conn, table, "", dates.min(), dates.max())


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gold_template") / "warehouse.duckdb"
    frames = silver_frames()
    specs = load_keymap(KEYMAP).tables()
    with Warehouse(path).transaction() as conn:
        for table in specs:
            ensure_table(conn, specs[table])
        for table, df in frames.items():
            write_silver(conn, table, df)
        seed_ledger(conn, frames)
    return path


@pytest.fixture
def wh(template, tmp_path) -> Warehouse:
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(template, path)
    return Warehouse(path)


@pytest.fixture(scope="module")
def built(template, tmp_path_factory) -> Path:
    """A warehouse with every Gold table built in full (read-only use)."""
    path = tmp_path_factory.mktemp("gold_built") / "warehouse.duckdb"
    shutil.copy(template, path)
    with Warehouse(path).connect() as conn:
        build_all(conn, "run-1")
    return path


@pytest.fixture
def built_conn(built):
    conn = duckdb.connect(str(built), read_only=True)
    yield conn
    conn.close()


def table(conn, name: str, order: str) -> pd.DataFrame:
    """A Gold table as a DataFrame, DATE columns as datetime.date (like the fixture frames)."""
    cur = conn.execute(f"SELECT * FROM gold.{name} ORDER BY {order}")
    date_cols = [d[0] for d in cur.description if str(d[1]) == "DATE"]
    df = cur.df()
    for col in date_cols:
        df[col] = [None if pd.isna(v) else v.date() for v in df[col]]
    return df


# ---- independent pandas references ----------------------------------------------------------------------


def as_traded_prices(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The as-traded bars: the /non-split-adjusted rows, plus /full rows put back on their day's basis."""
    full = frames["fmp_price_eod"].copy()
    for col in ("open", "high", "low", "close"):
        full[col] = full[col] * 2  # fetched after AAA's 2:1 split, dated before it
    full["volume"] = (full["volume"] / 2).round().astype("int64")
    both = pd.concat([frames["fmp_price_eod_as_traded"], full], ignore_index=True)
    return both.sort_values(["ticker", "date"]).reset_index(drop=True)


def cum(frames: dict[str, pd.DataFrame], ticker: str, day: dt.date) -> float:
    """Shares per original share after the splits effective on or before `day`."""
    splits = frames["fmp_splits"]
    return math.prod(
        s.numerator / s.denominator for _, s in splits[splits.ticker == ticker].iterrows() if s.date <= day
    )


def expected_prices(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    out = []
    divs = frames["fmp_dividends"]
    for ticker, p in as_traded_prices(frames).groupby("ticker"):
        p = p.sort_values("date").reset_index(drop=True)
        last = p["date"].max()
        cum_l = cum(frames, ticker, last)
        p["split_factor"] = [cum(frames, ticker, d) / cum_l for d in p["date"]]
        for col in ("open", "high", "low", "close"):
            p[f"split_adj_{col}"] = p[col] * p["split_factor"]
        factors: list[tuple[dt.date, float]] = []
        for _, d in divs[divs.ticker == ticker].iterrows():
            before = p[p.date < d.date]
            if d.date <= last and len(before):
                amount = d.dividend * cum(frames, ticker, d.date) / cum_l
                factors.append((d.date, 1 - amount / before["split_adj_close"].iloc[-1]))
        p["total_return_factor"] = [math.prod(f for e, f in factors if e > day) for day in p["date"]]
        p["tr_close"] = p["split_adj_close"] * p["total_return_factor"]
        p["return_1d"] = p["split_adj_close"].pct_change()
        p["total_return_1d"] = p["tr_close"].pct_change()
        p["log_return_1d"] = np.log(p["split_adj_close"] / p["split_adj_close"].shift())
        for n in (20, 50, 200):
            p[f"sma_{n}"] = p["split_adj_close"].rolling(n, min_periods=n).mean()
        full_year = np.array([p["date"].iloc[0] <= d - dt.timedelta(days=364) for d in p["date"]])
        by_date = p.set_index(pd.to_datetime(p["date"]))
        p["high_52w"] = np.where(full_year, by_date["split_adj_high"].rolling("365D").max().to_numpy(), np.nan)
        p["low_52w"] = np.where(full_year, by_date["split_adj_low"].rolling("365D").min().to_numpy(), np.nan)
        days_per_year = np.where(full_year, by_date["close"].rolling("365D").count().to_numpy(), np.nan)
        p["trading_days_per_year"] = days_per_year
        p["realized_vol_20d"] = p["log_return_1d"].rolling(20, min_periods=20).std() * np.sqrt(days_per_year)
        out.append(p)
    return pd.concat(out).sort_values(["ticker", "date"]).reset_index(drop=True)


def expected_quarterly(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    inc, cf = frames["fmp_income_statement"], frames["fmp_cash_flow"]
    q = inc[inc.period != "FY"].merge(
        cf[cf.period != "FY"][["ticker", "date", "period", "free_cash_flow", "net_dividends_paid"]],
        on=["ticker", "date", "period"],
    )
    out = []
    for _, g in q.groupby("ticker"):
        g = g.sort_values("date").reset_index(drop=True)
        span = (pd.to_datetime(g["date"]) - pd.to_datetime(g["date"]).shift(3)).dt.days
        ok = span <= 300
        for col in ("revenue", "net_income", "ebitda", "free_cash_flow", "net_dividends_paid"):
            g[f"{col}_ttm"] = g[col].rolling(4).sum().where(ok)
        out.append(g)
    return (
        pd.concat(out)
        .rename(columns={"date": "period_end"})
        .sort_values(["ticker", "period_end"])
        .reset_index(drop=True)
    )


@functools.cache
def nyse_sessions() -> list[dt.date]:
    """NYSE sessions straight from exchange-calendars (not through the pipeline's calendar module)."""
    import exchange_calendars

    return list(exchange_calendars.get_calendar("XNYS", start="2015-01-01", end="2026-12-31").sessions.date)


def expected_valuation(frames: dict[str, pd.DataFrame], ticker: str) -> pd.DataFrame:
    """For each trading day: the latest quarter usable by then (first NYSE close at or after its acceptance), its
    share count put on the day's basis, and the ratios with their NULL rules."""
    q = expected_quarterly(frames)
    q = q[q.ticker == ticker]
    bal = frames["fmp_balance_sheet"]
    q = q.merge(
        bal[["ticker", "date", "period", "total_stockholders_equity", "net_debt"]].rename(
            columns={"date": "period_end"}
        ),
        on=["ticker", "period_end", "period"],
    )
    prices = as_traded_prices(frames)
    prices = prices[prices.ticker == ticker].sort_values("date").reset_index(drop=True)
    cum_l = cum(frames, ticker, prices["date"].max())
    fetch_day = FETCHED.date()
    sessions = nyse_sessions()  # the exchange calendar decides, not the fixture's price days
    closes = [dt.datetime.combine(d, dt.time(16)) for d in sessions]
    q = q.assign(usable_from=[next((d for d, c in zip(sessions, closes) if c >= a), None) for a in q["accepted_date"]])
    q = q.sort_values("period_end")
    q["eps_ttm"] = (
        (q["eps"] * cum(frames, ticker, fetch_day) / cum_l)
        .rolling(4)
        .sum()
        .where((pd.to_datetime(q["period_end"]) - pd.to_datetime(q["period_end"]).shift(3)).dt.days <= 300)
    )
    divs = frames["fmp_dividends"]
    divs = divs[divs.ticker == ticker].sort_values("date").reset_index(drop=True)

    rows = []
    for _, p in prices.iterrows():
        usable = q[q.usable_from.notna() & (q.usable_from <= p.date)]
        row = {"date": p.date, "close": p.close}
        basis = cum(frames, ticker, p.date)
        if len(usable):
            s = usable.sort_values(["usable_from", "period_end"]).iloc[-1]
            shares = s.weighted_average_shs_out * basis / cum(frames, ticker, fetch_day)
            mcap = p.close * shares
            eps = s.eps_ttm * cum_l / basis
            row.update(
                statement_period_end=s.period_end,
                statement_usable_from=s.usable_from,
                shares_outstanding=shares,
                market_cap=mcap,
                eps_ttm=eps,
                pe_ttm=p.close / eps if eps > 0 else np.nan,
                pb=mcap / s.total_stockholders_equity if s.total_stockholders_equity > 0 else np.nan,
                ps_ttm=mcap / s.revenue_ttm if s.revenue_ttm > 0 else np.nan,
                ev_to_ebitda_ttm=(mcap + s.net_debt) / s.ebitda_ttm if s.ebitda_ttm > 0 else np.nan,
                fcf_yield=s.free_cash_flow_ttm / mcap if mcap > 0 else np.nan,
            )
        paid = divs[divs.date <= p.date].tail(4)  # no frequency: 4 payments a year
        paid = paid[[(p.date - d).days < 365 + 182 / 4 for d in paid.date]]
        per_share = sum(d.dividend * cum(frames, ticker, d.date) for _, d in paid.iterrows()) / basis
        row["dividends_ttm_per_share"] = per_share
        row["dividend_yield_ttm"] = per_share / p.close
        rows.append(row)
    return pd.DataFrame(rows)


def assert_close(actual: pd.Series, expected: pd.Series, name: str) -> None:
    a, e = actual.to_numpy(dtype=float), expected.to_numpy(dtype=float)
    assert np.array_equal(np.isnan(a), np.isnan(e)), f"{name}: NULL pattern differs"
    np.testing.assert_allclose(a[~np.isnan(a)], e[~np.isnan(e)], rtol=1e-9, err_msg=name)


# ---- metric tests ---------------------------------------------------------------------------------------


def test_prices_match_pandas(built_conn):
    got = table(built_conn, "fact_price_daily", "ticker, date")
    want = expected_prices(silver_frames())
    assert len(got) == len(want) == 900
    for col in (
        "open",
        "close",
        "volume",
        "split_factor",
        "split_adj_close",
        "split_adj_high",
        "total_return_factor",
        "tr_close",
        "return_1d",
        "total_return_1d",
        "log_return_1d",
        "sma_20",
        "sma_50",
        "sma_200",
        "high_52w",
        "low_52w",
        "trading_days_per_year",
        "realized_vol_20d",
    ):
        assert_close(got[col], want[col], col)
    aaa = got[got.ticker == "AAA"].set_index("date")
    assert aaa["sma_200"].notna().sum() == 300 - 199
    # bars before FULL_ONLY_BEFORE came from /full, re-based after the split: put back as traded
    assert set(aaa.loc[: FULL_ONLY_BEFORE - dt.timedelta(days=1), "price_source"]) == {"derived_from_full"}
    assert set(aaa.loc[FULL_ONLY_BEFORE:, "price_source"]) == {"as_traded"}
    # the split halves the traded price but not the split-adjusted one
    split_row = aaa.loc[SPLIT_DATE]
    assert split_row["close"] < 0.6 * aaa["close"].shift().loc[SPLIT_DATE]
    assert abs(split_row["return_1d"]) < 0.1
    # the future dividend (after the last price) does not adjust anything yet; no 52-week range before a full year
    assert aaa["total_return_factor"].iloc[-1] == 1.0
    assert aaa["high_52w"].isna().sum() == sum(d < dt.date(2024, 1, 1) for d in aaa.index)


def test_fundamentals_ttm_match_pandas(built_conn):
    got = table(built_conn, "fact_fundamentals_quarterly", "ticker, period_end")
    want = expected_quarterly(silver_frames())
    assert len(got) == len(want) == 23
    for col in ("revenue_ttm", "net_income_ttm", "ebitda_ttm", "free_cash_flow_ttm"):
        assert_close(got[col], want[col], col)
    assert_close(got["dividends_paid_ttm"], want["net_dividends_paid_ttm"], "dividends_paid_ttm")
    bbb = got[got.ticker == "BBB"].set_index("period_end")
    # BBB lacks 2022-06-30: the TTMs whose window spans the gap are NULL, then they come back
    assert bbb.loc[dt.date(2022, 9, 30) : dt.date(2023, 3, 31), "revenue_ttm"].isna().all()
    assert bbb.loc[dt.date(2023, 6, 30), "revenue_ttm"] > 0
    aaa = got[got.ticker == "AAA"].set_index("period_end")
    assert aaa.loc[dt.date(2023, 12, 31), "return_on_equity"] == 0.12
    annual = table(built_conn, "fact_fundamentals_annual", "ticker, period_end")
    assert len(annual) == 6 and set(annual["period"]) == {"FY"}
    assert (annual["filing_date"] == annual["period_end"] + pd.Timedelta(days=60)).all()


def test_valuation_point_in_time_matches_pandas(built_conn):
    frames = silver_frames()
    got = table(built_conn, "fact_valuation_daily", "ticker, date")
    for ticker in ("AAA", "BBB"):
        g = got[got.ticker == ticker].reset_index(drop=True)
        w = expected_valuation(frames, ticker)
        assert len(g) == len(w) == 300
        assert (g["statement_usable_from"].dropna() == w["statement_usable_from"].dropna()).all()
        for col in (
            "shares_outstanding",
            "market_cap",
            "eps_ttm",
            "pe_ttm",
            "pb",
            "ps_ttm",
            "ev_to_ebitda_ttm",
            "fcf_yield",
            "dividends_ttm_per_share",
            "dividend_yield_ttm",
        ):
            assert_close(g[col], w[col], f"{ticker}.{col}")
    aaa = got[got.ticker == "AAA"].set_index("date")
    # accepted at 16:05 on its filing day (a Friday): not usable for that day's close, usable from Monday's
    filing = dt.date(2023, 8, 4)  # 2023-06-30 + 35 days
    monday = dt.date(2023, 8, 7)
    assert aaa.loc[filing, "statement_period_end"] == dt.date(2023, 3, 31)
    assert aaa.loc[monday, "statement_period_end"] == dt.date(2023, 6, 30)
    assert aaa.loc[monday, "statement_accepted_at"] == pd.Timestamp("2023-08-04 16:05")
    assert aaa.loc[filing, "pe_ttm"] != aaa.loc[monday, "pe_ttm"]
    # market cap does not jump on the split day: shares double while the price halves
    prev = aaa.index[aaa.index < SPLIT_DATE][-1]
    assert aaa.loc[SPLIT_DATE, "shares_outstanding"] == 2 * aaa.loc[prev, "shares_outstanding"]
    assert abs(aaa.loc[SPLIT_DATE, "market_cap"] / aaa.loc[prev, "market_cap"] - 1) < 0.1
    assert aaa.loc[SPLIT_DATE, "eps_ttm"] == pytest.approx(aaa.loc[prev, "eps_ttm"] / 2)
    # no statement filed yet for CCC: prices present, valuation unknown
    assert got[got.ticker == "CCC"]["market_cap"].isna().all()


def test_usable_from_is_decided_on_the_exchange_calendar_not_on_the_warehouse_price_days(built, tmp_path):
    """Statements accepted years before the warehouse's first price day (2023-01-02 here; issue 19: AAPL's
    quarter ending 2014-06-28, accepted 2014-08-04 06:01, showed usable_from 2019-01-02, that warehouse's first
    price day). The acceptance time decides, on the NYSE calendar: the first session whose 16:00 close is at
    or after it."""
    path = tmp_path / "w.duckdb"
    shutil.copy(built, path)
    t = dt.datetime
    cases = {  # period end -> (accepted, filing, the usable day)
        dt.date(2014, 6, 28): (t(2014, 8, 4, 6, 1), dt.date(2014, 8, 4), dt.date(2014, 8, 4)),  # the example
        dt.date(2014, 3, 29): (t(2014, 4, 23, 16, 30), dt.date(2014, 4, 23), dt.date(2014, 4, 24)),  # after the close
        dt.date(2014, 9, 27): (t(2014, 12, 24, 16, 30), dt.date(2014, 12, 24), dt.date(2014, 12, 26)),  # Christmas
        dt.date(2014, 12, 27): (None, dt.date(2014, 11, 26), dt.date(2014, 11, 28)),  # no acceptance; Thanksgiving
    }
    rows = pd.DataFrame(
        [
            {
                "ticker": "AAA",
                "date": end,
                "period": f"Q{i + 1}",
                "fiscal_year": 2014,
                "accepted_date": accepted,
                "filing_date": filing,
                "revenue": 1e6,
            }
            for i, (end, (accepted, filing, _)) in enumerate(sorted(cases.items()))
        ]
    )
    with Warehouse(path).connect() as conn:
        write_silver(conn, "fmp_income_statement", rows)
        gold.build(conn, "fact_fundamentals_quarterly", "run-2", full=True)
        got = dict(
            conn.execute("""SELECT period_end, usable_from FROM gold.fact_fundamentals_quarterly
                            WHERE ticker = 'AAA' AND period_end < '2015-01-01'""").fetchall()
        )
    assert got == {end: usable for end, (_, _, usable) in cases.items()}


def test_macro_daily(built_conn):
    """Without an economic calendar each value counts as known a documented lag after its period ends."""
    from pipeline.gold.macro_releases import RELEASES

    got = table(built_conn, "fact_macro_daily", "date")
    frames = silver_frames()
    assert list(got["date"]) == sorted(set(as_traded_prices(frames)["date"]))
    for col in ("gdp", "gdp_period", "gdp_known_from", "real_gdp", "cpi", "month3", "year10"):
        assert col in got.columns
    t = frames["fmp_treasury_rates"].sort_values("date")
    cpi = frames["fmp_economic_indicator"].query("name == 'CPI'").sort_values("date").reset_index(drop=True)
    ends = list(cpi["date"].iloc[1:] - dt.timedelta(days=1)) + [dt.date(2024, 3, 31)]
    cpi["known_from"] = [e + dt.timedelta(days=RELEASES["CPI"].lag_days) for e in ends]
    for i in (0, 7, 150, 299):
        row = got.iloc[i]
        asof = t[t.date <= row["date"]].iloc[-1]
        assert row["treasury_date"] == asof["date"] and row["month3"] == asof["month3"]
        known = cpi[cpi.known_from <= row["date"]].iloc[-1]
        assert (row["cpi"], row["cpi_period"], row["cpi_known_from"]) == (
            known["value"],
            known["date"],
            known["known_from"],
        )


def test_dim_instrument_and_history(built_conn):
    dim = table(built_conn, "dim_instrument", "ticker").set_index("ticker")
    assert list(dim.index) == ["AAA", "BBB", "CCC", "DDD"]
    assert dim.loc["AAA", "sector"] == "Communication" and dim.loc["AAA", "name"] == "Alpha Inc"
    assert dim.loc["AAA", "last_changed_at"] == pd.Timestamp("2023-03-01")
    assert dim.loc["DDD", "name"] == "Delta" and not dim.loc["DDD", "has_profile"]
    hist = table(built_conn, "dim_instrument_history", "ticker, valid_from")
    aaa = hist[hist.ticker == "AAA"]
    # the price-only change is not a new version
    assert list(aaa["valid_from"]) == [pd.Timestamp("2023-01-01"), pd.Timestamp("2023-03-01")]
    assert aaa["valid_to"].iloc[0] == pd.Timestamp("2023-03-01") and pd.isna(aaa["valid_to"].iloc[1])
    assert list(aaa["is_current"]) == [False, True]
    assert set(hist["ticker"]) == {"AAA", "BBB", "CCC"}  # CCC: from the profile, no history yet


# ---- incremental, idempotence, ledger -------------------------------------------------------------------


def snapshot(conn) -> dict[str, pd.DataFrame]:
    out = {}
    for name in gold.GOLD_ASSETS:
        model_key = ", ".join(gold.models.MODELS[name].key)
        out[name] = table(conn, name, model_key)
    return out


def assert_same_tables(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=False, rtol=1e-12, obj=name)


def test_rerun_with_nothing_moved_is_noop(built, tmp_path):
    path = tmp_path / "w.duckdb"
    shutil.copy(built, path)
    with Warehouse(path).connect() as conn:
        assert gold.moved_inputs(conn) == {}
        before = snapshot(conn)
        results = build_all(conn, "run-2")
        assert {r.mode for r in results} == {"noop"} and all(r.rows_written == 0 for r in results)
        assert "no input moved" in results[0].reason
        assert_same_tables(before, snapshot(conn))
        assert conn.execute("SELECT count(*) FROM ops.gold_builds WHERE status <> 'success'").fetchall()[0][0] == 0


def test_moved_inputs_before_first_build(wh):
    with wh.connect() as conn:
        moved = gold.moved_inputs(conn)
    assert set(moved) == set(gold.GOLD_ASSETS) and all("never built" in r for r in moved.values())


def test_incremental_equals_full_after_one_ticker_moves(built, tmp_path):
    path = tmp_path / "w.duckdb"
    shutil.copy(built, path)
    with Warehouse(path).connect() as conn:
        # AAA: a revised old price, 5 new days, a new dividend
        conn.execute(
            "UPDATE silver.fmp_price_eod_as_traded SET close = close * 1.01 "
            "WHERE ticker = 'AAA' AND date = '2023-03-01'"
        ).fetchall()
        last = conn.execute("SELECT max(date) FROM silver.fmp_price_eod_as_traded WHERE ticker = 'AAA'").fetchall()[0][
            0
        ]
        new_days = pd.bdate_range(last + dt.timedelta(days=1), periods=5).date
        write_silver(
            conn,
            "fmp_price_eod_as_traded",
            pd.DataFrame(
                {"ticker": "AAA", "date": new_days, "open": 60.0, "high": 61.0, "low": 59.0, "close": 60.5, "volume": 1}
            ),
        )
        write_silver(conn, "fmp_dividends", pd.DataFrame({"ticker": ["AAA"], "date": [new_days[2]], "dividend": [0.3]}))
        ledger(conn, "fmp_price_eod_as_traded", "AAA", dt.date(2023, 1, 2), new_days[-1])
        ledger(conn, "fmp_dividends", "AAA", dt.date(2023, 2, 10), new_days[2])
        # fundamentals read the prices too: a split counts from the first price on or after its date
        assert set(gold.moved_inputs(conn)) == {
            "fact_price_daily",
            "fact_valuation_daily",
            "fact_macro_daily",
            "fact_fundamentals_quarterly",
            "fact_fundamentals_annual",
        }
        # BBB: a restated quarter (a new file whose coverage reaches a new, later period)
        conn.execute("""UPDATE silver.fmp_income_statement SET revenue = revenue * 1.5, net_income = net_income * 2
                        WHERE ticker = 'BBB' AND date = '2023-09-30' AND period = 'Q3'""").fetchall()
        ledger(conn, "fmp_income_statement", "BBB", dt.date(2021, 3, 31), dt.date(2024, 3, 31))
        assert set(gold.moved_inputs(conn)) == {
            "fact_price_daily",
            "fact_valuation_daily",
            "fact_macro_daily",
            "fact_fundamentals_quarterly",
            "fact_fundamentals_annual",
        }

        results = {r.name: r for r in build_all(conn, "run-incr")}
        assert results["fact_price_daily"].mode == "incremental"
        assert results["fact_price_daily"].tickers == ["AAA"]
        assert results["fact_price_daily"].rows_written == 305  # AAA only, over its full history
        assert results["fact_valuation_daily"].tickers == ["AAA", "BBB"]
        assert results["fact_fundamentals_quarterly"].tickers == ["AAA", "BBB"]
        # only what differs is written: BBB's restated Q3 2023 and the Q4 whose TTM sums it (AAA's new days and
        # dividend change no fundamentals row)
        assert results["fact_fundamentals_quarterly"].rows_written == 2
        assert results["fact_fundamentals_quarterly"].rows_deleted == 2
        assert results["fact_macro_daily"].mode == "full"
        assert results["dim_instrument"].mode == "noop"
        assert gold.moved_inputs(conn) == {}
        incremental = snapshot(conn)
        build_all(conn, "run-full", full=True)
        assert_same_tables(incremental, snapshot(conn))


def test_by_date_plan_reads_what_silver_history_changed_since_the_last_build(built, tmp_path):
    """Which moved tickers get only their new days (pipeline/gold/by_date.py), from the Silver history rows promoted
    since the last build (this fixture's Silver was written without history, so every history row below is new):
    AAA adds a bar and a quarter accepted after the last day built (its dividend dated after the last price is an
    announcement); BBB adds a bar and restates an old quarter; CCC's bar of 2023-06-01 is corrected."""
    path = tmp_path / "w.duckdb"
    shutil.copy(built, path)
    promoted = dt.datetime(2024, 3, 11, 23, 0)
    held_to, new_day = dt.date(2024, 3, 8), dt.date(2024, 3, 11)
    bars = pd.DataFrame(
        {"ticker": ["AAA", "BBB", "CCC"], "date": [new_day, new_day, dt.date(2023, 6, 1)], "close": [50.0, 60.0, 7.0]}
    )
    statements = pd.DataFrame(
        {
            "ticker": ["AAA", "BBB"],
            "date": [dt.date(2024, 2, 29), dt.date(2023, 9, 30)],
            "period": ["Q1", "Q3"],
            "accepted_date": [dt.datetime(2024, 3, 11, 8, 0), dt.datetime(2024, 3, 11, 8, 0)],
            "revenue": [1e6, 2e6],
        }
    )
    with Warehouse(path).connect() as conn:
        write_silver(conn, "fmp_price_eod_as_traded", bars[bars.date == new_day])
        for table, rows in (("fmp_price_eod_as_traded", bars), ("fmp_income_statement", statements)):
            write_silver(conn, f"{table}__history", rows.assign(promoted_at=promoted, valid_from=promoted))
        assert conn.execute("SELECT max(date) FROM gold.fact_price_daily").fetchone()[0] == held_to
        plans = {}
        for name in ("fact_price_daily", "fact_valuation_daily"):
            since = last_build(conn, name).promoted_to
            assert since == []  # the fixture's builds saw no history rows
            plans[name] = plan_by_date(conn, gold.models.MODELS[name], ["AAA", "BBB", "CCC"], since)
        # and with the marks of a build that saw all of it, a ticker that moved shows no change: recomputed
        unexplained = plan_by_date(
            conn, gold.models.MODELS["fact_price_daily"], ["AAA"], history_marks(conn, ("fmp_price_eod_as_traded",))
        )
    prices, valuation = plans["fact_price_daily"], plans["fact_valuation_daily"]
    assert prices.after == {"AAA": held_to, "BBB": held_to}
    # the 52-week range needs the 364 days before the first new day (the last 200 rows span less here)
    assert prices.read_from == {"AAA": dt.date(2023, 3, 10), "BBB": dt.date(2023, 3, 10)}
    assert prices.full == {"CCC": "a bar on or before 2024-03-08 changed or arrived"}
    assert valuation.after == {"AAA": held_to}
    assert valuation.read_from == {"AAA": dt.date(2024, 3, 9)}  # a valuation day needs no earlier bar
    assert valuation.full == {
        "BBB": "a statement for a day already built changed or arrived (restated or filed late)",
        "CCC": "a bar on or before 2024-03-08 changed or arrived",
    }
    assert unexplained.full == {"AAA": "its inputs moved, but Silver history shows no change"}


def test_a_changed_model_rebuilds_the_whole_table(built, tmp_path):
    """A build records the version of the table's SQL; after it changed (here: recorded as another, or not at all by
    a build from before versions), the next build recomputes every ticker, not only those whose inputs moved."""
    path = tmp_path / "w.duckdb"
    shutil.copy(built, path)
    with Warehouse(path).connect() as conn:
        for version in ("an-older-sql", None):
            conn.execute("UPDATE ops.gold_builds SET model_version = ? WHERE asset = 'fact_price_daily'", [version])
            ledger(conn, "fmp_price_eod_as_traded", "AAA", dt.date(2023, 1, 2), dt.date(2024, 3, 9))
            result = gold.build(conn, "fact_price_daily", "run-2")
            assert result.mode == "full" and "SQL changed" in result.reason
            assert result.rows_written == 0  # the same SQL really: nothing differs
        assert gold.build(conn, "fact_price_daily", "run-3").mode == "noop"


def test_incremental_equals_full_after_global_input_moves(built, tmp_path):
    path = tmp_path / "w.duckdb"
    shutil.copy(built, path)
    with Warehouse(path).connect() as conn:
        write_silver(
            conn,
            "fmp_economic_indicator",
            pd.DataFrame(
                {
                    "name": ["CPI", "unemploymentRate"],
                    "date": [dt.date(2024, 4, 1), dt.date(2023, 6, 1)],
                    "value": [330.0, 3.9],
                }
            ),
        )
        ledger(conn, "fmp_economic_indicator", "", dt.date(2022, 6, 1), dt.date(2024, 4, 1), discriminator="CPI")
        ledger(
            conn,
            "fmp_economic_indicator",
            "",
            dt.date(2023, 6, 1),
            dt.date(2023, 6, 1),
            discriminator="unemploymentRate",
        )
        conn.execute("UPDATE silver.fmp_stock_list SET company_name = 'Delta Corp' WHERE symbol = 'DDD'").fetchall()
        ledger(conn, "fmp_stock_list", "", FETCHED.date(), dt.date(2024, 3, 2))
        moved = gold.moved_inputs(conn)
        assert set(moved) == {"fact_macro_daily", "dim_instrument"}
        assert "economics|fmp|economic-indicators|unemploymentRate" in moved["fact_macro_daily"]

        results = {r.name: r for r in build_all(conn, "run-incr")}
        assert results["fact_macro_daily"].mode == "full" and results["dim_instrument"].mode == "full"
        assert results["fact_price_daily"].mode == "noop"
        macro = table(conn, "fact_macro_daily", "date")
        # a new column; June's value is known 10 days after June ends (no calendar in this fixture)
        by_date = macro.set_index("date")
        assert pd.isna(by_date.loc[dt.date(2023, 7, 7), "unemployment_rate"])
        assert by_date.loc[dt.date(2023, 7, 10), "unemployment_rate"] == 3.9
        assert table(conn, "dim_instrument", "ticker").set_index("ticker").loc["DDD", "name"] == "Delta Corp"
        incremental = snapshot(conn)
        build_all(conn, "run-full", full=True)
        assert_same_tables(incremental, snapshot(conn))


def test_ledger_records_builds(built_conn):
    rows = built_conn.execute("""
        SELECT asset, mode, status, rows_written, tickers_touched, len(input_watermarks), finished_at IS NOT NULL
        FROM ops.gold_builds ORDER BY build_id
    """).fetchall()
    assert [r[0] for r in rows] == list(gold.GOLD_ASSETS)
    assert all(r[1] == "full" and r[2] == "success" and r[6] for r in rows)
    # the security master's tables are empty here: this fixture's Silver has no delisted list or symbol changes
    facts = [
        r for r in rows if r[0] not in ("dim_security", "dim_security_ticker", "index_membership", "security_issues")
    ]
    assert all(r[3] > 0 and r[5] > 0 for r in facts)
    price = next(r for r in rows if r[0] == "fact_price_daily")
    assert price[3] == 900 and price[4] == 3


def test_failed_build_is_marked_failed_and_rolled_back(built, tmp_path):
    path = tmp_path / "w.duckdb"
    shutil.copy(built, path)
    with Warehouse(path).connect() as conn:
        before = table(conn, "fact_price_daily", "ticker, date")
        conn.execute("ALTER TABLE silver.fmp_splits RENAME COLUMN numerator TO num")
        with pytest.raises(duckdb.Error):
            gold.build(conn, "fact_price_daily", "run-bad", full=True)
        status, error = conn.execute("""
            SELECT status, error_message FROM ops.gold_builds WHERE run_id = 'run-bad'
        """).fetchall()[0]
        assert status == "failed" and "numerator" in error
        pd.testing.assert_frame_equal(before, table(conn, "fact_price_daily", "ticker, date"))
        # the failure does not count as a build: the table is still "moved"? no, its inputs did not move
        assert "fact_price_daily" not in gold.moved_inputs(conn)


def test_build_refuses_a_connection_inside_a_transaction(wh):
    with wh.transaction() as conn:
        with pytest.raises(RuntimeError, match="outside a transaction"):
            gold.build(conn, "fact_price_daily", "run-x")


# ---- quality checks -------------------------------------------------------------------------------------

CORRUPTIONS = {
    "balance": (
        lambda c: quality.check_balance_sheet_identity(c),
        "UPDATE gold.fact_fundamentals_quarterly SET total_assets = total_assets * 1.1 "
        "WHERE ticker = 'AAA' AND period_end = '2022-03-31'",
    ),
    "market_cap": (
        quality.check_market_cap_positive,
        "UPDATE gold.fact_valuation_daily SET market_cap = -1 WHERE ticker = 'BBB' AND date = '2023-10-02'",
    ),
    "lookahead": (
        quality.check_no_lookahead,
        "UPDATE gold.fact_valuation_daily SET statement_usable_from = date + 1 "
        "WHERE ticker = 'AAA' AND date = '2023-10-02'",
    ),
    "after_close": (
        quality.check_no_lookahead,
        "UPDATE gold.fact_valuation_daily SET statement_accepted_at = date + INTERVAL 990 MINUTE "
        "WHERE ticker = 'AAA' AND date = '2023-10-02'",
    ),
    "macro_lookahead": (
        quality.check_macro_no_lookahead,
        "UPDATE gold.fact_macro_daily SET cpi_known_from = date + 1 WHERE date = '2023-10-02'",
    ),
    "market_cap_split": (
        quality.check_market_cap_split_continuity,
        "UPDATE gold.fact_valuation_daily SET market_cap = market_cap * 2 WHERE ticker = 'AAA' AND date = '2023-06-15'",
    ),
    "prices": (
        quality.check_price_sanity,
        "UPDATE gold.fact_price_daily SET high = low * 0.99 WHERE ticker = 'CCC' AND date = '2023-04-03'",
    ),
    "split": (
        quality.check_split_continuity,  # adjusting twice: the split shows up in the adjusted series
        "UPDATE gold.fact_price_daily SET split_adj_close = split_adj_close / 2 "
        "WHERE ticker = 'AAA' AND date < '2023-06-15'",
    ),
    "dim": (
        lambda c: quality.check_tickers_in_dim(c, "gold.fact_price_daily"),
        "DELETE FROM gold.dim_instrument WHERE ticker = 'CCC'",
    ),
}


def test_quality_checks_pass_on_clean_build(built_conn):
    for name, checks in quality.GOLD_CHECKS.items():
        for check in checks:
            outcome = check(built_conn)
            assert outcome.passed, (name, outcome)
            assert outcome.metadata["offending_rows"] == 0


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_quality_check_fails_on_corrupted_table(built, tmp_path, case):
    check, corrupt = CORRUPTIONS[case]
    path = tmp_path / "w.duckdb"
    shutil.copy(built, path)
    conn = duckdb.connect(str(path))
    try:
        conn.execute(corrupt)
        outcome = check(conn)
    finally:
        conn.close()
    assert not outcome.passed
    assert outcome.metadata["offending_rows"] == 1 and len(outcome.metadata["examples"]) == 1


def test_gold_on_a_ducklake_equals_the_file(built_conn, tmp_path):
    """The same Silver fixture on a DuckLake (PostgreSQL catalog): full build equal to the file's, the ledger
    records it, every quality check passes, a rerun with nothing moved is a noop, and a duplicated key fails
    the key check."""
    from pipeline_tests import postgres_server

    frames = silver_frames()
    specs = load_keymap(KEYMAP).tables()
    with postgres_server.fresh_lake(tmp_path / "lake_data") as env:
        lake = Warehouse(env["PIPELINE_WAREHOUSE"], data_path=env["PIPELINE_WAREHOUSE_DATA_PATH"])
        with lake.transaction() as conn:
            for name in specs:
                ensure_table(conn, specs[name])
            for name, df in frames.items():
                write_silver(conn, name, df)
            seed_ledger(conn, frames)
        with lake.connect() as conn:
            results = build_all(conn, "run-1")
            assert {r.mode for r in results} == {"full"}
            assert_same_tables(snapshot(built_conn), snapshot(conn))
            for name, checks in quality.GOLD_CHECKS.items():
                for check in checks:
                    assert check(conn).passed, name
            again = build_all(conn, "run-2")
            assert {r.mode for r in again} == {"noop"}
            # an incremental build writes only what differs (temp tables, EXCEPT, DELETE ... EXISTS on the lake)
            conn.execute("""
                UPDATE silver.fmp_price_eod_as_traded SET close = close * 1.01 WHERE ticker = 'CCC'
                AND date = (SELECT min(date) FROM silver.fmp_price_eod_as_traded WHERE date > '2024-01-01')""")
            ledger(conn, "fmp_price_eod_as_traded", "CCC", dt.date(2023, 1, 2), dt.date(2024, 3, 20))
            price = gold.build(conn, "fact_price_daily", "run-3")
            assert price.mode == "incremental" and price.tickers == ["CCC"]
            assert 0 < price.rows_deleted == price.rows_written < 300  # the bar and the windows that include it
            incremental = snapshot(conn)["fact_price_daily"]
            gold.build(conn, "fact_price_daily", "run-4", full=True)
            assert_same_tables({"p": incremental}, {"p": snapshot(conn)["fact_price_daily"]})
            builds = conn.execute("SELECT build_id, status FROM ops.gold_builds ORDER BY build_id").fetchall()
            # no PRIMARY KEY on a lake: a key written twice is caught by the ERROR check instead
            conn.execute("INSERT INTO gold.fact_price_daily SELECT * FROM gold.fact_price_daily LIMIT 1")
            outcome = quality.check_key_unique(conn, "fact_price_daily")
            assert not outcome.passed and outcome.metadata["offending_rows"] == 1
        assert [b for b, _ in builds] == list(range(1, 2 * len(gold.GOLD_ASSETS) + 3))
        assert {s for _, s in builds} == {"success"}
