"""The one ticker rule: which symbols the pipeline accepts, and the message that says so.

Tickers travel into file paths (Bronze), URLs, Dagster partition keys and SQL, so they are kept to a safe
alphabet. Settings (`PIPELINE_TICKERS`, `--tickers`), the Bronze store, the universe query over the Silver stock
list and the sample source all use this module, so a symbol that passes one of them passes all of them, and
the message that refuses a symbol describes exactly the rule that refused it.

FMP spells class shares `BRK-B` (a dotted `BRK.B` answers `[]`), indexes `^GSPC`, currencies and futures
`EURUSD=X` / `GC=F`, foreign listings `7203.T` (fmp_api.md section 2.4). The rule: 1-20 characters; letters and
digits, with single separators `.`, `-`, `^` or `=` between them; a leading `^` for an index. No separator is
doubled or last, so `..` (a parent folder) can never appear.
"""

from __future__ import annotations

import re

MAX_TICKER_LENGTH = 20
# RE2-compatible (DuckDB's regexp_full_match uses it too); the length is checked separately.
TICKER_REGEX = r"\^?[A-Za-z0-9]+(?:[.\-^=][A-Za-z0-9]+)*"
_PATTERN = re.compile(TICKER_REGEX)

TICKER_RULE = (
    f"tickers are 1-{MAX_TICKER_LENGTH} characters: letters and digits, with single '.', '-', '^' or '=' between "
    "them (BRK-B, 7203.T, EURUSD=X), and may start with '^' for an index (^GSPC)"
)


def ticker_problem(ticker: object) -> str | None:
    """Why `ticker` is not allowed (the whole message), or None when it is."""
    if isinstance(ticker, str) and len(ticker) <= MAX_TICKER_LENGTH and _PATTERN.fullmatch(ticker):
        return None
    return f"ticker {ticker!r} is not allowed; {TICKER_RULE}"


def is_ticker(ticker: object) -> bool:
    return ticker_problem(ticker) is None
