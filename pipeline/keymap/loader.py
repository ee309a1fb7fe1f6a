"""Load and validate `dataset_keymap.yaml`.

Every rule here stops a keymap that would load and then fail at run time (or, worse, silently write wrong
data): unknown fields, keys that are not columns, tables shared with different keys.
Each failure names the file, the entry (index and identity) and the field.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.keymap.bulk import parse_bulk
from pipeline.keymap.model import (
    COLUMN_TYPES,
    FILINGS_RHYTHM,
    PER_TICKER,
    PLACEHOLDERS,
    PLAN_ORDER,
    PRIORITIES,
    REFRESH_MODES,
    TICKER_SCOPES,
    Column,
    Keymap,
    KeymapEntry,
    Pagination,
    Recipe,
    SilverSpec,
)
from pipeline.keymap.yaml_unique import DuplicateKey, load_yaml

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")  # domain, source, dataset, discriminator
PLACEHOLDER_TOKEN = re.compile(r"__[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*__")  # also __from_date__-style typos
API_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-/]*$")

ENTRY_FIELDS = {
    "domain",
    "source",
    "dataset",
    "discriminator",
    "ticker_scope",
    "description",
    "docs_url",
    "silver",
    "recipe",
}
SILVER_FIELDS = {"table", "key", "row_date", "columns", "allow_future_dates"}
COLUMN_FIELDS = {"name", "type", "nullable", "api"}
RECIPE_FIELDS = {
    "path",
    "query",
    "format",
    "date_field",
    "min_age_days",
    "overlap_days",
    "history_start",
    "history_days",
    "max_window_days",
    "row_cap",
    "row_limit",
    "pagination",
    "min_plan",
    "freshness_days",
    "priority",
    "bulk",
    "refresh",
    "refresh_on",
}
PAGINATION_FIELDS = {"param", "start", "max_pages"}
# Column names the warehouse adds itself; a keymap column may not take them.
RESERVED_COLUMNS = {"bronze_file_id", "run_id", "fetched_at", "promoted_at"}


class KeymapError(ValueError):
    """The keymap file is invalid; the message names file, entry and field."""


def snake_to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class _Where:
    """Builds error messages that name the file, the entry and the field."""

    def __init__(self, path: str, index: int | None = None, identity: str = "") -> None:
        self.path, self.index, self.identity = path, index, identity

    def error(self, field: str, problem: str) -> KeymapError:
        where = self.path
        if self.index is not None:
            where += f": entry #{self.index}"
            if self.identity:
                where += f" ({self.identity})"
        return KeymapError(f"{where}: field '{field}': {problem}")


def _mapping(value: Any, where: _Where, field: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(field, f"must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise where.error(
            f"{field}.{unknown[0]}" if field else unknown[0], f"unknown field (allowed: {', '.join(sorted(allowed))})"
        )
    return value


def _text(
    value: Any, where: _Where, field: str, *, required: bool = True, pattern: re.Pattern[str] | None = None
) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise where.error(field, "is required and must not be empty")
        return ""
    if not isinstance(value, str):
        raise where.error(field, f"must be text, got {type(value).__name__} {value!r}")
    if pattern is not None and not pattern.match(value):
        raise where.error(field, f"{value!r} does not match {pattern.pattern}")
    return value


def _int(value: Any, where: _Where, field: str, *, minimum: int, default: int | None = None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error(field, f"must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise where.error(field, f"must be an integer >= {minimum}, got {value}")
    return value


def _columns(raw: Any, where: _Where) -> tuple[Column, ...]:
    if not isinstance(raw, list) or not raw:
        raise where.error("silver.columns", "must be a non-empty list of {name, type, nullable?, api?}")
    columns: list[Column] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        field = f"silver.columns[{i}]"
        item = _mapping(item, where, field, COLUMN_FIELDS)
        name = _text(item.get("name"), where, f"{field}.name", pattern=IDENTIFIER)
        if name in seen:
            raise where.error(f"{field}.name", f"column {name!r} is declared twice")
        if name in RESERVED_COLUMNS:
            raise where.error(f"{field}.name", f"{name!r} is a lineage column the warehouse adds itself")
        seen.add(name)
        ctype = _text(item.get("type"), where, f"{field}.type")
        if ctype not in COLUMN_TYPES:
            raise where.error(f"{field}.type", f"{ctype!r} is not a column type; use one of {', '.join(COLUMN_TYPES)}")
        nullable = item.get("nullable", True)
        if not isinstance(nullable, bool):
            raise where.error(f"{field}.nullable", f"must be true or false, got {nullable!r}")
        api = _text(item.get("api"), where, f"{field}.api", required=False) or snake_to_camel(name)
        columns.append(Column(name=name, type=ctype, api=api, nullable=nullable))
    return tuple(columns)


def _silver(raw: Any, where: _Where, scope: str) -> SilverSpec:
    raw = _mapping(raw, where, "silver", SILVER_FIELDS)
    table = _text(raw.get("table"), where, "silver.table", pattern=IDENTIFIER)
    columns = _columns(raw.get("columns"), where)
    names = {c.name for c in columns}
    key = raw.get("key")
    if not isinstance(key, list) or not key:
        raise where.error("silver.key", "must be a non-empty list of column names")
    for k in key:
        if not isinstance(k, str) or k not in names:
            raise where.error("silver.key", f"key column {k!r} is not a declared column")
    if len(set(key)) != len(key):
        raise where.error("silver.key", "lists a column twice")
    if scope == PER_TICKER and "ticker" not in key:
        raise where.error(
            "silver.key", "a per_ticker table must have 'ticker' in its key (it is filled from the request)"
        )
    row_date = _text(raw.get("row_date"), where, "silver.row_date", required=False) or None
    if row_date is not None:
        if row_date not in names:
            raise where.error("silver.row_date", f"{row_date!r} is not a declared column")
        if next(c for c in columns if c.name == row_date).type != "date":
            raise where.error("silver.row_date", f"column {row_date!r} must have type date")
    allow_future = raw.get("allow_future_dates", False)
    if not isinstance(allow_future, bool):
        raise where.error("silver.allow_future_dates", f"must be true or false, got {allow_future!r}")
    if allow_future and row_date is None:
        raise where.error("silver.allow_future_dates", "needs a row_date: it lets rows dated after their fetch day in")
    # Key columns can never be NULL in a primary key: make that explicit rather than implied.
    columns = tuple(Column(c.name, c.type, c.api, nullable=c.nullable and c.name not in key) for c in columns)
    return SilverSpec(table=table, key=tuple(key), columns=columns, row_date=row_date, allow_future_dates=allow_future)


def _recipe(raw: Any, where: _Where, scope: str, discriminator: str) -> Recipe:
    raw = _mapping(raw, where, "recipe", RECIPE_FIELDS)
    path = _text(raw.get("path"), where, "recipe.path", pattern=API_PATH)
    query_raw = raw.get("query") or {}
    if not isinstance(query_raw, dict):
        raise where.error("recipe.query", "must be a mapping of parameter -> value")
    query: list[tuple[str, str]] = []
    for name, value in query_raw.items():
        if not isinstance(name, str) or not name or name.lower() == "apikey":
            raise where.error(
                f"recipe.query.{name}", "parameter names must be text; the API key is added by the client"
            )
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise where.error(f"recipe.query.{name}", f"value must be text or a number, got {value!r}")
        text = str(value)
        for token in PLACEHOLDER_TOKEN.findall(text):
            if token not in PLACEHOLDERS:
                raise where.error(
                    f"recipe.query.{name}", f"unknown placeholder {token}; allowed: {', '.join(PLACEHOLDERS)}"
                )
        query.append((name, text))
    values = " ".join(v for _, v in query)
    if "__ticker__" in values and scope != PER_TICKER:
        raise where.error("recipe.query", "__ticker__ is only allowed in per_ticker entries")
    if scope == PER_TICKER and "__ticker__" not in values:
        raise where.error("recipe.query", "a per_ticker recipe must send __ticker__")
    if "__discriminator__" in values and not discriminator:
        raise where.error("recipe.query", "__discriminator__ needs the entry to have a discriminator")

    fmt = _text(raw.get("format"), where, "recipe.format", required=False) or "json"
    if fmt not in ("json", "csv"):
        raise where.error("recipe.format", f"{fmt!r} is not a format; use json or csv")
    bulk = parse_bulk(raw.get("bulk"), where.error, values, scope == PER_TICKER)
    if fmt == "csv" and raw.get("pagination") is not None:
        raise where.error("recipe.format", "a csv recipe cannot be paginated (its pages are the bulk scope's parts)")
    min_age = raw.get("min_age_days")
    if min_age is None:
        raise where.error("recipe.min_age_days", "is required (an integer >= 0)")
    min_age_days = _int(min_age, where, "recipe.min_age_days", minimum=0)

    history_start = raw.get("history_start")
    if history_start is not None:
        if isinstance(history_start, str):
            try:
                history_start = dt.date.fromisoformat(history_start)
            except ValueError:
                raise where.error("recipe.history_start", f"{history_start!r} is not a YYYY-MM-DD date") from None
        if not isinstance(history_start, dt.date):
            raise where.error("recipe.history_start", f"must be a YYYY-MM-DD date, got {history_start!r}")
    history_days = _int(raw.get("history_days"), where, "recipe.history_days", minimum=1)
    windowed = "__from__" in values
    if windowed and (history_start is None) == (history_days is None):
        raise where.error(
            "recipe.history_start", "a recipe with __from__ needs exactly one of history_start or history_days"
        )
    if not windowed and (history_start is not None or history_days is not None):
        raise where.error("recipe.history_start", "only recipes that send __from__ take a history start")
    date_field = _text(raw.get("date_field"), where, "recipe.date_field", required=False) or None
    if windowed and date_field is None:
        raise where.error("recipe.date_field", "a recipe with __from__ needs the row date field")

    pagination = None
    if raw.get("pagination") is not None:
        p = _mapping(raw["pagination"], where, "recipe.pagination", PAGINATION_FIELDS)
        pagination = Pagination(
            param=_text(p.get("param"), where, "recipe.pagination.param"),
            start=_int(p.get("start"), where, "recipe.pagination.start", minimum=0, default=0) or 0,
            max_pages=_int(p.get("max_pages"), where, "recipe.pagination.max_pages", minimum=1, default=100) or 100,
        )
    min_plan = _text(raw.get("min_plan"), where, "recipe.min_plan", required=False) or "basic"
    if min_plan not in PLAN_ORDER:
        raise where.error("recipe.min_plan", f"{min_plan!r} is not a plan; use one of {', '.join(PLAN_ORDER)}")
    priority = raw.get("priority")
    if priority not in (None, "") and priority not in PRIORITIES:
        raise where.error("recipe.priority", f"{priority!r} is not a priority; use one of {', '.join(PRIORITIES)}")
    refresh, refresh_on = _refresh(raw, where, scope)
    row_limit = _int(raw.get("row_limit"), where, "recipe.row_limit", minimum=1)
    if "__limit__" in values and row_limit is None:
        raise where.error("recipe.row_limit", "__limit__ is used in the query, so row_limit is required")

    return Recipe(
        path=path,
        query=tuple(query),
        format=fmt,
        date_field=date_field,
        min_age_days=min_age_days or 0,
        overlap_days=_int(raw.get("overlap_days"), where, "recipe.overlap_days", minimum=0, default=0) or 0,
        history_start=history_start,
        history_days=history_days,
        max_window_days=_int(raw.get("max_window_days"), where, "recipe.max_window_days", minimum=1),
        row_cap=_int(raw.get("row_cap"), where, "recipe.row_cap", minimum=1),
        row_limit=row_limit,
        pagination=pagination,
        min_plan=min_plan,
        freshness_days=_int(raw.get("freshness_days"), where, "recipe.freshness_days", minimum=0),
        priority=priority or None,
        bulk=bulk,
        refresh=refresh,
        refresh_on=refresh_on,
    )


def _refresh(raw: dict[str, Any], where: _Where, scope: str) -> tuple[str, tuple[str, ...]]:
    """recipe.refresh and recipe.refresh_on (the calendars are checked against the keymap in `_check_refresh_on`)."""
    refresh = raw.get("refresh") or "cadence"
    if refresh not in REFRESH_MODES:
        raise where.error("recipe.refresh", f"{refresh!r} is not a refresh mode; use one of {', '.join(REFRESH_MODES)}")
    if refresh != "cadence" and scope != "per_ticker":
        raise where.error("recipe.refresh", f"{refresh!r} is only for per_ticker entries")
    on = raw.get("refresh_on") or []
    if not isinstance(on, list) or not all(isinstance(v, str) and v for v in on):
        raise where.error("recipe.refresh_on", "must be a list of calendar dataset names (or 'filings')")
    if refresh == "events" and not on:
        raise where.error("recipe.refresh_on", "refresh: events needs at least one calendar (or 'filings')")
    if on and refresh == "cadence":
        raise where.error("recipe.refresh_on", "only used with refresh: events or cross_check")
    return refresh, tuple(on)


def parse_keymap(document: Any, path: str = "<keymap>") -> Keymap:
    """Validate a parsed YAML document and build the Keymap."""
    top = _Where(path)
    if not isinstance(document, dict):
        raise top.error("(top level)", "must be a mapping with 'version' and 'datasets'")
    unknown = sorted(set(document) - {"version", "datasets"})
    if unknown:
        raise top.error(unknown[0], "unknown top-level field (allowed: version, datasets)")
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise top.error("version", f"must be an integer, got {version!r}")
    raw_entries = document.get("datasets")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise top.error("datasets", "must be a non-empty list of dataset entries")

    entries: list[KeymapEntry] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_entries):
        where = _Where(path, index)
        if not isinstance(raw, dict):
            raise where.error("(entry)", "must be a mapping")
        ident = "|".join(str(raw.get(k) or "") for k in ("domain", "source", "dataset", "discriminator"))
        where = _Where(path, index, ident)
        _mapping(raw, where, "", ENTRY_FIELDS)
        domain = _text(raw.get("domain"), where, "domain", pattern=NAME_PART)
        source = _text(raw.get("source"), where, "source", pattern=NAME_PART)
        dataset = _text(raw.get("dataset"), where, "dataset", pattern=NAME_PART)
        discriminator = _text(raw.get("discriminator"), where, "discriminator", required=False, pattern=NAME_PART)
        scope_raw = _text(raw.get("ticker_scope"), where, "ticker_scope")
        scope = scope_raw.strip().lower()  # normalised once, here; everything else compares the constants
        if scope not in TICKER_SCOPES:
            raise where.error("ticker_scope", f"{scope_raw!r} is not allowed; use one of {', '.join(TICKER_SCOPES)}")
        silver = _silver(raw.get("silver"), where, scope)
        recipe = _recipe(raw.get("recipe"), where, scope, discriminator)
        if recipe.date_field is not None and silver.row_date is None:
            raise where.error("silver.row_date", "the recipe names a date_field, so the table needs a row_date column")
        entry = KeymapEntry(
            domain=domain,
            source=source,
            dataset=dataset,
            discriminator=discriminator,
            ticker_scope=scope,
            description=_text(raw.get("description"), where, "description"),
            docs_url=_text(raw.get("docs_url"), where, "docs_url", pattern=re.compile(r"^https?://\S+$")),
            silver=silver,
            recipe=recipe,
            index=index,
        )
        if entry.identity_key in seen:
            raise where.error(
                "dataset", f"identity {entry.identity_key!r} is already declared by entry #{seen[entry.identity_key]}"
            )
        seen[entry.identity_key] = index
        entries.append(entry)

    _check_shared_tables(entries, path)
    _check_asset_names(entries, path)
    _check_bulk(entries, path)
    _check_refresh_on(entries, path)
    return Keymap(version=version, entries=tuple(entries), path=path)


def _check_refresh_on(entries: list[KeymapEntry], path: str) -> None:
    """A calendar a refresh_on names is a global dataset with symbol and date columns. One the keymap lacks (a trimmed
    keymap) is allowed: the entry then follows its cadence, and the plan says why (pipeline.bronze.refresh)."""
    calendars = {e.dataset: e for e in entries if not e.per_ticker}
    per_ticker = {e.asset_name for e in entries if e.per_ticker}
    for e in entries:
        if e.recipe.refresh == "cross_check":  # refresh_on: the per-ticker entries it stands in for when they fail
            for name in e.recipe.refresh_on:
                if name not in per_ticker:
                    where = _Where(path, e.index, e.identity_key)
                    raise where.error("recipe.refresh_on", f"{name!r} is not a per_ticker entry (asset name)")
            continue
        for name in e.recipe.refresh_on:
            cal = calendars.get(name)
            if name == FILINGS_RHYTHM or cal is None:
                continue
            where = _Where(path, e.index, e.identity_key)
            if cal.per_ticker:
                raise where.error("recipe.refresh_on", f"{name!r} is not a global dataset")
            names = {c.name for c in cal.silver.columns}
            if not {"symbol", "date"} <= names:
                raise where.error("recipe.refresh_on", f"{name!r} needs columns symbol and date to name tickers")


def _check_shared_tables(entries: list[KeymapEntry], path: str) -> None:
    first: dict[str, KeymapEntry] = {}
    for entry in entries:
        other = first.setdefault(entry.silver.table, entry)
        if other is entry:
            continue
        where = _Where(path, entry.index, entry.identity_key)
        table = entry.silver.table
        if other.ticker_scope != entry.ticker_scope:
            raise where.error(
                "ticker_scope", f"shares silver table {table!r} with entry #{other.index} but has a different scope"
            )
        if other.silver.key != entry.silver.key:
            raise where.error(
                "silver.key",
                f"shares silver table {table!r} with entry #{other.index} but has key "
                f"{list(entry.silver.key)} instead of {list(other.silver.key)}",
            )
        same = ("columns", "row_date", "allow_future_dates")
        if any(getattr(other.silver, name) != getattr(entry.silver, name) for name in same):
            raise where.error(
                "silver.columns",
                f"shares silver table {table!r} with entry #{other.index} but declares "
                "different columns, row_date or allow_future_dates; entries sharing a table must declare the same",
            )
        if entry.discriminator and not any(
            c.name in entry.silver.key for c in entry.silver.columns if c.name not in ("ticker", entry.silver.row_date)
        ):
            raise where.error(
                "silver.key",
                f"table {table!r} is shared by several series; its key needs a column that "
                "tells them apart (e.g. the indicator name or period)",
            )


def _check_asset_names(entries: list[KeymapEntry], path: str) -> None:
    seen: dict[tuple[str, str], int] = {}
    for entry in entries:
        k = (entry.domain, entry.asset_name)
        if k in seen:
            raise _Where(path, entry.index, entry.identity_key).error(
                "dataset", f"asset key bronze/{entry.domain}/{entry.asset_name} collides with entry #{seen[k]}"
            )
        seen[k] = entry.index


def _check_bulk(entries: list[KeymapEntry], path: str) -> None:
    """A CSV entry's table is read with DuckDB's CSV reader, so no JSON entry may feed it; `bulk.replaces` must name a
    per_ticker entry."""
    formats: dict[str, KeymapEntry] = {}
    per_ticker = {e.asset_name for e in entries if e.per_ticker}
    for entry in entries:
        where = _Where(path, entry.index, entry.identity_key)
        other = formats.setdefault(entry.silver.table, entry)
        if other.recipe.format != entry.recipe.format:
            raise where.error(
                "recipe.format",
                f"shares silver table {entry.silver.table!r} with entry #{other.index}, which is "
                f"{other.recipe.format}; a table is read from one format",
            )
        replaces = entry.recipe.bulk.replaces if entry.recipe.bulk else None
        if replaces is not None and replaces not in per_ticker:
            raise where.error("recipe.bulk.replaces", f"{replaces!r} is not the asset name of a per_ticker entry")


def load_keymap(path: str | Path) -> Keymap:
    """Read and validate a keymap file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeymapError(f"{path}: cannot read keymap: {exc.strerror}") from None
    try:
        document = load_yaml(text)
    except DuplicateKey as exc:
        raise KeymapError(f"{path}: {exc}; YAML keeps only the last value, so say it once") from None
    except yaml.YAMLError as exc:
        raise KeymapError(f"{path}: not valid YAML: {exc}") from None
    return parse_keymap(document, str(path))
