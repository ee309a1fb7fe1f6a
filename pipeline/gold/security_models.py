"""The security master's Gold tables (DESIGN.md section 12): securities, their ticker history, index membership by
security, and what the master could not use as given. All are small and rebuilt whole (`per_ticker=False`).

Why a security master: a ticker is a name a security holds for a while. FB became META (one security, two
tickers); AI was Arlington Asset and is now C3.ai (one ticker, two securities); TWTR was delisted, and a backtest
of 2021 must still see it. The SQL lives in `sql/_security_master.sql` (who held which ticker when) and
`sql/_index_membership.sql`; `pipeline.gold.securities` has the SQL macros and the Python helpers over these tables.
"""

from __future__ import annotations

from pipeline.gold.models import GoldModel, _cols
from pipeline.gold.security_join import SECURITY_INPUTS
from pipeline.gold.templates import render

INDEX_INPUTS = ("fmp_sp500_constituent", "fmp_sp500_constituent_history")

DIM_SECURITY = GoldModel(
    name="dim_security",
    description="One row per security: a permanent security_id that is not the ticker, its current (or last) ticker, "
    "CIK/ISIN/CUSIP where known, exchange, listing and delisting dates. Delisted securities stay.",
    inputs=SECURITY_INPUTS,
    columns=_cols("""
        security_id BIGINT, ticker VARCHAR, first_ticker VARCHAR, name VARCHAR, cik VARCHAR, isin VARCHAR,
        cusip VARCHAR, exchange VARCHAR, listed_on DATE, delisted_on DATE, delisting_served_on DATE,
        is_active BOOLEAN, source VARCHAR"""),
    key=("security_id",),
    sql=render("dim_security"),
    per_ticker=False,
    descriptions={
        "security_id": "Permanent id (a hash of the first ticker and, for a reused ticker, the day its holding began).",
        "ticker": "The current ticker, or the last one of a delisted security.",
        "first_ticker": "The ticker the security had first (before its renames).",
        "listed_on": "Listing (IPO) date, from the profile or delisted-companies.",
        "delisted_on": "Last trading day (delisted-companies); NULL while listed. Can be in the future (announced).",
        "delisting_served_on": "The day FMP served the delisting row: a delisted_on after it was announced ahead.",
        "is_active": "Still traded as far as FMP said when last asked (profile / actively-trading list).",
        "source": "'listing' (a ticker FMP answers for) or 'delisted-companies' (known only from that list).",
    },
    report_sql="SELECT CASE WHEN delisted_on IS NULL THEN 'securities_listed' ELSE 'securities_delisted' END, "
    "count(*) FROM gold.dim_security GROUP BY ALL ORDER BY 1",
)

DIM_SECURITY_TICKER = GoldModel(
    name="dim_security_ticker",
    description="Ticker history (security_id, ticker, valid_from, valid_to), both ends included: a rename continues "
    "one security, a reused ticker yields two split at the reuse date. Resolve with gold.security_at(ticker, date).",
    inputs=SECURITY_INPUTS,
    columns=_cols("security_id BIGINT, ticker VARCHAR, valid_from DATE, valid_to DATE, source VARCHAR"),
    key=("security_id", "ticker"),
    sql=render("dim_security_ticker"),
    per_ticker=False,
    descriptions={
        "valid_from": "First day the security held the ticker (NULL: since before what FMP records).",
        "valid_to": "Last day it held it (a rename: the day before; a delisting: the delisting day); NULL: still.",
        "source": "'listing', 'delisted-companies' or 'symbol-change' (a former ticker).",
    },
)

INDEX_MEMBERSHIP = GoldModel(
    name="index_membership",
    description="Index membership spells by security [member_from, member_to), from today's constituents and the "
    "history of additions and removals; members delisted or renamed since keep their security.",
    inputs=SECURITY_INPUTS + INDEX_INPUTS,
    columns=_cols("""
        index_name VARCHAR, security_id BIGINT, spell INTEGER, ticker VARCHAR, member_from DATE, member_to DATE"""),
    key=("index_name", "security_id", "spell"),
    sql=render("index_membership"),
    per_ticker=False,
    descriptions={
        "ticker": "The ticker the constituents data named (at the change, or today's for a member all along).",
        "member_from": "Day of the addition (NULL: a member since before the recorded history).",
        "member_to": "Day of the removal, excluded (NULL: still a member).",
    },
)

SECURITY_ISSUES = GoldModel(
    name="security_issues",
    description="Input the security master could not use as given (a symbol change onto a ticker in use, a delisting "
    "dated after it was served, an unparseable dateAdded, a missing index history), each with a message. The rows "
    "stay in Silver.",
    inputs=SECURITY_INPUTS + INDEX_INPUTS,
    columns=_cols("kind VARCHAR, subject VARCHAR, message VARCHAR"),
    key=("kind", "subject"),
    sql=render("security_issues"),
    per_ticker=False,
    report_sql="SELECT 'issues_' || kind, count(*) FROM gold.security_issues GROUP BY ALL ORDER BY 1",
)

SECURITY_MODELS = (DIM_SECURITY, DIM_SECURITY_TICKER, INDEX_MEMBERSHIP, SECURITY_ISSUES)
