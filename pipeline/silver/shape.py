"""The shape of one Silver table as the promotion SQL needs it: columns, key, read types and the envelope ticker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.keymap.model import Column, Keymap, SilverSpec
from pipeline.silver.cast import READ_TYPES
from pipeline.silver.errors import PromotionError
from pipeline.warehouse.dialect import quote


@dataclass(frozen=True)
class TableShape:
    """Everything the SQL generators need about one Silver table."""

    spec: SilverSpec
    envelope_ticker_column: str | None  # per-ticker tables take this column from the envelope's ticker
    csv: bool = False  # fed by CSV recipes: rows are read from the bodies kept as served (`pipeline.silver.csv_scan`)

    @property
    def payload_columns(self) -> tuple[Column, ...]:
        """Columns whose value comes from the payload (all but the envelope ticker)."""
        return tuple(c for c in self.spec.columns if c.name != self.envelope_ticker_column)

    @property
    def read_types(self) -> dict[str, str]:
        """API field -> the type it is read as: READ_TYPES of its column, or text when columns disagree."""
        fields: dict[str, str] = {}
        for col in self.payload_columns:
            kind = READ_TYPES[col.type]
            fields[col.api] = kind if fields.get(col.api, kind) == kind else "VARCHAR"
        return fields

    @property
    def row_type(self) -> str:
        """The explicit type of one content row: one field per mapped API field."""
        fields = self.read_types or {"_none": "VARCHAR"}
        return "STRUCT(" + ", ".join(f"{quote(name)} {kind}" for name, kind in fields.items()) + ")"

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(list(self.spec.key) + [c.name for c in self.spec.columns if not c.nullable]))

    @property
    def mapped_fields(self) -> tuple[str, ...]:
        return tuple(c.api for c in self.spec.columns)

    def cols(self, prefix: str = "", names: Sequence[str] | None = None) -> str:
        names = [c.name for c in self.spec.columns] if names is None else list(names)
        return ", ".join(f"{prefix}{quote(n)}" for n in names)

    @property
    def value_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.spec.value_columns)

    def key_join(self, left: str, right: str) -> str:
        return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in self.spec.key)

    def values_struct(self, prefix: str = "") -> str:
        """All value columns as one struct: compared with IS DISTINCT FROM, which is NULL-safe per field."""
        if not self.value_names:
            return "true"
        return "struct_pack(" + ", ".join(f"{quote(n)} := {prefix}{quote(n)}" for n in self.value_names) + ")"


def table_shape(keymap: Keymap, table: str) -> TableShape:
    specs = keymap.tables()
    if table not in specs:
        raise PromotionError(f"silver.{table} is not a table of the keymap {keymap.path or ''}".strip())
    spec = specs[table]
    per_ticker = keymap.table_scope(table) == "per_ticker"
    names = {c.name for c in spec.columns}
    csv = all(e.recipe.format == "csv" for e in keymap.entries_for_table(table))
    return TableShape(spec, "ticker" if per_ticker and "ticker" in names else None, csv=csv)
