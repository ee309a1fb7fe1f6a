"""The environment contract, read once and validated.

Every knob the pipeline reads from the environment lives here, so a wrong value fails at definitions
load with a message that names the variable and the values it accepts, instead of deep inside a run.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.fmp.plans import DEFAULT_CALLS_PER_MINUTE, BudgetLimits, budget_limits, parse_size, plan_calls_per_minute
from pipeline.keymap.model import PLAN_ORDER
from pipeline.tickers import ticker_problem

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = Path(__file__).resolve().parent
MARKET_TZ = ZoneInfo("America/New_York")

DEFAULT_BASE_URL = "https://financialmodelingprep.com/stable"


# The safety sweep of event-driven refresh (pipeline.bronze.refresh): every ticker's splits, dividends, statements,
# metrics and profile are fetched at least every this many days, even when no calendar named it.
DEFAULT_SWEEP_DAYS = 28


class SettingsError(ValueError):
    """A pipeline environment variable holds a value the pipeline cannot use."""


@dataclass(frozen=True)
class UniverseSettings:
    """Filters applied to the Silver stock list / screener when PIPELINE_TICKERS does not pin the universe."""

    exchanges: tuple[str, ...] = ("NASDAQ", "NYSE")
    include_etfs: bool = False
    actively_trading_only: bool = True
    min_market_cap: float = 0.0
    max_tickers: int | None = None  # None: the whole filtered market (issue 19); a number caps it, largest first
    include_delisted: bool = True  # delisted names on the exchanges: fetched once, then frozen (survivorship)


SOURCES = ("fmp", "sample")
# Settings that only make sense for the live API: next to a missing or blank key they mean the key is missing by
# mistake (an unset CI secret expands to ""), so the pipeline stops instead of fetching invented sample data.
LIVE_ONLY_VARIABLES = (
    "FMP_PLAN",
    "FMP_BASE_URL",
    "FMP_CALLS_PER_MINUTE",
    "FMP_BANDWIDTH_30D",
    "FMP_DAILY_REQUEST_CAP",
    "FMP_DAILY_BYTE_CAP",
)


@dataclass(frozen=True)
class Settings:
    fmp_api_key: str | None = field(default=None, repr=False)
    source: str | None = None  # PIPELINE_SOURCE: fmp | sample; None: fmp when a key is set, else sample
    fmp_base_url: str = DEFAULT_BASE_URL
    fmp_plan: str | None = None
    calls_per_minute: int = DEFAULT_CALLS_PER_MINUTE
    max_concurrency: int = 8
    data_dir: Path = Path("data")
    keymap_path: Path = PROJECT_ROOT / "dataset_keymap.yaml"
    as_of: dt.date | None = None
    tickers: tuple[str, ...] | None = None
    env: str = "PROD"
    universe: UniverseSettings = UniverseSettings()
    bronze_url: str | None = None
    warehouse_file: Path | None = None  # PIPELINE_WAREHOUSE as a DuckDB file path
    warehouse_lake: str | None = field(default=None, repr=False)  # ducklake:postgres:<conninfo> (may hold a password)
    warehouse_data_path: str | None = None  # PIPELINE_WAREHOUSE_DATA_PATH: the lake's data files
    budget: BudgetLimits = BudgetLimits()  # FMP_PLAN's bandwidth and daily calls, or the explicit overrides
    sample_market: int | None = None  # PIPELINE_SAMPLE_MARKET: the sample source serves a synthetic market this big
    sweep_days: int = DEFAULT_SWEEP_DAYS  # PIPELINE_SWEEP_DAYS: the safety sweep of event-driven refresh

    @property
    def uses_lake(self) -> bool:
        return self.warehouse_lake is not None

    @property
    def warehouse_label(self) -> str:
        """The warehouse as shown to people: the file path, or the lake without its password."""
        if not self.warehouse_lake:
            return str(self.warehouse_path)
        shown = re.sub(r"(password\s*=\s*)\S+", r"\1***", self.warehouse_lake, flags=re.IGNORECASE)
        return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", shown) + f" (data {self.warehouse_data_path})"

    @property
    def warehouse_target(self) -> str:
        """What `Warehouse(...)` opens: the DuckDB file path, or the `ducklake:postgres:...` spec."""
        return self.warehouse_lake or str(self.warehouse_path)

    @property
    def bronze_location(self) -> str:
        """Where Bronze lives: PIPELINE_BRONZE_URL (any fsspec URL, e.g. s3://bucket/bronze), else the local
        folder `bronze_dir`. Open it with `BronzeStore.at(settings.bronze_location)`."""
        return self.bronze_url or str(self.bronze_dir)

    @property
    def uses_sample_source(self) -> bool:
        """True when requests go to the bundled sample source, never the network: chosen by PIPELINE_SOURCE=sample
        (what `pipeline demo` sets), or no key and nothing live-looking (`load_settings` checks that)."""
        return self.source == "sample" if self.source else not self.fmp_api_key

    @property
    def source_mode(self) -> str:
        """What `ops.runs.source_mode` records for a Bronze run with these settings: sample | fmp."""
        return "sample" if self.uses_sample_source else "fmp"

    @property
    def source_reason(self) -> str:
        """Why the source is what it is: PIPELINE_SOURCE when set, else whether the key is."""
        if self.source:
            return f"PIPELINE_SOURCE={self.source}"
        return "FMP_API_KEY is set" if self.fmp_api_key else "FMP_API_KEY is unset"

    @property
    def source_label(self) -> str:
        """Where requests go, as run logs say it."""
        return f"bundled sample source ({self.source_reason})" if self.uses_sample_source else self.fmp_base_url

    @property
    def bronze_dir(self) -> Path:
        return self.data_dir / "bronze"

    @property
    def warehouse_path(self) -> Path:
        """The DuckDB file (PIPELINE_WAREHOUSE, default `<PIPELINE_DATA_DIR>/warehouse.duckdb`). On a lake
        nothing lives here; use `warehouse_target`."""
        return self.warehouse_file or self.data_dir / "warehouse.duckdb"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    def today(self) -> dt.date:
        """The date request planning treats as today: PIPELINE_AS_OF, else today in New York."""
        return self.as_of or new_york_today()

    def __repr__(self) -> str:  # never print the key, even by accident
        key = "set" if self.fmp_api_key else "unset"
        return (
            f"Settings(fmp_api_key=<{key}>, source={self.source_mode}, fmp_base_url={self.fmp_base_url!r}, "
            f"fmp_plan={self.fmp_plan!r}, "
            f"calls_per_minute={self.calls_per_minute}, max_concurrency={self.max_concurrency}, "
            f"data_dir={str(self.data_dir)!r}, as_of={self.as_of}, tickers={self.tickers})"
        )


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer; use a whole number >= {minimum}") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} is too small; use a whole number >= {minimum}")
    return value


def _size(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse_size(raw)
    except ValueError:
        raise SettingsError(
            f"{name}={raw!r} is not a size; use bytes or a number with kB, MB, GB or TB (decimal, as FMP writes "
            "them), e.g. 50GB"
        ) from None


def _budget(env: Mapping[str, str], plan: str | None) -> tuple[int, BudgetLimits]:
    """(calls per minute, the other limits): the plan's figures (`pipeline.fmp.plans`), explicit variables winning."""
    calls_per_minute = _int(env, "FMP_CALLS_PER_MINUTE", plan_calls_per_minute(plan), 1)
    if env.get("FMP_CALLS_PER_MINUTE", "").strip():
        origin = "FMP_CALLS_PER_MINUTE"
    else:
        has_figure = plan is not None and plan_calls_per_minute(plan) != plan_calls_per_minute(None)
        origin = f"FMP_PLAN={plan}" if has_figure else "default"
    limits = budget_limits(
        plan,
        bandwidth_30d=_size(env, "FMP_BANDWIDTH_30D"),
        daily_requests=_int(env, "FMP_DAILY_REQUEST_CAP", 0, 1) or None,
        daily_bytes=_size(env, "FMP_DAILY_BYTE_CAP"),
        origins={"calls_per_minute": origin},
    )
    return calls_per_minute, limits


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean; use one of true, false, 1, 0, yes, no")


def parse_tickers(raw: str, source: str = "PIPELINE_TICKERS") -> tuple[str, ...]:
    """Split a comma-separated ticker list, keeping FMP's spelling and rejecting what the ticker rule refuses."""
    tickers: list[str] = []
    for part in raw.split(","):
        ticker = part.strip()
        if not ticker:
            continue
        problem = ticker_problem(ticker)
        if problem:
            raise SettingsError(f"{source}: {problem}")
        if ticker not in tickers:
            tickers.append(ticker)
    if not tickers:
        raise SettingsError(f"{source}={raw!r} names no ticker; give a comma-separated list such as AAPL,MSFT")
    return tuple(tickers)


def new_york_today() -> dt.date:
    return dt.datetime.now(MARKET_TZ).date()


def _as_of(raw: str) -> dt.date | None:
    """PIPELINE_AS_OF: exactly YYYY-MM-DD (Python alone would also read 20261207 or 2026-W49-1), and never after
    today in New York: planning for a future day fetches rows dated ahead of time, and its watermarks would hold
    every later run back until that day."""
    if not raw:
        return None
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
            raise ValueError(raw)
        as_of = dt.date.fromisoformat(raw)
    except ValueError:
        raise SettingsError(f"PIPELINE_AS_OF={raw!r} is not a date; use YYYY-MM-DD") from None
    today = new_york_today()
    if as_of > today:
        raise SettingsError(
            f"PIPELINE_AS_OF={raw} is after today ({today} in New York); planning never runs ahead of time: "
            "use today or an earlier date, or unset it"
        )
    return as_of


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment contract. Raises SettingsError naming the culprit variable."""
    env = os.environ if env is None else env

    plan = env.get("FMP_PLAN", "").strip().lower() or None
    if plan is not None and plan not in PLAN_ORDER:
        raise SettingsError(f"FMP_PLAN={plan!r} is not a plan; use one of {', '.join(PLAN_ORDER)} (or leave it unset)")

    base_url = env.get("FMP_BASE_URL", "").strip() or DEFAULT_BASE_URL
    if not re.match(r"^https?://[^\s/]+", base_url):
        raise SettingsError(f"FMP_BASE_URL={base_url!r} is not an http(s) URL; e.g. {DEFAULT_BASE_URL}")

    as_of = _as_of(env.get("PIPELINE_AS_OF", "").strip())

    raw_tickers = env.get("PIPELINE_TICKERS", "").strip()
    tickers = parse_tickers(raw_tickers) if raw_tickers else None

    data_dir = Path(env.get("PIPELINE_DATA_DIR", "").strip() or "data").expanduser().resolve()
    keymap_raw = env.get("PIPELINE_KEYMAP", "").strip()
    keymap_path = Path(keymap_raw).expanduser().resolve() if keymap_raw else PROJECT_ROOT / "dataset_keymap.yaml"
    if not keymap_path.is_file():
        raise SettingsError(
            f"PIPELINE_KEYMAP={str(keymap_path)!r} does not exist; point it at a dataset keymap YAML file"
        )

    exchanges_raw = env.get("PIPELINE_UNIVERSE_EXCHANGES", "").strip()
    exchanges = (
        tuple(e.strip().upper() for e in exchanges_raw.split(",") if e.strip()) if exchanges_raw else ("NASDAQ", "NYSE")
    )
    min_cap_raw = env.get("PIPELINE_UNIVERSE_MIN_MARKET_CAP", "").strip()
    try:
        min_cap = float(min_cap_raw) if min_cap_raw else 0.0
    except ValueError:
        raise SettingsError(f"PIPELINE_UNIVERSE_MIN_MARKET_CAP={min_cap_raw!r} is not a number") from None
    universe = UniverseSettings(
        exchanges=exchanges,
        include_etfs=_bool(env, "PIPELINE_UNIVERSE_INCLUDE_ETFS", False),
        actively_trading_only=_bool(env, "PIPELINE_UNIVERSE_ACTIVELY_TRADING", True),
        min_market_cap=min_cap,
        max_tickers=_int(env, "PIPELINE_UNIVERSE_MAX_TICKERS", 0, 1) or None,
        include_delisted=_bool(env, "PIPELINE_UNIVERSE_INCLUDE_DELISTED", True),
    )

    environment = env.get("ENV", "").strip().upper() or "PROD"
    bronze_url = _bronze_url(env.get("PIPELINE_BRONZE_URL", "").strip())
    warehouse_file, warehouse_lake, warehouse_data_path = _warehouse(
        env.get("PIPELINE_WAREHOUSE", "").strip(), env.get("PIPELINE_WAREHOUSE_DATA_PATH", "").strip()
    )

    calls_per_minute, budget = _budget(env, plan)
    max_concurrency = _int(env, "FMP_MAX_CONCURRENCY", 8, 1)
    sweep_days = _int(env, "PIPELINE_SWEEP_DAYS", DEFAULT_SWEEP_DAYS, 7)  # below a week the sweep is a daily poll
    source, api_key = _source(env, base_url)  # after every value is known to be valid: a bad value is named first
    sample_market = _sample_market(env, source == "sample" or (source is None and api_key is None))
    return Settings(
        fmp_api_key=api_key,
        source=source,
        fmp_base_url=base_url.rstrip("/"),
        fmp_plan=plan,
        calls_per_minute=calls_per_minute,
        max_concurrency=max_concurrency,
        data_dir=data_dir,
        keymap_path=keymap_path,
        as_of=as_of,
        tickers=tickers,
        env=environment,
        universe=universe,
        bronze_url=bronze_url,
        warehouse_file=warehouse_file,
        warehouse_lake=warehouse_lake,
        warehouse_data_path=warehouse_data_path,
        budget=budget,
        sample_market=sample_market,
        sweep_days=sweep_days,
    )


def _sample_market(env: Mapping[str, str], sample_source: bool) -> int | None:
    """PIPELINE_SAMPLE_MARKET: how many tickers the bundled sample source lists (a synthetic whole market,
    `pipeline/fmp/sample/synthetic_market.py`); unset for the ten named companies. Meaningless, hence refused,
    when requests go to FMP: the variable would otherwise suggest a market the live API does not serve."""
    raw = env.get("PIPELINE_SAMPLE_MARKET", "").strip()
    if not raw:
        return None
    from pipeline.fmp.sample.synthetic_market import MAX_MARKET, MIN_MARKET

    size = _int(env, "PIPELINE_SAMPLE_MARKET", 0, MIN_MARKET)
    if size > MAX_MARKET:
        raise SettingsError(f"PIPELINE_SAMPLE_MARKET={size} is too large; use a whole number {MIN_MARKET}-{MAX_MARKET}")
    if not sample_source:
        raise SettingsError(
            "PIPELINE_SAMPLE_MARKET is set, but requests go to the FMP API, not the bundled sample source; unset it, "
            "or choose the sample source (PIPELINE_SOURCE=sample)"
        )
    return size


def _source(env: Mapping[str, str], base_url: str) -> tuple[str | None, str | None]:
    """(PIPELINE_SOURCE as chosen, the key to use). The sample source is an explicit choice (PIPELINE_SOURCE=sample,
    set by `pipeline demo`) or the plain case: no key and none of the live-only settings. A missing or blank key
    next to a live-looking setting stops: a wrong number is worse than a missing one."""
    raw = env.get("PIPELINE_SOURCE", "").strip().lower()
    if raw and raw not in SOURCES:
        raise SettingsError(
            f"PIPELINE_SOURCE={raw!r} is not a source; use fmp (the FMP API, needs FMP_API_KEY) or sample "
            "(the bundled sample source), or leave it unset"
        )
    key = env.get("FMP_API_KEY", "").strip() or None
    if raw == "sample":
        return "sample", None  # the key, if any, is never sent anywhere
    if key:
        return raw or None, key
    state = "blank" if "FMP_API_KEY" in env else "unset"
    live = [name for name in LIVE_ONLY_VARIABLES if env.get(name, "").strip()]
    if base_url.rstrip("/") == DEFAULT_BASE_URL and "FMP_BASE_URL" in live:
        live.remove("FMP_BASE_URL")  # the default spelled out is not a sign of anything
    if raw == "fmp":
        why = f"FMP_API_KEY is {state}, but PIPELINE_SOURCE=fmp"
    elif live:
        why = f"FMP_API_KEY is {state}, but {live[0]} is set"
    elif state == "blank":
        why = "FMP_API_KEY is set but blank"
    else:
        return None, None  # the plain case of DESIGN section 4: the sample source, and the run log says so
    raise SettingsError(
        f"{why}: the pipeline does not fall back to invented sample data; set FMP_API_KEY, or choose the bundled "
        "sample source explicitly (`pipeline demo` or PIPELINE_SOURCE=sample)"
    )


LAKE_CATALOG_PREFIX = "ducklake:postgres:"


def _warehouse(raw: str, raw_data_path: str) -> tuple[Path | None, str | None, str | None]:
    """PIPELINE_WAREHOUSE: unset for `<PIPELINE_DATA_DIR>/warehouse.duckdb`, a DuckDB file path, or
    `ducklake:postgres:<libpq conninfo or postgresql:// URL>` for a DuckLake whose catalog is that PostgreSQL
    database; a lake also needs PIPELINE_WAREHOUSE_DATA_PATH (a local folder or s3://bucket/prefix/)."""
    if not raw.startswith("ducklake:"):
        if raw_data_path:
            raise SettingsError(
                "PIPELINE_WAREHOUSE_DATA_PATH is set, but PIPELINE_WAREHOUSE does not name a DuckLake; "
                "set PIPELINE_WAREHOUSE=ducklake:postgres:<conninfo> or unset the data path"
            )
        return (Path(raw).expanduser().resolve() if raw else None), None, None
    shown = re.sub(r"(password\s*=\s*)\S+", r"\1***", raw, flags=re.IGNORECASE)
    shown = re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", shown)
    if not raw.startswith(LAKE_CATALOG_PREFIX) or not raw.removeprefix(LAKE_CATALOG_PREFIX).strip():
        raise SettingsError(
            f"PIPELINE_WAREHOUSE={shown!r}: only a PostgreSQL catalog is supported; use "
            "ducklake:postgres:dbname=NAME host=HOST user=USER (or ducklake:postgres:postgresql://...)"
        )
    if not raw_data_path:
        raise SettingsError(
            f"PIPELINE_WAREHOUSE={shown!r} names a DuckLake, which needs PIPELINE_WAREHOUSE_DATA_PATH: "
            "the folder (or s3://bucket/prefix/) where its data files live"
        )
    if "://" in raw_data_path and not raw_data_path.startswith("s3://"):
        raise SettingsError(f"PIPELINE_WAREHOUSE_DATA_PATH={raw_data_path!r}: use a local folder or an s3:// URL")
    data_path = raw_data_path if "://" in raw_data_path else str(Path(raw_data_path).expanduser().resolve())
    missing = [
        p
        for p in ("duckdb_extension_ducklake", "duckdb_extension_postgres", "psycopg2")
        if importlib.util.find_spec(p) is None
    ]
    if missing:
        raise SettingsError(
            f"PIPELINE_WAREHOUSE={shown!r} needs {', '.join(missing)}; install the project's "
            "ducklake extra (pip install -e '.[ducklake]')"
        )
    return None, raw, data_path.rstrip("/") + "/"


def _bronze_url(raw: str) -> str | None:
    """PIPELINE_BRONZE_URL: unset for `<PIPELINE_DATA_DIR>/bronze`, a local path, or an fsspec URL whose backend
    is installed (s3:// needs the `s3` extra)."""
    if not raw:
        return None
    if "://" not in raw or raw.startswith("file://"):
        return str(Path(raw.removeprefix("file://")).expanduser().resolve())
    protocol = raw.split("://", 1)[0]
    try:
        import fsspec

        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise SettingsError(
            f"PIPELINE_BRONZE_URL={raw!r}: {protocol!r} is not a storage protocol fsspec knows; "
            "use a local path or a URL such as s3://bucket/bronze"
        ) from None
    except ImportError as exc:
        raise SettingsError(
            f"PIPELINE_BRONZE_URL={raw!r}: the {protocol!r} backend is not installed ({exc}); "
            "for s3:// install the project's s3 extra"
        ) from None
    return raw.rstrip("/")


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests that change the environment call `get_settings.cache_clear()`."""
    return load_settings()
