"""A bulk CSV body, checked before it becomes Bronze data: whole, with the header the keymap expects.

FMP's bulk endpoints answer CSV of up to 69 MB, three of them without a Content-Length (fmp_api.md 2.7), so a body
cut short by a dropped connection can arrive as a "successful" 200: its last line ends in the middle of a row. A
renamed or dropped column would silently turn a value NULL (or shift it) in Silver. Each of these makes the file an
error record (`invalid_body`, never promotable) whose message names the file and what is wrong; the bytes are still
kept beside it as served, and nothing stored earlier is touched.

What counts as whole: a header row, every row with as many fields as the header, and a body ending in a newline
(a last line without one may be a value cut in the middle, which no field count can see). Column order is free and
extra columns are kept out of Silver (Silver reads the file by column name), so only a missing column is a changed
header.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.fmp.client import FetchResult
    from pipeline.keymap.model import KeymapEntry


@dataclass(frozen=True)
class CsvCheck:
    """What a CSV body holds, or why it cannot be data (`problem`)."""

    rows: int
    header: tuple[str, ...]
    coverage_from: dt.date | None = None
    coverage_to: dt.date | None = None
    problem: str | None = None


def check_csv(body: bytes, expected: Sequence[str], date_field: str | None = None) -> CsvCheck:
    """Check one CSV body against the API fields the keymap reads from it (`expected`); count its rows and the
    range of `date_field`."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return CsvCheck(0, (), problem=f"is not UTF-8 text ({exc.reason} at byte {exc.start})")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = tuple(next(reader))
    except StopIteration:
        return CsvCheck(0, (), problem="has no header row")
    except csv.Error as exc:
        return CsvCheck(0, (), problem=f"has an unreadable header ({exc})")
    missing = [name for name in expected if name not in header]
    if missing:
        return CsvCheck(
            0,
            header,
            problem=f"has a changed header: {', '.join(missing)} missing (header: {','.join(header)[:300]})",
        )
    at = header.index(date_field) if date_field and date_field in header else None
    rows = 0
    low = high = None
    try:
        for line, row in enumerate(reader, start=2):
            if not row:
                continue  # a blank line
            if len(row) != len(header):
                where = "last line" if reader.line_num >= text.count("\n") else f"line {line}"
                return CsvCheck(
                    rows,
                    header,
                    problem=f"is cut short or malformed: {where} has {len(row)} field(s), the header {len(header)}",
                )
            rows += 1
            if at is not None:
                value = row[at][:10]
                low = value if low is None or value < low else low
                high = value if high is None or value > high else high
    except csv.Error as exc:
        return CsvCheck(rows, header, problem=f"is cut short or malformed at line {reader.line_num} ({exc})")
    if not text.endswith("\n"):
        return CsvCheck(rows, header, problem="is cut short: its last line does not end with a newline")
    return CsvCheck(rows, header, _date(low), _date(high))


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class CsvView:
    """How a successful response of a CSV recipe becomes a Bronze envelope: its body file, rows and coverage, or
    the error (`invalid_body`) that keeps it out of Silver."""

    body_file: str | None  # `<file_id>.csv`, None for the JSON `[]` FMP may answer instead of an empty CSV
    rows: int
    coverage_from: dt.date | None = None
    coverage_to: dt.date | None = None
    problem: str | None = None

    @property
    def error_class(self) -> str | None:
        return "invalid_body" if self.problem else None


def expected_fields(entry: KeymapEntry) -> list[str]:
    """The API fields Silver reads from an entry's CSV (a per-ticker entry's ticker comes from the request)."""
    return [c.api for c in entry.silver.columns if not (entry.per_ticker and c.name == "ticker")]


def csv_view(result: FetchResult, entry: KeymapEntry, file_id: str) -> CsvView:
    """Check a successful response of a CSV recipe; a problem names the Bronze file and the request."""
    name = f"{file_id}.csv"
    if result.content_format != "csv":
        if result.content == []:
            return CsvView(None, 0)  # `[]`: FMP's empty answer (fmp_api.md 2.4), nothing to keep as CSV
        return CsvView(
            None, 0, problem=f"{entry.asset_name} {result.url} (Bronze file {file_id}): a JSON body, not CSV"
        )
    check = check_csv(result.body, expected_fields(entry), entry.recipe.date_field)
    problem = f"{entry.asset_name} {result.url} (Bronze file {name}): CSV {check.problem}" if check.problem else None
    return CsvView(name, check.rows, check.coverage_from, check.coverage_to, problem)
