"""A Starter-plan `pipeline run` of the security master (issue 21): FMP answers 402 on the delisted pages after the
first and on the constituents history (fmp_api.md 3.4, served by the loopback fake with plan="starter"); the run
completes, keeps the first delisted page, builds Gold, and `pipeline status` says what the warehouse lacks. A real
subprocess through Dagster, on a small selection so that it stays cheap."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import duckdb

from pipeline.fmp.sample import SampleSource
from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data
from pipeline_tests.support import KEY, cli_env, pipeline_cmd

AS_OF = "2024-06-14"
SELECT = ",".join(
    [
        "bronze/market/delisted-companies",
        "bronze/market/delisted-companies__latest",
        "bronze/market/symbol-change",
        "bronze/market/sp500-constituent",
        "bronze/market/historical-sp500-constituent",
        "silver/fmp_delisted_companies",
        "silver/fmp_symbol_change",
        "silver/fmp_sp500_constituent",
        "silver/fmp_sp500_constituent_history",
        "gold/dim_security",
        "gold/dim_security_ticker",
        "gold/index_membership",
        "gold/security_issues",
    ]
)


def test_a_starter_pipeline_run_completes_and_status_says_what_it_lacks(tmp_path: Path) -> None:
    source = SampleSource(dt.date.fromisoformat(AS_OF))
    with FakeFmpServer(api_key=KEY, data=sample_data(source), plan="starter") as fake:
        env = cli_env(fake.base_url, tmp_path / "data", "KO,TWTR", AS_OF)
        run = subprocess.run(
            pipeline_cmd("run", "--select", SELECT), env=env, capture_output=True, text=True, timeout=600
        )
        refused = sorted({(r.path, r.params.get("page")) for r in fake.requests if r.status == 402})
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert refused == [("delisted-companies", "1"), ("historical-sp500-constituent", None)]
    # the run log names each refusal and what it stops sending
    assert "historical-sp500-constituent: not sent: the FMP plan does not include this endpoint" in out
    assert "delisted-companies: not sent: the FMP plan refuses a query parameter of this dataset" in out
    status = subprocess.run(pipeline_cmd("status"), env=env, capture_output=True, text=True, timeout=300)
    text = " ".join(status.stdout.split())
    assert status.returncode == 0, status.stdout + status.stderr
    assert "lacks: historical-sp500-constituent: refused by the plan" in text
    assert "lacks: delisted-companies page 1: refused by the plan" in text
    assert "no constituent history in Silver" in text
    with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as conn:
        delisted = conn.execute("SELECT count(*) FROM gold.dim_security WHERE delisted_on IS NOT NULL").fetchone()[0]
    assert delisted == 3  # from the first page, which Starter may read
