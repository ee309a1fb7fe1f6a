"""gold.fact_valuation_daily recomputed: the statement in force on each price date, on that date's share basis.

Shares served on the basis of the income row's fetch day F become shares on day d's basis with cum(d)/cum(F),
so market cap = as-traded close * those shares and stays continuous across a split. A ratio with a zero or
negative denominator is NULL. The dividend TTM sums the last N regular payments (N from the frequency).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline_tests.oracle.basis import basis_for
from pipeline_tests.oracle.prices import bases_from, dividend_amounts

REGULAR = {"monthly": 12, "quarterly": 4, "semi-annual": 2, "semiannual": 2, "annual": 1}


def statements_in_force(q: pd.DataFrame, dates: pd.Series) -> pd.DataFrame:
    """For each date: the usable quarterly row with the latest usable_from (ties: latest period_end), ignoring a
    row whose period_end is older than one that was usable strictly before it (a late filing of an old period)."""
    q = q[q["usable_from"].notna()].sort_values(["usable_from", "period_end"]).reset_index(drop=True)
    keep = []
    for _, r in q.iterrows():
        earlier = q[q["usable_from"] < r["usable_from"]]
        keep.append(not (earlier["period_end"] > r["period_end"]).any())
    q = q[keep].drop_duplicates("usable_from", keep="last")
    q = q.assign(usable_from=q["usable_from"].astype("datetime64[ns]"))
    left = pd.DataFrame({"date": pd.to_datetime(dates).astype("datetime64[ns]").to_numpy()}).sort_values("date")
    return pd.merge_asof(left, q, left_on="date", right_on="usable_from", direction="backward")


def dividends_ttm(divs: pd.DataFrame, dates: pd.Series, basis) -> np.ndarray:
    """Per share on each date's basis: the last N regular payments with ex-date in (d - (365 + 182/N) days, d]."""
    if not len(divs):
        return np.zeros(len(dates))
    divs = divs.assign(amount=dividend_amounts(divs, basis))
    freq = divs["frequency"].fillna("").str.strip().str.lower()
    divs = divs.assign(n=freq.map(lambda f: 4 if f == "" else REGULAR.get(f)))
    divs = divs[divs["n"].notna() & (divs["amount"] > 0)].sort_values("date")
    on_declared_basis = (divs["amount"] * basis.cum(divs["date"])).to_numpy()
    ex = divs["date"].to_numpy(dtype="datetime64[ns]")
    ns = divs["n"].to_numpy(dtype=int)
    out = []
    for d in pd.to_datetime(dates):
        upto = np.searchsorted(ex, np.datetime64(d, "ns"), side="right")
        if upto == 0:
            out.append(0.0)
            continue
        n = ns[upto - 1]  # the frequency of the latest regular payment
        first = max(0, upto - n)
        age = (np.datetime64(d, "ns") - ex[first:upto]) / np.timedelta64(1, "D")
        window = age < 365 + 182 / n
        out.append(float(on_declared_basis[first:upto][window].sum()) / basis.cum(d))
    return np.array(out)


def _positive(den: pd.Series) -> pd.Series:
    return den.where(den > 0)


def valuation_daily(silver: dict[str, pd.DataFrame], prices: pd.DataFrame, quarterly: pd.DataFrame) -> pd.DataFrame:
    bases = bases_from(silver)
    inc = silver["fmp_income_statement"]
    served = inc[
        ["ticker", "date", "period", "weighted_average_shs_out", "weighted_average_shs_out_dil", "served_on"]
    ].rename(columns={"date": "period_end"})
    bal = silver["fmp_balance_sheet"][["ticker", "date", "period", "net_debt"]].rename(columns={"date": "period_end"})
    q = quarterly[
        [
            "ticker",
            "period_end",
            "period",
            "fiscal_year",
            "filing_date",
            "accepted_date",
            "usable_from",
            "revenue_ttm",
            "net_income_ttm",
            "ebitda_ttm",
            "free_cash_flow_ttm",
            "eps_ttm",
            "total_stockholders_equity",
            "total_equity",
        ]
    ]
    q = q.merge(served, on=["ticker", "period_end", "period"], how="left").merge(
        bal, on=["ticker", "period_end", "period"], how="left"
    )
    divs_all = silver["fmp_dividends"]
    out = []
    for ticker, p in prices.groupby("ticker"):
        basis = basis_for(bases, ticker)
        p = p.sort_values("date").reset_index(drop=True)
        s = statements_in_force(q[q["ticker"] == ticker].drop(columns=["ticker"]), p["date"])
        v = pd.DataFrame({"ticker": ticker, "date": p["date"], "close": p["close"]})
        v["statement_period_end"] = s["period_end"].to_numpy()
        v["statement_period"] = s["period"].to_numpy()
        v["statement_fiscal_year"] = s["fiscal_year"].to_numpy()
        v["statement_filing_date"] = s["filing_date"].to_numpy()
        v["statement_accepted_at"] = s["accepted_date"].to_numpy()
        v["statement_usable_from"] = s["usable_from"].to_numpy()
        day_basis = basis.cum(v["date"])
        fetch_basis = basis.cum(s["served_on"])
        v["share_basis_factor"] = day_basis / fetch_basis
        shares = s["weighted_average_shs_out"].astype(float)
        shares = shares.where(shares.notna(), s["weighted_average_shs_out_dil"].astype(float)).to_numpy()
        v["shares_outstanding"] = shares * v["share_basis_factor"]
        v["market_cap"] = v["close"] * v["shares_outstanding"]
        v["net_debt"] = s["net_debt"].to_numpy()
        v["enterprise_value"] = v["market_cap"] + v["net_debt"]
        for col in ("revenue_ttm", "net_income_ttm", "ebitda_ttm", "free_cash_flow_ttm"):
            v[col] = s[col].to_numpy()
        equity = s["total_stockholders_equity"]
        v["book_value"] = equity.where(equity.notna(), s["total_equity"]).to_numpy()
        v["eps_ttm"] = s["eps_ttm"].to_numpy() * basis.current / day_basis
        v["pe_ttm"] = v["close"] / _positive(v["eps_ttm"])
        v["pb"] = v["market_cap"] / _positive(v["book_value"])
        v["ps_ttm"] = v["market_cap"] / _positive(v["revenue_ttm"])
        v["ev_to_ebitda_ttm"] = v["enterprise_value"] / _positive(v["ebitda_ttm"])
        divs = divs_all[divs_all["ticker"] == ticker] if len(divs_all) else divs_all
        v["dividends_ttm_per_share"] = dividends_ttm(divs, v["date"], basis)
        v["dividend_yield_ttm"] = v["dividends_ttm_per_share"] / _positive(v["close"])
        v["fcf_yield"] = v["free_cash_flow_ttm"] / _positive(v["market_cap"])
        out.append(v)
    return pd.concat(out).sort_values(["ticker", "date"]).reset_index(drop=True)
