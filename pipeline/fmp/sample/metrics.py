"""Key metrics and ratios, derived from one period's statements and the price at the period end.

The price and the statements' share counts are both on the share basis of `as_of`, so per-share values and
market capitalisation are consistent with each other after a split.
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.fmp.sample.common import iso, safe_div
from pipeline.fmp.sample.companies import Company
from pipeline.fmp.sample.statements import Period


def key_metrics_row(comp: Company, p: Period, prev: Period | None, price: float) -> dict[str, Any]:
    inc, bal, cf = p.income, p.balance, p.cash
    shares = inc["weightedAverageShsOut"]
    market_cap = int(round(price * shares))
    ev = market_cap + bal["netDebt"]
    days = 365 if p.period == "FY" else 91
    capex = -cf["capitalExpenditure"]
    equity = bal["totalStockholdersEquity"]
    eps, bvps = inc["eps"], safe_div(equity, shares)
    working_capital = bal["totalCurrentAssets"] - bal["totalCurrentLiabilities"]
    pb = prev.balance if prev else bal
    invested = bal["totalDebt"] + equity - bal["cashAndCashEquivalents"]
    tax_rate = safe_div(inc["incomeTaxExpense"], inc["incomeBeforeTax"])
    return {
        "symbol": comp.symbol,
        "date": iso(p.date),
        "fiscalYear": str(p.fiscal_year),
        "period": p.period,
        "reportedCurrency": "USD",
        "marketCap": market_cap,
        "enterpriseValue": ev,
        "evToSales": safe_div(ev, inc["revenue"]),
        "evToOperatingCashFlow": safe_div(ev, cf["operatingCashFlow"]),
        "evToFreeCashFlow": safe_div(ev, cf["freeCashFlow"]),
        "evToEBITDA": safe_div(ev, inc["ebitda"]),
        "netDebtToEBITDA": safe_div(bal["netDebt"], inc["ebitda"]),
        "currentRatio": safe_div(bal["totalCurrentAssets"], bal["totalCurrentLiabilities"]),
        "incomeQuality": safe_div(cf["operatingCashFlow"], inc["netIncome"]),
        "grahamNumber": math.sqrt(22.5 * eps * bvps) if eps > 0 and bvps > 0 else 0.0,
        "grahamNetNet": safe_div(bal["totalCurrentAssets"] - bal["totalLiabilities"], shares),
        "taxBurden": safe_div(inc["netIncome"], inc["incomeBeforeTax"]),
        "interestBurden": safe_div(inc["incomeBeforeTax"], inc["ebit"]),
        "workingCapital": working_capital,
        "investedCapital": working_capital + bal["propertyPlantEquipmentNet"],
        "returnOnAssets": safe_div(inc["netIncome"], bal["totalAssets"]),
        "operatingReturnOnAssets": safe_div(inc["operatingIncome"], bal["totalAssets"]),
        "returnOnTangibleAssets": safe_div(inc["netIncome"], bal["totalAssets"] - bal["goodwillAndIntangibleAssets"]),
        "returnOnEquity": safe_div(inc["netIncome"], equity),
        "returnOnInvestedCapital": safe_div(inc["ebit"] * (1 - tax_rate), invested),
        "returnOnCapitalEmployed": safe_div(inc["ebit"], bal["totalAssets"] - bal["totalCurrentLiabilities"]),
        "earningsYield": safe_div(inc["netIncome"], market_cap),
        "freeCashFlowYield": safe_div(cf["freeCashFlow"], market_cap),
        "capexToOperatingCashFlow": safe_div(capex, cf["operatingCashFlow"]),
        "capexToDepreciation": safe_div(capex, inc["depreciationAndAmortization"]),
        "capexToRevenue": safe_div(capex, inc["revenue"]),
        "salesGeneralAndAdministrativeToRevenue": safe_div(
            inc["sellingGeneralAndAdministrativeExpenses"], inc["revenue"]
        ),
        "researchAndDevelopementToRevenue": safe_div(inc["researchAndDevelopmentExpenses"], inc["revenue"]),
        "stockBasedCompensationToRevenue": safe_div(cf["stockBasedCompensation"], inc["revenue"]),
        "intangiblesToTotalAssets": safe_div(bal["goodwillAndIntangibleAssets"], bal["totalAssets"]),
        "averageReceivables": (bal["netReceivables"] + pb["netReceivables"]) / 2,
        "averagePayables": (bal["accountPayables"] + pb["accountPayables"]) / 2,
        "averageInventory": (bal["inventory"] + pb["inventory"]) / 2,
        "daysOfSalesOutstanding": safe_div(bal["netReceivables"] * days, inc["revenue"]),
        "daysOfPayablesOutstanding": safe_div(bal["accountPayables"] * days, inc["costOfRevenue"]),
        "daysOfInventoryOutstanding": safe_div(bal["inventory"] * days, inc["costOfRevenue"]),
        "operatingCycle": safe_div(bal["netReceivables"] * days, inc["revenue"])
        + safe_div(bal["inventory"] * days, inc["costOfRevenue"]),
        "cashConversionCycle": safe_div(bal["netReceivables"] * days, inc["revenue"])
        + safe_div(bal["inventory"] * days, inc["costOfRevenue"])
        - safe_div(bal["accountPayables"] * days, inc["costOfRevenue"]),
        "freeCashFlowToEquity": cf["freeCashFlow"] + cf["netDebtIssuance"],
        "freeCashFlowToFirm": cf["freeCashFlow"] + inc["interestExpense"] * (1 - tax_rate),
        "tangibleAssetValue": equity - bal["goodwillAndIntangibleAssets"],
        "netCurrentAssetValue": bal["totalCurrentAssets"] - bal["totalLiabilities"],
    }


def ratios_row(comp: Company, p: Period, prev: Period | None, price: float, extra: bool) -> dict[str, Any]:
    inc, bal, cf = p.income, p.balance, p.cash
    shares = inc["weightedAverageShsOut"]
    market_cap = price * shares
    ev = market_cap + bal["netDebt"]
    rev = inc["revenue"]
    equity = bal["totalStockholdersEquity"]
    capex = -cf["capitalExpenditure"]
    dividends = -cf["netDividendsPaid"]
    pe = safe_div(market_cap, inc["netIncome"])
    growth = (safe_div(inc["eps"], prev.income["eps"]) - 1) * 100 if prev and prev.income["eps"] else 0.0
    peg = safe_div(pe, growth)
    working_capital = bal["totalCurrentAssets"] - bal["totalCurrentLiabilities"]
    row = {
        "symbol": comp.symbol,
        "date": iso(p.date),
        "fiscalYear": str(p.fiscal_year),
        "period": p.period,
        "reportedCurrency": "USD",
        "grossProfitMargin": safe_div(inc["grossProfit"], rev),
        "ebitMargin": safe_div(inc["ebit"], rev),
        "ebitdaMargin": safe_div(inc["ebitda"], rev),
        "operatingProfitMargin": safe_div(inc["operatingIncome"], rev),
        "pretaxProfitMargin": safe_div(inc["incomeBeforeTax"], rev),
        "continuousOperationsProfitMargin": safe_div(inc["netIncomeFromContinuingOperations"], rev),
        "netProfitMargin": safe_div(inc["netIncome"], rev),
        "bottomLineProfitMargin": safe_div(inc["bottomLineNetIncome"], rev),
        "receivablesTurnover": safe_div(rev, bal["netReceivables"]),
        "payablesTurnover": safe_div(inc["costOfRevenue"], bal["accountPayables"]),
        "inventoryTurnover": safe_div(inc["costOfRevenue"], bal["inventory"]),
        "fixedAssetTurnover": safe_div(rev, bal["propertyPlantEquipmentNet"]),
        "assetTurnover": safe_div(rev, bal["totalAssets"]),
        "currentRatio": safe_div(bal["totalCurrentAssets"], bal["totalCurrentLiabilities"]),
        "quickRatio": safe_div(
            bal["totalCurrentAssets"] - bal["inventory"] - bal["prepaids"], bal["totalCurrentLiabilities"]
        ),
        "solvencyRatio": safe_div(inc["netIncome"] + inc["depreciationAndAmortization"], bal["totalLiabilities"]),
        "cashRatio": safe_div(bal["cashAndCashEquivalents"], bal["totalCurrentLiabilities"]),
        "priceToEarningsRatio": pe,
        "priceToEarningsGrowthRatio": peg,
        "forwardPriceToEarningsGrowthRatio": peg,
        "priceToBookRatio": safe_div(market_cap, equity),
        "priceToSalesRatio": safe_div(market_cap, rev),
        "priceToFreeCashFlowRatio": safe_div(market_cap, cf["freeCashFlow"]),
        "priceToOperatingCashFlowRatio": safe_div(market_cap, cf["operatingCashFlow"]),
        "debtToAssetsRatio": safe_div(bal["totalDebt"], bal["totalAssets"]),
        "debtToEquityRatio": safe_div(bal["totalDebt"], equity),
        "debtToCapitalRatio": safe_div(bal["totalDebt"], bal["totalDebt"] + equity),
        "longTermDebtToCapitalRatio": safe_div(bal["longTermDebt"], bal["longTermDebt"] + equity),
        "financialLeverageRatio": safe_div(bal["totalAssets"], equity),
        "workingCapitalTurnoverRatio": safe_div(rev, working_capital),
        "operatingCashFlowRatio": safe_div(cf["operatingCashFlow"], bal["totalCurrentLiabilities"]),
        "operatingCashFlowSalesRatio": safe_div(cf["operatingCashFlow"], rev),
        "freeCashFlowOperatingCashFlowRatio": safe_div(cf["freeCashFlow"], cf["operatingCashFlow"]),
        "debtServiceCoverageRatio": safe_div(
            cf["operatingCashFlow"],
            bal["shortTermDebt"] + bal["capitalLeaseObligationsCurrent"] + inc["interestExpense"],
        ),
        "interestCoverageRatio": safe_div(inc["ebit"], inc["interestExpense"]),
        "shortTermOperatingCashFlowCoverageRatio": safe_div(cf["operatingCashFlow"], bal["shortTermDebt"]),
        "operatingCashFlowCoverageRatio": safe_div(cf["operatingCashFlow"], bal["totalDebt"]),
        "capitalExpenditureCoverageRatio": safe_div(cf["operatingCashFlow"], capex),
        "dividendPaidAndCapexCoverageRatio": safe_div(cf["operatingCashFlow"], capex + dividends),
        "dividendPayoutRatio": safe_div(dividends, inc["netIncome"]),
        "dividendYield": safe_div(dividends, market_cap),
        "dividendYieldPercentage": safe_div(dividends * 100, market_cap),
        "revenuePerShare": safe_div(rev, shares),
        "netIncomePerShare": safe_div(inc["netIncome"], shares),
        "interestDebtPerShare": safe_div(bal["totalDebt"] + inc["interestExpense"], shares),
        "cashPerShare": safe_div(bal["cashAndShortTermInvestments"], shares),
        "bookValuePerShare": safe_div(equity, shares),
        "tangibleBookValuePerShare": safe_div(equity - bal["goodwillAndIntangibleAssets"], shares),
        "shareholdersEquityPerShare": safe_div(equity, shares),
        "operatingCashFlowPerShare": safe_div(cf["operatingCashFlow"], shares),
        "capexPerShare": safe_div(capex, shares),
        "freeCashFlowPerShare": safe_div(cf["freeCashFlow"], shares),
        "netIncomePerEBT": safe_div(inc["netIncome"], inc["incomeBeforeTax"]),
        "ebtPerEbit": safe_div(inc["incomeBeforeTax"], inc["ebit"]),
        "priceToFairValue": safe_div(market_cap, equity),
        "debtToMarketCap": safe_div(bal["totalDebt"], market_cap),
        "effectiveTaxRate": safe_div(inc["incomeTaxExpense"], inc["incomeBeforeTax"]),
        "enterpriseValueMultiple": safe_div(ev, inc["ebitda"]),
    }
    if extra:
        row["priceToEarningsDilutedRatio"] = safe_div(price, inc["epsDiluted"])
    return row
