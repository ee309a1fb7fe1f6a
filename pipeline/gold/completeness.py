"""Which tickers a Gold build leaves out because their Silver inputs are not complete yet.

Why: a Gold table built while Silver is half promoted (prices of 3 of 10 tickers promoted, the other 7 still
waiting in the ledger, no profile yet) is wrong for the tickers caught midway, and a fact table whose tickers are not
in `gold.dim_instrument` fails its blocking `tickers_in_dim` check only after the rows were written. So a build of a
per-ticker table leaves out the tickers that are not complete, names them, and keeps the rows it already holds for
them; the tickers it built are the complete ones. A ticker is incomplete for a table when

- one of the table's Silver inputs has promotable Bronze files of that ticker that are not promoted yet (the ledger
  `ops.file_ingestions` says Silver is behind what was fetched), or
- the table is checked against `gold.dim_instrument` (`tickers_in_dim`) and the ticker is not in it yet (before the
  dimension's first build: not among the tickers that build will hold). No Dagster dependency orders the dimension
  first in a run: it would make Dagster split the one Gold check step in two and evaluate the facts' checks before
  the facts are built. A ticker that reaches the dimension in the same run as its facts is added by the next build,
  which the Gold sensor launches, since the ticker now counts as moved.

The watermarks a build records leave the incomplete tickers out as well, so once they are complete their inputs read
as moved: the Gold sensor launches the build that adds them, and until then it sees nothing new for them (no
relaunch loop). Tables without a ticker (the macro table) are built whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import duckdb

from pipeline.gold.models import MODELS, GoldModel
from pipeline.gold.quality import GOLD_CHECKS
from pipeline.keymap.model import DatasetIdentity
from pipeline.ops.file_ingestions import PROMOTABLE

DIM_TABLE = "gold.dim_instrument"
SHOWN = 50  # incomplete tickers listed in a build's metadata (the count is always given)


def checked_against_dim(name: str) -> bool:
    """Whether the Gold table `name` has the blocking `tickers_in_dim` check."""
    return any(fn.__name__.startswith("check_tickers_in_dim") for fn in GOLD_CHECKS.get(name, ()))


def identity_ticker(text: str) -> str:
    """The ticker of a watermark or revision string (`<identity key>@...`); '' for a global input."""
    return DatasetIdentity.from_key(text.partition("@")[0]).ticker


def without(marks: Iterable[str], tickers: Mapping[str, str] | set[str]) -> list[str]:
    """`marks` (watermark, revision or input-state strings) minus those of `tickers`."""
    if not tickers:
        return list(marks)
    return [m for m in marks if identity_ticker(m) not in tickers]


def waiting_by_ticker(conn: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> dict[str, dict[str, int]]:
    """ticker -> {Silver table: promotable Bronze files not promoted yet}, over `tables` (per-ticker files only)."""
    rows = conn.execute(
        f"""
        SELECT ticker, silver_table, count(*) AS files
        FROM ops.file_ingestions
        WHERE {PROMOTABLE}
          AND silver_table IN (SELECT unnest(?))
          AND coalesce(ticker, '') <> ''
        GROUP BY ALL
    """,
        [sorted(set(tables))],
    ).fetchall()
    out: dict[str, dict[str, int]] = {}
    for ticker, table, files in rows:
        out.setdefault(ticker, {})[table] = int(files)
    return out


def dim_tickers(conn: duckdb.DuckDBPyConnection) -> set[str] | None:
    """The tickers of gold.dim_instrument; before its first build, those its first build will hold (its SQL over
    Silver, without the tickers whose inputs wait for promotion); None when its Silver inputs do not exist either."""
    exists = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'gold' AND table_name = 'dim_instrument'"
    ).fetchone()[0]
    if exists:
        return {r[0] for r in conn.execute(f"SELECT ticker FROM {DIM_TABLE}").fetchall()}
    dim = MODELS[DIM_TABLE.split(".")[1]]
    try:
        rows = conn.execute(f"SELECT DISTINCT ticker FROM (\n{dim.sql}\n)", dim.parameters(None)).fetchall()
    except duckdb.CatalogException:  # no stock list, no profile table yet
        return None
    return {r[0] for r in rows} - set(waiting_by_ticker(conn, dim.inputs))


def incomplete_tickers(
    conn: duckdb.DuckDBPyConnection,
    model: GoldModel,
    input_tickers: Iterable[str],
    *,
    waiting: Mapping[str, Mapping[str, int]] | None = None,
    dim: set[str] | None | bool = False,
) -> dict[str, str]:
    """ticker -> why it is left out of a build of `model` now. `input_tickers`: the tickers its inputs hold.

    `waiting` and `dim` may be passed in when one caller asks for several tables (read once: the sensor's tick);
    `dim=False` means "read it here"."""
    if not model.per_ticker:
        return {}
    if waiting is None:
        waiting = waiting_by_ticker(conn, model.inputs)
    out: dict[str, str] = {}
    for ticker, tables in sorted(waiting.items()):
        mine = {t: n for t, n in tables.items() if t in model.inputs}
        if mine:
            listed = ", ".join(f"{n} of silver.{t}" for t, n in sorted(mine.items()))
            out[ticker] = f"Bronze file(s) not promoted to Silver yet ({listed})"
    if checked_against_dim(model.name):
        known = dim_tickers(conn) if dim is False else dim
        for ticker in sorted(set(input_tickers) - {""} - known) if known is not None else ():
            out.setdefault(ticker, f"not in {DIM_TABLE} yet (no stock-list or profile row of it reached the dimension)")
    return out


def tickers_of(marks: Iterable[str]) -> set[str]:
    """The tickers that watermark strings name (without the global '')."""
    return {t for m in marks if (t := identity_ticker(m))}


def describe(incomplete: Mapping[str, str], limit: int = 5) -> str:
    """One line naming the incomplete tickers (the first `limit`) and why."""
    if not incomplete:
        return "every ticker's inputs are complete"
    shown = "; ".join(f"{t}: {why}" for t, why in list(sorted(incomplete.items()))[:limit])
    more = f" (+{len(incomplete) - limit} more)" if len(incomplete) > limit else ""
    return f"{len(incomplete)} ticker(s) left out, inputs incomplete: {shown}{more}"
