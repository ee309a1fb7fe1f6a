"""The one error Silver promotion raises for a batch it cannot promote as asked."""


class PromotionError(RuntimeError):
    """The batch cannot be promoted as asked (wrong table, inconsistent MERGE); nothing was written."""
