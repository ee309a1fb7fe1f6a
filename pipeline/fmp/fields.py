"""FMP field names that more than one layer relies on (the stand-in that serves them and Gold that reads them)."""

# `treasury-rates` maturities, shortest first: one column each in silver.fmp_treasury_rates and gold.fact_macro_daily.
TREASURY_MATURITIES = ("month1", "month2", "month3", "month6", "year1", "year2", "year3", "year5", "year7", "year10",
                       "year20", "year30")  # fmt: skip
