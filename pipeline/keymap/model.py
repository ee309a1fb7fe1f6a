"""Value objects for the dataset keymap: identities, watermarks, typed columns, fetch recipes.

They are plain frozen dataclasses with no Dagster or DuckDB in them, so planning, promotion and the tests
can use them directly. The loader in `loader.py` is the only place that builds them from YAML.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pipeline.keymap.bulk import BulkScope

PER_TICKER = "per_ticker"
GLOBAL = "global"
TICKER_SCOPES = (PER_TICKER, GLOBAL)

# Keymap column type -> DuckDB type. The closed set the loader accepts.
COLUMN_TYPES: dict[str, str] = {
    "varchar": "VARCHAR",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "json": "JSON",
}

PLACEHOLDERS = (
    "__ticker__",
    "__from__",
    "__to__",
    "__date__",
    "__discriminator__",
    "__limit__",
    "__page__",
    "__part__",  # bulk scopes (pipeline.keymap.bulk)
    "__year__",
    "__period__",
)
PLAN_ORDER = ("basic", "starter", "premium", "ultimate")  # FMP plans, lowest first
# What a run spends its request budget on first (pipeline.bronze.budget): the day's new bars, then the calendars that
# say which tickers need more, then statements, then metrics, then the rest (profiles, peers, macro, cross-checks).
PRIORITIES = ("prices", "calendars", "statements", "metrics", "other")
# How a per-ticker dataset is refreshed (pipeline.bronze.refresh): `cadence` (min_age_days), `events` (a calendar row,
# the ticker's filing rhythm or the slow sweep), `cross_check` (a rotating sample of tickers a day).
REFRESH_MODES = ("cadence", "events", "cross_check")
FILINGS_RHYTHM = "filings"  # in refresh_on: the ticker's own reporting rhythm (last period end + its usual lag)


@dataclass(frozen=True, order=True)
class DatasetIdentity:
    """Who a Bronze file or a watermark belongs to. Missing discriminator or ticker is the empty string."""

    domain: str
    source: str
    dataset: str
    discriminator: str = ""
    ticker: str = ""

    def __post_init__(self) -> None:
        # One normalisation for "missing": None and "" mean the same thing everywhere.
        object.__setattr__(self, "discriminator", self.discriminator or "")
        object.__setattr__(self, "ticker", self.ticker or "")

    @property
    def key(self) -> str:
        return "|".join((self.domain, self.source, self.dataset, self.discriminator, self.ticker))

    @classmethod
    def from_key(cls, key: str) -> DatasetIdentity:
        """The identity of a `key` string ('domain|source|dataset|discriminator|ticker')."""
        parts = key.split("|")
        if len(parts) != 5:
            raise ValueError(f"not a dataset identity key: {key!r}")
        return cls(*parts)

    def without_ticker(self) -> DatasetIdentity:
        return DatasetIdentity(self.domain, self.source, self.dataset, self.discriminator, "")

    def with_ticker(self, ticker: str) -> DatasetIdentity:
        return DatasetIdentity(self.domain, self.source, self.dataset, self.discriminator, ticker)

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class DatasetWatermark:
    """Coverage of an identity; its canonical string is recorded by Gold builds as their input watermark."""

    identity: DatasetIdentity
    coverage_from: dt.date | None = None
    coverage_to: dt.date | None = None

    def __str__(self) -> str:
        def fmt(d: dt.date | None) -> str:
            return d.isoformat() if d else ""

        return f"{self.identity.key}@coverage_from={fmt(self.coverage_from)};coverage_to={fmt(self.coverage_to)}"

    @classmethod
    def parse(cls, text: str) -> DatasetWatermark:
        ident_part, _, cov = text.partition("@")
        if len(ident_part.split("|")) != 5 or not cov:
            raise ValueError(f"not a dataset watermark: {text!r}")
        fields = dict(item.split("=", 1) for item in cov.split(";"))

        def date_or_none(v: str) -> dt.date | None:
            return dt.date.fromisoformat(v) if v else None

        return cls(
            DatasetIdentity.from_key(ident_part),
            date_or_none(fields.get("coverage_from", "")),
            date_or_none(fields.get("coverage_to", "")),
        )


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # keymap type name, key of COLUMN_TYPES
    api: str  # API field the value comes from
    nullable: bool = True

    @property
    def duckdb_type(self) -> str:
        return COLUMN_TYPES[self.type]


@dataclass(frozen=True)
class Pagination:
    param: str
    start: int = 0
    max_pages: int = 100


@dataclass(frozen=True)
class Recipe:
    """How to fetch one dataset identity from FMP."""

    path: str
    query: tuple[tuple[str, str], ...]
    format: str = "json"
    date_field: str | None = None
    min_age_days: int = 1
    overlap_days: int = 0
    history_start: dt.date | None = None
    history_days: int | None = None
    max_window_days: int | None = None
    row_cap: int | None = None
    row_limit: int | None = None
    pagination: Pagination | None = None
    min_plan: str = "basic"
    freshness_days: int | None = None
    priority: str | None = None  # one of PRIORITIES; None: derived from the entry (KeymapEntry.priority)
    bulk: BulkScope | None = None  # a whole-market recipe: what one request covers (pipeline.keymap.bulk)
    refresh: str = "cadence"  # one of REFRESH_MODES
    refresh_on: tuple[str, ...] = ()  # events: calendars (and/or FILINGS_RHYTHM); cross_check: entries it stands in for

    @property
    def is_windowed(self) -> bool:
        """A recipe with __from__ in its query is fetched in incremental date windows."""
        return any("__from__" in v for _, v in self.query)

    def allowed_on(self, plan: str | None) -> bool:
        """Unset FMP_PLAN means "do not gate"; otherwise the plan must reach the recipe's minimum."""
        if plan is None:
            return True
        return PLAN_ORDER.index(plan) >= PLAN_ORDER.index(self.min_plan)

    @property
    def effective_freshness_days(self) -> int:
        return self.freshness_days if self.freshness_days is not None else self.min_age_days + 3


@dataclass(frozen=True)
class SilverSpec:
    table: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    row_date: str | None = None
    # Rows dated after the New York date of their fetch are rejected by promotion, unless the dataset lists
    # coming events by design (an economic calendar's upcoming releases).
    allow_future_dates: bool = False

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"silver.{self.table} has no column {name!r}")

    @property
    def value_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.name not in self.key)


@dataclass(frozen=True)
class KeymapEntry:
    domain: str
    source: str
    dataset: str
    discriminator: str
    ticker_scope: str
    description: str
    docs_url: str
    silver: SilverSpec
    recipe: Recipe
    index: int = field(default=0, compare=False)

    @property
    def identity(self) -> DatasetIdentity:
        """The entry's identity, ticker-less; per-ticker files add the ticker."""
        return DatasetIdentity(self.domain, self.source, self.dataset, self.discriminator, "")

    @property
    def identity_key(self) -> str:
        """Used for de-duplication of entries in the loader."""
        return self.identity.key

    @property
    def per_ticker(self) -> bool:
        return self.ticker_scope == PER_TICKER

    @property
    def asset_name(self) -> str:
        """Last part of the Bronze asset key: the dataset as spelled in the keymap, plus
        `__<discriminator>` when there is one."""
        return f"{self.dataset}__{self.discriminator}" if self.discriminator else self.dataset

    @property
    def priority(self) -> str:
        """The entry's place in the request budget's order (PRIORITIES): `recipe.priority` when the keymap sets it,
        else derived: a dataset named `*-calendar` is a calendar, the `prices` domain is prices, `*-statement`
        datasets of the `fundamentals` domain are statements and its other datasets metrics, the rest is other."""
        if self.recipe.priority:
            return self.recipe.priority
        if self.dataset.endswith("-calendar"):
            return "calendars"
        if self.domain == "prices":
            return "prices"
        if self.domain == "fundamentals":
            return "statements" if self.dataset.endswith("-statement") else "metrics"
        return "other"

    @property
    def priority_rank(self) -> int:
        """0 for the most valuable work (prices)."""
        return PRIORITIES.index(self.priority)

    def matches_identity(self, identity: DatasetIdentity) -> bool:
        """Same dataset identity; a global entry matches only a ticker-less identity, a per-ticker one only a ticker."""
        if identity.without_ticker() != self.identity:
            return False
        return bool(identity.ticker) if self.per_ticker else not identity.ticker


@dataclass(frozen=True)
class Keymap:
    version: int
    entries: tuple[KeymapEntry, ...]
    path: str = ""

    def __iter__(self) -> Iterator[KeymapEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def find(self, identity: DatasetIdentity) -> KeymapEntry | None:
        for entry in self.entries:
            if entry.matches_identity(identity):
                return entry
        return None

    def require(self, identity: DatasetIdentity) -> KeymapEntry:
        entry = self.find(identity)
        if entry is None:
            raise KeyError(f"no keymap entry for identity {identity.key!r} in {self.path or 'the keymap'}")
        return entry

    def tables(self) -> dict[str, SilverSpec]:
        """Silver tables by name (entries sharing a table agree on the spec; the loader checks that)."""
        return {e.silver.table: e.silver for e in self.entries}

    def entries_for_table(self, table: str) -> tuple[KeymapEntry, ...]:
        return tuple(e for e in self.entries if e.silver.table == table)

    def table_scope(self, table: str) -> str:
        return self.entries_for_table(table)[0].ticker_scope

    def per_ticker_entries(self) -> Iterable[KeymapEntry]:
        return (e for e in self.entries if e.per_ticker)

    def global_entries(self) -> Iterable[KeymapEntry]:
        return (e for e in self.entries if not e.per_ticker)
