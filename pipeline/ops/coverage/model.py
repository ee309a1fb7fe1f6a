"""One coverage series: what the ledger says about a keymap entry × ticker, and the gaps Silver shows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pipeline.keymap.model import KeymapEntry
from pipeline.ops.reader import entry_label

GAP_RULES = ("trading", "fiscal-q", "fiscal-y", "monthly", "quarterly")

Month = tuple[int, int]


@dataclass
class SeriesCoverage:
    """One keymap entry × ticker (or the entry itself when global): ledger facts plus Silver gaps."""

    entry: KeymapEntry
    ticker: str
    first: dt.date | None = None  # good coverage, from the ledger
    last: dt.date | None = None
    files: int = 0
    error_files: int = 0  # error responses, plus quarantined files waiting for a refetch
    last_fetch: dt.datetime | None = None
    quarantined: int = 0  # quarantined files no good refetch has replaced yet (among error_files)
    silver_rows: int = 0
    silver_first: dt.date | None = None
    silver_last: dt.date | None = None
    rule: str = "snapshot"
    missing: int = 0
    missing_labels: list[str] = field(default_factory=list)
    months: dict[Month, tuple[int, int]] = field(default_factory=dict)  # month -> (expected, present)

    @property
    def label(self) -> str:
        return entry_label(self.entry.dataset, self.entry.discriminator)

    @property
    def has_gaps(self) -> bool:
        return self.rule in GAP_RULES and self.missing > 0
