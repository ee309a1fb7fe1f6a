"""Tests of the package's top-level shared helpers (the NYSE calendar, text tables)."""
