"""Whole-market benchmark (issue 19): a first backfill, then five consecutive trading days, all through
`pipeline run`, over a synthetic market of N tickers (default 6,000) served by the loopback fake FMP server.

Why: the daily cost of the whole US market must grow with what happened that day, not with history or the number
of datasets. This prints the issue's table from what the ledger recorded, so the figures before and after the
event-driven, bulk and Gold-by-date work can be compared on the same market and days.

The setup:
- the market: `SyntheticMarket(N)` (`pipeline/fmp/sample/synthetic_market.py`): the named sample companies plus
  synthetic ones, splits every week, quarterly dividend payers, earnings seasons; served by a `FakeFmpServer`
  (real loopback HTTP, `--latency` per request, 20 ms by default as in the issue's measurement, no rate limit,
  FMP's plan refusals for `--plan`) in its own process, one server per day with that day as the source's as-of;
- the keymap: the shipped one, with every `history_start` earlier than one year before the backfill day moved to
  it (a one-year history), written to a temp dir and passed as PIPELINE_KEYMAP;
- the environment: FMP_API_KEY a dummy, FMP_BASE_URL at the fake, FMP_PLAN (`--plan`, premium by default) with
  FMP_CALLS_PER_MINUTE far above what the connections can send (no client-side throttle), PIPELINE_AS_OF per day,
  no PIPELINE_TICKERS: the universe is the whole filtered market read from the Silver stock list and screener;
- the days: the backfill on Friday 2025-11-07, then Monday 2025-11-10 (the earnings-heavy day: the weekend's
  filings land on Monday, in the Q3 season) to Friday 2025-11-14; the market's own calendar for each day (splits,
  ex-dividends, filings) is printed next to the figures, so the split days are visible.

Figures, per day, from the ledger (`ops.file_ingestions`: requests = attempts, wire bytes, Silver rows inserted;
`ops.gold_builds`: rows written) and the wall time of the `pipeline run` process:
- requests per ticker per trading day (target <= 1.25 on Premium, the 5-day average);
- requests by dataset;
- bytes per day against 1/30 of the plan's 30-day bandwidth;
- wall time as a share of the rate floor (requests / the plan's calls per minute; target <= 25 %);
- Gold rows written against 3 x new as-traded price rows + the Gold rows of the tickers with a corporate action
  (a new split or dividend row in Silver that day) or a restatement (a statement row updated in Silver that day).

    python -m pipeline_tests.bench.bench_market                  # 6,000 tickers (long: see the README)
    python -m pipeline_tests.bench.bench_market --tickers 200    # a small market, a few minutes
    make bench-market BENCH_MARKET_ARGS='--tickers 1000'
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

API_KEY = "bench-market-dummy-key"
BACKFILL_DAY = dt.date(2025, 11, 7)
DAYS = (
    dt.date(2025, 11, 10),
    dt.date(2025, 11, 11),
    dt.date(2025, 11, 12),
    dt.date(2025, 11, 13),
    dt.date(2025, 11, 14),
)
LATENCY_S = 0.02
CONCURRENCY = 8
REQUESTS_PER_TICKER_TARGET = 1.25
RATE_FLOOR_SHARE_TARGET = 0.25
ROOT = Path(__file__).resolve().parents[2]
PRICE_TABLE = "fmp_price_eod_as_traded"  # the as-traded bars: the one series with new information each day
CORPORATE_ACTION_TABLES = ("fmp_splits", "fmp_dividends")
STATEMENT_TABLES = ("fmp_income_statement", "fmp_balance_sheet", "fmp_cash_flow")
GOLD_TICKER_TABLES = ("fact_price_daily", "fact_valuation_daily", "fact_fundamentals_quarterly")


# ---- setup ---------------------------------------------------------------------------------------------------


def write_keymap(path: Path, first_day: dt.date) -> None:
    """The shipped keymap with a one-year history: every history_start before first_day - 1 year moved to it."""
    import yaml

    from pipeline.settings import PROJECT_ROOT

    doc = yaml.safe_load((PROJECT_ROOT / "dataset_keymap.yaml").read_text())
    start = first_day.replace(year=first_day.year - 1).isoformat()
    for entry in doc["datasets"]:
        recipe = entry["recipe"]
        if recipe.get("history_start") and str(recipe["history_start"]) < start:
            recipe["history_start"] = start
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def base_env(workdir: Path, keymap_path: Path, plan: str, base_url: str, day: dt.date) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FMP_", "PIPELINE_", "DAGSTER_"))}
    env.update(
        {
            "FMP_API_KEY": API_KEY,
            "FMP_BASE_URL": base_url,
            "FMP_PLAN": plan,
            "FMP_MAX_CONCURRENCY": str(CONCURRENCY),
            "FMP_CALLS_PER_MINUTE": "1000000",  # no client-side throttle: the rate floor is computed, not waited
            "PIPELINE_AS_OF": day.isoformat(),
            "PIPELINE_KEYMAP": str(keymap_path),
            "PIPELINE_DATA_DIR": str(workdir / "data"),
            "DAGSTER_HOME": str(workdir / "dagster_home"),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PYTHONWARNINGS": "ignore",
        }
    )
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class FakeMarketServer:
    """The fake FMP server for one day of the synthetic market, in its own process (its CPU off our GIL)."""

    def __init__(self, n: int, day: dt.date, plan: str, latency_s: float) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline_tests.bench.bench_market",
                "--serve",
                f"{n},{day.isoformat()},{plan},{latency_s}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"fake server did not start: {self.base_url!r}")

    def stop(self) -> dict[str, list[int]]:
        """Stop the server; returns {path: [requests, wire bytes]} as it saw them."""
        self.proc.stdin.close()
        out = self.proc.stdout.read().strip()
        self.proc.wait(timeout=60)
        return json.loads(out.splitlines()[-1]) if out else {}


def serve(spec: str) -> None:
    from pipeline.fmp.sample import SampleSource
    from pipeline.fmp.sample.synthetic_market import SyntheticMarket
    from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data

    n, day, plan, latency = spec.split(",")
    market = SyntheticMarket(int(n))
    source = SampleSource(dt.date.fromisoformat(day), market.tickers, catalogue=market.company)
    for symbol in market.tickers:  # the screener's quote facts, built once before the clock starts
        source.summary(symbol)
    with FakeFmpServer(
        api_key=API_KEY, data=sample_data(source), latency_s=float(latency), calls_per_minute=None, plan=plan
    ) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        seen: dict[str, list[int]] = {}
        for r in server.requests:
            counts = seen.setdefault(r.path, [0, 0])
            counts[0] += 1
            counts[1] += r.body_bytes
        print(json.dumps(seen), flush=True)


# ---- one day ---------------------------------------------------------------------------------------------------


def _pipeline_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "pipeline"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pipeline.cli.commands"]


def ledger_marks(data_dir: Path) -> tuple[int, int]:
    """(newest ingestion id, newest gold build id) before a day's run: the day's rows are the ones after."""
    import duckdb

    path = data_dir / "warehouse.duckdb"
    if not path.exists():
        return 0, 0
    with duckdb.connect(str(path), read_only=True) as conn:
        have = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "file_ingestions" not in have:
            return 0, 0
        ing = conn.execute("SELECT coalesce(max(ingestion_id), 0) FROM ops.file_ingestions").fetchone()[0]
        gold = conn.execute("SELECT coalesce(max(build_id), 0) FROM ops.gold_builds").fetchone()[0]
    return int(ing), int(gold)


DAY_FILES_SQL = """
    SELECT dataset || CASE WHEN discriminator <> '' THEN '__' || discriminator ELSE '' END AS dataset,
           sum(coalesce(attempts, 1))                  AS requests,
           sum(coalesce(wire_bytes, bytes))            AS wire_bytes,
           count(*) FILTER (WHERE error_class IS NOT NULL) AS errors
    FROM ops.file_ingestions
    WHERE ingestion_id > $since
    GROUP BY 1
    ORDER BY 2 DESC, 1
"""

NEW_ROWS_SQL = """
    SELECT silver_table, ticker, sum(coalesce(silver_inserted, 0)) AS inserted,
           sum(coalesce(silver_updated, 0)) AS updated
    FROM ops.file_ingestions
    WHERE ingestion_id > $since AND silver_status = 'promoted'
    GROUP BY 1, 2
"""

GOLD_SQL = """
    SELECT asset, mode, coalesce(tickers_touched, 0), coalesce(rows_written, 0), status
    FROM ops.gold_builds
    WHERE build_id > $since
    ORDER BY build_id
"""


def day_figures(data_dir: Path, since_ingestion: int, since_build: int) -> dict:
    """What the ledger says one day's run did."""
    import duckdb

    from pipeline.settings import UniverseSettings
    from pipeline.universe import universe_from_silver

    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        by_dataset = conn.execute(DAY_FILES_SQL, {"since": since_ingestion}).fetchall()
        new_rows = conn.execute(NEW_ROWS_SQL, {"since": since_ingestion}).fetchall()
        gold = conn.execute(GOLD_SQL, {"since": since_build}).fetchall()
        universe = len(universe_from_silver(conn, UniverseSettings()))
        price_rows = sum(inserted for table, _, inserted, _ in new_rows if table == PRICE_TABLE)
        actions = sorted(
            {t for table, t, ins, _ in new_rows if table in CORPORATE_ACTION_TABLES and ins}
            | {t for table, t, _, upd in new_rows if table in STATEMENT_TABLES and upd}
        )
        gold_tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'gold'"
            ).fetchall()
        }
        action_rows = 0
        for table in GOLD_TICKER_TABLES:
            if table in gold_tables and actions:
                action_rows += conn.execute(
                    f"SELECT count(*) FROM gold.{table} WHERE ticker IN (SELECT unnest($t))", {"t": actions}
                ).fetchone()[0]
    return {
        "universe": universe,
        "requests": sum(r[1] for r in by_dataset),
        "wire_bytes": sum(r[2] or 0 for r in by_dataset),
        "errors": sum(r[3] for r in by_dataset),
        "by_dataset": {r[0]: [int(r[1]), int(r[2] or 0)] for r in by_dataset},
        "new_price_rows": int(price_rows),
        "action_tickers": len(actions),
        "action_gold_rows": int(action_rows),
        "gold": [list(g) for g in gold],
        "gold_rows": int(sum(g[3] for g in gold)),
    }


def run_day(workdir: Path, keymap_path: Path, n: int, day: dt.date, plan: str, latency_s: float) -> dict:
    server = FakeMarketServer(n, day, plan, latency_s)
    env = base_env(workdir, keymap_path, plan, server.base_url, day)
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    data_dir = Path(env["PIPELINE_DATA_DIR"])
    since_ingestion, since_build = ledger_marks(data_dir)
    started = time.perf_counter()
    proc = subprocess.run([*_pipeline_cmd(), "run"], env=env, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    served = server.stop()
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n")
    figures = day_figures(data_dir, since_ingestion, since_build)
    return {
        "day": day.isoformat(),
        "seconds": seconds,
        "exit_code": proc.returncode,
        "summary": proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else [],
        "served_requests": sum(v[0] for v in served.values()),
        "served_bytes": sum(v[1] for v in served.values()),
        **figures,
    }


# ---- report ----------------------------------------------------------------------------------------------------


def print_report(n: int, plan: str, backfill: dict, days: list[dict], calendar: dict[str, dict[str, int]]) -> dict:
    from pipeline.fmp.plans import budget_limits, plan_calls_per_minute

    rate = plan_calls_per_minute(plan)
    bandwidth = budget_limits(plan).bandwidth_30d
    daily_bytes = bandwidth / 30 if bandwidth else None
    print(
        f"\nbackfill {backfill['day']}: {backfill['requests']:,} requests "
        f"({backfill['requests'] / max(backfill['universe'], 1):.2f} per ticker), "
        f"{backfill['wire_bytes'] / 1e6:,.1f} MB on the wire, "
        f"{backfill['seconds']:.0f} s, {backfill['gold_rows']:,} Gold rows, exit {backfill['exit_code']}"
    )
    head = (
        f"{'day':<11}{'splits':>7}{'ex-div':>7}{'filed':>7}{'requests':>10}{'served':>8}{'per tkr':>8}"
        f"{'MB':>9}{'wall s':>8}"
        f"{'floor s':>8}{'wall/floor':>11}{'new px':>8}{'CA tkr':>7}{'gold rows':>11}{'allowed':>11}{'exit':>5}"
    )
    print(head)  # requests: the ledger's attempts; served: what the fake server answered (the two should agree)
    for d in days:
        cal = calendar.get(d["day"], {})
        floor = d["requests"] / rate * 60
        allowed = 3 * d["new_price_rows"] + d["action_gold_rows"]
        print(
            f"{d['day']:<11}{cal.get('splits', 0):>7}{cal.get('ex_dividends', 0):>7}{cal.get('filings', 0):>7}"
            f"{d['requests']:>10,}{d['served_requests']:>8,}{d['requests'] / max(d['universe'], 1):>8.2f}"
            f"{d['wire_bytes'] / 1e6:>9.3f}"
            f"{d['seconds']:>8.0f}{floor:>8.0f}{d['seconds'] / floor if floor else 0:>11.2f}{d['new_price_rows']:>8,}"
            f"{d['action_tickers']:>7,}{d['gold_rows']:>11,}{allowed:>11,}{d['exit_code']:>5}"
        )
    k = len(days)
    universe = max(d["universe"] for d in days)
    per_ticker = sum(d["requests"] for d in days) / k / max(universe, 1)
    bytes_day = sum(d["wire_bytes"] for d in days) / k
    floor_s = sum(d["requests"] for d in days) / k / rate * 60
    wall_s = sum(d["seconds"] for d in days) / k
    gold = sum(d["gold_rows"] for d in days) / k
    allowed = sum(3 * d["new_price_rows"] + d["action_gold_rows"] for d in days) / k
    by_dataset: Counter[str] = Counter()
    for d in days:
        for name, (req, _) in d["by_dataset"].items():
            by_dataset[name] += req
    print(f"\nrequests per trading day by dataset ({k}-day average, {universe:,} tickers):")
    for name, req in by_dataset.most_common():
        print(f"  {name:<52}{req / k:>10,.1f}{req / k / max(universe, 1):>8.2f} per ticker")
    rows = [
        (
            f"steady-state requests per ticker per trading day ({plan}, {k}-day average)",
            f"{per_ticker:.2f}",
            f"<= {REQUESTS_PER_TICKER_TARGET}",
            per_ticker <= REQUESTS_PER_TICKER_TARGET,
        ),
        (
            "requests per day for the whole market",
            f"{sum(d['requests'] for d in days) / k:,.0f}",
            "<= 60 (profile with bulk)",
            None,
        ),
        (
            f"bytes per day ({plan})",
            f"{bytes_day / 1e6:,.3f} MB",
            f"<= {daily_bytes / 1e6:,.0f} MB (1/30 of 30-day bandwidth)" if daily_bytes else "reported",
            bytes_day <= daily_bytes if daily_bytes else None,
        ),
        (
            f"wall time per daily refresh / rate floor (requests / {rate}/min)",
            f"{wall_s / floor_s if floor_s else 0:.2f} ({wall_s:.0f} s / {floor_s:.0f} s)",
            f"<= {RATE_FLOOR_SHARE_TARGET:.0%}",
            (wall_s / floor_s <= RATE_FLOOR_SHARE_TARGET) if floor_s else None,
        ),
        (
            "Gold rows written per day",
            f"{gold:,.0f}",
            f"<= {allowed:,.0f} (3 x new price rows + corporate-action tickers' rows)",
            gold <= allowed,
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"\n{'figure':<{widths[0]}} | {'value':<{widths[1]}} | {'target':<{widths[2]}} | met?")
    for label, value, target, met in rows:
        mark = "-" if met is None else ("yes" if met else "NO")
        print(f"{label:<{widths[0]}} | {value:<{widths[1]}} | {target:<{widths[2]}} | {mark}")
    return {
        "tickers": n,
        "universe": universe,
        "per_ticker": per_ticker,
        "requests_per_day": sum(d["requests"] for d in days) / k,
        "bytes_per_day": bytes_day,
        "daily_bytes_allowance": daily_bytes,
        "wall_s": wall_s,
        "floor_s": floor_s,
        "gold_rows": gold,
        "gold_allowed": allowed,
        "rows": rows,
        "backfill": backfill,
        "days": days,
    }


def main(n: int = 6000, plan: str = "premium", latency_s: float = LATENCY_S, days: int = len(DAYS)) -> dict:
    from pipeline.fmp.sample.synthetic_market import SyntheticMarket

    market = SyntheticMarket(n)
    chosen = DAYS[:days]
    calendar = market.calendar(BACKFILL_DAY, chosen[-1])
    print(
        f"synthetic market of {n:,} tickers, plan {plan}, fake FMP latency {latency_s * 1000:.0f} ms, concurrency "
        f"{CONCURRENCY}; backfill {BACKFILL_DAY} (one year of history), then {', '.join(map(str, chosen))}"
    )
    for day, events in calendar.items():
        print(f"  market calendar {day}: {events}")
    with tempfile.TemporaryDirectory(prefix="bench_market_", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        keymap_path = workdir / "keymap.yaml"
        write_keymap(keymap_path, BACKFILL_DAY)
        backfill = run_day(workdir, keymap_path, n, BACKFILL_DAY, plan, latency_s)
        print(f"  backfill {BACKFILL_DAY}: {backfill['seconds']:.0f} s, {backfill['requests']:,} requests", flush=True)
        results = []
        for day in chosen:
            results.append(run_day(workdir, keymap_path, n, day, plan, latency_s))
            r = results[-1]
            print(f"  {day}: {r['seconds']:.0f} s, {r['requests']:,} requests, exit {r['exit_code']}", flush=True)
    return print_report(n, plan, backfill, results, calendar)


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickers", type=int, default=6000, help="size of the synthetic market (default 6000)")
    parser.add_argument("--plan", default="premium", choices=("starter", "premium", "ultimate"))
    parser.add_argument("--latency", type=float, default=LATENCY_S, help="fake server latency per request, seconds")
    parser.add_argument("--days", type=int, default=len(DAYS), choices=range(1, len(DAYS) + 1))
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    result = main(args.tickers, args.plan, args.latency, args.days)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    _cli()
