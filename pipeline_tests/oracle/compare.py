"""Compare an oracle frame with a Gold frame cell by cell; a mismatch names table, column, key, expected, actual."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

RTOL = 1e-9
ATOL = 1e-12
SHOW = 8  # mismatching rows listed per column


def _key_text(row: pd.Series, keys: Sequence[str]) -> str:
    parts = []
    for k in keys:
        v = row[k]
        parts.append(f"{k}={v.date() if isinstance(v, pd.Timestamp) else v}")
    return " ".join(parts)


def _as_float(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)


def _column_mismatches(exp: pd.Series, act: pd.Series, integer: bool) -> np.ndarray:
    """Boolean mask of rows where the two sides differ; NULL equals NULL only."""
    if pd.api.types.is_datetime64_any_dtype(exp) or pd.api.types.is_datetime64_any_dtype(act):
        e, a = pd.to_datetime(exp), pd.to_datetime(act)
        both_null = e.isna() & a.isna()
        return (~both_null & ((e.isna() != a.isna()) | (e != a))).to_numpy()
    if pd.api.types.is_numeric_dtype(exp) and (pd.api.types.is_numeric_dtype(act) or act.isna().all()):
        e, a = _as_float(exp), _as_float(act)
        null_e, null_a = np.isnan(e), np.isnan(a)
        tol = 0.5 + 1e-9 * np.abs(e) if integer else ATOL + RTOL * np.abs(e)  # an integer column may round
        with np.errstate(invalid="ignore"):
            far = np.abs(a - e) > tol
        return (null_e != null_a) | (~null_e & ~null_a & far)
    e = exp.astype(object).where(exp.notna(), None)
    a = act.astype(object).where(act.notna(), None)
    return np.array([x != y for x, y in zip(e, a)], dtype=bool)


def compare_frames(
    table: str,
    expected: pd.DataFrame,
    actual: pd.DataFrame,
    keys: Sequence[str],
    columns: Sequence[str],
    integer_columns: Sequence[str] = (),
) -> list[str]:
    """Every difference between the oracle (`expected`) and Gold (`actual`) as readable lines; [] when equal."""
    problems: list[str] = []
    e_keys = expected[list(keys)].astype(str).agg("|".join, axis=1)
    a_keys = actual[list(keys)].astype(str).agg("|".join, axis=1)
    missing = sorted(set(e_keys) - set(a_keys))
    extra = sorted(set(a_keys) - set(e_keys))
    if missing:
        problems.append(f"{table}: {len(missing)} row(s) expected but absent from Gold, e.g. {missing[:SHOW]}")
    if extra:
        problems.append(f"{table}: {len(extra)} row(s) in Gold the oracle does not expect, e.g. {extra[:SHOW]}")
    merged = expected.merge(actual, on=list(keys), how="inner", suffixes=("__exp", "__act"))
    for col in columns:
        exp = merged[f"{col}__exp"] if f"{col}__exp" in merged else merged[col]
        act = merged[f"{col}__act"] if f"{col}__act" in merged else merged[col]
        bad = _column_mismatches(exp, act, col in integer_columns)
        if bad.any():
            rows = merged[bad]
            sample = [
                f"{_key_text(r, keys)}: expected {r[exp.name]!r}, actual {r[act.name]!r}"
                for _, r in rows.head(SHOW).iterrows()
            ]
            problems.append(
                f"{table}.{col}: {int(bad.sum())} of {len(merged)} row(s) differ\n    " + "\n    ".join(sample)
            )
    return problems
