"""Gold from complete inputs (issue 20, item 2): a build over half-promoted Silver builds the complete tickers, names
the others, never fails `tickers_in_dim` after writing, and adds the others once they are complete, ending where a
full build of the complete Silver ends. The Gold sensor's `moved_inputs` sees nothing new while they stay incomplete
(no relaunch loop)."""

from __future__ import annotations

import datetime as dt
import shutil

import duckdb

from pipeline.gold import build as gold
from pipeline.gold.quality import GOLD_CHECKS
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.gold.test_gold import (  # noqa: F401 - pytest fixtures
    FETCHED,
    assert_same_tables,
    build_all,
    built,
    ledger,
    snapshot,
    template,
)

FACTS = ("fact_price_daily", "fact_valuation_daily", "fact_fundamentals_quarterly", "fact_fundamentals_annual")


def tickers_in(conn, name: str) -> set[str]:
    return {r[0] for r in conn.execute(f"SELECT DISTINCT ticker FROM gold.{name}").fetchall()}


def failed_error_checks(conn) -> list[str]:
    out = []
    for name, checks in GOLD_CHECKS.items():
        for check in checks:
            if getattr(check, "severity", "ERROR") == "ERROR" and not check(conn).passed:
                out.append(f"{name}: {check.__name__}")
    return out


def test_gold_builds_the_complete_tickers_names_the_others_and_adds_them_once_complete(template, built, tmp_path):  # noqa: F811
    path = tmp_path / "w.duckdb"
    shutil.copy(template, path)
    with Warehouse(path).connect() as conn:
        # CCC has prices but is not in the dimension's inputs yet; BBB has a price file fetched but not promoted
        conn.execute("CREATE TEMP TABLE saved_list AS SELECT * FROM silver.fmp_stock_list WHERE symbol = 'CCC'")
        conn.execute("CREATE TEMP TABLE saved_profile AS SELECT * FROM silver.fmp_company_profile WHERE ticker = 'CCC'")
        conn.execute("DELETE FROM silver.fmp_stock_list WHERE symbol = 'CCC'")
        conn.execute("DELETE FROM silver.fmp_company_profile WHERE ticker = 'CCC'")
        conn.execute("DELETE FROM ops.file_ingestions WHERE silver_table = 'fmp_company_profile' AND ticker = 'CCC'")
        ledger(conn, "fmp_price_eod", "BBB", dt.date(2023, 1, 2), dt.date(2024, 3, 1))
        waiting = conn.execute("SELECT max(ingestion_id) FROM ops.file_ingestions").fetchone()[0]
        conn.execute("UPDATE ops.file_ingestions SET silver_status = NULL WHERE ingestion_id = ?", [waiting])

        # a fact table built before the dimension's first build leaves out what that build will not hold
        first = gold.build(conn, "fact_price_daily", "run-0")
        assert set(first.incomplete) == {"BBB", "CCC"} and tickers_in(conn, "fact_price_daily") == {"AAA"}
        results = {r.name: r for r in build_all(conn, "run-1")}
        for name in FACTS:
            assert tickers_in(conn, name) <= {"AAA"}, name
            assert set(results[name].incomplete) == {"BBB", "CCC"}, name
            assert "not promoted" in results[name].incomplete["BBB"]
            assert "gold.dim_instrument" in results[name].incomplete["CCC"]
            assert "2 ticker(s) left out" in results[name].reason
        assert tickers_in(conn, "fact_price_daily") == {"AAA"}
        assert failed_error_checks(conn) == []  # tickers_in_dim among them: nothing written that it refuses
        assert gold.moved_inputs(conn) == {}  # nothing new for the sensor while BBB and CCC stay incomplete

        # BBB's file is promoted: its tables move, and the next build adds BBB
        conn.execute("UPDATE ops.file_ingestions SET silver_status = 'promoted' WHERE ingestion_id = ?", [waiting])
        assert "fact_price_daily" in gold.moved_inputs(conn)
        results = {r.name: r for r in build_all(conn, "run-2")}
        assert tickers_in(conn, "fact_price_daily") == {"AAA", "BBB"}
        assert set(results["fact_price_daily"].incomplete) == {"CCC"}

        # CCC reaches the stock list and the profile: the dimension moves, then the facts add CCC
        conn.execute("INSERT INTO silver.fmp_stock_list SELECT * FROM saved_list")
        conn.execute("INSERT INTO silver.fmp_company_profile SELECT * FROM saved_profile")
        ledger(conn, "fmp_stock_list", "", FETCHED.date(), dt.date(2024, 3, 2))
        ledger(conn, "fmp_company_profile", "CCC", FETCHED.date(), FETCHED.date())
        build_all(conn, "run-3")
        assert tickers_in(conn, "fact_price_daily") == {"AAA", "BBB", "CCC"}
        assert gold.moved_inputs(conn) == {}
        assert failed_error_checks(conn) == []
        after = snapshot(conn)
    with duckdb.connect(str(built), read_only=True) as conn:
        full = snapshot(conn)
    assert_same_tables(full, after)
