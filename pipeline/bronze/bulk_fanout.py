"""A bulk day's rows as the per-ticker files of the entry it replaces, so the rest of the warehouse is unchanged.

When `eod-bulk` `replaces` the daily as-traded requests (`pipeline.keymap.bulk`), each good bulk file also gives,
for every ticker whose history is held without a gap up to the day before the run's first bulk day, one small
per-ticker envelope of the replaced entry with that ticker's row, under the replaced entry's API names. These are
*derived* Bronze files: `request.path` is the bulk path, `notes` name the bulk file they come from, `attempts` and
`bytes` are 0 (nothing was requested or downloaded for them: the bulk file counted once), and `body_sha256` is the
bulk body's. With them the per-ticker coverage, its Silver table (`fmp_price_eod_as_traded`, partitioned by
ticker), Gold's per-ticker incremental builds and the planner's watermarks all work as for a per-ticker response:
FMP's own answer stays in the bulk CSV (and `silver.fmp_eod_bulk`), the derived files only route its rows.

The values are the bulk file's text, cast by Silver's usual rules; on the newest date the bulk `close` is the
as-traded close (fmp_api.md 3.2, last bullet), which is why only the newest session of a run is fanned out (an older
day fetched later may be split-adjusted: it stays in the bulk's own table, and the tickers' own requests fill it).
A ticker missing from the bulk day (halted, delisted) gets no file: its coverage stops, and its own request, no
longer replaced, fills the gap on the next run.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from collections.abc import Mapping

from pipeline.bronze.envelope import BronzeEnvelope, RequestInfo, new_file_id
from pipeline.keymap.model import KeymapEntry


def field_map(bulk: KeymapEntry, replaced: KeymapEntry) -> dict[str, str]:
    """Replaced entry's API field -> the bulk CSV column holding the same Silver column (matched by column name)."""
    by_name = {c.name: c.api for c in bulk.silver.columns}
    return {c.api: by_name[c.name] for c in replaced.silver.columns if c.name in by_name and c.name != "ticker"}


def derived_envelopes(
    bulk_envelope: BronzeEnvelope,
    body: bytes,
    bulk: KeymapEntry,
    replaced: KeymapEntry,
    eligible: Mapping[str, dt.date],
) -> list[BronzeEnvelope]:
    """One envelope of `replaced` per eligible ticker (ticker -> the day its history is held to) of a good bulk file."""
    if not bulk_envelope.can_promote or not eligible:
        return []
    fields = field_map(bulk, replaced)
    symbol = next(c.api for c in bulk.silver.columns if c.name == "ticker")
    date_field = replaced.recipe.date_field
    out: list[BronzeEnvelope] = []
    for row in csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")):
        ticker = row.get(symbol) or ""
        if ticker not in eligible:
            continue
        content = [{"symbol": ticker, **{api: row.get(column) for api, column in fields.items()}}]
        day = dt.date.fromisoformat(content[0][date_field][:10]) if date_field and content[0].get(date_field) else None
        request = bulk_envelope.request
        out.append(
            dataclasses.replace(
                bulk_envelope,
                file_id=new_file_id(),
                identity=replaced.identity.with_ticker(ticker),
                request=RequestInfo(request.path, request.url, dict(request.params), None, request.as_of, day, day),
                attempts=0,
                bytes=0,
                wire_bytes=0,
                content_format="json",
                content=content,
                row_count=1,
                coverage_from=day,
                coverage_to=day,
                notes=(f"derived from bulk file {bulk_envelope.file_id} ({bulk.asset_name}): no request of its own",),
                body_file=None,
                raw_body=None,
            )
        )
    return out
