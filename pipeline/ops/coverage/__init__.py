"""`pipeline coverage`: ledger and Silver readers, gap rules and the table/HTML report, one module each."""

from pipeline.ops.coverage.command import coverage

__all__ = ["coverage"]
