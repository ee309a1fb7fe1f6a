"""The dataset keymap: every loader rule with a broken copy of the shipped file, the shipped file itself, and the
value objects (identity, watermark string, entry matching, find/require)."""

from __future__ import annotations

import copy
import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from pipeline.keymap import (
    GLOBAL,
    PER_TICKER,
    DatasetIdentity,
    DatasetWatermark,
    Keymap,
    KeymapError,
    load_keymap,
    parse_keymap,
)
from pipeline.settings import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "dataset_keymap.yaml"


@functools.cache
def _shipped_doc() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def shipped_doc() -> dict[str, Any]:
    return copy.deepcopy(_shipped_doc())


def index_of(doc: dict[str, Any], dataset: str, discriminator: str = "") -> int:
    for i, raw in enumerate(doc["datasets"]):
        if raw["dataset"] == dataset and (raw.get("discriminator") or "") == discriminator:
            return i
    raise LookupError(f"{dataset}/{discriminator} is not in the shipped keymap")


def entry(doc: dict[str, Any], dataset: str, discriminator: str = "") -> dict[str, Any]:
    return doc["datasets"][index_of(doc, dataset, discriminator)]


def column(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in raw["silver"]["columns"] if c["name"] == name)


# ---- broken keymaps ------------------------------------------------------------------------------------------
# Each case: mutate one thing in the shipped keymap; the error names the file, the entry (index + identity) and
# the field. `at` is (dataset, discriminator) of the entry the error must name, or an index for appended entries.


def _set(dataset: str, disc: str, path: str, value: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        target = entry(doc, dataset, disc)
        *parents, last = path.split(".")
        for p in parents:
            target = target[p]
        target[last] = value

    return mutate


def _delete(dataset: str, disc: str, path: str) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        target = entry(doc, dataset, disc)
        *parents, last = path.split(".")
        for p in parents:
            target = target[p]
        del target[last]

    return mutate


def _rename(dataset: str, disc: str, path: str, new: str) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        target = entry(doc, dataset, disc)
        *parents, last = path.split(".")
        for p in parents:
            target = target[p]
        target[new] = target.pop(last)

    return mutate


def _duplicate_stock_list(doc: dict) -> None:
    doc["datasets"].append(copy.deepcopy(entry(doc, "stock-list")))


def _column_type(dataset: str, disc: str, name: str, ctype: str) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        column(entry(doc, dataset, disc), name)["type"] = ctype

    return mutate


def _column_field(dataset: str, disc: str, name: str, field: str, value: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        column(entry(doc, dataset, disc), name)[field] = value

    return mutate


def _add_column(dataset: str, disc: str, col: dict) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        entry(doc, dataset, disc)["silver"]["columns"].append(col)

    return mutate


def _economics_key_date_only(doc: dict) -> None:
    for raw in doc["datasets"]:
        if raw["dataset"] == "economic-indicators":
            raw["silver"]["key"] = ["date"]


RISK = "market|fmp|market-risk-premium|"
STOCKS = "market|fmp|stock-list|"
TREASURY = "market|fmp|treasury-rates|"
GDP = "economics|fmp|economic-indicators|GDP"
REAL_GDP = "economics|fmp|economic-indicators|realGDP"
CPI = "economics|fmp|economic-indicators|CPI"
PROFILE = "company|fmp|profile|"
EOD = "prices|fmp|historical-price-eod|"

BROKEN: list[tuple[str, Callable[[dict], None], tuple[str, str] | int, str, str, str]] = [
    # id, mutation, entry, identity, field, part of the problem text
    (
        "missing-required-field",
        _delete("market-risk-premium", "", "description"),
        ("market-risk-premium", ""),
        RISK,
        "description",
        "required",
    ),
    (
        "empty-required-field",
        _set("market-risk-premium", "", "docs_url", "  "),
        ("market-risk-premium", ""),
        RISK,
        "docs_url",
        "required",
    ),
    (
        "empty-domain",
        _set("market-risk-premium", "", "domain", ""),
        ("market-risk-premium", ""),
        "|fmp|market-risk-premium|",
        "domain",
        "required",
    ),
    (
        "hostile-dataset-name",
        _set("market-risk-premium", "", "dataset", "../etc"),
        ("market-risk-premium", ""),
        "market|fmp|../etc|",
        "dataset",
        "does not match",
    ),
    (
        "ticker-scope-not-allowed",
        _set("market-risk-premium", "", "ticker_scope", "sometimes"),
        ("market-risk-premium", ""),
        RISK,
        "ticker_scope",
        "per_ticker, global",
    ),
    (
        "key-empty",
        _set("market-risk-premium", "", "silver.key", []),
        ("market-risk-premium", ""),
        RISK,
        "silver.key",
        "non-empty",
    ),
    (
        "key-not-a-column",
        _set("market-risk-premium", "", "silver.key", ["country", "region"]),
        ("market-risk-premium", ""),
        RISK,
        "silver.key",
        "'region' is not a declared column",
    ),
    (
        "per-ticker-key-without-ticker",
        _set("profile", "", "silver.key", ["company_name"]),
        ("profile", ""),
        PROFILE,
        "silver.key",
        "'ticker'",
    ),
    ("duplicate-identity", _duplicate_stock_list, -1, STOCKS, "dataset", "already declared by entry #0"),
    (
        "shared-table-key-differs",
        _set("economic-indicators", "realGDP", "silver.key", ["date", "name"]),
        ("economic-indicators", "realGDP"),
        REAL_GDP,
        "silver.key",
        "shares silver table 'fmp_economic_indicator'",
    ),
    (
        "shared-table-columns-differ",
        _column_type("economic-indicators", "CPI", "value", "varchar"),
        ("economic-indicators", "CPI"),
        CPI,
        "silver.columns",
        "shares silver table",
    ),
    (
        "shared-table-scope-differs",
        _set("historical-price-eod", "", "silver.table", "fmp_economic_indicator"),
        ("historical-price-eod", ""),
        EOD,
        "ticker_scope",
        "different scope",
    ),
    (
        "shared-table-key-cannot-tell-series-apart",
        _economics_key_date_only,
        ("economic-indicators", "realGDP"),
        REAL_GDP,
        "silver.key",
        "tells them apart",
    ),
    (
        "column-type-not-in-set",
        _column_type("market-risk-premium", "", "continent", "text"),
        ("market-risk-premium", ""),
        RISK,
        "silver.columns[1].type",
        "not a column type",
    ),
    (
        "table-name-unsafe",
        _set("market-risk-premium", "", "silver.table", "risk; DROP TABLE x"),
        ("market-risk-premium", ""),
        RISK,
        "silver.table",
        "does not match",
    ),
    (
        "table-name-uppercase",
        _set("market-risk-premium", "", "silver.table", "RiskPremium"),
        ("market-risk-premium", ""),
        RISK,
        "silver.table",
        "does not match",
    ),
    (
        "column-name-unsafe",
        _column_field("market-risk-premium", "", "continent", "name", "conti-nent"),
        ("market-risk-premium", ""),
        RISK,
        "silver.columns[1].name",
        "does not match",
    ),
    (
        "column-declared-twice",
        _add_column("market-risk-premium", "", {"name": "continent", "type": "varchar"}),
        ("market-risk-premium", ""),
        RISK,
        "silver.columns[4].name",
        "declared twice",
    ),
    (
        "column-reserved",
        _add_column("market-risk-premium", "", {"name": "run_id", "type": "varchar"}),
        ("market-risk-premium", ""),
        RISK,
        "silver.columns[4].name",
        "lineage column",
    ),
    (
        "row-date-not-a-column",
        _set("treasury-rates", "", "silver.row_date", "day"),
        ("treasury-rates", ""),
        TREASURY,
        "silver.row_date",
        "not a declared column",
    ),
    (
        "placeholder-not-in-set",
        _set("treasury-rates", "", "recipe.query", {"from": "__yesterday__", "to": "__to__"}),
        ("treasury-rates", ""),
        TREASURY,
        "recipe.query.from",
        "unknown placeholder __yesterday__",
    ),
    (
        "placeholder-typo-with-underscore",
        _set("treasury-rates", "", "recipe.query", {"from": "__from_date__", "to": "__to__"}),
        ("treasury-rates", ""),
        TREASURY,
        "recipe.query.from",
        "unknown placeholder __from_date__",
    ),
    (
        "ticker-placeholder-in-global",
        _set("market-risk-premium", "", "recipe.query", {"symbol": "__ticker__"}),
        ("market-risk-premium", ""),
        RISK,
        "recipe.query",
        "only allowed in per_ticker",
    ),
    (
        "apikey-in-query",
        _set("market-risk-premium", "", "recipe.query", {"apikey": "abc"}),
        ("market-risk-premium", ""),
        RISK,
        "recipe.query.apikey",
        "added by the client",
    ),
    (
        "min-age-negative",
        _set("market-risk-premium", "", "recipe.min_age_days", -1),
        ("market-risk-premium", ""),
        RISK,
        "recipe.min_age_days",
        ">= 0",
    ),
    (
        "min-age-text",
        _set("market-risk-premium", "", "recipe.min_age_days", "7"),
        ("market-risk-premium", ""),
        RISK,
        "recipe.min_age_days",
        ">= 0",
    ),
    (
        "min-age-bool",
        _set("market-risk-premium", "", "recipe.min_age_days", True),
        ("market-risk-premium", ""),
        RISK,
        "recipe.min_age_days",
        ">= 0",
    ),
    (
        "min-age-missing",
        _delete("market-risk-premium", "", "recipe.min_age_days"),
        ("market-risk-premium", ""),
        RISK,
        "recipe.min_age_days",
        "required",
    ),
    (
        "windowed-without-history",
        _delete("treasury-rates", "", "recipe.history_start"),
        ("treasury-rates", ""),
        TREASURY,
        "recipe.history_start",
        "exactly one",
    ),
    (
        "min-plan-not-a-plan",
        _set("market-risk-premium", "", "recipe.min_plan", "gold"),
        ("market-risk-premium", ""),
        RISK,
        "recipe.min_plan",
        "basic, starter, premium, ultimate",
    ),
    (
        "typo-entry-field",
        _rename("market-risk-premium", "", "ticker_scope", "ticker_scop"),
        ("market-risk-premium", ""),
        RISK,
        "ticker_scop",
        "unknown field",
    ),
    (
        "typo-silver-field",
        _rename("market-risk-premium", "", "silver.key", "keys"),
        ("market-risk-premium", ""),
        RISK,
        "silver.keys",
        "unknown field",
    ),
    (
        "typo-recipe-field",
        _rename("market-risk-premium", "", "recipe.min_age_days", "min_age_day"),
        ("market-risk-premium", ""),
        RISK,
        "recipe.min_age_day",
        "unknown field",
    ),
    (
        "typo-column-field",
        _column_field("market-risk-premium", "", "country", "nulable", False),
        ("market-risk-premium", ""),
        RISK,
        "silver.columns[0].nulable",
        "unknown field",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "at", "identity", "field", "problem"), [pytest.param(*case[1:], id=case[0]) for case in BROKEN]
)
def test_broken_keymap_names_file_entry_and_field(
    mutate: Callable[[dict], None], at: tuple[str, str] | int, identity: str, field: str, problem: str
) -> None:
    doc = shipped_doc()
    index = at if isinstance(at, int) else index_of(doc, *at)
    mutate(doc)
    if index < 0:
        index += len(doc["datasets"])
    with pytest.raises(KeymapError) as info:
        parse_keymap(doc, "test.yaml")
    message = str(info.value)
    assert message.startswith("test.yaml: ")
    assert f"entry #{index} " in message
    assert f"({identity}" in message
    assert f"field '{field}'" in message
    assert problem in message


def test_at_least_fourteen_broken_keymaps() -> None:
    assert len(BROKEN) >= 14


@pytest.mark.parametrize("version", ["1", 1.5, True, None])
def test_version_must_be_an_integer(version: Any) -> None:
    doc = shipped_doc()
    doc["version"] = version
    with pytest.raises(KeymapError, match=r"^test\.yaml: field 'version': must be an integer"):
        parse_keymap(doc, "test.yaml")


def test_unknown_top_level_field() -> None:
    doc = shipped_doc()
    doc["dataset"] = []
    with pytest.raises(KeymapError, match=r"^test\.yaml: field 'dataset': unknown top-level field"):
        parse_keymap(doc, "test.yaml")


def test_ticker_scope_is_normalised_once() -> None:
    doc = shipped_doc()
    entry(doc, "market-risk-premium")["ticker_scope"] = " Global "
    entry(doc, "profile")["ticker_scope"] = "PER_TICKER"
    keymap = parse_keymap(doc, "test.yaml")
    by_dataset = {e.dataset: e for e in keymap}
    assert by_dataset["market-risk-premium"].ticker_scope == GLOBAL
    assert by_dataset["profile"].ticker_scope == PER_TICKER and by_dataset["profile"].per_ticker


def test_load_keymap_names_a_missing_or_invalid_file(tmp_path) -> None:
    with pytest.raises(KeymapError, match="cannot read keymap"):
        load_keymap(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndatasets: [\n")
    with pytest.raises(KeymapError, match=r"bad\.yaml: not valid YAML"):
        load_keymap(bad)
    broken = tmp_path / "broken.yaml"
    doc = shipped_doc()
    entry(doc, "stock-list")["recipe"]["min_age_days"] = -3
    broken.write_text(yaml.safe_dump(doc))
    with pytest.raises(
        KeymapError, match=rf"^{broken}: entry #0 \(market\|fmp\|stock-list\|\): field 'recipe.min_age_days'"
    ):
        load_keymap(broken)


# ---- the shipped keymap ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keymap() -> Keymap:
    return load_keymap(SHIPPED)


def test_shipped_keymap_loads(keymap: Keymap) -> None:
    assert keymap.version == 1
    assert len(keymap) >= 25
    assert keymap.path == str(SHIPPED)
    assert [e.index for e in keymap] == list(range(len(keymap)))


def test_shipped_keymap_market_group(keymap: Keymap) -> None:
    datasets = {e.dataset: e for e in keymap if e.domain == "market"}
    for name in ("stock-list", "treasury-rates", "market-risk-premium"):
        assert datasets[name].ticker_scope == GLOBAL
    assert any(e.silver.table == "fmp_sector_performance" for e in keymap)
    assert datasets["treasury-rates"].recipe.is_windowed


def test_shipped_keymap_economic_indicators_share_one_table(keymap: Keymap) -> None:
    indicators = [e for e in keymap if e.dataset == "economic-indicators"]
    assert len(indicators) >= 4
    assert len({e.discriminator for e in indicators}) == len(indicators)
    assert {e.silver.table for e in indicators} == {"fmp_economic_indicator"}
    assert {e.silver.key for e in indicators} == {("name", "date")}
    assert all(not e.per_ticker for e in indicators)


def test_shipped_keymap_company_group(keymap: Keymap) -> None:
    company = {e.dataset: e for e in keymap if e.domain == "company"}
    for name in ("profile", "stock-peers", "dividends", "splits"):
        assert company[name].per_ticker
        assert "ticker" in company[name].silver.key


@pytest.mark.parametrize(
    "dataset", ["income-statement", "balance-sheet-statement", "cash-flow-statement", "key-metrics", "ratios"]
)
def test_shipped_keymap_statements_annual_and_quarterly(keymap: Keymap, dataset: str) -> None:
    entries = [e for e in keymap if e.dataset == dataset]
    assert {e.discriminator for e in entries} == {"annual", "quarter"}
    assert len({e.silver.table for e in entries}) == 1
    for e in entries:
        assert e.per_ticker and e.silver.key == ("ticker", "date", "period")
        assert e.recipe.row_limit is not None


def test_shipped_keymap_daily_eod_prices(keymap: Keymap) -> None:
    eod = keymap.require(DatasetIdentity("prices", "fmp", "historical-price-eod", "", "AAPL"))
    query = dict(eod.recipe.query)
    assert query["symbol"] == "__ticker__" and query["from"] == "__from__" and query["to"] == "__to__"
    assert eod.recipe.is_windowed and eod.recipe.date_field
    assert eod.silver.key == ("ticker", "date") and eod.silver.row_date == "date"
    assert not eod.silver.column("date").nullable  # key columns are made NOT NULL


def test_shipped_keymap_asset_names_unique(keymap: Keymap) -> None:
    names = [(e.domain, e.asset_name) for e in keymap]
    assert len(names) == len(set(names))
    assert (
        keymap.require(DatasetIdentity("economics", "fmp", "economic-indicators", "GDP")).asset_name
        == "economic-indicators__GDP"
    )


# ---- value objects --------------------------------------------------------------------------------------------


def test_identity_normalises_missing_parts() -> None:
    a = DatasetIdentity("market", "fmp", "stock-list", None, None)  # type: ignore[arg-type]
    b = DatasetIdentity("market", "fmp", "stock-list")
    assert a == b and hash(a) == hash(b)
    assert a.discriminator == "" and a.ticker == ""
    assert a.key == str(a) == "market|fmp|stock-list||"
    t = b.with_ticker("AAPL")
    assert t.key == "market|fmp|stock-list||AAPL"
    assert t.without_ticker() == b
    assert sorted([t, b]) == [b, t]


def test_watermark_canonical_string() -> None:
    ident = DatasetIdentity("prices", "fmp", "historical-price-eod", "", "AAPL")
    mark = DatasetWatermark(ident, dt.date(2024, 1, 2), dt.date(2024, 3, 31))
    assert str(mark) == "prices|fmp|historical-price-eod||AAPL@coverage_from=2024-01-02;coverage_to=2024-03-31"
    empty = DatasetWatermark(DatasetIdentity("market", "fmp", "stock-list"))
    assert str(empty) == "market|fmp|stock-list||@coverage_from=;coverage_to="


@pytest.mark.parametrize(
    "mark",
    [
        DatasetWatermark(
            DatasetIdentity("prices", "fmp", "historical-price-eod", "", "BRK.B"),
            dt.date(2020, 1, 1),
            dt.date(2024, 12, 31),
        ),
        DatasetWatermark(DatasetIdentity("economics", "fmp", "economic-indicators", "GDP"), None, dt.date(2024, 6, 30)),
        DatasetWatermark(DatasetIdentity("market", "fmp", "stock-list")),
    ],
)
def test_watermark_parse_round_trip(mark: DatasetWatermark) -> None:
    text = str(mark)
    assert DatasetWatermark.parse(text) == mark
    assert str(DatasetWatermark.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "market|fmp|stock-list",
        "a|b|c|d@coverage_from=;coverage_to=",
        "a|b|c|d|e@coverage_from=2024-13-01;coverage_to=",
    ],
)
def test_watermark_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        DatasetWatermark.parse(text)


def test_entry_matches_identity_by_scope(keymap: Keymap) -> None:
    stock_list = keymap.require(DatasetIdentity("market", "fmp", "stock-list"))
    profile = keymap.require(DatasetIdentity("company", "fmp", "profile", "", "AAPL"))
    assert stock_list.matches_identity(DatasetIdentity("market", "fmp", "stock-list"))
    assert not stock_list.matches_identity(DatasetIdentity("market", "fmp", "stock-list", "", "AAPL"))
    assert profile.matches_identity(DatasetIdentity("company", "fmp", "profile", "", "MSFT"))
    assert not profile.matches_identity(DatasetIdentity("company", "fmp", "profile"))
    assert not profile.matches_identity(DatasetIdentity("company", "fmp", "dividends", "", "MSFT"))
    income_annual = keymap.require(DatasetIdentity("fundamentals", "fmp", "income-statement", "annual", "AAPL"))
    assert not income_annual.matches_identity(
        DatasetIdentity("fundamentals", "fmp", "income-statement", "quarter", "AAPL")
    )


def test_keymap_find_and_require(keymap: Keymap) -> None:
    assert keymap.find(DatasetIdentity("company", "fmp", "profile")) is None  # per-ticker entry needs a ticker
    assert keymap.find(DatasetIdentity("market", "fmp", "no-such-dataset")) is None
    ident = DatasetIdentity("market", "fmp", "stock-list", "", "AAPL")  # global entry takes no ticker
    with pytest.raises(KeyError) as info:
        keymap.require(ident)
    assert "market|fmp|stock-list||AAPL" in str(info.value)
    assert str(SHIPPED) in str(info.value)


def test_keymap_table_helpers(keymap: Keymap) -> None:
    tables = keymap.tables()
    assert "fmp_economic_indicator" in tables and "fmp_price_eod" in tables
    assert keymap.table_scope("fmp_price_eod") == PER_TICKER
    assert keymap.table_scope("fmp_economic_indicator") == GLOBAL
    assert len(keymap.entries_for_table("fmp_economic_indicator")) >= 4
    assert len(list(keymap.per_ticker_entries())) + len(list(keymap.global_entries())) == len(keymap)


# ---- duplicate keys (issue 18, item 12) ------------------------------------------------------------------------


def _with_line_repeated(tmp_path, after: str, line: str) -> tuple[Any, int]:
    """The shipped keymap with `line` inserted right after the first line that equals `after`; (path, its line no)."""
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    at = lines.index(after) + 1
    lines.insert(at, line)
    path = tmp_path / "dup.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, at + 1


def test_a_repeated_field_is_refused_naming_the_key_and_the_line(tmp_path) -> None:
    """A repeated `min_age_days` silently kept the last value."""
    path, line = _with_line_repeated(tmp_path, "    min_age_days: 7", "    min_age_days: 1")
    with pytest.raises(KeymapError) as info:
        load_keymap(path)
    assert str(info.value) == (
        f"{path}: line {line}: duplicate key 'min_age_days' (first set on line {line - 1}); "
        "YAML keeps only the last value, so say it once"
    )


def test_a_repeated_dataset_is_refused_at_its_own_line(tmp_path) -> None:
    """A repeated `dataset` was blamed on whichever entry later collided with the value that survived."""
    path, line = _with_line_repeated(tmp_path, "  dataset: stock-list", "  dataset: profile")
    with pytest.raises(KeymapError, match=rf"^{path}: line {line}: duplicate key 'dataset' \(first set on line "):
        load_keymap(path)
