"""Routes of FMP's bulk endpoints (fmp_api.md 3.2): the whole universe in one CSV per date, part or (year, period).

Every bulk answer is built from the same rows the per-ticker routes serve, so a bulk day holds exactly what the
per-ticker requests give for that day:
- `eod-bulk?date=`: `symbol,date,open,low,high,close,adjClose,volume` (2.7), one row per symbol that traded that
  day. `open..close` and `volume` are split-adjusted on the basis of `as_of` (the `/full` bar): on the newest date
  that is also the as-traded bar (3.2, last bullet: adjustments only apply to dates before a split), on an older
  date with a split since, it is not. `adjClose` is the dividend-adjusted close (`/dividend-adjusted`).
- `profile-bulk?part=`: the profile rows of one of four contiguous parts of the symbol list; part 4 and later are a
  400 (2.4: "Bulk `part` past the end").
- `income-statement-bulk` (balance sheet, cash flow) `?year=&period=`: the statements of fiscal year `year` and
  period FY or Q1-Q4 (`quarter` is a 400: 2.5), with the `cik, filingDate, acceptedDate` they carry.
The traps of 3.2 that apply here: every value is text in the CSV (numbers as FMP's JSON writes them, null as an
empty field); a plan without the endpoint gets 402 Restricted Endpoint (`SampleSource.plan`, from the plans table:
eod-bulk is Ultimate only); a throttled call (`bulk_calls_per_minute`) gets HTTP 200 with the JSON body
`{"Error Message": "Limit Reach. This is a bulk endpoint..."}` instead of CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pipeline.fmp.sample.wire import QueryError, SampleResponse, parse_date, response

if TYPE_CHECKING:
    from pipeline.fmp.sample.source import SampleSource

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
PROFILE_PARTS = 4  # profile-bulk parts 0-3 (fmp_api.md 3.2)
EOD_BULK_COLUMNS = ("symbol", "date", "open", "low", "high", "close", "adjClose", "volume")  # fmp_api.md 2.7
# fmp_api.md 3.2 traps: a throttled bulk call is HTTP 200 with this JSON body
BULK_LIMIT_MESSAGE = (
    "Limit Reach. This is a bulk endpoint, please upgrade your plan or visit our documentation for more details"
)

Handler = Callable[["SampleSource", Mapping[str, str]], SampleResponse]


def csv_text(value: Any) -> str:
    """One CSV field as FMP writes it: text; a number as its JSON spelling, null as an empty field."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return str(value)


def csv_response(columns: tuple[str, ...] | list[str], rows: list[dict[str, Any]]) -> SampleResponse:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([csv_text(row.get(c)) for c in columns] for row in rows)
    answer = response(200, out.getvalue().encode("utf-8"))
    return SampleResponse(200, answer.body, {**answer.headers, "content-type": CSV_CONTENT_TYPE})


def _rows(source: SampleSource, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """The JSON rows a per-ticker route answers (the single source of the numbers)."""
    from pipeline.fmp.sample.ticker_routes import TICKER_ROUTES

    answer = TICKER_ROUTES[path](source, params)
    return json.loads(answer.body) if answer.status_code == 200 else []


def _eod_bulk(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    day = parse_date(params, "date")
    if day is None:
        raise QueryError("date")
    rows = []
    for symbol in source.tickers:
        window = {"symbol": symbol, "from": day.isoformat(), "to": day.isoformat()}
        bar = _rows(source, "historical-price-eod/full", window)
        if not bar:
            continue  # not trading that day (before its first trade, or no session)
        total = _rows(source, "historical-price-eod/dividend-adjusted", window)
        b = bar[0]
        rows.append(
            {
                "symbol": symbol,
                "date": b["date"],
                "open": b["open"],
                "low": b["low"],
                "high": b["high"],
                "close": b["close"],
                "adjClose": total[0]["adjClose"] if total else None,
                "volume": b["volume"],
            }
        )
    return csv_response(EOD_BULK_COLUMNS, rows)


def _part(params: Mapping[str, str]) -> int:
    raw = params.get("part", "")
    if not raw.isdigit() or int(raw) >= PROFILE_PARTS:
        raise QueryError("part")  # fmp_api.md 2.4: a part past the end is a 400
    return int(raw)


def _profile_bulk(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    part = _part(params)
    size = math.ceil(len(source.tickers) / PROFILE_PARTS)
    rows = [
        row for s in source.tickers[part * size : (part + 1) * size] for row in _rows(source, "profile", {"symbol": s})
    ]
    return csv_response(_columns(rows), rows)


def _statement_bulk(path: str) -> Handler:
    def handler(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
        year, period = params.get("year", ""), params.get("period", "")
        if not year.isdigit():
            raise QueryError("year")
        if period not in ("FY", "Q1", "Q2", "Q3", "Q4"):
            raise QueryError("period")  # fmp_api.md 2.5: bulk endpoints do not accept `quarter`
        query = {"period": "annual" if period == "FY" else period, "limit": "1000"}
        rows = [
            row
            for symbol in source.tickers
            for row in _rows(source, path, {**query, "symbol": symbol})
            if str(row.get("fiscalYear")) == year and row.get("period") == period
        ]
        if not rows:  # a (year, period) nobody filed yet: the header alone, as FMP's columns never depend on rows
            rows_for_header = next(
                (r for s in source.tickers if (r := _rows(source, path, {"symbol": s, "period": "annual"}))), []
            )
            return csv_response(_columns(rows_for_header[:1]), [])
        return csv_response(_columns(rows), rows)

    return handler


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for row in rows for k in row)) or ["symbol"]


def bulk_limit_response() -> SampleResponse:
    return response(200, json.dumps({"Error Message": BULK_LIMIT_MESSAGE}, indent=2).encode())


BULK_ROUTES: dict[str, Handler] = {
    "eod-bulk": _eod_bulk,
    "profile-bulk": _profile_bulk,
    "income-statement-bulk": _statement_bulk("income-statement"),
    "balance-sheet-statement-bulk": _statement_bulk("balance-sheet-statement"),
    "cash-flow-statement-bulk": _statement_bulk("cash-flow-statement"),
}
