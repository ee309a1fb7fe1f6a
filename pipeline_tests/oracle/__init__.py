"""An independent pandas re-computation of the Gold tables from Silver, written from the Gold semantics
(share basis, split basis, point in time) and not from the Gold SQL, so the two can disagree and a test can
say which number is wrong. Each module holds one Gold table's reference; `compare` turns two frames into
readable mismatches."""

from pipeline_tests.oracle.basis import SplitBasis, et_date, split_bases
from pipeline_tests.oracle.compare import compare_frames
from pipeline_tests.oracle.fundamentals import fundamentals
from pipeline_tests.oracle.macro import macro_daily
from pipeline_tests.oracle.prices import price_daily
from pipeline_tests.oracle.silver import load_gold, load_silver
from pipeline_tests.oracle.valuation import valuation_daily

__all__ = [
    "SplitBasis",
    "compare_frames",
    "et_date",
    "fundamentals",
    "load_gold",
    "load_silver",
    "macro_daily",
    "price_daily",
    "split_bases",
    "valuation_daily",
]
