"""Financial statements: quarters and fiscal years filed on or before `as_of`, as FMP serves them.

Every accounting identity holds exactly in integer dollars. What FMP rewrites is rewritten here too: share
counts and EPS are restated onto the share basis of `as_of` while `filingDate` keeps the original date, and
many filings are accepted after the 16:00 New York close (fmp_api.md section 1). Dividends paid appear in the
cash-flow statements, so statements and the dividends dataset agree.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.fmp.sample.common import crc, iso, on_or_after_weekday, quarter_end, rng, safe_div
from pipeline.fmp.sample.companies import Company
from pipeline.fmp.sample.prices import split_factor_on

FIRST_FISCAL_YEAR = 2012  # statements start with Q1 2012


@dataclass
class Period:
    """One fiscal period (quarter or FY): the three statements plus what metrics need."""

    date: dt.date
    period: str  # Q1..Q4 | FY
    fiscal_year: int
    filing: dt.date
    accepted: str
    income: dict[str, int | float]
    balance: dict[str, int]
    cash: dict[str, int]


def filing_date_of(comp: Company, period_end: dt.date, fiscal_year: int, quarter: int) -> dt.date:
    """25-45 days after the period end, moved off weekends."""
    days = 25 + crc("filing", comp.symbol, fiscal_year, quarter) % 21
    return on_or_after_weekday(period_end + dt.timedelta(days=days))


def accepted_time(comp: Company, filing: dt.date, salt: object) -> str:
    """EDGAR acceptance time, US Eastern wall clock: about a third after the 16:00 close (16:05-19:59, usable
    only from the next trading day's close), the rest before the open (06:00-09:29). fmp_api.md section 1."""
    s = crc("accepted", comp.symbol, filing, salt)
    minute, second = (s >> 4) % 60, (s >> 10) % 60
    if s % 3 == 0:
        return f"{filing.isoformat()} {16 + (s >> 16) % 4:02d}:{max(minute, 5):02d}:{second:02d}"
    return f"{filing.isoformat()} {6 + (s >> 16) % 4:02d}:{minute % 30:02d}:{second:02d}"


def shares_on(comp: Company, day: dt.date, basis: dt.date | None = None) -> int:
    """Shares outstanding on a day (slow buybacks), on the share basis of `basis` (as traded on `day` when None).

    FMP restates statement share counts onto the basis current when it serves them (AAPL FY2019 shows 4x the
    shares filed in 2019, after the 2020 4:1 split: fmp_api.md section 1), so statements use basis=as_of.
    """
    q = (day.year - FIRST_FISCAL_YEAR) * 4 + (day.month - 1) // 3
    final_basis = comp.shares_now * 1.004 ** (60 - q)  # on the basis after every split in comp.splits
    return int(round(final_basis / split_factor_on(comp, basis or day)))


def initial_state(comp: Company) -> dict[str, int]:
    rev = comp.revenue0
    return {
        "cash": int(rev * 0.5),
        "receivables": int(rev * 0.6),
        "inventory": int(rev * comp.inventory_ratio),
        "payables": int(rev * 0.45),
        "ppe": int(rev * 1.5),
        "short_debt": int(rev * 0.1),
        "long_debt": int(rev * 0.8),
        "intangibles": int(rev * 0.2),
    }


def build_quarter(
    comp: Company,
    q: int,
    year: int,
    quarter: int,
    prev: dict[str, int],
    dividends_paid: int,
    basis: dt.date,
    scale: float = 1.0,
) -> tuple[dict, dict, dict, dict[str, int]]:
    """Income, balance sheet and cash flow for one quarter; every identity holds in integer dollars.

    Share counts and EPS are on the share basis of `basis` (the day FMP serves them), not as filed.
    """
    r = rng("quarter", comp.symbol, q)
    n = lambda s=1.0: float(r.normal(0.0, s))  # noqa: E731 - a terse draw keeps the formulas readable
    season = 1.0 + 0.06 * math.sin((quarter - 1) * math.pi / 2)
    rev = comp.revenue0 * (1 + comp.growth) ** q * season * math.exp(n(0.03)) * scale
    end = quarter_end(year, quarter)

    # -- income statement
    revenue = int(round(rev))
    cost_of_revenue = int(round(revenue * (1 - comp.gross_margin * math.exp(n(0.02)))))
    gross_profit = revenue - cost_of_revenue
    rd = int(round(revenue * comp.rd_ratio))
    ga = int(round(revenue * comp.sga_ratio * 0.45))
    sm = int(round(revenue * comp.sga_ratio * 0.55))
    sga = ga + sm
    other_expenses = 0
    operating_expenses = rd + sga + other_expenses
    operating_income = gross_profit - operating_expenses
    da = int(round(revenue * comp.capex_ratio * 0.8))
    interest_income = int(round(prev["cash"] * 0.008))
    interest_expense = int(round((prev["short_debt"] + prev["long_debt"]) * 0.009))
    net_interest = interest_income - interest_expense
    non_operating = int(round(revenue * n(0.004)))
    total_other = net_interest + non_operating
    income_before_tax = operating_income + total_other
    income_tax = int(round(max(income_before_tax, 0) * comp.tax_rate))
    net_income_cont = income_before_tax - income_tax
    net_income = net_income_cont
    ebit = operating_income
    shares = shares_on(comp, end, basis=basis)
    shares_dil = int(round(shares * 1.006))
    income = {
        "revenue": revenue,
        "costOfRevenue": cost_of_revenue,
        "grossProfit": gross_profit,
        "researchAndDevelopmentExpenses": rd,
        "generalAndAdministrativeExpenses": ga,
        "sellingAndMarketingExpenses": sm,
        "sellingGeneralAndAdministrativeExpenses": sga,
        "otherExpenses": other_expenses,
        "operatingExpenses": operating_expenses,
        "costAndExpenses": cost_of_revenue + operating_expenses,
        "netInterestIncome": net_interest,
        "interestIncome": interest_income,
        "interestExpense": interest_expense,
        "depreciationAndAmortization": da,
        "ebitda": ebit + da,
        "ebit": ebit,
        "nonOperatingIncomeExcludingInterest": non_operating,
        "operatingIncome": operating_income,
        "totalOtherIncomeExpensesNet": total_other,
        "incomeBeforeTax": income_before_tax,
        "incomeTaxExpense": income_tax,
        "netIncomeFromContinuingOperations": net_income_cont,
        "netIncomeFromDiscontinuedOperations": 0,
        "otherAdjustmentsToNetIncome": 0,
        "netIncome": net_income,
        "netIncomeDeductions": 0,
        "bottomLineNetIncome": net_income,
        "eps": round(safe_div(net_income, shares), 2),
        "epsDiluted": round(safe_div(net_income, shares_dil), 2),
        "weightedAverageShsOut": shares,
        "weightedAverageShsOutDil": shares_dil,
    }

    # -- balance sheet (assets first; liabilities sized to the target leverage; equity is the remainder)
    annual = revenue * 4
    cash = int(round((0.75 * prev["cash"] + 0.25 * 0.12 * annual) * math.exp(n(0.06))))
    short_inv = int(round(annual * 0.08 * math.exp(n(0.05))))
    accounts_rec = int(round(revenue * 0.45 * math.exp(n(0.05))))
    other_rec = int(round(accounts_rec * 0.3))
    net_rec = accounts_rec + other_rec
    inventory = int(round(cost_of_revenue * comp.inventory_ratio * math.exp(n(0.05))))
    prepaids = int(round(revenue * 0.01))
    other_ca = int(round(annual * 0.03))
    total_ca = cash + short_inv + net_rec + inventory + prepaids + other_ca
    capex = int(round(revenue * comp.capex_ratio * math.exp(n(0.1))))
    ppe = max(prev["ppe"] + capex - da, int(annual * 0.05))
    intangibles = int(round(prev["intangibles"] * 0.99))
    goodwill = int(round(comp.revenue0 * 0.6))
    long_inv = int(round(annual * comp.investments_ratio * math.exp(n(0.03))))
    tax_assets = int(round(annual * 0.02))
    other_nca = int(round(annual * 0.08))
    total_nca = ppe + goodwill + intangibles + long_inv + tax_assets + other_nca
    total_assets = total_ca + total_nca

    liab_target = total_assets * comp.leverage
    accounts_pay = int(round(cost_of_revenue * 0.5 * math.exp(n(0.05))))
    other_pay = int(round(liab_target * 0.03))
    accrued = int(round(liab_target * 0.02))
    short_debt = max(int(round(prev["short_debt"] * math.exp(n(0.1)))), 0)
    lease_cur = int(round(liab_target * 0.005))
    deferred_rev = int(round(liab_target * 0.02))
    other_cl = int(round(liab_target * 0.08))
    total_cl = accounts_pay + other_pay + accrued + short_debt + lease_cur + deferred_rev + other_cl
    long_debt = max(int(round(prev["long_debt"] * math.exp(n(0.03)) * (1 + comp.growth))), 0)
    lease_ncur = lease_cur * 6
    deferred_tax_liab = int(round(liab_target * 0.02))
    fixed_so_far = total_cl + long_debt + lease_ncur + deferred_tax_liab
    other_ncl = max(int(round(liab_target)) - fixed_so_far, int(round(liab_target * 0.02)))
    total_ncl = long_debt + lease_ncur + 0 + deferred_tax_liab + other_ncl
    total_liabilities = total_cl + total_ncl
    total_equity = total_assets - total_liabilities
    minority = int(round(max(total_equity, 0) * comp.minority_ratio))
    stockholders = total_equity - minority
    common_stock = int(round(total_assets * 0.08))
    aoci = -int(round(total_assets * 0.01))
    retained = stockholders - common_stock - aoci
    total_debt = short_debt + long_debt + lease_cur + lease_ncur
    balance = {
        "cashAndCashEquivalents": cash,
        "shortTermInvestments": short_inv,
        "cashAndShortTermInvestments": cash + short_inv,
        "netReceivables": net_rec,
        "accountsReceivables": accounts_rec,
        "otherReceivables": other_rec,
        "inventory": inventory,
        "prepaids": prepaids,
        "otherCurrentAssets": other_ca,
        "totalCurrentAssets": total_ca,
        "propertyPlantEquipmentNet": ppe,
        "goodwill": goodwill,
        "intangibleAssets": intangibles,
        "goodwillAndIntangibleAssets": goodwill + intangibles,
        "longTermInvestments": long_inv,
        "taxAssets": tax_assets,
        "otherNonCurrentAssets": other_nca,
        "totalNonCurrentAssets": total_nca,
        "otherAssets": 0,
        "totalAssets": total_assets,
        "totalPayables": accounts_pay + other_pay,
        "accountPayables": accounts_pay,
        "otherPayables": other_pay,
        "accruedExpenses": accrued,
        "shortTermDebt": short_debt,
        "capitalLeaseObligationsCurrent": lease_cur,
        "taxPayables": other_pay,
        "deferredRevenue": deferred_rev,
        "otherCurrentLiabilities": other_cl,
        "totalCurrentLiabilities": total_cl,
        "longTermDebt": long_debt,
        "capitalLeaseObligationsNonCurrent": lease_ncur,
        "deferredRevenueNonCurrent": 0,
        "deferredTaxLiabilitiesNonCurrent": deferred_tax_liab,
        "otherNonCurrentLiabilities": other_ncl,
        "totalNonCurrentLiabilities": total_ncl,
        "otherLiabilities": 0,
        "capitalLeaseObligations": lease_cur + lease_ncur,
        "totalLiabilities": total_liabilities,
        "treasuryStock": 0,
        "preferredStock": 0,
        "commonStock": common_stock,
        "retainedEarnings": retained,
        "additionalPaidInCapital": 0,
        "accumulatedOtherComprehensiveIncomeLoss": aoci,
        "otherTotalStockholdersEquity": 0,
        "totalStockholdersEquity": stockholders,
        "totalEquity": total_equity,
        "minorityInterest": minority,
        "totalLiabilitiesAndTotalEquity": total_liabilities + total_equity,
        "totalInvestments": short_inv + long_inv,
        "totalDebt": total_debt,
        "netDebt": total_debt - cash,
    }

    # -- cash flow (working-capital lines are balance-sheet changes; other financing closes the cash gap)
    cf_receivables = -(net_rec - prev["receivables"])
    cf_inventory = -(inventory - prev["inventory"])
    cf_payables = accounts_pay - prev["payables"]
    other_wc = int(round(revenue * n(0.01)))
    change_wc = cf_receivables + cf_inventory + cf_payables + other_wc
    deferred_tax = int(round(income_tax * 0.05))
    sbc = int(round(revenue * 0.02))
    other_non_cash = int(round(revenue * n(0.005)))
    operating = net_income + da + deferred_tax + sbc + change_wc + other_non_cash
    purchases = -int(round(revenue * 0.1))
    sales = int(round(revenue * 0.1 * math.exp(n(0.1))))
    acquisitions = -int(round(revenue * 0.05)) if r.random() < 0.1 else 0
    other_investing = int(round(revenue * n(0.005)))
    investing = -capex + acquisitions + purchases + sales + other_investing
    long_issuance = long_debt - prev["long_debt"]
    short_issuance = short_debt - prev["short_debt"]
    repurchased = -int(round(max(net_income, 0) * 0.3))
    issuance = int(round(revenue * 0.002))
    common_dividends = -dividends_paid
    net_change = cash - prev["cash"]
    financing = net_change - operating - investing
    other_financing = financing - (long_issuance + short_issuance + issuance + repurchased + common_dividends)
    cash_flow = {
        "netIncome": net_income,
        "depreciationAndAmortization": da,
        "deferredIncomeTax": deferred_tax,
        "stockBasedCompensation": sbc,
        "changeInWorkingCapital": change_wc,
        "accountsReceivables": cf_receivables,
        "inventory": cf_inventory,
        "accountsPayables": cf_payables,
        "otherWorkingCapital": other_wc,
        "otherNonCashItems": other_non_cash,
        "netCashProvidedByOperatingActivities": operating,
        "investmentsInPropertyPlantAndEquipment": -capex,
        "acquisitionsNet": acquisitions,
        "purchasesOfInvestments": purchases,
        "salesMaturitiesOfInvestments": sales,
        "otherInvestingActivities": other_investing,
        "netCashProvidedByInvestingActivities": investing,
        "netDebtIssuance": long_issuance + short_issuance,
        "longTermNetDebtIssuance": long_issuance,
        "shortTermNetDebtIssuance": short_issuance,
        "netStockIssuance": issuance + repurchased,
        "netCommonStockIssuance": issuance + repurchased,
        "commonStockIssuance": issuance,
        "commonStockRepurchased": repurchased,
        "netPreferredStockIssuance": 0,
        "netDividendsPaid": common_dividends,
        "commonDividendsPaid": common_dividends,
        "preferredDividendsPaid": 0,
        "otherFinancingActivities": other_financing,
        "netCashProvidedByFinancingActivities": financing,
        "effectOfForexChangesOnCash": 0,
        "netChangeInCash": net_change,
        "cashAtEndOfPeriod": cash,
        "cashAtBeginningOfPeriod": prev["cash"],
        "operatingCashFlow": operating,
        "capitalExpenditure": -capex,
        "freeCashFlow": operating - capex,
        "incomeTaxesPaid": int(round(income_tax * 0.95)),
        "interestPaid": interest_expense,
    }
    state = {
        "cash": cash,
        "receivables": net_rec,
        "inventory": inventory,
        "payables": accounts_pay,
        "ppe": ppe,
        "short_debt": short_debt,
        "long_debt": long_debt,
        "intangibles": intangibles,
    }
    return income, balance, cash_flow, state


def statement_row(comp: Company, p: Period, values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "date": iso(p.date),
        "symbol": comp.symbol,
        "reportedCurrency": "USD",
        "cik": comp.cik,
        "filingDate": iso(p.filing),
        "acceptedDate": p.accepted,
        "fiscalYear": str(p.fiscal_year),
        "period": p.period,
        **values,
    }
